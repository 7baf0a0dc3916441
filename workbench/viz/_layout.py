"""Private helpers shared by the view modules: argument checks and subplot cosmetics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from workbench.viz.theme import VizError


def require(obj: object, attrs: Sequence[str], name: str, expected: str) -> None:
    """Raise :class:`VizError` unless ``obj`` has every attribute in ``attrs``."""
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise VizError(f"{name}: expected {expected}, got {type(obj).__name__} (no {missing[0]!r})")


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1, or :class:`VizError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise VizError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def pick_indices(
    indices: Sequence[int] | np.ndarray | None, n: int, limit: int, name: str = "indices"
) -> list[int]:
    """The image positions to show: ``indices`` (checked against ``n``) or the first ``limit`` of ``range(n)``."""
    if indices is None:
        return list(range(min(n, limit)))
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise VizError(f"{name}: expected positions in [0, {n}), got {bad[0]}")
    return idx


def objective_names(values: dict[str, np.ndarray], objectives: Sequence[str] | str | None) -> list[str]:
    """The objectives to draw: all of ``values`` by default, else the named ones (checked)."""
    if objectives is None:
        return list(values)
    names = [objectives] if isinstance(objectives, str) else [str(o) for o in objectives]
    for o in names:
        if o not in values:
            raise VizError(f"objectives: unknown objective {o!r}; known: {', '.join(values)}")
    if not names:
        raise VizError("objectives: expected at least one objective name, got none")
    return names


def image_axes(fig: go.Figure, rows: int, cols: int) -> None:
    """Square pixels, no ticks or grid, row 0 of every image at the top, in every cell of the grid."""
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            cell = fig.get_subplot(r, c)
            x_id = cell.xaxis.plotly_name.replace("axis", "")
            fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=r, col=c)
            fig.update_yaxes(
                showticklabels=False,
                showgrid=False,
                zeroline=False,
                autorange="reversed",
                scaleanchor=x_id,
                scaleratio=1,
                row=r,
                col=c,
            )


def class_bars(
    classes: Sequence[str],
    series: Sequence[tuple[str, object, str]],
    counts: object,
    unit: str,
) -> go.Figure:
    """A grouped bar chart by class: one ``Bar`` trace per ``(name, values, color)`` of ``series``,
    with ``counts`` per class shown on hover as ``"<count> <unit>"``."""
    fig = go.Figure()
    for name, values, color in series:
        fig.add_trace(
            go.Bar(
                x=list(classes),
                y=np.asarray(values, dtype=np.float64),
                name=name,
                marker_color=color,
                customdata=np.asarray(counts),
                hovertemplate="%{x}: %{y:.3f}<br>%{customdata} " + unit + "<extra>" + name + "</extra>",
            )
        )
    return fig


def empty_figure(message: str) -> go.Figure:
    """A figure without traces that says ``message`` in its middle."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig
