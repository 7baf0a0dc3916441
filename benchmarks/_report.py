"""Write a benchmark's figures into its own section of docs/benchmarks.md (between markers),
leaving the other benchmarks' sections as they are."""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here is written by a script in `benchmarks/` (the command is under each section).
Speed claims are ratios against a baseline measured in the same run on the same machine, so
they hold across machines better than absolute times do. `make bench` runs them all.
"""


def machine() -> str:
    """One line describing where the figures were measured."""
    threads = torch.get_num_threads()
    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({threads} torch threads), torch {torch.__version__}, Python {platform.python_version()}, {date.today().isoformat()}"


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section ``key`` of docs/benchmarks.md with ``body``."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(DOC)
