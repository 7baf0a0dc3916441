"""Views of relative difficulty: the joint teacher/student difficulty scatter and per-class bars.

Input is :class:`workbench.analysis.difficulty.DifficultyResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from workbench.viz._layout import class_bars, require
from workbench.viz.theme import (
    HIGHLIGHT_COLOR,
    NEUTRAL_COLOR,
    STUDENT_COLOR,
    TEACHER_COLOR,
    class_labels,
    style_figure,
)

if TYPE_CHECKING:
    from workbench.analysis.difficulty import DifficultyResult

__all__ = ["difficulty_class_bars", "difficulty_scatter"]


def _add_thresholds(fig: go.Figure, easy: float, hard: float) -> None:
    """The shaded "easy for the teacher, hard for the student" corner, both thresholds as dotted
    lines and the diagonal (equal difficulty) on ``fig``."""
    fig.add_shape(
        type="rect",
        x0=0.0,
        x1=easy,
        y0=hard,
        y1=1.0,
        fillcolor=HIGHLIGHT_COLOR,
        opacity=0.08,
        line_width=0,
        layer="below",
    )
    fig.add_vline(x=easy, line_dash="dot", line_color=TEACHER_COLOR)
    fig.add_hline(y=hard, line_dash="dot", line_color=STUDENT_COLOR)
    fig.add_shape(
        type="line", x0=0, y0=0, x1=1, y1=1, line={"color": NEUTRAL_COLOR, "dash": "dash", "width": 1}
    )


def difficulty_scatter(
    result: DifficultyResult,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """Teacher difficulty ``1 − p_T(y)`` against student difficulty ``1 − p_S(y)``, one point per sample;
    the "easy for the teacher, hard for the student" corner is shaded and its samples highlighted.

    Returns:
        Two ``Scatter`` traces: every sample (``x = teacher_difficulty``, ``y = student_difficulty``)
        and the selected ones (the same arrays at ``result.selected``), plus the two thresholds as
        dotted lines.
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(
        result,
        ("teacher_difficulty", "student_difficulty", "selected", "labels", "teacher_easy", "student_hard"),
        "result",
        "a DifficultyResult",
    )
    td = np.asarray(result.teacher_difficulty, dtype=np.float64)
    sd = np.asarray(result.student_difficulty, dtype=np.float64)
    labels = np.asarray(result.labels)
    sel = np.asarray(result.selected, dtype=np.int64)
    k = int(getattr(result, "num_classes", int(labels.max()) + 1 if labels.size else 0))
    classes = np.asarray(class_labels(k, class_names), dtype=object)
    t_name = str(getattr(result, "teacher_name", "teacher"))
    s_name = str(getattr(result, "student_name", "student"))
    index = np.arange(len(td))
    hover = (
        "sample %{customdata[0]} · class %{customdata[1]}<br>"
        + t_name
        + " %{x:.3f} · "
        + s_name
        + " %{y:.3f}"
    )
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            x=td,
            y=sd,
            mode="markers",
            name="all samples",
            marker={"color": NEUTRAL_COLOR, "size": 5, "opacity": 0.6},
            customdata=np.stack([index, classes[labels]], axis=1) if len(td) else None,
            hovertemplate=hover + "<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattergl(
            x=td[sel],
            y=sd[sel],
            mode="markers",
            name=f"easy for {t_name}, hard for {s_name} ({len(sel)})",
            marker={"color": HIGHLIGHT_COLOR, "size": 7},
            customdata=np.stack([sel, classes[labels[sel]]], axis=1) if len(sel) else None,
            hovertemplate=hover + "<extra></extra>",
        )
    )
    _add_thresholds(fig, float(result.teacher_easy), float(result.student_hard))
    fig.update_xaxes(title_text=f"{t_name} difficulty 1 − p(y)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text=f"{s_name} difficulty 1 − p(y)", range=[-0.02, 1.02], scaleanchor="x")
    return style_figure(fig, title if title is not None else "Relative difficulty", height=540)


def difficulty_class_bars(
    result: DifficultyResult,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """Mean difficulty per class for both models.

    Returns:
        Two ``Bar`` traces: ``per_class_teacher_difficulty`` and ``per_class_student_difficulty``.
    """
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    require(
        result,
        ("per_class_teacher_difficulty", "per_class_student_difficulty"),
        "result",
        "a DifficultyResult",
    )
    k = len(result.per_class_teacher_difficulty)
    classes = class_labels(k, class_names)
    t_name = str(getattr(result, "teacher_name", "teacher"))
    s_name = str(getattr(result, "student_name", "student"))
    selected = np.asarray(getattr(result, "per_class_selected", np.zeros(k, dtype=np.int64)))
    fig = class_bars(
        classes,
        (
            (t_name, result.per_class_teacher_difficulty, TEACHER_COLOR),
            (s_name, result.per_class_student_difficulty, STUDENT_COLOR),
        ),
        selected,
        "gap samples",
    )
    fig.update_layout(
        barmode="group",
        xaxis_title="true class",
        yaxis_title="mean difficulty 1 − p(y)",
        yaxis_range=[0, 1.02],
    )
    return style_figure(fig, title if title is not None else "Difficulty by class")
