"""The model zoo: registry, shapes on every supported input, published parameter counts, FLOPs
by hand, seeding, and the conventions (stages, pool, fc) the analysis code relies on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.models import (
    FeatureTaps,
    ModelError,
    create_model,
    describe_models,
    list_models,
    model_info,
)
from workbench.models.info import count_flops

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
CONV_FAMILIES = {"cnn", "resnet", "wrn", "vgg", "mobilenetv2"}
FAMILY = {spec.name: spec.family for spec in describe_models()}

BRIEF_NAMES = [
    "mlp", "cnn", "cnn_small", "cnn_large",
    "resnet", "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4",
    "wrn", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "mobilenetv2", "vit_tiny",
]  # fmt: skip


def test_registry_lists_the_zoo():
    names = list_models()
    assert set(BRIEF_NAMES) <= set(names)
    specs = describe_models()
    assert [s.name for s in specs] == names
    for s in specs:
        assert s.description and "\n" not in s.description
        for key in s.fixed:
            assert key in s.defaults
    by_name = {s.name: s for s in specs}
    assert by_name["resnet20"].defaults["depth"] == 20
    assert by_name["wrn_40_2"].defaults["depth"] == 40 and by_name["wrn_40_2"].defaults["widen_factor"] == 2
    assert tuple(by_name["resnet32x4"].defaults["channels"]) == (32, 64, 128, 256)


# ---- every model on every input, conventions included ------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list_models())
def test_shapes_stages_and_head(name, shape):
    torch.manual_seed(0)
    k = 7
    model = create_model(name, num_classes=k, in_channels=shape[0], image_size=shape[1]).eval()
    assert isinstance(model.fc, nn.Linear) and isinstance(model.pool, nn.Module)
    x = torch.randn(3, *shape)
    with torch.inference_mode(), FeatureTaps(model, [*model.stages, "pool"]) as taps:
        logits = model(x)
    assert logits.shape == (3, k)
    feats = [taps[s] for s in model.stages]
    emb = taps["pool"]
    assert emb.shape == (3, model.fc.in_features)
    family = FAMILY[name]
    if family in CONV_FAMILIES:
        assert all(f.dim() == 4 for f in feats)
        sides = [f.shape[-1] for f in feats]
        assert sides == sorted(sides, reverse=True)  # resolution never grows with depth
        assert sides[-1] >= 2  # small inputs keep a real map for CAMs
        # GAP + linear: the logits are the class-weighted average of the last map (plain CAM)
        last = feats[-1]
        torch.testing.assert_close(emb, last.mean(dim=(2, 3)))
        cam = torch.einsum("kc,bchw->bkhw", model.fc.weight.double(), last.double())
        scale = float(logits.abs().max()) + 1.0  # deep random nets give large logits: float32 noise
        torch.testing.assert_close(
            cam.mean(dim=(2, 3)) + model.fc.bias, logits.double(), rtol=0, atol=1e-5 * scale
        )
    elif family == "vit":
        assert all(f.dim() == 3 for f in feats)
        torch.testing.assert_close(emb, feats[-1].mean(dim=1))
    else:  # mlp: stages are hidden activations, pool is a flatten of the last one
        assert all(f.dim() == 2 for f in feats)
        torch.testing.assert_close(emb, feats[-1])
    with torch.inference_mode():
        torch.testing.assert_close(model.fc(model.pool(feats[-1])), logits)


# ---- parameter counts ----------------------------------------------------------------------
def _params(name: str, num_classes: int, **kw) -> int:
    return sum(
        p.numel()
        for p in create_model(name, num_classes=num_classes, in_channels=3, image_size=32, **kw).parameters()
    )


@pytest.mark.parametrize(
    "name, num_classes, published",
    [
        # CIFAR-100 tables of the distillation literature (RepDistiller / CRD model zoo)
        ("resnet32x4", 100, 7.43e6),
        ("resnet8x4", 100, 1.23e6),
        ("wrn_16_2", 100, 0.70e6),
        # CIFAR-10 tables: He et al. 2016 (Table 6) and Zagoruyko & Komodakis 2016 (Table 4);
        # with 100 classes ResNet-20 has 0.28M and WRN-40-2 2.26M, outside 2% of these
        ("resnet20", 10, 0.27e6),
        ("resnet56", 10, 0.85e6),
        ("resnet110", 10, 1.7e6),
        ("wrn_40_2", 10, 2.2e6),
    ],
)
def test_published_parameter_counts(name, num_classes, published):
    assert abs(_params(name, num_classes) - published) <= 0.02 * published


def test_parameter_counts_round_to_the_published_figures():
    # the CIFAR-100 distillation tables print two decimals in millions
    assert round(_params("resnet32x4", 100) / 1e6, 2) == 7.43
    assert round(_params("resnet8x4", 100) / 1e6, 2) == 1.23
    assert round(_params("wrn_16_2", 100) / 1e6, 2) == 0.70
    assert round(_params("resnet20", 100) / 1e6, 2) == 0.28
    # the WRN paper prints one decimal
    assert round(_params("wrn_40_2", 10) / 1e6, 1) == 2.2
    assert round(_params("wrn_40_1", 10) / 1e6, 1) == 0.6


@pytest.mark.parametrize("depth", [8, 20, 56])
@pytest.mark.parametrize("in_ch, k", [(1, 10), (3, 100)])
def test_resnet_parameter_count_by_hand(depth, in_ch, k):
    n = (depth - 2) // 6

    def conv(i, o, ks=3):
        return i * o * ks * ks

    def bn(c):
        return 2 * c

    total = conv(in_ch, 16) + bn(16)
    prev = 16
    for planes in (16, 32, 64):
        for j in range(n):
            total += conv(prev, planes) + bn(planes) + conv(planes, planes) + bn(planes)
            if j == 0 and prev != planes:
                total += conv(prev, planes, 1) + bn(planes)  # projection shortcut
            prev = planes
    total += 64 * k + k
    got = sum(
        p.numel()
        for p in create_model(f"resnet{depth}", num_classes=k, in_channels=in_ch, image_size=32).parameters()
    )
    assert got == total


def test_cnn_small_is_small():
    assert _params("cnn_small", 10) <= 100_000
    assert sum(p.numel() for p in create_model("cnn_small").parameters()) <= 100_000
    assert _params("cnn_large", 10) > 3 * _params("cnn_small", 10)


# ---- FLOPs ---------------------------------------------------------------------------------
def test_flops_of_a_linear_layer():
    lin = nn.Linear(20, 7)
    # input_shape (20,): a batch of 20-vectors, one 20x7 matrix-vector product per sample
    assert count_flops(lin, (20,)) == 2 * 20 * 7
    info = model_info(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (3, 2, 2))
    assert info.flops == 2 * 12 * 5
    assert info.params == 12 * 5 + 5 == info.trainable_params


def test_flops_of_a_conv_layer():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert model_info(conv, (3, 5, 5)).flops == 2 * (8 * 5 * 5) * (3 * 3 * 3)
    strided = nn.Conv2d(4, 6, 3, stride=2)  # 9x9 -> 4x4
    assert model_info(strided, (4, 9, 9)).flops == 2 * (6 * 4 * 4) * (4 * 3 * 3)
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise: one 3x3 filter per channel
    assert model_info(grouped, (8, 6, 6)).flops == 2 * (8 * 6 * 6) * 9


def test_flops_count_attention_products():
    c, s, p, d, depth, ratio, k = 1, 8, 2, 16, 1, 2.0, 10
    model = create_model(
        "vit_tiny",
        num_classes=k,
        in_channels=c,
        image_size=s,
        patch_size=p,
        dim=d,
        depth=depth,
        heads=2,
        mlp_ratio=ratio,
    )
    n = (s // p) ** 2
    h = int(d * ratio)
    expected = 2 * n * d * (c * p * p)  # patch embedding
    expected += 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d  # qkv, QK^T and AV, projection
    expected += 2 * 2 * n * d * h  # MLP
    expected += 2 * d * k  # head
    assert model_info(model, (c, s, s)).flops == expected


def test_trainable_params_and_mode_restored():
    model = create_model("resnet8")
    model.train()
    for p in model.fc.parameters():
        p.requires_grad_(False)
    info = model_info(model, (1, 28, 28))
    assert info.params - info.trainable_params == model.fc.weight.numel() + model.fc.bias.numel()
    assert model.training and all(m.training for m in model.modules())


def test_bad_input_shape_is_named():
    with pytest.raises(ModelError, match="input_shape"):
        model_info(create_model("cnn_small"), (1, 0, 28))
    with pytest.raises(ModelError, match=r"input_shape=\(3, 28, 28\)"):
        model_info(create_model("cnn_small", in_channels=1), (3, 28, 28))


# ---- seeding and kwargs --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cnn_small", "resnet8", "wrn_16_1", "vit_tiny", "mlp", "mobilenetv2"])
def test_seed_gives_identical_weights(name):
    torch.manual_seed(123)
    a = create_model(name).state_dict()
    torch.manual_seed(123)
    b = create_model(name).state_dict()
    torch.manual_seed(124)
    c = create_model(name).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a if a[key].is_floating_point())


def test_family_knobs_change_the_architecture():
    mlp = create_model("mlp", hidden=[64, 32], image_size=8)  # lists, as YAML gives them
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [64, 32, 10]
    assert mlp.stages == ["layers.0", "layers.1"]
    cnn = create_model("cnn", channels=(8, 16, 32, 64), convs_per_stage=1)
    assert len(cnn.stages) == 4 and cnn.fc.in_features == 64
    assert len(create_model("resnet", depth=32).layer1) == 5
    assert create_model("resnet", width=2).fc.in_features == 128
    assert create_model("wrn", depth=28, widen_factor=3).fc.in_features == 192
    assert create_model("vgg", depth=16, width=0.25).fc.in_features == 128
    assert create_model("mobilenetv2", width_mult=1.0).fc.in_features == 1280
    vit = create_model("vit_tiny", patch_size=7, dim=32, depth=2, heads=4)
    assert vit.pos_embed.shape == (1, 16, 32) and vit.stages == ["blocks.0", "norm"]
    assert create_model("vit_tiny", image_size=32, in_channels=3).pos_embed.shape[1] == 64
    # the fixed value itself is accepted (as a list too)
    create_model("resnet8x4", channels=[32, 64, 128, 256])


def test_vit_patch_sizes_and_other_input_sizes():
    vit7 = create_model("vit_tiny", image_size=28, patch_size=7).eval()
    with torch.inference_mode(), FeatureTaps(vit7, ["norm"]) as taps:
        assert vit7(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert taps["norm"].shape == (2, 16, 64)  # a 4x4 grid of 7x7 patches
    vit = create_model("vit_tiny", image_size=28, patch_size=4).eval()
    with torch.inference_mode():
        assert vit(torch.randn(2, 1, 32, 32)).shape == (2, 10)  # position embeddings resized


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: create_model("resnet21"), r"model 'resnet21': unknown name.*known: .*resnet20"),
        (
            lambda: create_model("resnet", depht=20),
            r"unknown argument 'depht'; allowed: depth, width, channels",
        ),
        (
            lambda: create_model("resnet20", depth=32),
            r"depth=32 is fixed by the name \(depth=20\); use 'resnet'",
        ),
        (lambda: create_model("resnet", depth=21), r"model 'resnet': depth=21: expected 6n\+2"),
        (lambda: create_model("wrn", depth=18), r"depth=18: expected 6n\+4"),
        (lambda: create_model("vgg", depth=10), r"depth=10: expected one of 8, 11, 13, 16, 19"),
        (lambda: create_model("mlp", hidden=[64, 0]), r"hidden=\[64, 0\]: expected a list"),
        (lambda: create_model("cnn", dropout=1.5), r"dropout=1.5"),
        (
            lambda: create_model("vit_tiny", patch_size=5),
            r"patch_size=5: expected a divisor of image_size=28",
        ),
        (lambda: create_model("vit_tiny", dim=30, heads=4), r"heads=4: expected a divisor of dim=30"),
        (lambda: create_model("cnn_small", num_classes=0), r"num_classes=0"),
    ],
)
def test_errors_are_one_line_and_named(call, pattern):
    with pytest.raises(ModelError, match=pattern) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_estimate_counts_every_registered_model_exactly():
    """The arithmetic size estimate (used to refuse huge models before allocating) equals the
    parameter and buffer sizes of the built model, for every name of the zoo."""
    from workbench.models import estimate_model

    for name in list_models():
        est = estimate_model(name, num_classes=100, in_channels=3, image_size=32)
        model = create_model(name, num_classes=100, in_channels=3, image_size=32)
        assert est is not None and est.params == sum(p.numel() for p in model.parameters()), name
        assert est.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers()), name
