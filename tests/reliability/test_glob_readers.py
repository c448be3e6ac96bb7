"""Plain DuckDB globs over the layout while files are renamed over or removed (issue #5, scenario 3):
why such a read may fail, made deterministic.

DuckDB (2.0) reads a parquet file through more than one open *by path*: it reads the footer
through one handle, then opens the path again to read the column chunks at the offsets that
footer gave (the first file of a glob is opened once more, at bind). Nothing checks that the
second open found the same file: no inode, size or modification time is compared (local files
bypass the external file cache, ``cache_local_files = false``; DuckDB re-reads a replaced file
even with the metadata cache on). A promotion renaming a new file over the path between the two
opens (an atomic ``rename``, whatever its mtime) makes DuckDB decode the new file's bytes at the
old file's offsets: "TProtocolException: Invalid data", "don't know what type", "Out of buffer".
A partition removed after the glob listed it and before DuckDB opens it (files are opened one by
one as the scan goes, not when the glob is expanded) is "Cannot open file".

Neither can be fixed by the writer while paths are replaced in place: whatever it does to the new
file (a later mtime, another size), the reader's second open resolves the path again. These tests
pin that down with an ``LD_PRELOAD`` shim that stops the reading process right before DuckDB's
N-th open of one file while the test promotes (``os.rename`` of a staged file onto the final
path) or removes it; the readers-during-writes test counts how often it happens under load. If a
DuckDB upgrade reads each file through one handle, the first test says so: update the "Known
limits" of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="an LD_PRELOAD shim (glibc)")

SHIM = r"""
/* At the $SHIM_AT-th open of $SHIM_TARGET in this process: create $SHIM_PAUSED, wait for $SHIM_RESUME
   (30 s at most), then open. Every open of $SHIM_TARGET is logged to $SHIM_LOG. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int opens;

static void before_open(const char *path) {
    const char *target = getenv("SHIM_TARGET");
    if (!target || !path || strcmp(path, target) != 0) return;
    int n = atomic_fetch_add(&opens, 1) + 1;
    const char *log = getenv("SHIM_LOG"), *at = getenv("SHIM_AT");
    if (log) { FILE *f = fopen(log, "a"); if (f) { fprintf(f, "%d\n", n); fclose(f); } }
    if (!at || atoi(at) != n) return;
    FILE *f = fopen(getenv("SHIM_PAUSED"), "w"); if (f) fclose(f);
    struct timespec tick = {0, 2000000};
    for (int i = 0; i < 15000 && access(getenv("SHIM_RESUME"), F_OK) != 0; i++) nanosleep(&tick, NULL);
}

#define MODE mode_t mode = 0; if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); \
    mode = va_arg(ap, mode_t); va_end(ap); }
int open(const char *p, int flags, ...) { MODE static int (*real)(const char *, int, ...);
    if (!real) real = dlsym(RTLD_NEXT, "open"); before_open(p); return real(p, flags, mode); }
int open64(const char *p, int flags, ...) { MODE static int (*real)(const char *, int, ...);
    if (!real) real = dlsym(RTLD_NEXT, "open64"); before_open(p); return real(p, flags, mode); }
int openat(int d, const char *p, int flags, ...) { MODE static int (*real)(int, const char *, int, ...);
    if (!real) real = dlsym(RTLD_NEXT, "openat"); before_open(p); return real(d, p, flags, mode); }
int openat64(int d, const char *p, int flags, ...) { MODE static int (*real)(int, const char *, int, ...);
    if (!real) real = dlsym(RTLD_NEXT, "openat64"); before_open(p); return real(d, p, flags, mode); }
"""

#: The plain reader: per file, its rows' count and first label; or the error.
READER = r"""
import json, sys
import duckdb
try:
    rows = duckdb.connect().execute(
        "SELECT filename, count(*), min(label) FROM read_parquet(?, filename = true) GROUP BY filename",
        [sys.argv[1]]).fetchall()
    print(json.dumps({"files": {f: [n, label] for f, n, label in rows}}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""

SUBJECTS = ("0007", "0014", "0021", "0028")
TARGET = SUBJECTS[2]  # not the first file of the glob (that one is opened once more, at bind)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the LD_PRELOAD shim")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text(SHIM)
    out = folder / "shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(folder / "shim.c"), "-ldl"],
                   check=True, capture_output=True)
    return str(out)


def write_partition(path: Path, version: str, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    sid = path.parent.name.partition("=")[2]
    pq.write_table(pa.table({"subject_id": [sid] * rows, "session": list(range(1, rows + 1)),
                             "label": [f"{version}-{sid}-{i:04d}" for i in range(rows)]}), path)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """``rw_sessions/subject_id=…/data.pqt``: four partitions of version "old", 120 rows each."""
    folder = tmp_path / "bdc-v0.0" / "rw_sessions"
    for sid in SUBJECTS:
        write_partition(folder / f"subject_id={sid}" / "data.pqt", "old", 120)
    return folder


def plain_read(shim: str, table: Path, pause_at: int, meanwhile: Callable[[], None] = lambda: None
               ) -> tuple[dict[str, Any], int, bool]:
    """A plain DuckDB glob over ``table`` in a process of its own, stopped right before DuckDB's
    ``pause_at``-th open of the target partition's file (0: never) while ``meanwhile()`` runs:
    (the reader's answer, how many times DuckDB opened that file, whether it was stopped)."""
    work = table.parent.parent / f"read-{time.monotonic_ns()}"
    work.mkdir()
    target = table / f"subject_id={TARGET}" / "data.pqt"
    env = {**os.environ, "LD_PRELOAD": shim, "SHIM_TARGET": str(target), "SHIM_AT": str(pause_at),
           "SHIM_LOG": str(work / "log"), "SHIM_PAUSED": str(work / "paused"), "SHIM_RESUME": str(work / "resume")}
    child = subprocess.Popen([sys.executable, "-c", READER, f"{table}/*/*.pqt"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (work / "paused").exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the reader neither stopped nor ended"
        time.sleep(0.005)
    paused = (work / "paused").exists()
    if paused:
        meanwhile()
        (work / "resume").write_text("go")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    opens = len((work / "log").read_text().split()) if (work / "log").exists() else 0
    return json.loads(out.strip().splitlines()[-1]), opens, paused


def promote(table: Path, mtime: str) -> Callable[[], None]:
    """A promotion of the target partition: a new version (other rows, so another file layout)
    staged beside, renamed onto the final path; its mtime the replaced file's to the nanosecond
    (``same``) or two seconds later (``later``)."""

    def run() -> None:
        final = table / f"subject_id={TARGET}" / "data.pqt"
        staged = table.parent / "_staging" / f"subject_id={TARGET}" / "data.pqt"
        write_partition(staged, "new", 150)
        old = os.stat(final).st_mtime_ns
        ns = old if mtime == "same" else old + 2_000_000_000
        os.utime(staged, ns=(ns, ns))
        os.rename(staged, final)

    return run


def file_of(answer: dict[str, Any], sid: str) -> list[Any]:
    return next(v for f, v in answer["files"].items() if f"subject_id={sid}" in f)


def test_duckdb_opens_a_file_more_than_once_per_read(shim: str, table: Path) -> None:
    answer, opens, paused = plain_read(shim, table, 0)
    assert not paused and "error" not in answer, answer
    assert file_of(answer, TARGET) == [120, f"old-{TARGET}-0000"]
    assert opens >= 2, ("DuckDB read the file through one open: a rename over it can no longer split "
                        "a read, update the Known limits of docs/reliability.md and this test")


@pytest.mark.parametrize("mtime", ["same", "later"])
def test_a_file_renamed_over_between_two_opens_fails_the_read(shim: str, table: Path, mtime: str) -> None:
    """Renamed over right before DuckDB's last open of it (after it read the old footer): the read
    fails, whatever the new file's mtime (no writer-side remedy: DuckDB compares nothing)."""
    _answer, opens, _paused = plain_read(shim, table, 0)
    answer, _opens, paused = plain_read(shim, table, opens, promote(table, mtime))
    assert paused
    assert "error" in answer, answer
    assert any(s in answer["error"] for s in ("TProtocolException", "don't know what type", "Out of buffer",
                                              "Variable-length int", "Invalid")), answer


@pytest.mark.parametrize("mtime", ["same", "later"])
def test_a_file_renamed_over_before_its_first_open_is_read_whole(shim: str, table: Path, mtime: str) -> None:
    """Renamed over after the glob listed it but before DuckDB opened it: read whole, the new
    version, beside the other partitions' old version (a glob mixes versions across partitions)."""
    answer, _opens, paused = plain_read(shim, table, 1, promote(table, mtime))
    assert paused and "error" not in answer, answer
    assert file_of(answer, TARGET) == [150, f"new-{TARGET}-0000"]
    assert all(file_of(answer, sid) == [120, f"old-{sid}-0000"] for sid in SUBJECTS if sid != TARGET)


def test_a_partition_removed_after_the_glob_listed_it_fails_the_read(shim: str, table: Path) -> None:
    """Removed (a partition the sync no longer lists) after the glob listed it: "Cannot open file".
    Keeping it would show it to the next glob, after the sync: the removal cannot wait for readers
    the writer does not know of."""
    answer, _opens, paused = plain_read(shim, table, 1, (table / f"subject_id={TARGET}" / "data.pqt").unlink)
    assert paused
    assert "error" in answer and "Cannot open file" in answer["error"], answer
