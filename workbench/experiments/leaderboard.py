"""A methods leaderboard as an experiment: one group per distillation method (scratch always among
them) over seeds, and its rows — mean ± std per method, the gain over scratch and over KD with 95 %
intervals, sorted. The app's Leaderboard page builds and reads it; the rows come from the same
group statistics every compare view uses (:mod:`workbench.experiments.groups`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from workbench.distill import list_methods
from workbench.experiments.groups import RunGroup, baseline_comparison, group_table
from workbench.experiments.stats import metric_direction, metric_unit
from workbench.sweep.spec import SweepSpec, check_name
from workbench.validate import validate_run_config

#: the method names of the two baselines every other method is compared with
SCRATCH, KD = "none", "kd"


def _base(dataset: str, student: str, teacher: str, epochs: int, max_steps: int = 0) -> dict[str, Any]:
    train: dict[str, Any] = {"epochs": int(epochs), "snapshot_every_epoch": False}
    if max_steps:
        train["max_steps"] = int(max_steps)
    return {
        "kind": "distill",
        "data": {"dataset": dataset},
        "model": {"name": student},
        "teachers": [{"source": teacher}],
        "train": train,
    }


def _entry(method: str, ce_weight: float, weight: float) -> dict[str, Any]:
    """The ``distill`` section of one method's runs."""
    if method == SCRATCH:
        return {"ce_weight": 1.0, "methods": [{"name": SCRATCH, "weight": 1.0, "params": {}}]}
    return {"ce_weight": float(ce_weight), "methods": [{"name": method, "weight": float(weight), "params": {}}]}


def fitting_methods(dataset: str, student: str, teacher: str) -> list[str]:
    """The registered methods whose run on ``dataset`` with ``student`` and ``teacher`` is a valid config
    at their default parameters (``takd``, which needs its assistants named, is not)."""
    out = []
    for name in list_methods():
        try:
            validate_run_config({**_base(dataset, student, teacher, 1), "distill": _entry(name, 0.1, 0.9)})
        except ValueError:
            continue
        out.append(name)
    return out


def leaderboard_spec(
    name: str,
    *,
    dataset: str,
    student: str,
    teacher: str,
    epochs: int,
    methods: Sequence[str],
    seeds: Sequence[int],
    ce_weight: float,
    weight: float,
    max_steps: int = 0,
) -> SweepSpec:
    """The experiment of a leaderboard: one group per method (scratch ``none`` always among them)
    over ``seeds``, the grid over the ``distill`` section.

    Raises:
        SweepError: a name that is not a plain slug. ValueError: no method.
    """
    check_name(name, "experiment name")
    if not methods:
        raise ValueError("methods: pick at least one method")
    chosen = list(dict.fromkeys([SCRATCH, *methods]))
    return SweepSpec(
        name=name,
        config=_base(dataset, student, teacher, epochs, max_steps),
        grid={"distill": [_entry(m, ce_weight, weight) for m in chosen]},
        seeds=list(seeds),
    )


def method_of(group: RunGroup) -> str:
    """The method expression of a group (``kd``, ``0.9*dkd``, ``none``)."""
    return str(group.params.get("distill.methods", group.label))


def _name(group: RunGroup) -> str:
    return method_of(group).split("*")[-1].strip()


def _gain(diff: Any, scale: float) -> str:
    if diff is None or diff.n == 0:
        return ""
    if not diff.has_interval:
        return f"{diff.mean * scale:+.2f} (1 seed)"
    return f"{diff.mean * scale:+.2f} [{diff.low * scale:+.2f}, {diff.high * scale:+.2f}]"


def leaderboard_rows(
    groups: Sequence[RunGroup],
    metric: str = "test_acc",
    which: str = "last",
    *,
    link: Callable[[Sequence[RunGroup], str], str] | None = None,
) -> list[dict[str, Any]]:
    """One row per method, best first: its mean ± std over seeds of each run's ``which`` epoch, n,
    its gain over scratch and over KD (paired by seed, with the 95 % interval in brackets), the
    sentence against scratch, and (with ``link``, a face's ``link(groups, metric)``) a link to a view
    of its runs and the scratch runs. Accuracies
    are in points (× 100, :func:`workbench.experiments.metric_unit`)."""
    table = {row["group"]: row for row in group_table(groups, metric, which=which)}
    by_name = {_name(g): g for g in groups}
    scale = metric_unit(metric)[1]
    against = {}
    for base in (SCRATCH, KD):
        if base in by_name:
            against[base] = baseline_comparison(groups, by_name[base], metric, which)
    rows = []
    for group in groups:
        stats, name = table[group.label], _name(group)
        vs = {b: against.get(b, {}).get(group.label) for b in (SCRATCH, KD)}
        sentence = vs[SCRATCH].sentence(name, "scratch", metric) if vs[SCRATCH] is not None else ""
        rows.append(
            {
                "method": name,
                "objective": "CE" if name == SCRATCH else f"{group.params.get('distill.ce_weight', 1):g}·CE + {method_of(group)}",
                "mean": stats["mean"] * scale,
                "std": stats["std"] * scale,
                "n": stats["n"],
                "vs scratch": _gain(vs[SCRATCH], scale),
                "vs KD": _gain(vs[KD], scale),
                "in words": sentence,
                "runs": link([g for g in (group, by_name.get(SCRATCH)) if g is not None], metric) if link else "",
            }
        )
    sign = metric_direction(metric) or 1
    return sorted(rows, key=lambda r: -sign * r["mean"] if math.isfinite(r["mean"]) else math.inf)


__all__ = ["KD", "SCRATCH", "fitting_methods", "leaderboard_rows", "leaderboard_spec", "method_of"]
