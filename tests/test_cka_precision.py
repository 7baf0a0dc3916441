"""Minibatch CKA with float32 Gram matrices stays within 1e-6 of a float64 computation.

The reference below is written out independently in numpy float64: per batch, centre the
features, form the Gram matrices, take Song et al. 2012's unbiased HSIC (eq. 5) and average it
over batches (Nguyen et al. 2021); CKA = mean HSIC(K, L) / sqrt(mean HSIC(K, K) · mean HSIC(L, L)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.cka import MinibatchCKA
from workbench.analysis.similarity import cka_matrix
from workbench.models import create_model
from workbench.models.taps import capture

TOL = 1e-6


def _song_hsic(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    return (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    ) / (n * (n - 3))


def _reference(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    ab = aa = bb = 0.0
    for x, y in zip(xs, ys, strict=True):
        x = x.reshape(len(x), -1).astype(np.float64)
        y = y.reshape(len(y), -1).astype(np.float64)
        x, y = x - x.mean(0), y - y.mean(0)
        k, l = x @ x.T, y @ y.T
        ab += _song_hsic(k, l)
        aa += _song_hsic(k, k)
        bb += _song_hsic(l, l)
    return ab / math.sqrt(aa * bb)


def _minibatch(xs: list[torch.Tensor], ys: list[torch.Tensor], precision: str) -> float:
    acc = MinibatchCKA(["x"], ["y"], precision=precision)
    for x, y in zip(xs, ys, strict=True):
        acc.update({"x": x}, {"y": y})
    return float(acc.compute()[0, 0])


@pytest.fixture(scope="module")
def relu_features() -> tuple[torch.Tensor, torch.Tensor]:
    """Post-ReLU features of two related random layers: 3 batches of 120, widths 3072 and 1024."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(360, 128, generator=g)
    x = torch.relu(z @ torch.randn(128, 3072, generator=g) / 11.0)
    y = torch.relu(
        z[:, :64] @ torch.randn(64, 1024, generator=g) / 8.0 + 0.5 * torch.randn(360, 1024, generator=g)
    )
    return x, y


# (name, transform of the float32 features): post-ReLU as they are, with a large common offset
# (pooled features of a trained net), large and tiny magnitudes (the float32 Gram matrix would
# overflow or underflow without rescaling), and a low-rank signal on top of an offset
REGIMES = {
    "relu": lambda x: x,
    "relu + 1": lambda x: x + 1.0,
    "relu + 100": lambda x: x + 100.0,
    "relu x 1e4": lambda x: x * 1e4,
    "relu x 1e22 (overflow)": lambda x: x * 1e22,
    "relu x 1e-25 (underflow)": lambda x: x * 1e-25,
    "low rank + 10": lambda x: torch.relu(x[:, :4]).repeat(1, 768) + 10.0,
}


@pytest.mark.parametrize("regime", list(REGIMES))
def test_float32_grams_agree_with_float64_within_1e_6(relu_features, regime):
    x, y = relu_features
    x = REGIMES[regime](x).to(torch.float32)
    assert torch.isfinite(x).all()
    xs, ys = list(x.split(120)), list(y.split(120))
    want = _reference([v.double().numpy() for v in xs], [v.double().numpy() for v in ys])
    assert 0.05 < want < 0.99  # a non-trivial value
    fast = _minibatch(xs, ys, "float32")
    exact = _minibatch(xs, ys, "float64")
    assert abs(fast - want) < TOL, (fast, want)
    assert abs(exact - want) < 1e-9, (exact, want)


def test_large_offsets_do_not_change_the_value(relu_features):
    # CKA is invariant to adding a constant to every example; float32 keeps that to 1e-6
    x, y = relu_features
    xs, ys = list(x.split(120)), list(y.split(120))
    base = _minibatch(xs, ys, "float32")
    shifted = _minibatch([v + 1000.0 for v in xs], ys, "float32")
    assert abs(base - shifted) < 1e-5  # the +1000 features themselves carry float32 rounding
    want = _reference([(v + 1000.0).double().numpy() for v in xs], [v.double().numpy() for v in ys])
    assert abs(shifted - want) < TOL


def test_half_precision_and_channels_last_features(relu_features):
    x, _ = relu_features
    feats = x[:120, :1024].reshape(120, 16, 8, 8)
    acc32 = MinibatchCKA(["a"], ["b"])
    acc_half = MinibatchCKA(["a"], ["b"])
    acc_cl = MinibatchCKA(["a"], ["b"])
    other = x[:120, 1024:2048]
    acc32.update({"a": feats}, {"b": other})
    acc_half.update({"a": feats.to(torch.bfloat16)}, {"b": other.to(torch.float16)})
    acc_cl.update({"a": feats.contiguous(memory_format=torch.channels_last)}, {"b": other})
    v32 = float(acc32.compute()[0, 0])
    assert float(acc_cl.compute()[0, 0]) == pytest.approx(v32, abs=TOL)  # order of features is irrelevant
    assert float(acc_half.compute()[0, 0]) == pytest.approx(v32, abs=1e-2)  # bf16 inputs are coarse
    with pytest.raises(ValueError, match="precision: expected one of float32, float64"):
        MinibatchCKA(["a"], ["b"], precision="float16")


def test_cka_matrix_of_resnet_features_agrees_with_the_float64_reference():
    torch.manual_seed(0)
    t = create_model("resnet8", num_classes=10, in_channels=3, image_size=16)
    torch.manual_seed(1)
    s = create_model("cnn_small", num_classes=10, in_channels=3, image_size=16)
    x = torch.randn(96, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    # taps: post-ReLU block outputs, the pooled embedding, a raw conv output whose BN would be
    # folded into it, and a BN's input
    lt = ["layer1", "layer3", "pool", "layer1.0.conv1", "layer2.0.bn1:input"]
    ls = ["features.1", "pool"]
    res = cka_matrix(t, s, x, layers={"teacher": lt, "student": ls}, batch_size=48)
    _, ft = capture(t, x, lt, train=False)
    _, fs = capture(s, x, ls, train=False)
    for i, p in enumerate(lt):
        for j, q in enumerate(ls):
            want = _reference(
                [v.double().numpy() for v in ft[p].split(48)], [v.double().numpy() for v in fs[q].split(48)]
            )
            assert res.matrix[i, j] == pytest.approx(want, abs=TOL), (p, q)


class _ConvThenNorm(nn.Module):
    """A container whose output is a raw conv output, normalised outside it."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.block(x))))


def test_a_tapped_container_ending_in_a_conv_sees_the_raw_conv_output():
    torch.manual_seed(3)
    m = _ConvThenNorm().eval()
    with torch.no_grad():
        m.norm.running_mean.uniform_(-2, 2)
        m.norm.running_var.uniform_(0.2, 3)
        m.norm.weight.uniform_(0.5, 2)
    x = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    layers = ["block", "norm"]
    res = cka_matrix(m, m, x, layers=layers, batch_size=40)
    _, f = capture(m, x, layers, train=False)
    want = _reference([f["block"].double().numpy()], [f["norm"].double().numpy()])
    assert want < 0.999  # the BN's per-channel scaling changes the representation
    assert res.matrix[0, 1] == pytest.approx(want, abs=TOL)
