"""Where the shipped assets live (embedded data subsets, shipped teachers)."""

from __future__ import annotations

import os
from pathlib import Path


def assets_dir() -> Path:
    """``$WORKBENCH_ASSETS`` if set, else the ``assets/`` folder beside the package."""
    env = os.environ.get("WORKBENCH_ASSETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "assets"


def teachers_dir() -> Path:
    """Folder of the shipped teachers: ``<assets>/teachers``."""
    return assets_dir() / "teachers"
