"""CKA (Kornblith et al. 2019), minibatch CKA (Nguyen et al. 2021) and 2-D embeddings."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from workbench.analysis.cka import MinibatchCKA, linear_cka, rbf_cka
from workbench.analysis.similarity import cka_matrix, cka_over_training
from workbench.models import create_model
from workbench.models.taps import capture, match_stages


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(_rng(seed).standard_normal((d, d)))
    return q


def _song_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, written out directly (independent of the U-centring used in the code)."""
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


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    g = _rng(1)
    x = g.standard_normal((60, 12))
    y = np.tanh(x[:, :7] @ g.standard_normal((7, 9))) + 0.3 * g.standard_normal((60, 9))
    return x, y


# ---- whole-matrix CKA ---------------------------------------------------------------------------
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(xy, debiased):
    x, _ = xy
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_symmetric(xy, debiased):
    x, y = xy
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(
        linear_cka(y, x, debiased=debiased), abs=1e-12
    )
    assert rbf_cka(x, y, debiased=debiased) == pytest.approx(rbf_cka(y, x, debiased=debiased), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling(xy, debiased):
    x, y = xy
    y2 = 3.7 * y @ _orthogonal(y.shape[1], 5) + 2.0  # rotation/reflection, scaling, translation
    x2 = 0.01 * x @ _orthogonal(x.shape[1], 6)
    base = linear_cka(x, y, debiased=debiased)
    assert 0.05 < abs(base) < 0.95  # a non-trivial value, so the invariance says something
    assert linear_cka(x2, y2, debiased=debiased) == pytest.approx(base, abs=1e-10)
    base_rbf = rbf_cka(x, y, debiased=debiased)
    assert rbf_cka(x2, y2, debiased=debiased) == pytest.approx(base_rbf, abs=1e-10)


def test_linear_cka_is_not_invariant_to_a_general_invertible_map():
    # X with centred orthonormal columns (XᵀX = I exactly): for Y = X M,
    # CKA = ‖XᵀXM‖² / (‖XᵀX‖ ‖MᵀXᵀXM‖) = ‖M‖²_F / (‖I‖_F ‖MᵀM‖_F).
    raw = _rng(2).standard_normal((100, 5))
    x, _ = np.linalg.qr(raw - raw.mean(0))
    m = np.diag([10.0, 1.0, 1.0, 1.0, 1.0])  # invertible, anisotropic
    expected = 104.0 / (math.sqrt(5.0) * math.sqrt(10004.0))  # = 0.465
    assert linear_cka(x, x @ m) == pytest.approx(expected, abs=1e-10)
    assert linear_cka(x, x @ _orthogonal(5, 3)) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_of_one_feature_is_squared_pearson():
    g = _rng(3)
    a = g.standard_normal(40)
    b = 0.5 * a + g.standard_normal(40)
    r = np.corrcoef(a, b)[0, 1]
    assert linear_cka(a[:, None], b[:, None]) == pytest.approx(r**2, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_and_gram_paths_agree(xy, debiased):
    # zero columns leave every Gram matrix unchanged but push the width past n (Gram path)
    x, y = xy
    wide = np.concatenate([x, np.zeros((x.shape[0], 80))], axis=1)
    assert linear_cka(wide, y, debiased=debiased) == pytest.approx(
        linear_cka(x, y, debiased=debiased), abs=1e-10
    )


def test_debiased_cka_matches_song_unbiased_hsic(xy):
    x, y = xy
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    want = _song_unbiased_hsic(k, l) / math.sqrt(_song_unbiased_hsic(k, k) * _song_unbiased_hsic(l, l))
    assert linear_cka(x, y, debiased=True) == pytest.approx(want, abs=1e-10)


def test_rbf_bandwidth_follows_the_median_heuristic():
    # three points on a line at 0, 1, 3: squared distances {0,0,0,1,1,4,4,9,9}, median 1
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.array([[0.0], [2.0], [1.0]])
    bw = 0.5

    def gram(v):
        d2 = (v - v.T) ** 2
        return np.exp(-d2 / (2 * bw**2 * np.median(d2)))

    h = np.eye(3) - 1.0 / 3.0
    kx, ky = h @ gram(x) @ h, h @ gram(y) @ h
    want = (kx * ky).sum() / (np.linalg.norm(kx) * np.linalg.norm(ky))
    assert rbf_cka(x, y, bandwidth=bw) == pytest.approx(want, abs=1e-12)


def test_cka_rejects_bad_input():
    with pytest.raises(ValueError, match="y: expected 10 examples"):
        linear_cka(np.ones((10, 2)), np.ones((9, 2)))
    with pytest.raises(ValueError, match="x: the representation is constant"):
        linear_cka(np.ones((10, 2)), _rng(0).standard_normal((10, 2)))
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(np.eye(3), np.eye(3), debiased=True)
    with pytest.raises(ValueError, match="bandwidth"):
        rbf_cka(np.eye(5), np.eye(5), bandwidth=0.0)


# ---- minibatch CKA ------------------------------------------------------------------------------
def test_minibatch_cka_of_one_batch_equals_debiased_cka(xy):
    x, y = xy
    acc = MinibatchCKA(["x", "y"], ["y"])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    acc.update({"x": tx, "y": ty}, {"y": ty})
    got = acc.compute()
    assert got.shape == (2, 1)
    assert got[0, 0] == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-10)
    assert got[1, 0] == pytest.approx(1.0, abs=1e-12)


def test_minibatch_cka_approaches_the_full_data_value():
    # Y = the first 4 of 8 isotropic Gaussian features: the population CKA is
    # ‖Σxy‖² / (‖Σxx‖ ‖Σyy‖) = 4 / (√8 · 2) = 1/√2. Over 20 seeds the full-data
    # debiased estimate deviated from 1/√2 with std 0.005 and the 16-batch minibatch estimate from
    # the full-data one with std 0.0006: the tolerances below are about 5 standard deviations.
    x = _rng(7).standard_normal((4096, 8))
    y = x[:, :4].copy()
    full = linear_cka(x, y, debiased=True)
    assert full == pytest.approx(1 / math.sqrt(2), abs=0.025)
    acc = MinibatchCKA(["x"], ["y"])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for start in range(0, 4096, 256):
        acc.update({"x": tx[start : start + 256]}, {"y": ty[start : start + 256]})
    assert acc.n_batches == 16 and acc.n_samples == 4096
    assert acc.compute()[0, 0] == pytest.approx(full, abs=0.003)


def test_minibatch_cka_rejects_small_batches_and_missing_layers():
    acc = MinibatchCKA(["a"], ["b"])
    with pytest.raises(ValueError, match="batch size 3"):
        acc.update({"a": torch.randn(3, 4)}, {"b": torch.randn(3, 4)})
    with pytest.raises(ValueError, match="feats_b: no features for layer 'b'"):
        acc.update({"a": torch.randn(8, 4)}, {"c": torch.randn(8, 4)})
    with pytest.raises(ValueError, match="no batch"):
        acc.compute()
    biased = MinibatchCKA(["a"], ["b"], debiased=False)
    biased.update({"a": torch.randn(3, 4)}, {"b": torch.randn(3, 4)})  # the biased HSIC needs only 2


# ---- CKA between models -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_and_images():
    torch.manual_seed(0)
    a = create_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
    torch.manual_seed(1)
    b = create_model("resnet8", num_classes=10, in_channels=1, image_size=8)
    images = torch.randn(48, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return a, b, images


# the exact path: float64 Gram matrices of features from the unfolded NCHW model
EXACT = {"precision": "float64", "fold_bn": False, "memory_format": "contiguous"}


def _all_features(model, images, paths):
    _, feats = capture(model, images, paths, train=False)
    return {k: v.reshape(len(images), -1).double().numpy() for k, v in feats.items()}


def test_cka_matrix_in_one_batch_equals_per_pair_debiased_cka(models_and_images):
    a, b, images = models_and_images
    res = cka_matrix(a, b, images, batch_size=len(images), **EXACT)
    assert res.teacher_layers == [*a.stages, "pool"] and res.student_layers == [*b.stages, "pool"]
    assert res.matrix.shape == (4, 4) and res.n_samples == 48
    fa, fb = _all_features(a, images, res.teacher_layers), _all_features(b, images, res.student_layers)
    want = np.array(
        [[linear_cka(fa[p], fb[q], debiased=True) for q in res.student_layers] for p in res.teacher_layers]
    )
    np.testing.assert_allclose(res.matrix, want, atol=1e-10)
    # the defaults (float32 Gram matrices of centred features, BatchNorm folded, channels-last on
    # the CPU) stay within 1e-6 of the exact path
    fast = cka_matrix(a, b, images, batch_size=len(images))
    assert fast.params["precision"] == "float32" and fast.params["fold_bn"] is True
    np.testing.assert_allclose(fast.matrix, want, atol=1e-6)


def test_cka_matrix_over_batches_equals_per_pair_minibatch_cka(models_and_images):
    a, b, images = models_and_images
    layers_a, layers_b = ["features.1", "pool"], ["layer1", "layer3", "pool"]
    res = cka_matrix(
        a, b, images, layers={"teacher": layers_a, "student": layers_b}, batch_size=10, **EXACT
    )  # tail of 8 kept
    fa, fb = _all_features(a, images, layers_a), _all_features(b, images, layers_b)
    bounds = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 48)]
    for i, p in enumerate(layers_a):
        for j, q in enumerate(layers_b):
            one = MinibatchCKA([p], [q])
            for lo, hi in bounds:
                one.update({p: torch.from_numpy(fa[p][lo:hi])}, {q: torch.from_numpy(fb[q][lo:hi])})
            assert res.matrix[i, j] == pytest.approx(one.compute()[0, 0], abs=1e-10)


def test_cka_matrix_folds_a_short_tail_into_the_previous_batch(models_and_images):
    a, _, images = models_and_images
    # 48 = 3 * 15 + 3: the 3-image tail is merged (the unbiased estimator needs 4 per batch)
    res = cka_matrix(a, a, images, layers=["pool"], batch_size=15)
    assert res.n_samples == 48
    assert res.matrix[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_cka_matrix_of_a_model_with_itself_has_unit_diagonal_and_restores_the_model(models_and_images):
    a, _, images = models_and_images
    a.train()
    res = cka_matrix(a, a, images, batch_size=16, names=("student", "student"))
    np.testing.assert_allclose(np.diag(res.matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(res.matrix, res.matrix.T, atol=1e-12)
    assert a.training and all(m.training for m in a.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in a.modules())
    a.eval()


# ---- CKA over training --------------------------------------------------------------------------
def test_cka_over_training_is_one_where_the_checkpoint_is_the_reference(models_and_images):
    a, _, images = models_and_images
    torch.manual_seed(5)
    other = create_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
    same = copy.deepcopy(a)
    res = cka_over_training(a, {3: other, 7: same}, images, batch_size=16)
    assert res.epochs.tolist() == [3, 7]
    assert res.student_layers == res.teacher_layers == [*a.stages, "pool"]
    np.testing.assert_allclose(res.values[1], 1.0, atol=1e-12)
    assert (res.values[0] < 0.999).all()
    direct = cka_matrix(other, a, images, batch_size=16).matrix
    np.testing.assert_allclose(res.values[0], np.diag(direct), atol=1e-10)

    loaded = []

    def loader(model):
        def load():
            loaded.append(model)
            return model

        return load

    res2 = cka_over_training(a, [loader(copy.deepcopy(a)), loader(other)], images, batch_size=16)
    assert res2.epochs.tolist() == [1, 2] and len(loaded) == 2  # each loader called once
    np.testing.assert_allclose(res2.values, res.values[::-1], atol=1e-10)


def test_cka_over_training_pairs_the_stages_feature_distillation_trains(models_and_images):
    a, b, images = models_and_images
    res = cka_over_training(b, [a], images, batch_size=16)
    want = match_stages(a, b, (1, 8, 8), (1, 8, 8))
    assert list(zip(res.student_layers, res.teacher_layers, strict=True)) == [*want, ("pool", "pool")]
    direct = cka_matrix(b, a, images, batch_size=16)
    for p, (s_path, t_path) in enumerate(zip(res.student_layers, res.teacher_layers, strict=True)):
        i, j = direct.teacher_layers.index(t_path), direct.student_layers.index(s_path)
        assert res.values[0, p] == pytest.approx(direct.matrix[i, j], abs=1e-10)
    explicit = cka_over_training(
        b, [a], images, layers={"teacher": ["layer1", "pool"], "student": ["features.0", "pool"]}
    )
    assert explicit.teacher_layers == ["layer1", "pool"] and explicit.values.shape == (1, 2)
    with pytest.raises(ValueError, match="layers: expected as many teacher paths as student paths"):
        cka_over_training(b, [a], images, layers={"teacher": ["pool"], "student": ["features.0", "pool"]})


def test_minibatch_rbf_cka_of_one_batch_equals_debiased_rbf_cka(xy):
    x, y = xy
    acc = MinibatchCKA(["x"], ["y"], kernel="rbf", bandwidth=0.8)
    acc.update({"x": torch.from_numpy(x)}, {"y": torch.from_numpy(y)})
    assert acc.compute()[0, 0] == pytest.approx(rbf_cka(x, y, bandwidth=0.8, debiased=True), abs=1e-10)
    with pytest.raises(ValueError, match="kernel: unknown kernel 'cosine'; known: linear, rbf"):
        MinibatchCKA(["x"], ["y"], kernel="cosine")


def test_cka_matrix_layers_as_one_list_for_both_and_unknown_paths(models_and_images):
    a, b, images = models_and_images
    res = cka_matrix(a, a, images, layers=["pool"], batch_size=48, names=("a", "a"))
    assert res.teacher_layers == res.student_layers == ["pool"] and res.names == ("a", "a")
    with pytest.raises(ValueError, match=r"layers\['student'\]: module path 'layer9'"):
        cka_matrix(a, b, images, layers={"student": ["layer9"]})
