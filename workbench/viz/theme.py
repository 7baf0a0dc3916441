"""Shared styling of every figure: one colour per role, a class palette, and the layout defaults.

Teacher is always blue, student always orange, a scratch (non-distilled) student green, so a reader
who has seen one view can read the next without a legend. Differences use a diverging red-blue
scale centred on zero; maps and probabilities a sequential one.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

__all__ = [
    "CLASS_PALETTE",
    "DIVERGING_SCALE",
    "MAP_SCALE",
    "ROLE_COLORS",
    "SCRATCH_COLOR",
    "SEQUENTIAL_SCALE",
    "STUDENT_COLOR",
    "TEACHER_COLOR",
    "VizError",
    "class_color",
    "class_labels",
    "role_color",
    "style_figure",
]

TEACHER_COLOR = "#2f6db5"
STUDENT_COLOR = "#e07b28"
SCRATCH_COLOR = "#3f9a4b"
NEUTRAL_COLOR = "#9aa0a6"
HIGHLIGHT_COLOR = "#d62728"

#: colour of each role a model can play in a view
ROLE_COLORS = {"teacher": TEACHER_COLOR, "student": STUDENT_COLOR, "scratch": SCRATCH_COLOR}

#: qualitative palette for classes (cycled when there are more classes than colours)
CLASS_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#666666",
    "#8dd3c7",
    "#fb8072",
)

DIVERGING_SCALE = "RdBu_r"
SEQUENTIAL_SCALE = "Viridis"
MAP_SCALE = "Jet"

_FONT = {"family": "Inter, Helvetica, Arial, sans-serif", "size": 12}


class VizError(ValueError):
    """A figure cannot be drawn from what was given; the message names the argument."""


def role_color(role: str, index: int = 0) -> str:
    """Colour of a model role (``teacher``, ``student``, ``scratch``); other names get class colours.

    ``index`` picks the palette entry for names that are not roles (e.g. the i-th run of a comparison).
    """
    return ROLE_COLORS.get(role, class_color(index))


def class_color(index: int) -> str:
    """Palette colour of class ``index`` (cycled)."""
    return CLASS_PALETTE[int(index) % len(CLASS_PALETTE)]


def class_labels(num_classes: int, class_names: Sequence[str] | None = None) -> list[str]:
    """Display names of ``num_classes`` classes: ``class_names`` when given (checked), else ``"0".."K-1"``."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise VizError(f"class_names: expected {num_classes} names, got {len(names)}")
    return names


def style_figure(
    fig: go.Figure, title: str | None = None, *, height: int | None = None, width: int | None = None
) -> go.Figure:
    """Apply the house layout (white template, font, margins) and the title; return ``fig``."""
    fig.update_layout(
        template="plotly_white",
        font=_FONT,
        margin={"l": 60, "r": 30, "t": 80 if title else 50, "b": 50},
        hoverlabel={"font_size": 11},
    )
    if title is not None:
        fig.update_layout(title={"text": title, "x": 0.01, "xanchor": "left"})
    if height is not None:
        fig.update_layout(height=int(height))
    if width is not None:
        fig.update_layout(width=int(width))
    return fig
