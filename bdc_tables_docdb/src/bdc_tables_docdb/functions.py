"""The reference package's one-liners over the DocDB tables, exposed as ``bdc.<name>``.

``from biodata_cache import qc`` becomes ``from bdc import qc``: same arguments, same return types
(``unique_*`` and ``raw_to_derived`` return lists of strings, ``qc(..., lazy=True)`` the
partition's location, the others a pandas DataFrame). They are contributed through the
``bdc_functions`` hook (see :func:`function_specs`) and read the default cache
(:func:`bdc.default_cache`), or ``cache=`` (a URL or :class:`bdc.Cache`).

Reads only read (D23): a table that was never built raises :class:`bdc.TableNotBuiltError` naming
the ``bdc-sync`` command, and ``force_update=True`` rebuilds nothing (it warns; building is the
sync's job). Importing this module is light: pandas and DuckDB load on the first call.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from bdc.spec import FunctionSpec

__all__ = [
    "unique_project_names",
    "unique_subject_ids",
    "unique_genotypes",
    "asset_basics",
    "source_data",
    "metadata_core",
    "qc",
    "platform_qc",
    "platform_fib",
    "platform_smartspim",
    "assets_smartspim",
    "platform_exaspim",
    "behavior_curriculum",
    "time_to_qc",
    "scientist_rl_fib",
    "metadata_upgrade",
    "raw_to_derived",
    "function_specs",
]


def _read(name: str, force_update: bool, cache: Any, **filters: Any) -> Any:
    from bdc.legacy import read_table

    return read_table(name, cache=cache, force_update=force_update, where=filters, stacklevel=4)


def _unique(name: str, column: str, force_update: bool, cache: Any) -> list[str]:
    from bdc.legacy import unique_values

    return unique_values(name, column, cache=cache, force_update=force_update, stacklevel=4)


# -- the unique lists --------------------------------------------------------------------------


def unique_project_names(force_update: bool = False, *, cache: Any = None) -> list[str]:
    """Every project name in DocDB (``data_description.project_name``), sorted, without nulls."""
    return _unique("unique_project_names", "project_name", force_update, cache)


def unique_subject_ids(force_update: bool = False, *, cache: Any = None) -> list[str]:
    """Every subject id in DocDB (``subject.subject_id``, as strings), sorted, without nulls."""
    return _unique("unique_subject_ids", "subject_id", force_update, cache)


def unique_genotypes(force_update: bool = False, *, cache: Any = None) -> list[str]:
    """Every genotype in DocDB (``subject.subject_details.genotype``), sorted, without nulls."""
    return _unique("unique_genotypes", "genotype", force_update, cache)


# -- whole tables ------------------------------------------------------------------------------


def asset_basics(force_update: bool = False, *, cache: Any = None) -> Any:
    """One row per DocDB asset: ids, modalities, project, subject, times, experimenters, location."""
    return _read("asset_basics", force_update, cache)


def source_data(force_update: bool = False, *, cache: Any = None) -> Any:
    """One row per (derived asset, source asset): ``name``, ``source_data``, ``pipeline_name``, ``processing_time``."""
    return _read("source_data", force_update, cache)


def metadata_core(force_update: bool = False, *, cache: Any = None) -> Any:
    """One row per DocDB asset with one boolean per core metadata field (present and not null)."""
    return _read("metadata_core", force_update, cache)


def platform_fib(force_update: bool = False, *, cache: Any = None) -> Any:
    """Fiber photometry assets: one row per (asset, fiber, channel) with the targeted structure."""
    return _read("platform_fib", force_update, cache)


def platform_smartspim(force_update: bool = False, *, cache: Any = None) -> Any:
    """SmartSPIM raw assets with their stitched asset, channels and neuroglancer links."""
    return _read("platform_smartspim", force_update, cache)


def assets_smartspim(force_update: bool = False, *, cache: Any = None) -> Any:
    """The reference's name for :func:`platform_smartspim` (same table, same result)."""
    return _read("platform_smartspim", force_update, cache)


def platform_exaspim(force_update: bool = False, *, cache: Any = None) -> Any:
    """exaSPIM raw assets with their fused asset and neuroglancer links."""
    return _read("platform_exaspim", force_update, cache)


def behavior_curriculum(force_update: bool = False, *, cache: Any = None) -> Any:
    """Curriculum, stage and stage node of each behavior asset, from its trainer state."""
    return _read("behavior_curriculum", force_update, cache)


def time_to_qc(force_update: bool = False, *, cache: Any = None) -> Any:
    """Per derived asset: when processing ended and when QC was last evaluated (``qc_pending`` if not yet)."""
    return _read("time_to_qc", force_update, cache)


def scientist_rl_fib(force_update: bool = False, *, cache: Any = None) -> Any:
    """Dynamic-foraging fiber mice at the final stage, grouped by structure, coordinates and indicator."""
    return _read("scientist_rl_fib", force_update, cache)


def metadata_upgrade(force_update: bool = False, *, cache: Any = None) -> Any:
    """Status of the v1 → v2 metadata upgrade, one row per v1 record, one column per upgrader version."""
    return _read("metadata_upgrade", force_update, cache)


# -- partitioned tables --------------------------------------------------------------------------


def platform_qc(platform: str, force_update: bool = False, *, cache: Any = None) -> Any:
    """QC status per (asset, status key) of one platform: ``spim``, ``fib``, ``vr``, ``dynamic_foraging`` or ``slap2``.

    An unknown platform raises ``ValueError`` naming the known ones.
    """
    from bdc_tables_docdb.transforms.platform_qc import PLATFORMS

    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    return _read("platform_qc", force_update, cache, platform=platform)


def qc(
    subject_id: str,
    asset_names: str | Sequence[str] | None = None,
    force_update: bool = False,
    lazy: bool = False,
    *,
    cache: Any = None,
) -> Any:
    """The QC metrics of one subject's assets (one row per metric), or with ``lazy=True`` the
    location of the subject's partition (for DuckDB) instead of the data.

    ``asset_names`` (one name or several) keeps those assets' rows and warns about names that
    have no rows for this subject. A subject without QC gives an empty frame.
    """
    from bdc.errors import TableNotBuiltError
    from bdc.legacy import resolve_cache, warn_force_update

    resolved = resolve_cache(cache)
    spec = resolved.spec("quality_control")
    subject = str(subject_id)
    if force_update:
        warn_force_update(spec.name, resolved)
    if lazy:
        if not resolved.is_published(spec):
            raise TableNotBuiltError(spec.name, resolved.url, resolved.layout.version_folder)
        return resolved.location(spec.name, subject_id=subject)
    if asset_names is None:
        return resolved.get(spec.name, subject_id=subject)
    names = [asset_names] if isinstance(asset_names, str) else list(asset_names)
    frame = resolved.get(spec.name, subject_id=subject, asset_name=names)
    missing = [n for n in dict.fromkeys(names) if n not in set(frame["asset_name"])]
    if missing:
        warnings.warn(f"asset(s) {missing} have no QC rows for subject {subject!r} in {resolved.url}",
                      UserWarning, stacklevel=2)
    return frame


# -- lookups -------------------------------------------------------------------------------------


def raw_to_derived(
    asset_name: str | Sequence[str],
    latest: bool = False,
    modality: str | None = None,
    force_update: bool = False,
    *,
    cache: Any = None,
) -> list[str]:
    """Names of the derived assets made directly from ``asset_name`` (TABLES.md §2.6; one name or several).

    ``modality`` keeps children with a matching modality abbreviation (case-insensitive
    substring, so ``behavior`` matches ``behavior-videos``); ``latest`` keeps the newest child per
    pipeline. Reads only the matching rows of source_data (and, with ``modality``, of asset_basics).
    """
    from bdc.legacy import resolve_cache
    from bdc_tables_docdb.transforms.raw_to_derived import raw_to_derived as lookup

    resolved = resolve_cache(cache)
    names = [asset_name] if isinstance(asset_name, str) else [n for n in asset_name if isinstance(n, str)]
    source = _read("source_data", force_update, resolved, source_data=names)
    basics = None
    if modality is not None:
        children = sorted({n for n in source["name"] if isinstance(n, str)})
        basics = resolved.get("asset_basics", columns=["name", "modalities"], where={"name": children})
    return lookup(source, basics, asset_name, latest=latest, modality=modality)


def function_specs() -> list[FunctionSpec]:
    """The functions this plugin adds to ``bdc`` (``from bdc import qc``)."""
    described = [
        (unique_project_names, "unique project names (sorted list of strings)"),
        (unique_subject_ids, "unique subject ids (sorted list of strings)"),
        (unique_genotypes, "unique genotypes (sorted list of strings)"),
        (asset_basics, "the asset_basics table"),
        (source_data, "the source_data table (derived → source asset names)"),
        (metadata_core, "the metadata_core table"),
        (qc, "QC metrics of one subject, or its partition location (lazy=True)"),
        (platform_qc, "QC status of one platform"),
        (platform_fib, "the platform_fib table"),
        (platform_smartspim, "the platform_smartspim table"),
        (assets_smartspim, "the platform_smartspim table (the reference's name)"),
        (platform_exaspim, "the platform_exaspim table"),
        (behavior_curriculum, "the behavior_curriculum table"),
        (time_to_qc, "the time_to_qc table"),
        (scientist_rl_fib, "the scientist_rl_fib table"),
        (metadata_upgrade, "the metadata_upgrade table"),
        (raw_to_derived, "derived assets made from a raw asset"),
    ]
    return [FunctionSpec(f.__name__, f, description) for f, description in described]
