"""Loss landscapes with several grid points per forward call (``points_per_batch``).

Stacking the parameter sets of several points and evaluating them with one vmapped
``functional_call`` must give the values of the point-by-point path (within 1e-5), fill the grid
in the same order with one ``on_row`` call per row, and leave the model untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.directions import random_direction
from workbench.analysis.landscape import landscape_1d, landscape_2d, resolve_points_per_batch
from workbench.models import create_model
from workbench.runtime import Cancelled, CancelToken

N = 48
OBJECTIVES = ["cross_entropy", "accuracy", "kd"]


def _make(seed: int, name: str) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, in_channels=1, image_size=8)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.train()
        model(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 100)) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 1, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g)


@pytest.fixture(scope="module")
def teacher():
    return _make(7, "cnn_small")


def _close(a, b, tol=1e-5):
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        assert not np.isnan(a.values[name]).any()
        np.testing.assert_allclose(b.values[name], a.values[name], atol=tol, rtol=0, err_msg=name)


@pytest.mark.parametrize("name", ["cnn_small", "resnet8"])
@pytest.mark.parametrize("order", ["rows", "coarse_to_fine"])
def test_four_points_per_call_equal_one_point_per_call(data, teacher, name, order):
    x, y = data
    model = _make(1, name)
    common = dict(objectives=OBJECTIVES, steps=4, span=(-0.8, 1.0), order=order, batch_size=20)
    one = landscape_2d(teacher, model, x, y, points_per_batch=1, **common)
    rows: list = []
    four = landscape_2d(teacher, model, x, y, points_per_batch=4, on_row=rows.append, **common)
    assert one.params["points_per_batch"] == 1 and four.params["points_per_batch"] == 4
    _close(one, four)
    # one call per row, each with the points of that row's chunk filled in, the last complete
    assert len(rows) == 4
    filled = [int((~np.isnan(r.values["cross_entropy"])).sum()) for r in rows]
    assert filled == [4, 8, 12, 16]
    assert [r.complete for r in rows] == [False] * 3 + [True]
    if order == "rows":  # row by row: the first partial holds exactly the first row
        assert not np.isnan(rows[0].values["cross_entropy"][0]).any()
        assert np.isnan(rows[0].values["cross_entropy"][1:]).all()


@pytest.mark.parametrize("options", [{"fold_bn": False}, {"memory_format": "contiguous"}])
def test_batched_points_without_folding_or_channels_last(data, options):
    x, y = data
    model = _make(2, "resnet8")
    one = landscape_2d(None, model, x, y, steps=3, points_per_batch=1, **options)
    many = landscape_2d(None, model, x, y, steps=3, points_per_batch=9, **options)
    _close(one, many)


def test_directions_that_move_batchnorm_parameters_are_stacked_too(data):
    # a user direction that also moves BN weights and biases: the folded convs are re-folded per point
    x, y = data
    model = _make(3, "resnet8")
    d1 = random_direction(model, seed=1, ignore_bias_bn=False)
    d2 = random_direction(model, seed=2, ignore_bias_bn=False)
    kw = dict(directions=(d1, d2), steps=3, span=(-0.5, 0.5))
    _close(
        landscape_2d(None, model, x, y, points_per_batch=1, **kw),
        landscape_2d(None, model, x, y, points_per_batch=3, **kw),
    )


def test_1d_batched_equals_per_point_and_leaves_the_model_untouched(data):
    x, y = data
    model = _make(4, "resnet8")
    model.train()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    one = landscape_1d(None, model, x, y, steps=7, points_per_batch=1)
    seven = landscape_1d(None, model, x, y, steps=7, points_per_batch=7)
    _close(one, seven)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_recompute_falls_back_to_one_point_per_call(data):
    x, y = data
    model = _make(5, "cnn_small")
    res = landscape_1d(None, model, x, y, steps=3, bn_mode="recompute", points_per_batch=8)
    assert res.params["points_per_batch"] == 1
    ref = landscape_1d(None, model, x, y, steps=3, bn_mode="recompute", points_per_batch=1)
    _close(ref, res, tol=0.0)


def test_cancel_between_groups_leaves_the_model_untouched(data):
    x, y = data
    model = _make(6, "cnn_small")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    token = CancelToken()
    calls = []

    def on_row(partial):
        calls.append(partial)
        token.cancel()

    with pytest.raises(Cancelled):
        landscape_2d(None, model, x, y, steps=4, points_per_batch=4, cancel=token, on_row=on_row)
    assert len(calls) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_points_per_batch_resolution_and_errors(data):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_points_per_batch("auto", cpu, 256, "eval") == 1
    assert resolve_points_per_batch("auto", cuda, 256, "eval") == 32
    assert resolve_points_per_batch("auto", cuda, 100_000, "eval") == 1
    assert resolve_points_per_batch("auto", cuda, 16, "eval") == 64
    assert resolve_points_per_batch("auto", cuda, 256, "recompute") == 1
    assert resolve_points_per_batch(6, cpu, 256, "eval") == 6
    x, y = data
    model = _make(0, "cnn_small")
    for bad in (0, "many", 2.5, True):
        with pytest.raises(ValueError, match="points_per_batch"):
            landscape_1d(None, model, x, y, steps=3, points_per_batch=bad)
