"""Calibration and divergence on predicted probabilities: the one implementation of each.

The engine's per-epoch metrics (:mod:`workbench.train.metrics`) and the analyses
(:mod:`workbench.analysis.agreement`) both call these, so a run's recorded ECE and an analysis's
ECE of the same outputs are the same number. Nothing here imports the rest of the workbench.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def calibration_bins(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin ``(count, confidence sum, correct sum)`` over equal-width top-1 confidence bins.

    Bin ``m`` holds confidences in ``(m/M, (m+1)/M]``: a sample with confidence ``c`` goes to bin
    ``ceil(c·M) − 1`` clipped to ``[0, M−1]`` (so a confidence on an inner edge joins the lower bin,
    and 0 joins the first), computed in float64 on the inputs' device. ``probs`` is ``(N, K)``,
    ``labels`` ``(N,)``. Guo et al. 2017, "On Calibration of Modern Neural Networks", section 2.
    """
    if probs.ndim != 2 or labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"probs/labels: expected (N, K) and (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    if int(n_bins) < 1:
        raise ValueError(f"n_bins: expected an integer >= 1, got {n_bins!r}")
    p = probs.detach().to(torch.float64)
    conf, pred = p.max(1)
    correct = (pred == labels.to(pred.device)).to(torch.float64)
    which = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    count = torch.bincount(which, minlength=n_bins)
    conf_sum = torch.bincount(which, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(which, weights=correct, minlength=n_bins)
    return count, conf_sum, acc_sum


def expected_calibration_error(
    probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, n_bins: int = 15
) -> float:
    """The one ECE of the workbench: ``Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|`` over the equal-width
    confidence bins of :func:`calibration_bins` (Guo et al. 2017, eq. 3). The engine's per-epoch
    ``ece`` and the agreement analysis' reliability diagram both call it.

    Args:
        probs: ``(N, K)`` class probabilities (rows in ``[0, 1]`` summing to 1; logits are refused),
            a tensor or an array. labels: ``(N,)`` true classes in ``[0, K)``. n_bins: ``M >= 1``.

    Returns:
        ECE in ``[0, 1]``, computed in float64.

    Raises:
        ValueError: one line naming ``probs``, ``labels`` or ``n_bins`` and what was expected.
    """
    p = torch.as_tensor(probs)
    y = torch.as_tensor(labels)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probs: expected probabilities of shape (N, K), K >= 2, got {tuple(p.shape)}")
    p64 = p.detach().to(torch.float64)
    sums = p64.sum(1)
    if not bool(torch.isfinite(p64).all()) or p64.min() < 0 or p64.max() > 1 or not bool(
        torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
    ):
        raise ValueError("probs: expected rows of probabilities in [0, 1] that sum to 1 (softmax outputs)")
    if y.ndim != 1 or y.shape[0] != p.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels: expected {p.shape[0]} integer class indices, got shape {tuple(y.shape)} of {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= p.shape[1]:
        raise ValueError(f"labels: expected class indices in [0, {p.shape[1]}), got {int(y.min())}..{int(y.max())}")
    count, conf_sum, acc_sum = calibration_bins(p64, y.to(p64.device), n_bins)
    return float((acc_sum - conf_sum).abs().sum() / max(int(y.shape[0]), 1))


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(p ‖ q) = Σ_k p_k (log p_k − log q_k)`` from log-probabilities, ``(N,)`` in nats
    (``0 · log 0 = 0``)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def kl_teacher_student(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-sample ``KL(p_t ‖ p_s)`` of temperature-softened outputs, ``(N,)`` in nats."""
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    return kl_rows(log_t, log_s)


__all__ = ["calibration_bins", "expected_calibration_error", "kl_rows", "kl_teacher_student"]
