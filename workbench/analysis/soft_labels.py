"""A teacher's soft labels at a temperature, and the KD loss of a student against them.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network": the teacher's
"dark knowledge" is in the relative probabilities of the wrong classes, which a temperature
``T > 1`` brings out (``softmax(z / T)``); the student is trained on
``T² · KL(softmax(z_t / T) || softmax(z_s / T))``, the kernel
:func:`workbench.distill.functional.kd_loss_per_sample`, so the number shown here is the number the
``kd`` method trains on.

Two calls: :func:`soft_labels` runs the models once on the chosen samples (the one analysis shape),
and :func:`soft_labels_from_logits` recomputes everything for another temperature from the logits
it kept, without a forward pass (what a temperature slider calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    check_class_names,
    check_images,
    check_labels,
    check_logits,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    models_logits,
)
from workbench.analysis._result import AnalysisResult
from workbench.runtime import CancelToken, ProgressFn


@dataclass
class SoftLabelResult(AnalysisResult):
    """Soft labels of ``m`` chosen samples at one temperature.

    ``samples``: positions of the chosen samples in the images given; ``labels``: their labels
    (``None`` when not given); ``teacher_logits`` / ``student_logits``: ``(m, K)`` float64 (the
    student's ``None`` without a student); ``teacher_probs`` / ``student_probs``: ``softmax(z / T)``;
    ``entropy``: ``(m,)`` entropy of the teacher's soft labels in nats; ``kd_per_sample``: ``(m,)``
    ``T² · KL(p_t || p_s)``; ``kd_loss``: their mean (Hinton's KD loss on these samples, the
    ``batchmean`` reduction of :func:`workbench.distill.functional.kd_loss`).
    """

    temperature: float
    samples: np.ndarray
    labels: np.ndarray | None
    teacher_logits: np.ndarray
    teacher_probs: np.ndarray
    entropy: np.ndarray
    student_logits: np.ndarray | None = None
    student_probs: np.ndarray | None = None
    kd_per_sample: np.ndarray | None = None
    kd_loss: float | None = None
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    logp = torch.log(probs.clamp_min(1e-300))
    return -(torch.where(probs > 0, probs * logp, torch.zeros_like(probs))).sum(-1)


def soft_labels_from_logits(
    teacher_logits: torch.Tensor | np.ndarray,
    student_logits: torch.Tensor | np.ndarray | None = None,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    temperature: float = 4.0,
    samples: Sequence[int] | np.ndarray | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
) -> SoftLabelResult:
    """Soft labels, their entropy and the KD loss at ``temperature`` from logits already computed.

    Args:
        teacher_logits: ``(m, K)`` teacher logits of the chosen samples.
        student_logits: ``(m, K)`` student logits of the same samples, or ``None`` (no KD loss).
        labels: ``(m,)`` labels, or ``None``.
        temperature: ``T > 0``.
        samples: the ``m`` positions these rows came from (default ``0..m-1``), recorded as is.
        names: the two models' names.
        class_names: display names of the ``K`` classes.

    Returns:
        :class:`SoftLabelResult`; ``kd_loss = mean_i T² · KL(softmax(t_i/T) || softmax(s_i/T))``.

    Raises:
        AnalysisError: a non-positive temperature or mismatched shapes (one line naming the argument).
    """
    temp = check_positive_float(temperature, "temperature")
    t = check_logits(teacher_logits, "teacher_logits").detach().to("cpu", torch.float64)
    m, k = t.shape
    if k < 2:
        raise AnalysisError(f"teacher_logits: expected at least 2 classes, got shape {tuple(t.shape)}")
    s = None
    if student_logits is not None:
        s = check_logits(student_logits, "student_logits", n=m, k=k).detach().to("cpu", torch.float64)
    y = None if labels is None else check_labels(labels, m).cpu().numpy()
    idx = np.arange(m) if samples is None else np.asarray(samples, dtype=np.int64).reshape(-1)
    if idx.shape[0] != m:
        raise AnalysisError(f"samples: expected {m} positions (one per logit row), got {idx.shape[0]}")
    pair = check_names(names)
    classes = check_class_names(class_names, k)
    p_t = torch.softmax(t / temp, dim=-1)
    out = SoftLabelResult(
        temperature=temp,
        samples=idx,
        labels=y,
        teacher_logits=t.numpy(),
        teacher_probs=p_t.numpy(),
        entropy=_entropy(p_t).numpy(),
        names=pair,
        class_names=classes,
        params={"temperature": temp, "n_samples": m},
    )
    if s is not None:
        from workbench.distill.functional import kd_loss_per_sample

        per = kd_loss_per_sample(s, t, temperature=temp)
        out.student_logits = s.numpy()
        out.student_probs = torch.softmax(s / temp, dim=-1).numpy()
        out.kd_per_sample = per.numpy()
        out.kd_loss = float(per.mean())
    return out


def soft_labels(
    teacher: nn.Module,
    student: nn.Module | None,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    temperature: float = 4.0,
    samples: Sequence[int] | np.ndarray | int | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SoftLabelResult:
    """The teacher's soft labels of chosen samples at ``temperature``, with the student's KD loss.

    Runs each model once (an eval working copy, under ``inference_mode``) on the chosen samples,
    then :func:`soft_labels_from_logits`. The caller's models are never changed.

    Args:
        teacher: the teacher network.
        student: the student network, or ``None`` (soft labels only, no KD loss).
        images: ``(N, C, H, W)`` normalized images.
        labels: ``(N,)`` labels, or ``None``.
        temperature: ``T > 0``.
        samples: positions in ``images`` to examine: a sequence, one int, or ``None`` for all.
        names, class_names, device, batch_size: as in every analysis.
        progress: ``progress(done, total, message)``, one unit per batch per model.
        cancel: a :class:`workbench.runtime.CancelToken`, checked before every batch.

    Returns:
        :class:`SoftLabelResult` (``samples`` holds the chosen positions).

    Raises:
        AnalysisError: a bad argument (one line naming it), e.g. a sample out of range.
        Cancelled: stopped through ``cancel``.
    """
    check_model(teacher, "teacher")
    check_model(student, "student", optional=True)
    images = check_images(images)
    n = len(images)
    y = None if labels is None else check_labels(labels, n)
    temp = check_positive_float(temperature, "temperature")
    bs = check_positive_int(batch_size, "batch_size")
    pair = check_names(names)
    if samples is None:
        idx = np.arange(n)
    else:
        try:
            idx = np.atleast_1d(np.asarray(samples)).reshape(-1)
        except (TypeError, ValueError):
            raise AnalysisError(f"samples: expected sample positions, got {samples!r}") from None
        if idx.size == 0 or idx.dtype.kind not in "iu":
            raise AnalysisError(f"samples: expected one or more integer positions, got {samples!r}")
        if (idx < 0).any() or (idx >= n).any():
            raise AnalysisError(f"samples: positions must lie in [0, {n - 1}], got {idx.tolist()[:8]}")
    picked = images[torch.as_tensor(idx, dtype=torch.long)]
    models = [(pair[0], teacher)] + ([(pair[1], student)] if student is not None else [])
    logits = models_logits(models, picked, bs, device, progress, cancel, "soft labels")
    result = soft_labels_from_logits(
        logits[0],
        logits[1] if len(logits) > 1 else None,
        None if y is None else y[torch.as_tensor(idx, dtype=torch.long)],
        temperature=temp,
        samples=idx,
        names=pair,
        class_names=class_names,
    )
    result.params.update({"batch_size": bs})
    return result


__all__ = ["SoftLabelResult", "soft_labels", "soft_labels_from_logits"]
