"""The view of a teacher's soft labels at one temperature, with the student's beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from workbench.viz._layout import require
from workbench.viz.theme import STUDENT_COLOR, TEACHER_COLOR, VizError, class_labels, style_figure

if TYPE_CHECKING:
    from workbench.analysis.soft_labels import SoftLabelResult


def soft_label_bars(result: SoftLabelResult, sample: int = 0, *, title: str | None = None) -> go.Figure:
    """Bars of ``softmax(z / T)`` over the classes for one chosen sample: the teacher's, and the
    student's when the result has one (Hinton et al. 2015).

    Args:
        result: a :class:`workbench.analysis.soft_labels.SoftLabelResult`.
        sample: the row of the result to draw (``0 .. m-1``, not the position in the dataset).
        title: figure title (default: the temperature, the entropy and the KD loss).

    Returns:
        One ``Bar`` trace per model with ``y`` = that model's probabilities of row ``sample``.
    """
    require(result, ("teacher_probs", "temperature", "entropy"), "result", "a SoftLabelResult")
    probs = np.asarray(result.teacher_probs)
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or not 0 <= sample < len(probs):
        raise VizError(f"sample: expected a row in [0, {len(probs) - 1}], got {sample!r}")
    classes = class_labels(probs.shape[1], result.class_names)
    names = getattr(result, "names", ("teacher", "student"))
    fig = go.Figure()
    rows = [(names[0], probs, TEACHER_COLOR)]
    if result.student_probs is not None:
        rows.append((names[1], np.asarray(result.student_probs), STUDENT_COLOR))
    for name, p, color in rows:
        fig.add_trace(
            go.Bar(
                x=classes,
                y=p[sample],
                name=name,
                marker_color=color,
                hovertemplate="%{x}: p=%{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="class", type="category")
    fig.update_yaxes(title_text=f"softmax(z / {result.temperature:g})", range=[0, 1.02])
    if title is None:
        pos = int(np.asarray(result.samples)[sample])
        label = ""
        if result.labels is not None:
            label = f", label {classes[int(result.labels[sample])]}"
        title = f"Soft labels at T={result.temperature:g} · sample {pos}{label} · entropy {result.entropy[sample]:.3f}"
        if result.kd_per_sample is not None:
            title += f" · KD loss {float(result.kd_per_sample[sample]):.4f}"
    return style_figure(fig, title)


__all__ = ["soft_label_bars"]
