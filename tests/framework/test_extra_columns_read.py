"""Reading a table whose partitions have different column sets (a spec with ``extra_columns``).

The table's columns are the union over its files: a column that some partition has reads as
nulls for a partition without it, whatever the read filters on; a name that no file has is a
clear error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bdc.errors import InvalidNameError
from bdc.testing import make_spec

COLUMNS = [("subject_id", "string"), ("trial", "int64"), ("choice", "float64")]


@pytest.fixture(params=["memory", "file", "s3"])
def mirror(request: pytest.FixtureRequest, tmp_path: Path, bdc_plugin: Any) -> Any:
    """A cache with table ``mirror``: partition 0413 has an undeclared ``side_bias`` column, 0012 not."""
    from bdc.cache import Cache

    bdc_plugin([make_spec("mirror", COLUMNS, partition_key="subject_id", extra_columns=True, aliases=["mir"])],
               name="mirror-tables")
    if request.param == "memory":
        cache = request.getfixturevalue("bdc_cache")
    elif request.param == "file":
        cache = Cache((tmp_path / "cache").as_uri())
    else:
        cache = Cache(request.getfixturevalue("s3_url"))
    spec = cache.spec("mirror")
    cache.write_partition(spec, "0012", pa.table({"subject_id": ["0012"] * 2, "trial": [0, 1], "choice": [0.0, 1.0]}))
    cache.write_partition(spec, "0413", pa.table({"subject_id": ["0413"] * 3, "trial": [0, 1, 2],
                                                  "choice": [1.0, 0.0, 1.0], "side_bias": [0.25, 0.5, 0.25]}))
    cache.publish(spec, {"rows": 5})
    return cache


def test_a_column_other_partitions_have_reads_as_nulls_for_one_without_it(mirror: Any) -> None:
    one = mirror.get("mirror", columns=["trial", "side_bias"], subject_id="0012")
    assert list(one.columns) == ["trial", "side_bias"]
    assert one["trial"].tolist() == [0, 1]
    assert one["side_bias"].isna().all()
    # the type is the one the table has the column in (as a read of the whole table gives it)
    table = mirror.get("mir", columns=["side_bias"], subject_id="0012", arrow=True)
    assert table.schema.field("side_bias").type == pa.float64()
    assert mirror.get("mirror", columns=["trial", "side_bias"], subject_id="0413")["side_bias"].tolist() == [
        0.25, 0.5, 0.25]


def test_filtering_on_a_column_a_partition_lacks(mirror: Any) -> None:
    nulls = mirror.get("mirror", subject_id="0012", side_bias=None)
    assert sorted(nulls["trial"]) == [0, 1]
    assert nulls["side_bias"].isna().all()
    assert mirror.get("mirror", subject_id="0012", side_bias=0.25).empty
    assert mirror.get("mirror", subject_id=["0012", "0413"], side_bias=0.25)["trial"].tolist() == [0, 2]
    # the same answers as SQL over the view of the whole table
    assert len(mirror.sql("SELECT * FROM mirror WHERE subject_id = '0012' AND side_bias IS NULL")) == 2


def test_a_name_no_file_has_is_a_clear_error(mirror: Any) -> None:
    for kwargs in ({"columns": ["trial", "side_bais"], "subject_id": "0012"},
                   {"columns": ["trial", "side_bais"]},
                   {"subject_id": "0012", "side_bais": None}):
        with pytest.raises(InvalidNameError, match=r"has no column 'side_bais'\. Did you mean 'side_bias'\?"):
            mirror.get("mirror", **kwargs)
