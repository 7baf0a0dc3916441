"""Relative difficulty: samples the teacher finds easy and the student finds hard.

The idea behind Relative Difficulty Distillation (Liang, Sun, Du, Chen & Huang 2024, "Relative
Difficulty Distillation for Semantic Segmentation") is that the useful signal lies where the two
networks disagree about how hard a sample is. Here, per sample and per model:

* ``loss = −log p(y | x)`` (cross-entropy with the true label, at T = 1);
* ``difficulty = 1 − p(y | x)`` (0: certain and right, 1: no mass on the true class);
* ``relative = student difficulty − teacher difficulty`` in ``[−1, 1]``: positive where the
  student struggles more than the teacher.

The "teacher easy, student hard" set holds the samples with ``teacher difficulty <= teacher_easy``
and ``student difficulty >= student_hard``, ranked by ``relative`` (descending; ties, to 12
decimals: larger student loss first, then smaller index).
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
    check_label_range,
    check_labels,
    check_logits,
    check_model,
    check_names,
    check_positive_int,
    log_softmax_t,
    models_logits,
    nanmean_by_class,
)
from workbench.analysis._result import AnalysisResult
from workbench.runtime import CancelToken, ProgressFn

__all__ = ["DifficultyResult", "difficulty_from_logits", "difficulty_report"]


@dataclass
class DifficultyResult(AnalysisResult):
    """Per-sample difficulty of both models, the joint scatter data, and the gap set.

    Per-sample arrays have length ``n_samples`` (the scatter is ``teacher_difficulty`` against
    ``student_difficulty``, coloured by ``labels``). ``order`` ranks every sample by ``relative``
    (descending); ``selected`` is the ranked "teacher easy, student hard" subset. Per-class arrays
    have length ``num_classes`` (NaN for absent classes). ``quadrants[i, j]`` counts samples with
    teacher ``[easy, not easy][i]`` and student ``[not hard, hard][j]`` under the two thresholds.
    ``difficulty_spearman`` is the rank correlation of the two models' difficulties.
    """

    n_samples: int
    num_classes: int
    labels: np.ndarray
    teacher_pred: np.ndarray
    student_pred: np.ndarray
    teacher_loss: np.ndarray
    student_loss: np.ndarray
    teacher_difficulty: np.ndarray
    student_difficulty: np.ndarray
    relative: np.ndarray
    order: np.ndarray
    selected: np.ndarray
    teacher_easy: float
    student_hard: float
    quadrants: np.ndarray
    difficulty_spearman: float
    class_counts: np.ndarray
    per_class_teacher_loss: np.ndarray
    per_class_student_loss: np.ndarray
    per_class_teacher_difficulty: np.ndarray
    per_class_student_difficulty: np.ndarray
    per_class_relative: np.ndarray
    per_class_selected: np.ndarray
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


def _threshold(value: object, name: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnalysisError(f"{name}: expected a number in [0, 1], got {value!r}") from None
    if not 0.0 <= out <= 1.0:
        raise AnalysisError(f"{name}: expected a number in [0, 1], got {value!r}")
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def _rank_and_split(
    loss_s: np.ndarray,
    diff_t: np.ndarray,
    diff_s: np.ndarray,
    relative: np.ndarray,
    easy: float,
    hard: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, mask, quadrants)``: the samples ranked by relative difficulty (then student loss,
    then index), the teacher-easy & student-hard mask, and the 2x2 counts
    ``[[easy & not hard, easy & hard], [not easy & not hard, not easy & hard]]``."""
    index = np.arange(len(loss_s))
    # relative scores equal to 12 decimals count as ties (floating-point noise is no ranking)
    order = np.lexsort((index, -loss_s, -np.round(relative, 12)))
    t_easy, s_hard = diff_t <= easy, diff_s >= hard
    mask = t_easy & s_hard
    quadrants = np.array(
        [
            [(t_easy & ~s_hard).sum(), (t_easy & s_hard).sum()],
            [(~t_easy & ~s_hard).sum(), (~t_easy & s_hard).sum()],
        ],
        dtype=np.int64,
    )
    return order, mask, quadrants


def difficulty_from_logits(
    teacher_logits: np.ndarray | torch.Tensor,
    student_logits: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    teacher_easy: float = 0.2,
    student_hard: float = 0.5,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
) -> DifficultyResult:
    """Per-sample loss and difficulty of both models and the ranked teacher-easy/student-hard set.

    Args:
        teacher_logits, student_logits: ``(N, K)`` logits on the same samples (float64 inside).
        labels: ``(N,)`` true classes in ``[0, K)``.
        teacher_easy: a sample is easy for the teacher when ``1 − p_T(y) <= teacher_easy`` (default
            0.2: the teacher puts at least 80 % on the true class).
        student_hard: a sample is hard for the student when ``1 − p_S(y) >= student_hard`` (default
            0.5: at most half of the student's mass on the true class).
        names: display names of the two models. class_names: display names of the ``K`` classes.

    Returns:
        :class:`DifficultyResult`.
    """
    t = check_logits(teacher_logits, "teacher_logits")
    s = check_logits(student_logits, "student_logits", n=t.shape[0], k=t.shape[1])
    y_t = check_labels(labels, t.shape[0]).cpu()
    n, k = t.shape
    check_label_range(y_t, k)
    easy = _threshold(teacher_easy, "teacher_easy")
    hard = _threshold(student_hard, "student_hard")
    pair = check_names(names)
    classes = check_class_names(class_names, k)
    y = y_t.numpy()
    rows = torch.arange(n)

    log_pt, log_ps = log_softmax_t(t), log_softmax_t(s)
    loss_t = (-log_pt[rows, y_t]).numpy()
    loss_s = (-log_ps[rows, y_t]).numpy()
    diff_t = -np.expm1(-loss_t)
    diff_s = -np.expm1(-loss_s)
    relative = diff_s - diff_t

    order, mask, quadrants = _rank_and_split(loss_s, diff_t, diff_s, relative, easy, hard)
    selected = order[mask[order]]
    return DifficultyResult(
        n_samples=n,
        num_classes=k,
        labels=y,
        teacher_pred=t.argmax(1).numpy(),
        student_pred=s.argmax(1).numpy(),
        teacher_loss=loss_t,
        student_loss=loss_s,
        teacher_difficulty=diff_t,
        student_difficulty=diff_s,
        relative=relative,
        order=order,
        selected=selected,
        teacher_easy=easy,
        student_hard=hard,
        quadrants=quadrants,
        difficulty_spearman=_spearman(diff_t, diff_s) if n > 1 else float("nan"),
        class_counts=np.bincount(y, minlength=k).astype(np.int64),
        per_class_teacher_loss=nanmean_by_class(loss_t, y, k),
        per_class_student_loss=nanmean_by_class(loss_s, y, k),
        per_class_teacher_difficulty=nanmean_by_class(diff_t, y, k),
        per_class_student_difficulty=nanmean_by_class(diff_s, y, k),
        per_class_relative=nanmean_by_class(relative, y, k),
        per_class_selected=np.bincount(y[mask], minlength=k).astype(np.int64),
        names=pair,
        class_names=classes,
        params={"teacher_easy": easy, "student_hard": hard},
    )


def difficulty_report(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_easy: float = 0.2,
    student_hard: float = 0.5,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> DifficultyResult:
    """Run both models (eval-mode working copies, batched, ``inference_mode``) and build
    :func:`difficulty_from_logits`.

    Args:
        teacher, student: the two networks; never changed (the analysis runs on copies).
        images: normalized inputs ``(N, C, H, W)``; labels: int64 ``(N,)``.
        teacher_easy, student_hard, names, class_names: as in :func:`difficulty_from_logits`.
        device: where the models run; default: each model's own. batch_size: evaluation batch size.
        progress: ``progress(done, total, message)`` once per batch of each model.
        cancel: a :class:`workbench.runtime.CancelToken`; checked before every batch.

    Returns:
        :class:`DifficultyResult` (``params`` also records ``batch_size`` and ``n_samples``).
    """
    check_model(teacher, "teacher")
    check_model(student, "student")
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    easy = _threshold(teacher_easy, "teacher_easy")
    hard = _threshold(student_hard, "student_hard")
    pair = check_names(names)
    logits = models_logits(
        ((pair[0], teacher), (pair[1], student)), images, bs, device, progress, cancel, "difficulty"
    )
    result = difficulty_from_logits(
        logits[0], logits[1], y, teacher_easy=easy, student_hard=hard, names=pair, class_names=class_names
    )
    result.params.update({"batch_size": bs, "n_samples": len(images)})
    return result
