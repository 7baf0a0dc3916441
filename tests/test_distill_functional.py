"""Loss kernels of ``workbench.distill.functional`` against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.distill import functional as K

F64 = torch.float64
LN3 = math.log(3.0)
LN2 = math.log(2.0)


def t64(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def close(value: torch.Tensor, expected: float, tol: float = 1e-12) -> None:
    assert value.dim() == 0
    assert float(value) == pytest.approx(expected, abs=tol, rel=tol)


# ---- one student/teacher pair per kernel, for the shared properties --------------------------


def _logits(gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return (3.0 * torch.randn(6, 5, generator=gen, dtype=F64)).to(dtype)


def _map(gen: torch.Generator, dtype: torch.dtype, c: int = 3, h: int = 4) -> torch.Tensor:
    return torch.randn(6, c, h, h, generator=gen, dtype=F64).to(dtype)


def _emb(gen: torch.Generator, dtype: torch.dtype, d: int = 7) -> torch.Tensor:
    return torch.randn(6, d, generator=gen, dtype=F64).to(dtype)


TARGET = torch.tensor([0, 1, 2, 3, 4, 0])

# name -> (make student, make teacher of a compatible but different shape where allowed, call)
KERNELS = {
    "kd": (_logits, _logits, lambda s, t: K.kd_loss(s, t)),
    "kd_per_sample_mean": (_logits, _logits, lambda s, t: K.kd_loss_per_sample(s, t).mean()),
    "reverse_kd": (_logits, _logits, lambda s, t: K.reverse_kd_loss(s, t)),
    "js": (_logits, _logits, lambda s, t: K.js_divergence(s, t)),
    "dkd": (_logits, _logits, lambda s, t: K.dkd_loss(s, t, TARGET)),
    "dist": (_logits, _logits, lambda s, t: K.dist_loss(s, t, temperature=2.0)),
    "at": (_map, lambda g, d: _map(g, d, c=5, h=2), lambda s, t: K.at_loss(s, t)),
    "sp": (_map, lambda g, d: _emb(g, d, d=11), lambda s, t: K.sp_loss(s, t)),
    "rkd": (_emb, lambda g, d: _emb(g, d, d=4), lambda s, t: K.rkd_loss(s, t)),
    "pkt": (_emb, lambda g, d: _emb(g, d, d=4), lambda s, t: K.pkt_loss(s, t)),
    "nst": (_map, lambda g, d: _map(g, d, c=5, h=2), lambda s, t: K.nst_loss(s, t)),
    "hint": (_map, _map, lambda s, t: K.hint_loss(s, t)),
    "cat_kd": (_map, lambda g, d: _map(g, d, h=8), lambda s, t: K.cat_kd_loss(s, t, normalize=True)),
}

ZERO_WHEN_EQUAL = ["kd", "kd_per_sample_mean", "reverse_kd", "js", "dkd", "at", "sp", "rkd", "pkt", "nst"]
ZERO_WHEN_EQUAL += ["hint", "cat_kd"]


@pytest.mark.parametrize("name", ZERO_WHEN_EQUAL)
def test_zero_when_student_equals_teacher(name: str) -> None:
    make_s, _, call = KERNELS[name]
    x = make_s(torch.Generator().manual_seed(1), F64)
    close(call(x, x.clone()), 0.0, tol=1e-12)


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_returns_scalar_of_input_dtype_and_positive_for_different_inputs(
    name: str, dtype: torch.dtype
) -> None:
    make_s, make_t, call = KERNELS[name]
    gen = torch.Generator().manual_seed(2)
    value = call(make_s(gen, dtype), make_t(gen, dtype))
    assert value.shape == ()
    assert value.dtype == dtype
    assert math.isfinite(float(value)) and float(value) > 0.0


@pytest.mark.parametrize("name", list(KERNELS))
def test_gradient_reaches_the_student_only(name: str) -> None:
    make_s, make_t, call = KERNELS[name]
    gen = torch.Generator().manual_seed(3)
    student = make_s(gen, F64).requires_grad_(True)
    teacher = make_t(gen, F64).requires_grad_(True)
    call(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert torch.isfinite(student.grad).all()
    assert float(student.grad.abs().sum()) > 0.0


def test_teacher_is_cast_to_the_student_dtype() -> None:
    s = torch.randn(3, 4, dtype=torch.float32)
    t = torch.randn(3, 4, dtype=torch.float64)
    value = K.kd_loss(s, t)
    assert value.dtype == torch.float32
    # casting first gives the very same float32 computation
    assert torch.equal(value, K.kd_loss(s, t.to(torch.float32)))


# ---- KD and its per-sample / reverse / JS relatives ------------------------------------------


def test_kd_two_classes_by_hand() -> None:
    # T = 2: teacher logits (2 ln 3, 0) -> p_t = (3/4, 1/4); student (0, 0) -> p_s = (1/2, 1/2)
    s = t64([[0.0, 0.0]])
    t = t64([[2.0 * LN3, 0.0]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    close(K.kd_loss(s, t, temperature=2.0), 4.0 * kl)


def test_kd_is_batch_mean_and_per_sample_mean_matches() -> None:
    # second row: p_t = (1/2, 1/2), p_s = (3/4, 1/4) at T = 1
    s = t64([[0.0, 0.0], [LN3, 0.0]])
    t = t64([[LN3, 0.0], [0.0, 0.0]])
    row0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    row1 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    rows = K.kd_loss_per_sample(s, t, temperature=1.0)
    assert rows.shape == (2,)
    assert rows.tolist() == pytest.approx([row0, row1], abs=1e-12)
    close(K.kd_loss(s, t, temperature=1.0), (row0 + row1) / 2)


def test_reverse_kd_two_classes_by_hand() -> None:
    # KL(p_s || p_t) with p_s = (1/2, 1/2), p_t = (3/4, 1/4), T = 3
    s = t64([[0.0, 0.0]])
    t = t64([[3.0 * LN3, 0.0]])
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    close(K.reverse_kd_loss(s, t, temperature=3.0), 9.0 * kl)
    close(K.reverse_kd_loss_per_sample(s, t, temperature=3.0)[0], 9.0 * kl)


def test_js_divergence_by_hand_and_symmetric() -> None:
    # p_s = (1/2, 1/2), p_t = (3/4, 1/4), m = (5/8, 3/8), T = 1
    s = t64([[0.0, 0.0]])
    t = t64([[LN3, 0.0]])
    kl_s = 0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)
    kl_t = 0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)
    expected = 0.5 * (kl_s + kl_t)
    close(K.js_divergence(s, t, temperature=1.0), expected)
    close(K.js_divergence(t, s, temperature=1.0), expected)
    close(K.js_divergence_per_sample(s, t, temperature=1.0)[0], expected)


def test_js_divergence_of_disjoint_distributions_is_ln2_times_t2() -> None:
    s = t64([[200.0, -200.0]])
    t = t64([[-200.0, 200.0]])
    close(K.js_divergence(s, t, temperature=2.0), 4.0 * LN2, tol=1e-9)


# ---- DKD ----------------------------------------------------------------------------------------


# student logits (0, 0, ln 2) -> p_s = (1/4, 1/4, 1/2); teacher (ln 2, ln 3, 0) -> p_t = (1/3, 1/2, 1/6)
# target 0: binary b_s = (1/4, 3/4), b_t = (1/3, 2/3); non-target q_s = (1/3, 2/3), q_t = (3/4, 1/4)
DKD_S = [[0.0, 0.0, LN2]]
DKD_T = [[LN2, LN3, 0.0]]
TCKD = (1 / 3) * math.log((1 / 3) / (1 / 4)) + (2 / 3) * math.log((2 / 3) / (3 / 4))
NCKD = 0.75 * math.log(0.75 / (1 / 3)) + 0.25 * math.log(0.25 / (2 / 3))


def test_dkd_is_weighted_sum_of_tckd_and_nckd_by_hand() -> None:
    target = torch.tensor([0])
    s, t = t64(DKD_S), t64(DKD_T)
    close(K.dkd_loss(s, t, target, alpha=1.0, beta=0.0, temperature=1.0), TCKD)
    close(K.dkd_loss(s, t, target, alpha=0.0, beta=1.0, temperature=1.0), NCKD)
    close(K.dkd_loss(s, t, target, alpha=2.0, beta=8.0, temperature=1.0), 2.0 * TCKD + 8.0 * NCKD)


def test_dkd_temperature_factor_and_batch_mean() -> None:
    # doubling the logits and T leaves the distributions unchanged and multiplies by T^2 = 4
    target = torch.tensor([0, 0])
    s = t64([DKD_S[0], [1.0, 1.0, 1.0]]) * 2.0
    t = t64([DKD_T[0], [1.0, 1.0, 1.0]]) * 2.0
    rows = K.dkd_loss_per_sample(s, t, target, alpha=1.0, beta=8.0, temperature=2.0)
    assert rows.tolist() == pytest.approx([4.0 * (TCKD + 8.0 * NCKD), 0.0], abs=1e-12)
    close(K.dkd_loss(s, t, target, alpha=1.0, beta=8.0, temperature=2.0), 2.0 * (TCKD + 8.0 * NCKD))


# ---- DIST ---------------------------------------------------------------------------------------


def test_dist_equal_inputs_known_value() -> None:
    # rows softmax to (1/4, 3/4) and (3/4, 1/4): every centred row and column has squared norm 1/8,
    # so both Pearson terms are c / (c + 1e-8) with c = 1/8, not exactly 1
    z = t64([[0.0, LN3], [LN3, 0.0]])
    c = 0.125
    one_minus_r = 1.0 - c / (c + 1e-8)
    close(K.dist_loss(z, z.clone(), beta=1.0, gamma=2.0, temperature=1.0), 3.0 * one_minus_r, tol=1e-15)


def test_dist_identical_rows_give_intra_term_one() -> None:
    # identical rows: each class column is constant, its centred vector is 0, Pearson 0, intra = 1
    z = t64([[0.0, 2.0 * LN3], [0.0, 2.0 * LN3]])
    c = 0.125
    inter = 1.0 - c / (c + 1e-8)
    expected = 4.0 * (1.0 * inter + 3.0 * 1.0)
    close(K.dist_loss(z, z.clone(), beta=1.0, gamma=3.0, temperature=2.0), expected, tol=1e-14)


# ---- feature kernels ---------------------------------------------------------------------------


def test_at_tiny_map_by_hand() -> None:
    # student attention (1, 1)/sqrt(2), teacher (1, 0): mean of squared differences = 1 - 1/sqrt(2)
    s = t64([[[[1.0, 1.0]]]])
    t = t64([[[[1.0, 0.0]]]])
    close(K.at_loss(s, t), 1.0 - 1.0 / math.sqrt(2.0))


def test_at_averages_channels_of_the_power() -> None:
    # channels (1, 0) and (0, 1): mean of squares (1/2, 1/2) -> attention (1, 1)/sqrt(2) for p = 2;
    # with p = 4 the same; the teacher is a single channel (3, 3) -> also (1, 1)/sqrt(2)
    s = t64([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    t = t64([[[[3.0, 3.0]]]])
    close(K.at_loss(s, t, p=2.0), 0.0)
    close(K.at_loss(s, t, p=4.0), 0.0)


def test_at_and_nst_pool_the_larger_map() -> None:
    gen = torch.Generator().manual_seed(4)
    small = torch.rand(2, 3, 2, 2, generator=gen, dtype=F64)
    # each value repeated over a 2x2 block: average pooling to 2x2 gives back `small`
    big = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    for kernel in (K.at_loss, K.nst_loss):
        close(kernel(big, small), 0.0)
        close(kernel(small, big), 0.0)
        assert float(kernel(big, small.flip(0))) > 1e-3


def test_sp_two_samples_by_hand() -> None:
    # G_s = I (rows already unit); G_t = all ones -> rows (1, 1)/sqrt(2);
    # ||G_t - G_s||^2 = 2 ((1 - 1/sqrt 2)^2 + 1/2) = 4 - 2 sqrt 2, divided by B^2 = 4
    s = t64([[1.0, 0.0], [0.0, 1.0]])
    t = t64([[1.0, 0.0], [1.0, 0.0]])
    close(K.sp_loss(s, t), (4.0 - 2.0 * math.sqrt(2.0)) / 4.0)


def test_rkd_distance_term_on_collinear_points() -> None:
    # student 0, 1, 2 and teacher 0, 1, 3 on a line: distances (1, 2, 1) / (4/3) and (1, 3, 2) / 2;
    # differences 1/4, 0, 1/4 (each twice in the 3x3 matrix) -> smooth-L1 sum 4 * (1/2)(1/4)^2 = 1/8,
    # mean over 9 entries = 1/72. Same order on one line: every angle cosine matches, angle term 0.
    s = t64([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    t = t64([[0.0, 5.0], [0.0, 6.0], [0.0, 8.0]])
    close(K.rkd_loss(s, t, distance_weight=1.0, angle_weight=0.0), 1.0 / 72.0)
    close(K.rkd_loss(s, t, distance_weight=0.0, angle_weight=1.0), 0.0)
    close(K.rkd_loss(s, t), 25.0 / 72.0)


def test_rkd_is_invariant_to_scale_rotation_and_translation_of_the_teacher() -> None:
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(5, 2, generator=gen, dtype=F64)
    theta = 0.7
    rot = t64([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = 3.0 * s @ rot.T + t64([1.0, -2.0])
    close(K.rkd_loss(s, moved), 0.0, tol=1e-10)


def test_pkt_two_by_two_by_hand() -> None:
    eps = 1e-7
    a = 1.0 / (1.0 + eps)  # unit vectors shrink by the eps added to the norm
    # student rows orthogonal: similarities (a^2 + 1)/2 on the diagonal, 1/2 off it
    p_diag = (a * a + 1.0) / (a * a + 2.0)
    p_off = 1.0 / (a * a + 2.0)
    # teacher rows identical: all similarities equal -> probabilities 1/2
    expected = 0.25 * (
        2 * 0.5 * math.log((0.5 + eps) / (p_diag + eps)) + 2 * 0.5 * math.log((0.5 + eps) / (p_off + eps))
    )
    s = t64([[1.0, 0.0], [0.0, 1.0]])
    t = t64([[1.0, 0.0], [1.0, 0.0]])
    close(K.pkt_loss(s, t), expected)
    assert expected == pytest.approx(0.25 * math.log(1.125), rel=1e-6)


def test_pkt_zero_embedding_row_is_finite() -> None:
    s = t64([[0.0, 0.0], [0.0, 1.0]])
    t = t64([[1.0, 0.0], [0.0, 1.0]])
    assert math.isfinite(float(K.pkt_loss(s, t)))


def test_nst_single_channel_by_hand() -> None:
    # one channel per map: k(s, s) = k(t, t) = 1, k(s, t) = cos^2 = 1/2 -> 1 + 1 - 2 * 1/2 = 1
    s = t64([[[[1.0, 0.0]]]])
    t = t64([[[[1.0, 1.0]]]])
    close(K.nst_loss(s, t), 1.0)


def test_nst_ignores_channel_order_and_map_scale() -> None:
    gen = torch.Generator().manual_seed(6)
    f = torch.randn(2, 4, 3, 3, generator=gen, dtype=F64)
    close(K.nst_loss(f[:, [2, 0, 3, 1]] * 5.0, f), 0.0)


def test_hint_is_elementwise_mean_squared_error() -> None:
    s = t64([[1.0, 2.0], [3.0, 4.0]])
    t = t64([[0.0, 0.0], [3.0, 2.0]])
    close(K.hint_loss(s, t), (1.0 + 4.0 + 0.0 + 4.0) / 4.0)


# ---- CAMs and CAT-KD -----------------------------------------------------------------------------


def test_class_activation_maps_identity() -> None:
    gen = torch.Generator().manual_seed(7)
    f = torch.randn(2, 3, 4, 5, generator=gen, dtype=F64)
    w = torch.randn(6, 3, generator=gen, dtype=F64)
    cams = K.class_activation_maps(f, w)
    assert cams.shape == (2, 6, 4, 5)
    # each position: W @ f[b, :, h, w]
    assert torch.allclose(cams[1, :, 2, 3], w @ f[1, :, 2, 3], atol=1e-12)
    # by linearity the spatial mean of the CAMs is the bias-free logit of the pooled feature
    assert torch.allclose(cams.mean(dim=(2, 3)), f.mean(dim=(2, 3)) @ w.T, atol=1e-12)


def test_cat_kd_by_hand() -> None:
    s = torch.ones(1, 1, 2, 2, dtype=F64)
    t = torch.full((1, 1, 4, 4), 3.0, dtype=F64)
    close(K.cat_kd_loss(s, t, resolution=1), 4.0)  # pooled 1 vs 3
    close(K.cat_kd_loss(s, t, resolution=1, normalize=True), 0.0)  # both normalise to 1
    # resolution 2: blocks of a 4x4 map average to (1, 2; 3, 4); student constant 0
    blocks = t64([[1.0, 2.0], [3.0, 4.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    close(K.cat_kd_loss(torch.zeros(1, 1, 2, 2, dtype=F64), blocks, resolution=2), 30.0 / 4.0)
    norm = math.sqrt(30.0)
    expected = sum((v / norm - 0.5) ** 2 for v in (1.0, 2.0, 3.0, 4.0)) / 4.0
    close(K.cat_kd_loss(torch.ones(1, 1, 2, 2, dtype=F64), blocks, resolution=2, normalize=True), expected)


# ---- input validation ----------------------------------------------------------------------------


def _one_line_error(call, *words: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_rejects_bad_hyperparameters() -> None:
    z = torch.zeros(2, 3)
    _one_line_error(lambda: K.kd_loss(z, z, temperature=0.0), "kd_loss", "temperature", "0.0")
    _one_line_error(lambda: K.kd_loss(z, z, temperature=float("nan")), "kd_loss", "temperature")
    _one_line_error(lambda: K.dist_loss(z, z, temperature=-1.0), "dist_loss", "temperature")
    _one_line_error(lambda: K.dkd_loss(z, z, torch.tensor([0, 1]), alpha=True), "dkd_loss", "alpha")
    _one_line_error(
        lambda: K.at_loss(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), p=0.0), "at_loss", "p"
    )
    f = torch.zeros(2, 3, 4, 4)
    _one_line_error(lambda: K.cat_kd_loss(f, f, resolution=0), "cat_kd_loss", "resolution")
    _one_line_error(lambda: K.cat_kd_loss(f, f, normalize="yes"), "cat_kd_loss", "normalize")


def test_rejects_bad_tensors() -> None:
    z = torch.zeros(2, 3)
    _one_line_error(lambda: K.kd_loss(z, torch.zeros(2, 4)), "kd_loss", "same shape", "(2, 3)", "(2, 4)")
    _one_line_error(lambda: K.kd_loss(torch.zeros(2, 3, 1), z), "kd_loss", "student_logits", "2 dimensions")
    _one_line_error(lambda: K.kd_loss(z.long(), z), "kd_loss", "student_logits", "floating-point")
    _one_line_error(lambda: K.kd_loss(z.tolist(), z), "kd_loss", "student_logits", "list")
    _one_line_error(lambda: K.kd_loss(torch.zeros(0, 3), torch.zeros(0, 3)), "kd_loss", "at least one sample")
    _one_line_error(lambda: K.sp_loss(torch.zeros(2, 3), torch.zeros(3, 3)), "sp_loss", "batch size")
    _one_line_error(lambda: K.rkd_loss(torch.zeros(1, 3), torch.zeros(1, 3)), "rkd_loss", "at least 2")
    _one_line_error(lambda: K.hint_loss(torch.zeros(2, 3), torch.zeros(2, 4)), "hint_loss", "same shape")
    _one_line_error(
        lambda: K.at_loss(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 2, 4)), "at_loss", "4x2", "2x4"
    )
    _one_line_error(
        lambda: K.cat_kd_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2)), "cat_kd_loss", "classes"
    )
    _one_line_error(
        lambda: K.class_activation_maps(torch.zeros(1, 3, 2, 2), torch.zeros(5, 4)),
        "class_activation_maps",
        "classifier_weight",
    )


def test_dkd_rejects_bad_targets() -> None:
    z = torch.zeros(2, 3)
    _one_line_error(lambda: K.dkd_loss(z, z, torch.tensor([0, 3])), "dkd_loss", "target", "[0, 3)")
    _one_line_error(lambda: K.dkd_loss(z, z, torch.tensor([0.0, 1.0])), "dkd_loss", "target", "integer")
    _one_line_error(lambda: K.dkd_loss(z, z, torch.tensor([0, 1, 2])), "dkd_loss", "target", "(2,)")
