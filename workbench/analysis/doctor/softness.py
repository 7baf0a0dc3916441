"""How soft two models' outputs are at the distillation temperature: the normalized entropy of
``softmax(z / T)`` per sample (the evidence of the doctor's ``softness`` rule)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.analysis._result import AnalysisResult
from workbench.analysis.doctor.findings import DoctorError

__all__ = ["SoftnessResult", "softness_from_logits"]


@dataclass
class SoftnessResult(AnalysisResult):
    """Normalized entropies ``H(softmax(z / T)) / log K`` of both models' softened outputs, per sample.

    ``teacher_entropy`` and ``student_entropy`` have shape ``(N,)`` with values in ``[0, 1]``
    (0 = one-hot, 1 = uniform). ``class_names``: the ``K`` classes, when known. ``params``: the
    temperature and the number of classes.
    """

    temperature: float
    num_classes: int
    teacher_entropy: np.ndarray
    student_entropy: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher_mean(self) -> float:
        """Mean normalized entropy of the teacher."""
        return float(np.mean(self.teacher_entropy))

    @property
    def student_mean(self) -> float:
        """Mean normalized entropy of the student."""
        return float(np.mean(self.student_entropy))


def softness_from_logits(
    teacher_logits: np.ndarray | torch.Tensor,
    student_logits: np.ndarray | torch.Tensor,
    temperature: float,
    *,
    class_names: Sequence[str] | None = None,
) -> SoftnessResult:
    """Per-sample Shannon entropy of ``softmax(z / T)`` (Hinton et al. 2015's softened outputs), divided
    by ``log K`` so that 0 is one-hot and 1 is uniform, for both models.

    Args:
        teacher_logits, student_logits: ``(N, K)`` arrays or tensors of one shape, ``K >= 2``.
        temperature: the distillation temperature ``T > 0``.
        class_names: the ``K`` class names, kept in the result.

    Returns:
        :class:`SoftnessResult`.
    """
    t = torch.as_tensor(_host(teacher_logits))
    s = torch.as_tensor(_host(student_logits))
    if t.ndim != 2 or t.shape[1] < 2 or t.shape != s.shape:
        raise DoctorError(
            f"student_logits: expected two (N, K) arrays of one shape, K >= 2, got {tuple(t.shape)} and {tuple(s.shape)}"
        )
    temp = float(temperature)
    if not (math.isfinite(temp) and temp > 0):
        raise DoctorError(f"temperature: expected a positive number, got {temperature!r}")
    k = int(t.shape[1])
    names = None if class_names is None else [str(c) for c in class_names]
    if names is not None and len(names) != k:
        raise DoctorError(f"class_names: expected {k} names, got {len(names)}")

    def entropy(z: torch.Tensor) -> np.ndarray:
        logp = torch.log_softmax(z / temp, dim=1)
        return (-(logp.exp() * logp).sum(1) / math.log(k)).clamp(0.0, 1.0).numpy()

    return SoftnessResult(
        temp,
        k,
        entropy(t),
        entropy(s),
        class_names=names,
        params={"temperature": temp, "num_classes": k},
    )


def _host(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """``logits`` as a float64 host array (a tensor on any device is moved to the CPU first)."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().to("cpu", torch.float64).numpy()
    return np.asarray(logits, dtype=np.float64)
