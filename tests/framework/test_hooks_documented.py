"""Every hook of ``bdc.hookspecs`` is documented in docs/hooks.md and has a test of its own here.

The hooks are enumerated from the module (every function carrying pluggy's ``bdc_spec`` marker),
so adding a hook without a section in docs/hooks.md — headed ``## <hook name>``, showing the exact
signature — or without a ``test_hook_<hook name>`` below fails. Each ``test_hook_*`` registers an
in-process plugin implementing that one hook and checks its effect through bdc's public surface.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bdc
from bdc import hookspecs

HOOKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def hook_specs() -> dict[str, Callable[..., Any]]:
    """The hook specifications: functions of bdc.hookspecs marked with ``@hookspec``."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, marker)}


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature_text(fn: Callable[..., Any]) -> str:
    """``bdc_tables() -> list[TableSpec]``, with the annotations as written in bdc.hookspecs."""
    sig = inspect.signature(fn)
    params = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is p.empty else f"{p.name}: {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    out = f"{fn.__name__}({', '.join(params)})"
    if sig.return_annotation is not sig.empty:
        out += f" -> {_annotation(sig.return_annotation)}"
    return out


def doc_sections() -> dict[str, str]:
    """The ``## name`` sections of docs/hooks.md, by heading."""
    text = HOOKS_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## +(\S+) *$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_hooks_are_found() -> None:
    """The enumeration sees the hooks (and only functions pluggy treats as hooks)."""
    specs = hook_specs()
    assert {"bdc_tables", "bdc_backends", "bdc_executors", "bdc_functions", "bdc_demo_sources"} <= set(specs)
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    assert set(specs) == {name for name in dir(pm.hook) if not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    """docs/hooks.md has a section for the hook showing its signature as declared."""
    sections = doc_sections()
    assert name in sections, f"docs/hooks.md has no '## {name}' section"
    signature = signature_text(hook_specs()[name])
    assert signature in sections[name], f"the '## {name}' section does not show `{signature}`"


def test_hooks_doc_documents_no_hook_that_does_not_exist() -> None:
    """Every hook-named section of docs/hooks.md is a real hook (no stale sections)."""
    stale = [s for s in doc_sections() if s.startswith("bdc_") and s not in hook_specs()]
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {stale}"


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_has_a_dedicated_test(name: str) -> None:
    """A ``test_hook_<name>`` function exists in this module."""
    test = globals().get(f"test_hook_{name}")
    assert callable(test), f"no test_hook_{name} in {Path(__file__).name}"


# -- one test per hook -------------------------------------------------------------------------


def test_hook_bdc_tables(bdc_plugin: Callable[..., str]) -> None:
    """A table declared by a plugin is in the catalog, builds with bdc.sync and reads back."""

    class Tables:
        @bdc.hookimpl
        def bdc_tables(self) -> list[bdc.TableSpec]:
            return [bdc.TableSpec("hooked_rigs", "Rigs", [("rig_id", "string", "rig"), ("n", "int64", "cameras")],
                                  aliases=["hrigs"], build=lambda ctx: [{"rig_id": "0007", "n": 2}])]

    bdc_plugin(Tables(), name="hook-tables", distribution="bdc-hook-tables")
    spec = bdc.Cache.spec("hrigs")
    assert spec.name == "hooked_rigs" and spec.plugin == "bdc-hook-tables"
    assert "hooked_rigs" in [s.name for s in bdc.tables()]
    cache = bdc.Cache("memory://test-hook-tables")
    report = bdc.sync(cache, only=["hooked_rigs"])
    assert report.ok and report.table("hooked_rigs").plugin == "bdc-hook-tables"
    assert cache.get("hrigs").to_dict("records") == [{"rig_id": "0007", "n": 2}]


def test_hook_bdc_backends(bdc_plugin: Callable[..., str]) -> None:
    """A backend contributed for a new URL scheme is what a cache with that scheme writes through."""
    from bdc.backends.memory import MemoryBackend

    opened: list[str] = []

    class Recording(MemoryBackend):
        scheme = "recorded"

        def __init__(self, url: str):
            opened.append(url)
            super().__init__("memory://recorded-" + url.split("://", 1)[1])
            self.url = url

    class Backends:
        @bdc.hookimpl
        def bdc_backends(self) -> list[bdc.BackendSpec]:
            return [bdc.BackendSpec("recorded", Recording, "a memory store that records its opening")]

    bdc_plugin(Backends(), name="hook-backends")
    from bdc.testing import make_spec

    bdc_plugin(make_spec("hooked_things", [("id", "string")]))
    cache = bdc.Cache("recorded://shelf")
    assert isinstance(cache.backend, Recording) and opened == ["recorded://shelf"]
    cache.put("hooked_things", [{"id": "0012"}])
    assert cache.get("hooked_things")["id"].tolist() == ["0012"]
    assert any(k.key.endswith("cache_registry.json") for k in cache.backend.list(""))
    from bdc.catalog import get_catalog

    assert get_catalog().backends["recorded"].plugin == "hook-backends"


def test_hook_bdc_executors(bdc_plugin: Callable[..., str]) -> None:
    """An executor contributed by name runs the partition builds of a sync, with the options given."""
    from bdc.runner.executors import Executor
    from bdc.testing import make_spec

    made: list[dict[str, Any]] = []
    ran: list[int] = []

    class Serial(Executor):
        in_process = True

        def __init__(self, workers: int | None = None, **options: Any):
            super().__init__(workers, **options)
            made.append({"workers": workers, **options})

        def map_unordered(self, fn: Callable[[Any], Any], items: Any) -> Iterator[tuple[int, Any]]:
            for index, item in enumerate(items):
                ran.append(index)
                try:
                    yield index, fn(item)
                except Exception as exc:  # handed back, as the contract says
                    yield index, exc

    class Executors:
        @bdc.hookimpl
        def bdc_executors(self) -> list[bdc.ExecutorSpec]:
            return [bdc.ExecutorSpec("serial", Serial, "one at a time")]

    bdc_plugin(Executors(), name="hook-executors")
    bdc_plugin(make_spec("hooked_parts", [("key", "string"), ("v", "int64")], partition_key="key",
                         partitions=lambda ctx: ["a", "b", "c"],
                         build_partition=lambda ctx, key: [{"key": key, "v": ord(key)}]))
    cache = bdc.Cache("memory://test-hook-executors")
    report = bdc.sync(cache, only=["hooked_parts"], executor="serial", workers=1, scheduler="inproc://x")
    assert report.ok and report.executor == "serial" and report.workers == 1
    assert made == [{"workers": 1, "scheduler": "inproc://x"}]
    assert sorted(ran) == [0, 1, 2]
    assert sorted(cache.get("hooked_parts")["v"]) == [97, 98, 99]


def test_hook_bdc_functions(bdc_plugin: Callable[..., str]) -> None:
    """A function contributed by a plugin is ``bdc.<name>`` and importable from bdc; it cannot shadow bdc's own."""

    def hooked_answer(x: int = 1) -> int:
        """Adds 41."""
        return x + 41

    class Functions:
        @bdc.hookimpl
        def bdc_functions(self) -> list[bdc.FunctionSpec]:
            return [bdc.FunctionSpec("hooked_answer", hooked_answer, "the answer"),
                    bdc.FunctionSpec("get", lambda *a, **k: "shadowed", "tries to shadow bdc.get")]

    bdc_plugin(Functions(), name="hook-functions")
    assert bdc.hooked_answer is hooked_answer
    from bdc import hooked_answer as imported

    assert imported() == 42
    from bdc.api import get

    assert bdc.get is get
    with pytest.raises(AttributeError):
        bdc.no_such_hooked_function  # noqa: B018 - the lookup itself is the test


def test_hook_bdc_demo_sources(bdc_plugin: Callable[..., str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``bdc-sync --demo`` enters the demo source around the build (the build sees it), and leaves it after."""
    monkeypatch.delenv("HOOKED_DEMO_SOURCE", raising=False)
    entered: list[str] = []

    @contextlib.contextmanager
    def start() -> Iterator[None]:
        os.environ["HOOKED_DEMO_SOURCE"] = "B12,B14"
        entered.append("in")
        try:
            yield
        finally:
            del os.environ["HOOKED_DEMO_SOURCE"]
            entered.append("out")

    def build(ctx: Any) -> list[dict[str, str]]:
        return [{"room": r} for r in os.environ["HOOKED_DEMO_SOURCE"].split(",")]

    class Demo:
        @bdc.hookimpl
        def bdc_demo_sources(self) -> list[bdc.DemoSpec]:
            return [bdc.DemoSpec("hooked_rooms", start, "two rooms")]

        @bdc.hookimpl
        def bdc_tables(self) -> list[bdc.TableSpec]:
            return [bdc.TableSpec("hooked_rooms", "Rooms", [("room", "string", "room")], build=build)]

    bdc_plugin(Demo(), name="hook-demo")
    from bdc.runner.cli import main

    url = (tmp_path / "cache").as_uri()
    assert main(["--demo", "--cache", url, "--only", "hooked_rooms", "--quiet"]) == 0
    assert entered == ["in", "out"] and "HOOKED_DEMO_SOURCE" not in os.environ
    assert "demo: starting hooked_rooms (two rooms)" in capsys.readouterr().err
    assert bdc.Cache(url).get("hooked_rooms")["room"].tolist() == ["B12", "B14"]
    # without --demo the source is not there: the build fails, the run says so
    assert main(["--cache", url, "--only", "hooked_rooms", "--quiet", "--full"]) == 1
