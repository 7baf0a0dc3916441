"""Views of a run's metrics over epochs and over steps: accuracy, agreement, KL and ECE curves, the
loss terms stacked, several runs compared on one metric, and step curves that grow while runs train.

Input is a run's metrics as the run store keeps them: the mapping of ``metrics.json``
(``{"epochs": [...], "summary": {...}, "teacher": {...}}``), the list of per-epoch dictionaries
alone (keys such as ``epoch``, ``test_acc``, ``train_acc``, ``agreement``,
``kl_teacher_student``, ``ece``, ``loss/<term>``), or any object with such a ``metrics`` attribute
(a stored run). The step views take a run's step records (``steps.jsonl``: ``step``, ``epoch``,
``loss``, ``loss/<term>``, ``lr``, ``batch_acc``, ``images_per_s``, ``time``), as a list of dicts or
a ``StepLog`` (``Run.step_metrics()``).

Epoch axes tick at whole epochs only (:func:`epoch_ticks`): a 2-epoch run has no tick at 1.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.theme import (
    NEUTRAL_COLOR,
    STUDENT_COLOR,
    TEACHER_COLOR,
    VizError,
    class_color,
    role_color,
    style_figure,
)

__all__ = [
    "EPOCH_COUNTERPART",
    "compare_runs",
    "epoch_ticks",
    "loss_terms",
    "metric_series",
    "step_curves",
    "step_series",
    "training_curves",
]

MetricsLike = Mapping[str, Any] | Sequence[Mapping[str, Any]] | Any

#: the epoch metric that is a step metric averaged over an epoch (``loss/<term>`` is its own):
#: :func:`step_curves` draws it as one point at each epoch's last step
EPOCH_COUNTERPART: dict[str, str] = {"loss": "train_loss", "batch_acc": "train_acc", "lr": "lr"}


def epoch_ticks(last_epoch: float) -> dict[str, Any]:
    """The x-axis settings of an epoch axis ending at ``last_epoch``: ticks at whole epochs only,
    every epoch up to 10 epochs, then every ``ceil(last / 10)`` epochs (``tick0=0``, ``dtick``)."""
    last = float(last_epoch) if np.isfinite(last_epoch) else 1.0
    return {"tick0": 0, "dtick": max(1, int(np.ceil(last / 10)))}


def _last_epoch(epochs: Sequence[Mapping[str, Any]]) -> float:
    numbers = [float(e.get("epoch", pos)) for pos, e in enumerate(epochs, start=1)]
    return max(numbers) if numbers else 1.0


def _unpack(metrics: MetricsLike, name: str = "metrics") -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    """``(per-epoch list, teacher metrics)`` from any accepted form."""
    if not isinstance(metrics, (Mapping, Sequence)) and hasattr(metrics, "metrics"):
        metrics = metrics.metrics
    if isinstance(metrics, Mapping):
        if "epochs" not in metrics:
            raise VizError(
                f"{name}: expected a run's metrics with an 'epochs' list, got keys {', '.join(metrics)}"
            )
        epochs, teacher = metrics["epochs"], dict(metrics.get("teacher") or {})
    elif isinstance(metrics, Sequence) and not isinstance(metrics, (str, bytes)):
        epochs, teacher = metrics, {}
    else:
        raise VizError(
            f"{name}: expected a run, its metrics mapping or a list of epoch dicts, got {type(metrics).__name__}"
        )
    if not all(isinstance(e, Mapping) for e in epochs):
        raise VizError(f"{name}: every epoch entry must be a mapping of metric names to numbers")
    return list(epochs), teacher


def metric_series(epochs: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch numbers, values)`` of ``key`` over the epochs that logged it (epoch numbers from the
    ``epoch`` field, else 1, 2, ...)."""
    xs, ys = [], []
    for pos, entry in enumerate(epochs, start=1):
        if key in entry and entry[key] is not None:
            xs.append(int(entry.get("epoch", pos)))
            ys.append(float(entry[key]))
    return np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.float64)


_PANELS = (
    (
        "accuracy",
        (
            ("test_acc", "student test", STUDENT_COLOR, "solid"),
            ("train_acc", "student train", STUDENT_COLOR, "dot"),
        ),
    ),
    ("agreement with the teacher", (("agreement", "agreement", NEUTRAL_COLOR, "solid"),)),
    ("KL(teacher ‖ student)", (("kl_teacher_student", "KL", NEUTRAL_COLOR, "solid"),)),
    ("ECE", (("ece", "student ECE", STUDENT_COLOR, "solid"),)),
)


def _epoch_line(x: object, y: object, name: str, line: dict[str, str]) -> go.Scatter:
    """One metric over epochs as a line with markers, its value to four decimals on hover."""
    return go.Scatter(
        x=x,
        y=y,
        mode="lines+markers",
        name=name,
        line=line,
        hovertemplate="epoch %{x}: %{y:.4f}<extra>" + name + "</extra>",
    )


def training_curves(
    metrics: MetricsLike, *, teacher_accuracy: float | None = None, title: str | None = None
) -> go.Figure:
    """Accuracy, agreement with the teacher, KL(teacher ‖ student) and ECE over epochs, a panel each.

    Args:
        metrics: a run (with ``.metrics``), its metrics mapping, or the list of epoch dicts.
        teacher_accuracy: the teacher's test accuracy, drawn as a dashed level in the accuracy panel;
            default ``metrics["teacher"]["teacher_test_acc"]`` when the mapping has it.
        title: figure title.

    Returns:
        A 2x2 grid; a ``Scatter`` per logged series (``test_acc`` and ``train_acc`` in the accuracy
        panel, then ``agreement``, ``kl_teacher_student``, ``ece``), keys absent from every epoch are
        left out, then the teacher level as a last ``Scatter`` when known. The x axes tick at whole
        epochs (:func:`epoch_ticks`); only the lower row's are titled ``epoch``, so no axis title
        runs into a panel's title.
    """
    epochs, teacher = _unpack(metrics)
    if teacher_accuracy is None and "teacher_test_acc" in teacher:
        teacher_accuracy = float(teacher["teacher_test_acc"])
    # the upper row's axes carry no title: "epoch" under them ran into the lower panels' titles
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[0] for p in _PANELS], vertical_spacing=0.16)
    ticks = epoch_ticks(_last_epoch(epochs))
    for i, (_, series) in enumerate(_PANELS):
        row, col = i // 2 + 1, i % 2 + 1
        for key, label, color, dash in series:
            x, y = metric_series(epochs, key)
            if x.size:
                fig.add_trace(
                    _epoch_line(x, y, label, {"color": color, "dash": dash}),
                    row=row,
                    col=col,
                )
        fig.update_xaxes(title_text="epoch" if row == 2 else None, row=row, col=col, **ticks)
    if teacher_accuracy is not None:
        x, _ = metric_series(epochs, "test_acc")
        span = [int(x.min()), int(x.max())] if x.size else [1, max(len(epochs), 1)]
        fig.add_trace(
            go.Scatter(
                x=span,
                y=[teacher_accuracy] * 2,
                mode="lines",
                name="teacher test",
                line={"color": TEACHER_COLOR, "dash": "dash"},
                hovertemplate="teacher: %{y:.4f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    return style_figure(fig, title if title is not None else "Training curves", height=560)


def loss_terms(metrics: MetricsLike, *, title: str | None = None) -> go.Figure:
    """The logged loss terms ``loss/<term>`` (already weighted, as they enter the objective) stacked
    over epochs, so the share of each term in the total is visible at a glance.

    Returns:
        One filled ``Scatter`` per term (in order of first appearance), stacked, ``x`` = epochs,
        ``y`` = the term's epoch mean.
    """
    epochs, _ = _unpack(metrics)
    keys: list[str] = []
    for entry in epochs:
        keys.extend(k for k in entry if k.startswith("loss/") and k not in keys)
    if not keys:
        raise VizError("metrics: no loss/<term> entries in any epoch; nothing to stack")
    fig = go.Figure()
    for i, key in enumerate(keys):
        x, y = metric_series(epochs, key)
        term = key.split("/", 1)[1]
        color = NEUTRAL_COLOR if term == "ce" else class_color(i)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=term,
                stackgroup="loss",
                line={"color": color},
                hovertemplate="epoch %{x}: %{y:.4f}<extra>" + term + "</extra>",
            )
        )
    fig.update_xaxes(title_text="epoch", **epoch_ticks(_last_epoch(epochs)))
    fig.update_yaxes(title_text="weighted loss (epoch mean)")
    return style_figure(fig, title if title is not None else "Loss terms")


def compare_runs(
    runs: Mapping[str, MetricsLike], metric: str = "test_acc", *, title: str | None = None
) -> go.Figure:
    """One metric over epochs for several runs.

    Args:
        runs: ``{run name: run | metrics mapping | list of epoch dicts}``.
        metric: the per-epoch key to draw (e.g. ``test_acc``, ``agreement``, ``loss/kd``).
        title: figure title.

    Returns:
        One ``Scatter`` per run that logged ``metric``, in the mapping's order.
    """
    if not runs:
        raise VizError("runs: expected at least one run, got none")
    fig = go.Figure()
    last = 1.0
    for i, (name, metrics) in enumerate(runs.items()):
        epochs, _ = _unpack(metrics, f"runs[{name!r}]")
        x, y = metric_series(epochs, metric)
        if x.size:
            fig.add_trace(_epoch_line(x, y, str(name), {"color": role_color(str(name), i)}))
            last = max(last, float(x.max()))
    if not fig.data:
        raise VizError(f"metric: no run logged {metric!r}")
    fig.update_xaxes(title_text="epoch", **epoch_ticks(last))
    fig.update_yaxes(title_text=metric)
    return style_figure(fig, title if title is not None else f"{metric} by run")


# ---- steps ----------------------------------------------------------------------------------------


def _step_records(log: Any, name: str) -> list[Mapping[str, Any]]:
    """The records of a step log: a list of dicts, or an object with ``records`` (a ``StepLog``)."""
    records = getattr(log, "records", log)
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise VizError(f"{name}: expected a run's step records or its step log, got {type(log).__name__}")
    return [r for r in records if isinstance(r, Mapping)]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def step_series(records: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` over the step records that logged a finite value of it, in
    step order (the last record of a repeated step kept).

    Args:
        records: a run's step records (dicts with ``step``), or its ``StepLog``.
        key: a step metric (``loss``, ``loss/kd``, ``lr``, ``batch_acc``, ``images_per_s``).
    """
    points: dict[float, float] = {}
    for record in _step_records(records, "records"):
        step, value = _finite(record.get("step")), _finite(record.get(key))
        if step is not None and value is not None:
            points[step] = value
    steps = np.asarray(sorted(points), dtype=np.float64)
    return steps, np.asarray([points[s] for s in steps], dtype=np.float64)


def _epoch_ends(records: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """``{epoch: the last step recorded in it}``."""
    ends: dict[int, float] = {}
    for record in records:
        step, epoch = _finite(record.get("step")), _finite(record.get("epoch"))
        if step is not None and epoch is not None:
            ends[int(epoch)] = max(step, ends.get(int(epoch), step))
    return ends


def _epoch_points(
    records: Sequence[Mapping[str, Any]], metrics: MetricsLike, metric: str, label: str, color: str
) -> go.Scatter | None:
    """The epoch counterpart of ``metric`` (:data:`EPOCH_COUNTERPART`) at each epoch's last step."""
    key = metric if metric.startswith("loss/") else EPOCH_COUNTERPART.get(metric)
    if key is None:
        return None
    epochs, _ = _unpack(metrics, f"epochs[{label!r}]")
    ends = _epoch_ends(records)
    xs, ys, numbers = [], [], []
    for epoch, value in zip(*metric_series(epochs, key), strict=True):
        if int(epoch) in ends and np.isfinite(value):
            xs.append(ends[int(epoch)])
            ys.append(float(value))
            numbers.append(int(epoch))
    if not xs:
        return None
    return go.Scatter(
        x=xs,
        y=ys,
        mode="markers",
        name=f"{label} · epoch {key}",
        legendgroup=label,
        marker={"color": color, "size": 10, "symbol": "diamond", "line": {"width": 1, "color": "white"}},
        customdata=numbers,
        hovertemplate=f"epoch %{{customdata}} (step %{{x}}): %{{y:.4f}}<extra>{label} · {key}</extra>",
    )


def step_curves(
    logs: Mapping[str, Any],
    metric: str = "loss",
    *,
    smoothed: Mapping[str, Sequence[float]] | None = None,
    epochs: Mapping[str, MetricsLike] | None = None,
    title: str | None = None,
) -> go.Figure:
    """One step metric of one or several runs over training steps: the raw curve, the smoothed one
    drawn over it, and the epoch values as points.

    Args:
        logs: ``{run label: its step records or StepLog}`` (a run without a record of ``metric`` is
            left out).
        metric: a step metric (``loss``, ``loss/<term>``, ``lr``, ``batch_acc``, ``images_per_s``).
        smoothed: ``{run label: the smoothed values}``, aligned with :func:`step_series` of that run
            (e.g. ``workbench.experiments.ema`` of its values); a run given here is drawn faint (raw)
            under its smoothed line, a run not given as its raw line alone.
        epochs: ``{run label: its metrics (run, mapping or epoch list)}``: the epoch counterpart of
            ``metric`` (:data:`EPOCH_COUNTERPART`; ``loss/<term>`` is its own) as a diamond at each
            epoch's last recorded step.
        title: figure title (default: the metric by step).

    Returns:
        Per run, in order and in one colour: the raw ``Scatter`` (lines; ``opacity`` 0.35 when
        smoothed), the smoothed ``Scatter`` when given, the epoch points (markers) when known.

    Raises:
        VizError: no run, a smoothed series of another length than its run's points, or no run that
            logged ``metric``.
    """
    if not isinstance(logs, Mapping) or not logs:
        raise VizError("logs: expected {run label: step records}, got none")
    smoothed = smoothed or {}
    fig = go.Figure()
    for i, (label, log) in enumerate(logs.items()):
        name = str(label)
        records = _step_records(log, f"logs[{name!r}]")
        x, y = step_series(records, metric)
        if not x.size:
            continue
        color = class_color(i)
        smooth = smoothed.get(label)
        hover = "step %{x}: %{y:.4f}<extra>" + name + "</extra>"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=name if smooth is None else f"{name} (raw)",
                legendgroup=name,
                showlegend=smooth is None,
                line={"color": color, "width": 1 if smooth is not None else 2},
                opacity=0.35 if smooth is not None else 1.0,
                hovertemplate=hover,
            )
        )
        if smooth is not None:
            values = np.asarray(smooth, dtype=np.float64).reshape(-1)
            if values.size != x.size:
                raise VizError(f"smoothed[{name!r}]: {values.size} values for {x.size} points of {metric!r}")
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=values,
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    line={"color": color, "width": 2},
                    hovertemplate="step %{x}: %{y:.4f} (smoothed)<extra>" + name + "</extra>",
                )
            )
        if epochs is not None and label in epochs:
            points = _epoch_points(records, epochs[label], metric, name, color)
            if points is not None:
                fig.add_trace(points)
    if not fig.data:
        raise VizError(f"metric: no run recorded {metric!r} per step yet")
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text=metric)
    return style_figure(fig, title if title is not None else f"{metric} by step", height=380)
