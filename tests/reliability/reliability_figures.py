"""Where the reliability tests leave their figures (``bench/reliability.py`` collects them)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["figures_dir", "write_figures"]


def figures_dir() -> Path | None:
    """``$BDC_RELIABILITY_FIGURES_DIR`` (else ``$BDC_RELIABILITY_FIGURES`` when it is a folder), or ``None``."""
    target = os.environ.get("BDC_RELIABILITY_FIGURES_DIR") or os.environ.get("BDC_RELIABILITY_FIGURES")
    if not target or target.endswith(".json"):
        return None
    return Path(target)


def write_figures(name: str, data: dict[str, Any]) -> None:
    """Print ``data`` and, when a figures folder is set, write it there as ``{name}.json``."""
    print(f"\n{name} figures: {json.dumps(data, default=str)}")
    folder = figures_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
