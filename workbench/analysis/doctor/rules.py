"""The doctor's rules: each a small pure function from numbers to a :class:`Finding` (or ``None``).

A rule (``check_*``) takes the evidence as plain numbers and a :class:`DoctorThresholds`; it returns
a :class:`~workbench.analysis.doctor.report.Finding` when it fires and ``None`` otherwise. A
finding's ``severity`` lies in ``[0.5, 1]``: 0.5 exactly at the threshold, growing towards 1 the
further the evidence lies beyond it (``1 - t / (2 v)`` for a quantity where higher is worse,
``0.5 + 0.5 (t - v) / (t - floor)`` where lower is worse). :data:`RULES` lists every rule by name,
in the order ties are broken. Nothing here touches a model or data; the numbers are gathered by
:mod:`workbench.analysis.doctor.evidence`. The reasoning behind each threshold is in
``docs/doctor.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.analysis.doctor.report import DoctorError, Finding

__all__ = [
    "RULES",
    "DoctorThresholds",
    "as_thresholds",
    "check_calibration",
    "check_capacity_gap",
    "check_context_reliance",
    "check_dark_knowledge",
    "check_loss_balance",
    "check_representation",
    "check_sharpness",
    "check_softness",
]


# ---- thresholds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoctorThresholds:
    """Where each rule starts to fire (see ``docs/doctor.md`` for the reasoning behind each value).

    Attributes:
        capacity_gap: teacher accuracy minus student accuracy (fraction) at or above which the
            student is "far below" its teacher.
        plateau_gain: agreement gain over the last third of the epochs below which agreement has
            plateaued (the student stopped catching up).
        kd_dominates: ratio (distillation terms / cross-entropy term, both as logged, i.e. weighted)
            at or above which the distillation term dominates the objective.
        kd_vanishes: the ratio at or below which the distillation term has vanished.
        softness_gap: absolute difference of the mean normalized entropies of the softened outputs
            ``softmax(z / T)`` (student minus teacher) at or above which the student's outputs are far
            flatter or sharper than the teacher's.
        ece_gap: student ECE minus teacher ECE at or above which the student is miscalibrated.
        context_gap: student context reliance (share of map energy off the object) minus the
            teacher's at or above which the student relies on context.
        min_matched_cka: matched-depth linear CKA below which representations have diverged.
        sharpness_ratio: student / scratch-student top Hessian eigenvalue at or above which the
            distilled student sits in a sharper minimum.
        dark_knowledge_min: per-class non-target rank correlation below which the class lost the
            teacher's dark knowledge.
        min_class_samples: classes with fewer evaluated samples are not judged by the dark
            knowledge rule.
    """

    capacity_gap: float = 0.05
    plateau_gain: float = 0.01
    kd_dominates: float = 20.0
    kd_vanishes: float = 0.05
    softness_gap: float = 0.15
    ece_gap: float = 0.05
    context_gap: float = 0.15
    min_matched_cka: float = 0.5
    sharpness_ratio: float = 1.5
    dark_knowledge_min: float = 0.3
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
        if not -1.0 < self.dark_knowledge_min < 1.0:
            raise DoctorError(
                f"thresholds.dark_knowledge_min: expected a correlation in (-1, 1), got {self.dark_knowledge_min!r}"
            )
        if not 0.0 < self.min_matched_cka <= 1.0:
            raise DoctorError(
                f"thresholds.min_matched_cka: expected a value in (0, 1], got {self.min_matched_cka!r}"
            )
        for name in (
            "capacity_gap",
            "plateau_gain",
            "kd_dominates",
            "kd_vanishes",
            "softness_gap",
            "ece_gap",
            "context_gap",
            "sharpness_ratio",
        ):
            if getattr(self, name) <= 0:
                raise DoctorError(
                    f"thresholds.{name}: expected a positive number, got {getattr(self, name)!r}"
                )
        if self.kd_vanishes >= self.kd_dominates:
            raise DoctorError(
                f"thresholds.kd_vanishes: expected a value below kd_dominates={self.kd_dominates!r}, "
                f"got {self.kd_vanishes!r}"
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


def _used(th: DoctorThresholds, *names: str) -> dict[str, Any]:
    """The thresholds a rule compared its evidence with, by name (a finding's ``params``)."""
    return {name: getattr(th, name) for name in names}


def _beyond(value: float, threshold: float) -> float:
    """Severity of a "higher is worse" quantity at or above its positive threshold: ``1 - t / (2 v)``."""
    if value <= 0:
        return 0.5
    return float(min(1.0, max(0.5, 1.0 - threshold / (2.0 * value))))


def _below(value: float, threshold: float, floor: float) -> float:
    """Severity of a "lower is worse" quantity at or below its threshold, 1 at ``floor``."""
    return float(min(1.0, max(0.5, 0.5 + 0.5 * (threshold - value) / (threshold - floor))))


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}%" if math.isfinite(value) else "n/a"


# ---- rules --------------------------------------------------------------------------------------
def check_capacity_gap(
    teacher_accuracy: float,
    student_accuracy: float,
    agreement_history: Sequence[float] | None = None,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Capacity gap: the student stays far below its teacher while agreement has stopped improving.

    Fires when ``teacher_accuracy - student_accuracy >= capacity_gap`` and agreement has plateaued:
    with ``a`` the per-epoch agreement and ``w = max(1, len(a) // 3)``, ``a[-1] - a[-1 - w] <
    plateau_gain``. With fewer than two epochs of agreement the plateau cannot be checked and the
    gap alone decides (the explanation says so). Mirzadeh et al. 2020 (TAKD) and Cho & Hariharan
    2019 show that a much larger teacher can teach worse than a closer one.
    """
    th = thresholds or DoctorThresholds()
    gap = float(teacher_accuracy) - float(student_accuracy)
    if not gap >= th.capacity_gap:
        return None
    history = [float(a) for a in agreement_history] if agreement_history is not None else []
    gain: float | None = None
    if len(history) >= 2:
        w = max(1, len(history) // 3)
        gain = history[-1] - history[-1 - w]
        if gain >= th.plateau_gain:
            return None
    plateau = (
        f"agreement rose only {_f(gain, 4)} over the last {max(1, len(history) // 3)} of {len(history)} epochs"
        if gain is not None
        else "no per-epoch agreement was logged, so the plateau could not be checked"
    )
    return Finding(
        rule="capacity_gap",
        title=f"Capacity gap: student {_pct(gap)} below the teacher",
        severity=_beyond(gap, th.capacity_gap),
        evidence={
            "teacher_accuracy": float(teacher_accuracy),
            "student_accuracy": float(student_accuracy),
            "gap": gap,
            "agreement_gain": gain,
            "epochs": len(history),
        },
        explanation=(
            f"The teacher reaches {_pct(float(teacher_accuracy))} and the student {_pct(float(student_accuracy))}; "
            f"{plateau}. The student has stopped closing the gap: the teacher's function may be too "
            "complex for it to imitate."
        ),
        suggestion=(
            "Distil through a teacher assistant of intermediate size (method 'takd', Mirzadeh et al. 2020), "
            "or use a smaller or early-stopped teacher (Cho & Hariharan 2019), or a larger student."
        ),
        view="training_curves",
        result="history",
        params=_used(th, "capacity_gap", "plateau_gain"),
    )


def check_loss_balance(
    ce_loss: float,
    distill_loss: float,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Loss weights or temperature mis-set: the distillation terms dominate or vanish next to CE.

    ``ratio = distill_loss / ce_loss`` of the logged, already weighted terms (mean over epochs).
    Fires when ``ratio >= kd_dominates`` or ``ratio <= kd_vanishes``. The KD term carries a
    ``T²`` factor (Hinton et al. 2015), so a high temperature inflates it.
    """
    th = thresholds or DoctorThresholds()
    ce, kd = float(ce_loss), float(distill_loss)
    if not (math.isfinite(ce) and math.isfinite(kd)) or ce <= 0 or kd < 0:
        return None
    ratio = kd / ce
    evidence = {"ce_loss": ce, "distill_loss": kd, "ratio": ratio}
    if ratio >= th.kd_dominates:
        return Finding(
            rule="loss_balance",
            title=f"Distillation term dominates cross-entropy ({ratio:.1f}x)",
            severity=_beyond(ratio, th.kd_dominates),
            evidence=evidence,
            explanation=(
                f"The logged distillation terms average {_f(kd, 4)} against {_f(ce, 4)} for cross-entropy, "
                f"{ratio:.1f} times larger: the labels barely shape the student, so it also copies the "
                "teacher's mistakes, and a large term can make the step size too large."
            ),
            suggestion=(
                "Lower the distillation weight or the temperature (the KD term scales with T²), or raise "
                "ce_weight; then compare test accuracy and agreement."
            ),
            view="loss_terms",
            result="history",
            params=_used(th, "kd_dominates", "kd_vanishes"),
        )
    if ratio <= th.kd_vanishes:
        return Finding(
            rule="loss_balance",
            title=f"Distillation term vanishes next to cross-entropy ({ratio:.3f}x)",
            severity=1.0 if ratio == 0 else _beyond(th.kd_vanishes / ratio, 1.0),
            evidence=evidence,
            explanation=(
                f"The logged distillation terms average {_f(kd, 4)} against {_f(ce, 4)} for cross-entropy: "
                "the teacher hardly contributes to the gradient, so the run is close to training from scratch."
            ),
            suggestion=(
                "Raise the distillation weight (or the temperature, whose T² factor scales the KD term); "
                "check that the method's features and teacher are the intended ones."
            ),
            view="loss_terms",
            result="history",
            params=_used(th, "kd_dominates", "kd_vanishes"),
        )
    return None


def check_softness(
    teacher_entropy: float,
    student_entropy: float,
    temperature: float,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Temperature mis-set: at the run's ``T`` the student's softened outputs are far flatter or
    sharper than the teacher's.

    Entropies are mean normalized entropies ``H(softmax(z / T)) / log K`` in ``[0, 1]``. Fires when
    ``|student_entropy - teacher_entropy| >= softness_gap``.
    """
    th = thresholds or DoctorThresholds()
    te, se = float(teacher_entropy), float(student_entropy)
    diff = se - te
    if not abs(diff) >= th.softness_gap:
        return None
    flatter = diff > 0
    evidence = {
        "temperature": float(temperature),
        "teacher_entropy": te,
        "student_entropy": se,
        "difference": diff,
    }
    if flatter:
        explanation = (
            f"At T={float(temperature):g} the student's softened outputs have normalized entropy {_f(se)} against "
            f"the teacher's {_f(te)}: they are much flatter. The student does not reproduce the spread of the "
            "teacher's logits, so the soft targets are matched only loosely."
        )
        suggestion = (
            "Lower the temperature or raise the KD weight; if the student cannot match the teacher's logit "
            "scale, a scale-free logit loss (e.g. 'dist', Huang et al. 2022) is the next thing to try."
        )
    else:
        explanation = (
            f"At T={float(temperature):g} the student's softened outputs have normalized entropy {_f(se)} against "
            f"the teacher's {_f(te)}: they are much sharper. Cross-entropy pushes the student to be more "
            "certain than the teacher, and the relative probabilities of wrong classes are lost."
        )
        suggestion = (
            "Raise the temperature or the KD weight relative to ce_weight, so the student follows the "
            "teacher's softer distribution."
        )
    return Finding(
        rule="softness",
        title=f"Student outputs {'flatter' if flatter else 'sharper'} than the teacher's at T={float(temperature):g}",
        severity=_beyond(abs(diff), th.softness_gap),
        evidence=evidence,
        explanation=explanation,
        suggestion=suggestion,
        view="softness_histogram",
        result="softness",
        params=_used(th, "softness_gap"),
    )


def check_calibration(
    teacher_ece: float,
    student_ece: float,
    student_confidence: float,
    student_accuracy: float,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Overconfidence (or underconfidence): the student's ECE (Guo et al. 2017) is well above the teacher's.

    Fires when ``student_ece - teacher_ece >= ece_gap``; the direction comes from the student's mean
    top-1 confidence against its accuracy.
    """
    th = thresholds or DoctorThresholds()
    diff = float(student_ece) - float(teacher_ece)
    if not diff >= th.ece_gap:
        return None
    over = float(student_confidence) >= float(student_accuracy)
    word = "overconfident" if over else "underconfident"
    return Finding(
        rule="calibration",
        title=f"Student is {word}: ECE {_f(float(student_ece))} vs teacher {_f(float(teacher_ece))}",
        severity=_beyond(diff, th.ece_gap),
        evidence={
            "teacher_ece": float(teacher_ece),
            "student_ece": float(student_ece),
            "difference": diff,
            "student_confidence": float(student_confidence),
            "student_accuracy": float(student_accuracy),
        },
        explanation=(
            f"The student's mean confidence is {_pct(float(student_confidence))} for an accuracy of "
            f"{_pct(float(student_accuracy))}; its expected calibration error exceeds the teacher's by {_f(diff)}. "
            "Its probabilities cannot be trusted the way the teacher's can."
        ),
        suggestion=(
            "Give the soft targets more weight or a higher temperature so the student inherits the teacher's "
            "calibration; fit a temperature on held-out data before deployment (Guo et al. 2017)."
            if over
            else "Train longer or give cross-entropy more weight, or lower the temperature; fit a temperature "
            "on held-out data before deployment (Guo et al. 2017)."
        ),
        view="reliability_diagrams",
        result="agreement",
        params=_used(th, "ece_gap"),
    )


def check_context_reliance(
    teacher_context: float,
    student_context: float,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Context reliance: the student's class-activation energy lies off the object where the teacher's is on it.

    ``*_context`` is the mean share of each map's energy outside the object mask (energy-based
    pointing game, Wang et al. 2020). Fires when ``student_context - teacher_context >= context_gap``.
    """
    th = thresholds or DoctorThresholds()
    gap = float(student_context) - float(teacher_context)
    if not gap >= th.context_gap:
        return None
    return Finding(
        rule="context_reliance",
        title=f"Student looks at the background: {_pct(float(student_context))} of its map off the object",
        severity=_beyond(gap, th.context_gap),
        evidence={
            "teacher_context": float(teacher_context),
            "student_context": float(student_context),
            "gap": gap,
        },
        explanation=(
            f"{_pct(float(student_context))} of the student's map energy lies outside the object masks against "
            f"{_pct(float(teacher_context))} for the teacher: the student reaches its answers from the context "
            "(background, texture) rather than from the object, which breaks when the context changes."
        ),
        suggestion=(
            "Add an attention-transfer term ('at', Zagoruyko & Komodakis 2017) or class-activation-map "
            "distillation ('cat_kd') so the student learns where the teacher looks; test on images whose "
            "background is decorrelated from the class."
        ),
        view="localization_summary",
        result="cam",
        params=_used(th, "context_gap"),
    )


def check_representation(
    matched_cka: Sequence[float],
    layer_pairs: Sequence[tuple[str, str]] | None = None,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Representation divergence: low linear CKA (Kornblith et al. 2019) between teacher and student
    layers at matched relative depth.

    ``matched_cka[i]`` belongs to ``layer_pairs[i]`` = ``(teacher layer, student layer)``. Fires when
    the lowest finite value is below ``min_matched_cka``.
    """
    th = thresholds or DoctorThresholds()
    values = [float(v) for v in matched_cka]
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None
    worst, at = min(finite)
    if not worst < th.min_matched_cka:
        return None
    pairs = (
        [tuple(p) for p in layer_pairs]
        if layer_pairs is not None
        else [(f"{i}", f"{i}") for i in range(len(values))]
    )
    if len(pairs) != len(values):
        raise DoctorError(f"layer_pairs: expected {len(values)} pairs to match matched_cka, got {len(pairs)}")
    t_layer, s_layer = pairs[at]
    return Finding(
        rule="representation",
        title=f"Representations diverge: CKA {_f(worst, 2)} at {s_layer} vs teacher {t_layer}",
        severity=_below(worst, th.min_matched_cka, 0.0),
        evidence={
            "min_cka": worst,
            "teacher_layer": t_layer,
            "student_layer": s_layer,
            "matched_cka": values,
            "pairs": [f"{t} ~ {s}" for t, s in pairs],
        },
        explanation=(
            f"At matched relative depth the student's layer {s_layer} has linear CKA {_f(worst, 2)} with the "
            f"teacher's {t_layer}: the two networks encode the inputs differently there, so logit matching "
            "alone is not transferring the teacher's intermediate structure."
        ),
        suggestion=(
            "Add a feature-level term at that depth (FitNets hint 'fitnet', Romero et al. 2015) or a relational "
            "one ('rkd', 'crd'); check that the student's stage is wide enough to hold the teacher's features."
        ),
        view="cka_heatmap",
        result="cka",
        params=_used(th, "min_matched_cka"),
    )


def check_sharpness(
    student_eigenvalue: float,
    scratch_eigenvalue: float,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """A sharper minimum than the scratch student: ratio of the top Hessian eigenvalues of the
    cross-entropy (power iteration, Pearlmutter 1994) at or above ``sharpness_ratio``.

    Not judged (``None``) when the scratch eigenvalue is not positive.
    """
    th = thresholds or DoctorThresholds()
    s, r = float(student_eigenvalue), float(scratch_eigenvalue)
    if not (math.isfinite(s) and math.isfinite(r)) or r <= 0:
        return None
    ratio = s / r
    if not ratio >= th.sharpness_ratio:
        return None
    return Finding(
        rule="sharpness",
        title=f"Sharper minimum than the scratch student ({ratio:.1f}x top eigenvalue)",
        severity=_beyond(ratio, th.sharpness_ratio),
        evidence={"student_eigenvalue": s, "scratch_eigenvalue": r, "ratio": ratio},
        explanation=(
            f"The top Hessian eigenvalue of the cross-entropy is {_f(s, 3)} for the distilled student and "
            f"{_f(r, 3)} for the same network trained without a teacher. Distillation usually finds flatter "
            "minima; a sharper one tends to generalize worse and suggests the objective is fighting itself."
        ),
        suggestion=(
            "Try a higher temperature or a smaller distillation weight, a lower learning rate with a longer "
            "schedule, and compare the 1-D landscapes again."
        ),
        view="landscape_comparison",
        result="landscapes",
        params=_used(th, "sharpness_ratio"),
    )


def check_dark_knowledge(
    per_class_rank_correlation: Sequence[float],
    class_counts: Sequence[int],
    class_names: Sequence[str] | None = None,
    thresholds: DoctorThresholds | None = None,
) -> Finding | None:
    """Classes whose dark knowledge was lost: mean Spearman correlation of teacher and student logits
    over the non-target classes (Hinton et al. 2015's relative probabilities of wrong answers)
    below ``dark_knowledge_min``, among classes with at least ``min_class_samples`` samples.
    """
    th = thresholds or DoctorThresholds()
    values = np.asarray(per_class_rank_correlation, dtype=np.float64)
    counts = np.asarray(class_counts, dtype=np.int64)
    if values.shape != counts.shape:
        raise DoctorError(
            f"class_counts: expected {values.size} counts to match the per-class values, got {counts.size}"
        )
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(values.size)]
    if len(names) != values.size:
        raise DoctorError(f"class_names: expected {values.size} names, got {len(names)}")
    judged = np.isfinite(values) & (counts >= th.min_class_samples)
    low = np.flatnonzero(judged & (values < th.dark_knowledge_min))
    if low.size == 0:
        return None
    low = low[np.argsort(values[low], kind="stable")]
    worst = float(values[low[0]])
    shown = ", ".join(f"{names[i]} ({values[i]:.2f})" for i in low[:5]) + (", …" if low.size > 5 else "")
    return Finding(
        rule="dark_knowledge",
        title=f"Dark knowledge lost for {low.size} class{'es' if low.size > 1 else ''}: {shown}",
        severity=_below(worst, th.dark_knowledge_min, -1.0),
        evidence={
            "classes": [names[i] for i in low],
            "rank_correlation": [float(values[i]) for i in low],
            "worst": worst,
            "judged_classes": int(judged.sum()),
        },
        explanation=(
            "For these classes the student orders the wrong answers differently from the teacher (non-target "
            "rank correlation below the threshold): whatever it does with the labels, it does not share the "
            "teacher's sense of which classes look alike, the knowledge distillation is meant to pass on."
        ),
        suggestion=(
            "Raise the temperature so non-target probabilities carry weight, or decouple the non-target term "
            "('dkd', Zhao et al. 2022, with a larger beta); inspect those classes' confusion."
        ),
        view="rank_correlation_bars",
        result="agreement",
        params=_used(th, "dark_knowledge_min", "min_class_samples"),
    )


#: every rule by name, in the order ties are broken
RULES: dict[str, Callable[..., Finding | None]] = {
    "capacity_gap": check_capacity_gap,
    "loss_balance": check_loss_balance,
    "softness": check_softness,
    "calibration": check_calibration,
    "context_reliance": check_context_reliance,
    "representation": check_representation,
    "sharpness": check_sharpness,
    "dark_knowledge": check_dark_knowledge,
}
