"""Views of loss landscapes: the 3-D surface, contours (one per objective on the same plane), 1-D
slices, interpolation curves, and 1-D slices of several models compared.

Inputs are :class:`workbench.analysis.landscape.LandscapeResult` objects (``kind`` ``"2d"``,
``"1d"`` or ``"interpolation"``). On a plane, ``values[name][i, j]`` is at ``alphas[i]``,
``betas[j]``; figures put ``α`` on x and ``β`` on y, so their ``z`` is ``values[name].T``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz._layout import objective_names, require
from workbench.viz.theme import (
    HIGHLIGHT_COLOR,
    SEQUENTIAL_SCALE,
    VizError,
    class_color,
    role_color,
    style_figure,
)

if TYPE_CHECKING:
    from workbench.analysis.landscape_grid import LandscapeResult

__all__ = [
    "interpolation_curves",
    "landscape_comparison",
    "landscape_contours",
    "landscape_lines",
    "landscape_surface",
]

_LANDSCAPE = ("kind", "alphas", "betas", "values")


def _check_kind(result: LandscapeResult, kind: str, name: str = "result") -> None:
    require(result, _LANDSCAPE, name, "a LandscapeResult")
    if result.kind != kind:
        raise VizError(f"{name}: expected a landscape of kind {kind!r}, got {result.kind!r}")


def _reference(result: LandscapeResult, key: str, objective: str) -> float | None:
    refs = getattr(result, "references", {}) or {}
    value = refs.get(key, {}).get(objective)
    return None if value is None else float(value)


def landscape_surface(
    result: LandscapeResult, objective: str | None = None, *, title: str | None = None
) -> go.Figure:
    """One objective over the plane ``θ0 + α·d1 + β·d2`` as a 3-D surface (Li et al. 2018).

    Args:
        result: a 2-D :class:`LandscapeResult`.
        objective: which objective; default the first one.
        title: figure title.

    Returns:
        A ``Surface`` with ``x = alphas``, ``y = betas``, ``z = values[objective].T``, followed by a
        ``Scatter3d`` marker at the trained model ``(0, 0)`` when its reference value is known.
    """
    _check_kind(result, "2d")
    name = (
        objective_names(result.values, objective)[0] if objective is not None else next(iter(result.values))
    )
    z = np.asarray(result.values[name], dtype=np.float64).T
    fig = go.Figure(
        go.Surface(
            x=np.asarray(result.alphas, dtype=np.float64),
            y=np.asarray(result.betas, dtype=np.float64),
            z=z,
            colorscale=SEQUENTIAL_SCALE,
            colorbar={"title": name},
            name=name,
            hovertemplate="α=%{x:.2f} β=%{y:.2f}<br>" + name + "=%{z:.4f}<extra></extra>",
        )
    )
    ref = _reference(result, "model", name)
    if ref is not None:
        fig.add_trace(
            go.Scatter3d(
                x=[0.0],
                y=[0.0],
                z=[ref],
                mode="markers",
                name="trained model",
                marker={"color": HIGHLIGHT_COLOR, "size": 5},
            )
        )
    fig.update_layout(
        scene={"xaxis_title": "α (direction 1)", "yaxis_title": "β (direction 2)", "zaxis_title": name}
    )
    return style_figure(fig, title if title is not None else f"Loss landscape: {name}", height=560)


def landscape_contours(
    result: LandscapeResult, objectives: Sequence[str] | str | None = None, *, title: str | None = None
) -> go.Figure:
    """Contours of several objectives on the same plane, one subplot each, the trained model marked.

    Returns:
        One subplot per objective with a ``Contour`` (``x = alphas``, ``y = betas``,
        ``z = values[name].T``) and a ``Scatter`` marker at ``(0, 0)``.
    """
    _check_kind(result, "2d")
    names = objective_names(result.values, objectives)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.1)
    for col, name in enumerate(names, start=1):
        fig.add_trace(
            go.Contour(
                x=np.asarray(result.alphas, dtype=np.float64),
                y=np.asarray(result.betas, dtype=np.float64),
                z=np.asarray(result.values[name], dtype=np.float64).T,
                colorscale=SEQUENTIAL_SCALE,
                showscale=False,
                contours={"showlabels": True, "labelfont": {"size": 9, "color": "white"}},
                name=name,
                hovertemplate="α=%{x:.2f} β=%{y:.2f}<br>" + name + "=%{z:.4f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[0.0],
                y=[0.0],
                mode="markers",
                name="trained model",
                showlegend=col == 1,
                marker={"color": HIGHLIGHT_COLOR, "size": 9, "symbol": "x"},
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="α", row=1, col=col)
        fig.update_yaxes(title_text="β", row=1, col=col)
    return style_figure(
        fig, title if title is not None else "Loss landscape contours (same plane)", height=430
    )


def _line_panels(
    result: LandscapeResult,
    names: list[str],
    markers: list[tuple[str, list[float], str]],
    x_title: str,
) -> go.Figure:
    fig = make_subplots(
        rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names, vertical_spacing=0.08
    )
    alphas = np.asarray(result.alphas, dtype=np.float64)
    for row, name in enumerate(names, start=1):
        fig.add_trace(
            go.Scatter(
                x=alphas,
                y=np.asarray(result.values[name], dtype=np.float64),
                mode="lines+markers",
                name=name,
                line={"color": class_color(row - 1)},
                marker={"size": 4},
                hovertemplate="α=%{x:.3f}: %{y:.4f}<extra>" + name + "</extra>",
            ),
            row=row,
            col=1,
        )
        xs, ys = [], []
        for key, x_at, _ in markers:
            ref = _reference(result, key, name)
            if ref is not None:
                xs.extend(x_at)
                ys.append(ref)
        label = " / ".join(label for _, _, label in markers)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=label,
                showlegend=row == 1,
                marker={"color": HIGHLIGHT_COLOR, "size": 9, "symbol": "diamond"},
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=name, row=row, col=1)
    fig.update_xaxes(title_text=x_title, row=len(names), col=1)
    return fig


def landscape_lines(
    result: LandscapeResult, objectives: Sequence[str] | str | None = None, *, title: str | None = None
) -> go.Figure:
    """Objectives along a 1-D slice ``θ0 + α·d``, one panel per objective (their scales differ).

    Returns:
        One row per objective, each with a ``Scatter`` line (``x = alphas``, ``y = values[name]``)
        and a ``Scatter`` marker of the trained model's own value at ``α = 0`` (empty when unknown).
    """
    _check_kind(result, "1d")
    names = objective_names(result.values, objectives)
    fig = _line_panels(result, names, [("model", [0.0], "trained model")], "α (filter-normalized direction)")
    return style_figure(
        fig,
        title if title is not None else "Loss along a random direction",
        height=max(320, 230 * len(names) + 80),
    )


def interpolation_curves(
    result: LandscapeResult,
    objectives: Sequence[str] | str | None = None,
    *,
    names: tuple[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Objectives along the straight path ``(1-α)·θ_start + α·θ_end`` (Goodfellow et al. 2015), one
    panel each. ``names`` defaults to the result's own (``start``, ``end``).

    Returns:
        One row per objective with a ``Scatter`` line (``x = alphas``, ``y = values[name]``) and a
        ``Scatter`` of the two models' own values at ``α = 0`` and ``α = 1``.
    """
    _check_kind(result, "interpolation")
    if names is None:
        names = tuple(getattr(result, "names", None) or ("start", "end"))  # type: ignore[assignment]
    assert names is not None
    objs = objective_names(result.values, objectives)
    fig = _line_panels(
        result,
        objs,
        [("start", [0.0], str(names[0])), ("end", [1.0], str(names[1]))],
        f"α: 0 = {names[0]}, 1 = {names[1]}",
    )
    return style_figure(
        fig,
        title if title is not None else f"Linear interpolation {names[0]} → {names[1]}",
        height=max(320, 230 * len(objs) + 80),
    )


def landscape_comparison(
    results: Mapping[str, LandscapeResult], objective: str = "cross_entropy", *, title: str | None = None
) -> go.Figure:
    """1-D slices of several models overlaid for one objective (e.g. distilled vs scratch student):
    a narrower valley is a sharper minimum.

    Args:
        results: ``{model name: 1-D LandscapeResult}``; names ``teacher``/``student``/``scratch`` get
            the role colours.
        objective: which objective to draw (present in every result).
        title: figure title.

    Returns:
        One ``Scatter`` per model, ``x = alphas``, ``y = values[objective]``, in the mapping's order.
    """
    if not results:
        raise VizError("results: expected at least one 1-D landscape, got none")
    fig = go.Figure()
    for i, (name, res) in enumerate(results.items()):
        _check_kind(res, "1d", f"results[{name!r}]")
        if objective not in res.values:
            raise VizError(
                f"objective: {objective!r} missing from results[{name!r}]; known: {', '.join(res.values)}"
            )
        color = role_color(name, i)
        fig.add_trace(
            go.Scatter(
                x=np.asarray(res.alphas, dtype=np.float64),
                y=np.asarray(res.values[objective], dtype=np.float64),
                mode="lines+markers",
                name=name,
                line={"color": color},
                marker={"size": 4},
                hovertemplate="α=%{x:.3f}: %{y:.4f}<extra>" + name + "</extra>",
            )
        )
    fig.update_xaxes(title_text="α (filter-normalized direction)")
    fig.update_yaxes(title_text=objective)
    return style_figure(
        fig, title if title is not None else f"{objective} along a random direction, compared"
    )
