"""The plugin of docs/plugin-author-guide.md, run in-process and installed with pip as its own distribution.

The code is taken from the guide's code blocks, so the guide cannot drift from what works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugin-author-guide.md"
DIST, VERSION, MODULE = "bdc-lab-tables", "1.0.0", "bdc_lab_tables"


def guide_files() -> dict[str, str]:
    """The guide's files: every fenced block preceded by ``<!-- file: NAME -->``."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- file: (\S+) -->\s*```\w*\n(.*?)```", text, flags=re.S)
    return dict(blocks)


def test_guide_has_the_three_files_and_a_short_plugin() -> None:
    files = guide_files()
    assert set(files) == {"bdc_lab_tables.py", "pyproject.toml", "tests/test_lab_tables.py"}
    code_lines = [line for line in files["bdc_lab_tables.py"].splitlines() if line.strip()]
    assert len(code_lines) <= 40
    pyproject = files["pyproject.toml"]
    assert f'name = "{DIST}"' in pyproject and f'version = "{VERSION}"' in pyproject
    assert re.search(r'\[project\.entry-points\.bdc\]\s*\nlab = "bdc_lab_tables"', pyproject)


def test_guide_plugin_in_process(bdc_cache: Any, bdc_plugin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    files = guide_files()
    module = types.ModuleType(MODULE)
    exec(compile(files["bdc_lab_tables.py"], f"{GUIDE}:{MODULE}.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, MODULE, module)
    bdc_plugin(module, distribution=DIST)
    namespace: dict[str, Any] = {}
    exec(compile(files["tests/test_lab_tables.py"], f"{GUIDE}:test_lab_tables.py", "exec"), namespace)
    namespace["test_lab_tables_read_back"](bdc_cache)
    spec = bdc_cache.spec("lab_sessions")
    assert spec.partitions(None) == ["692478", "701234"]
    assert spec.depends_on == ("lab_rigs",)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_wheel(files: dict[str, str], out: Path) -> Path:
    """A pure-Python wheel of the guide's plugin (what a build backend would produce)."""
    info = f"{MODULE}-{VERSION}.dist-info"
    entry_points = re.search(r"\[project\.entry-points\.bdc\]\s*\n(.*?)(?:\n\[|\Z)", files["pyproject.toml"], re.S)[1]
    contents = {
        f"{MODULE}.py": files["bdc_lab_tables.py"],
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\nRequires-Dist: bdc-framework>=0.36\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bdc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[bdc]\n" + entry_points.replace('"', "").strip() + "\n",
    }
    record = [f"{name},{_record_hash(text.encode())},{len(text.encode())}" for name, text in contents.items()]
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = out / f"{MODULE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in contents.items():
            zf.writestr(name, text)
    return path


def test_guide_plugin_installed_with_pip_is_found_through_its_entry_point(tmp_path: Path) -> None:
    """pip installs the plugin as its own distribution; bdc, the bdc command and pytest see it."""
    files = guide_files()
    wheel = build_wheel(files, tmp_path)
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True)
    assert (target / f"{MODULE}-{VERSION}.dist-info" / "entry_points.txt").is_file()

    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_lab_tables.py").write_text(files["tests/test_lab_tables.py"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDC_", "PYTEST_"))}
    env.update(PYTHONPATH=str(target), BDC_CACHE=(tmp_path / "cache").as_uri(), BDC_STRICT_PLUGINS="1",
               BDC_LOAD_PLUGINS=DIST)  # other table packages of this venv may be half-written

    listing = subprocess.run([sys.executable, "-m", "bdc.cli", "tables"], cwd=project, env=env,
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^lab_rigs\s+platform\s+Behaviour rigs of the lab$", listing.stdout, re.M)
    assert re.search(r"^lab_sessions\s+event\s+subject_id\s+Sessions per subject$", listing.stdout, re.M)

    show = subprocess.run([sys.executable, "-m", "bdc.cli", "show", "lab_sessions"], cwd=project, env=env,
                          capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert "plugin:         bdc-lab-tables" in show.stdout
    assert f"bdc-sync --cache {(tmp_path / 'cache').as_uri()} --only lab_sessions" in show.stdout

    # the guide's commands: build with bdc-sync, then read one partition back with bdc
    sync = [sys.executable, "-c", "import sys; from bdc.runner.cli import main; sys.exit(main())",
            "--only", "lab_sessions"]
    built = subprocess.run(sync, cwd=project, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    got = subprocess.run([sys.executable, "-m", "bdc.cli", "get", "lab_sessions", "--subject-id", "692478",
                          "--format", "json"], cwd=project, env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == [{"subject_id": "692478", "rig_id": "0007", "minutes": 41.5}]

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=project, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
