"""Views of representation similarity: the CKA layer x layer heatmap, CKA over training, 2-D embeddings.

Inputs are the dataclasses of :mod:`workbench.analysis.similarity` (:class:`CKAResult`,
:class:`CKATrainingResult`, :class:`EmbeddingResult`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz._layout import require
from workbench.viz.theme import SEQUENTIAL_SCALE, VizError, class_color, style_figure

if TYPE_CHECKING:
    from workbench.analysis.embedding import EmbeddingResult
    from workbench.analysis.similarity import CKAResult, CKATrainingResult

__all__ = ["cka_heatmap", "cka_training_lines", "embedding_scatter"]


def _names(result: object) -> tuple[str, str]:
    names = getattr(result, "names", None) or ("teacher", "student")
    return str(names[0]), str(names[1])


def cka_heatmap(result: CKAResult, *, title: str | None = None) -> go.Figure:
    """CKA between every teacher layer (rows, shallow at the top) and every student layer (columns).

    Returns:
        One ``Heatmap`` with ``z = result.matrix``, ``y = teacher_layers``, ``x = student_layers``,
        on ``[0, 1]`` with the values written in the cells.
    """
    require(result, ("matrix", "teacher_layers", "student_layers"), "result", "a CKAResult")
    z = np.asarray(result.matrix, dtype=np.float64)
    rows, cols = list(result.teacher_layers), list(result.student_layers)
    if z.shape != (len(rows), len(cols)):
        raise VizError(f"result: matrix shape {z.shape} does not match {len(rows)} x {len(cols)} layers")
    a_name, b_name = _names(result)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cols,
            y=rows,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL_SCALE,
            texttemplate="%{z:.2f}",
            colorbar={"title": "CKA"},
            hovertemplate=f"{a_name} %{{y}}<br>{b_name} %{{x}}<br>CKA %{{z:.3f}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=f"{b_name} layer", type="category")
    fig.update_yaxes(title_text=f"{a_name} layer", type="category", autorange="reversed")
    kernel = str(getattr(result, "kernel", "linear"))
    return style_figure(
        fig,
        title if title is not None else f"{kernel.capitalize()} CKA: {a_name} vs {b_name}",
        height=max(360, 40 * len(rows) + 200),
    )


def cka_training_lines(result: CKATrainingResult, *, title: str | None = None) -> go.Figure:
    """CKA of every student snapshot against the teacher, one line per matched layer pair, over epochs.

    Returns:
        One ``Scatter`` per entry of ``result.student_layers``: ``x = epochs``, ``y = values[:, p]``.
    """
    require(result, ("epochs", "values", "student_layers", "teacher_layers"), "result", "a CKATrainingResult")
    values = np.asarray(result.values, dtype=np.float64)
    epochs = np.asarray(result.epochs)
    layers = list(result.student_layers)
    if values.shape != (len(epochs), len(layers)):
        raise VizError(
            f"result: values shape {values.shape} does not match {len(epochs)} epochs x {len(layers)} layers"
        )
    ref = _names(result)[0]
    fig = go.Figure()
    for col, (layer, ref_layer) in enumerate(zip(layers, result.teacher_layers, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=values[:, col],
                mode="lines+markers",
                name=f"{layer} ↔ {ref} {ref_layer}",
                line={"color": class_color(col)},
                hovertemplate="epoch %{x}: CKA %{y:.3f}<extra>" + layer + "</extra>",
            )
        )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=f"CKA with {ref}", range=[0, 1.02])
    return style_figure(fig, title if title is not None else f"CKA with the {ref} over training")


def embedding_scatter(
    result: EmbeddingResult,
    class_names: Sequence[str] | None = None,
    *,
    marker_size: int = 5,
    title: str | None = None,
) -> go.Figure:
    """Both models' 2-D embeddings side by side, points coloured by class (one legend entry per class).

    ``class_names`` defaults to the result's own.

    Returns:
        Two subplots (teacher, student) with one ``Scatter`` per class present in
        ``result.labels`` in each: ``x, y`` are that class's rows of ``teacher_coords`` /
        ``student_coords``; traces of the teacher's subplot come first, classes in increasing order.
    """
    require(result, ("teacher_coords", "student_coords", "labels"), "result", "an EmbeddingResult")
    if class_names is None:
        class_names = getattr(result, "class_names", None)
    labels = np.asarray(result.labels)
    ca = np.asarray(result.teacher_coords, dtype=np.float64)
    cb = np.asarray(result.student_coords, dtype=np.float64)
    if ca.shape != (len(labels), 2) or cb.shape != (len(labels), 2):
        raise VizError(
            f"result: expected coordinates of shape ({len(labels)}, 2), got {ca.shape} and {cb.shape}"
        )
    present = np.unique(labels)
    if class_names is not None:
        names = [str(n) for n in class_names]
        if present.size and int(present.max()) >= len(names):
            raise VizError(f"class_names: expected at least {int(present.max()) + 1} names, got {len(names)}")
    else:
        names = [str(i) for i in range(int(present.max()) + 1 if present.size else 0)]
    indices = np.asarray(getattr(result, "indices", np.arange(len(labels))))
    method = str(getattr(result, "method", "pca"))
    titles = []
    for name, role in zip(_names(result), ("teacher", "student"), strict=True):
        text = f"{name} ({getattr(result, f'{role}_layer', '')})"
        ev = getattr(result, f"{role}_explained_variance", None)
        if ev is not None:
            text += f" · {100 * float(np.sum(ev)):.0f}% variance"
        titles.append(text)
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    for col, coords in ((1, ca), (2, cb)):
        for c in present:
            sel = labels == c
            fig.add_trace(
                go.Scattergl(
                    x=coords[sel, 0],
                    y=coords[sel, 1],
                    mode="markers",
                    name=names[int(c)],
                    legendgroup=f"class{int(c)}",
                    showlegend=col == 1,
                    marker={"color": class_color(int(c)), "size": int(marker_size), "opacity": 0.75},
                    customdata=indices[sel],
                    hovertemplate="sample %{customdata}<extra>" + names[int(c)] + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="t-SNE 1" if method == "tsne" else "PC1", row=1, col=col)
        fig.update_yaxes(title_text="t-SNE 2" if method == "tsne" else "PC2", row=1, col=col)
    aligned = " (Procrustes-aligned)" if getattr(result, "aligned", False) else ""
    return style_figure(
        fig, title if title is not None else f"Penultimate features, {method.upper()}{aligned}", height=460
    )
