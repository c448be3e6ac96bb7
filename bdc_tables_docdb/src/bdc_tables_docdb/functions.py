"""Functions over the cached DocDB tables, exposed as ``bdc.<name>`` through the ``bdc_functions`` hook."""

from __future__ import annotations

from typing import Any

from bdc.spec import FunctionSpec

__all__ = ["raw_to_derived", "function_specs"]


def raw_to_derived(asset_name: str | list[str], latest: bool = False, modality: str | None = None,
                   cache: Any = None) -> list[str]:
    """Names of the derived assets made directly from ``asset_name`` (TABLES.md §2.6).

    ``modality`` keeps children with a matching modality abbreviation (case-insensitive substring);
    ``latest`` keeps the newest per pipeline. Reads source_data and asset_basics from the cache.
    """
    import bdc
    from bdc_tables_docdb.transforms.raw_to_derived import raw_to_derived as lookup

    cache = cache or bdc.default_cache()
    names = [asset_name] if isinstance(asset_name, str) else list(asset_name)
    source = cache.get("source_data", where={"source_data": names})
    basics = cache.get("asset_basics", columns=["_id", "_last_modified", "name", "modalities"],
                       where={"name": sorted(set(source["name"]))}) if modality else cache.get(
        "asset_basics", columns=["name", "modalities"], limit=0)
    return lookup(source, basics, asset_name, latest=latest, modality=modality)


def function_specs() -> list[FunctionSpec]:
    """The functions this plugin adds to ``bdc``."""
    return [FunctionSpec("raw_to_derived", raw_to_derived, "derived assets made from a raw asset")]
