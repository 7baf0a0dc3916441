"""The memory budget: how many bytes one dataset or one model may take before it is refused.

Everything the workbench holds in memory is sized from its description before it is allocated
(a dataset from its file headers or options, a model from its architecture), and compared with
:func:`memory_budget_bytes`: ``$WORKBENCH_MEMORY_BUDGET_MB`` megabytes when that is set, else
half of the memory the operating system reports as available (``MemAvailable`` of
``/proc/meminfo`` on Linux, free physical pages elsewhere), else 4 GiB when nothing can be read.
A request over the budget fails with a one-line message naming what was asked for, the estimate
and the budget, instead of exhausting the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.data.errors import DataError

BUDGET_ENV = "WORKBENCH_MEMORY_BUDGET_MB"
#: share of the available memory one dataset or one model may take
BUDGET_FRACTION = 0.5
_FALLBACK_BYTES = 4 << 30
_MB = 1 << 20


class MemoryBudgetError(DataError):
    """``$WORKBENCH_MEMORY_BUDGET_MB`` is set to something that is not a positive number."""


def available_memory_bytes() -> int | None:
    """Bytes of memory the operating system says can be allocated now, or ``None`` if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            value = os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if value > 0:
            return int(value)
    return None


def memory_budget_bytes() -> int:
    """The budget in bytes: ``$WORKBENCH_MEMORY_BUDGET_MB`` MB, else half the available memory.

    Raises :class:`MemoryBudgetError` (one line naming the variable) when the variable is set
    but is not a positive number.
    """
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            mb = float("nan")
        if not (mb > 0 and mb != float("inf")):
            raise MemoryBudgetError(
                f"{BUDGET_ENV}: expected a positive number of megabytes, got {raw[:40]!r}"
            )
        return max(1, int(mb * _MB))
    available = available_memory_bytes()
    return int(available * BUDGET_FRACTION) if available else _FALLBACK_BYTES


def budget_source() -> str:
    """Where the budget comes from, for messages."""
    if os.environ.get(BUDGET_ENV, "").strip():
        return f"set by {BUDGET_ENV}"
    return f"half the available memory; set {BUDGET_ENV} to change it"


def format_bytes(n: int | float) -> str:
    """``n`` bytes as a short human figure: ``"512 B"``, ``"3.1 MB"``, ``"7.5 GB"`` (powers of 1024)."""
    try:
        value = float(n)
    except OverflowError:
        return ">1e300 B"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1024 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PB"  # pragma: no cover - the loop returns


def over_budget(nbytes: int | float) -> str | None:
    """``None`` when ``nbytes`` fits the budget, else the end of an error message saying by how much.

    Example: ``"needs about 7.5 GB of memory, over the budget of 2.0 GB (half the available memory;
    set WORKBENCH_MEMORY_BUDGET_MB to change it)"``.
    """
    budget = memory_budget_bytes()
    if nbytes <= budget:
        return None
    return (
        f"needs about {format_bytes(nbytes)} of memory, over the budget of {format_bytes(budget)} "
        f"({budget_source()})"
    )
