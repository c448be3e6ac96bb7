"""Version folders: ``bdc-v{MAJOR.MINOR}`` from the framework's version (patch releases share one)."""

from __future__ import annotations

import re

__all__ = ["framework_version", "version_folder", "parse_version_folder", "sort_version_folders"]

_FOLDER = re.compile(r"^bdc-v(\d+)\.(\d+)$")


def framework_version() -> str:
    """The installed bdc-framework version."""
    from bdc import __version__

    return __version__


def version_folder(version: str | None = None) -> str:
    """The folder for ``version`` (default: this framework's): ``0.36.2`` → ``bdc-v0.36``.

    Accepts a full semver, ``MAJOR.MINOR`` or a folder name.
    """
    import semver

    text = version or framework_version()
    if _FOLDER.match(text):
        return text
    text = text[1:] if text.startswith("v") else text
    if re.match(r"^\d+\.\d+$", text):
        text += ".0"
    parsed = semver.Version.parse(text)
    return f"bdc-v{parsed.major}.{parsed.minor}"


def parse_version_folder(folder: str) -> tuple[int, int] | None:
    """``bdc-v0.35`` → ``(0, 35)``; anything else → ``None``."""
    match = _FOLDER.match(folder)
    return (int(match[1]), int(match[2])) if match else None


def sort_version_folders(folders: list[str]) -> list[str]:
    """Sort and deduplicate version folders by version number (unknown names last, by text)."""
    unique = set(folders)
    return sorted(unique, key=lambda f: (parse_version_folder(f) is None, parse_version_folder(f) or (0, 0), f))
