"""Views of teacher–student agreement: confusion, calibration, per-class bars, dark knowledge,
the disagreement gallery and soft labels across temperatures.

Inputs are :class:`workbench.analysis.agreement.AgreementResult` (and the arrays of
:func:`workbench.analysis.agreement.soft_labels_across_temperatures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz._layout import class_bars, empty_figure, image_axes, positive_int, require
from workbench.viz.images import to_display_images
from workbench.viz.theme import (
    DIVERGING_SCALE,
    HIGHLIGHT_COLOR,
    NEUTRAL_COLOR,
    SEQUENTIAL_SCALE,
    STUDENT_COLOR,
    TEACHER_COLOR,
    VizError,
    class_color,
    class_labels,
    style_figure,
)

if TYPE_CHECKING:
    from workbench.analysis.agreement import AgreementResult

__all__ = [
    "confusion_matrices",
    "disagreement_gallery",
    "per_class_bars",
    "rank_correlation_bars",
    "reliability_diagrams",
    "soft_label_plot",
]

_RESULT = ("confusion_teacher", "confusion_student", "num_classes")


def _names(result: AgreementResult) -> tuple[str, str]:
    return str(getattr(result, "teacher_name", "teacher")), str(getattr(result, "student_name", "student"))


def confusion_matrices(
    result: AgreementResult,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """Teacher and student confusion matrices and their difference (student − teacher), side by side.

    Rows are true classes (first class at the top), columns predicted classes; cells count samples.

    Returns:
        Three subplots with one ``Heatmap`` each: ``z`` = ``confusion_teacher``, ``confusion_student``
        and ``confusion_diff`` (diverging scale centred on 0: red where the student puts more
        samples than the teacher, blue where fewer).
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(result, _RESULT + ("confusion_diff",), "result", "an AgreementResult")
    k = int(result.num_classes)
    classes = class_labels(k, class_names)
    t_name, s_name = _names(result)
    diff = np.asarray(result.confusion_diff)
    lim = max(1.0, float(np.abs(diff).max()))
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[t_name, s_name, f"{s_name} − {t_name}"], horizontal_spacing=0.08
    )
    for col, (z, scale, extra) in enumerate(
        (
            (np.asarray(result.confusion_teacher), "Blues", {}),
            (np.asarray(result.confusion_student), "Oranges", {}),
            (diff, DIVERGING_SCALE, {"zmid": 0.0, "zmin": -lim, "zmax": lim}),
        ),
        start=1,
    ):
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=classes,
                y=classes,
                colorscale=scale,
                showscale=col == 3,
                colorbar={"title": "Δ count"} if col == 3 else None,
                hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
                **extra,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="predicted", row=1, col=col, type="category")
        fig.update_yaxes(
            autorange="reversed", row=1, col=col, type="category", scaleanchor=f"x{'' if col == 1 else col}"
        )
    fig.update_yaxes(title_text="true class", row=1, col=1)
    return style_figure(fig, title if title is not None else "Confusion matrices", height=420)


def reliability_diagrams(result: AgreementResult, *, title: str | None = None) -> go.Figure:
    """Reliability diagrams of both models (Guo et al. 2017): per confidence bin, accuracy against
    mean confidence; the gap to the diagonal is miscalibration, summed into the ECE in the titles.

    Returns:
        Two subplots (teacher, student), each with three traces: ``Bar`` of per-bin accuracy at the
        bin centres, ``Scatter`` markers of per-bin mean confidence, and the dashed diagonal.
    """
    require(result, ("teacher_calibration", "student_calibration"), "result", "an AgreementResult")
    t_name, s_name = _names(result)
    cals = (
        (t_name, result.teacher_calibration, TEACHER_COLOR),
        (s_name, result.student_calibration, STUDENT_COLOR),
    )
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"{name} (ECE {float(cal.ece):.3f})" for name, cal, _ in cals]
    )
    for col, (name, cal, color) in enumerate(cals, start=1):
        edges = np.asarray(cal.bin_edges, dtype=np.float64)
        centres = (edges[:-1] + edges[1:]) / 2.0
        fig.add_trace(
            go.Bar(
                x=centres,
                y=np.asarray(cal.accuracy, dtype=np.float64),
                width=np.diff(edges),
                name=f"{name} accuracy",
                marker_color=color,
                marker_line={"color": "white", "width": 1},
                customdata=np.asarray(cal.count),
                hovertemplate="bin %{x:.2f}: accuracy %{y:.3f}<br>%{customdata} samples<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=centres,
                y=np.asarray(cal.confidence, dtype=np.float64),
                mode="markers",
                name=f"{name} mean confidence",
                marker={"color": "black", "symbol": "line-ew-open", "size": 12, "line": {"width": 2}},
                hovertemplate="bin %{x:.2f}: confidence %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[0.0, 1.0],
                y=[0.0, 1.0],
                mode="lines",
                name="perfect calibration",
                line={"color": NEUTRAL_COLOR, "dash": "dash"},
                showlegend=col == 1,
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="confidence", range=[0, 1], row=1, col=col)
        fig.update_yaxes(range=[0, 1], row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    return style_figure(fig, title if title is not None else "Reliability diagrams", height=420)


def per_class_bars(
    result: AgreementResult,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """Per-class teacher accuracy, student accuracy and teacher–student agreement.

    Returns:
        A grouped bar chart with three traces: ``per_class_teacher_accuracy``,
        ``per_class_student_accuracy`` and ``per_class_agreement`` (NaN for absent classes).
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(
        result,
        ("per_class_teacher_accuracy", "per_class_student_accuracy", "per_class_agreement"),
        "result",
        "an AgreementResult",
    )
    k = len(result.per_class_agreement)
    classes = class_labels(k, class_names)
    t_name, s_name = _names(result)
    counts = np.asarray(getattr(result, "class_counts", np.zeros(k, dtype=np.int64)))
    fig = class_bars(
        classes,
        (
            (f"{t_name} accuracy", result.per_class_teacher_accuracy, TEACHER_COLOR),
            (f"{s_name} accuracy", result.per_class_student_accuracy, STUDENT_COLOR),
            ("agreement", result.per_class_agreement, NEUTRAL_COLOR),
        ),
        counts,
        "samples",
    )
    fig.update_layout(barmode="group", xaxis_title="true class", yaxis_title="share", yaxis_range=[0, 1.05])
    return style_figure(fig, title if title is not None else "Accuracy and agreement by class")


def rank_correlation_bars(
    result: AgreementResult,
    class_names: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Dark knowledge kept per class: mean Spearman correlation of teacher and student logits over the
    non-target classes (does the student rank the wrong answers as the teacher does?).

    Args:
        result: an :class:`AgreementResult`.
        class_names: display names of the classes.
        threshold: when given, classes below it are drawn in red and a dotted line marks it.
        title: figure title.

    Returns:
        One ``Bar`` trace with ``y = per_class_rank_correlation``; the overall mean is a dashed line.
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(result, ("per_class_rank_correlation", "rank_correlation_mean"), "result", "an AgreementResult")
    values = np.asarray(result.per_class_rank_correlation, dtype=np.float64)
    classes = class_labels(len(values), class_names)
    colors = [STUDENT_COLOR] * len(values)
    if threshold is not None:
        colors = [
            HIGHLIGHT_COLOR if np.isfinite(v) and v < float(threshold) else STUDENT_COLOR for v in values
        ]
    fig = go.Figure(
        go.Bar(
            x=classes,
            y=values,
            name="non-target rank correlation",
            marker_color=colors,
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    mean = float(result.rank_correlation_mean)
    if np.isfinite(mean):
        fig.add_hline(y=mean, line_dash="dash", line_color=NEUTRAL_COLOR, annotation_text=f"mean {mean:.2f}")
    if threshold is not None:
        fig.add_hline(
            y=float(threshold),
            line_dash="dot",
            line_color=HIGHLIGHT_COLOR,
            annotation_text=f"threshold {float(threshold):.2f}",
            annotation_position="bottom right",
        )
    fig.update_layout(
        xaxis_title="true class", yaxis_title="Spearman ρ over non-target logits", yaxis_range=[-1.05, 1.05]
    )
    return style_figure(fig, title if title is not None else "Dark knowledge kept, by class")


def disagreement_gallery(
    result: AgreementResult,
    images: object,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    max_images: int = 12,
    columns: int = 4,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """The samples on which teacher and student disagree, most confident mistakes first, with both
    predictions and confidences above each image.

    Args:
        result: an :class:`AgreementResult`; its ``gallery`` gives the order.
        images: the same ``n_samples`` images the result was computed on (forms as in
            :func:`workbench.viz.images.to_display_images`).
        mean, std: the dataset's statistics when ``images`` are normalized floats.
        max_images: at most this many images; columns: images per row.
        class_names: display names of the classes. title: figure title.

    Returns:
        One ``Image`` trace per shown sample (``gallery.indices[:max_images]``, in that order); a
        figure without traces that says so when the models never disagree.
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(result, ("gallery", "n_samples"), "result", "an AgreementResult")
    cols = positive_int(columns, "columns")
    limit = positive_int(max_images, "max_images")
    pics = to_display_images(images, mean, std)
    if pics.shape[0] != int(result.n_samples):
        raise VizError(f"images: expected the {result.n_samples} images of the result, got {pics.shape[0]}")
    g = result.gallery
    shown = min(len(g.indices), limit)
    head = title if title is not None else "Where teacher and student disagree"
    if shown == 0:
        return style_figure(empty_figure("teacher and student agree on every sample"), head)
    classes = class_labels(int(result.num_classes), class_names)
    rows = -(-shown // cols)
    titles = [
        f"{classes[int(g.labels[j])]} · T {classes[int(g.teacher_pred[j])]} ({float(g.teacher_confidence[j]):.2f})"
        f" · S {classes[int(g.student_pred[j])]} ({float(g.student_confidence[j]):.2f})"
        for j in range(shown)
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.02,
        vertical_spacing=min(0.1, 0.3 / rows),
    )
    for j in range(shown):
        idx = int(g.indices[j])
        fig.add_trace(
            go.Image(z=pics[idx], name=f"sample {idx}", hoverinfo="name"), row=j // cols + 1, col=j % cols + 1
        )
    image_axes(fig, rows, cols)
    fig.update_annotations(font_size=10)
    return style_figure(fig, head, height=max(260, 190 * rows + 80))


def soft_label_plot(
    probs: np.ndarray,
    temperatures: Sequence[float] | np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    kind: str = "lines",
    title: str | None = None,
) -> go.Figure:
    """One sample's soft labels ``softmax(z / T)`` across temperatures (Hinton et al. 2015).

    Args:
        probs: ``(m, K)`` probabilities, row ``i`` at ``temperatures[i]`` (the output of
            :func:`workbench.analysis.agreement.soft_labels_across_temperatures`).
        temperatures: the ``m`` temperatures.
        class_names: display names of the ``K`` classes.
        kind: ``"lines"`` (one line per class against ``T``, log axis) or ``"heatmap"``
            (temperatures x classes).
        title: figure title.

    Returns:
        ``"lines"``: ``K`` ``Scatter`` traces with ``y = probs[:, k]``; ``"heatmap"``: one ``Heatmap``
        with ``z = probs``.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != t.size:
        raise VizError(f"probs: expected shape ({t.size}, K) to match the temperatures, got {p.shape}")
    classes = class_labels(p.shape[1], class_names)
    if kind == "lines":
        fig = go.Figure()
        for k, name in enumerate(classes):
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=p[:, k],
                    mode="lines+markers",
                    name=name,
                    line={"color": class_color(k)},
                    hovertemplate="T=%{x:g}: p=%{y:.3f}<extra>" + name + "</extra>",
                )
            )
        fig.update_xaxes(type="log" if (t > 0).all() else "linear", title_text="temperature T")
        fig.update_yaxes(title_text="probability", range=[0, 1.02])
    elif kind == "heatmap":
        fig = go.Figure(
            go.Heatmap(
                z=p,
                x=classes,
                y=[f"T={v:g}" for v in t],
                colorscale=SEQUENTIAL_SCALE,
                zmin=0.0,
                zmax=1.0,
                colorbar={"title": "p"},
                hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>",
            )
        )
        fig.update_xaxes(title_text="class", type="category")
        fig.update_yaxes(title_text="temperature", type="category")
    else:
        raise VizError(f"kind: unknown {kind!r}; known: lines, heatmap")
    return style_figure(fig, title if title is not None else "Soft labels across temperatures")
