"""Feature taps: captures equal hand-computed module outputs, hooks never outlive a block,
training modes are restored, and every helper works on a user module without conventions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models import (
    FeatureTaps,
    LayerInfo,
    ModelError,
    capture,
    classifier_layer,
    create_model,
    get_module,
    last_conv_layer,
    list_layers,
    match_stages,
    penultimate_layer,
    stage_layers,
    training_mode,
)


class UserNet(nn.Module):
    """A user model with none of the zoo conventions: no `stages`, no `pool`, head named `head`,
    activations and pooling done functionally."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.down = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.down(F.relu(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.head(x.mean(dim=(2, 3)))


def _inplace_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---- get_module ----------------------------------------------------------------------------
def test_get_module_resolves_dotted_paths():
    model = create_model("resnet8")
    assert get_module(model, "layer2.0.conv1") is model.layer2[0].conv1
    assert get_module(model, "") is model


def test_get_module_unknown_path_names_nearest():
    model = create_model("resnet8")
    with pytest.raises(
        ModelError, match=r"module path 'layer4': not found in CifarResNet; nearest: layer"
    ) as info:
        get_module(model, "layer4")
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


# ---- FeatureTaps ---------------------------------------------------------------------------
def test_taps_equal_hand_computed_outputs():
    torch.manual_seed(0)
    model = create_model("resnet8").eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        stem = model.relu(model.bn1(model.conv1(x)))
        l1 = model.layer1(stem)
        l2 = model.layer2(l1)
        inner = model.layer2[0].bn1(model.layer2[0].conv1(l1))
        pooled = model.layer3(l2).mean(dim=(2, 3))
        with FeatureTaps(model, ["layer1", "layer2", "layer2.0.bn1", "fc:input"]) as taps:
            logits = model(x)
    torch.testing.assert_close(taps["layer1"], l1)
    torch.testing.assert_close(taps["layer2"], l2)
    torch.testing.assert_close(taps["layer2.0.bn1"], inner)
    torch.testing.assert_close(taps["fc:input"], pooled)  # ":input" is the fc input
    with torch.inference_mode():
        torch.testing.assert_close(model.fc(taps["fc:input"]), logits)
    assert _no_hooks(model)


def test_hooks_removed_even_when_forward_raises():
    model = create_model("cnn_small")
    with pytest.raises(RuntimeError):
        with FeatureTaps(model, ["features.0", "fc:input"]):
            assert not _no_hooks(model)
            model(torch.randn(2, 3, 28, 28))  # wrong channel count
    assert _no_hooks(model)


def test_unknown_path_registers_nothing():
    model = create_model("cnn_small")
    with pytest.raises(ModelError, match="features.9"):
        FeatureTaps(model, ["features.0", "features.9"])
    with pytest.raises(ModelError, match=r"unknown suffix ':inputs'"):
        FeatureTaps(model, ["fc:inputs"])
    assert _no_hooks(model)


def test_getitem_errors_and_latest_capture():
    model = nn.Sequential(nn.Linear(3, 3))
    with FeatureTaps(model, ["0"], detach=True) as taps:
        with pytest.raises(ModelError, match="nothing captured yet"):
            taps["0"]
        with pytest.raises(ModelError, match=r"not tapped; tapped: 0"):
            taps["1"]
        model(torch.zeros(1, 3))
        second = torch.ones(1, 3)
        out = model(second)
    torch.testing.assert_close(taps["0"], out)  # the latest forward pass wins
    assert "0" in taps and not taps["0"].requires_grad


def test_gradients_flow_through_undetached_taps():
    model = create_model("cnn_small")
    with FeatureTaps(model, ["features.1"]) as taps:
        model(torch.randn(2, 1, 28, 28))
    taps["features.1"].pow(2).mean().backward()
    assert model.features[0][0][0].weight.grad is not None
    assert model.fc.weight.grad is None  # the head is after the tapped stage


def test_inplace_ops_do_not_overwrite_captures():
    torch.manual_seed(0)
    model = _inplace_net().eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.inference_mode():
        expected = model[0](x).clone()
        _, feats = capture(model, x, ["0", "4:input"])
    torch.testing.assert_close(feats["0"], expected)
    assert (feats["0"] < 0).any()  # the pre-activation survived the in-place ReLU
    assert (feats["4:input"] < 0).any()


# ---- capture and training modes ------------------------------------------------------------
def test_capture_restores_training_mode_and_runs_without_grad():
    model = create_model("resnet8")
    model.train()
    model.layer1.eval()  # a frozen part must stay frozen
    x = torch.randn(2, 1, 28, 28)
    logits, feats = capture(model, x, ["layer3"], train=False)
    assert model.training and not model.layer1.training and model.layer2.training
    assert not model.layer1[0].bn1.training
    assert torch.is_inference(logits) and torch.is_inference(feats["layer3"])
    model.eval()
    logits, feats = capture(model, x, ["layer3"], train=True, grad=True, detach=False)
    assert not model.training and not any(m.training for m in model.modules())
    assert logits.requires_grad and feats["layer3"].requires_grad
    assert _no_hooks(model)


def test_capture_without_train_keeps_current_mode():
    model = create_model("cnn_small").eval()
    with torch.inference_mode():
        expected = model(torch.ones(2, 1, 28, 28))
    logits, _ = capture(model, torch.ones(2, 1, 28, 28), [])
    torch.testing.assert_close(logits, expected)
    assert not model.training


def test_training_mode_restores_after_exception():
    model = create_model("wrn_16_1")
    model.eval()
    model.block2.train()
    before = [m.training for m in model.modules()]
    with pytest.raises(KeyError):
        with training_mode(model, True):
            assert all(m.training for m in model.modules())
            raise KeyError("boom")
    assert [m.training for m in model.modules()] == before


# ---- probing helpers -----------------------------------------------------------------------
def test_list_layers_hand_checked():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    model.train()
    layers = list_layers(model, (2, 6, 6))
    assert layers == [
        LayerInfo("0", "Conv2d", (4, 4, 4), 2 * 4 * 9 + 4),
        LayerInfo("1", "ReLU", (4, 4, 4), 0),
        LayerInfo("2", "Flatten", (64,), 0),
        LayerInfo("3", "Linear", (3,), 64 * 3 + 3),
    ]
    assert model.training and _no_hooks(model)


def test_list_layers_puts_unused_modules_last():
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.Linear(2, 2)
            self.a = nn.Conv2d(1, 2, 1)
            self.b = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    layers = list_layers(Partial(), (1, 3, 3))
    assert [(info.path, info.shape) for info in layers] == [
        ("a", (2, 3, 3)),
        ("b", (2, 3, 3)),
        ("unused", ()),
    ]


def test_list_layers_order_and_leaf_only():
    model = create_model("resnet8")
    layers = list_layers(model, (1, 28, 28))
    paths = [info.path for info in layers]
    assert (
        paths.index("conv1") < paths.index("layer1") < paths.index("layer1.0") < paths.index("layer1.0.conv1")
    )
    assert paths.index("layer3") < paths.index("pool") < paths.index("fc")
    by_path = {info.path: info for info in layers}
    assert by_path["layer2"].shape == (32, 14, 14) and by_path["pool"].shape == (64,)
    assert by_path["fc"].params == 64 * 10 + 10
    leaves = list_layers(model, (1, 28, 28), leaf_only=True)
    assert "layer1" not in {info.path for info in leaves} and "layer1.0.conv1" in {
        info.path for info in leaves
    }


def test_zoo_conventions_through_taps_helpers():
    for name in ("resnet8", "vgg8", "mobilenetv2", "vit_tiny", "mlp"):
        model = create_model(name)
        assert stage_layers(model) == model.stages
        assert last_conv_layer(model) == model.stages[-1]
        assert penultimate_layer(model) == "pool"
        assert classifier_layer(model) == "fc"


def test_user_module_without_conventions():
    torch.manual_seed(0)
    model = UserNet().eval()
    shape = (1, 12, 12)
    assert classifier_layer(model) == "head"
    assert penultimate_layer(model) == "head:input"
    assert last_conv_layer(model, shape) == "conv3"
    # bn1 ends the 8-channel run, conv2 the 16-channel run (the max-pool alone is dropped), conv3 last
    assert stage_layers(model, shape) == ["bn1", "conv2", "conv3"]
    x = torch.randn(3, *shape)
    logits, feats = capture(model, x, ["conv3", "head:input"])
    torch.testing.assert_close(feats["head:input"], F.relu(feats["conv3"]).mean(dim=(2, 3)))
    with torch.inference_mode():
        torch.testing.assert_close(model.head(feats["head:input"]), logits)
    with pytest.raises(ModelError, match="input_shape: needed"):
        stage_layers(model)
    assert _no_hooks(model) and not model.training


def test_user_sequential_models():
    net = _inplace_net()
    assert last_conv_layer(net, (1, 8, 8)) == "4"  # the ReLU output before global pooling
    assert stage_layers(net, (1, 8, 8)) == ["1", "4"]
    assert penultimate_layer(net) == "7:input" and classifier_layer(net) == "7"
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)
    )
    assert stage_layers(mlp, (1, 4, 4)) == ["2", "4"]  # hidden activations, head excluded
    with pytest.raises(ModelError, match="no 4-D feature map"):
        last_conv_layer(mlp, (1, 4, 4))
    with pytest.raises(ModelError, match="no nn.Linear"):
        classifier_layer(nn.Sequential(nn.Conv2d(1, 2, 1)))


def test_match_stages():
    a, b = create_model("resnet8"), create_model("resnet20")
    assert match_stages(a, b, (1, 28, 28), (1, 28, 28)) == [
        ("layer1", "layer1"),
        ("layer2", "layer2"),
        ("layer3", "layer3"),
    ]
    assert match_stages(a, b, (1, 28, 28), (1, 28, 28), n=1) == [("layer3", "layer3")]
    # VGG-8 stages at 28, 14, 7, 4, 4 pixels: resolution decides the middle pairs, the last maps pair up
    pairs = match_stages(a, create_model("vgg8"), (1, 28, 28), (1, 28, 28))
    assert pairs == [("layer1", "block0"), ("layer2", "block1"), ("layer3", "block4")]
    # a deeper student against a shallower teacher: as many pairs as the teacher has stages
    pairs = match_stages(create_model("vgg8"), UserNet(), (1, 12, 12), (1, 12, 12))
    assert [t for _, t in pairs] == ["bn1", "conv2", "conv3"] and pairs[-1][0] == "block4"
    with pytest.raises(ModelError, match=r"n=4: expected an integer in \[1, 3\]"):
        match_stages(a, b, (1, 28, 28), (1, 28, 28), n=4)
