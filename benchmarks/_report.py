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


def load_note(before: float) -> str:
    """One sentence on the machine's load for a section: ``before`` is the 1-minute load average
    taken when the benchmark started. Under 1 the machine was quiet (the benchmark's own threads
    raise the average while it runs, up to the number of torch threads); above, other work shared
    the cores and the seconds are noisy, while ratios of interleaved timings hold better."""
    now = os.getloadavg()[0]
    if before < 1.0:
        return (
            f"Load: a quiet machine (1-minute load average {before:.1f} when the run started, {now:.1f} at the "
            f"end with the benchmark's own {torch.get_num_threads()} threads busy)."
        )
    return (
        f"Load: other work shared the cores (1-minute load average {before:.1f} when the run started, "
        f"{now:.1f} at the end), so the seconds are noisy; ratios come from timings interleaved in one run."
    )
