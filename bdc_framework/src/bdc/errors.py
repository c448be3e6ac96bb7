"""The errors bdc raises. Every one derives from :class:`BdcError`."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BdcError",
    "InvalidNameError",
    "UnknownTableError",
    "TableNotBuiltError",
    "build_command",
    "ObjectNotFoundError",
    "BackendError",
    "BackendUnavailableError",
    "ReadError",
    "SchemaMismatchError",
    "PluginError",
    "PluginLoadError",
    "TableCollisionError",
    "SpecError",
    "LockHeldError",
]


class BdcError(Exception):
    """Base class of every error bdc raises on purpose."""


class InvalidNameError(BdcError, ValueError):
    """A table name, custom name, column name or partition value that may not reach a path or query."""


class UnknownTableError(BdcError, KeyError):
    """No installed plugin declares a table of this name (the message lists close matches)."""

    def __init__(self, name: str, installed: Iterable[str], suggestions: Iterable[str] = ()):
        self.name = name
        self.installed = sorted(installed)
        self.suggestions = list(suggestions)
        hint = f" Did you mean {', '.join(map(repr, self.suggestions))}?" if self.suggestions else ""
        listing = ", ".join(self.installed) if self.installed else "(none: is a table plugin installed?)"
        super().__init__(f"Unknown table {name!r}.{hint} Installed tables: {listing}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def build_command(name: str, cache_url: str, version_folder: str) -> str:
    """The ``bdc-sync`` command that builds table ``name`` into ``version_folder`` of a cache.

    ``--version`` is given when the folder is not the one this release builds by default
    (bdc-sync builds any version folder, with the tables as this release defines them).
    """
    import shlex

    from bdc.versioning import parse_version_folder, version_folder as default_folder

    command = f"bdc-sync --cache {shlex.quote(cache_url)}"
    if version_folder != default_folder():
        parsed = parse_version_folder(version_folder)
        command += f" --version {parsed[0]}.{parsed[1]}" if parsed else f" --version {shlex.quote(version_folder)}"
    return f"{command} --only {shlex.quote(name)}"


class TableNotBuiltError(BdcError, LookupError):
    """The table is declared but has not been published in this cache yet."""

    def __init__(self, name: str, cache_url: str, version_folder: str):
        self.name = name
        self.cache_url = cache_url
        self.version_folder = version_folder
        super().__init__(
            f"Table {name!r} has not been built in cache {cache_url} ({version_folder}). "
            f"Build it with: {build_command(name, cache_url, version_folder)}"
        )


class ObjectNotFoundError(BdcError, FileNotFoundError):
    """A backend object does not exist (a genuine "not found", never a failed read)."""


class BackendError(BdcError, OSError):
    """A backend operation failed for a reason other than "not found"."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached at all (no network, endpoint down, connection timed out)."""


class ReadError(BdcError):
    """Reading a published object failed (corrupt file, unreadable registry, ...)."""


class SchemaMismatchError(BdcError):
    """Data given for a table does not match its declared columns."""


class SpecError(BdcError, ValueError):
    """A table spec is inconsistent (missing build function, bad type text, ...)."""


class PluginError(BdcError):
    """A plugin misbehaved."""


class PluginLoadError(PluginError):
    """A plugin entry point failed to import (names the distribution)."""

    def __init__(self, entry_point: str, distribution: str, error: BaseException):
        self.entry_point = entry_point
        self.distribution = distribution
        self.error = error
        super().__init__(
            f"Plugin {entry_point!r} from distribution {distribution!r} failed to load: "
            f"{type(error).__name__}: {error}"
        )


class TableCollisionError(PluginError):
    """Two plugins declare the same table name or alias."""

    def __init__(self, name: str, first: str, second: str):
        self.name = name
        self.providers = (first, second)
        super().__init__(f"Table name {name!r} is declared by both {first!r} and {second!r}")


class LockHeldError(BdcError):
    """Another sync holds the cache's lock."""
