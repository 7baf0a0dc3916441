"""Loss landscapes (Li et al. 2018), interpolation, and Hessian power iteration / Hutchinson trace."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.analysis.directions import random_direction
from workbench.analysis.interpolation import interpolate
from workbench.analysis.landscape import landscape_1d, landscape_2d
from workbench.analysis.objectives import agreement, cross_entropy, kd
from workbench.distill.functional import kd_loss
from workbench.models import create_model

N = 64


def _make(seed: int, name: str = "cnn_small") -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, in_channels=1, image_size=8)
    # a few training-mode passes so BatchNorm buffers hold non-trivial statistics
    with torch.no_grad():
        model.train()
        for i in range(3):
            model(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(100 + i)) * 2 + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 1, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g)


@pytest.fixture(scope="module")
def teacher():
    return _make(11)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(now[k], v), k


def _ce(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(images), labels))


# ---- directions ---------------------------------------------------------------------------------
def test_random_direction_is_filter_normalized_with_bias_and_bn_zeroed():
    model = _make(0)
    d = random_direction(model, seed=3)
    params = dict(model.named_parameters())
    assert d.keys() == params.keys()
    bn_names = {
        f"{path}.{n}"
        for path, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
        for n in ("weight", "bias")
    }
    assert bn_names
    for name, p in params.items():
        assert d[name].shape == p.shape
        if p.ndim <= 1 or name in bn_names:
            assert not d[name].any(), name
        else:
            want = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            got = d[name].reshape(p.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
            assert (d[name] > 0).any() and (d[name] < 0).any(), name


def test_random_direction_is_deterministic_by_seed():
    model = _make(0)
    a, b, c = random_direction(model, 5), random_direction(model, 5), random_direction(model, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc.weight"], c["fc.weight"])
    keep = random_direction(model, 5, ignore_bias_bn=False)
    assert torch.equal(keep["fc.bias"], model.fc.bias.detach())


# ---- 1-D / 2-D slices ---------------------------------------------------------------------------
def test_landscape_1d_centre_equals_the_models_own_objectives(data, teacher):
    images, labels = data
    model = _make(1)
    objectives = {"ce": cross_entropy, "kd": kd(4.0), "agree": agreement}
    res = landscape_1d(
        teacher,
        model,
        images,
        labels,
        objectives=objectives,
        steps=11,
        batch_size=N,
        memory_format="contiguous",
        fold_bn=False,
    )
    assert res.kind == "1d" and res.alphas[5] == 0.0 and res.values["ce"].shape == (11,)
    with torch.no_grad():
        s, t = model(images), teacher(images)
    assert res.values["ce"][5] == pytest.approx(float(F.cross_entropy(s, labels)), rel=1e-12)
    assert res.values["kd"][5] == pytest.approx(float(kd_loss(s, t, temperature=4.0)), rel=1e-12)
    assert res.values["agree"][5] == pytest.approx(float((s.argmax(1) == t.argmax(1)).double().mean()))
    assert res.references["model"]["ce"] == res.values["ce"][5]
    # moving away from the (random) model changes the loss
    assert res.values["ce"][0] != pytest.approx(res.values["ce"][5])


def test_landscape_batches_do_not_change_the_means(data):
    images, labels = data
    model = _make(1)
    one = landscape_1d(
        None, model, images, labels, objectives=["cross_entropy", "accuracy"], steps=5, batch_size=N
    )
    many = landscape_1d(
        None, model, images, labels, objectives=["cross_entropy", "accuracy"], steps=5, batch_size=10
    )
    np.testing.assert_allclose(many.values["cross_entropy"], one.values["cross_entropy"], rtol=1e-6)
    np.testing.assert_allclose(many.values["accuracy"], one.values["accuracy"], atol=1e-12)


def test_landscape_2d_grid_points_are_the_perturbed_models(data):
    images, labels = data
    model = _make(2)
    res = landscape_2d(None, model, images, labels, steps=5, span=(-0.5, 0.5), seed=7)
    assert res.values["cross_entropy"].shape == (5, 5) and res.betas is not None
    assert res.values["cross_entropy"][2, 2] == pytest.approx(_ce(model, images, labels), rel=1e-6)
    d1, d2 = random_direction(model, 7), random_direction(model, 8)
    i, j = 0, 3
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p.add_(res.alphas[i] * d1[name] + res.betas[j] * d2[name])
    assert res.values["cross_entropy"][i, j] == pytest.approx(_ce(moved, images, labels), rel=1e-5)


def test_landscape_restores_the_model_bitwise_and_its_modes(data):
    images, labels = data
    model = _make(3)
    model.train()
    model.features[0].eval()  # a mixed state must come back as it was
    saved = _state(model)
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    landscape_2d(None, model, images, labels, steps=3, bn_mode="recompute")
    _assert_same_state(model, saved)
    assert model.training and not model.features[0].training and model.features[1].training
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta

    calls = {"n": 0}

    def failing(logits, labels, teacher_logits):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return F.cross_entropy(logits, labels)

    with pytest.raises(RuntimeError, match="boom"):
        landscape_1d(None, model, images, labels, objectives={"f": failing}, steps=5, bn_mode="recompute")
    _assert_same_state(model, saved)
    assert model.training and not model.features[0].training


def test_landscape_input_errors(data):
    images, labels = data
    model = _make(4)
    with pytest.raises(
        ValueError, match="unknown objective 'hinge'; known: accuracy, agreement, cross_entropy, kd"
    ):
        landscape_1d(None, model, images, labels, objectives=["hinge"])
    with pytest.raises(ValueError, match="teacher"):
        landscape_1d(None, model, images, labels, objectives={"kd": kd(2.0)})
    with pytest.raises(ValueError, match="bn_mode: unknown mode 'train'"):
        landscape_1d(None, model, images, labels, bn_mode="train")
    with pytest.raises(ValueError, match="missing parameter"):
        landscape_1d(None, model, images, labels, direction={"fc.weight": torch.zeros(10, 64)})


# ---- interpolation ------------------------------------------------------------------------------
def test_interpolation_with_running_stats_hits_both_models_at_the_ends(data, teacher):
    images, labels = data
    a, b = _make(5), _make(6)
    saved_a, saved_b = _state(a), _state(b)
    res = interpolate(
        teacher,
        a,
        b,
        images,
        labels,
        objectives={"ce": cross_entropy, "kd": kd(2.0)},
        steps=5,
        bn_mode="running",
        batch_size=N,
        memory_format="contiguous",
        fold_bn=False,
    )
    assert res.kind == "interpolation" and res.alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert res.values["ce"][0] == pytest.approx(_ce(a, images, labels), rel=1e-12)
    assert res.values["ce"][-1] == pytest.approx(_ce(b, images, labels), rel=1e-12)
    with torch.no_grad():
        assert res.values["kd"][-1] == pytest.approx(
            float(kd_loss(b(images), teacher(images), 2.0)), rel=1e-12
        )
    # the midpoint is the network whose parameters and buffers are the averages
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for t, tb in zip(mid.state_dict().values(), b.state_dict().values(), strict=True):
            if t.is_floating_point():
                t.copy_(0.5 * t + 0.5 * tb)
    assert res.values["ce"][2] == pytest.approx(_ce(mid, images, labels), rel=1e-5)
    _assert_same_state(a, saved_a)
    _assert_same_state(b, saved_b)


def test_interpolation_recomputes_batchnorm_statistics(data):
    images, labels = data
    a, b = _make(7), _make(8)
    recompute = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(9)) * 1.5 + 0.2
    res = interpolate(
        None,
        a,
        b,
        images,
        labels,
        steps=3,
        bn_mode="recompute",
        recompute_images=recompute,
        batch_size=N,
        memory_format="contiguous",
        fold_bn=False,
    )
    # at alpha = 0: model a with its BatchNorm statistics re-estimated on the 40 recompute images
    ref = copy.deepcopy(a)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        ref(recompute)
    ref.eval()
    assert res.values["cross_entropy"][0] == pytest.approx(_ce(ref, images, labels), rel=1e-5)
    assert res.values["cross_entropy"][0] != pytest.approx(_ce(a, images, labels), rel=1e-3)
    assert res.references["start"]["cross_entropy"] == pytest.approx(_ce(a, images, labels), rel=1e-12)


def test_interpolation_without_batchnorm_is_the_same_in_both_modes(data):
    images, labels = data
    torch.manual_seed(0)
    a = create_model("mlp", num_classes=10, in_channels=1, image_size=8)
    torch.manual_seed(1)
    b = create_model("mlp", num_classes=10, in_channels=1, image_size=8)
    run = interpolate(None, a, b, images, labels, steps=4, bn_mode="running")
    rec = interpolate(None, a, b, images, labels, steps=4, bn_mode="recompute")
    np.testing.assert_allclose(run.values["cross_entropy"], rec.values["cross_entropy"], rtol=1e-12)


def test_interpolation_rejects_different_architectures(data):
    images, labels = data
    with pytest.raises(ValueError, match="end: "):
        interpolate(None, _make(0), _make(0, "resnet8"), images, labels)
    with pytest.raises(ValueError, match="bn_mode: unknown mode 'mean'; known: recompute, running"):
        interpolate(None, _make(0), _make(1), images, labels, bn_mode="mean")


def test_channels_last_evaluation_matches_and_restores_the_layout(data):
    images, labels = data
    model = _make(12)
    saved = _state(model)
    weights = [p for p in model.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous() for p in weights)
    ids = [id(p) for p in weights]
    plain = landscape_2d(None, model, images, labels, steps=3, memory_format="contiguous")
    fast = landscape_2d(None, model, images, labels, steps=3, memory_format="channels_last")
    auto = landscape_2d(None, model, images, labels, steps=3)  # a conv net on the CPU
    np.testing.assert_allclose(fast.values["cross_entropy"], plain.values["cross_entropy"], rtol=1e-5)
    np.testing.assert_array_equal(auto.values["cross_entropy"], fast.values["cross_entropy"])
    assert fast.references["model"]["cross_entropy"] == fast.values["cross_entropy"][1, 1]
    with pytest.raises(ValueError, match="memory_format: expected one of auto, channels_last, contiguous"):
        landscape_1d(None, model, images, labels, steps=3, memory_format="nhwc")
    _assert_same_state(model, saved)
    after = [p for p in model.parameters() if p.ndim == 4]
    assert [id(p) for p in after] == ids and all(p.is_contiguous() for p in after)


def test_folded_batchnorm_evaluation_agrees_and_follows_every_point(data):
    images, labels = data
    model = _make(13)
    saved = _state(model)
    kinds = [type(m) for m in model.modules()]
    recompute = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 1.5
    for bn_mode in ("eval", "recompute"):
        kw = dict(steps=3, bn_mode=bn_mode, recompute_images=recompute, memory_format="contiguous")
        folded = landscape_2d(None, model, images, labels, fold_bn=True, **kw)
        plain = landscape_2d(None, model, images, labels, fold_bn=False, **kw)
        np.testing.assert_allclose(folded.values["cross_entropy"], plain.values["cross_entropy"], rtol=1e-5)
        # the perturbed points differ from the centre: the folded copy followed every change
        assert len(np.unique(np.round(folded.values["cross_entropy"], 6))) == 9
        if bn_mode == "eval":  # the centre is the model itself, evaluated through the same copy
            assert folded.references["model"]["cross_entropy"] == folded.values["cross_entropy"][1, 1]
    a, b = _make(14), _make(15)
    for bn in ("running", "recompute"):
        f = interpolate(None, a, b, images, labels, steps=4, bn_mode=bn, fold_bn=True)
        p = interpolate(None, a, b, images, labels, steps=4, bn_mode=bn, fold_bn=False)
        np.testing.assert_allclose(f.values["cross_entropy"], p.values["cross_entropy"], rtol=1e-5)
    _assert_same_state(model, saved)
    assert [type(m) for m in model.modules()] == kinds and nn.BatchNorm2d in kinds
