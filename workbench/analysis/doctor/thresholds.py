"""Where each of the doctor's rules starts to fire: :class:`DoctorThresholds` and
:func:`as_thresholds`.

Every threshold was read off the doctor clinic (``benchmarks/doctor_clinic.py``): real short
runs with one planted fault each, and healthy controls. ``docs/doctor.md`` lists, for every
threshold, the closest healthy and the closest faulty value it separates (its margin on both
sides).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.analysis.doctor.findings import DoctorError

__all__ = ["DoctorThresholds", "as_thresholds"]


@dataclass(frozen=True)
class DoctorThresholds:
    """Where each rule starts to fire. The values come from the doctor clinic; ``docs/doctor.md``
    gives each one's margin to the closest healthy and faulty runs measured.

    Attributes:
        gap: teacher accuracy minus student accuracy (test) at or above which the student is far
            below its teacher (a condition of the capacity, learning-rate, schedule and
            weighting rules).
        param_ratio: teacher parameters / student parameters at or above which the student is
            too small to hold the teacher's function.
        soft_low: mean normalized entropy of the teacher's softened outputs ``softmax(z / T)``
            at or below which the soft labels are nearly one-hot (temperature too low).
        soft_high: the same entropy at or above which the soft labels are nearly uniform
            (temperature too high).
        kd_weight_high: weight of the temperature-scaled distillation term at or above which it
            multiplies the step size out of range (the weights of a standard recipe sum to about 1).
        kd_share_low: share of the distillation term in the logit gradient (KD over KD + CE,
            measured on the test subset) at or below which the teacher no longer shapes the student.
        shortcut: rate at which the student predicts the class whose background the image shows
            (when that is not its class), less what its errors give by chance, minus the teacher's
            rate, at or above which the student learned the background.
        context_purity: share of training images whose context is their class's most frequent one
            below which the data pairs no context with a class (no shortcut to learn).
        hint_depth: difference of relative depth between the two layers of a feature hint at or
            above which the hint is wired between different stages.
        label_noise: teacher test accuracy minus the teacher's accuracy on the training labels at
            or above which the training labels contradict the teacher (noisy labels).
        label_noise_history: last-epoch test accuracy minus training accuracy (as logged) at or
            above which the run's own labels look noisy (used when the training data is not at hand).
        teacher_acc: teacher test accuracy below which the teacher is wrong for the data.
        lr_high: learning rate over the optimizer's usual rate (0.05 for SGD, 1e-3 for Adam) at
            or above which the rate is too high.
        lr_low: that ratio at or below which the rate is too low.
        passes_low: passes over the training data (steps x batch / train size) below which the
            run stopped too early.
        ece_gap: student ECE minus teacher ECE at or above which calibration is noted.
        dark_knowledge_min: mean non-target rank correlation below which a class lost the
            teacher's dark knowledge (a note).
        min_matched_cka: CKA of a distilled layer pair below which representations diverge (a note).
        sharpness_ratio: student / scratch top Hessian eigenvalue at or above which the minimum
            is sharper (a note).
        min_class_samples: classes with fewer evaluated samples are not judged for dark knowledge.
    """

    gap: float = 0.08
    param_ratio: float = 25.0
    soft_low: float = 0.1
    soft_high: float = 0.9
    kd_weight_high: float = 5.0
    kd_share_low: float = 0.15
    shortcut: float = 0.025
    context_purity: float = 0.3
    hint_depth: float = 0.2
    label_noise: float = 0.08
    label_noise_history: float = 0.15
    teacher_acc: float = 0.6
    lr_high: float = 8.0
    lr_low: float = 0.2
    passes_low: float = 0.9
    ece_gap: float = 0.05
    dark_knowledge_min: float = 0.3
    min_matched_cka: float = 0.5
    sharpness_ratio: float = 1.5
    min_class_samples: int = 5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "min_class_samples":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise DoctorError(
                        f"thresholds.min_class_samples: expected an integer >= 1, got {value!r}"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise DoctorError(f"thresholds.{f.name}: expected a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise DoctorError(f"thresholds.{f.name}: expected a finite number, got {value!r}")
            if f.name != "dark_knowledge_min" and value <= 0:
                raise DoctorError(f"thresholds.{f.name}: expected a positive number, got {value!r}")
        if not -1.0 < self.dark_knowledge_min < 1.0:
            raise DoctorError(
                f"thresholds.dark_knowledge_min: expected a correlation in (-1, 1), got {self.dark_knowledge_min!r}"
            )
        for name in (
            "soft_low",
            "soft_high",
            "kd_share_low",
            "min_matched_cka",
            "teacher_acc",
            "context_purity",
        ):
            if not getattr(self, name) <= 1.0:
                raise DoctorError(
                    f"thresholds.{name}: expected a value in (0, 1], got {getattr(self, name)!r}"
                )
        if self.soft_low >= self.soft_high:
            raise DoctorError(
                f"thresholds.soft_low: expected a value below soft_high={self.soft_high!r}, got {self.soft_low!r}"
            )
        if self.lr_low >= 1.0 or self.lr_high <= 1.0:
            raise DoctorError(
                f"thresholds.lr_low/lr_high: expected lr_low < 1 < lr_high, got {self.lr_low!r} and {self.lr_high!r}"
            )
        if self.sharpness_ratio <= 1.0:
            raise DoctorError(
                f"thresholds.sharpness_ratio: expected a ratio above 1, got {self.sharpness_ratio!r}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DoctorThresholds:
        """Defaults overridden by ``values``; an unknown name raises :class:`DoctorError` listing the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise DoctorError(f"thresholds: unknown name {key!r}; known: {', '.join(known)}")
        return cls(**dict(values))


def as_thresholds(value: DoctorThresholds | Mapping[str, Any] | None) -> DoctorThresholds:
    """``value`` as :class:`DoctorThresholds`: ``None`` gives the defaults, a mapping overrides some."""
    if value is None:
        return DoctorThresholds()
    if isinstance(value, DoctorThresholds):
        return value
    if isinstance(value, Mapping):
        return DoctorThresholds.from_mapping(value)
    raise DoctorError(f"thresholds: expected DoctorThresholds or a mapping, got {type(value).__name__}")
