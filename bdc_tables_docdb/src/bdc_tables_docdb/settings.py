"""Settings of the DocDB tables, read from the environment when a build runs (never at import).

| variable | default |
|---|---|
| ``BDC_DOCDB_URL`` | ``https://api.allenneuraldynamics.org`` (an ``http://127.0.0.1:PORT`` emulator works) |
| ``BDC_OPEN_DATA_URL`` | ``s3://aind-open-data`` (``file:///dir`` reads a local copy laid out ``dir/<bucket>/<key>``) |
| ``BDC_NEUROGLASS_URL`` | ``https://allen.neuroglass.io/new#!`` |
| ``BDC_NEUROGLANCER_URL`` | ``https://neuroglancer-demo.appspot.com/#!`` |
| ``BDC_UPGRADE_STATUS_TABLE`` | ``metadata_upgrade_status_prod`` (custom table read by metadata_upgrade) |
| ``BDC_DOCDB_PAGE_SIZE`` | ``500`` records per find request |
"""

from __future__ import annotations

import os

import attrs

__all__ = ["Settings", "current_settings"]


@attrs.frozen
class Settings:
    """Where the DocDB tables read from."""

    docdb_url: str = "https://api.allenneuraldynamics.org"
    open_data_url: str = "s3://aind-open-data"
    neuroglass_url: str = "https://allen.neuroglass.io/new#!"
    neuroglancer_url: str = "https://neuroglancer-demo.appspot.com/#!"
    upgrade_status_table: str = "metadata_upgrade_status_prod"
    page_size: int = 500

    @property
    def open_data_bucket(self) -> str:
        """The open-data bucket name (the first path part of a ``file://`` URL's layout)."""
        if self.open_data_url.startswith("s3://"):
            return self.open_data_url[5:].split("/", 1)[0]
        return "aind-open-data"


def current_settings() -> Settings:
    """The settings as the environment gives them now."""
    env = os.environ
    defaults = Settings()
    return Settings(
        docdb_url=env.get("BDC_DOCDB_URL") or defaults.docdb_url,
        open_data_url=env.get("BDC_OPEN_DATA_URL") or defaults.open_data_url,
        neuroglass_url=env.get("BDC_NEUROGLASS_URL") or defaults.neuroglass_url,
        neuroglancer_url=env.get("BDC_NEUROGLANCER_URL") or defaults.neuroglancer_url,
        upgrade_status_table=env.get("BDC_UPGRADE_STATUS_TABLE") or defaults.upgrade_status_table,
        page_size=int(env.get("BDC_DOCDB_PAGE_SIZE") or defaults.page_size),
    )
