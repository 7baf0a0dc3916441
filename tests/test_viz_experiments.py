"""The experiment views return plotly figures whose traces carry exactly the bands' and rows' values.

Inputs are hand-made bands and table rows (no runs, no training).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from workbench import viz
from workbench.experiments import Band
from workbench.viz import VizError


def _types(fig: go.Figure) -> list[str]:
    return [t.type for t in fig.data]


def _band(label: str, mean: list[float], std: list[float], *, axis: str = "epoch", smoothed=None) -> Band:
    x = np.arange(1, len(mean) + 1, dtype=np.float64)
    m, s = np.asarray(mean), np.asarray(std)
    return Band(
        label=label,
        metric="test_acc",
        axis=axis,
        x=x,
        mean=m,
        std=s,
        min=m - s,
        max=m + s,
        n=np.full(len(mean), 3),
        runs=["a", "b", "c"],
        alignment="by epoch",
        smoothing=0.6 if smoothed is not None else 0.0,
        smoothed=None if smoothed is None else np.asarray(smoothed),
    )


# ---- group curves ----------------------------------------------------------------------------------
def test_group_curves_mean_and_band_per_group():
    bands = [_band("kd", [0.5, 0.7], [0.1, 0.05]), _band("dkd", [0.6, 0.8], [float("nan"), 0.02])]
    fig = viz.group_curves(bands)
    assert _types(fig) == ["scatter"] * 6  # upper, lower (filled), mean per group
    upper, lower, mean = fig.data[:3]
    assert np.allclose(upper.y, [0.6, 0.75]) and np.allclose(lower.y, [0.4, 0.65])
    assert lower.fill == "tonexty" and upper.showlegend is False
    assert np.allclose(mean.y, [0.5, 0.7]) and mean.name == "kd"
    assert np.allclose(fig.data[3].y, [0.6, 0.82]) and np.allclose(
        fig.data[4].y, [0.6, 0.78]
    )  # nan std: no band
    assert fig.data[2].line.color != fig.data[5].line.color
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.xaxis.dtick == 1
    assert len(viz.group_curves(bands, show_band=False).data) == 2


def test_group_curves_smoothed_over_raw():
    band = _band("kd", [1.0, 0.0, 1.0], [0.1, 0.1, 0.1], axis="step", smoothed=[1.0, 0.4, 0.7])
    fig = viz.group_curves([band])
    assert len(fig.data) == 4
    raw, smooth = fig.data[2], fig.data[3]
    assert (
        np.allclose(raw.y, [1.0, 0.0, 1.0]) and raw.opacity == pytest.approx(0.35) and raw.showlegend is False
    )
    assert np.allclose(smooth.y, [1.0, 0.4, 0.7]) and smooth.name == "kd"
    assert fig.layout.xaxis.title.text == "step"
    hidden = viz.group_curves([band], show_raw=False)
    assert len(hidden.data) == 3 and np.allclose(hidden.data[2].y, [1.0, 0.4, 0.7])


def test_group_curves_rejects_bad_bands():
    with pytest.raises(VizError, match="at least one"):
        viz.group_curves([])
    with pytest.raises(VizError, match="one axis"):
        viz.group_curves([_band("a", [1.0], [0.0]), _band("b", [1.0], [0.0], axis="step")])
    with pytest.raises(VizError, match="bands"):
        viz.group_curves([{"label": "a"}])
    empty = _band("a", [], [])
    with pytest.raises(VizError, match="no group logged test_acc"):
        viz.group_curves([empty])


# ---- parameters against a metric --------------------------------------------------------------------
RUN_ROWS = [
    {"run": "r1", "group": "kd", "seed": 0, "distill.methods": "0.9*kd", "optim.lr": 0.1, "test_acc": 0.8},
    {"run": "r2", "group": "kd", "seed": 1, "distill.methods": "0.9*kd", "optim.lr": 0.1, "test_acc": 0.7},
    {"run": "r3", "group": "none", "seed": 0, "distill.methods": "none", "optim.lr": 0.05, "test_acc": 0.6},
    {"run": "r4", "group": "dkd", "seed": 0, "distill.methods": "dkd", "optim.lr": 0.05, "test_acc": None},
]


def test_parallel_coordinates_encodes_categories():
    fig = viz.parallel_coordinates(RUN_ROWS, ["distill.methods", "optim.lr"], "test_acc")
    assert _types(fig) == ["parcoords"]
    methods, lr, acc = fig.data[0].dimensions
    # r4 has no value: left out; categories sorted: 0.9*kd -> 0, none -> 1
    assert list(methods.ticktext) == ["0.9*kd", "none"] and list(methods.tickvals) == [0, 1]
    assert list(methods.values) == [0, 0, 1]
    assert list(lr.values) == [0.1, 0.1, 0.05] and lr.ticktext is None
    assert acc.label == "test_acc" and list(acc.values) == [0.8, 0.7, 0.6]
    assert list(fig.data[0].line.color) == [0.8, 0.7, 0.6]


def test_parallel_coordinates_mixed_values_are_categories():
    rows = [{"train.max_steps": None, "mean": 0.5}, {"train.max_steps": 100, "mean": 0.6}]
    dim = viz.parallel_coordinates(rows, ["train.max_steps"], "mean").data[0].dimensions[0]
    assert list(dim.ticktext) == ["100", "none"] and list(dim.values) == [1, 0]
    with pytest.raises(VizError, match="'optim.lr': not a column"):
        viz.parallel_coordinates(rows, ["optim.lr"], "mean")
    with pytest.raises(VizError, match="at least one parameter"):
        viz.parallel_coordinates(rows, [], "mean")
    with pytest.raises(VizError, match="no row has a finite"):
        viz.parallel_coordinates([{"a": 1, "mean": math.nan}], ["a"], "mean")


def test_parameter_scatter_one_trace_per_group():
    fig = viz.parameter_scatter(RUN_ROWS, "optim.lr", "test_acc")
    assert [t.name for t in fig.data] == ["kd", "none"]
    assert list(fig.data[0].x) == [0.1, 0.1] and list(fig.data[0].y) == [0.8, 0.7]
    assert fig.layout.xaxis.title.text == "optim.lr" and fig.layout.xaxis.type is None
    cats = viz.parameter_scatter(RUN_ROWS, "distill.methods", "test_acc")
    assert cats.layout.xaxis.type == "category" and list(cats.layout.xaxis.categoryarray) == [
        "0.9*kd",
        "none",
    ]
    group_rows = [
        {"group": "a", "optim.lr": 0.1, "mean": 0.8, "std": 0.02},
        {"group": "b", "optim.lr": 0.2, "mean": 0.7, "std": math.nan},
    ]
    bars = viz.parameter_scatter(group_rows, "optim.lr", "mean", error="std")
    assert list(bars.data[0].error_y.array) == [0.02] and list(bars.data[1].error_y.array) == [0.0]


def test_leaderboard_sorted_best_first():
    rows = [
        {
            "group": "kd",
            "mean": 0.80,
            "std": 0.01,
            "n": 3,
            "better": "higher",
            "measure": "test_acc, last epoch",
        },
        {
            "group": "dkd",
            "mean": 0.85,
            "std": 0.02,
            "n": 3,
            "better": "higher",
            "measure": "test_acc, last epoch",
        },
        {
            "group": "none",
            "mean": 0.70,
            "std": math.nan,
            "n": 1,
            "better": "higher",
            "measure": "test_acc, last epoch",
        },
        {"group": "broken", "mean": math.nan, "std": math.nan, "n": 0, "better": "higher"},
    ]
    fig = viz.leaderboard(rows)
    bar = fig.data[0]
    assert _types(fig) == ["bar"] and bar.orientation == "h"
    assert list(bar.y) == ["dkd", "kd", "none"] and list(bar.x) == [0.85, 0.80, 0.70]
    assert list(bar.error_x.array) == [0.02, 0.01, 0.0]
    assert bar.text[0] == "0.8500 ± 0.0200 (n=3)"
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.title.text == "test_acc, last epoch (higher is better)"
    losses = [
        {"group": "a", "mean": 0.3, "std": 0.0, "better": "lower"},
        {"group": "b", "mean": 0.1, "std": 0.0, "better": "lower"},
    ]
    assert list(viz.leaderboard(losses).data[0].y) == ["b", "a"]
    with pytest.raises(VizError, match="rows"):
        viz.leaderboard([])
