"""The local read-through cache of remote objects: nothing is downloaded twice.

Readers of a remote cache (``s3://``) read local copies of its objects. The first read of an
object downloads it (or, for a read of a few columns of a large parquet object, only the byte
ranges those columns need, into a sparse file) into a store on local disk; later reads use the
copy:

* within the freshness window (``BDC_LOCAL_CACHE_TTL`` seconds, default 60) a copy is used
  with no request at all; objects written once (run reports) are always fresh;
* after it, one conditional request revalidates the copy (``GET`` with ``If-None-Match``: a
  304 costs no body, a change downloads the new object in the same request);
* reading a new registry revalidates every copy of its version at once: a copy whose ETag is
  the one the registry lists is fresh again, any other must revalidate before its next use;
* when the remote store cannot be reached, copies that exist answer anyway, with a
  :class:`StaleCacheWarning`.

The store lives under ``bdc.config.local_cache_dir() / "objects"`` (``BDC_LOCAL_CACHE_DIR``
overrides it): the copies as files under ``{origin}/{bucket}/{key}``, and ``index.sqlite``
(key → ETag, size, byte ranges held, when validated, when last used). It is bounded by
``BDC_LOCAL_CACHE_MAX`` (``"2GB"``, ``"500MiB"``, bytes; default 5 GiB), evicting the least
recently used copies. ``BDC_LOCAL_CACHE=off`` reads remote objects directly instead.

Several processes may share the store: files appear by atomic rename under names that include
their ETag (a reader never sees a file change under it), the index is SQLite (WAL), and one
download of an object at a time is ensured by a file lock (one of 64 striped lock files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from bdc.backends.base import Backend, is_immutable
from bdc.errors import BackendUnavailableError, BdcError, ObjectNotFoundError, ReadError

__all__ = [
    "Settings",
    "settings",
    "parse_size",
    "LocalStore",
    "Entry",
    "LocalObject",
    "ReadThrough",
    "StaleCacheWarning",
    "LocalCacheError",
    "read_through",
    "get_store",
    "object_changed",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TTL",
]

DEFAULT_MAX_BYTES = 5 * 1024**3
DEFAULT_TTL = 60.0
#: After the remote store was found unreachable, how long copies are served without trying it.
OFFLINE_SECONDS = 30.0
#: A projected read downloads byte ranges only when they are less than this share of the object.
PARTIAL_SHARE = 0.6
#: Ranges closer than this are fetched in one request.
RANGE_GAP = 256 * 1024
#: Parallel downloads when one read needs many objects (partitions).
MAX_WORKERS = 16

_INDEX = "index.sqlite"
_LOCKS = ".locks"
_TMP = ".tmp"
_STRIPES = 64
_OFF = ("0", "off", "false", "no", "none", "disabled")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


class LocalCacheError(BdcError):
    """The local read cache is misconfigured or unusable."""


class StaleCacheWarning(UserWarning):
    """The remote store could not be reached: the answer comes from local copies that may be stale."""


# -- settings ------------------------------------------------------------------------------------


def parse_size(text: str | int, setting: str = "size") -> int:
    """``"2GB"`` → 2,000,000,000; ``"2GiB"``/``"2G"`` → 2 × 1024³; plain numbers are bytes."""
    if isinstance(text, int):
        return text
    import re

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match[2].lower() if match else ""
    if not match or unit not in _UNITS:
        raise LocalCacheError(f"{setting}={text!r} is not a size such as 2GB, 500MiB or 1000000")
    return int(float(match[1]) * _UNITS[unit])


@attrs.frozen
class Settings:
    """Where the local store is, how big it may grow, how long a copy is fresh, whether it is on."""

    root: Path
    max_bytes: int
    ttl: float
    enabled: bool


def settings() -> Settings:
    """The local read cache settings, from the environment as it is now."""
    from bdc.config import local_cache_dir

    env = os.environ
    enabled = env.get("BDC_LOCAL_CACHE", "").strip().lower() not in _OFF
    root_text = env.get("BDC_LOCAL_CACHE_DIR", "").strip()
    root = Path(root_text).expanduser() if root_text else local_cache_dir() / "objects"
    max_bytes = parse_size(env.get("BDC_LOCAL_CACHE_MAX", "").strip() or DEFAULT_MAX_BYTES, "BDC_LOCAL_CACHE_MAX")
    ttl_text = env.get("BDC_LOCAL_CACHE_TTL", "").strip()
    try:
        ttl = float(ttl_text) if ttl_text else DEFAULT_TTL
    except ValueError:
        raise LocalCacheError(f"BDC_LOCAL_CACHE_TTL={ttl_text!r} is not a number of seconds") from None
    return Settings(root, max_bytes, max(ttl, 0.0), enabled)


# -- the store -------------------------------------------------------------------------------------


@attrs.frozen
class Entry:
    """One object in the index: a copy (whole, or the byte ``ranges`` held) or a known absence."""

    id: str
    path: str | None
    etag: str | None
    size: int
    stored: int
    ranges: tuple[tuple[int, int], ...] | None
    validated: float
    accessed: float

    @property
    def missing(self) -> bool:
        """The object was found not to exist."""
        return self.path is None

    @property
    def complete(self) -> bool:
        """The copy holds the whole object."""
        return self.path is not None and self.ranges is None


def _entry(row: Sequence[Any]) -> Entry:
    ranges = tuple(tuple(r) for r in json.loads(row[5])) if row[5] else None
    return Entry(row[0], row[1], row[2], int(row[3]), int(row[4]), ranges, float(row[6]), float(row[7]))  # type: ignore[arg-type]


_COLUMNS = "id, path, etag, size, stored, ranges, validated, accessed"


class LocalStore:
    """Copies of remote objects on local disk, with an SQLite index, bounded in size (LRU)."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._conn: Any = None
        self._pid = 0
        self._thread_locks = [threading.Lock() for _ in range(_STRIPES)]
        #: The last eviction left the store over its bound (objects of that read were pinned).
        self.over_bound = False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, max_bytes={self.max_bytes})"

    @property
    def index_path(self) -> Path:
        """The SQLite index."""
        return self.root / _INDEX

    # database ---------------------------------------------------------------------------------

    def _db(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            import sqlite3

            self.root.mkdir(parents=True, exist_ok=True)
            try:
                conn = self._connect()
            except sqlite3.DatabaseError:  # not a database (corrupt): start afresh, copies too
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.index_path}{suffix}")
                self._remove_copies()
                try:
                    conn = self._connect()
                except sqlite3.Error as exc:
                    raise LocalCacheError(f"The local read cache index {self.index_path} is unusable: {exc}") from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _connect(self) -> Any:
        import sqlite3

        conn = sqlite3.connect(str(self.index_path), timeout=60, isolation_level=None, check_same_thread=False)
        for _ in range(50):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:  # another process is switching it right now
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, path TEXT, etag TEXT, "
            "size INTEGER NOT NULL DEFAULT 0, stored INTEGER NOT NULL DEFAULT 0, ranges TEXT, "
            "validated REAL NOT NULL DEFAULT 0, accessed REAL NOT NULL DEFAULT 0)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS objects_accessed ON objects (accessed)")
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        import sqlite3

        with self._lock:
            try:
                conn = self._db()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise LocalCacheError(f"The local read cache index {self.index_path} failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        import sqlite3

        with self._lock:
            try:
                return self._db().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise LocalCacheError(f"The local read cache index {self.index_path} failed: {exc}") from exc

    # lookups ------------------------------------------------------------------------------------

    def lookup(self, oid: str) -> Entry | None:
        """The index entry of ``oid``."""
        rows = self._query(f"SELECT {_COLUMNS} FROM objects WHERE id = ?", (oid,))
        return _entry(rows[0]) if rows else None

    def lookup_many(self, oids: Sequence[str]) -> dict[str, Entry]:
        """The index entries of several ids (absent ids are left out)."""
        out: dict[str, Entry] = {}
        for i in range(0, len(oids), 500):
            chunk = list(oids[i:i + 500])
            marks = ", ".join("?" for _ in chunk)
            for row in self._query(f"SELECT {_COLUMNS} FROM objects WHERE id IN ({marks})", chunk):
                out[row[0]] = _entry(row)
        return out

    def file(self, entry: Entry) -> Path:
        """Where the copy of ``entry`` is."""
        return self.root / str(entry.path)

    def file_ok(self, entry: Entry) -> bool:
        """Whether the copy's file is there, with the object's size."""
        try:
            return os.stat(self.file(entry)).st_size == entry.size
        except OSError:
            return False

    def touch(self, oids: Iterable[str], now: float | None = None) -> None:
        """Record a use (for least-recently-used eviction; at most once a second per object)."""
        now = time.time() if now is None else now
        rows = [(now, oid, now - 1.0) for oid in oids]
        if rows:
            with self._transaction() as conn:
                conn.executemany("UPDATE objects SET accessed = ? WHERE id = ? AND accessed < ?", rows)

    # changes ------------------------------------------------------------------------------------

    def temp_file(self) -> Path:
        """A fresh temporary path inside the store (same filesystem: renames are atomic)."""
        folder = self.root / _TMP
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.part"

    def _relative_path(self, oid: str, etag: str | None) -> str:
        tag = hashlib.sha1((etag or "").encode()).hexdigest()[:12]
        parts = oid.split("/")
        rest = "/".join(parts[1:])
        safe = (all(p and p not in (".", "..") and len(p) < 200 for p in parts) and len(oid) < 900
                and not any(c in rest for c in ':\\\x00<>"|?*'))
        if not safe:
            return f"_hashed/{hashlib.sha1(oid.encode()).hexdigest()}.{tag}"
        parts[0] = parts[0].replace(":", "_")
        name = parts[-1]
        dot = name.rfind(".")
        parts[-1] = f"{name[:dot]}.{tag}{name[dot:]}" if dot > 0 else f"{name}.{tag}"
        return "/".join(parts)

    def commit(
        self,
        oid: str,
        temp: Path,
        etag: str | None,
        size: int,
        ranges: Sequence[tuple[int, int]] | None = None,
    ) -> Entry:
        """Move a downloaded file into place (atomically) and index it (call :meth:`evict` after)."""
        from bdc.backends.ranges import normalize, total

        rel = self._relative_path(oid, etag)
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        kept = normalize(ranges) if ranges is not None else None
        if kept is not None and kept == [(0, size)]:
            kept = None
        stored = total(kept) if kept is not None else size
        now = time.time()
        with self._transaction() as conn:
            old = conn.execute("SELECT path FROM objects WHERE id = ?", (oid,)).fetchone()
            conn.execute(
                f"INSERT OR REPLACE INTO objects ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (oid, rel, etag, size, stored, json.dumps(kept) if kept is not None else None, now, now),
            )
        if old and old[0] and old[0] != rel:
            self._unlink(old[0])
        return Entry(oid, rel, etag, size, stored, tuple(kept) if kept is not None else None, now, now)

    def add_ranges(self, entry: Entry, ranges: Sequence[tuple[int, int]]) -> Entry:
        """Record byte ranges written into a partial copy (complete when they cover it all)."""
        from bdc.backends.ranges import normalize, total, union

        held = union(entry.ranges or (), ranges)
        kept = None if held == [(0, entry.size)] else held
        stored = total(held)
        with self._transaction() as conn:
            conn.execute("UPDATE objects SET ranges = ?, stored = ?, accessed = ? WHERE id = ? AND etag IS ?",
                         (json.dumps(kept) if kept is not None else None, stored, time.time(), entry.id, entry.etag))
        return attrs.evolve(entry, ranges=tuple(normalize(kept)) if kept is not None else None, stored=stored)

    def validated(self, oids: Iterable[str], now: float | None = None) -> None:
        """The copies are known to be current as of ``now``."""
        now = time.time() if now is None else now
        rows = [(now, now, oid) for oid in oids]
        if rows:
            with self._transaction() as conn:
                conn.executemany("UPDATE objects SET validated = ?, accessed = ? WHERE id = ?", rows)

    def missing(self, oid: str) -> None:
        """The object does not exist (remembered like a copy, and revalidated like one)."""
        now = time.time()
        with self._transaction() as conn:
            old = conn.execute("SELECT path FROM objects WHERE id = ?", (oid,)).fetchone()
            conn.execute(f"INSERT OR REPLACE INTO objects ({_COLUMNS}) VALUES (?, NULL, NULL, 0, 0, NULL, ?, ?)",
                         (oid, now, now))
        if old and old[0]:
            self._unlink(old[0])

    def forget(self, oid: str) -> None:
        """Drop the entry and its copy."""
        with self._transaction() as conn:
            old = conn.execute("SELECT path FROM objects WHERE id = ?", (oid,)).fetchone()
            conn.execute("DELETE FROM objects WHERE id = ?", (oid,))
        if old and old[0]:
            self._unlink(old[0])

    def stale(self, oids: Iterable[str]) -> None:
        """The copies must be revalidated before their next use."""
        rows = [(oid,) for oid in oids]
        if rows:
            with self._transaction() as conn:
                conn.executemany("UPDATE objects SET validated = 0 WHERE id = ?", rows)

    def apply_manifest(self, prefix: str, etags: Mapping[str, str], keep: Iterable[str] = ()) -> int:
        """A registry just read lists ``etags``: copies under ``prefix`` with the listed ETag are
        current now, every other copy under it goes stale, and so does a remembered absence of an
        object the registry lists. (``keep`` ids are left alone.) Returns how many copies are fresh.
        """
        now = time.time()
        keep = list(keep)
        marks = ", ".join("?" for _ in keep) or "''"
        with self._transaction() as conn:
            conn.execute(f"UPDATE objects SET validated = 0 WHERE id >= ? AND id < ? AND path IS NOT NULL "
                         f"AND id NOT IN ({marks})", (prefix, prefix + "\U0010ffff", *keep))
            before = conn.total_changes
            conn.executemany("UPDATE objects SET validated = ? WHERE id = ? AND etag = ?",
                             [(now, oid, etag) for oid, etag in etags.items()])
            fresh = conn.total_changes - before
            conn.executemany("UPDATE objects SET validated = 0 WHERE id = ? AND path IS NULL",
                             [(oid,) for oid in etags])
            return fresh

    # size bound ---------------------------------------------------------------------------------

    def evict(self, pinned: Iterable[str] = ()) -> int:
        """Delete least recently used copies until the store is within its bound; returns how many.

        ``pinned`` ids (the objects of the read in progress) are kept even when over the bound.
        """
        pinned = set(pinned)
        victims: list[str] = []
        with self._transaction() as conn:
            used = conn.execute("SELECT COALESCE(SUM(stored), 0) FROM objects").fetchone()[0]
            self.over_bound = False
            if used <= self.max_bytes:
                return 0
            rows = conn.execute("SELECT id, path, stored FROM objects WHERE path IS NOT NULL ORDER BY accessed").fetchall()
            doomed = []
            for oid, path, stored in rows:
                if used <= self.max_bytes:
                    break
                if oid in pinned:
                    continue
                doomed.append((oid,))
                victims.append(path)
                used -= stored
            conn.executemany("DELETE FROM objects WHERE id = ?", doomed)
            # still over (the pinned read alone is bigger): trim again after this process's next read
            self.over_bound = used > self.max_bytes
        for path in victims:
            self._unlink(path)
        self._sweep_temp()
        return len(victims)

    def _sweep_temp(self, older_than: float = 3600.0) -> None:
        """Remove temporary files left by downloads that died (a crashed process) an hour ago."""
        cutoff = time.time() - older_than
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root / _TMP):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def _unlink(self, rel: str) -> None:
        path = self.root / rel
        with contextlib.suppress(OSError):  # already gone, or (Windows) still open somewhere
            path.unlink()
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    # housekeeping -------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the store holds: copies, bytes, the bound, and a breakdown by origin and bucket."""
        out: dict[str, Any] = {"root": str(self.root), "max_bytes": self.max_bytes, "objects": 0, "partial": 0,
                               "bytes": 0, "known_missing": 0, "buckets": []}
        if not self.index_path.exists():
            return out
        rows = self._query(
            "SELECT substr(id, 1, instr(id, '/') - 1) AS origin, "
            "substr(substr(id, instr(id, '/') + 1), 1, instr(substr(id, instr(id, '/') + 1), '/') - 1) AS bucket, "
            "SUM(path IS NOT NULL), SUM(path IS NOT NULL AND ranges IS NOT NULL), "
            "COALESCE(SUM(stored), 0), SUM(path IS NULL) FROM objects GROUP BY 1, 2 ORDER BY 1, 2")
        for origin, bucket, objects, partial, stored, missing in rows:
            out["objects"] += objects or 0
            out["partial"] += partial or 0
            out["bytes"] += stored or 0
            out["known_missing"] += missing or 0
            out["buckets"].append({"origin": origin, "bucket": bucket, "objects": objects or 0, "bytes": stored or 0})
        return out

    def clear(self) -> dict[str, int]:
        """Delete every copy and the index entries; returns how many objects and bytes went."""
        if not self.root.exists():
            return {"objects": 0, "bytes": 0}
        with self._transaction() as conn:
            count, used = conn.execute(
                "SELECT COUNT(path), COALESCE(SUM(stored), 0) FROM objects").fetchone()
            conn.execute("DELETE FROM objects")
        self._remove_copies()
        return {"objects": int(count), "bytes": int(used)}

    def _remove_copies(self) -> None:
        """Delete every file of the store but the index and the lock files."""
        import shutil

        for child in self.root.iterdir():
            if child.name.startswith(_INDEX) or child.name == _LOCKS:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()

    # locking ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, oid: str) -> Iterator[None]:
        """Exclusive right to download ``oid`` (across threads and processes; 64 stripes)."""
        stripe = int(hashlib.sha1(oid.encode()).hexdigest()[:8], 16) % _STRIPES
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: threads only (renames stay atomic)
            with self._thread_locks[stripe]:
                yield
            return
        folder = self.root / _LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{stripe:02d}.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


_stores: dict[tuple[str, int, int], LocalStore] = {}
_stores_lock = threading.Lock()


def get_store(config: Settings | None = None) -> LocalStore:
    """The process's store for ``config`` (default: the current settings)."""
    config = config or settings()
    key = (str(config.root), config.max_bytes, os.getpid())
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = LocalStore(config.root, config.max_bytes)
        return store


# -- reading through ------------------------------------------------------------------------------


@attrs.frozen
class LocalObject:
    """A local copy of a remote object: the whole object, or a sparse file holding some ranges.

    ``fetched``: the content came over the network during this read (it is new to this machine).
    """

    key: str
    path: str
    etag: str | None
    size: int
    complete: bool
    fetched: bool = False


class _Offline(Exception):
    """Internal: the remote store is unreachable; ``entry`` is the copy there is (maybe none)."""

    def __init__(self, error: BackendUnavailableError, entry: Entry | None):
        super().__init__(str(error))
        self.error = error
        self.entry = entry


_offline_until: dict[str, float] = {}


class ReadThrough:
    """Reads of a remote backend's objects through a :class:`LocalStore`."""

    def __init__(self, backend: Backend, store: LocalStore, ttl: float = DEFAULT_TTL):
        self.backend = backend
        self.store = store
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"ReadThrough({self.backend!r}, {self.store!r}, ttl={self.ttl})"

    # public ---------------------------------------------------------------------------------------

    def open(
        self,
        key: str,
        *,
        max_age: float | None = None,
        columns: Sequence[str] | None = None,
        expected_etag: str | None = None,
    ) -> LocalObject | None:
        """A local copy of ``key`` (``None``: no such object), holding at least ``columns``.

        ``max_age``: how old a validation may be (default: the freshness window; 0: revalidate).
        ``expected_etag``: the ETag a freshly read registry lists for the object (a copy with it
        needs no request).
        """
        expected = {key: expected_etag} if expected_etag is not None else None
        return self.open_many([key], max_age=max_age, columns=columns, expected=expected)[key]

    def open_many(
        self,
        keys: Sequence[str],
        *,
        max_age: float | None = None,
        columns: Sequence[str] | None = None,
        expected: Mapping[str, str | None] | None = None,
    ) -> dict[str, LocalObject | None]:
        """Local copies of several objects (downloads in parallel); ``None`` for absent objects."""
        max_age = self.ttl if max_age is None else max_age
        expected = expected or {}
        ids = {key: self.backend.object_id(key) for key in keys}
        entries = self.store.lookup_many(list(ids.values()))
        now = time.time()
        out: dict[str, LocalObject | None] = {}
        used: list[str] = []
        pending: list[str] = []
        for key in keys:
            entry = entries.get(ids[key])
            hit, local = (False, None) if entry is None else self._fresh_hit(key, entry, columns, expected.get(key), max_age, now)
            if hit:
                out[key] = local
                if entry is not None and entry.accessed < now - 1.0:
                    used.append(ids[key])
            else:
                pending.append(key)
        if used:
            self.store.touch(used, now)
        if not pending:
            if self.store.over_bound:
                self.store.evict(ids.values())
            return out
        pinned = set(ids.values())
        stale: list[str] = []
        failures: list[BaseException] = []

        def one(key: str) -> None:
            try:
                out[key] = self._open_one(key, ids[key], columns, expected.get(key), max_age)
            except _Offline as offline:
                local = self._usable_offline(key, offline.entry, columns)
                if local is False:
                    failures.append(BackendUnavailableError(
                        f"{offline.error} (no local copy of {self.backend.uri(key)} to fall back on)"))
                else:
                    out[key] = local
                    stale.append(key)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
                failures.append(exc)

        if len(pending) == 1:
            one(pending[0])
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(MAX_WORKERS, len(pending)), thread_name_prefix="bdc-fetch") as pool:
                list(pool.map(one, pending))
        self.store.evict(pinned)
        if failures:
            raise failures[0]
        if stale:
            warnings.warn(
                f"{self.backend.url} cannot be reached; answering from {len(stale)} local "
                f"cop{'y' if len(stale) == 1 else 'ies'} that may be stale (e.g. {self.backend.uri(stale[0])})",
                StaleCacheWarning, stacklevel=4)
        return {key: out[key] for key in keys}

    def read_bytes(self, key: str, *, max_age: float | None = None) -> tuple[bytes, bool]:
        """The bytes of ``key`` and whether they just came over the network; :class:`ObjectNotFoundError` if absent."""
        for attempt in (1, 2):
            local = self.open(key, max_age=max_age)
            if local is None:
                raise ObjectNotFoundError(f"{self.backend.url}: no object {key!r}")
            try:
                return Path(local.path).read_bytes(), local.fetched
            except FileNotFoundError:  # evicted by another process just now: fetch it again
                if attempt == 2:
                    raise ReadError(f"The local copy {local.path} of {self.backend.uri(key)} keeps vanishing") from None
            except OSError as exc:
                raise ReadError(f"Reading the local copy {local.path} of {self.backend.uri(key)} failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def view(self, max_age: float | None = None) -> ReadView:
        """A read-only backend-like view (``read_bytes``, ``uri``) reading through this cache."""
        return ReadView(self, max_age)

    def apply_manifest(self, prefix: str, etags: Mapping[str, str], keep: Iterable[str] = ()) -> int:
        """A registry just read lists these ETags for keys under ``prefix``: copies with them are
        current; every other copy under ``prefix`` must revalidate (``keep`` keys excepted)."""
        return self.store.apply_manifest(
            self.backend.object_id(prefix),
            {self.backend.object_id(k): v for k, v in etags.items()},
            [self.backend.object_id(k) for k in keep])

    # internals ------------------------------------------------------------------------------------

    def _is_fresh(self, key: str, entry: Entry, expected: str | None, max_age: float, now: float) -> bool:
        if entry.validated <= 0:
            return False
        if expected is not None and not entry.missing and entry.etag == expected:
            return True
        return now - entry.validated < max_age or (not entry.missing and is_immutable(key))

    def _partial_need(self, entry: Entry, columns: Sequence[str]) -> list[tuple[int, int]]:
        """The byte ranges of ``columns`` that a partial copy still lacks (from its own footer)."""
        import pyarrow.parquet as pq

        from bdc.backends.ranges import column_ranges, subtract

        try:
            metadata = pq.read_metadata(self.store.file(entry))
        except Exception as exc:  # a footer we cannot read: the copy is useless
            raise ReadError(f"the local copy {self.store.file(entry)} is unreadable: {exc}") from exc
        return subtract(column_ranges(metadata, columns, entry.size), entry.ranges or ())

    def _covers(self, entry: Entry, columns: Sequence[str] | None) -> bool:
        if entry.complete:
            return True
        if columns is None or entry.missing:
            return False
        try:
            return not self._partial_need(entry, columns)
        except ReadError:
            return False

    def _local(self, key: str, entry: Entry, fetched: bool = False) -> LocalObject:
        return LocalObject(key, str(self.store.file(entry)), entry.etag, entry.size, entry.complete, fetched)

    def _fresh_hit(self, key: str, entry: Entry, columns: Sequence[str] | None, expected: str | None,
                   max_age: float, now: float) -> tuple[bool, LocalObject | None]:
        """(True, copy or None) when the entry answers without any request."""
        if not self._is_fresh(key, entry, expected, max_age, now):
            return False, None
        if entry.missing:
            return True, None
        if not self.store.file_ok(entry) or not self._covers(entry, columns):
            return False, None
        return True, self._local(key, entry)

    def _usable_offline(self, key: str, entry: Entry | None, columns: Sequence[str] | None) -> LocalObject | None | bool:
        """What to answer without the network: a copy, ``None`` (known absent) or ``False`` (nothing)."""
        if entry is None:
            return False
        if entry.missing:
            return None
        if self.store.file_ok(entry) and self._covers(entry, columns):
            return self._local(key, entry)
        return False

    def _net(self, entry: Entry | None, call: Any, *args: Any, **kwargs: Any) -> Any:
        """A backend call; an unreachable backend becomes :class:`_Offline` (and is remembered)."""
        try:
            return call(*args, **kwargs)
        except BackendUnavailableError as exc:
            _offline_until[self.backend.url] = time.time() + OFFLINE_SECONDS
            raise _Offline(exc, entry) from exc

    def _open_one(self, key: str, oid: str, columns: Sequence[str] | None, expected: str | None,
                  max_age: float) -> LocalObject | None:
        with self.store.lock(oid):
            now = time.time()
            entry = self.store.lookup(oid)  # another process may have fetched it meanwhile
            if entry is not None and not entry.missing and not self.store.file_ok(entry):
                self.store.forget(oid)
                entry = None
            if entry is not None:
                hit, local = self._fresh_hit(key, entry, columns, expected, max_age, now)
                if hit:
                    self.store.touch([oid], now)
                    return local
                if not self._is_fresh(key, entry, expected, max_age, now):
                    if _offline_until.get(self.backend.url, 0) > now:
                        raise _Offline(BackendUnavailableError(f"{self.backend.url} was unreachable moments ago"), entry)
                    try:
                        entry, fetched = self._revalidate(key, entry)
                    except ObjectNotFoundError:
                        self.store.missing(oid)
                        return None
                    if fetched is not None:
                        return fetched
                if entry is not None and entry.missing:
                    return None
            try:
                if entry is not None:  # a fresh partial copy lacking some of what is needed
                    extended = self._extend(key, entry, columns)
                    if extended is not None:
                        return extended
                return self._download(key, oid, columns)
            except ObjectNotFoundError:
                self.store.missing(oid)
                return None

    def _revalidate(self, key: str, entry: Entry) -> tuple[Entry | None, LocalObject | None]:
        """One conditional request: (the entry, now validated, or None) and a new copy if fetched."""
        if entry.missing:
            return None, None
        if entry.complete:
            temp = self.store.temp_file()
            try:
                with open(temp, "wb") as fh:
                    got = self._net(entry, self.backend.fetch, key, fh, if_none_match=entry.etag)
                if got.status == 304:
                    self.store.validated([entry.id])
                    return attrs.evolve(entry, validated=time.time()), None
                new = self.store.commit(entry.id, temp, got.etag, got.size or got.written)
                return new, self._local(key, new, fetched=True)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
        info = self._net(entry, self.backend.info, key)
        if info.etag == entry.etag and info.size == entry.size:
            self.store.validated([entry.id])
            return attrs.evolve(entry, validated=time.time()), None
        self.store.forget(entry.id)
        return None, None

    def _extend(self, key: str, entry: Entry, columns: Sequence[str] | None) -> LocalObject | None:
        """Fetch what a fresh partial copy lacks (``None``: the object changed; download anew)."""
        from bdc.backends.ranges import coalesce

        if entry.complete:
            return self._local(key, entry)
        if columns is None:
            return None  # a whole read of a partial copy: one plain GET of the object is cheapest
        try:
            need = coalesce(self._partial_need(entry, columns), RANGE_GAP)
        except ReadError:
            self.store.forget(entry.id)
            return None
        path = self.store.file(entry)
        with open(path, "r+b") as fh:
            for start, end in need:
                fh.seek(start)
                got = self._net(entry, self.backend.fetch, key, fh, if_match=entry.etag, byte_range=(start, end))
                if got.status == 412:
                    self.store.forget(entry.id)
                    return None
                if got.written != end - start:
                    raise ReadError(f"{self.backend.uri(key)}: asked for bytes {start}-{end}, got {got.written}")
        entry = self.store.add_ranges(entry, need)
        return self._local(key, entry, fetched=True)

    def _download(self, key: str, oid: str, columns: Sequence[str] | None) -> LocalObject:
        """A first download: the whole object, or (a projected read of a large parquet object)
        its footer and the column chunks needed."""
        temp = self.store.temp_file()
        try:
            if columns is not None:
                entry = self._download_ranges(key, oid, temp, columns)
                if entry is not None:
                    return self._local(key, entry, fetched=True)
            with open(temp, "wb") as fh:
                got = self._net(None, self.backend.fetch, key, fh)
            entry = self.store.commit(oid, temp, got.etag, got.size or got.written)
            return self._local(key, entry, fetched=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def _download_ranges(self, key: str, oid: str, temp: Path, columns: Sequence[str]) -> Entry | None:
        """Tail first (the whole object if small); then the ranges ``columns`` need, when that is
        less than :data:`PARTIAL_SHARE` of the object. ``None``: download the whole object."""
        import io

        import pyarrow.parquet as pq

        from bdc.backends.ranges import TAIL_BYTES, coalesce, column_ranges, footer_length, subtract, total, union

        buffer = io.BytesIO()
        got = self._net(None, self.backend.fetch, key, buffer, tail=TAIL_BYTES)
        tail = buffer.getvalue()
        if got.status == 200:
            temp.write_bytes(tail)
            return self.store.commit(oid, temp, got.etag, len(tail))
        size, etag, start = int(got.size or 0), got.etag, got.start
        label = self.backend.uri(key)
        with open(temp, "w+b") as fh:
            fh.truncate(size)
            fh.seek(start)
            fh.write(tail)
            held = [(start, size)]
            footer = footer_length(tail, label)
            if footer > len(tail):
                begin = size - footer
                fh.seek(begin)
                more = self._net(None, self.backend.fetch, key, fh, if_match=etag, byte_range=(begin, start))
                if more.status == 412:
                    return None
                held = union(held, [(begin, start)])
            fh.flush()
            try:
                metadata = pq.read_metadata(temp)
            except Exception as exc:
                raise ReadError(f"{label} is not a readable parquet file: {exc}") from exc
            need = coalesce(subtract(column_ranges(metadata, columns, size), held), RANGE_GAP)
            if total(held) + total(need) >= PARTIAL_SHARE * size:
                return None
            for begin, end in need:
                fh.seek(begin)
                part = self._net(None, self.backend.fetch, key, fh, if_match=etag, byte_range=(begin, end))
                if part.status == 412:
                    return None
                if part.written != end - begin:
                    raise ReadError(f"{label}: asked for bytes {begin}-{end}, got {part.written}")
            held = union(held, need)
        return self.store.commit(oid, temp, etag, size, held)


class ReadView:
    """Backend-like reads (``read_bytes``, ``uri``) through a :class:`ReadThrough`, for the JSON
    documents (registry, version index); ``fetched`` tells whether any came over the network."""

    def __init__(self, reader: ReadThrough, max_age: float | None):
        self.reader = reader
        self.max_age = max_age
        self.fetched = False

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes (through the local cache)."""
        data, fetched = self.reader.read_bytes(key, max_age=self.max_age)
        self.fetched = self.fetched or fetched
        return data

    def uri(self, key: str) -> str:
        """The object's location in the remote store."""
        return self.reader.backend.uri(key)


_readers: dict[tuple[int, Settings, int], ReadThrough] = {}


def read_through(backend: Backend) -> ReadThrough | None:
    """The read-through cache for a remote backend (``None`` when ``BDC_LOCAL_CACHE=off``)."""
    config = settings()
    if not config.enabled:
        return None
    key = (id(backend), config, os.getpid())
    reader = _readers.get(key)
    if reader is None or reader.backend is not backend:
        if len(_readers) > 64:
            _readers.clear()
        reader = _readers[key] = ReadThrough(backend, get_store(config), config.ttl)
    return reader


def object_changed(backend: Backend, key: str) -> None:
    """``key`` was written or deleted through ``backend`` by this process: its local copy (if
    this machine holds one) must be revalidated before its next use. Never fails the write."""
    try:
        config = settings()
        if not config.enabled or not (config.root / _INDEX).exists():
            return
        get_store(config).stale([backend.object_id(key)])
    except Exception:  # noqa: BLE001 - the write succeeded; a broken local cache must not undo that
        return

