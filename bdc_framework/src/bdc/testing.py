"""pytest fixtures for people who write bdc tables (loaded automatically: a ``pytest11`` plugin).

Installing bdc-framework makes these fixtures available in every test suite::

    def test_my_table(bdc_cache, bdc_plugin):
        bdc_plugin(my_plugin_module)                 # registered for this test only
        bdc_cache.put("my_table", [{"subject_id": "0012", "value": 1.5}])
        assert bdc_cache.get("my_table", subject_id="0012")["value"].tolist() == [1.5]

* ``bdc_cache``: a :class:`bdc.Cache` on a fresh ``memory://`` URL, unique to the test.
* ``bdc_file_cache``: a :class:`bdc.Cache` on a ``file://`` folder under ``tmp_path``.
* ``bdc_plugin``: ``bdc_plugin(obj_or_module, name=None)`` registers a plugin (a module or
  object with ``@bdc.hookimpl`` functions, a :class:`bdc.TableSpec` or a list of them) and
  removes it after the test.
* ``bdc_env``: points the default cache (``bdc.get``, ``bdc.sql``, the ``bdc`` command) at a
  temporary local cache for the test, and yields that :class:`bdc.Cache`.
* :func:`make_spec`: a :class:`bdc.TableSpec` from a few words, with a placeholder build.

Importing this module is cheap (it is imported by pytest for every user of bdc-framework):
nothing heavy is imported until a fixture runs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from bdc.cache import Cache
    from bdc.spec import TableSpec

__all__ = ["bdc_cache", "bdc_file_cache", "bdc_plugin", "bdc_env", "make_spec", "specs_plugin"]

_counter = itertools.count(1)


def _no_build(*_args: Any) -> None:
    """Placeholder build of :func:`make_spec` tables (tests write data with ``Cache.put``)."""
    return None


def _no_partitions(*_args: Any) -> list[str]:
    """Placeholder partition list of :func:`make_spec` tables."""
    return []


def make_spec(
    name: str,
    columns: Iterable[Any] = (("id", "string"),),
    *,
    partition_key: str | None = None,
    description: str | None = None,
    **fields: Any,
) -> TableSpec:
    """A :class:`bdc.TableSpec` for tests, with placeholder build functions.

    ``columns`` are ``(name, type[, description])`` tuples, dicts or :class:`bdc.Column`;
    any other :class:`~bdc.TableSpec` field can be given as a keyword (``aliases=["t"]``).

    >>> make_spec("things", [("subject_id", "string"), ("n", "int64")], partition_key="subject_id").partitioned
    True
    """
    from bdc.spec import TableSpec

    if partition_key is not None:
        fields.setdefault("partitions", _no_partitions)
        fields.setdefault("build_partition", _no_build)
    else:
        fields.setdefault("build", _no_build)
    return TableSpec(
        name=name,
        description=description if description is not None else f"Test table {name}",
        columns=tuple(columns),
        partition_key=partition_key,
        **fields,
    )


def specs_plugin(specs: Any) -> object:
    """A plugin object declaring ``specs`` (one :class:`bdc.TableSpec` or an iterable of them)."""
    from bdc.hookspecs import hookimpl
    from bdc.spec import TableSpec

    declared = [specs] if isinstance(specs, TableSpec) else list(specs)

    class _SpecsPlugin:
        """In-process plugin declaring a fixed list of tables."""

        @hookimpl
        def bdc_tables(self) -> list[TableSpec]:
            """The tables given to :func:`specs_plugin`."""
            return list(declared)

    return _SpecsPlugin()


def _drop_memory_store(url: str) -> None:
    from bdc.backends import memory

    name = url.split("://", 1)[1].strip("/")
    with memory._lock:
        memory._stores.pop(name, None)


@pytest.fixture
def bdc_cache() -> Iterator[Cache]:
    """A :class:`bdc.Cache` on a fresh ``memory://`` URL, unique to the test (dropped after)."""
    from bdc.cache import Cache

    url = f"memory://bdc-test-{uuid.uuid4().hex}"
    try:
        yield Cache(url)
    finally:
        _drop_memory_store(url)


@pytest.fixture
def bdc_file_cache(tmp_path: Any) -> Cache:
    """A :class:`bdc.Cache` on a ``file://`` folder under the test's ``tmp_path``."""
    from bdc.cache import Cache

    return Cache((tmp_path / "bdc-cache").as_uri())


@pytest.fixture
def bdc_plugin() -> Iterator[Callable[..., str]]:
    """A factory ``bdc_plugin(obj_or_module, name=None) -> name`` registering in-process plugins.

    ``obj_or_module`` is a module or object with ``@bdc.hookimpl`` functions, or a
    :class:`bdc.TableSpec` / list of specs. Every plugin registered through the factory is
    removed when the test ends (the table catalog is refreshed both times). A plugin that is
    already registered (an installed package found through its entry point) is left as it is.
    """
    from bdc import plugins
    from bdc.spec import TableSpec

    registered: list[str] = []

    def register(obj_or_module: Any, name: str | None = None, distribution: str | None = None) -> str:
        if isinstance(obj_or_module, TableSpec) or (
            isinstance(obj_or_module, (list, tuple)) and all(isinstance(s, TableSpec) for s in obj_or_module)
        ):
            obj_or_module = specs_plugin(obj_or_module)
        pm = plugins.get_plugin_manager()
        if pm.is_registered(obj_or_module):  # e.g. the package under test, already found by its entry point
            return str(pm.get_name(obj_or_module))
        if name is None:
            module_name = getattr(obj_or_module, "__name__", None)
            name = module_name if isinstance(module_name, str) else f"test-plugin-{next(_counter)}"
        plugin_name = plugins.register(obj_or_module, name=name, distribution=distribution)
        registered.append(plugin_name)
        return plugin_name

    try:
        yield register
    finally:
        for plugin_name in reversed(registered):
            try:
                plugins.unregister(plugin_name)
            except (ValueError, KeyError, AssertionError):
                pass  # already gone (e.g. the plugin manager was reset during the test)


@pytest.fixture
def bdc_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cache]:
    """Point the default cache at a temporary local cache for this test; yields that cache.

    Sets ``BDC_CACHE`` (and clears ``BIODATA_CACHE_BACKEND``), and forgets the default caches
    that ``bdc.get`` and friends keep open, before and after the test.
    """
    from bdc import api
    from bdc.cache import Cache

    url = (tmp_path / "bdc-default-cache").as_uri()
    monkeypatch.setenv("BDC_CACHE", url)
    monkeypatch.delenv("BIODATA_CACHE_BACKEND", raising=False)
    with api._lock:
        api._caches.clear()
    try:
        yield Cache(url)
    finally:
        with api._lock:
            api._caches.clear()
