"""The small measures every rule shares: reading a number off the evidence, the two severity
curves, formatting, and the pieces of a finding (the evidence it shows, the thresholds it used)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from workbench.analysis.doctor.thresholds import DoctorThresholds

#: the evidence: one flat mapping of named numbers (see :mod:`workbench.analysis.doctor.evidence`)
Evidence = Mapping[str, Any]


def _num(ev: Evidence, name: str) -> float | None:
    """``ev[name]`` as a finite float, or ``None`` when absent or not a finite number."""
    v = ev.get(name)
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _beyond(value: float, threshold: float) -> float:
    """Severity of a "higher is worse" quantity at or above its positive threshold: ``1 - t / (2 v)``."""
    if value <= 0:
        return 0.5
    return float(min(1.0, max(0.5, 1.0 - threshold / (2.0 * value))))


def _below(value: float, threshold: float, floor: float) -> float:
    """Severity of a "lower is worse" quantity at or below its threshold, 1 at ``floor``."""
    if threshold <= floor:
        return 0.5
    return float(min(1.0, max(0.5, 0.5 + 0.5 * (threshold - value) / (threshold - floor))))


def _pct(value: float | None) -> str:
    return f"{100.0 * value:.1f}%" if value is not None and math.isfinite(value) else "n/a"


def _g(value: float | None) -> str:
    return f"{value:.3g}" if value is not None and math.isfinite(value) else "n/a"


def _pick(ev: Evidence, *names: str) -> dict[str, Any]:
    return {n: ev.get(n) for n in names if n in ev}


def _used(th: DoctorThresholds, *names: str) -> dict[str, Any]:
    return {n: getattr(th, n) for n in names}


def _far_below(ev: Evidence, th: DoctorThresholds) -> float | None:
    """The accuracy gap when the student is far below its teacher (failed runs count as far below)."""
    if ev.get("failed"):
        return 1.0
    gap = _num(ev, "gap")
    return gap if gap is not None and gap >= th.gap else None


def _kd_path(ev: Evidence) -> str | None:
    i = ev.get("kd_index")
    return None if i is None else f"distill.methods[{int(i)}]"

