"""Experiment results as files: a CSV of a group table, and JSON of the groups with their runs and
statistics. Both are plain text a spreadsheet or another program reads without the workbench."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from workbench.experiments.groups import RunGroup, run_value
from workbench.experiments.stats import ResultsError, metric_direction, seed_stats

__all__ = ["groups_csv", "groups_json"]


def _cell(value: Any) -> str:
    """One CSV cell: empty for ``None`` and non-finite numbers, lists joined by spaces."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, tuple)):
        return " ".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def groups_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """A group table (:func:`~workbench.experiments.groups.group_table`) as CSV text.

    Args:
        rows: dicts; the columns are every key in the order first seen.

    Returns:
        CSV with a header line; ``None`` and ``nan`` are empty cells, lists (seeds, run ids) are
        joined by spaces, numbers keep their full precision. No rows: an empty string.

    Raises:
        ResultsError: ``rows`` is not a sequence of mappings.
    """
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise ResultsError(f"rows: expected a list of table rows, got {type(rows).__name__}")
    columns: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ResultsError(f"rows[{i}]: expected a mapping, got {type(row).__name__}")
        columns.extend(str(k) for k in row if str(k) not in columns)
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        as_text = {str(k): v for k, v in row.items()}
        writer.writerow([_cell(as_text.get(c)) for c in columns])
    return out.getvalue()


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (strict JSON), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def groups_json(groups: Sequence[RunGroup], metric: str) -> dict[str, Any]:
    """The groups, their runs and their statistics on ``metric``, as one JSON-ready dict.

    Args:
        groups: from :func:`~workbench.experiments.groups.group_runs` (its ``skipped`` and ``varied``
            are included when present).
        metric: an epoch metric.

    Returns:
        ``{"metric", "better", "which", "varied", "skipped": [{"run", "reason"}], "groups": [{"label",
        "key", "params", "seeds", "runs": [{"id", "seed", "last", "best"}], "stats": {"last": {mean,
        std, min, max, n, dropped}, "best": {...}}}]}``; ``best`` only for a metric with a better
        direction (:func:`~workbench.experiments.stats.metric_direction`), ``nan`` as ``null``.
    """
    which = ["last", "best"] if metric_direction(metric) else ["last"]
    out_groups = []
    for group in groups:
        epochs = [m.get("epochs") or [] for m in group.metrics]
        values = {w: [run_value(e, metric, w) for e in epochs] for w in which}
        runs = [
            {"id": run.id, "seed": seed, **{w: values[w][i] for w in which}}
            for i, (run, seed) in enumerate(zip(group.runs, group.seeds, strict=True))
        ]
        stats = {w: seed_stats(v for v in values[w] if v is not None).to_dict() for w in which}
        out_groups.append(
            {
                "label": group.label,
                "key": dict(group.key),
                "params": dict(group.params),
                "seeds": list(group.seeds),
                "runs": runs,
                "stats": stats,
            }
        )
    result = {
        "metric": metric,
        "better": {1: "higher", -1: "lower"}.get(metric_direction(metric), ""),
        "which": which,
        "varied": list(getattr(groups, "varied", [])),
        "skipped": [{"run": r, "reason": why} for r, why in getattr(groups, "skipped", [])],
        "groups": out_groups,
    }
    return _plain(result)
