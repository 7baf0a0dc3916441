"""How runs and their numbers are written in one short line, the same in every face: a run picker's
entry (:func:`run_label`), a run's teacher (:func:`teacher_label`), a time as an age (:func:`age`), and a
table cell's value (:func:`fmt_value`, :func:`fmt_pct`).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.config import TEACHER_PREFIXES
from workbench.runs.store import Run, RunStoreError


def age(iso: str | None, now: datetime | None = None) -> str:
    """How long before ``now`` (default: the current time) an ISO-8601 time was, in one short word:
    ``42 s`` under 90 seconds, ``5 min`` under 90 minutes, ``3 h`` under two days, else ``2 d``.
    A time without a zone is read as UTC; an empty or unreadable time gives ``""``."""
    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    s = max(0.0, (now - then).total_seconds())
    for limit, unit, size in ((90, "s", 1), (5400, "min", 60), (172800, "h", 3600)):
        if s < limit:
            return f"{int(s // size)} {unit}"
    return f"{int(s // 86400)} d"


def fmt_value(value: Any) -> str:
    """A value for a table cell: floats to four significant digits (``n/a`` when not finite), lists
    to their first six items, ``None`` as ``-``, anything else as text of at most 120 characters."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple)):
        items = [fmt_value(v) for v in value[:6]]
        return "[" + ", ".join(items) + (", …]" if len(value) > 6 else "]")
    return str(value)[:120]


def fmt_pct(value: Any) -> str:
    """A fraction as a percentage with two decimals (``0.9712`` -> ``97.12%``); ``-`` for anything
    that is not a finite number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.2%}"
    return "-"


def run_label(run: Run) -> str:
    """One line naming a run for a picker: name (or id), kind, model, method, status, test accuracy
    when known, and the id's last four characters; the bare id for a run that cannot be read."""
    try:
        s = run.summary()
    except RunStoreError:
        return run.id
    acc = fmt_pct(s.get("test_acc"))
    acc_text = "" if acc == "-" else f" · {acc}"
    name = s.get("name") or run.id
    return f"{name} · {s.get('kind')} · {s.get('model')} · {s.get('method')} · {s.get('status')}{acc_text} ({run.id[-4:]})"


def teacher_label(run: Run) -> str:
    """How a run's first teacher is named: ``shipped:NAME``, ``run:ID``, a weights file's name, ``none``
    for a run without one, ``?`` when the run's config cannot be read."""
    try:
        teachers = run.config.teachers
    except RunStoreError:
        return "?"
    if not teachers:
        return "none"
    src = teachers[0].source
    return src if src.startswith(TEACHER_PREFIXES) else Path(src).name


__all__ = ["age", "fmt_pct", "fmt_value", "run_label", "teacher_label"]
