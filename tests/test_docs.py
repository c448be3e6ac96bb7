"""The documentation runs: every code example of README.md and docs/**/*.md, and the API reference builds.

What runs, per document (README.md and every Markdown file under docs/), in document order:

* every fenced ```python block, in one namespace per document (a page builds on its earlier
  blocks, like a notebook), in-process, with the default cache (``BDC_CACHE``) pointing at a
  fresh copy of a cache that a real ``bdc.sync`` filled from the installed plugins' offline demo
  sources (the DocDB emulator, the generated foraging database) — only the tables the examples
  mention, and what those depend on. The demo sources keep running while the pages run, so an
  example may call ``bdc.sync`` too. A failure points at the line in the Markdown file;
* every fenced ```bash / ```sh / ```shell block, command by command, as subprocesses in the same
  working directory (``bdc ...`` and ``bdc-sync ...``; ``export NAME=value`` sets the environment
  of the block's later commands; ``> FILE`` redirects). Each must exit 0. Any other command in a
  tested block is an error: mark the block instead.

Not run: ```console transcripts (commands shown with their output), blocks in other languages
(toml, ini, cron, json, text), blocks marked ``<!-- file: NAME -->`` (files of a worked example,
exercised by their own test, e.g. tests/framework/test_plugin_guide.py) and blocks marked
``<!-- skip-test: reason -->`` on the line before the fence (for what cannot run offline or in
seconds: S3 URLs, Dask scheduler addresses, installs). README.md belongs to the lead and carries
no markers: its shell commands that cannot run here are listed in :data:`README_SKIPS`, with why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = ROOT / "docs"

PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell"}

#: README.md shell commands that are not run, by a pattern of the command, with the reason.
README_SKIPS = (
    (re.compile(r"\bpip install\b"), "installs the workspace (CI runs exactly this command)"),
    (re.compile(r"^python -m pytest\b"), "runs this test suite"),
    (re.compile(r"s3://"), "needs an S3 bucket and AWS credentials"),
    (re.compile(r"tcp://"), "needs a running Dask scheduler"),
    (re.compile(r"^bdc-sync(?!.*(--only|--dry-run))"), "builds every installed table (about 25 s)"),
)
#: At most this many blocks marked skip-test in all the docs together (keep them few).
MAX_SKIPPED_BLOCKS = 12

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                    re.M | re.S)
_MARKER = re.compile(r"<!--\s*(?P<kind>skip-test|file)\s*:?\s*(?P<arg>.*?)\s*-->\s*$")
_SYNC_MAIN = "import sys; from bdc.runner.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    doc: Path
    line: int  # 1-based line of the block's first code line
    lang: str
    code: str
    skip: str | None = None  # the skip-test reason ("" when none was given)
    file: str | None = None  # the file name of a <!-- file: NAME --> block

    @property
    def where(self) -> str:
        """``docs/x.md:12``."""
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the doc test executes this block."""
        return self.skip is None and self.file is None and self.lang in PYTHON | SHELL


def documents() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted(p for p in DOCS_DIR.rglob("*.md") if "html" not in p.relative_to(DOCS_DIR).parts)]


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of ``doc``, with their markers."""
    text = doc.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        skip = marker["arg"] if marker and marker["kind"] == "skip-test" else None
        file = marker["arg"] if marker and marker["kind"] == "file" else None
        line = text.count("\n", 0, match.start("code")) + 1
        code = textwrap.dedent(match["code"])
        out.append(Block(doc, line, match["lang"].lower(), code, skip, file))
    return out


def all_blocks() -> list[Block]:
    """Every block of every document."""
    return [b for doc in documents() for b in blocks(doc)]


# -- the cache the examples read ---------------------------------------------------------------


def mentioned_tables(catalog: Any, code_blocks: list[Block]) -> list[str]:
    """The installed tables (by name or alias) that the runnable blocks mention."""
    text = "\n".join(b.code for b in code_blocks if b.runs)
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9_]*", text))
    found = {catalog.resolve(w).name for w in words if w in catalog}
    return sorted(found)


@dataclass(frozen=True)
class DocCache:
    """The synced template cache and what it holds."""

    template: Path
    tables: tuple[str, ...]


@contextlib.contextmanager
def _saved_environ() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _reset_bdc() -> None:
    from bdc import api, plugins

    plugins.reset()
    with api._lock:
        api._caches.clear()


@pytest.fixture(scope="module")
def doc_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocCache]:
    """A file cache synced from the demo sources (which keep running for the module)."""
    import bdc
    from bdc.catalog import get_catalog

    root = tmp_path_factory.mktemp("doc-cache")
    with _saved_environ(), contextlib.ExitStack() as stack:
        for name in ("BDC_LOAD_PLUGINS", "BDC_DISABLE_PLUGINS", "BDC_STRICT_PLUGINS", "BIODATA_CACHE_BACKEND"):
            os.environ.pop(name, None)
        os.environ["BDC_LOCAL_CACHE_DIR"] = str(root / "local-objects")
        _reset_bdc()
        catalog = get_catalog()
        for demo in catalog.demos:
            stack.enter_context(demo.start())
        names = mentioned_tables(catalog, all_blocks())
        template = root / "template"
        report = bdc.sync(template.as_uri(), only=names or None, progress="none")
        assert report.ok, report.summary()
        try:
            yield DocCache(template, tuple(names))
        finally:
            _reset_bdc()


# -- running the blocks ----------------------------------------------------------------------


def _run_python(block: Block, namespace: dict[str, Any]) -> None:
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, str(block.doc), "exec"), namespace)


def _commands(block: Block) -> Iterator[tuple[str, list[str]]]:
    """``(text, argv)`` of each command of a shell block (``&&`` chains split, comments dropped)."""
    logical = re.sub(r"\\\n", " ", block.code)
    for line in logical.splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            command, tokens = tokens[:cut], tokens[cut + 1:]
            if command:
                yield shlex.join(command), command


def _readme_skip(text: str) -> str | None:
    for pattern, reason in README_SKIPS:
        if pattern.search(text):
            return reason
    return None


def _run_shell(block: Block, env: dict[str, str], cwd: Path, ran: list[str], skipped: list[str]) -> None:
    env = dict(env)
    for text, argv in _commands(block):
        if block.doc.name == "README.md" and (reason := _readme_skip(text)):
            skipped.append(f"{block.where}: {text} ({reason})")
            continue
        if argv[0] == "export":
            for item in argv[1:]:
                name, _, value = item.partition("=")
                env[name] = value
            continue
        if any(token in argv for token in ("|", "<", ">>", "||", ";")):
            pytest.fail(f"{block.where}: {text!r}: pipes, input redirection and command lists other than "
                        f"&& are not run here; split the command or mark the block <!-- skip-test: why -->")
        output = None
        if ">" in argv:
            at = argv.index(">")
            output, argv = cwd / argv[at + 1], argv[:at] + argv[at + 2:]
        if argv[0] == "bdc":
            cmd = [sys.executable, "-m", "bdc.cli", *argv[1:]]
        elif argv[0] == "bdc-sync":
            cmd = [sys.executable, "-c", _SYNC_MAIN, *argv[1:]]
        else:
            pytest.fail(f"{block.where}: {text!r} is not a bdc or bdc-sync command; a tested shell block runs "
                        f"only those (mark the block <!-- skip-test: why --> if it cannot run offline)")
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (f"{block.where}: `{text}` exited {done.returncode}\n"
                                      f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
        if output is not None:
            output.write_text(done.stdout)
        ran.append(text)


def _readme_namespace() -> dict[str, Any]:
    """README.md's reading block stores "your DataFrame" as a custom table: it calls it ``df``."""
    import pandas as pd

    return {"df": pd.DataFrame({"subject_id": ["692478", "0012"], "note": ["example", "example"]})}


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_examples_run(doc: Path, doc_cache: DocCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runnable block of ``doc`` runs, in order, against a copy of the demo-filled cache."""
    cache_dir = tmp_path / "cache"
    shutil.copytree(doc_cache.template, cache_dir)
    monkeypatch.setenv("BDC_CACHE", cache_dir.as_uri())
    for name in ("BDC_LOAD_PLUGINS", "BDC_DISABLE_PLUGINS", "BIODATA_CACHE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _reset_bdc()
    namespace: dict[str, Any] = {"__name__": f"doc:{doc.name}"}
    if doc.name == "README.md":
        namespace.update(_readme_namespace())
    ran: list[str] = []
    skipped: list[str] = []
    started = time.monotonic()
    try:
        for block in blocks(doc):
            if not block.runs:
                continue
            if block.lang in PYTHON:
                _run_python(block, namespace)
                ran.append(block.where)
            else:
                _run_shell(block, dict(os.environ), work, ran, skipped)
    finally:
        _reset_bdc()
    print(f"{doc.name}: ran {len(ran)} blocks/commands in {time.monotonic() - started:.1f} s; skipped: {skipped}")


def test_doc_cache_holds_the_tables_the_examples_read(doc_cache: DocCache) -> None:
    """The README's tables are among those synced for the examples (the scan found them)."""
    assert {"quality_control", "asset_basics"} <= set(doc_cache.tables)


def test_skip_markers_are_few_and_fences_are_closed() -> None:
    """Blocks that do not run stay the exception; every fence of every page is closed."""
    skipped = [b.where for b in all_blocks() if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED_BLOCKS, f"{len(skipped)} blocks are marked skip-test: {skipped}"
    for doc in documents():
        fences = [line for line in doc.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("```")]
        assert len(fences) % 2 == 0, f"{doc.name}: an unclosed ``` fence"
        opened = sum(1 for b in blocks(doc)) * 2
        assert opened == len(fences), f"{doc.name}: a fence the extractor does not see ({opened} vs {len(fences)})"


def test_relative_links_resolve() -> None:
    """Links between the pages (and to files of the repository) point at something that exists."""
    broken = []
    for doc in documents():
        text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{doc.name}: {target}")
    assert not broken, broken


def test_operator_guide_documents_every_bdc_sync_option() -> None:
    """Each option of ``bdc-sync --help`` appears in docs/operator-guide.md."""
    from bdc.runner.cli import build_parser

    text = (DOCS_DIR / "operator-guide.md").read_text(encoding="utf-8")
    options = [o for action in build_parser()._actions for o in action.option_strings if o.startswith("--")]
    missing = [o for o in options if o != "--help" and not re.search(rf"`{re.escape(o)}\b", text)]
    assert not missing, f"docs/operator-guide.md does not document: {missing}"


def _api_builder() -> Any:
    spec = importlib.util.spec_from_file_location("bdc_docs_api_build", DOCS_DIR / "api" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_builds(tmp_path: Path) -> None:
    """The reference of bdc and both table packages builds: every public module imports, every
    name in an ``__all__`` resolves, every public class, function and method has a docstring."""
    pytest.importorskip("pdoc", reason="pdoc is in the test extra: python -m pip install '.[test]'")
    builder = _api_builder()
    pages = builder.build(tmp_path / "api", search=False)
    names = {p.relative_to(tmp_path / "api").as_posix() for p in pages}
    for page in ("index.html", "bdc.html", "bdc/runner/html.html", "bdc/hookspecs.html",
                 "bdc_tables_docdb.html", "bdc_tables_foraging.html"):
        assert page in names, f"{page} missing from the reference"
    text = (tmp_path / "api" / "bdc" / "hookspecs.html").read_text(encoding="utf-8")
    assert "bdc_tables" in text and "Return the tables this plugin declares" in text


def test_api_builder_reports_missing_docstrings_and_bad_exports(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks of the reference build catch what they are for."""
    pytest.importorskip("pdoc", reason="pdoc is in the test extra")
    builder = _api_builder()
    pkg = tmp_path / "docless_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n__all__ = ["f", "lazy"]\n\ndef f():\n    pass\n\n'
                                     'def __getattr__(name):\n    """Nothing is lazy here."""\n'
                                     '    raise AttributeError(name)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="'lazy'"):
        builder.public_modules(["docless_pkg"])
    (pkg / "__init__.py").write_text('"""A package."""\n__all__ = ["f"]\n\ndef f():\n    pass\n')
    monkeypatch.delitem(sys.modules, "docless_pkg")
    modules = builder.public_modules(["docless_pkg"])
    assert builder.missing_docstrings(modules, ["docless_pkg"]) == ["docless_pkg.f"]
