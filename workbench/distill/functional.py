"""Pure distillation loss kernels: tensors in, a 0-d loss tensor out.

Every kernel follows the reductions, constants and epsilons of the reference implementation
named in its docstring, so that its value agrees with that implementation on the same inputs:

* RepDistiller's ``distiller_zoo`` (Tian et al., "Contrastive Representation Distillation",
  ICLR 2020) for KD, AT, SP, RKD, PKT, NST and FitNet's hint loss;
* mdistiller (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022) for DKD, and the
  CAT-KD authors' mdistiller-based code (Guo et al., "Class Attention Transfer Based Knowledge
  Distillation", CVPR 2023) for CAT-KD;
* the DIST authors' classification code (Huang et al., "Knowledge Distillation from A Stronger
  Teacher", NeurIPS 2022) for DIST.

Conventions shared by every kernel:

* Inputs are floating-point tensors (float32 and float64 are the tested precisions). The teacher
  argument is cast to the student's dtype and must live on the same device; the result is a
  0-d tensor of the student's dtype (``*_per_sample`` kernels return shape ``(B,)``).
* Teacher arguments are fixed targets: every kernel detaches them, so no gradient reaches a
  teacher tensor even when it requires grad. The reference training loops compute teacher
  outputs under ``torch.no_grad()`` (and RKD/NST detach inside), so gradients with respect to
  the student are the reference's. Online methods that want both sides to learn call a kernel
  once per direction with the roles swapped.
* Bad input raises :class:`ValueError` with one line naming the kernel, the argument, the value
  and what was expected. Checks look at shapes, dtypes and hyperparameters only, except
  :func:`dkd_loss`, which also checks that the labels lie in ``[0, num_classes)``.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F

__all__ = [
    "at_loss",
    "cat_kd_loss",
    "class_activation_maps",
    "dist_loss",
    "dkd_loss",
    "dkd_loss_per_sample",
    "hint_loss",
    "js_divergence",
    "js_divergence_per_sample",
    "kd_loss",
    "kd_loss_per_sample",
    "nst_loss",
    "pkt_loss",
    "reverse_kd_loss",
    "reverse_kd_loss_per_sample",
    "rkd_loss",
    "sp_loss",
]

#: epsilon of RepDistiller's PKT (added to norms and to probabilities inside the log)
PKT_EPS = 1e-7
#: epsilon of the DIST authors' cosine similarity (added to the product of norms)
DIST_EPS = 1e-8
#: lower clamp of RepDistiller's RKD squared pairwise distances
RKD_EPS = 1e-12
#: offset mdistiller's DKD subtracts from the ground-truth logit to mask it out of the NCKD softmax
DKD_MASK_OFFSET = 1000.0


# ---- input validation -------------------------------------------------------------------------


def _shape(x: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in x.shape) + ")"


def _check_tensor(fn: str, name: str, x: object, ndim: int | None = None, min_ndim: int = 0) -> torch.Tensor:
    """``x`` as a floating-point tensor with the expected number of dimensions."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{fn}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dimensions, got shape {_shape(x)}")
    if x.dim() < min_ndim:
        raise ValueError(f"{fn}: {name} must have at least {min_ndim} dimensions, got shape {_shape(x)}")
    if x.dim() > 0 and x.shape[0] == 0:
        raise ValueError(f"{fn}: {name} must hold at least one sample, got shape {_shape(x)}")
    return x


def _pair(
    fn: str,
    student: object,
    teacher: object,
    names: tuple[str, str],
    ndim: int | None = None,
    min_ndim: int = 0,
    same_shape: bool = False,
    min_batch: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a student/teacher pair; return the student and the detached, dtype-matched teacher."""
    s = _check_tensor(fn, names[0], student, ndim=ndim, min_ndim=min_ndim)
    t = _check_tensor(fn, names[1], teacher, ndim=ndim, min_ndim=min_ndim)
    if s.device != t.device:
        raise ValueError(
            f"{fn}: {names[1]} is on {t.device} but {names[0]} is on {s.device}; expected one device"
        )
    if same_shape and s.shape != t.shape:
        raise ValueError(
            f"{fn}: {names[0]} and {names[1]} must have the same shape, got {_shape(s)} and {_shape(t)}"
        )
    if s.shape[0] != t.shape[0]:
        raise ValueError(
            f"{fn}: {names[0]} and {names[1]} must have the same batch size, "
            f"got {s.shape[0]} and {t.shape[0]}"
        )
    if s.shape[0] < min_batch:
        raise ValueError(f"{fn}: {names[0]} must hold at least {min_batch} samples, got shape {_shape(s)}")
    return s, t.detach().to(dtype=s.dtype)


def _check_number(fn: str, name: str, value: object, positive: bool = False) -> float:
    """``value`` as a finite float (strictly positive when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}")
    if positive and float(value) <= 0.0:
        raise ValueError(f"{fn}: {name} must be > 0, got {value!r}")
    return float(value)


def _logit_pair(fn: str, student_logits: object, teacher_logits: object) -> tuple[torch.Tensor, torch.Tensor]:
    return _pair(
        fn, student_logits, teacher_logits, ("student_logits", "teacher_logits"), ndim=2, same_shape=True
    )


# ---- logit kernels ---------------------------------------------------------------------------


def kd_loss_per_sample(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Per-sample Hinton KD: ``T² · KL(softmax(t/T) || softmax(s/T))`` for each row.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", as written in
    RepDistiller's ``DistillKL``, before its batch reduction.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        ``(B,)`` tensor; its mean is :func:`kd_loss`.
    """
    fn = "kd_loss_per_sample"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    log_p_s = F.log_softmax(s / temp, dim=1)
    p_t = F.softmax(t / temp, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="none").sum(dim=1) * temp**2


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Hinton KD: ``T² · Σ_b KL(softmax(t_b/T) || softmax(s_b/T)) / B``.

    Hinton, Vinyals & Dean 2015; RepDistiller ``DistillKL``: ``kl_div`` summed over the batch and
    classes (``size_average=False``), times ``T²``, divided by the batch size (= "batchmean").

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        0-d loss tensor.
    """
    fn = "kd_loss"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    log_p_s = F.log_softmax(s / temp, dim=1)
    p_t = F.softmax(t / temp, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * temp**2 / s.shape[0]


def reverse_kd_loss_per_sample(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Per-sample reverse KL: ``T² · KL(softmax(s/T) || softmax(t/T))`` for each row.

    The mode-seeking direction of the KL divergence (student distribution first), scaled by
    ``T²`` like Hinton's KD so that both directions can be mixed (balanced forward/reverse KD).

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        ``(B,)`` tensor; its mean is :func:`reverse_kd_loss`.
    """
    fn = "reverse_kd_loss_per_sample"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    return _reverse_kl_rows(s, t, temp)


def reverse_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Reverse KL distillation: ``T² · Σ_b KL(softmax(s_b/T) || softmax(t_b/T)) / B``.

    Same reduction and ``T²`` factor as :func:`kd_loss` with the two distributions swapped.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        0-d loss tensor.
    """
    fn = "reverse_kd_loss"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    return _reverse_kl_rows(s, t, temp).sum() / s.shape[0]


def _reverse_kl_rows(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    log_p_s = F.log_softmax(s / temp, dim=1)
    log_p_t = F.log_softmax(t / temp, dim=1)
    # kl_div(input, target, log_target=True) = exp(target) * (target - input): here p_s (log p_s - log p_t)
    return F.kl_div(log_p_t, log_p_s, reduction="none", log_target=True).sum(dim=1) * temp**2


def js_divergence_per_sample(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Per-sample Jensen–Shannon divergence between temperature-softened outputs, times ``T²``.

    ``JS(p_s, p_t) = ½ KL(p_s || m) + ½ KL(p_t || m)`` with ``m = (p_s + p_t) / 2`` (Lin 1991,
    "Divergence measures based on the Shannon entropy"), computed in log space; natural log, so
    each row lies in ``[0, T² ln 2]``.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        ``(B,)`` tensor; its mean is :func:`js_divergence`.
    """
    fn = "js_divergence_per_sample"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    return _js_rows(s, t, temp)


def js_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Jensen–Shannon divergence distillation: batch mean of :func:`js_divergence_per_sample`.

    Symmetric, bounded companion of :func:`kd_loss` and :func:`reverse_kd_loss` (same ``T²``
    factor and batch-mean reduction).

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        temperature: softmax temperature ``T > 0``.

    Returns:
        0-d loss tensor.
    """
    fn = "js_divergence"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    return _js_rows(s, t, temp).sum() / s.shape[0]


def _js_rows(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    log_p_s = F.log_softmax(s / temp, dim=1)
    log_p_t = F.log_softmax(t / temp, dim=1)
    log_m = torch.logaddexp(log_p_s, log_p_t) - math.log(2.0)
    kl_s = F.kl_div(log_m, log_p_s, reduction="none", log_target=True).sum(dim=1)
    kl_t = F.kl_div(log_m, log_p_t, reduction="none", log_target=True).sum(dim=1)
    return 0.5 * (kl_s + kl_t) * temp**2


def _dkd_rows(
    fn: str,
    student_logits: object,
    teacher_logits: object,
    target: object,
    alpha: object,
    beta: object,
    temperature: object,
) -> torch.Tensor:
    """Per-sample ``alpha · TCKD + beta · NCKD`` (each already times ``T²``)."""
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    a = _check_number(fn, "alpha", alpha)
    b = _check_number(fn, "beta", beta)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    batch, num_classes = s.shape
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{fn}: target must be a torch.Tensor of class indices, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"{fn}: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != (batch,):
        raise ValueError(f"{fn}: target must have shape ({batch},), got {_shape(target)}")
    if target.device != s.device:
        raise ValueError(f"{fn}: target is on {target.device} but student_logits is on {s.device}")
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise ValueError(
            f"{fn}: target holds labels outside [0, {num_classes}), got min {int(target.min())} "
            f"and max {int(target.max())}"
        )
    gt_mask = F.one_hot(target.long(), num_classes).to(dtype=s.dtype)
    other_mask = 1.0 - gt_mask

    # TCKD: binary (target, non-target) distributions built from the full softmax
    p_s = F.softmax(s / temp, dim=1)
    p_t = F.softmax(t / temp, dim=1)
    bin_s = torch.stack(((p_s * gt_mask).sum(dim=1), (p_s * other_mask).sum(dim=1)), dim=1)
    bin_t = torch.stack(((p_t * gt_mask).sum(dim=1), (p_t * other_mask).sum(dim=1)), dim=1)
    tckd = F.kl_div(torch.log(bin_s), bin_t, reduction="none").sum(dim=1) * temp**2

    # NCKD: distributions over the non-target classes (target logit pushed down by a large offset)
    log_q_s = F.log_softmax(s / temp - DKD_MASK_OFFSET * gt_mask, dim=1)
    q_t = F.softmax(t / temp - DKD_MASK_OFFSET * gt_mask, dim=1)
    nckd = F.kl_div(log_q_s, q_t, reduction="none").sum(dim=1) * temp**2
    return a * tckd + b * nckd


def dkd_loss_per_sample(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """Per-sample Decoupled KD: ``alpha · TCKD_b + beta · NCKD_b`` (each times ``T²``).

    Zhao et al. 2022, "Decoupled Knowledge Distillation", as in mdistiller's ``dkd_loss`` before
    its division by the batch size; see :func:`dkd_loss`.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        target: ``(B,)`` integer labels in ``[0, K)``.
        alpha: weight of the target-class term TCKD.
        beta: weight of the non-target-class term NCKD.
        temperature: softmax temperature ``T > 0``.

    Returns:
        ``(B,)`` tensor; its mean is :func:`dkd_loss`.
    """
    return _dkd_rows("dkd_loss_per_sample", student_logits, teacher_logits, target, alpha, beta, temperature)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """Decoupled KD: ``alpha · TCKD + beta · NCKD``.

    Zhao et al. 2022, "Decoupled Knowledge Distillation"; mdistiller ``dkd_loss``:

    * TCKD is the KL between the binary distributions ``(p_target, 1 - p_target)`` of teacher
      and student, taken from the full temperature softmax (``gt``/``other`` masks);
    * NCKD is the KL between the softmaxes over the non-target classes, obtained by subtracting
      ``1000.0`` from the target logit (after the division by ``T``);
    * each KL is summed over the batch, times ``T²``, divided by the batch size.

    The warm-up factor ``min(epoch / warmup, 1)`` of the reference trainer is the caller's.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        target: ``(B,)`` integer labels in ``[0, K)``.
        alpha: weight of TCKD.
        beta: weight of NCKD.
        temperature: softmax temperature ``T > 0``.

    Returns:
        0-d loss tensor.
    """
    rows = _dkd_rows("dkd_loss", student_logits, teacher_logits, target, alpha, beta, temperature)
    return rows.sum() / rows.shape[0]


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation with the DIST authors' ``eps`` added to the norm product."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + DIST_EPS)


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DIST: ``T² · (beta · inter + gamma · intra)`` with Pearson-correlation relations.

    Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher"; the authors' ``DIST``
    loss: ``y = softmax(z / T)``; ``inter = 1 - mean_b pearson(y_s[b, :], y_t[b, :])`` (each
    sample's class distribution), ``intra = 1 - mean_k pearson(y_s[:, k], y_t[:, k])`` (each
    class across the batch); ``pearson`` is the cosine of the centred vectors with ``1e-8``
    added to the product of norms, so identical inputs give ``1 - c / (c + 1e-8)`` with ``c``
    the squared centred norm, not exactly 0. Both terms are multiplied by ``T²``.

    Args:
        student_logits: ``(B, K)`` student logits.
        teacher_logits: ``(B, K)`` teacher logits (detached).
        beta: weight of the inter-class term.
        gamma: weight of the intra-class term.
        temperature: softmax temperature ``T > 0``.

    Returns:
        0-d loss tensor.
    """
    fn = "dist_loss"
    s, t = _logit_pair(fn, student_logits, teacher_logits)
    b = _check_number(fn, "beta", beta)
    g = _check_number(fn, "gamma", gamma)
    temp = _check_number(fn, "temperature", temperature, positive=True)
    y_s = F.softmax(s / temp, dim=1)
    y_t = F.softmax(t / temp, dim=1)
    inter = 1.0 - _pearson_rows(y_s, y_t).mean()
    intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()
    return b * temp**2 * inter + g * temp**2 * intra


# ---- feature kernels ---------------------------------------------------------------------------


def _match_spatial(fn: str, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two ``(B, C, H, W)`` maps down to the other's spatial size.

    RepDistiller's AT and NST pool the map with the larger height to the other map's size with
    ``adaptive_avg_pool2d`` (they assume square maps); here the target size is the other map's
    ``(H, W)``, which is the same for square maps. A pair where neither map is at least as large
    as the other in both dimensions is rejected.
    """
    (sh, sw), (th, tw) = s.shape[2:], t.shape[2:]
    if (sh, sw) == (th, tw):
        return s, t
    if sh >= th and sw >= tw:
        return F.adaptive_avg_pool2d(s, (th, tw)), t
    if th >= sh and tw >= sw:
        return s, F.adaptive_avg_pool2d(t, (sh, sw))
    raise ValueError(
        f"{fn}: student_feature spatial size {sh}x{sw} and teacher_feature {th}x{tw} cannot be pooled "
        f"onto each other; expected one map at least as large as the other in both dimensions"
    )


def _attention_map(f: torch.Tensor, p: float) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention: ``normalize(mean_c f^p)`` flattened per sample."""
    return F.normalize(f.pow(p).mean(dim=1).reshape(f.shape[0], -1), dim=1)


def at_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Attention transfer for one layer pair.

    Zagoruyko & Komodakis 2017, "Paying More Attention to Attention"; RepDistiller
    ``Attention.at_loss``: attention ``a(f) = F.normalize(f.pow(p).mean(1).view(B, -1))`` (L2 over
    the spatial positions, eps 1e-12), loss ``(a(f_s) - a(f_t)).pow(2).mean()`` (mean over batch
    and positions). When the spatial sizes differ, the larger map is average-pooled
    (``adaptive_avg_pool2d``) to the smaller one's size first, as in the reference. Channel
    counts may differ (attention averages over channels).

    Args:
        student_feature: ``(B, C_s, H_s, W_s)`` student feature map.
        teacher_feature: ``(B, C_t, H_t, W_t)`` teacher feature map (detached).
        p: exponent of the activations, ``> 0`` (2 in the paper).

    Returns:
        0-d loss tensor.
    """
    fn = "at_loss"
    s, t = _pair(fn, student_feature, teacher_feature, ("student_feature", "teacher_feature"), ndim=4)
    power = _check_number(fn, "p", p, positive=True)
    s, t = _match_spatial(fn, s, t)
    return (_attention_map(s, power) - _attention_map(t, power)).pow(2).mean()


def sp_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD for one layer pair.

    Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation"; RepDistiller
    ``Similarity.similarity_loss``: flatten each sample, Gram matrices ``G = f fᵀ`` (``B × B``),
    each row L2-normalised (``F.normalize``, eps 1e-12), loss ``‖G_t - G_s‖_F² / B²``. Feature
    sizes may differ between student and teacher; batch sizes must match.

    Args:
        student_feature: ``(B, ...)`` student feature.
        teacher_feature: ``(B, ...)`` teacher feature (detached).

    Returns:
        0-d loss tensor (the reference returns shape ``(1,)``; the value is the same).
    """
    fn = "sp_loss"
    s, t = _pair(fn, student_feature, teacher_feature, ("student_feature", "teacher_feature"), min_ndim=2)
    batch = s.shape[0]
    s = s.reshape(batch, -1)
    t = t.reshape(batch, -1)
    g_s = F.normalize(s @ s.t(), dim=1)
    g_t = F.normalize(t @ t.t(), dim=1)
    return (g_t - g_s).pow(2).sum() / (batch * batch)


def _pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix as RepDistiller's ``RKDLoss.pdist``: the expansion
    ``|a|² + |b|² - 2ab`` clamped at 1e-12, square-rooted, with a zero diagonal."""
    sq = e.pow(2).sum(dim=1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (e @ e.t())).clamp(min=RKD_EPS).sqrt()
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return d.masked_fill(eye, 0.0)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """All ``cos ∠(e_i - e_a, e_j - e_a)`` flattened: RKD's angle potential (zero vectors give 0)."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


def rkd_loss(
    student_embedding: torch.Tensor,
    teacher_embedding: torch.Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> torch.Tensor:
    """Relational KD: ``distance_weight · L_dist + angle_weight · L_angle``.

    Park et al. 2019, "Relational Knowledge Distillation"; RepDistiller ``RKDLoss``: embeddings
    flattened per sample; pairwise distances (see :func:`_pairwise_distances`) divided by the
    mean of their positive entries; ``L_dist = smooth_l1(d_s, d_t)`` (beta 1, mean over all
    ``B²`` entries); angles from ``F.normalize``-d difference vectors, ``L_angle =
    smooth_l1(a_s, a_t)`` (mean over all ``B³`` entries). Embedding sizes may differ.

    Args:
        student_embedding: ``(B, ...)`` student embedding, ``B >= 2``.
        teacher_embedding: ``(B, ...)`` teacher embedding (detached).
        distance_weight: weight of the distance term (25 in the reference).
        angle_weight: weight of the angle term (50 in the reference).

    Returns:
        0-d loss tensor.
    """
    fn = "rkd_loss"
    s, t = _pair(
        fn,
        student_embedding,
        teacher_embedding,
        ("student_embedding", "teacher_embedding"),
        min_ndim=2,
        min_batch=2,
    )
    w_d = _check_number(fn, "distance_weight", distance_weight)
    w_a = _check_number(fn, "angle_weight", angle_weight)
    s = s.reshape(s.shape[0], -1)
    t = t.reshape(t.shape[0], -1)

    d_t = _pairwise_distances(t)
    d_t = d_t / d_t[d_t > 0].mean()
    d_s = _pairwise_distances(s)
    d_s = d_s / d_s[d_s > 0].mean()
    loss_d = F.smooth_l1_loss(d_s, d_t)

    loss_a = F.smooth_l1_loss(_angles(s), _angles(t))
    return w_d * loss_d + w_a * loss_a


def _pkt_probabilities(e: torch.Tensor) -> torch.Tensor:
    """PKT's conditional probabilities: cosine similarities mapped to [0, 1], rows summing to 1."""
    unit = e / (e.pow(2).sum(dim=1, keepdim=True).sqrt() + PKT_EPS)
    unit = torch.where(torch.isnan(unit), torch.zeros_like(unit), unit)
    sim = (unit @ unit.t() + 1.0) / 2.0
    return sim / sim.sum(dim=1, keepdim=True)


def pkt_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """Probabilistic knowledge transfer.

    Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge
    Transfer"; RepDistiller ``PKT.cosine_similarity_loss``: rows divided by ``(‖e‖ + 1e-7)`` (NaN
    set to 0), cosine similarity matrix mapped to ``[0, 1]`` by ``(c + 1) / 2`` and normalised
    row-wise into probabilities; loss ``mean(P_t · log((P_t + 1e-7) / (P_s + 1e-7)))`` over all
    ``B²`` entries. Embeddings are flattened per sample; sizes may differ.

    Args:
        student_embedding: ``(B, ...)`` student embedding.
        teacher_embedding: ``(B, ...)`` teacher embedding (detached).

    Returns:
        0-d loss tensor.
    """
    fn = "pkt_loss"
    s, t = _pair(
        fn, student_embedding, teacher_embedding, ("student_embedding", "teacher_embedding"), min_ndim=2
    )
    p_s = _pkt_probabilities(s.reshape(s.shape[0], -1))
    p_t = _pkt_probabilities(t.reshape(t.shape[0], -1))
    return (p_t * torch.log((p_t + PKT_EPS) / (p_s + PKT_EPS))).mean()


def nst_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Neuron selectivity transfer for one layer pair (squared MMD with a degree-2 polynomial kernel).

    Huang & Wang 2017, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer";
    RepDistiller ``NSTLoss.nst_loss``: larger map average-pooled to the smaller one's spatial
    size (as in :func:`at_loss`); each channel's spatial map L2-normalised (``F.normalize`` on
    the flattened spatial dimension); ``k(a, b) = (a · b)²``; loss ``mean k(t, t) + mean k(s, s)
    - 2 mean k(s, t)`` over the channel pairs of every sample (the "full" loss). Channel counts
    may differ.

    Args:
        student_feature: ``(B, C_s, H_s, W_s)`` student feature map.
        teacher_feature: ``(B, C_t, H_t, W_t)`` teacher feature map (detached).

    Returns:
        0-d loss tensor.
    """
    fn = "nst_loss"
    s, t = _pair(fn, student_feature, teacher_feature, ("student_feature", "teacher_feature"), ndim=4)
    s, t = _match_spatial(fn, s, t)
    s = F.normalize(s.reshape(s.shape[0], s.shape[1], -1), dim=2)
    t = F.normalize(t.reshape(t.shape[0], t.shape[1], -1), dim=2)

    def kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()

    return kernel_mean(t, t) + kernel_mean(s, s) - 2.0 * kernel_mean(s, t)


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets hint loss: mean squared error between the (connected) student and teacher features.

    Romero et al. 2015, "FitNets: Hints for Thin Deep Nets"; RepDistiller ``HintLoss``
    (``nn.MSELoss()``, mean over every element). The student feature is the connector's output,
    so both shapes must be equal.

    Args:
        student_feature: student feature after the connector, any shape ``(B, ...)``.
        teacher_feature: teacher feature of the same shape (detached).

    Returns:
        0-d loss tensor.
    """
    s, t = _pair(
        "hint_loss",
        student_feature,
        teacher_feature,
        ("student_feature", "teacher_feature"),
        min_ndim=1,
        same_shape=True,
    )
    return F.mse_loss(s, t)


# ---- class activation maps ----------------------------------------------------------------------


def class_activation_maps(feature: torch.Tensor, classifier_weight: torch.Tensor) -> torch.Tensor:
    """Class activation maps ``CAM[b, k] = Σ_c W[k, c] · f[b, c]``.

    Zhou et al. 2016, "Learning Deep Features for Discriminative Localization": the last
    convolutional feature map weighted by the linear classifier that follows global average
    pooling (no bias). By linearity, the spatial mean of ``CAM[b, k]`` is the bias-free logit of
    class ``k``. Gradients flow to both arguments.

    Args:
        feature: ``(B, C, H, W)`` feature map before global average pooling.
        classifier_weight: ``(K, C)`` weight of the linear classifier (cast to the feature dtype).

    Returns:
        ``(B, K, H, W)`` class activation maps.
    """
    fn = "class_activation_maps"
    f = _check_tensor(fn, "feature", feature, ndim=4)
    w = _check_tensor(fn, "classifier_weight", classifier_weight, ndim=2)
    if w.shape[1] != f.shape[1]:
        raise ValueError(
            f"{fn}: classifier_weight has {w.shape[1]} input features but feature has {f.shape[1]} channels; "
            f"expected equal"
        )
    if w.device != f.device:
        raise ValueError(f"{fn}: classifier_weight is on {w.device} but feature is on {f.device}")
    return torch.einsum("bchw,kc->bkhw", f, w.to(dtype=f.dtype))


def cat_kd_loss(
    student_cams: torch.Tensor,
    teacher_cams: torch.Tensor,
    resolution: int = 2,
    normalize: bool = False,
) -> torch.Tensor:
    """Class activation transfer.

    Guo et al. 2023, "Class Attention Transfer Based Knowledge Distillation"; the authors'
    ``CAT_loss``: both CAM stacks ``adaptive_avg_pool2d``-ed to ``resolution × resolution``;
    optionally each class map L2-normalised over its spatial positions (``F.normalize`` over
    dims 2 and 3, eps 1e-12); loss ``F.mse_loss`` (mean over every element). The student and
    teacher must have the same number of classes; their spatial sizes may differ.

    Args:
        student_cams: ``(B, K, H_s, W_s)`` student CAMs (see :func:`class_activation_maps`).
        teacher_cams: ``(B, K, H_t, W_t)`` teacher CAMs (detached).
        resolution: side of the pooled maps, a positive integer (2 in the paper's CIFAR setup).
        normalize: L2-normalise each pooled map before the MSE (the reference ``IF_NORMALIZE``).

    Returns:
        0-d loss tensor.
    """
    fn = "cat_kd_loss"
    s, t = _pair(fn, student_cams, teacher_cams, ("student_cams", "teacher_cams"), ndim=4)
    if s.shape[1] != t.shape[1]:
        raise ValueError(
            f"{fn}: student_cams has {s.shape[1]} classes but teacher_cams has {t.shape[1]}; expected equal"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"{fn}: resolution must be a positive integer, got {resolution!r}")
    if not isinstance(normalize, bool):
        raise ValueError(f"{fn}: normalize must be True or False, got {normalize!r}")
    s = F.adaptive_avg_pool2d(s, (resolution, resolution))
    t = F.adaptive_avg_pool2d(t, (resolution, resolution))
    if normalize:
        s = s / s.flatten(2).norm(dim=2).clamp_min(1e-12)[:, :, None, None]
        t = t / t.flatten(2).norm(dim=2).clamp_min(1e-12)[:, :, None, None]
    return F.mse_loss(s, t)
