"""Views of a run's metrics over epochs: accuracy, agreement, KL and ECE curves, the loss terms
stacked, and several runs compared on one metric.

Input is a run's metrics as the run store keeps them: the mapping of ``metrics.json``
(``{"epochs": [...], "summary": {...}, "teacher": {...}}``), the list of per-epoch dictionaries
alone (keys such as ``epoch``, ``test_acc``, ``train_acc``, ``agreement``,
``kl_teacher_student``, ``ece``, ``loss/<term>``), or any object with such a ``metrics`` attribute
(a stored run).
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

__all__ = ["compare_runs", "loss_terms", "metric_series", "training_curves"]

MetricsLike = Mapping[str, Any] | Sequence[Mapping[str, Any]] | Any


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
        left out, then the teacher level as a last ``Scatter`` when known.
    """
    epochs, teacher = _unpack(metrics)
    if teacher_accuracy is None and "teacher_test_acc" in teacher:
        teacher_accuracy = float(teacher["teacher_test_acc"])
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[0] for p in _PANELS], vertical_spacing=0.14)
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
        fig.update_xaxes(title_text="epoch", row=row, col=col)
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
    fig.update_xaxes(title_text="epoch")
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
    for i, (name, metrics) in enumerate(runs.items()):
        epochs, _ = _unpack(metrics, f"runs[{name!r}]")
        x, y = metric_series(epochs, metric)
        if x.size:
            fig.add_trace(_epoch_line(x, y, str(name), {"color": role_color(str(name), i)}))
    if not fig.data:
        raise VizError(f"metric: no run logged {metric!r}")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=metric)
    return style_figure(fig, title if title is not None else f"{metric} by run")
