"""Class activation maps, attributions, localization and faithfulness against hand-derived values.

The known values come from the formulas themselves: for a global-average-pool + linear head the
gradient at the last map is ``w_c / (H*W)`` everywhere, so Grad-CAM, HiResCAM, LayerCAM and
Grad-CAM++ reduce to closed forms in the head weights; for a linear model the input gradient is
the weight row, so Saliency, SmoothGrad, Integrated Gradients and Occlusion are closed forms too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from workbench.analysis.cam import (
    CAM_METHODS,
    compare_cams,
    compare_maps,
    compute_cams,
    cross_faithfulness,
    curve_auc,
    faithfulness,
    list_cam_methods,
    localization_metrics,
)
from workbench.models import create_model
from workbench.models.taps import FeatureTaps


# ---- small models with known structure --------------------------------------------------------------
class GapNet(nn.Module):
    """conv -> ReLU -> conv (``features``, spatial size kept) -> global average pool -> linear."""

    def __init__(self, in_ch: int = 2, mid: int = 6, k: int = 5, classes: int = 4, inplace: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(mid, k, 3, padding=1),
            nn.ReLU(inplace=inplace),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(k, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


class Flaky(nn.Module):
    """Wraps a model and raises on the ``fail_at``-th forward call (to test cleanup on errors)."""

    def __init__(self, inner: nn.Module, fail_at: int):
        super().__init__()
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("boom")
        return self.inner(x)


def _gapnet(seed: int = 0, **kw) -> GapNet:
    torch.manual_seed(seed)
    model = GapNet(**kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        bn = model.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _linear(
    c: int = 2, h: int = 4, w: int = 4, k: int = 3, seed: int = 0, positive: bool = False
) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k))
    if positive:
        with torch.no_grad():
            model[1].weight.uniform_(0.1, 1.0)
    return model.eval()


def _acts(model: nn.Module, x: torch.Tensor, path: str = "features") -> torch.Tensor:
    with FeatureTaps(model, [path], detach=True) as taps, torch.no_grad():
        model(x)
        return taps.features[path]


def _assert_clean(model: nn.Module, modes: dict[str, bool]) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks, name
        assert not module._forward_pre_hooks, name
        assert not module._backward_hooks, name
        assert not getattr(module, "_backward_pre_hooks", {}), name
        assert module.training == modes[name], name


def _mixed_modes(model: nn.Module) -> dict[str, bool]:
    model.train()
    first_child = next(iter(model.children()))
    first_child.eval()  # a per-module mode that must survive
    return {name: m.training for name, m in model.named_modules()}


# ---- GAP + linear identities --------------------------------------------------------------------
def test_gradcam_equals_cam_over_area_and_sums_to_logit_minus_bias():
    model = _gapnet()
    x = torch.randn(7, 2, 8, 8)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    grad = compute_cams(model, x, method="gradcam", target=target)
    cam = compute_cams(model, x, method="cam", target=target)
    assert grad.layer == cam.layer == "features"
    np.testing.assert_allclose(grad.raw, cam.raw / 64.0, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits = model(x)
    expected = (logits.gather(1, target[:, None])[:, 0] - model.fc.bias.detach()[target]).numpy()
    np.testing.assert_allclose(grad.raw.sum(axis=(1, 2)), expected, rtol=1e-5, atol=1e-5)
    # CAM by hand: sum_k w_ck A_k
    acts = _acts(model, x)
    by_hand = torch.einsum("bkhw,bk->bhw", acts, model.fc.weight.detach()[target]).numpy()
    np.testing.assert_allclose(cam.raw, by_hand, rtol=1e-5, atol=1e-5)


def test_hirescam_equals_cam_over_area_for_gap_heads():
    # HiResCAM: sum_k G_k * A_k with G_kij = w_ck / (H W) everywhere for a GAP head -> CAM / (H W),
    # identical to Grad-CAM there, including the normalized maps.
    model = _gapnet(1)
    x = torch.randn(5, 2, 8, 8)
    hires = compute_cams(model, x, method="hirescam", target=2)
    cam = compute_cams(model, x, method="cam", target=2)
    grad = compute_cams(model, x, method="gradcam", target=2)
    np.testing.assert_allclose(hires.raw, cam.raw / 64.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hires.maps, grad.maps, atol=1e-5)


def test_layercam_and_gradcam_plus_plus_closed_forms_for_gap_heads():
    model = _gapnet(2)
    x = torch.randn(4, 2, 8, 8)
    target = torch.tensor([3, 1, 0, 2])
    acts = _acts(model, x).double()
    g = (model.fc.weight.detach()[target] / 64.0).double()  # (B, K), constant over positions
    layer = compute_cams(model, x, method="layercam", target=target)
    np.testing.assert_allclose(
        layer.raw, torch.einsum("bkhw,bk->bhw", acts, g.clamp_min(0)).numpy(), rtol=1e-5, atol=1e-6
    )
    # Grad-CAM++: alpha_k = g^2 / (2 g^2 + S_k g^3), S_k = sum_ij A_kij; w_k = HW * alpha_k * relu(g)
    s = acts.sum(dim=(2, 3))
    denom = 2 * g**2 + s * g**3
    alpha = torch.where(denom != 0, g**2 / denom, torch.zeros_like(denom))
    weights = 64.0 * alpha * g.clamp_min(0)
    plus = compute_cams(model, x, method="gradcam++", target=target)
    np.testing.assert_allclose(
        plus.raw, torch.einsum("bkhw,bk->bhw", acts, weights).numpy(), rtol=1e-4, atol=1e-6
    )


def test_cam_refuses_a_layer_that_is_not_pooled_into_the_classifier():
    model = _gapnet()
    x = torch.randn(2, 2, 8, 8)
    with pytest.raises(ValueError, match="global average pooling"):  # pre-ReLU map: 5 channels, not pooled
        compute_cams(model, x, layer="features.3", method="cam", target=0)
    with pytest.raises(ValueError, match="channels"):
        compute_cams(model, x, layer="features.0", method="cam", target=0)


def test_inplace_relu_model_gives_the_same_maps():
    x = torch.randn(3, 2, 8, 8)
    plain = _gapnet(3)
    inplace = _gapnet(3, inplace=True)
    inplace.load_state_dict(plain.state_dict())
    for method in ("gradcam++", "layercam", "gradcam"):
        a = compute_cams(plain, x, layer="features.3", method=method, target=1)
        b = compute_cams(inplace, x, layer="features.3", method=method, target=1)
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("side", [6, 2])  # more positions than channels, and fewer
def test_eigencam_of_a_rank_one_map_is_the_spatial_factor(side):
    # features(x) = v_k * x_ij (1x1 conv from one channel): A reshaped (HW, K) = x v^T has rank one,
    # its first right singular vector is v/|v|, so the projection is |v| * x (sign fixed to be >= 0).
    torch.manual_seed(0)
    model = nn.Sequential()
    model.features = nn.Conv2d(1, 4, 1, bias=False)
    model.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.fc = nn.Linear(4, 3)
    with torch.no_grad():
        model.features.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 2.0]).view(4, 1, 1, 1))
    x = torch.rand(3, 1, side, side) + 0.1
    res = compute_cams(model, x, layer="features", method="eigencam")
    np.testing.assert_allclose(res.raw, (x[:, 0] * math.sqrt(1 + 4 + 0.25 + 4)).numpy(), rtol=1e-5)


def test_eigencam_matches_the_singular_vector_projection():
    model = _gapnet(16)
    x = torch.randn(3, 2, 8, 8)
    acts = _acts(model, x).double().numpy()
    res = compute_cams(model, x, method="eigencam")
    for i in range(3):
        o = acts[i].reshape(acts.shape[1], -1).T  # (H*W, K), not centred
        _, _, vt = np.linalg.svd(o, full_matrices=False)
        proj = o @ vt[0]
        proj = proj if proj.sum() >= 0 else -proj
        np.testing.assert_allclose(res.raw[i].reshape(-1), proj, rtol=1e-4, atol=1e-5)


def test_scorecam_follows_the_channel_confidence_formula():
    # Wang et al. 2020: alpha_k = p_c(X * norm(up(A_k))) - p_c(X_b), map = sum_k alpha_k A_k.
    model = _gapnet(4, mid=3, k=2)
    x = torch.randn(2, 2, 8, 8)
    target = torch.tensor([1, 3])
    acts = _acts(model, x)
    res = compute_cams(model, x, method="scorecam", target=target)
    with torch.no_grad():
        base = torch.softmax(model(torch.zeros(1, 2, 8, 8)), 1)[0, target]
        expected = torch.zeros(2, 8, 8)
        for k in range(2):
            a = acts[:, k]
            lo, hi = a.amin(dim=(1, 2), keepdim=True), a.amax(dim=(1, 2), keepdim=True)
            m = torch.where(hi > lo, (a - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(a))
            p = torch.softmax(model(x * m[:, None]), 1)[torch.arange(2), target]
            expected += (p - base)[:, None, None] * a
    np.testing.assert_allclose(res.raw, expected.numpy(), rtol=1e-4, atol=1e-6)


# ---- pixel attributions on a linear model -----------------------------------------------------------
def test_integrated_gradients_of_a_linear_model_is_weight_times_input():
    model = _linear()
    x = torch.randn(5, 2, 4, 4)
    target = torch.tensor([0, 1, 2, 0, 1])
    res = compute_cams(model, x, method="integrated_gradients", target=target, steps=8)
    expected = model[1].weight.detach()[target].view(5, 2, 4, 4) * x
    np.testing.assert_allclose(res.attributions, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.raw, expected.sum(1).numpy(), rtol=1e-4, atol=1e-5)
    assert res.layer == "input"


@pytest.mark.parametrize("method", ["saliency", "smoothgrad"])
def test_saliency_and_smoothgrad_of_a_linear_model_are_abs_weights(method):
    # the gradient of a linear model does not depend on the (noisy) input: |w_c| everywhere
    model = _linear(seed=1)
    x = torch.randn(4, 2, 4, 4)
    extra = {"samples": 3} if method == "smoothgrad" else {}
    res = compute_cams(model, x, method=method, target=2, **extra)
    expected = model[1].weight.detach()[2].abs().view(1, 2, 4, 4).expand(4, 2, 4, 4)
    np.testing.assert_allclose(res.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.raw, expected.amax(1).numpy(), rtol=1e-5, atol=1e-6)


def test_occlusion_of_a_linear_model_is_the_per_pixel_contribution():
    # a 1x1 window over all channels with a zero baseline removes sum_c w_c x_c at that pixel
    model = _linear(seed=2)
    x = torch.randn(3, 2, 4, 4)
    res = compute_cams(model, x, method="occlusion", target=1, window=1, stride=1)
    expected = (model[1].weight.detach()[1].view(2, 4, 4) * x).sum(1)
    np.testing.assert_allclose(res.raw, expected.numpy(), rtol=1e-4, atol=1e-5)


# ---- batching, targets, layers ------------------------------------------------------------------
def test_batched_gradcam_equals_per_image_captum_on_a_zoo_model():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32).eval()
    x = torch.randn(6, 3, 32, 32)
    res = compute_cams(model, x, method="gradcam", batch_size=4)  # two batches, own predictions
    layer = dict(model.named_modules())[res.layer]
    for i in range(6):
        gc = LayerGradCam(model, layer)
        ref = gc.attribute(x[i : i + 1], target=int(res.targets[i]), relu_attributions=True)
        up = F.interpolate(ref, size=(32, 32), mode="bilinear")[0, 0]
        norm = (up - up.min()) / (up.max() - up.min())
        assert np.abs(res.maps[i] - norm.detach().numpy()).max() < 1e-5
        assert np.abs(np.maximum(res.raw[i], 0) - ref[0, 0].detach().numpy()).max() < 1e-5
    with torch.no_grad():
        preds = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(res.targets, preds)
    np.testing.assert_array_equal(res.predictions, preds)


def test_gradcam_on_a_layer_input_equals_captum():
    torch.manual_seed(1)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32).eval()
    x = torch.randn(3, 3, 32, 32)
    res = compute_cams(model, x, layer="layer3.0.conv2:input", target=2, memory_format="contiguous")
    gc = LayerGradCam(model, model.layer3[0].conv2)
    ref = gc.attribute(x, target=2, attribute_to_layer_input=True, relu_attributions=False)
    np.testing.assert_allclose(res.raw, ref[:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_channels_last_maps_equal_nchw_maps():
    torch.manual_seed(2)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32).eval()
    x = torch.randn(5, 3, 32, 32)
    for method in ("gradcam", "scorecam", "saliency"):
        nhwc = compute_cams(model, x, method=method, memory_format="channels_last", batch_size=64)
        nchw = compute_cams(model, x, method=method, memory_format="contiguous", batch_size=64)
        np.testing.assert_array_equal(nhwc.targets, nchw.targets)
        np.testing.assert_allclose(nhwc.raw, nchw.raw, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(nhwc.probabilities, nchw.probabilities, rtol=1e-4, atol=1e-6)
    assert all(p.is_contiguous() for p in model.parameters())


def _trained_bn_resnet8(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for i in range(3):
            model(torch.randn(16, 3, 32, 32) * (1 + i))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_folding_batchnorm_gives_the_same_maps_and_leaves_the_model_alone():
    model = _trained_bn_resnet8(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = {name: type(m) for name, m in model.named_modules()}
    x = torch.randn(4, 3, 32, 32)
    for layer in (None, "layer3.0.conv2", "layer2.0.bn1"):  # a conv or BN as the layer is kept
        folded = compute_cams(model, x, layer=layer, method="gradcam", fold_bn=True)
        plain = compute_cams(model, x, layer=layer, method="gradcam", fold_bn=False)
        np.testing.assert_array_equal(folded.targets, plain.targets)
        np.testing.assert_allclose(folded.raw, plain.raw, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(folded.probabilities, plain.probabilities, atol=1e-6)
    assert {name: type(m) for name, m in model.named_modules()} == kinds
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_gradient_pass_records_no_graph_below_the_layer_and_restores_grad_state(monkeypatch):
    # the maps are computed on the analysis's own copy: spy on that copy's modules
    from workbench.analysis.cam import compute as compute_module

    torch.manual_seed(3)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32).eval()
    flags = [p.requires_grad for p in model.parameters()]
    seen: dict[str, bool] = {}
    caller_calls: list[str] = []

    def spy(name):
        def hook(_m, _a, out):
            seen[name] = out.requires_grad

        return hook

    original = compute_module.own_copy

    def spied_copy(*args, **kwargs):
        work = original(*args, **kwargs)
        work.layer1.register_forward_hook(spy("layer1"))  # below the default layer (layer3)
        work.fc.register_forward_hook(spy("fc"))  # above it
        return work

    monkeypatch.setattr(compute_module, "own_copy", spied_copy)
    handle = model.fc.register_forward_hook(lambda *_: caller_calls.append("fc"))
    try:
        with torch.no_grad():
            compute_cams(model, torch.randn(2, 3, 32, 32), method="gradcam")
            assert not torch.is_grad_enabled()
        compute_cams(model, torch.randn(2, 3, 32, 32), method="layercam")
        assert torch.is_grad_enabled()
    finally:
        handle.remove()
    assert seen == {"layer1": False, "fc": True}
    assert caller_calls == []  # the caller's own hooks are not the analysis's to run
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_a_layer_the_forward_never_reaches_is_a_clear_error():
    model = _gapnet()
    model.unused = nn.Conv2d(2, 2, 1)
    with pytest.raises(ValueError, match="layer 'unused': the forward pass never reached it"):
        compute_cams(model, torch.randn(2, 2, 8, 8), layer="unused")
    with pytest.raises(ValueError, match="memory_format: expected one of auto, channels_last, contiguous"):
        compute_cams(model, torch.randn(2, 2, 8, 8), memory_format="nhwc")


@pytest.mark.parametrize("method", ["gradcam++", "layercam", "eigencam", "cam"])
def test_maps_do_not_depend_on_the_batch(method):
    model = _gapnet(5)
    x = torch.randn(5, 2, 8, 8)
    together = compute_cams(model, x, method=method, target=1, batch_size=5)
    alone = [compute_cams(model, x[i : i + 1], method=method, target=1).raw for i in range(5)]
    np.testing.assert_allclose(together.raw, np.concatenate(alone), rtol=1e-5, atol=1e-6)


def test_target_modes_and_result_fields():
    teacher, student = _gapnet(6), _gapnet(7)
    x = torch.randn(6, 2, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        t_pred = teacher(x).argmax(1)
    by_label = compute_cams(student, x, target="label", labels=labels)
    by_teacher = compute_cams(student, x, target="teacher", teacher=teacher)
    np.testing.assert_array_equal(by_label.targets, labels.numpy())
    np.testing.assert_array_equal(by_teacher.targets, t_pred.numpy())
    assert by_label.target_mode == "label" and by_teacher.target_mode == "teacher"
    np.testing.assert_allclose(by_label.probabilities.sum(1), 1.0, rtol=1e-5)
    assert by_label.raw.shape == (6, 8, 8) and by_label.maps.shape == (6, 8, 8)
    assert by_label.maps.min() >= 0.0 and by_label.maps.max() <= 1.0
    peaks = by_label.maps.reshape(6, -1).max(1)  # 1, or 0 for a map that the ReLU removed entirely
    assert np.isin(peaks, [0.0, 1.0]).all() and (peaks == 1.0).any()


def test_maps_upsample_from_the_layer_resolution():
    model = create_model("cnn_small", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(3, 1, 28, 28)
    res = compute_cams(model, x, method="hirescam")
    assert res.maps.shape == res.upsampled_raw.shape == (3, 28, 28)
    assert res.raw.shape[1] < 28
    # bilinear upsampling (align_corners=False) keeps the mean of a map that tiles the image evenly
    if 28 % res.raw.shape[1] == 0:
        np.testing.assert_allclose(res.upsampled_raw.mean(axis=(1, 2)), res.raw.mean(axis=(1, 2)), rtol=1e-4)


def test_transformer_tokens_are_laid_out_on_the_patch_grid():
    torch.manual_seed(0)
    model = create_model("vit_tiny", num_classes=10, in_channels=3, image_size=32).eval()
    res = compute_cams(model, torch.randn(2, 3, 32, 32), method="gradcam")
    side = res.raw.shape[1]
    assert res.raw.shape == (2, side, side) and res.maps.shape == (2, 32, 32)


def test_bad_inputs_raise_one_line_value_errors():
    model = _gapnet()
    x = torch.randn(2, 2, 8, 8)
    cases = [
        (dict(method="gradkam"), "gradcam"),
        (dict(target="teach"), "known: label"),
        (dict(target="label"), "labels"),
        (dict(target=9), "target"),
        (dict(method="saliency", layer="features"), "layer"),
        (dict(layer="featurez"), "featurez"),
        (dict(batch_size=0), "batch_size"),
    ]
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word) as info:
            compute_cams(model, x, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="images"):
        compute_cams(model, torch.zeros(2, 8, 8, dtype=torch.int64))
    assert set(list_cam_methods()) == set(CAM_METHODS) and "gradcam" in CAM_METHODS


# ---- map comparisons -----------------------------------------------------------------------------
def test_compare_maps_hand_values():
    a = torch.tensor([[[1.0, 2.0, 2.0, 3.0]]])
    b = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    out = compare_maps(a, b, top_k=0.5)
    # average ranks of a: 1, 2.5, 2.5, 4 -> Spearman 3 / sqrt(10); Pearson equals it here too
    assert out["spearman"][0] == pytest.approx(3 / math.sqrt(10))
    assert out["pearson"][0] == pytest.approx(3 / math.sqrt(10))
    same = compare_maps(b, b**3, top_k=0.25)
    assert same["spearman"][0] == pytest.approx(1.0) and same["pearson"][0] < 0.99
    c = torch.tensor([[[4.0, 3.0, 1.0, 0.0]]])
    d = torch.tensor([[[0.0, 4.0, 3.0, 1.0]]])
    assert compare_maps(c, d, top_k=0.5)["topk_iou"][0] == pytest.approx(1 / 3)
    rnd = torch.rand(3, 5, 5)
    self_cmp = compare_maps(rnd, rnd)
    np.testing.assert_allclose(self_cmp["pearson"], 1.0)
    np.testing.assert_allclose(self_cmp["topk_iou"], 1.0)
    assert np.isnan(compare_maps(torch.ones(1, 2, 2), rnd[:1, :2, :2])["pearson"][0])


def test_compare_cams_teacher_with_itself_and_per_class_means():
    model = _gapnet(8)
    x = torch.randn(6, 2, 8, 8)
    labels = torch.tensor([0, 0, 1, 1, 1, 3])
    out = compare_cams(model, model, x, labels, method="gradcam", target="label")
    np.testing.assert_allclose(out.topk_iou, 1.0)
    assert out.same_prediction.all()
    np.testing.assert_array_equal(out.class_counts, [2, 3, 0, 1])
    assert np.isnan(out.per_class_topk_iou[2]) and out.per_class_topk_iou[0] == pytest.approx(1.0)
    ok = ~np.isnan(out.pearson)
    np.testing.assert_allclose(out.pearson[ok], 1.0)
    assert out.teacher_localization is None


def test_compare_cams_target_sharing_and_localization():
    teacher, student = _gapnet(9), _gapnet(10)
    x = torch.randn(5, 2, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 0])
    masks = torch.zeros(5, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 1:5] = True
    out = compare_cams(teacher, student, x, labels, method="layercam", target="teacher", masks=masks)
    with torch.no_grad():
        t_pred = teacher(x).argmax(1).numpy()
    np.testing.assert_array_equal(out.teacher.targets, t_pred)
    np.testing.assert_array_equal(out.student.targets, t_pred)
    assert out.target_mode == "teacher"
    loc = out.student_localization
    assert loc is not None and loc.energy_in_mask is not None and loc.context_reliance is not None
    np.testing.assert_allclose(loc.true_boxes, np.tile([1.0, 2.0, 5.0, 6.0], (5, 1)))
    np.testing.assert_allclose(loc.energy_in_mask + loc.context_reliance, 1.0)


# ---- localization ----------------------------------------------------------------------------------
def test_pointing_game_and_context_reliance_on_hand_made_maps():
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[:, 1:4, 2:5] = True
    maps = torch.zeros(3, 6, 6)
    maps[0, 1:4, 2:5] = 1.0  # all energy inside
    maps[1, 5, :] = 1.0  # all energy outside
    maps[2, 2, 3] = 3.0  # 3 inside, 1 outside -> 0.75
    maps[2, 0, 0] = 1.0
    res = localization_metrics(maps, masks)
    np.testing.assert_allclose(res.energy_in_mask, [1.0, 0.0, 0.75])
    np.testing.assert_allclose(res.context_reliance, [0.0, 1.0, 0.25])
    np.testing.assert_allclose(res.energy_in_box, [1.0, 0.0, 0.75])  # box == mask here
    assert res.mean_context_reliance == pytest.approx(1.25 / 3)


def test_gt_known_localization_boxes():
    maps = torch.zeros(3, 10, 10)
    maps[0, 2:5, 3:8] = 1.0  # exactly the box -> IoU 1
    maps[1, 1:4, 1:4] = 1.0  # big blob ...
    maps[1, 8, 8] = 0.9  # ... and a small separate one
    maps[2, 0:5, 0:5] = 0.1  # below 0.2 * max: ignored
    maps[2, 6:8, 6:8] = 1.0
    boxes = torch.tensor([[3.0, 2.0, 8.0, 5.0], [1.0, 1.0, 4.0, 4.0], [6.0, 6.0, 8.0, 8.0]])
    res = localization_metrics(maps, boxes=boxes, threshold=0.2)
    np.testing.assert_allclose(res.predicted_boxes, boxes.numpy())
    np.testing.assert_allclose(res.box_iou, 1.0)
    assert res.correct.all() and res.gt_known_accuracy == 1.0 and res.energy_in_mask is None
    whole = localization_metrics(maps, boxes=boxes, threshold=0.2, component="all")
    np.testing.assert_allclose(whole.predicted_boxes[1], [1.0, 1.0, 9.0, 9.0])
    assert whole.box_iou[1] == pytest.approx(9 / 64) and not whole.correct[1]
    # 8-connectivity: diagonal neighbours belong to one component
    diag = torch.zeros(1, 5, 5)
    diag[0, 0, 0] = diag[0, 1, 1] = diag[0, 2, 2] = 1.0
    diag[0, 4, 0] = 1.0
    one = localization_metrics(diag, boxes=torch.tensor([[0.0, 0.0, 3.0, 3.0]]))
    np.testing.assert_allclose(one.predicted_boxes[0], [0.0, 0.0, 3.0, 3.0])


def test_localization_rejects_bad_masks():
    with pytest.raises(ValueError, match="masks"):
        localization_metrics(torch.rand(2, 4, 4), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="masks or boxes"):
        localization_metrics(torch.rand(2, 4, 4))


# ---- faithfulness ----------------------------------------------------------------------------------
def test_curve_auc_trapezoid():
    assert curve_auc(np.array([1.0, 0.5, 0.0]))[0] == pytest.approx(0.5)
    assert curve_auc(np.array([[1.0, 1.0, 0.0]]), np.array([0.0, 0.25, 1.0]))[0] == pytest.approx(0.625)


def test_deletion_and_insertion_of_a_linear_model_follow_its_contributions():
    c, h, w = 1, 3, 3
    model = _linear(c, h, w, k=2, seed=3, positive=True)
    x = torch.rand(2, c, h, w) + 0.1
    weight, bias = model[1].weight.detach()[0], model[1].bias.detach()[0]
    contrib = (weight.view(1, c, h, w) * x)[:, 0]  # (N, H, W), all positive
    steps = h * w  # one pixel per step
    dele = faithfulness(model, x, contrib, 0, mode="deletion", steps=steps, score="logit")
    ins = faithfulness(model, x, contrib, 0, mode="insertion", steps=steps, score="logit", baseline="zeros")
    flat = contrib.reshape(2, -1).sort(dim=1, descending=True).values.double()
    remaining = flat.sum(1, keepdim=True) - torch.cat([torch.zeros(2, 1), flat.cumsum(1)], 1)
    np.testing.assert_allclose(dele.scores, (bias + remaining).numpy(), rtol=1e-5)
    np.testing.assert_allclose(ins.scores, (bias + flat.sum(1, keepdim=True) - remaining).numpy(), rtol=1e-5)
    assert (np.diff(dele.scores, axis=1) < 0).all() and (np.diff(ins.scores, axis=1) > 0).all()
    np.testing.assert_allclose(dele.fractions, np.arange(steps + 1) / steps)
    np.testing.assert_allclose(dele.auc, curve_auc(dele.scores, dele.fractions))
    # the map's own ordering deletes faster than the reverse ordering
    worse = faithfulness(model, x, -contrib, 0, mode="deletion", steps=steps, score="logit")
    assert (dele.auc < worse.auc).all()


def test_blur_baseline_of_a_constant_image_changes_nothing():
    model = _gapnet(11)
    x = torch.full((2, 2, 8, 8), 0.7)
    res = faithfulness(model, x, torch.rand(2, 8, 8), 1, mode="insertion", steps=4)
    assert res.baseline == "blur"
    np.testing.assert_allclose(res.scores, res.scores[:, :1].repeat(5, axis=1), rtol=1e-5)


def test_cross_faithfulness_combinations():
    teacher, student = _gapnet(12), _gapnet(13)
    x = torch.randn(3, 2, 8, 8)
    t_maps, s_maps = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    targets = torch.tensor([0, 1, 2])
    cross = cross_faithfulness(teacher, student, x, t_maps, s_maps, targets, steps=4)
    direct = faithfulness(student, x, t_maps, targets, steps=4)
    np.testing.assert_allclose(cross.teacher_map_on_student.scores, direct.scores, rtol=1e-5)
    direct = faithfulness(teacher, x, s_maps, targets, steps=4)
    np.testing.assert_allclose(cross.student_map_on_teacher.auc, direct.auc, rtol=1e-5)
    same = cross_faithfulness(teacher, teacher, x, t_maps, t_maps, targets, steps=4)
    m = same.auc_matrix()
    assert m.shape == (2, 2) and np.allclose(m, m[0, 0])


def test_faithfulness_rejects_maps_of_the_wrong_size():
    with pytest.raises(ValueError, match="maps"):
        faithfulness(_gapnet(), torch.randn(2, 2, 8, 8), torch.rand(2, 4, 4), 0)
    with pytest.raises(ValueError, match="mode"):
        faithfulness(_gapnet(), torch.randn(2, 2, 8, 8), torch.rand(2, 8, 8), 0, mode="removal")


# ---- hooks and modes ---------------------------------------------------------------------------------
_SMALL = {
    "integrated_gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "occlusion": {"window": 4, "stride": 4},
}


def _calls() -> list:
    x = torch.randn(3, 2, 8, 8)
    labels = torch.tensor([0, 1, 2])
    maps = torch.rand(3, 8, 8)
    calls = [
        (
            f"compute_cams[{m}]",
            lambda model, m=m: compute_cams(
                model,
                x,
                method=m,
                target="label",
                labels=labels,
                **_SMALL.get(m, {}),
            ),
        )
        for m in CAM_METHODS
    ]
    calls += [
        ("compare_cams", lambda model: compare_cams(model, model, x, labels, method="gradcam++")),
        ("faithfulness", lambda model: faithfulness(model, x, maps, labels, steps=2)),
        (
            "cross_faithfulness",
            lambda model: cross_faithfulness(model, model, x, maps, maps, labels, steps=2),
        ),
    ]
    return calls


def test_hooks_removed_and_modes_restored_after_every_public_function():
    for name, call in _calls():
        model = _gapnet(14)
        modes = _mixed_modes(model)
        call(model)
        _assert_clean(model, modes)
        assert name


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_hooks_removed_and_modes_restored_when_the_model_raises(fail_at):
    # the n-th forward raises: in the prediction pass, the layer probes, or the hooked passes
    raised, calls = 0, _calls()
    for _, call in calls:
        model = Flaky(_gapnet(15), fail_at)
        modes = _mixed_modes(model)
        try:
            call(model)
        except (RuntimeError, ValueError):
            raised += 1
        _assert_clean(model, modes)
    assert raised == len(calls) if fail_at <= 2 else raised >= 1  # every function runs >= 2 forwards


def test_shapes_dataset_masks_work_end_to_end():
    from workbench.data.shapes import render_shapes

    data = render_shapes(8, 0.0, 0, 1)
    x = (data["images"].float() / 255.0 - 0.5) / 0.25
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10, in_channels=3, image_size=32)
    student = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    out = compare_cams(teacher, student, x, data["labels"], masks=data["masks"], boxes=data["boxes"])
    for loc in (out.teacher_localization, out.student_localization):
        assert loc is not None
        assert loc.energy_in_box.shape == (8,) and loc.box_iou.shape == (8,)
        assert ((loc.box_iou >= 0) & (loc.box_iou <= 1)).all()
        ok = ~np.isnan(loc.energy_in_box)
        assert (loc.energy_in_box[ok] + 1e-9 >= loc.energy_in_mask[ok]).all()  # the box holds the mask
    assert out.per_class_pearson.shape == (10,)
