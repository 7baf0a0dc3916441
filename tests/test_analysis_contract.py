"""The analysis contract: every public analysis leaves the caller's models exactly as they were
(parameters, buffers, device, training flags, requires_grad, hooks) - also when cancelled -
reports monotone progress that ends at its total, and returns a result that carries
``class_names`` and ``params`` and JSON-dumps through ``to_dict()``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.agreement import agreement_report, reliability_diagram
from workbench.analysis.difficulty import difficulty_report
from workbench.analysis.embedding import embedding_2d
from workbench.analysis.hessian import hessian_top_eigenvalue, hessian_trace
from workbench.analysis.interpolation import interpolate
from workbench.analysis.landscape import landscape_1d, landscape_2d
from workbench.analysis.similarity import cka_matrix, cka_over_training
from workbench.metrics import expected_calibration_error
from workbench.models import create_model
from workbench.runtime import Cancelled, CancelToken

CLASSES = [f"class {i}" for i in range(10)]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.train()
        model(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 + 0.3)
    return model


def _prepared(seed: int) -> tuple[nn.Module, list[int]]:
    """A model in train mode with a BatchNorm, one submodule in eval, one frozen parameter and a
    user forward hook that counts its calls."""
    model = _model(seed)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    next(iter(model.parameters())).requires_grad_(False)
    calls: list[int] = []
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first.register_forward_hook(lambda module, args, out: calls.append(1))
    return model, calls


def _fingerprint(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "devices": [t.device for t in model.state_dict().values()],
        "flags": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [p.grad for p in model.parameters()],
        "hooks": [
            (
                n,
                list(m._forward_hooks.values()),
                list(m._forward_pre_hooks.values()),
                list(m._backward_hooks.values()),
            )
            for n, m in model.named_modules()
        ],
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _fingerprint(model)
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k
    assert after["devices"] == before["devices"]
    assert after["flags"] == before["flags"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"])
    assert len(after["hooks"]) == len(before["hooks"])
    for (n, f, pre, bw), (n0, f0, pre0, bw0) in zip(after["hooks"], before["hooks"], strict=True):
        assert n == n0
        assert len(f) == len(f0) and all(a is b for a, b in zip(f, f0, strict=True)), n
        assert pre == pre0 == [] or [id(h) for h in pre] == [id(h) for h in pre0], n
        assert len(bw) == len(bw0), n


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)


def _cases():
    kw = {"batch_size": 16, "class_names": CLASSES}
    return {
        "cka_matrix": lambda t, s, e, x, y, **k: cka_matrix(t, s, x, y, **kw, **k),
        "cka_matrix_rbf": lambda t, s, e, x, y, **k: cka_matrix(t, s, x, y, kernel="rbf", **kw, **k),
        "cka_over_training": lambda t, s, e, x, y, **k: cka_over_training(t, {1: e, 5: s}, x, y, **kw, **k),
        "embedding_2d": lambda t, s, e, x, y, **k: embedding_2d(t, s, x, y, **kw, **k),
        "landscape_1d": lambda t, s, e, x, y, **k: landscape_1d(
            t, s, x, y, objectives=["cross_entropy", "kd"], steps=3, **kw, **k
        ),
        "landscape_2d": lambda t, s, e, x, y, **k: landscape_2d(
            t, s, x, y, objectives="agreement", steps=3, bn_mode="recompute", **kw, **k
        ),
        "interpolate": lambda t, s, e, x, y, **k: interpolate(t, s, e, x, y, steps=3, **kw, **k),
        "hessian_top_eigenvalue": lambda t, s, e, x, y, **k: hessian_top_eigenvalue(
            t, s, x, y, objective="kd", iters=3, **kw, **k
        ),
        "hessian_trace": lambda t, s, e, x, y, **k: hessian_trace(t, s, x, y, n_probes=2, **kw, **k),
        "agreement_report": lambda t, s, e, x, y, **k: agreement_report(t, s, x, y, **kw, **k),
        "difficulty_report": lambda t, s, e, x, y, **k: difficulty_report(t, s, x, y, **kw, **k),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_an_analysis_leaves_the_models_as_they_were_and_reports_progress(name, data):
    images, labels = data
    (teacher, t_calls), (student, s_calls), (other, o_calls) = _prepared(1), _prepared(2), _prepared(3)
    before = {id(m): _fingerprint(m) for m in (teacher, student, other)}
    reports: list[tuple[int, int, str]] = []
    result = CASES[name](teacher, student, other, images, labels, progress=lambda *a: reports.append(a))
    for m in (teacher, student, other):
        _assert_unchanged(m, before[id(m)])
    assert t_calls == s_calls == o_calls == []  # the caller's hooks never ran on the analysis's forwards

    assert reports, "no progress reported"
    done = [r[0] for r in reports]
    totals = {r[1] for r in reports}
    assert len(totals) == 1 and done == sorted(done) and done[0] == 0 and done[-1] == totals.pop()
    assert all(isinstance(r[2], str) for r in reports)

    assert result.class_names == CLASSES
    assert isinstance(result.params, dict) and result.params
    out = result.to_dict()
    assert out["class_names"] == CLASSES and out["kind"] == type(result).__name__
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("name", list(CASES))
def test_a_cancelled_analysis_raises_and_leaves_nothing_behind(name, data):
    images, labels = data
    (teacher, _), (student, _), (other, _) = _prepared(1), _prepared(2), _prepared(3)
    before = {id(m): _fingerprint(m) for m in (teacher, student, other)}
    token = CancelToken()
    reports: list[int] = []

    def progress(done: int, total: int, message: str) -> None:
        reports.append(done)
        token.cancel()  # after the first report

    with pytest.raises(Cancelled):
        CASES[name](teacher, student, other, images, labels, progress=progress, cancel=token)
    assert reports == [0]
    for m in (teacher, student, other):
        _assert_unchanged(m, before[id(m)])


def test_an_analysis_on_a_model_after_a_failure_is_unchanged(data):
    images, labels = data
    student, _ = _prepared(2)
    before = _fingerprint(student)
    calls = {"n": 0}

    def failing(logits, y, t):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return torch.nn.functional.cross_entropy(logits, y)

    with pytest.raises(RuntimeError, match="boom"):
        landscape_2d(None, student, images, labels, objectives={"f": failing}, steps=3, bn_mode="recompute")
    _assert_unchanged(student, before)


def test_bad_progress_and_cancel_arguments_are_one_line_errors(data):
    images, labels = data
    t, s = _model(1), _model(2)
    with pytest.raises(ValueError, match="progress: expected a callable"):
        agreement_report(t, s, images, labels, progress=3)
    with pytest.raises(ValueError, match="cancel: expected a workbench.runtime.CancelToken"):
        difficulty_report(t, s, images, labels, cancel=True)
    with pytest.raises(ValueError, match="student: expected a torch.nn.Module"):
        cka_matrix(t, "resnet", images)
    with pytest.raises(ValueError, match="names: expected a pair"):
        agreement_report(t, s, images, labels, names="teacher")


# ---- landscape rows as they fill in ---------------------------------------------------------------
@pytest.mark.parametrize("order", ["rows", "coarse_to_fine"])
def test_landscape_hands_back_each_row_as_it_fills_in(order, data):
    images, labels = data
    student = _model(4).eval()
    partials = []
    final = landscape_2d(
        None, student, images, labels, steps=5, order=order, batch_size=32, on_row=partials.append
    )
    assert len(partials) == 5  # once per grid row
    nans = [int(np.isnan(p.values["cross_entropy"]).sum()) for p in partials]
    assert all(a > b for a, b in zip(nans, nans[1:], strict=False)) and nans[-1] == 0
    assert [p.complete for p in partials] == [False] * 4 + [True]
    np.testing.assert_array_equal(partials[-1].values["cross_entropy"], final.values["cross_entropy"])
    first = partials[0].values["cross_entropy"]
    if order == "rows":
        assert not np.isnan(first[0]).any() and np.isnan(first[1:]).all()
    else:  # the coarse grid (every 4th point) comes first
        assert not np.isnan(first[::4, ::4]).any()
        rows = landscape_2d(None, student, images, labels, steps=5, batch_size=32)
        np.testing.assert_allclose(final.values["cross_entropy"], rows.values["cross_entropy"], rtol=1e-12)


def test_landscape_1d_and_interpolation_report_every_point(data):
    images, labels = data
    a, b = _model(5).eval(), _model(6).eval()
    partials, reports = [], []
    res = landscape_1d(
        None, a, images, labels, steps=4, on_row=partials.append, progress=lambda *r: reports.append(r)
    )
    assert len(partials) == 4 and [r[0] for r in reports] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(partials[-1].values["cross_entropy"], res.values["cross_entropy"])
    path = []
    interpolate(None, a, b, images, labels, steps=3, on_row=path.append)
    assert [int(np.isnan(p.values["cross_entropy"]).sum()) for p in path] == [2, 1, 0]
    assert path[-1].references.keys() == {"start", "end"}


def test_cka_of_a_model_with_itself_shares_one_copy_and_is_one(data):
    images, _ = data
    model, calls = _prepared(7)
    res = cka_matrix(model, model, images, batch_size=16)
    np.testing.assert_allclose(np.diag(res.matrix), 1.0, atol=1e-12)
    assert calls == []


# ---- the one ECE -----------------------------------------------------------------------------------
def test_ece_equals_a_hand_computed_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0])
    # two bins (0, .5], (.5, 1]: bin 0 holds the 0.5 (argmax 0, right): |1 - .5| = .5;
    # bin 1 holds .9 (right), .6 (wrong), .7 (right): |2 - 2.2| = .2 -> ECE = (.5 + .2) / 4
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.175, abs=1e-15)
    diagram = reliability_diagram(probs, labels, n_bins=2)
    assert diagram.count.tolist() == [1, 3]
    np.testing.assert_allclose(diagram.accuracy, [1.0, 2 / 3])
    np.testing.assert_allclose(diagram.confidence, [0.5, 2.2 / 3])


def test_ece_is_the_training_metric():
    from workbench.train.metrics import expected_calibration_error as train_ece

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(500, 7, generator=g, dtype=torch.float64) * 2, dim=1)
    labels = torch.randint(0, 7, (500,), generator=g)
    for n_bins in (1, 10, 15):
        ours = expected_calibration_error(probs, labels, n_bins=n_bins)
        assert train_ece(probs, labels, n_bins=n_bins) == pytest.approx(ours, abs=1e-12)
        # the bin of a confidence c is ceil(c * M) - 1 (Guo et al. 2017: bins ((m-1)/M, m/M])
        conf, pred = probs.max(1)
        bins = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
        correct = (pred == labels).double()
        gap = torch.bincount(bins, weights=conf - correct, minlength=n_bins).abs().sum() / len(labels)
        assert ours == pytest.approx(float(gap), abs=1e-12)


def test_results_keep_the_models_devices(data):
    images, labels = data
    t, s = _model(1), _model(2)
    res = agreement_report(t, s, images, labels, device="cpu")
    assert res.params["n_samples"] == 32 and res.names == ("teacher", "student")
    assert copy.deepcopy(res).to_dict() == res.to_dict()
