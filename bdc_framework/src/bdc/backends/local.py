"""``file:///path``: a cache on local disk; every write goes through a temp name and a rename."""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from bdc.backends.base import Backend, ObjectInfo, byte_view
from bdc.errors import BackendError, InvalidNameError, ObjectNotFoundError

__all__ = ["LocalBackend"]

_TMP_MARK = ".tmp-"


def _link_or_copy(source: str, target: str) -> None:
    """A hard link of ``source`` at ``target``, or a byte copy where links are not possible."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:
        import shutil

        shutil.copyfile(source, target)


def _create(path: str, folder: str, mode: str) -> IO[bytes]:
    """``open(path, mode)``, making ``folder`` when it is missing (one ``mkdir`` only then, not
    per write)."""
    try:
        return open(path, mode)  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return open(path, mode)  # noqa: SIM115


def _link_new(source: str, target: str, folder: str) -> bool:
    """Whether a hard link of ``source`` could be made at ``target`` (making its folder if that
    is missing); ``False`` when ``target`` exists, ``source`` does not or links are not possible."""
    try:
        os.link(source, target)
        return True
    except FileNotFoundError:
        if not os.path.isfile(source):
            return False
    except OSError:
        return False
    try:  # the target's folder is new
        os.makedirs(folder, exist_ok=True)
        os.link(source, target)
        return True
    except OSError:
        return False


def _root_from_url(url: str) -> Path:
    """The folder a ``file`` URL or a plain path names.

    ``file:///abs/path``, ``file://localhost/abs/path`` and ``file:/abs/path`` (the one-slash form
    urllib and pathlib accept) are the absolute path; a plain path is taken as it is (relative to
    the working directory, ``~`` expanded). A URL naming another host (``file://otherhost/...``)
    or a relative one (``file:folder``) is refused.
    """
    if "://" not in url and not url[:5].lower() == "file:":
        return Path(url).expanduser().resolve()
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BackendError(f"file URL {url!r} names a host; use file:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise BackendError(f"file URL {url!r} is not an absolute path; use file:///absolute/path")
    return Path(path).resolve()


class LocalBackend(Backend):
    """Objects as files below a root directory."""

    scheme = "file"

    def __init__(self, url: str):
        self.root = _root_from_url(url)
        self._root = str(self.root).rstrip(os.sep) + os.sep
        super().__init__(self.root.as_uri())

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The absolute path of ``key`` as text (checked: stays below the root)."""
        if not key or key.startswith("/") or "\\" in key or "\x00" in key:
            raise InvalidNameError(f"Invalid object key {key!r}")
        if any(part in ("..", ".") for part in key.split("/")):
            raise InvalidNameError(f"Invalid object key {key!r}")
        return self._root + key if os.sep == "/" else os.path.join(self._root, *key.split("/"))

    def read_bytes(self, key: str) -> bytes:
        """The file's bytes."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.url}: no object {key!r}") from None
        except IsADirectoryError:
            raise ObjectNotFoundError(f"{self.url}: {key!r} is a folder") from None
        except OSError as exc:
            raise BackendError(f"{self.url}: reading {key!r} failed: {exc}") from exc

    def open_write(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write to a temp file beside the target; rename it into place on a clean exit."""
        return self._open_write(key, atomic=True)

    def open_write_staged(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write a new file in place (no temp name, no rename): a staged key, read by no one
        before it is published. Removed on an exception. When something is already there (an
        earlier attempt at the same key, still running or not), the write goes through a temp
        name renamed over it, as :meth:`open_write` does: each writer's file is whole."""
        return self._open_write(key, atomic=False)

    @contextlib.contextmanager
    def _open_write(self, key: str, atomic: bool) -> Iterator[IO[bytes]]:
        path = self._file(key)
        folder, name = os.path.split(path)
        fh: IO[bytes] | None = None
        if not atomic:
            with contextlib.suppress(FileExistsError):  # taken: write whole, as open_write does
                fh = _create(path, folder, "xb")
        in_place = fh is not None
        target = path if in_place else os.path.join(folder, f".{name}{_TMP_MARK}{uuid.uuid4().hex}")
        if fh is None:
            fh = _create(target, folder, "wb")
        mine = os.fstat(fh.fileno()) if in_place else None
        try:
            with fh:
                yield fh
            if not in_place:
                os.replace(target, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                if mine is None:
                    os.unlink(target)
                elif os.path.samestat(os.stat(path), mine):  # not another writer's file since
                    os.unlink(path)
            raise

    def copy(self, source: str, target: str) -> None:
        """A hard link of ``source`` at ``target`` (no bytes copied; ``source`` stays).

        A new ``target`` is linked at its name directly (one call: the name appears with the
        whole file); one that exists is replaced through a link under a temp name renamed over it.
        Where links are not possible, a byte copy under the temp name.
        """
        src, path = self._file(source), self._file(target)
        folder, name = os.path.split(path)
        if _link_new(src, path, folder):
            return
        tmp = os.path.join(folder, f".{name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            try:
                _link_or_copy(src, tmp)
            except FileNotFoundError:
                if not os.path.isfile(src):
                    raise ObjectNotFoundError(f"{self.url}: no object {source!r}") from None
                os.makedirs(folder, exist_ok=True)  # the target's folder is new
                _link_or_copy(src, tmp)
            os.replace(tmp, path)
            # when ``target`` already is a link of ``source`` (a promotion made again after a
            # crash), the rename does nothing and leaves the temp name: drop it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete_prefix(self, prefix: str) -> int:
        """Delete every file under ``prefix`` (a folder prefix goes with its folders)."""
        if not prefix.endswith("/"):
            return super().delete_prefix(prefix)
        import shutil

        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(len(files) for _d, _s, files in os.walk(folder))
        shutil.rmtree(folder, ignore_errors=True)
        self._prune(folder.parent)
        return count

    def remove_temp_files(self, prefix: str) -> int:
        """Delete the temp files of writes a crash interrupted under ``prefix`` (and the folders
        they leave empty): a process killed between filling a temp file and renaming it leaves
        one, hidden from listings, forever. Only while no write is in progress there."""
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        removed = 0
        for dirpath, _dirs, files in os.walk(folder, topdown=False):
            for name in files:
                full = os.path.join(dirpath, name)
                if _TMP_MARK in name and os.path.relpath(full, self.root).replace(os.sep, "/").startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(full)
                        removed += 1
                        self._prune(Path(dirpath))
        return removed

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty (not the root)."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def holds(self, key: str, data: Any, info: ObjectInfo | None = None) -> bool:
        """Whether the file holds exactly ``data``: its size, then its bytes (one read)."""
        view = byte_view(data)
        if info is not None and info.size != len(view):
            return False
        try:
            fh = open(self._file(key), "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        with fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size != len(view):
                return False
            stored = fh.read(len(view) + 1)  # (a buffered read reads on until that or the end)
        return stored == view

    def info(self, key: str) -> ObjectInfo:
        """``stat`` of the file."""
        try:
            st = os.stat(self._file(key))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"{self.url}: no object {key!r}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(f"{self.url}: {key!r} is a folder")
        return ObjectInfo(key, st.st_size, st.st_mtime, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return os.path.isfile(self._file(key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Files under ``prefix`` (temp files of writes in progress are skipped)."""
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        out = []
        root = str(self.root).rstrip(os.sep) + os.sep
        for dirpath, _dirs, files in os.walk(folder):
            head = dirpath[len(root):].replace(os.sep, "/") + "/" if dirpath != root.rstrip(os.sep) else ""
            for name in files:
                if _TMP_MARK in name:
                    continue
                full = os.path.join(dirpath, name)
                key = head + name
                if not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(full)
                    out.append(ObjectInfo(key, st.st_size, st.st_mtime, f"{st.st_mtime_ns:x}-{st.st_size:x}"))
        out.sort(key=lambda o: o.key)
        return out

    def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty."""
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._prune(path.parent)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the file with ``O_EXCL``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True

    def uri(self, key: str) -> str:
        """The absolute path (DuckDB and pandas read it as is)."""
        return self._file(key.rstrip("/")) + ("/" if key.endswith("/") else "")

    def local_path(self, key: str) -> str | None:
        """The absolute path of ``key``."""
        return self._file(key)

    def arrow_filesystem(self) -> tuple[Any, str] | None:
        """pyarrow's local filesystem rooted here."""
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(self.root)
