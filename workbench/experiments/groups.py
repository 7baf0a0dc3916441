"""Runs grouped by their setting: every seed of one config is one group, reported as mean ± std.

:func:`group_runs` reads stored runs once (status, config, epoch metrics) and groups them by their
config with the seed, the name and the links (provenance: a sweep trial's links name its seed)
removed, and the fields that only say how a run is recorded (:data:`BOOKKEEPING`: data root,
teacher cache, snapshots, step-log cadence). A group's :attr:`RunGroup.key` holds the fields that
differ between the groups, as dotted paths (``{"distill.methods": "0.9*kd", "optim.lr": 0.1}``), and
its :attr:`RunGroup.label` says them in short (``"methods=0.9*kd, lr=0.1"``). A run that cannot be
read, or has not finished, is skipped and listed with its reason (:attr:`RunGroups.skipped`), never
fatal.

On the groups: :func:`group_table` (mean, std, min, max, n per group, of each run's last or best
epoch), :func:`run_table` (one row per run, for parameter views), :func:`epoch_bands` and
:func:`step_bands` (mean ± std curves) and :func:`baseline_comparison` (a paired difference by seed
against a baseline group).

How a config becomes fields: nested sections become dotted paths (``optim.lr``), lists of numbers or
words stay one value (``schedule.milestones``), lists of sections are indexed (``teachers[0].source``).
The methods are one value, their expression (``"0.9*kd + dist"``, a weight of 1 left out), and each
method's parameters a field ``distill.<method>.<param>`` (``distill.kd.temperature``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import one_line
from workbench.experiments.smoothing import ema
from workbench.experiments.stats import (
    PairedDifference,
    ResultsError,
    metric_direction,
    paired_difference,
    seed_stats,
)
from workbench.runs import Run, RunStoreError

__all__ = [
    "BOOKKEEPING",
    "WHICH",
    "Band",
    "RunGroup",
    "RunGroups",
    "baseline_comparison",
    "config_fields",
    "epoch_bands",
    "group_runs",
    "group_table",
    "method_expression",
    "run_table",
    "run_value",
    "step_bands",
]

#: which epoch of a run a table reports: its last epoch, or its best (max accuracy, min loss)
WHICH: tuple[str, ...] = ("last", "best")
_WHICH_LABEL = {"last": "last epoch", "best": "best epoch"}
_LEFT_OUT = ("seed", "name", "links")
#: fields that change how a run is recorded or where its files come from, never what it learns:
#: runs differing only there are one setting
BOOKKEEPING: tuple[str, ...] = (
    "data.root",
    "data.download",
    "distill.teacher_cache",
    "distill.cache_budget_mb",
    "train.snapshot_every_epoch",
    "train.step_log_every",
)


# ---- a config as fields ---------------------------------------------------------------------------


def method_expression(methods: Sequence[Mapping[str, Any]]) -> str:
    """The methods of a config as an expression: ``[{"name": "kd", "weight": 0.9}, {"name": "dist",
    "weight": 1.0}]`` -> ``"0.9*kd + dist"`` (a weight of 1 is left out)."""
    parts = []
    for m in methods:
        weight = float(m.get("weight", 1.0))
        parts.append(str(m["name"]) if weight == 1.0 else f"{weight:g}*{m['name']}")
    return " + ".join(parts)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out)
    else:
        out[path] = value


#: the teacher source of a chain's student taught by its own chain's previous run
CHAIN_TEACHER = "its chain's previous run"


def config_fields(config: Any) -> dict[str, Any]:
    """Every field of a run's config as ``{dotted path: value}``, without the seed, the name, the
    links and the :data:`BOOKKEEPING` fields (where data comes from, caching, snapshots, step-log
    cadence: they never change what a run learns); the methods as their expression and each
    method's parameters as ``distill.<method>.<param>`` (a second use of a name as ``<method>#2``).
    A chain's student taught by its own chain's previous run (TAKD's assistant, a BAN generation)
    has :data:`CHAIN_TEACHER` as that teacher's source: every seed trains its own, so the run id is
    not part of the setting.

    Args:
        config: a :class:`workbench.config.RunConfig` (or anything with pydantic's ``model_dump``).

    Returns:
        A flat dict of JSON values (numbers, text, booleans, ``None``, lists of those), in the
        config's order.
    """
    data = config.model_dump(mode="json", exclude=set(_LEFT_OUT))
    links = getattr(config, "links", None) or {}
    own = links.get("teacher_run") if str(links.get("chain_step", "0")) != "0" else None
    for teacher in data.get("teachers") or []:
        if own and teacher.get("source") == f"run:{own}":
            teacher["source"] = CHAIN_TEACHER  # each seed's own assistant: the same setting
    distill = dict(data.get("distill") or {})
    methods = distill.pop("methods", []) or []
    out: dict[str, Any] = {}
    for section, value in data.items():
        if section != "distill":
            _flatten(value, section, out)
            continue
        out["distill.methods"] = method_expression(methods)
        seen: dict[str, int] = {}
        for m in methods:
            name = str(m["name"])
            seen[name] = seen.get(name, 0) + 1
            tag = name if seen[name] == 1 else f"{name}#{seen[name]}"
            _flatten(m.get("params") or {}, f"distill.{tag}", out)
        _flatten(distill, "distill", out)
    for path in BOOKKEEPING:
        out.pop(path, None)
    return out


def _same(value: Any) -> str:
    """A comparable identity of a field's value (``1`` and ``1.0`` are the same)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _short_names(paths: Sequence[str]) -> dict[str, str]:
    """Each path's shortest dotted suffix that no other path ends with (``optim.lr`` -> ``lr``)."""
    out: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            name = ".".join(parts[-size:])
            if not any(p != path and (p == name or p.endswith("." + name)) for p in paths):
                break
        out[path] = name
    return out


# ---- reading runs ---------------------------------------------------------------------------------


@dataclass
class RunGroup:
    """The runs of one setting, one per seed.

    ``key``: the fields that differ between the groups of one :func:`group_runs` call (dotted path ->
    value; empty when all runs share one setting). ``label``: those fields in short, unique among
    the groups. ``runs`` and ``seeds``: aligned, ordered by seed. ``params``: every field of the
    shared config (:func:`config_fields`). ``metrics``: each run's ``metrics.json`` mapping as read
    when grouped (aligned with ``runs``; group again to see newer epochs).
    """

    key: dict[str, Any]
    label: str
    runs: list[Run]
    seeds: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """The run ids, aligned with :attr:`seeds`."""
        return [r.id for r in self.runs]

    def values(self, metric: str, which: str = "last") -> list[float | None]:
        """Each run's value of ``metric`` at its last or best epoch (:func:`run_value`), aligned with
        :attr:`runs`; ``None`` for a run that never logged it."""
        return [run_value(m.get("epochs") or [], metric, which) for m in self.metrics]

    def seed_values(self, metric: str, which: str = "last") -> dict[int, float]:
        """``{seed: value}`` of the runs that logged ``metric`` (for :func:`paired_difference`)."""
        return {s: v for s, v in zip(self.seeds, self.values(metric, which), strict=True) if v is not None}


class RunGroups(list[RunGroup]):
    """The list of :class:`RunGroup` that :func:`group_runs` returns, with what it left out.

    ``skipped``: ``(run id, one-line reason)`` of each run not grouped (damaged, unreadable, not
    finished, or a repeat of a seed already in its group). ``varied``: the dotted paths that differ
    between the groups (the keys of every group's ``key``).
    """

    def __init__(
        self,
        groups: Iterable[RunGroup] = (),
        skipped: Iterable[tuple[str, str]] = (),
        varied: Iterable[str] = (),
    ) -> None:
        super().__init__(groups)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.varied: list[str] = list(varied)


@dataclass
class _Read:
    run: Run
    seed: int
    fields: dict[str, Any]
    metrics: dict[str, Any]
    rank: tuple[bool, str, str]  # completed first, then finished (or created) last, then id


def _read(run: Any, finished_only: bool) -> _Read | str:
    """The run's seed, fields and metrics, or the one-line reason it is skipped."""
    try:
        status = run.status
        state = status.get("status")
        if state == "damaged":
            return f"damaged: {status.get('damage') or 'unreadable'}"
        if finished_only and state != "completed":
            return f"{state}: not finished"
        config = run.config
        metrics = run.metrics
        fields = config_fields(config)
    except (RunStoreError, ValueError, OSError, KeyError, TypeError, AttributeError) as err:
        return one_line(err, typed=not isinstance(err, ValueError))
    when = str(status.get("finished") or status.get("created") or "")
    rank = (state == "completed", when, str(run.id))
    return _Read(run=run, seed=int(config.seed), fields=fields, metrics=metrics, rank=rank)


def _varied(settings: list[dict[str, Any]]) -> list[str]:
    """The paths whose value differs between ``settings`` (a path one lacks counts as ``None``)."""
    paths: list[str] = []
    for fields in settings:
        paths.extend(p for p in fields if p not in paths)
    return [p for p in paths if len({_same(f.get(p)) for f in settings}) > 1]


def _setting_order(value: Any) -> tuple[int, float, str]:
    """Where a varied value sorts: none first (an absent value, and ``none``: no method, the scratch
    baseline), then numbers by size, then the rest by their text."""
    if value is None or value == "none":
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, _same(value))


def _fallback_label(fields: Mapping[str, Any]) -> str:
    """A group's label when nothing varies: its kind, model and (distilled) methods."""
    text = f"{fields.get('kind', 'run')} {fields.get('model.name', '')}".strip()
    if fields.get("kind") == "distill":
        text += f", {fields.get('distill.methods', '')}"
    return text


def group_runs(runs: Iterable[Any], *, finished_only: bool = True) -> RunGroups:
    """Group runs by their config without the seed, the name and the links.

    Args:
        runs: :class:`~workbench.runs.Run` objects (e.g. ``RunStore.list()``).
        finished_only: group only runs whose status is ``completed`` (default); ``False`` takes
            running, stopped and failed runs too, at the epochs they reached (live curves).

    Returns:
        :class:`RunGroups`: a list of :class:`RunGroup` sorted by their varied values, the methods
        first (scratch ``none`` before the rest; numbers by size; settings that tie keep the order of
        their first run), with
        ``skipped`` (run id, reason) for each run left out and ``varied`` (the differing paths).
        A seed a group already has (a run repeated) keeps one run: a completed one before an
        unfinished one, then the one finished last; the other is skipped as a repeat.
    """
    skipped: list[tuple[str, str]] = []
    order: list[str] = []
    by_setting: dict[str, dict[int, _Read]] = {}
    for run in runs:
        got = _read(run, finished_only)
        if isinstance(got, str):
            skipped.append((str(getattr(run, "id", run)), got))
            continue
        ident = json.dumps({k: _same(v) for k, v in got.fields.items()}, sort_keys=True)
        if ident not in by_setting:
            by_setting[ident] = {}
            order.append(ident)
        seeds = by_setting[ident]
        old = seeds.get(got.seed)
        if old is not None:
            keep, drop = (got, old) if got.rank >= old.rank else (old, got)
            skipped.append((drop.run.id, f"seed {got.seed} repeats run {keep.run.id} of the same setting"))
            got = keep
        seeds[got.seed] = got
    settings = [next(iter(by_setting[i].values())).fields for i in order]
    varied = _varied(settings)
    first = sorted(varied, key=lambda p: p != "distill.methods")  # by method (scratch first), then the rest
    ranked = sorted(
        zip(order, settings, strict=True),
        key=lambda pair: tuple(_setting_order(pair[1].get(p)) for p in first),
    )
    order, settings = [i for i, _ in ranked], [f for _, f in ranked]
    names = _short_names(varied)
    groups: list[RunGroup] = []
    labels: set[str] = set()
    for ident, fields in zip(order, settings, strict=True):
        key = {p: fields.get(p) for p in varied}
        label = ", ".join(f"{names[p]}={_shown(v)}" for p, v in key.items()) or _fallback_label(fields)
        base, count = label, 1
        while label in labels:
            count += 1
            label = f"{base} ({count})"
        labels.add(label)
        reads = [by_setting[ident][s] for s in sorted(by_setting[ident])]
        groups.append(
            RunGroup(
                key=key,
                label=label,
                runs=[r.run for r in reads],
                seeds=[r.seed for r in reads],
                params=dict(fields),
                metrics=[r.metrics for r in reads],
            )
        )
    return RunGroups(groups, skipped, varied)


# ---- values and tables ----------------------------------------------------------------------------


def _check_which(which: str, metric: str) -> None:
    if which not in WHICH:
        raise ResultsError(f"which: expected one of {', '.join(WHICH)}, got {which!r}")
    if which == "best" and metric_direction(metric) == 0:
        raise ResultsError(f"which: {metric!r} has no better direction, so no best epoch; use 'last'")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def run_value(epochs: Sequence[Mapping[str, Any]], metric: str, which: str = "last") -> float | None:
    """One run's value of ``metric``.

    Args:
        epochs: the run's epoch records (``metrics.json``'s ``epochs``).
        metric: an epoch metric (``test_acc``, ``ece``, ``loss/kd``, ...).
        which: ``"last"``: the last epoch that logged it (``nan`` stays ``nan``); ``"best"``: the best
            finite value over the epochs (the highest for accuracy, the lowest for a loss, by
            :func:`metric_direction`).

    Returns:
        The value, or ``None`` when no epoch logged ``metric`` (for ``best``: no finite value).

    Raises:
        ResultsError: ``which`` is not one of :data:`WHICH`, or ``best`` of a metric without a
            better direction (``lr``).
    """
    _check_which(which, metric)
    logged = [x for x in (_number(e.get(metric)) for e in epochs if isinstance(e, Mapping)) if x is not None]
    if not logged:
        return None
    if which == "last":
        return logged[-1]
    finite = [x for x in logged if np.isfinite(x)]
    if not finite:
        return None
    return max(finite) if metric_direction(metric) > 0 else min(finite)


def _better(metric: str) -> str:
    return {1: "higher", -1: "lower"}.get(metric_direction(metric), "")


def group_table(groups: Sequence[RunGroup], metric: str, *, which: str = "last") -> list[dict[str, Any]]:
    """One row per group: the spread over its seeds of each run's last or best ``metric``.

    Args:
        groups: from :func:`group_runs`.
        metric: an epoch metric.
        which: ``"last"`` (each run's final epoch) or ``"best"`` (each run's best epoch).

    Returns:
        Dicts with ``group`` (the label), the group's varied fields (dotted paths), ``metric``,
        ``which``, ``measure`` (``"test_acc, best epoch"``), ``mean``, ``std`` (``ddof=1``; ``nan``
        for one seed), ``min``, ``max``, ``n`` (runs with a finite value), ``dropped`` (runs whose
        value was not finite), ``missing`` (runs that never logged it), ``better`` (``higher``,
        ``lower`` or empty), ``seeds`` and ``runs`` (of the runs counted).
    """
    _check_which(which, metric)
    rows = []
    for group in groups:
        values = group.values(metric, which)
        stats = seed_stats(v for v in values if v is not None)
        counted = [i for i, v in enumerate(values) if v is not None and np.isfinite(v)]
        rows.append(
            {
                "group": group.label,
                **group.key,
                "metric": metric,
                "which": which,
                "measure": f"{metric}, {_WHICH_LABEL[which]}",
                "mean": stats.mean,
                "std": stats.std,
                "min": stats.min,
                "max": stats.max,
                "n": stats.n,
                "dropped": stats.dropped,
                "missing": sum(v is None for v in values),
                "better": _better(metric),
                "seeds": [group.seeds[i] for i in counted],
                "runs": [group.runs[i].id for i in counted],
            }
        )
    return rows


def run_table(groups: Sequence[RunGroup], metric: str, *, which: str = "last") -> list[dict[str, Any]]:
    """One row per run, for views of parameters against a metric (parallel coordinates, scatter).

    Returns:
        Dicts with ``run`` (id), ``group`` (label), ``seed``, the group's varied fields (dotted
        paths) and ``metric``'s value under the metric's own name (``None`` when the run never
        logged it).
    """
    _check_which(which, metric)
    rows = []
    for group in groups:
        for run, seed, value in zip(group.runs, group.seeds, group.values(metric, which), strict=True):
            rows.append({"run": run.id, "group": group.label, "seed": seed, **group.key, metric: value})
    return rows


def baseline_comparison(
    groups: Sequence[RunGroup],
    baseline: RunGroup | str,
    metric: str,
    which: str = "last",
    *,
    confidence: float = 0.95,
) -> dict[str, PairedDifference]:
    """Each group against a baseline group, seed by seed.

    Args:
        groups: from :func:`group_runs`.
        baseline: the baseline group, or its label (e.g. the scratch student, or KD).
        metric, which: the value compared (see :func:`run_value`).
        confidence: the interval's coverage.

    Returns:
        ``{group label: paired_difference(group, baseline)}`` for every group but the baseline, in
        order; each says ``group - baseline`` over their common seeds
        (:meth:`PairedDifference.sentence` with the two labels says it in words).

    Raises:
        ResultsError: ``baseline`` is not one of ``groups`` (the message names their labels), or
            a bad ``which``.
    """
    _check_which(which, metric)
    if isinstance(baseline, str):
        found = [g for g in groups if g.label == baseline]
        if not found:
            known = ", ".join(repr(g.label) for g in groups) or "none"
            raise ResultsError(f"baseline: no group labelled {baseline!r} (groups: {known})")
        base = found[0]
    elif any(g is baseline for g in groups):
        base = baseline
    else:
        raise ResultsError("baseline: expected one of the groups or its label")
    reference = base.seed_values(metric, which)
    return {
        g.label: paired_difference(g.seed_values(metric, which), reference, confidence=confidence)
        for g in groups
        if g is not base
    }


# ---- curves ---------------------------------------------------------------------------------------


@dataclass
class Band:
    """One group's curve over its runs: at each ``x`` the ``mean``, ``std`` (``ddof=1``, ``nan`` where
    one run), ``min``, ``max`` and ``n`` (runs with a value there).

    ``axis``: ``"epoch"`` or ``"step"``; ``alignment`` says how runs were put on one ``x`` (see
    :func:`epoch_bands`, :func:`step_bands`); ``runs`` the ids drawn. With a ``smoothing`` weight,
    ``smoothed`` is :func:`~workbench.experiments.smoothing.ema` of ``mean`` (else ``None``).
    """

    label: str
    metric: str
    axis: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n: np.ndarray
    runs: list[str]
    alignment: str
    smoothing: float = 0.0
    smoothed: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The band with arrays as lists."""
        out: dict[str, Any] = {}
        for name in ("label", "metric", "axis", "runs", "alignment", "smoothing"):
            out[name] = getattr(self, name)
        for name in ("x", "mean", "std", "min", "max", "n", "smoothed"):
            value = getattr(self, name)
            out[name] = None if value is None else np.asarray(value).tolist()
        return out


def _band(
    label: str,
    metric: str,
    axis: str,
    x: np.ndarray,
    columns: np.ndarray,
    runs: list[str],
    alignment: str,
    smoothing: float,
) -> Band:
    """The band of ``columns`` (runs × x, ``nan`` where a run has no value)."""
    have = np.isfinite(columns)
    n = have.sum(axis=0).astype(np.int64)
    safe = np.where(have, columns, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, safe.sum(axis=0) / np.maximum(n, 1), np.nan)
        sq = np.where(have, (columns - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(n > 1, np.sqrt(sq / np.maximum(n - 1, 1)), np.nan)
    lo = np.where(n > 0, np.where(have, columns, np.inf).min(axis=0, initial=np.inf), np.nan)
    hi = np.where(n > 0, np.where(have, columns, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    keep = n > 0
    x, mean, std, lo, hi, n = x[keep], mean[keep], std[keep], lo[keep], hi[keep], n[keep]
    smoothed = ema(mean, smoothing) if smoothing else None
    return Band(label, metric, axis, x, mean, std, lo, hi, n, runs, alignment, float(smoothing), smoothed)


def _check_smoothing(smoothing: float) -> None:
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        raise ResultsError(f"smoothing: expected a weight in [0, 1), got {smoothing!r}")


def epoch_bands(group: RunGroup, metric: str, *, smoothing: float = 0.0) -> Band:
    """``metric`` over epochs, mean ± std over the group's runs, aligned by epoch number.

    Args:
        group: a :class:`RunGroup`.
        metric: an epoch metric.
        smoothing: an EMA weight in ``[0, 1)`` for :attr:`Band.smoothed` (0: none).

    Returns:
        A :class:`Band` with ``x`` the epochs any run logged (a run that stopped early counts
        where it has values: ``n`` drops after its last epoch); non-finite values count as missing.
    """
    _check_smoothing(smoothing)
    series: list[dict[int, float]] = []
    for metrics in group.metrics:
        points: dict[int, float] = {}
        for pos, entry in enumerate(metrics.get("epochs") or [], start=1):
            value = _number(entry.get(metric)) if isinstance(entry, Mapping) else None
            if value is not None:
                points[int(_number(entry.get("epoch")) or pos)] = value
        series.append(points)
    x = np.asarray(sorted({e for s in series for e in s}), dtype=np.float64)
    columns = np.full((len(series), x.size), np.nan)
    for i, points in enumerate(series):
        for j, epoch in enumerate(x):
            columns[i, j] = points.get(int(epoch), np.nan)
    return _band(group.label, metric, "epoch", x, columns, group.ids, "by epoch", smoothing)


def _records(log: Any) -> Sequence[Mapping[str, Any]]:
    """A step log's records: a sequence of dicts, or an object with ``records`` (a ``StepLog``)."""
    records = getattr(log, "records", log)
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise ResultsError(
            f"logs: expected a list of step records or a step log, got {type(log).__name__}"
        )
    return records


def _step_series(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``metric``, sorted by step, the last record of a repeated step kept."""
    points: dict[float, float] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        step, value = _number(record.get("step")), _number(record.get(metric))
        if step is not None and value is not None and np.isfinite(step) and np.isfinite(value):
            points[step] = value
    steps = np.asarray(sorted(points), dtype=np.float64)
    return steps, np.asarray([points[s] for s in steps], dtype=np.float64)


def step_bands(
    group: RunGroup,
    metric: str,
    logs: Mapping[str, Any] | Sequence[Any],
    *,
    smoothing: float = 0.0,
) -> Band:
    """``metric`` over training steps, mean ± std over the group's runs.

    Runs that logged at the same steps are aligned step by step (``alignment`` ``"same steps"``).
    Where their steps differ, each run is linearly interpolated onto the union of all runs' steps,
    only inside its own first-to-last logged step (never extrapolated), so ``n`` at a step counts
    the runs that cover it (``alignment`` ``"interpolated on the union of steps"``).

    Args:
        group: a :class:`RunGroup`.
        metric: a step metric (``loss``, ``loss/kd``, ``lr``, ``batch_acc``, ``images_per_s``).
        logs: each run's step records (dicts with ``step`` and the metric; or an object with
            ``records``, e.g. ``Run.step_metrics()``), by run id or aligned with ``group.runs``; a
            run without a log, or without the metric, is left out.
        smoothing: an EMA weight in ``[0, 1)`` for :attr:`Band.smoothed` (0: none).

    Returns:
        A :class:`Band` over steps (empty arrays when no run logged ``metric``).
    """
    _check_smoothing(smoothing)
    if isinstance(logs, Mapping):
        pairs = [(run.id, logs.get(run.id)) for run in group.runs]
    elif isinstance(logs, Sequence) and not isinstance(logs, (str, bytes)):
        if len(logs) != len(group.runs):
            raise ResultsError(
                f"logs: expected {len(group.runs)} step logs (one per run), got {len(logs)}"
            )
        pairs = list(zip(group.ids, logs, strict=True))
    else:
        raise ResultsError(
            f"logs: expected step logs by run id or a list of them, got {type(logs).__name__}"
        )
    series = []
    for run_id, log in pairs:
        if log is None:
            continue
        steps, values = _step_series(_records(log), metric)
        if steps.size:
            series.append((run_id, steps, values))
    if not series:
        empty = np.zeros(0)
        return _band(group.label, metric, "step", empty, np.zeros((0, 0)), [], "same steps", smoothing)
    same = all(np.array_equal(series[0][1], s[1]) for s in series[1:])
    x = series[0][1] if same else np.unique(np.concatenate([s[1] for s in series]))
    columns = np.full((len(series), x.size), np.nan)
    for i, (_, steps, values) in enumerate(series):
        inside = (x >= steps[0]) & (x <= steps[-1])
        columns[i, inside] = np.interp(x[inside], steps, values)
    alignment = "same steps" if same else "interpolated on the union of steps"
    return _band(group.label, metric, "step", x, columns, [s[0] for s in series], alignment, smoothing)
