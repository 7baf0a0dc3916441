"""Teacher–student agreement: where the student follows the teacher, where it departs, and how.

One code path: :func:`agreement_report` runs both models batched and hands the logits to
:func:`agreement_from_logits`, which holds every computation and is usable on cached logits.

* Divergences at a temperature ``T`` use ``softmax(z / T)``: ``KL(teacher || student)`` and the
  Jensen–Shannon divergence (natural log, bounded by ``ln 2``), without the ``T²`` factor of the
  distillation loss.
* Calibration follows Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
  Networks": confidence is the top-1 probability, ``M`` equal-width bins ``((m-1)/M, m/M]``, and
  ``ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|``.
* "Dark knowledge" kept or lost: per sample, the Spearman rank correlation between the teacher's
  and the student's logits over the non-target classes (the true class removed), i.e. whether the
  student ranks the wrong classes as the teacher does (Hinton et al. 2015's relative probabilities
  of incorrect answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    check_class_names,
    check_images,
    check_label_range,
    check_labels,
    check_logits,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    js_rows,
    kl_rows,
    log_softmax_t,
    models_logits,
    nanmean_by_class,
)
from workbench.analysis._result import AnalysisResult
from workbench.metrics import calibration_bins, expected_calibration_error
from workbench.runtime import CancelToken, ProgressFn

__all__ = [
    "GALLERY_CATEGORIES",
    "AgreementResult",
    "DisagreementGallery",
    "ReliabilityDiagram",
    "agreement_from_logits",
    "agreement_report",
    "nontarget_rank_correlation",
    "reliability_diagram",
    "soft_labels_across_temperatures",
]

#: disagreement gallery groups, in display order (``DisagreementGallery.category`` indexes this)
GALLERY_CATEGORIES = ("teacher_right_student_wrong", "both_wrong_differently", "student_right_teacher_wrong")


# ---- calibration ----------------------------------------------------------------------------------
@dataclass
class ReliabilityDiagram(AnalysisResult):
    """Equal-width confidence bins (Guo et al. 2017): per bin mean confidence, accuracy and count.

    Bin ``m`` covers ``(bin_edges[m], bin_edges[m+1]]``; ``confidence``/``accuracy`` are NaN for
    empty bins. ``ece`` is the expected calibration error over these bins.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    ece: float
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _check_probs(probs: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().numpy()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise AnalysisError(f"probs: expected probabilities of shape (N, K), K >= 2, got {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1 or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise AnalysisError("probs: expected rows of probabilities in [0, 1] that sum to 1 (softmax outputs)")
    y = check_labels(labels, p.shape[0]).cpu()
    check_label_range(y, p.shape[1])
    return p, y.numpy()


def reliability_diagram(
    probs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, n_bins: int = 15
) -> ReliabilityDiagram:
    """Reliability-diagram bins and ECE of predicted probabilities (Guo et al. 2017, section 2).

    Args:
        probs: ``(N, K)`` class probabilities (rows sum to 1).
        labels: ``(N,)`` true classes.
        n_bins: number of equal-width confidence bins on ``(0, 1]``.

    Returns:
        :class:`ReliabilityDiagram`.
    """
    p, y = _check_probs(probs, labels)
    m = check_positive_int(n_bins, "n_bins")
    edges = np.linspace(0.0, 1.0, m + 1)
    count_t, conf_t, acc_t = calibration_bins(torch.from_numpy(p), torch.from_numpy(y), m)
    count, conf_sum, acc_sum = count_t.numpy(), conf_t.numpy(), acc_t.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    ece = expected_calibration_error(p, y, m)
    return ReliabilityDiagram(
        edges, mean_conf, mean_acc, count.astype(np.int64), ece, params={"n_bins": m}
    )


# ---- pure functions on logits ---------------------------------------------------------------------
def soft_labels_across_temperatures(
    logits_row: np.ndarray | torch.Tensor, temperatures: np.ndarray | torch.Tensor | list[float]
) -> np.ndarray:
    """``softmax(z / T)`` of one logit vector for each temperature (Hinton et al. 2015, eq. 1).

    Args:
        logits_row: ``(K,)`` logits of one sample.
        temperatures: positive temperatures ``T_1..T_m``.

    Returns:
        float64 array ``(m, K)``; each row sums to 1 and tends to uniform as ``T`` grows.
    """
    if isinstance(logits_row, torch.Tensor):
        logits_row = logits_row.detach().cpu().numpy()
    z = np.asarray(logits_row, dtype=np.float64)
    if z.ndim != 1 or z.shape[0] < 2 or not np.isfinite(z).all():
        raise AnalysisError(f"logits_row: expected finite logits of shape (K,), K >= 2, got shape {z.shape}")
    if isinstance(temperatures, torch.Tensor):
        temperatures = temperatures.detach().cpu().numpy()
    t = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all() or (t <= 0).any():
        raise AnalysisError(f"temperatures: expected positive finite temperatures, got {temperatures!r}")
    logs = torch.log_softmax(torch.from_numpy(z[None, :] / t[:, None]), dim=1)
    return logs.exp().numpy()


def nontarget_rank_correlation(
    teacher_logits: np.ndarray | torch.Tensor,
    student_logits: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
) -> np.ndarray:
    """Per-sample Spearman correlation of teacher and student logits over the non-target classes.

    The true class is removed from each row, the remaining ``K-1`` logits are ranked (ties get
    their average rank) and the Pearson correlation of the two rank vectors is taken. It is 1 when
    the student orders the wrong classes as the teacher does (e.g. student logits a strictly
    increasing function of the teacher's), and NaN when a row is constant or ``K < 3``.

    Returns:
        float64 array ``(N,)``.
    """
    t = check_logits(teacher_logits, "teacher_logits")
    s = check_logits(student_logits, "student_logits", n=t.shape[0], k=t.shape[1])
    y = check_labels(labels, t.shape[0]).cpu()
    check_label_range(y, t.shape[1])
    n, k = t.shape
    if k < 3:
        return np.full(n, np.nan)
    keep = torch.ones(n, k, dtype=torch.bool)
    keep[torch.arange(n), y] = False
    rt = rankdata(t[keep].reshape(n, k - 1).numpy(), axis=1)
    rs = rankdata(s[keep].reshape(n, k - 1).numpy(), axis=1)
    rt -= rt.mean(1, keepdims=True)
    rs -= rs.mean(1, keepdims=True)
    den = np.sqrt((rt * rt).sum(1) * (rs * rs).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rt * rs).sum(1) / np.where(den > 0, den, 1.0), np.nan)


@dataclass
class DisagreementGallery(AnalysisResult):
    """Samples on which teacher and student predict different classes, in display order.

    Groups (``category`` indexes :data:`GALLERY_CATEGORIES`): teacher right & student wrong, then
    both wrong with different predictions, then student right & teacher wrong. Within a group the
    most confident mistake comes first (the wrong model's confidence; the larger of the two when
    both are wrong), ties broken by sample index. Confidences are top-1 probabilities at T = 1.
    """

    indices: np.ndarray
    category: np.ndarray
    labels: np.ndarray
    teacher_pred: np.ndarray
    student_pred: np.ndarray
    teacher_confidence: np.ndarray
    student_confidence: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def counts(self) -> dict[str, int]:
        """Number of samples in each group, by name."""
        return {name: int((self.category == i).sum()) for i, name in enumerate(GALLERY_CATEGORIES)}


def _gallery(
    y: np.ndarray, pt: np.ndarray, ps: np.ndarray, ct: np.ndarray, cs: np.ndarray
) -> DisagreementGallery:
    t_ok, s_ok = pt == y, ps == y
    cat = np.full(len(y), -1, dtype=np.int64)
    cat[t_ok & ~s_ok] = 0
    cat[~t_ok & ~s_ok & (pt != ps)] = 1
    cat[~t_ok & s_ok] = 2
    wrong_conf = np.select([cat == 0, cat == 1, cat == 2], [cs, np.maximum(ct, cs), ct], default=0.0)
    idx = np.flatnonzero(cat >= 0)
    order = idx[np.lexsort((idx, -wrong_conf[idx], cat[idx]))]
    return DisagreementGallery(
        indices=order,
        category=cat[order],
        labels=y[order],
        teacher_pred=pt[order],
        student_pred=ps[order],
        teacher_confidence=ct[order],
        student_confidence=cs[order],
    )


# ---- the report ------------------------------------------------------------------------------------
@dataclass
class AgreementResult(AnalysisResult):
    """Everything about how a student's outputs relate to its teacher's on one set of samples.

    Per-sample arrays have length ``n_samples``; per-class arrays length ``num_classes`` (NaN for
    classes without samples). Confusion matrices count ``[true class, predicted class]``;
    ``confusion_diff = confusion_student − confusion_teacher``. Probabilities and calibration are at
    T = 1; ``kl``/``js`` are at ``temperature``.
    """

    n_samples: int
    num_classes: int
    temperature: float
    labels: np.ndarray
    teacher_logits: np.ndarray
    student_logits: np.ndarray
    teacher_probs: np.ndarray
    student_probs: np.ndarray
    teacher_pred: np.ndarray
    student_pred: np.ndarray
    agree: np.ndarray
    agreement: float
    teacher_accuracy: float
    student_accuracy: float
    kl_per_sample: np.ndarray
    kl: float
    js_per_sample: np.ndarray
    js: float
    class_counts: np.ndarray
    per_class_teacher_accuracy: np.ndarray
    per_class_student_accuracy: np.ndarray
    per_class_agreement: np.ndarray
    confusion_teacher: np.ndarray
    confusion_student: np.ndarray
    confusion_diff: np.ndarray
    teacher_calibration: ReliabilityDiagram
    student_calibration: ReliabilityDiagram
    rank_correlation: np.ndarray
    rank_correlation_mean: float
    per_class_rank_correlation: np.ndarray
    gallery: DisagreementGallery
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher_name(self) -> str:
        """Display name of the teacher (``names[0]``)."""
        return self.names[0]

    @property
    def student_name(self) -> str:
        """Display name of the student (``names[1]``)."""
        return self.names[1]


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.int64)


def _divergences(t: torch.Tensor, s: torch.Tensor, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``KL(p_T || p_S)`` and Jensen–Shannon divergence of the logits ``t``, ``s`` at
    ``temperature`` (clamped at 0 against rounding)."""
    log_pt_t, log_ps_t = log_softmax_t(t, temperature), log_softmax_t(s, temperature)
    kl = kl_rows(log_pt_t, log_ps_t).clamp_min(0.0).numpy()
    js = js_rows(log_pt_t, log_ps_t).clamp_min(0.0).numpy()
    return kl, js


def agreement_from_logits(
    teacher_logits: np.ndarray | torch.Tensor,
    student_logits: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    temperature: float = 1.0,
    n_bins: int = 15,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
) -> AgreementResult:
    """Agreement, divergences, per-class views, confusion, calibration and the disagreement gallery.

    Args:
        teacher_logits, student_logits: ``(N, K)`` logits on the same samples (float64 inside).
        labels: ``(N,)`` true classes in ``[0, K)``.
        temperature: ``T`` of the KL / JS divergences (``softmax(z / T)``, no ``T²`` factor).
        n_bins: calibration bins (Guo et al. 2017).
        names: display names of the two models. class_names: display names of the ``K`` classes.

    Returns:
        :class:`AgreementResult`.
    """
    t = check_logits(teacher_logits, "teacher_logits")
    s = check_logits(student_logits, "student_logits", n=t.shape[0], k=t.shape[1])
    y_t = check_labels(labels, t.shape[0]).cpu()
    n, k = t.shape
    check_label_range(y_t, k)
    temp = check_positive_float(temperature, "temperature")
    bins = check_positive_int(n_bins, "n_bins")
    pair = check_names(names)
    classes = check_class_names(class_names, k)
    y = y_t.numpy()

    log_pt, log_ps = log_softmax_t(t, 1.0), log_softmax_t(s, 1.0)
    pt_probs, ps_probs = log_pt.exp().numpy(), log_ps.exp().numpy()
    pt, ps = t.argmax(1).numpy(), s.argmax(1).numpy()
    ct, cs = pt_probs.max(1), ps_probs.max(1)
    agree = pt == ps
    t_ok = (pt == y).astype(np.float64)
    s_ok = (ps == y).astype(np.float64)

    kl, js = _divergences(t, s, temp)
    conf_t, conf_s = _confusion(y, pt, k), _confusion(y, ps, k)
    rank = nontarget_rank_correlation(t, s, y_t)
    finite = rank[~np.isnan(rank)]
    return AgreementResult(
        n_samples=n,
        num_classes=k,
        temperature=temp,
        labels=y,
        teacher_logits=t.numpy(),
        student_logits=s.numpy(),
        teacher_probs=pt_probs,
        student_probs=ps_probs,
        teacher_pred=pt,
        student_pred=ps,
        agree=agree,
        agreement=float(agree.mean()),
        teacher_accuracy=float(t_ok.mean()),
        student_accuracy=float(s_ok.mean()),
        kl_per_sample=kl,
        kl=float(kl.mean()),
        js_per_sample=js,
        js=float(js.mean()),
        class_counts=np.bincount(y, minlength=k).astype(np.int64),
        per_class_teacher_accuracy=nanmean_by_class(t_ok, y, k),
        per_class_student_accuracy=nanmean_by_class(s_ok, y, k),
        per_class_agreement=nanmean_by_class(agree.astype(np.float64), y, k),
        confusion_teacher=conf_t,
        confusion_student=conf_s,
        confusion_diff=conf_s - conf_t,
        teacher_calibration=reliability_diagram(pt_probs, y, bins),
        student_calibration=reliability_diagram(ps_probs, y, bins),
        rank_correlation=rank,
        rank_correlation_mean=float(finite.mean()) if finite.size else float("nan"),
        per_class_rank_correlation=nanmean_by_class(rank, y, k),
        gallery=_gallery(y, pt, ps, ct, cs),
        names=pair,
        class_names=classes,
        params={"temperature": temp, "n_bins": bins},
    )


def agreement_report(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    n_bins: int = 15,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> AgreementResult:
    """Run both models (eval-mode working copies, batched, ``inference_mode``) and build
    :func:`agreement_from_logits`.

    Args:
        teacher, student: the two networks; never changed (the analysis runs on copies).
        images: normalized inputs ``(N, C, H, W)``; labels: int64 ``(N,)``.
        temperature, n_bins, names, class_names: as in :func:`agreement_from_logits`.
        device: where the models run; default: each model's own. batch_size: evaluation batch size.
        progress: ``progress(done, total, message)`` once per batch of each model.
        cancel: a :class:`workbench.runtime.CancelToken`; checked before every batch.

    Returns:
        :class:`AgreementResult` (``params`` also records ``batch_size`` and ``n_samples``).
    """
    check_model(teacher, "teacher")
    check_model(student, "student")
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    temp = check_positive_float(temperature, "temperature")
    bins = check_positive_int(n_bins, "n_bins")
    pair = check_names(names)
    logits = models_logits(
        ((pair[0], teacher), (pair[1], student)), images, bs, device, progress, cancel, "agreement"
    )
    result = agreement_from_logits(
        logits[0], logits[1], y, temperature=temp, n_bins=bins, names=pair, class_names=class_names
    )
    result.params.update({"batch_size": bs, "n_samples": len(images)})
    return result
