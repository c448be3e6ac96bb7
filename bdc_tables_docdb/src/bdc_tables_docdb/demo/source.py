"""The offline demo source: the DocDB emulator on loopback with the bundled sample, and open data on disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["demo_docdb"]


@contextlib.contextmanager
def demo_docdb() -> Iterator[str]:
    """Serve the sample records and point ``BDC_DOCDB_URL``/``BDC_OPEN_DATA_URL`` at them while open."""
    from pathlib import Path

    from bdc_tables_docdb.demo.sample import load_sample_open_data, load_sample_records
    from bdc_tables_docdb.emulator import DocDBEmulator

    saved = {k: os.environ.get(k) for k in ("BDC_DOCDB_URL", "BDC_OPEN_DATA_URL")}
    with tempfile.TemporaryDirectory(prefix="bdc-demo-open-data-") as tmp:
        root = Path(tmp)
        for key, data in load_sample_open_data().items():
            path = root / "aind-open-data" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        emulator = DocDBEmulator(load_sample_records(), page_cap=500)
        emulator.start()
        try:
            os.environ["BDC_DOCDB_URL"] = emulator.url
            os.environ["BDC_OPEN_DATA_URL"] = root.as_uri()
            yield emulator.url
        finally:
            emulator.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
