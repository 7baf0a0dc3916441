"""The student doctor: run the analyses on a distilled student and say, in order of severity, what
looks wrong, the numbers that show it, why it matters and which experiment to try next.

Two entry points:

* :func:`diagnose_models` — a teacher, a student and a dataset (plus, optionally, the run's
  per-epoch history, a scratch student trained without distillation, and the distillation
  temperature). It gathers the evidence with the analyses of this package (agreement and
  calibration, softened-output entropies, minibatch CKA, CAM localization when the dataset has
  object masks, Hessian curvature and 1-D landscapes against the scratch student) and applies the
  rules.
* :func:`diagnose` — the same for a run of the run store: its teacher, dataset, temperature and
  history come from the run's config and metrics.

Every rule is a small pure function of numbers (``check_*``) with its thresholds in
:class:`DoctorThresholds`; a rule returns a :class:`Finding` when it fires and ``None`` otherwise.
A finding's ``severity`` lies in ``[0.5, 1]`` when it fires: 0.5 exactly at the threshold, growing
towards 1 the further the evidence lies beyond it. Findings are ranked by severity (ties in rule
order). Each finding names the view (a function of :mod:`workbench.viz`) that shows it and the
key of :attr:`DoctorReport.results` holding that view's input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import AnalysisError, check_positive_int
from workbench.analysis.agreement import AgreementResult, agreement_report
from workbench.analysis.cam import compare_cams
from workbench.analysis.landscape import cross_entropy, hessian_top_eigenvalue, landscape_1d
from workbench.analysis.similarity import cka_matrix

__all__ = [
    "RULES",
    "DoctorError",
    "DoctorReport",
    "DoctorThresholds",
    "Finding",
    "SoftnessResult",
    "check_calibration",
    "check_capacity_gap",
    "check_context_reliance",
    "check_dark_knowledge",
    "check_loss_balance",
    "check_representation",
    "check_sharpness",
    "check_softness",
    "diagnose",
    "diagnose_models",
    "matched_depth_pairs",
    "rank_findings",
    "softness_from_logits",
]


class DoctorError(AnalysisError):
    """A doctor input is wrong; the message is one line naming the argument and what was expected."""


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


def _thresholds(value: DoctorThresholds | Mapping[str, Any] | None) -> DoctorThresholds:
    if value is None:
        return DoctorThresholds()
    if isinstance(value, DoctorThresholds):
        return value
    if isinstance(value, Mapping):
        return DoctorThresholds.from_mapping(value)
    raise DoctorError(f"thresholds: expected DoctorThresholds or a mapping, got {type(value).__name__}")


# ---- findings -----------------------------------------------------------------------------------
@dataclass
class Finding:
    """One diagnosis.

    ``rule``: the rule that fired (a key of :data:`RULES`); ``title``: one line for a list;
    ``severity`` in ``[0.5, 1]`` (see the module docstring); ``evidence``: the numbers the rule
    looked at, by name; ``explanation``: what the numbers mean, in plain language; ``suggestion``:
    the next experiment to run; ``view``: the :mod:`workbench.viz` function that shows the
    evidence; ``result``: the key of :attr:`DoctorReport.results` holding that view's input.
    """

    rule: str
    title: str
    severity: float
    evidence: dict[str, Any]
    explanation: str
    suggestion: str
    view: str
    result: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (numpy numbers become Python numbers, NaN becomes None)."""
        return {
            "rule": self.rule,
            "title": self.title,
            "severity": _plain(self.severity),
            "evidence": _plain(self.evidence),
            "explanation": self.explanation,
            "suggestion": self.suggestion,
            "view": self.view,
            "result": self.result,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


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


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Findings by decreasing severity; equal severities keep the order of :data:`RULES`."""
    order = {name: i for i, name in enumerate(RULES)}
    return sorted(findings, key=lambda f: (-float(f.severity), order.get(f.rule, len(order))))


# ---- evidence helpers -------------------------------------------------------------------------------
@dataclass
class SoftnessResult:
    """Normalized entropies ``H(softmax(z / T)) / log K`` of both models' softened outputs, per sample."""

    temperature: float
    num_classes: int
    teacher_entropy: np.ndarray
    student_entropy: np.ndarray

    @property
    def teacher_mean(self) -> float:
        """Mean normalized entropy of the teacher."""
        return float(np.mean(self.teacher_entropy))

    @property
    def student_mean(self) -> float:
        """Mean normalized entropy of the student."""
        return float(np.mean(self.student_entropy))


def softness_from_logits(
    teacher_logits: np.ndarray | torch.Tensor, student_logits: np.ndarray | torch.Tensor, temperature: float
) -> SoftnessResult:
    """Per-sample Shannon entropy of ``softmax(z / T)`` (Hinton et al. 2015's softened outputs), divided
    by ``log K`` so that 0 is one-hot and 1 is uniform, for both models. Inputs ``(N, K)``, ``K >= 2``."""
    t = torch.as_tensor(np.asarray(teacher_logits, dtype=np.float64))
    s = torch.as_tensor(np.asarray(student_logits, dtype=np.float64))
    if t.ndim != 2 or t.shape[1] < 2 or t.shape != s.shape:
        raise DoctorError(
            f"student_logits: expected two (N, K) arrays of one shape, K >= 2, got {tuple(t.shape)} and {tuple(s.shape)}"
        )
    temp = float(temperature)
    if not (math.isfinite(temp) and temp > 0):
        raise DoctorError(f"temperature: expected a positive number, got {temperature!r}")
    k = int(t.shape[1])

    def entropy(z: torch.Tensor) -> np.ndarray:
        logp = torch.log_softmax(z / temp, dim=1)
        return (-(logp.exp() * logp).sum(1) / math.log(k)).clamp(0.0, 1.0).numpy()

    return SoftnessResult(temp, k, entropy(t), entropy(s))


def matched_depth_pairs(n_teacher: int, n_student: int) -> list[tuple[int, int]]:
    """``(teacher index, student index)`` for every student layer: the teacher layer at the nearest
    relative depth ``j / (n_student - 1)`` (the last layers always pair)."""
    if n_teacher < 1 or n_student < 1:
        raise DoctorError(f"layers: expected at least one layer per model, got {n_teacher} and {n_student}")
    if n_student == 1:
        return [(n_teacher - 1, 0)]
    return [(int(round(j * (n_teacher - 1) / (n_student - 1))), j) for j in range(n_student)]


def _epochs(history: Any) -> list[Mapping[str, Any]]:
    if history is None:
        return []
    if isinstance(history, Mapping):
        if "epochs" not in history:
            raise DoctorError(
                f"history: expected a run's metrics with an 'epochs' list, got keys {', '.join(history)}"
            )
        history = history["epochs"]
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise DoctorError(f"history: expected a list of per-epoch metric dicts, got {type(history).__name__}")
    if not all(isinstance(e, Mapping) for e in history):
        raise DoctorError("history: every epoch entry must be a mapping of metric names to numbers")
    return list(history)


def _loss_means(epochs: list[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """Mean over epochs of the logged CE term and of the sum of the other (distillation) terms."""
    ce, kd = [], []
    for e in epochs:
        terms = {k[5:]: float(v) for k, v in e.items() if k.startswith("loss/") and v is not None}
        if not terms:
            continue
        if "ce" in terms:
            ce.append(terms["ce"])
        others = [v for k, v in terms.items() if k != "ce"]
        if others:
            kd.append(sum(others))
    return (float(np.mean(ce)) if ce else None, float(np.mean(kd)) if kd else None)


def _subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    if n >= n_total:
        return torch.arange(n_total)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=gen)[:n].sort().values


# ---- the report -------------------------------------------------------------------------------------
@dataclass
class DoctorReport:
    """Ranked findings with the evidence behind every rule.

    ``findings``: the rules that fired, most severe first. ``evidence``: per rule, the numbers it
    was given (also for rules that did not fire). ``skipped``: rules that could not be checked,
    with the reason. ``results``: the analysis results the views take (``agreement``, ``softness``,
    ``cka``, ``cam``, ``landscapes``, ``hessian``, ``history``), by key. ``meta``: what was
    diagnosed (models, dataset, samples, temperature, run id).
    """

    findings: list[Finding]
    evidence: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    thresholds: DoctorThresholds
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def healthy(self) -> bool:
        """True when no rule fired."""
        return not self.findings

    def passed(self) -> list[str]:
        """Rules that were checked and did not fire."""
        fired = {f.rule for f in self.findings}
        return [r for r in RULES if r in self.evidence and r not in fired and r not in self.skipped]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: meta, findings, evidence, passed and skipped rules, thresholds (no arrays)."""
        return {
            "meta": _plain(self.meta),
            "findings": [f.to_dict() for f in self.findings],
            "evidence": _plain(self.evidence),
            "passed": self.passed(),
            "skipped": dict(self.skipped),
            "thresholds": _plain(dataclasses.asdict(self.thresholds)),
        }

    def to_text(self) -> str:
        """A plain-text report for a terminal: what was examined, each finding with evidence, explanation,
        suggestion and view, then the rules that passed and those that could not be checked."""
        lines = []
        who = ", ".join(
            f"{k}={v}" for k, v in self.meta.items() if v is not None and not isinstance(v, (dict, list))
        )
        lines.append(f"Student doctor{': ' + who if who else ''}")
        if not self.findings:
            lines.append("No findings: every rule that could be checked passed.")
        for rank, f in enumerate(self.findings, start=1):
            lines.append("")
            lines.append(f"{rank}. [{f.severity:.2f}] {f.title}")
            ev = ", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items())
            lines.append(f"   evidence: {ev}")
            lines.append(f"   why: {f.explanation}")
            lines.append(f"   try: {f.suggestion}")
            lines.append(f"   view: {f.view}({f.result})")
        passed = self.passed()
        if passed:
            lines.append("")
            lines.append(f"Passed: {', '.join(passed)}")
        if self.skipped:
            lines.append("")
            lines.append("Not checked:")
            lines.extend(f"  {rule}: {reason}" for rule, reason in self.skipped.items())
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple)):
        items = [_short(v) for v in value[:6]]
        return "[" + ", ".join(items) + (", ...]" if len(value) > 6 else "]")
    if value is None:
        return "n/a"
    return str(value)


# ---- gathering the evidence -------------------------------------------------------------------------
def diagnose_models(
    teacher: nn.Module,
    student: nn.Module,
    dataset: Any,
    *,
    history: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    scratch: nn.Module | None = None,
    temperature: float | None = None,
    n_samples: int = 1000,
    cam_samples: int = 128,
    hessian_samples: int = 256,
    hessian_iters: int = 20,
    cam_method: str = "gradcam",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    seed: int = 0,
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    names: tuple[str, str] = ("teacher", "student"),
    meta: Mapping[str, Any] | None = None,
) -> DoctorReport:
    """Run the analyses on ``teacher`` and ``student`` and apply every rule of :data:`RULES`.

    Args:
        teacher, student: the two networks (training flags and hooks are restored by the analyses).
        dataset: a :class:`workbench.data.Dataset`; its test split is examined.
        history: the run's per-epoch metrics (a list of dicts, or the run's metrics mapping with
            ``epochs``); needed by the capacity-gap plateau check and the loss-balance rule.
        scratch: the same student architecture trained without a teacher; enables the sharpness rule.
        temperature: the distillation temperature ``T``; enables the softness rule.
        n_samples: test samples examined (a seeded random subset when the split is larger).
        cam_samples: of those, how many get class activation maps (only with object masks).
        hessian_samples, hessian_iters: data and power iterations of the curvature estimate.
        cam_method: a method of :func:`workbench.analysis.cam.list_cam_methods`.
        batch_size: evaluation batch size. device: where the models run; default each model's own.
        seed: seed of the sample subset, the Hessian start vector and the landscape direction.
        thresholds: :class:`DoctorThresholds` or a mapping overriding some defaults.
        names: display names of the two models. meta: extra descriptive entries for the report.

    Returns:
        :class:`DoctorReport`.
    """
    th = _thresholds(thresholds)
    n = check_positive_int(n_samples, "n_samples")
    n_cam = check_positive_int(cam_samples, "cam_samples")
    n_hess = check_positive_int(hessian_samples, "hessian_samples")
    iters = check_positive_int(hessian_iters, "hessian_iters")
    bs = check_positive_int(batch_size, "batch_size")
    for arg, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, nn.Module):
            raise DoctorError(f"{arg}: expected a torch.nn.Module, got {type(model).__name__}")
    if scratch is not None and not isinstance(scratch, nn.Module):
        raise DoctorError(f"scratch: expected a torch.nn.Module or None, got {type(scratch).__name__}")
    for attr in ("test", "normalize", "class_names"):
        if not hasattr(dataset, attr):
            raise DoctorError(
                f"dataset: expected a workbench Dataset (with {attr!r}), got {type(dataset).__name__}"
            )
    temp = None if temperature is None else float(temperature)
    if temp is not None and not (math.isfinite(temp) and temp > 0):
        raise DoctorError(f"temperature: expected a positive number, got {temperature!r}")
    epochs = _epochs(history)

    split = dataset.test
    idx = _subset(len(split), n, seed)
    images = dataset.normalize(split.images[idx])
    labels = split.labels[idx]
    evidence: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {}
    if history is not None:
        results["history"] = history

    # agreement, calibration, dark knowledge
    agreement: AgreementResult = agreement_report(
        teacher, student, images, labels, temperature=temp or 1.0, batch_size=bs, device=device, names=names
    )
    results["agreement"] = agreement
    agreement_history = [float(e["agreement"]) for e in epochs if e.get("agreement") is not None]
    evidence["capacity_gap"] = {
        "teacher_accuracy": agreement.teacher_accuracy,
        "student_accuracy": agreement.student_accuracy,
        "agreement_history": agreement_history or None,
    }
    evidence["calibration"] = {
        "teacher_ece": agreement.teacher_calibration.ece,
        "student_ece": agreement.student_calibration.ece,
        "student_confidence": float(agreement.student_probs.max(1).mean()),
        "student_accuracy": agreement.student_accuracy,
    }
    evidence["dark_knowledge"] = {
        "per_class_rank_correlation": agreement.per_class_rank_correlation.tolist(),
        "class_counts": agreement.class_counts.tolist(),
        "class_names": [str(c) for c in dataset.class_names],
    }

    # loss balance from the logged terms
    ce, kd = _loss_means(epochs)
    if not epochs:
        skipped["loss_balance"] = "no per-epoch history given (history=)"
    elif ce is None:
        skipped["loss_balance"] = "the history logs no cross-entropy term (ce_weight 0 or no loss/ce)"
    elif kd is None:
        skipped["loss_balance"] = "the history logs no distillation term"
    else:
        evidence["loss_balance"] = {"ce_loss": ce, "distill_loss": kd}

    # softened outputs at T
    if temp is None:
        skipped["softness"] = "no distillation temperature given (temperature=)"
    else:
        soft = softness_from_logits(agreement.teacher_logits, agreement.student_logits, temp)
        results["softness"] = soft
        evidence["softness"] = {
            "teacher_entropy": soft.teacher_mean,
            "student_entropy": soft.student_mean,
            "temperature": temp,
        }

    # representations at matched depth
    try:
        cka = cka_matrix(teacher, student, images, batch_size=bs, device=device, names=names)
    except ValueError as err:
        skipped["representation"] = f"CKA could not be computed: {str(err).splitlines()[0]}"
    else:
        results["cka"] = cka
        pairs = matched_depth_pairs(len(cka.layers_a), len(cka.layers_b))
        evidence["representation"] = {
            "matched_cka": [float(cka.matrix[i, j]) for i, j in pairs],
            "layer_pairs": [(cka.layers_a[i], cka.layers_b[j]) for i, j in pairs],
        }

    # where the maps sit, when the objects are known
    if getattr(split, "masks", None) is None:
        skipped["context_reliance"] = "the dataset has no object masks"
    else:
        c_idx = idx[:n_cam]
        try:
            cam = compare_cams(
                teacher,
                student,
                images[:n_cam],
                labels[:n_cam],
                method=cam_method,
                masks=split.masks[c_idx],
                boxes=None if getattr(split, "boxes", None) is None else split.boxes[c_idx],
                batch_size=bs,
                device=device,
            )
        except ValueError as err:
            skipped["context_reliance"] = (
                f"class activation maps could not be computed: {str(err).splitlines()[0]}"
            )
        else:
            results["cam"] = cam
            assert cam.teacher_localization is not None and cam.student_localization is not None
            evidence["context_reliance"] = {
                "teacher_context": cam.teacher_localization.mean_context_reliance,
                "student_context": cam.student_localization.mean_context_reliance,
            }

    # curvature against a student trained without the teacher
    if scratch is None:
        skipped["sharpness"] = "no scratch student given (scratch=)"
    else:
        h_images, h_labels = images[:n_hess], labels[:n_hess]
        eig_s = hessian_top_eigenvalue(
            student, cross_entropy, h_images, h_labels, iters=iters, seed=seed, batch_size=bs, device=device
        )
        eig_r = hessian_top_eigenvalue(
            scratch, cross_entropy, h_images, h_labels, iters=iters, seed=seed, batch_size=bs, device=device
        )
        results["hessian"] = {"student": eig_s, "scratch": eig_r}
        results["landscapes"] = {
            role: landscape_1d(
                model,
                ["cross_entropy", "accuracy"],
                h_images,
                h_labels,
                seed=seed,
                batch_size=bs,
                device=device,
            )
            for role, model in (("student", student), ("scratch", scratch))
        }
        evidence["sharpness"] = {
            "student_eigenvalue": eig_s.eigenvalue,
            "scratch_eigenvalue": eig_r.eigenvalue,
        }

    findings = []
    for rule, fn in RULES.items():
        if rule in evidence:
            found = fn(**evidence[rule], thresholds=th)
            if found is not None:
                findings.append(found)
    info = {
        "teacher": names[0],
        "student": names[1],
        "dataset": getattr(dataset, "name", None),
        "n_samples": int(len(idx)),
        "temperature": temp,
    }
    info.update(dict(meta or {}))
    return DoctorReport(
        findings=rank_findings(findings),
        evidence=evidence,
        skipped=skipped,
        thresholds=th,
        meta=info,
        results=results,
    )


# ---- from the run store -----------------------------------------------------------------------------
def _resolve_run(run: Any, runs_root: str | Path | None, arg: str) -> Any:
    from workbench.runs import Run, RunStore

    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        path = Path(run)
        if path.is_dir() and (path / "status.json").exists():
            return Run(path.name, path)
        return RunStore(runs_root).load(str(run))
    raise DoctorError(f"{arg}: expected a Run, a run id or a run directory, got {type(run).__name__}")


def _load_student(run: Any, which: str, device: torch.device) -> nn.Module:
    have = run.checkpoints()
    for name in (which, "final", "best"):
        if name in have:
            return run.load_model(name, device=device)
    return run.load_model(which, device=device)  # raises, naming the checkpoints the run has


def _run_temperature(cfg: Any) -> float | None:
    from workbench.distill.base import parse_params

    for spec in cfg.distill.methods:
        params = parse_params(spec.name, spec.params)
        value = getattr(params, "temperature", None)
        if value is not None and spec.weight > 0:
            return float(value)
    return None


def diagnose(
    run: Any,
    *,
    teacher: nn.Module | str | Any | None = None,
    scratch_run: Any | None = None,
    n_samples: int = 1000,
    device: str | torch.device | None = None,
    runs_root: str | Path | None = None,
    which: str = "final",
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    **options: Any,
) -> DoctorReport:
    """Diagnose a stored run: load its student, teacher, dataset, temperature and history, then
    call :func:`diagnose_models`.

    Args:
        run: a :class:`workbench.runs.Run`, a run id (or unique prefix) in ``runs_root``, or a run
            directory.
        teacher: override the run's teacher: a network, a ``TeacherSpec``, or a source string
            (``shipped:NAME``, ``run:ID``, or a bare run id). Default: the run config's first teacher.
        scratch_run: the scratch student to compare curvature with: a run, run id, directory or network.
        n_samples: test samples examined.
        device: where to load and run the models (networks passed in are moved there for each
            analysis and back); default CUDA when available, else CPU.
        runs_root: the workspace of run ids; default the run's own parent folder (or the store default).
        which: the student checkpoint (``final`` falls back to ``best`` when absent).
        thresholds: as in :func:`diagnose_models`.
        options: further keywords of :func:`diagnose_models` (``cam_samples``, ``hessian_iters``, ...).

    Returns:
        :class:`DoctorReport` whose ``meta`` names the run.
    """
    from workbench.config import TeacherSpec
    from workbench.data import load_dataset
    from workbench.train.teachers import load_teacher

    r = _resolve_run(run, runs_root, "run")
    root = Path(runs_root) if runs_root is not None else r.path.parent
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    cfg = r.config
    data = load_dataset(cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options)
    student = _load_student(r, which, dev)

    source: str
    if isinstance(teacher, nn.Module):
        teacher_model, source = teacher, type(teacher).__name__
    else:
        if teacher is None:
            if not cfg.teachers:
                raise DoctorError(f"teacher: run {r.id} has no teacher in its config; pass teacher=")
            spec = cfg.teachers[0]
        elif isinstance(teacher, TeacherSpec):
            spec = teacher
        elif isinstance(teacher, str):
            spec = TeacherSpec(
                source=teacher if teacher.startswith(("shipped:", "run:")) else f"run:{teacher}"
            )
        else:
            raise DoctorError(
                f"teacher: expected a network, a TeacherSpec or a source string, got {type(teacher).__name__}"
            )
        source = spec.source
        teacher_model = load_teacher(spec, data.num_classes, data.image_shape, dev, runs_root=str(root))

    scratch = None
    if scratch_run is not None:
        if isinstance(scratch_run, nn.Module):
            scratch = scratch_run
        else:
            scratch = _load_student(_resolve_run(scratch_run, root, "scratch_run"), "final", dev)

    meta = {
        "run": r.id,
        "model": cfg.model.name,
        "methods": "+".join(m.name for m in cfg.distill.methods),
        "teacher_source": source,
        "teachers_in_config": len(cfg.teachers),
    }
    return diagnose_models(
        teacher_model,
        student,
        data,
        history=r.metrics,
        scratch=scratch,
        temperature=options.pop("temperature", _run_temperature(cfg)),
        n_samples=n_samples,
        device=dev,
        thresholds=thresholds,
        meta=meta,
        **options,
    )
