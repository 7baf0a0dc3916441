"""Metrics on logits shared by the engine and the analyses: accuracy, agreement, KL, ECE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_teacher_student(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-sample KL(p_t || p_s) of temperature-softened outputs, (N,) in nats."""
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` with bins ``(k/n, (k+1)/n]`` over the
    top-1 confidence. ``probs`` is (N, K), ``labels`` (N,).
    """
    if probs.ndim != 2 or labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"expected_calibration_error: probs (N,K) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    if n_bins < 1:
        raise ValueError(f"expected_calibration_error: n_bins must be >= 1, got {n_bins}")
    conf, pred = probs.max(1)
    correct = (pred == labels).to(probs.dtype)
    bins = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    conf_sum = torch.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    return float((conf_sum - acc_sum).abs().sum() / max(len(labels), 1))


def logit_metrics(
    student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
) -> dict[str, float]:
    """Test-split metrics of one model, with teacher agreement where a teacher is given."""
    probs = F.softmax(student_logits.float(), dim=1)
    out = {
        "test_acc": float((student_logits.argmax(1) == labels).float().mean()),
        "test_loss": float(F.cross_entropy(student_logits.float(), labels)),
        "ece": expected_calibration_error(probs, labels),
    }
    if teacher_logits is not None:
        out["agreement"] = float((student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean())
        out["kl_teacher_student"] = float(
            kl_teacher_student(teacher_logits.float(), student_logits.float()).mean()
        )
    return out
