"""The result of a landscape or an interpolation and the walk over its grid of points.

:class:`LandscapeResult` holds objective values on a line, a plane or an interpolation path.
:func:`grid_axis` makes one axis of the grid, and :func:`fill_grid` evaluates every point in
row or coarse-to-fine order (:data:`ORDERS`), reporting progress once per chunk and handing a
partial result (NaN where a point is not computed yet) to an ``on_row`` callback, so a page can
draw the grid filling in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.analysis._common import AnalysisError, check_positive_int
from workbench.analysis._result import AnalysisResult
from workbench.analysis.objectives import ObjectiveFn
from workbench.runtime import Tracker

__all__ = ["ORDERS", "LandscapeResult", "check_on_row", "check_order", "fill_grid", "grid_axis"]

#: the orders a grid's points can be visited in
ORDERS = ("rows", "coarse_to_fine")


@dataclass
class LandscapeResult(AnalysisResult):
    """Objective values on a line, a plane or an interpolation path.

    ``kind`` is ``"1d"``, ``"2d"`` or ``"interpolation"``. For 1-D and interpolation,
    ``values[name][i]`` is at ``alphas[i]``; for 2-D, ``values[name][i, j]`` is at
    ``θ0 + alphas[i]·d1 + betas[j]·d2``. ``references`` holds the objectives of the unperturbed
    network(s) with their own BatchNorm buffers: ``{"model": ...}`` for slices,
    ``{"start": ..., "end": ...}`` for interpolation. A partial result (handed to ``on_row`` while
    the grid fills in) has ``complete=False`` and NaN where a point is not computed yet.
    """

    kind: str
    alphas: np.ndarray
    betas: np.ndarray | None
    values: dict[str, np.ndarray]
    n_samples: int
    bn_mode: str
    seed: int | None = None
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    complete: bool = True
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def objectives(self) -> list[str]:
        """Names of the evaluated objectives."""
        return list(self.values)


def grid_axis(span: tuple[float, float], steps: int, arg: str) -> np.ndarray:
    """One axis of a grid: ``linspace(*span, steps)`` (the midpoint when ``steps == 1``).

    A value within ``1e-12·(high - low)`` of 0 is set to exactly 0, so the unperturbed point is on
    the grid when the span contains it.

    Args:
        span: ``(low, high)``, finite, ``low < high``. steps: number of points (at least 1).
        arg: the argument's name in error messages.

    Returns:
        float64 array of ``steps`` values.
    """
    try:
        lo, hi = (float(v) for v in span)
    except (TypeError, ValueError):
        raise AnalysisError(f"{arg}: expected a pair (low, high), got {span!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise AnalysisError(f"{arg}: expected finite low < high, got {span!r}")
    n = check_positive_int(steps, "steps")
    grid = np.linspace(lo, hi, n) if n > 1 else np.array([(lo + hi) / 2.0])
    grid[np.abs(grid) <= 1e-12 * (hi - lo)] = 0.0
    return grid


def _visit_order(shape: tuple[int, ...], order: str) -> list[tuple[int, ...]]:
    """Grid indices in evaluation order: row-major, or coarse to fine (every ``2^k``-th point of
    each axis first, ``k`` decreasing, each level row-major)."""
    points = list(np.ndindex(*shape))
    if order == "rows":
        return points
    stride = 1
    while stride * 2 < max(shape):
        stride *= 2
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while stride >= 1:
        for p in points:
            if p not in seen and all(i % stride == 0 for i in p):
                seen.add(p)
                out.append(p)
        stride //= 2
    return out


def _chunks(points: list[tuple[int, ...]], n: int) -> list[list[tuple[int, ...]]]:
    """``points`` in ``n`` consecutive chunks of (almost) equal size."""
    bounds = np.linspace(0, len(points), n + 1).round().astype(int)
    return [points[bounds[i] : bounds[i + 1]] for i in range(n)]


def check_on_row(on_row: object) -> None:
    """Raise a one-line :class:`AnalysisError` unless ``on_row`` is ``None`` or callable."""
    if on_row is not None and not callable(on_row):
        raise AnalysisError(
            f"on_row: expected a callable(partial LandscapeResult), got {type(on_row).__name__}"
        )


def check_order(order: object) -> str:
    """``order`` if it is one of :data:`ORDERS`, else a one-line :class:`AnalysisError`."""
    if order not in ORDERS:
        raise AnalysisError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
    return str(order)


def fill_grid(
    shape: tuple[int, ...],
    order: str,
    objs: Mapping[str, ObjectiveFn],
    evaluate: Callable[[list[tuple[int, ...]]], list[dict[str, float]]],
    track: Tracker,
    make_result: Callable[[dict[str, np.ndarray], bool], LandscapeResult],
    on_row: Callable[[LandscapeResult], None] | None,
    label: str,
    group: int = 1,
) -> dict[str, np.ndarray]:
    """Evaluate every grid point in ``order``.

    The points come in ``shape[0]`` chunks (a 2-D grid: one row's worth each), ``evaluate(points)``
    taking up to ``group`` points of one chunk at a time; after each chunk progress is reported
    through ``track`` (message prefixed by ``label``) and ``on_row`` gets
    ``make_result(partial values, complete)`` (NaN where not computed yet). Checks for a stop
    before every group of points.

    Returns:
        ``{objective name: array of shape}``.
    """
    values = {name: np.full(shape, np.nan) for name in objs}
    chunks = _chunks(_visit_order(shape, order), shape[0])
    for k, chunk in enumerate(chunks, start=1):
        for start in range(0, len(chunk), group):
            track.check()
            points = chunk[start : start + group]
            for index, point in zip(points, evaluate(points), strict=True):
                for name, v in point.items():
                    values[name][index] = v
        last = k == len(chunks)
        if on_row is not None:
            on_row(make_result({n: v.copy() for n, v in values.items()}, last))
        track.report(k, f"{label}: {k}/{len(chunks)}")
        if not last:
            track.check()
    return values
