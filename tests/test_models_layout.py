from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.models import as_channels_last, channels_last, create_model, wants_channels_last

CL = torch.channels_last


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn_small", num_classes=10, in_channels=3, image_size=16)


def test_context_swaps_layout_keeps_parameters_and_restores_with_current_values():
    model = _conv_net()
    params = list(model.parameters())
    conv_w = model.features[0][0][0].weight
    before = conv_w.detach().clone()
    with channels_last(model) as on:
        assert on is True
        assert conv_w.is_contiguous(memory_format=CL) and not conv_w.is_contiguous()
        assert torch.equal(conv_w, before)  # same values, other layout
        assert list(model.parameters()) == params  # the same Parameter objects
        with torch.no_grad():
            conv_w.add_(1.0)  # an update made inside the block survives it
    assert conv_w.is_contiguous()
    assert torch.equal(conv_w, before + 1.0)
    assert all(p is q for p, q in zip(model.parameters(), params, strict=True))


def test_disabled_context_changes_nothing():
    model = _conv_net()
    with channels_last(model, enabled=False) as on:
        assert on is False
        assert all(p.is_contiguous() for p in model.parameters())


def test_channels_last_forward_and_backward_match_nchw():
    model = _conv_net().eval()
    x = torch.randn(4, 3, 16, 16)
    ref = model(x)
    ref.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with channels_last(model):
        out = model(as_channels_last(x))
        out.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad.contiguous(), g, rtol=1e-4, atol=1e-5)


def test_as_channels_last_only_touches_4d_tensors():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    y = as_channels_last(x)
    assert y.is_contiguous(memory_format=CL) and torch.equal(y, x)
    v = torch.randn(3, 4)
    assert as_channels_last(v) is v


def test_wants_channels_last_resolution():
    conv, mlp = _conv_net(), create_model("mlp", num_classes=10, in_channels=1, image_size=8)
    assert wants_channels_last("auto", "cpu", conv) is True
    assert wants_channels_last("auto", "cpu", mlp) is False
    assert wants_channels_last("auto", "cpu", mlp, conv) is True  # a conv teacher counts
    assert wants_channels_last("auto", torch.device("cuda"), conv) is False  # auto leaves CUDA alone
    assert wants_channels_last("channels_last", "cpu", mlp) is True
    assert wants_channels_last("contiguous", "cpu", conv) is False
    with pytest.raises(ValueError, match="memory_format: expected one of auto, channels_last, contiguous"):
        wants_channels_last("nhwc", "cpu", conv)
