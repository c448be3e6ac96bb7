"""The foraging demo source: a small generated database in a temp dir, as ``BDC_FORAGING_BASE``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DEMO_SHAPE", "demo_database"]

#: The demo's size: 24 subjects x 4 sessions x 150 trials (14,400 trials, ~120k events), seeded.
DEMO_SHAPE: dict[str, int] = {"subjects": 24, "sessions_per_subject": 4, "trials_per_session": 150, "seed": 0}


@contextlib.contextmanager
def demo_database(**shape: Any) -> Iterator[Any]:
    """Generate a foraging database into a temp dir and point ``BDC_FORAGING_BASE`` at it.

    Keyword arguments override :data:`DEMO_SHAPE` (any :func:`generate_foraging_db` argument).
    Yields the :class:`ForagingDbInfo`; on exit the previous ``BDC_FORAGING_BASE`` is restored and
    the directory removed.
    """
    from bdc_tables_foraging.demo.generator import generate_foraging_db
    from bdc_tables_foraging.source import BASE_ENV

    tmp = tempfile.mkdtemp(prefix="bdc-foraging-demo-")
    previous = os.environ.get(BASE_ENV)
    try:
        info = generate_foraging_db(Path(tmp) / "db", **{**DEMO_SHAPE, **shape})
        os.environ[BASE_ENV] = info.root
        yield info
    finally:
        if previous is None:
            os.environ.pop(BASE_ENV, None)
        else:
            os.environ[BASE_ENV] = previous
        shutil.rmtree(tmp, ignore_errors=True)
