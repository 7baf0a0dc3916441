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
    from workbench.analysis.similarity import CKAResult, CKATrainingResult, EmbeddingResult

__all__ = ["cka_heatmap", "cka_training_lines", "embedding_scatter"]


def cka_heatmap(result: CKAResult, *, title: str | None = None) -> go.Figure:
    """CKA between every layer of model ``a`` (rows, shallow at the top) and model ``b`` (columns).

    Returns:
        One ``Heatmap`` with ``z = result.matrix``, ``y = layers_a``, ``x = layers_b``, on ``[0, 1]``
        with the values written in the cells.
    """
    require(result, ("matrix", "layers_a", "layers_b"), "result", "a CKAResult")
    z = np.asarray(result.matrix, dtype=np.float64)
    if z.shape != (len(result.layers_a), len(result.layers_b)):
        raise VizError(
            f"result: matrix shape {z.shape} does not match {len(result.layers_a)} x {len(result.layers_b)} layers"
        )
    a_name = str(getattr(result, "model_a_name", "model_a"))
    b_name = str(getattr(result, "model_b_name", "model_b"))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(result.layers_b),
            y=list(result.layers_a),
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
        height=max(360, 40 * len(result.layers_a) + 200),
    )


def cka_training_lines(result: CKATrainingResult, *, title: str | None = None) -> go.Figure:
    """CKA of every checkpoint against the reference, one line per matched layer, over epochs.

    Returns:
        One ``Scatter`` per entry of ``result.layers``: ``x = epochs``, ``y = values[:, l]``.
    """
    require(result, ("epochs", "values", "layers", "reference_layers"), "result", "a CKATrainingResult")
    values = np.asarray(result.values, dtype=np.float64)
    epochs = np.asarray(result.epochs)
    if values.shape != (len(epochs), len(result.layers)):
        raise VizError(
            f"result: values shape {values.shape} does not match {len(epochs)} epochs x {len(result.layers)} layers"
        )
    ref = str(getattr(result, "reference_name", "reference"))
    fig = go.Figure()
    for col, (layer, ref_layer) in enumerate(zip(result.layers, result.reference_layers, strict=True)):
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

    Returns:
        Two subplots (model ``a``, model ``b``) with one ``Scatter`` per class present in
        ``result.labels`` in each: ``x, y`` are that class's rows of ``coords_a`` / ``coords_b``;
        traces of subplot ``a`` come first, classes in increasing order.
    """
    require(result, ("coords_a", "coords_b", "labels"), "result", "an EmbeddingResult")
    labels = np.asarray(result.labels)
    ca, cb = np.asarray(result.coords_a, dtype=np.float64), np.asarray(result.coords_b, dtype=np.float64)
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
    for side, layer, var in (
        ("a", "layer_a", "explained_variance_a"),
        ("b", "layer_b", "explained_variance_b"),
    ):
        name = str(getattr(result, f"model_{side}_name", f"model_{side}"))
        text = f"{name} ({getattr(result, layer, '')})"
        ev = getattr(result, var, None)
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
