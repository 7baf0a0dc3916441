"""Views of experiments: groups of runs over seeds, and parameters against a metric.

Input is what :mod:`workbench.experiments` computes, never a run: bands (objects with ``label``,
``metric``, ``axis``, ``x``, ``mean``, ``std``, ``n`` and optionally ``smoothed``, as
``workbench.experiments.Band``), and table rows (dicts, as ``group_table`` and ``run_table`` return:
``group``, the varied fields by dotted path, ``mean``, ``std``, ``n``, ``measure``, ``better``, or a
metric's value by its name).

* :func:`group_curves` — a metric over epochs or steps, one mean line and a ± std band per group,
  the smoothed mean drawn over the faint raw one when the bands carry it;
* :func:`parallel_coordinates` — plotly ``Parcoords`` of varied parameters and the metric (text
  values become ticks);
* :func:`parameter_scatter` — one parameter against the metric, a colour per group;
* :func:`leaderboard` — mean ± std per group as bars, best first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from workbench.viz._layout import require
from workbench.viz.theme import SEQUENTIAL_SCALE, VizError, class_color, style_figure

__all__ = ["group_curves", "leaderboard", "parallel_coordinates", "parameter_scatter"]

_BAND_ATTRS = ("label", "metric", "axis", "x", "mean", "std", "n")


def _rgba(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` as ``rgba(r, g, b, alpha)``."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _arrays(band: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(band.x, dtype=np.float64).reshape(-1)
    mean = np.asarray(band.mean, dtype=np.float64).reshape(-1)
    std = np.asarray(band.std, dtype=np.float64).reshape(-1)
    n = np.asarray(band.n).reshape(-1)
    if not (x.size == mean.size == std.size == n.size):
        raise VizError(f"bands: {band.label!r} has x, mean, std and n of different lengths")
    return x, mean, std, n


def _band_traces(band: Any, color: str, show_raw: bool, show_band: bool) -> list[go.Scatter]:
    """The ± std area, the raw mean and (when the band has one) the smoothed mean of one group."""
    x, mean, std, n = _arrays(band)
    label, axis = str(band.label), str(band.axis)
    spread = np.nan_to_num(std, nan=0.0)  # one run: no band
    traces = []
    if show_band:
        traces.append(
            go.Scatter(
                x=x,
                y=mean + spread,
                mode="lines",
                line={"width": 0},
                legendgroup=label,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        traces.append(
            go.Scatter(
                x=x,
                y=mean - spread,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_rgba(color, 0.18),
                legendgroup=label,
                showlegend=False,
                hoverinfo="skip",
            )
        )
    smoothed = getattr(band, "smoothed", None)
    custom = np.stack([std, n], axis=-1)
    hover = axis + " %{x}: %{y:.4f} ± %{customdata[0]:.4f} (n=%{customdata[1]})<extra>" + label + "</extra>"
    if smoothed is None:
        traces.append(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers" if x.size < 40 else "lines",
                name=label,
                legendgroup=label,
                line={"color": color, "width": 2},
                customdata=custom,
                hovertemplate=hover,
            )
        )
        return traces
    if show_raw:
        traces.append(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines",
                name=f"{label} (raw)",
                legendgroup=label,
                showlegend=False,
                line={"color": color, "width": 1},
                opacity=0.35,
                customdata=custom,
                hovertemplate=hover,
            )
        )
    smooth = np.asarray(smoothed, dtype=np.float64).reshape(-1)
    if smooth.size != x.size:
        raise VizError(f"bands: {label!r} has {smooth.size} smoothed values for {x.size} points")
    traces.append(
        go.Scatter(
            x=x,
            y=smooth,
            mode="lines",
            name=label,
            legendgroup=label,
            line={"color": color, "width": 2},
            hovertemplate=axis + " %{x}: %{y:.4f} (smoothed)<extra>" + label + "</extra>",
        )
    )
    return traces


def group_curves(
    bands: Sequence[Any], *, show_raw: bool = True, show_band: bool = True, title: str | None = None
) -> go.Figure:
    """A metric over epochs or steps, one line per group with its ± std band.

    Args:
        bands: one band per group, all over the same axis (``workbench.experiments.epoch_bands`` or
            ``step_bands``); a band without points is left out.
        show_raw: where a band carries ``smoothed`` values, also draw the raw mean, faint, under the
            smoothed line (W&B's overlay); without smoothing the mean is the line.
        show_band: draw the ± std area (nothing where only one run has a value).
        title: figure title (default: the metric and the axis).

    Returns:
        Per group, in order and in one colour: two ``Scatter`` traces bounding the band (when
        ``show_band``), then the mean (``y`` = mean; faint when smoothed and ``show_raw``), then the
        smoothed mean (when the band has one). Hover shows mean ± std and n.

    Raises:
        VizError: no bands, a band lacking an attribute, bands over different axes, or no band with
            a point.
    """
    if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence) or not bands:
        raise VizError("bands: expected at least one group's band, got none")
    for band in bands:
        require(band, _BAND_ATTRS, "bands", "a band of a group (label, metric, axis, x, mean, std, n)")
    axes = {str(b.axis) for b in bands}
    if len(axes) > 1:
        raise VizError(f"bands: expected one axis, got {', '.join(sorted(axes))}")
    fig = go.Figure()
    for i, band in enumerate(bands):
        if np.asarray(band.x).size:
            fig.add_traces(_band_traces(band, class_color(i), show_raw, show_band))
    if not fig.data:
        metrics = ", ".join(sorted({str(b.metric) for b in bands}))
        raise VizError(f"bands: no group logged {metrics}")
    axis, metric = axes.pop(), str(bands[0].metric)
    fig.update_xaxes(title_text=axis)
    if axis == "epoch":  # whole epochs only: no tick at 1.5
        last = max(float(np.max(b.x)) for b in bands if np.asarray(b.x).size)
        fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(last / 10)))
    fig.update_yaxes(title_text=f"{metric} (mean ± std over seeds)")
    return style_figure(fig, title if title is not None else f"{metric} by {axis}, mean ± std over seeds")


# ---- parameters against a metric ------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _order(value: Any) -> tuple[int, float, str]:
    return (0, float(value), "") if _is_number(value) else (1, 0.0, _text(value))


def _rows(rows: Any, columns: Sequence[str]) -> list[Mapping[str, Any]]:
    """``rows`` checked: a non-empty list of mappings holding every column of ``columns``."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
        raise VizError("rows: expected a non-empty list of table rows")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise VizError(f"rows[{i}]: expected a mapping, got {type(row).__name__}")
    for column in columns:
        if not any(column in row for row in rows):
            known = sorted({str(k) for row in rows for k in row})
            raise VizError(f"{column!r}: not a column of the rows (columns: {', '.join(known)})")
    return list(rows)


def _valued(rows: list[Mapping[str, Any]], value: str) -> list[Mapping[str, Any]]:
    kept = [r for r in rows if _is_number(r.get(value))]
    if not kept:
        raise VizError(f"value: no row has a finite {value!r}")
    return kept


def _dimension(label: str, values: list[Any]) -> dict[str, Any]:
    """One ``Parcoords`` axis: numbers as they are; anything else as categories with ticks."""
    if all(_is_number(v) for v in values):
        return {"label": label, "values": [float(v) for v in values]}
    categories = sorted({_text(v): v for v in values}.values(), key=_order)
    texts = [_text(c) for c in categories]
    code = {t: i for i, t in enumerate(texts)}
    return {
        "label": label,
        "values": [code[_text(v)] for v in values],
        "tickvals": list(range(len(texts))),
        "ticktext": texts,
        "range": [-0.5, len(texts) - 0.5] if len(texts) == 1 else [0, len(texts) - 1],
    }


def parallel_coordinates(
    rows: Sequence[Mapping[str, Any]], params: Sequence[str], value: str, *, title: str | None = None
) -> go.Figure:
    """An experiment's varied parameters against a metric, one line per row (a run or a group).

    Args:
        rows: table rows (``run_table`` for a line per run, ``group_table`` for one per group).
        params: the columns to draw as axes, in order (e.g. the experiment's varied dotted paths).
        value: the metric's column (``"test_acc"`` in run rows, ``"mean"`` in group rows): the last
            axis and the lines' colour.
        title: figure title.

    Returns:
        One ``Parcoords`` trace: a dimension per parameter, then ``value``. Numeric columns keep their
        values; other columns (method expressions, ``None``, mixed) are coded 0..k-1 with ``tickvals``
        and ``ticktext`` naming the values (numbers first in order, then text). Rows without a
        finite ``value`` are left out.

    Raises:
        VizError: no rows, an unknown column, no parameter, or no finite ``value``.
    """
    names = [str(p) for p in params] if not isinstance(params, str) else [params]
    if not names:
        raise VizError("params: expected at least one parameter column, got none")
    kept = _valued(_rows(rows, [*names, value]), value)
    dimensions = [_dimension(p, [r.get(p) for r in kept]) for p in names]
    values = [float(r[value]) for r in kept]
    dimensions.append({"label": value, "values": values})
    line = {"color": values, "colorscale": SEQUENTIAL_SCALE, "showscale": True, "colorbar": {"title": value}}
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=line))
    return style_figure(fig, title if title is not None else f"Parameters against {value}")


def parameter_scatter(
    rows: Sequence[Mapping[str, Any]],
    param: str,
    value: str,
    *,
    error: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """One parameter against a metric, a point per row, a colour per group.

    Args:
        rows: table rows (``run_table``: a point per run; ``group_table``: a point per group).
        param: the parameter's column (x).
        value: the metric's column (y).
        error: a column of error bars (``"std"`` with ``value="mean"``), or ``None``.
        title: figure title.

    Returns:
        One ``Scatter`` (markers) per ``group`` (rows without a ``group`` column: one trace named
        ``value``), in order of first appearance. ``x``: the parameter's numbers, or its values as
        text on a category axis when any is not a number. Rows without a finite ``value`` are left out.

    Raises:
        VizError: no rows, an unknown column, or no finite ``value``.
    """
    kept = _valued(_rows(rows, [param, value] + ([error] if error else [])), value)
    numeric = all(_is_number(r.get(param)) for r in kept)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in kept:
        groups.setdefault(_text(row.get("group", value)), []).append(row)
    fig = go.Figure()
    for i, (name, members) in enumerate(groups.items()):
        x = [float(r[param]) if numeric else _text(r.get(param)) for r in members]
        y = [float(r[value]) for r in members]
        bars = None
        if error:
            spread = [float(r[error]) if _is_number(r.get(error)) else 0.0 for r in members]
            bars = {"type": "data", "array": spread, "visible": True}
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers",
                name=name,
                error_y=bars,
                marker={"color": class_color(i), "size": 9, "line": {"width": 1, "color": "white"}},
                hovertemplate=f"{param} %{{x}}: %{{y:.4f}}<extra>{name}</extra>",
            )
        )
    if not numeric:
        order = sorted({_text(r.get(param)): r.get(param) for r in kept}.values(), key=_order)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=[_text(v) for v in order])
    fig.update_xaxes(title_text=param)
    fig.update_yaxes(title_text=value)
    return style_figure(fig, title if title is not None else f"{value} against {param}")


def leaderboard(
    rows: Sequence[Mapping[str, Any]],
    *,
    value: str = "mean",
    error: str = "std",
    title: str | None = None,
) -> go.Figure:
    """Groups ranked by a metric: a bar per group with its ± std, best at the top.

    Args:
        rows: ``group_table`` rows (``group``, ``mean``, ``std``, ``n``; ``better`` says which way
            is best, ``higher`` when absent; ``measure`` names the axis).
        value: the column ranked (default ``mean``).
        error: the error bars' column (default ``std``; ``nan`` draws none).
        title: figure title.

    Returns:
        One horizontal ``Bar`` trace, ``y`` the group labels best first (highest ``value``, or
        lowest where ``better`` is ``lower``), ``x`` the values, ``error_x`` the spread, the text
        ``mean ± std (n=N)``. Rows without a finite ``value`` are left out.

    Raises:
        VizError: no rows, no ``group`` column, or no finite ``value``.
    """
    kept = _valued(_rows(rows, ["group", value]), value)
    lower = str(kept[0].get("better", "")) == "lower"
    ranked = sorted(kept, key=lambda r: float(r[value]), reverse=not lower)
    labels = [_text(r["group"]) for r in ranked]
    values = [float(r[value]) for r in ranked]
    spread = [float(r[error]) if _is_number(r.get(error)) else 0.0 for r in ranked]
    counts = [r.get("n", "") for r in ranked]
    text = [f"{v:.4f} ± {s:.4f} (n={n})" for v, s, n in zip(values, spread, counts, strict=True)]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            error_x={"type": "data", "array": spread, "visible": True},
            marker_color=[class_color(i) for i in range(len(labels))],
            text=text,
            textposition="auto",
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    measure = str(kept[0].get("measure", value))
    fig.update_xaxes(title_text=f"{measure} ({'lower' if lower else 'higher'} is better)")
    return style_figure(
        fig, title if title is not None else f"Leaderboard: {measure}", height=max(260, 60 + 36 * len(labels))
    )
