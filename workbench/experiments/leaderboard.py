"""A methods leaderboard as an experiment: one group per distillation method (scratch always among
them) over seeds, and its rows — mean ± std per method, the gain over scratch and over KD with 95 %
intervals, sorted. The app's Leaderboard page builds and reads it; the rows come from the same
group statistics every compare view uses (:mod:`workbench.experiments.groups`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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


#: the objective each method is benchmarked with: ``(ce_weight, method weight, params)``, params only
#: where they differ from the method's defaults. KD-family methods follow Hinton et al. (2015)'s
#: 0.1 CE / 0.9 KD; feature and relation methods keep CE at 1 with their reference loss scale (built
#: into each method's defaults); DKD's warm-up is shortened to one epoch for short runs, DIST takes its
#: authors' CIFAR setting (T=4, beta=gamma=2). A method not listed (a plugin's) gets 1·CE + 1·method.
OBJECTIVES: dict[str, tuple[float, float, dict[str, Any]]] = {
    SCRATCH: (1.0, 1.0, {}),
    "kd": (0.1, 0.9, {}),
    "dkd": (1.0, 1.0, {"warmup": 1.0}),
    "dist": (1.0, 1.0, {"temperature": 4.0, "beta": 2.0, "gamma": 2.0}),
    "bdkd": (0.1, 0.9, {}),
    "multi_teacher": (0.1, 0.9, {"weighting": "confidence"}),
    "ban": (0.1, 0.9, {"generations": 2, "temperature": 4.0}),
    "takd": (0.1, 0.9, {}),
    "rdd": (0.1, 0.9, {}),
    "ema": (1.0, 1.0, {"momentum": 0.99}),
}


def method_entry(
    method: str,
    ce_weight: float | None = None,
    weight: float | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``distill`` section of one method's runs: its :data:`OBJECTIVES` entry, or ``ce_weight`` and
    ``weight`` for every method when given (scratch is always plain CE); ``params`` are added to the
    method's own (``takd``'s assistants, say)."""
    if method == SCRATCH:
        return {"ce_weight": 1.0, "methods": [{"name": SCRATCH, "weight": 1.0, "params": {}}]}
    own_ce, own_weight, own_params = OBJECTIVES.get(method, (1.0, 1.0, {}))
    return {
        "ce_weight": float(own_ce if ce_weight is None else ce_weight),
        "methods": [
            {
                "name": method,
                "weight": float(own_weight if weight is None else weight),
                "params": {**own_params, **(params or {})},
            }
        ],
    }


def objective_text(method: str, ce_weight: float, weight: float) -> str:
    """``CE`` for scratch, else ``0.1·CE + 0.9·kd``: how a row names its objective."""
    return "CE" if method == SCRATCH else f"{ce_weight:g}·CE + {weight:g}·{method}"


def fitting_methods(dataset: str, student: str, teacher: str) -> list[str]:
    """The registered methods whose run on ``dataset`` with ``student`` and ``teacher`` is a valid config
    at their default parameters (``takd``, which needs its assistants named, is not)."""
    out = []
    for name in list_methods():
        try:
            validate_run_config({**_base(dataset, student, teacher, 1), "distill": method_entry(name)})
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
    ce_weight: float | None = None,
    weight: float | None = None,
    max_steps: int = 0,
    config: Mapping[str, Any] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> SweepSpec:
    """The experiment of a leaderboard: one group per method (scratch ``none`` always among them)
    over ``seeds``, the grid over the ``distill`` section.

    Args:
        ce_weight, weight: one objective for every method; ``None`` (default) gives each method its
            own (:data:`OBJECTIVES`, the methods table's).
        config: sections laid over the base config (``optim``, ``schedule``, ``data`` options, the
            student's ``model.kwargs``), merged key by key.
        params: per method, parameters added to its own (``{"takd": {"assistants": [...]}}``).

    Raises:
        SweepError: a name that is not a plain slug. ValueError: no method.
    """
    check_name(name, "experiment name")
    if not methods:
        raise ValueError("methods: pick at least one method")
    chosen = list(dict.fromkeys([SCRATCH, *methods]))
    base = _merged(_base(dataset, student, teacher, epochs, max_steps), config or {})
    return SweepSpec(
        name=name,
        config=base,
        grid={"distill": [method_entry(m, ce_weight, weight, (params or {}).get(m)) for m in chosen]},
        seeds=list(seeds),
    )


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merged(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), dict)
            else value
        )
    return out


def method_of(group: RunGroup) -> str:
    """The method expression of a group (``kd``, ``0.9*dkd``, ``none``)."""
    return str(group.params.get("distill.methods", group.label))


def method_name(group: RunGroup) -> str:
    """The method of a group, without its weight (``kd``, ``none``)."""
    return method_of(group).split("*")[-1].strip()


def _weight_of(group: RunGroup) -> float:
    expression = method_of(group)
    return float(expression.split("*")[0]) if "*" in expression else 1.0


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
    by_name = {method_name(g): g for g in groups}
    scale = metric_unit(metric)[1]
    against = {}
    for base in (SCRATCH, KD):
        if base in by_name:
            against[base] = baseline_comparison(groups, by_name[base], metric, which)
    rows = []
    for group in groups:
        stats, name = table[group.label], method_name(group)
        vs = {b: against.get(b, {}).get(group.label) for b in (SCRATCH, KD)}
        sentence = vs[SCRATCH].sentence(name, "scratch", metric) if vs[SCRATCH] is not None else ""
        rows.append(
            {
                "method": name,
                "objective": objective_text(
                    name, float(group.params.get("distill.ce_weight", 1.0)), _weight_of(group)
                ),
                "mean": stats["mean"] * scale,
                "std": stats["std"] * scale,
                "n": stats["n"],
                "vs scratch": _gain(vs[SCRATCH], scale),
                "vs KD": _gain(vs[KD], scale),
                "in words": sentence,
                "runs": link([g for g in (group, by_name.get(SCRATCH)) if g is not None], metric)
                if link
                else "",
            }
        )
    sign = metric_direction(metric) or 1
    return sorted(rows, key=lambda r: -sign * r["mean"] if math.isfinite(r["mean"]) else math.inf)


__all__ = [
    "KD",
    "OBJECTIVES",
    "SCRATCH",
    "fitting_methods",
    "leaderboard_rows",
    "leaderboard_spec",
    "method_entry",
    "method_name",
    "method_of",
    "objective_text",
]
