"""The doctor's rules: each a small pure function from the measured evidence to a :class:`Finding`
(or ``None``).

The evidence is one flat mapping of named numbers (see :mod:`workbench.analysis.doctor.evidence`
for how each is measured): what the run recorded in its config (method, temperature, weights,
learning rate, hint layers, data options), what its history logged, and what the analyses
measure on the teacher and the student. A rule reads the names it needs, compares them with the
fields of :class:`DoctorThresholds` and returns a finding that states the fault in the user's
terms, with its numbers, the view that shows them and a concrete next experiment
(:class:`~workbench.analysis.doctor.report.Experiment`: config overrides plus a sentence). A
rule whose evidence is missing returns ``None`` and :func:`missing_evidence` says why.

Every threshold was read off the doctor clinic (``benchmarks/doctor_clinic.py``): real short
runs with one planted fault each, and healthy controls. ``docs/doctor.md`` lists, for every
threshold, the closest healthy and the closest faulty value it separates (its margin on both
sides).

Severity lies in ``[0.5, 1]``: 0.5 exactly at the threshold, growing towards 1 the further the
evidence lies beyond it: ``1 - t / (2 v)`` for a quantity where higher is worse,
``0.5 + 0.5 (t - v) / (t - floor)`` where lower is worse. Findings of level ``"warning"`` name a
fault; ``"note"`` findings are observations that accompany one (calibration, dark knowledge,
representations, sharpness) and never make a run unhealthy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.analysis.doctor.report import DoctorError, Experiment, Finding

__all__ = [
    "NOTE_RULES",
    "RULES",
    "DoctorThresholds",
    "apply_rules",
    "as_thresholds",
    "missing_evidence",
]


# ---- thresholds ---------------------------------------------------------------------------------
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


# ---- helpers ------------------------------------------------------------------------------------
Evidence = Mapping[str, Any]


def _num(ev: Evidence, name: str) -> float | None:
    """``ev[name]`` as a finite float, or ``None`` when absent or not a finite number."""
    v = ev.get(name)
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _beyond(value: float, threshold: float) -> float:
    """Severity of a "higher is worse" quantity at or above its positive threshold: ``1 - t / (2 v)``."""
    if value <= 0:
        return 0.5
    return float(min(1.0, max(0.5, 1.0 - threshold / (2.0 * value))))


def _below(value: float, threshold: float, floor: float) -> float:
    """Severity of a "lower is worse" quantity at or below its threshold, 1 at ``floor``."""
    if threshold <= floor:
        return 0.5
    return float(min(1.0, max(0.5, 0.5 + 0.5 * (threshold - value) / (threshold - floor))))


def _pct(value: float | None) -> str:
    return f"{100.0 * value:.1f}%" if value is not None and math.isfinite(value) else "n/a"


def _g(value: float | None) -> str:
    return f"{value:.3g}" if value is not None and math.isfinite(value) else "n/a"


def _pick(ev: Evidence, *names: str) -> dict[str, Any]:
    return {n: ev.get(n) for n in names if n in ev}


def _used(th: DoctorThresholds, *names: str) -> dict[str, Any]:
    return {n: getattr(th, n) for n in names}


def _far_below(ev: Evidence, th: DoctorThresholds) -> float | None:
    """The accuracy gap when the student is far below its teacher (failed runs count as far below)."""
    if ev.get("failed"):
        return 1.0
    gap = _num(ev, "gap")
    return gap if gap is not None and gap >= th.gap else None


def _kd_path(ev: Evidence) -> str | None:
    i = ev.get("kd_index")
    return None if i is None else f"distill.methods[{int(i)}]"


# ---- the fault rules ----------------------------------------------------------------------------
def check_wrong_teacher(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """The teacher is wrong for this data: its test accuracy is below ``teacher_acc`` (it was
    trained on other classes, on other data, or barely trained). Distillation then copies its
    mistakes (Hinton et al. 2015 assume a teacher that is right)."""
    acc = _num(ev, "teacher_acc")
    if acc is None or not acc < th.teacher_acc:
        return None
    chance = _num(ev, "chance") or 0.0
    shipped = ev.get("suggested_teacher")
    if shipped:
        over: dict[str, Any] = {"teachers": [{"source": shipped}]}
        text = f"Distil from a teacher trained on this data ({shipped}) and compare the student's accuracy."
    else:
        over = {"distill.methods": "none"}
        text = "Train the student from the labels alone (methods 'none') until a teacher fits this data."
    return Finding(
        rule="wrong_teacher",
        title=f"The teacher is wrong for this data: it gets {_pct(acc)} of the test images right",
        severity=_below(acc, th.teacher_acc, chance),
        evidence=_pick(ev, "teacher_acc", "student_acc", "chance", "teacher_source"),
        explanation=(
            f"The teacher ({ev.get('teacher_source', 'the first teacher')}) classifies {_pct(acc)} of this "
            f"dataset's test images correctly (chance is {_pct(chance)}): it was trained on other classes or "
            "other data, or barely trained. The student is taught its mistakes."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "teacher_acc"),
        experiment=Experiment(over, text, metric="student_acc", goal="up"),
    )


def check_lr_high(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Learning rate too high: the rate is ``lr_high`` times the optimizer's usual one or more and
    training diverged (non-finite loss) or left the student far below the teacher."""
    scale = _num(ev, "lr_scale")
    lr = _num(ev, "lr")
    if scale is None or lr is None or not scale >= th.lr_high:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    failed = bool(ev.get("failed"))
    how = (
        f"the loss became non-finite at step {ev.get('failed_step')}"
        if failed
        else f"the student ends {_pct(gap)} below the teacher"
    )
    new_lr = float(f"{lr / 10:.3g}")
    text = f"Train again with optim.lr={new_lr:g} (a tenth) from the same seed."
    return Finding(
        rule="lr_high",
        title=f"Learning rate too high: training is unstable (lr {lr:g})",
        severity=1.0 if failed else _beyond(scale, th.lr_high),
        evidence=_pick(ev, "lr", "lr_scale", "optimizer", "failed", "gap", "loss_rise"),
        explanation=(
            f"The learning rate {lr:g} is {scale:.0f} times the usual rate for {ev.get('optimizer', 'the optimizer')}, "
            f"and {how}: the steps overshoot, so the student cannot settle where the teacher leads it."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "lr_high", "gap"),
        experiment=Experiment({"optim.lr": new_lr}, text, metric="student_acc", goal="up"),
    )


def check_kd_dominates(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """The distillation weight is far too large: the temperature-scaled term (which already carries
    ``T²``, Hinton et al. 2015) has weight ``kd_weight_high`` or more, so it multiplies the step
    size. A plain large ratio of the logged terms is *not* a fault (it is ``T²``-sized by design)."""
    w = _num(ev, "kd_weight")
    path = _kd_path(ev)
    if w is None or path is None or not w >= th.kd_weight_high:
        return None
    text = f"Set the distillation weight to 0.9 and ce_weight to 0.1 (Hinton's recipe), same seed: {path}.weight=0.9."
    return Finding(
        rule="kd_dominates",
        title=f"Distillation weight too large ({w:g}): it scales the step size by about {w:.0f}x",
        severity=_beyond(w, th.kd_weight_high),
        evidence=_pick(ev, "kd_weight", "ce_weight", "temperature", "kd_share", "gap", "failed"),
        explanation=(
            f"The distillation term, already multiplied by T² = {_g((_num(ev, 'temperature') or 1.0) ** 2)}, "
            f"carries weight {w:g} (ce_weight {_g(_num(ev, 'ce_weight'))}); the weights of a standard recipe sum "
            "to about 1. Its gradient is that many times larger than the learning rate was chosen for."
        ),
        suggestion=text,
        view="loss_terms",
        result="history",
        params=_used(th, "kd_weight_high"),
        experiment=Experiment(
            {f"{path}.weight": 0.9, "distill.ce_weight": 0.1}, text, metric="student_acc", goal="up"
        ),
    )


def check_kd_vanishes(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """The distillation term vanishes: its share of the logit gradient, KD over KD + CE (measured
    on the test subset at the end of training), is at or below ``kd_share_low``."""
    share = _num(ev, "kd_share")
    path = _kd_path(ev)
    if share is None or path is None or not share <= th.kd_share_low:
        return None
    text = f"Set {path}.weight=0.9 and distill.ce_weight=0.1 (Hinton's recipe), same seed."
    return Finding(
        rule="kd_vanishes",
        title=f"The teacher hardly teaches: distillation is {_pct(share)} of the gradient",
        severity=_below(share, th.kd_share_low, 0.0),
        evidence=_pick(ev, "kd_share", "kd_weight", "ce_weight", "temperature", "agreement"),
        explanation=(
            f"With weight {_g(_num(ev, 'kd_weight'))} against ce_weight {_g(_num(ev, 'ce_weight'))}, the "
            f"distillation term makes up {_pct(share)} of the gradient on the student's logits: the run is "
            "training from the labels in disguise, and the teacher's soft labels are ignored."
        ),
        suggestion=text,
        view="loss_terms",
        result="history",
        params=_used(th, "kd_share_low"),
        experiment=Experiment(
            {f"{path}.weight": 0.9, "distill.ce_weight": 0.1}, text, metric="kd_share", goal="up"
        ),
    )


def check_temperature_low(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Temperature too low: the teacher's softened outputs ``softmax(z / T)`` have mean normalized
    entropy at or below ``soft_low`` — nearly one-hot, so they carry no more than the labels."""
    h = _num(ev, "teacher_soft_entropy")
    t = _num(ev, "temperature")
    path = _kd_path(ev)
    if h is None or t is None or path is None or not h <= th.soft_low:
        return None
    text = f"Set {path}.params.temperature=4 (Hinton et al. 2015's range 2-8), same seed."
    return Finding(
        rule="temperature_low",
        title=f"Temperature too low (T={t:g}): soft labels are nearly one-hot",
        severity=_below(h, th.soft_low, 0.0),
        evidence=_pick(
            ev, "temperature", "teacher_soft_entropy", "student_soft_entropy", "student_ece", "teacher_ece"
        ),
        explanation=(
            f"At T={t:g} the teacher's softened outputs have normalized entropy {_g(h)} (0 is one-hot, 1 "
            "uniform): the relative probabilities of the wrong classes, the dark knowledge distillation "
            "passes on, are squeezed to zero, and the T² factor shrinks the term."
        ),
        suggestion=text,
        view="softness_histogram",
        result="softness",
        params=_used(th, "soft_low"),
        experiment=Experiment(
            {f"{path}.params.temperature": 4.0}, text, metric="teacher_soft_entropy", goal="up"
        ),
    )


def check_temperature_high(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Temperature too high: the teacher's softened outputs have mean normalized entropy at or
    above ``soft_high`` — nearly uniform, so which class is right is barely in them."""
    h = _num(ev, "teacher_soft_entropy")
    t = _num(ev, "temperature")
    path = _kd_path(ev)
    if h is None or t is None or path is None or not h >= th.soft_high:
        return None
    text = f"Set {path}.params.temperature=4 (Hinton et al. 2015's range 2-8), same seed."
    return Finding(
        rule="temperature_high",
        title=f"Temperature too high (T={t:g}): soft labels are nearly uniform",
        severity=_beyond(h, th.soft_high) if h < 1 else 1.0,
        evidence=_pick(ev, "temperature", "teacher_soft_entropy", "student_soft_entropy", "gap"),
        explanation=(
            f"At T={t:g} the teacher's softened outputs have normalized entropy {_g(h)} (1 is uniform): every "
            "class looks about equally likely, and the T² factor makes this nearly flat target dominate the loss."
        ),
        suggestion=text,
        view="softness_histogram",
        result="softness",
        params=_used(th, "soft_high"),
        experiment=Experiment(
            {f"{path}.params.temperature": 4.0}, text, metric="teacher_soft_entropy", goal="down"
        ),
    )


def check_label_noise(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Noisy training labels: the teacher, right on ``teacher_acc`` of the test images, agrees with
    far fewer of the training labels (``label_noise``); without the training data, the run's own
    last-epoch training accuracy far below its test accuracy (``label_noise_history``)."""
    t_test = _num(ev, "teacher_acc")
    t_train = _num(ev, "teacher_train_label_acc")
    text = "Trust the teacher over the labels: distill.ce_weight=0 (soft labels only), same seed and data."
    exp = Experiment({"distill.ce_weight": 0.0}, text, metric="student_acc", goal="up")
    if t_test is not None and t_train is not None:
        d = t_test - t_train
        if not d >= th.label_noise:
            return None
        return Finding(
            rule="label_noise",
            title=f"Noisy labels: the teacher contradicts {_pct(1 - t_train)} of the training labels",
            severity=_beyond(d, th.label_noise),
            evidence=_pick(
                ev, "teacher_acc", "teacher_train_label_acc", "student_train_label_acc", "train_acc_last"
            ),
            explanation=(
                f"The teacher is right on {_pct(t_test)} of the test images but agrees with only {_pct(t_train)} "
                "of the training labels: about that share of the labels the student is trained on look wrong. "
                "Cross-entropy on them teaches the student the noise."
            ),
            suggestion=text,
            view="training_curves",
            result="history",
            params=_used(th, "label_noise"),
            experiment=exp,
        )
    tr, te = _num(ev, "train_acc_last"), _num(ev, "test_acc_last")
    if tr is None or te is None or ev.get("mixing"):
        return None
    d = te - tr
    if not d >= th.label_noise_history:
        return None
    return Finding(
        rule="label_noise",
        title=f"Noisy labels: training accuracy {_pct(tr)} stays far below test accuracy {_pct(te)}",
        severity=_beyond(d, th.label_noise_history),
        evidence=_pick(ev, "train_acc_last", "test_acc_last", "teacher_acc"),
        explanation=(
            "The student agrees with far fewer of its training labels than it gets right on the test split: "
            "many training labels are likely wrong (pass the training data to the doctor to measure it)."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "label_noise_history"),
        experiment=exp,
    )


def check_shortcut(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Shortcut learning (Geirhos et al. 2020): the training data pairs classes with contexts
    (``context_purity``, the share of training images whose context is their class's most frequent
    one, at least ``context_purity``) and, on test images whose context belongs to another class,
    the student answers that class more often than its errors would by chance and than the
    teacher does: ``context_follow - (1 - student_acc) / (K - 1) - teacher_context_follow >= shortcut``.
    """
    s = _num(ev, "context_follow")
    t = _num(ev, "teacher_context_follow")
    purity = _num(ev, "context_purity")
    if s is None or t is None or (purity is not None and purity < th.context_purity):
        return None
    acc, chance = _num(ev, "student_acc"), _num(ev, "chance")
    by_chance = (1.0 - acc) * chance / (1.0 - chance) if acc is not None and chance and chance < 1 else 0.0
    excess = s - by_chance - t
    if not excess >= th.shortcut:
        return None
    conf = ev.get("confounding")
    text = (
        "Follow the teacher's soft labels more and where it looks: distill.methods='1.0*kd + at', "
        "distill.ce_weight=0, same seed."
    )
    return Finding(
        rule="shortcut",
        title="The student learned the background, not the shape",
        severity=_beyond(excess, th.shortcut),
        evidence=_pick(
            ev,
            "context_follow",
            "teacher_context_follow",
            "student_context",
            "teacher_context",
            "context_purity",
            "confounding",
            "gap",
        ),
        explanation=(
            f"On test images whose background goes with another class, the student answers that class "
            f"{_pct(s)} of the time, the teacher {_pct(t)}"
            + (f"; the training data pairs each class with a background (confounding {conf})" if conf else "")
            + ". The student reads the context, which fails as soon as it changes."
        ),
        suggestion=text,
        view="localization_summary",
        result="cam",
        params=_used(th, "shortcut", "context_purity"),
        experiment=Experiment(
            {"distill.methods": "1.0*kd + at", "distill.ce_weight": 0.0},
            text,
            metric="context_follow",
            goal="down",
        ),
    )


def check_hint_miswired(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """A feature hint wired between different stages: the relative depths (stage index + 1 over the
    number of stages) of a configured (student layer, teacher layer) pair differ by ``hint_depth``
    or more (FitNets pair a middle layer with a middle layer, Romero et al. 2015)."""
    d = _num(ev, "hint_depth_gap")
    pair = ev.get("hint_pair")
    if d is None or pair is None or not d >= th.hint_depth:
        return None
    fix = ev.get("hint_fix") or {}
    s, t = pair
    good = fix.get("student_layer")
    text = (
        f"Pair the teacher's {t} with the student's {good} (the same relative depth), same seed."
        if good
        else "Leave the hint layers unset so the stages are paired by depth, same seed."
    )
    over = dict(fix.get("overrides") or {})
    return Finding(
        rule="hint_miswired",
        title=f"Feature hint mis-wired: student {s} is taught the teacher's {t}",
        severity=_beyond(d, th.hint_depth),
        evidence=_pick(ev, "hint_pair", "hint_depth_gap", "hint_cka", "gap"),
        explanation=(
            f"The hint pairs the student's {s} with the teacher's {t}, {d:.2f} apart in relative depth: the "
            "student's early layer is forced to produce the teacher's late, abstract features (or the reverse), "
            "which fights the rest of its network."
        ),
        suggestion=text,
        view="cka_heatmap",
        result="cka",
        params=_used(th, "hint_depth"),
        experiment=Experiment(over, text, metric="hint_depth_gap", goal="down"),
    )


def check_lr_low(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Learning rate too low: the student is far below the teacher (``gap``) and the rate is at or
    below ``lr_low`` times the optimizer's usual one: it is under-trained, not too small."""
    scale = _num(ev, "lr_scale")
    lr = _num(ev, "lr")
    if scale is None or lr is None or not scale <= th.lr_low:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    usual = _num(ev, "lr_usual") or lr * 10
    text = f"Train again with optim.lr={usual:g} (the usual rate for {ev.get('optimizer', 'this optimizer')}), same seed."
    return Finding(
        rule="lr_low",
        title=f"Learning rate too low (lr {lr:g}): the student is under-trained",
        severity=max(_below(math.log10(scale), math.log10(th.lr_low), -3.0), _beyond(gap, th.gap)),
        evidence=_pick(ev, "lr", "lr_scale", "optimizer", "gap", "student_acc", "teacher_acc"),
        explanation=(
            f"The learning rate {lr:g} is {1 / scale:.0f} times below the usual rate, and the student ends "
            f"{_pct(gap)} below the teacher: it has not had the steps to learn what the teacher shows."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "lr_low", "gap"),
        experiment=Experiment({"optim.lr": usual}, text, metric="gap", goal="down"),
    )


def check_too_short(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Too few steps: the student is far below the teacher and saw less than ``passes_low`` passes
    over its training data."""
    passes = _num(ev, "passes")
    if passes is None or not passes < th.passes_low:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    text = "Train for 3 full epochs (train.epochs=3, no max_steps), same seed."
    return Finding(
        rule="too_short",
        title=f"Too few epochs: the student saw {passes:.2f} passes over its data",
        severity=max(_below(passes, th.passes_low, 0.0), _beyond(gap, th.gap)),
        evidence=_pick(ev, "passes", "steps", "epochs", "gap", "student_acc", "teacher_acc"),
        explanation=(
            f"Training stopped after {ev.get('steps')} steps, {passes:.2f} passes over the training data, with the "
            f"student {_pct(gap)} below the teacher: it stopped before it could learn what the teacher shows."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "passes_low", "gap"),
        experiment=Experiment({"train.epochs": 3, "train.max_steps": None}, text, metric="gap", goal="down"),
    )


def check_capacity_gap(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Student too small for this teacher: far below the teacher (``gap``) with ``param_ratio`` or
    fewer times the teacher's parameters (Cho & Hariharan 2019; Mirzadeh et al. 2020, TAKD)."""
    ratio = _num(ev, "param_ratio")
    gap = _num(ev, "gap")
    if ratio is None or gap is None or ev.get("failed") or not (ratio >= th.param_ratio and gap >= th.gap):
        return None
    bigger = ev.get("bigger_student") or {}
    over = dict(bigger.get("overrides") or {})
    what = bigger.get("text") or "a larger student"
    text = (
        f"Train {what} with the same recipe and seed (or distil through a teacher assistant, method 'takd')."
    )
    return Finding(
        rule="capacity_gap",
        title=f"Student too small for this teacher: {_pct(gap)} below it with 1/{ratio:.0f} of its parameters",
        severity=max(_beyond(gap, th.gap), _beyond(ratio, th.param_ratio)),
        evidence=_pick(
            ev, "teacher_acc", "student_acc", "gap", "student_params", "teacher_params", "param_ratio"
        ),
        explanation=(
            f"The student has {ev.get('student_params')} parameters, 1/{ratio:.0f} of the teacher's "
            f"{ev.get('teacher_params')}, and ends {_pct(gap)} below it: it cannot represent the function it "
            "is asked to imitate, however long it trains."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "gap", "param_ratio"),
        experiment=Experiment(over, text, metric="gap", goal="down"),
    )


# ---- notes: observations that accompany a fault -------------------------------------------------
def check_calibration(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Calibration (a note): student ECE minus teacher ECE (15 bins, Guo et al. 2017) at or above ``ece_gap``."""
    s, t = _num(ev, "student_ece"), _num(ev, "teacher_ece")
    if s is None or t is None or not s - t >= th.ece_gap:
        return None
    conf, acc = _num(ev, "student_confidence"), _num(ev, "student_acc")
    word = "overconfident" if conf is not None and acc is not None and conf >= acc else "underconfident"
    return Finding(
        rule="calibration",
        title=f"Student is {word}: ECE {s:.3f} vs teacher {t:.3f}",
        severity=_beyond(s - t, th.ece_gap),
        evidence=_pick(ev, "student_ece", "teacher_ece", "student_confidence", "student_acc"),
        explanation=(
            f"Mean confidence {_pct(conf)} for an accuracy of {_pct(acc)}: the student's probabilities cannot be "
            "trusted the way the teacher's can. Fit a temperature on held-out data before using them."
        ),
        suggestion="Fit a temperature on held-out data before deployment (Guo et al. 2017).",
        view="reliability_diagrams",
        result="agreement",
        params=_used(th, "ece_gap"),
        level="note",
    )


def check_dark_knowledge(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Dark knowledge (a note): classes with at least ``min_class_samples`` samples whose non-target
    Spearman correlation of teacher and student logits is below ``dark_knowledge_min``."""
    values = ev.get("class_rank_correlation")
    counts = ev.get("class_counts")
    if values is None or counts is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    if v.shape != c.shape:
        raise DoctorError(
            f"class_counts: expected {v.size} counts to match the per-class values, got {c.size}"
        )
    names = list(ev.get("class_names") or [str(i) for i in range(v.size)])
    judged = np.isfinite(v) & (c >= th.min_class_samples)
    low = np.flatnonzero(judged & (v < th.dark_knowledge_min))
    if low.size == 0:
        return None
    low = low[np.argsort(v[low], kind="stable")]
    shown = ", ".join(f"{names[i]} ({v[i]:.2f})" for i in low[:5]) + (", …" if low.size > 5 else "")
    return Finding(
        rule="dark_knowledge",
        title=f"Dark knowledge lost for {low.size} class{'es' if low.size > 1 else ''}: {shown}",
        severity=_below(float(v[low[0]]), th.dark_knowledge_min, -1.0),
        evidence={"classes": [names[i] for i in low], "rank_correlation": [float(v[i]) for i in low]},
        explanation=(
            "For these classes the student orders the wrong answers differently from the teacher: it does not "
            "share the teacher's sense of which classes look alike."
        ),
        suggestion="Look at those classes in the confusion matrices; a temperature of 2-8 passes more of it on.",
        view="rank_correlation_bars",
        result="agreement",
        params=_used(th, "dark_knowledge_min", "min_class_samples"),
        level="note",
    )


def check_representation(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Representations (a note): the lowest linear CKA (Kornblith et al. 2019) over the layer pairs
    distillation trains is below ``min_matched_cka``."""
    values = ev.get("matched_cka")
    pairs = ev.get("layer_pairs")
    if not values:
        return None
    finite = [(float(x), i) for i, x in enumerate(values) if x is not None and math.isfinite(float(x))]
    if not finite:
        return None
    worst, at = min(finite)
    if not worst < th.min_matched_cka:
        return None
    t, s = pairs[at] if pairs else (str(at), str(at))
    return Finding(
        rule="representation",
        title=f"Representations differ: CKA {worst:.2f} between student {s} and teacher {t}",
        severity=_below(worst, th.min_matched_cka, 0.0),
        evidence={"min_cka": worst, "teacher_layer": t, "student_layer": s, "matched_cka": list(values)},
        explanation=(
            f"The student's {s} and the teacher's {t} encode the test images differently (linear CKA {worst:.2f}); "
            "logit matching alone does not pass on the teacher's intermediate structure."
        ),
        suggestion="A feature term at that depth (fitnet) or a relational one (rkd, crd) transfers it.",
        view="cka_heatmap",
        result="cka",
        params=_used(th, "min_matched_cka"),
        level="note",
    )


def check_sharpness(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Sharpness (a note): student / scratch-student top Hessian eigenvalue of the cross-entropy
    (power iteration, Pearlmutter 1994) at or above ``sharpness_ratio``."""
    s, r = _num(ev, "student_eigenvalue"), _num(ev, "scratch_eigenvalue")
    if s is None or r is None or r <= 0 or not s / r >= th.sharpness_ratio:
        return None
    return Finding(
        rule="sharpness",
        title=f"Sharper minimum than the scratch student ({s / r:.1f}x top eigenvalue)",
        severity=_beyond(s / r, th.sharpness_ratio),
        evidence={"student_eigenvalue": s, "scratch_eigenvalue": r, "ratio": s / r},
        explanation="Distillation usually finds flatter minima than training from the labels; this one is sharper.",
        suggestion="Compare the 1-D landscapes; a lower learning rate with a longer schedule often flattens it.",
        view="landscape_comparison",
        result="landscapes",
        params=_used(th, "sharpness_ratio"),
        level="note",
    )


#: every rule by name, in the order ties are broken (root causes before the symptoms they cause)
RULES: dict[str, Callable[[Evidence, DoctorThresholds], Finding | None]] = {
    "wrong_teacher": check_wrong_teacher,
    "lr_high": check_lr_high,
    "kd_dominates": check_kd_dominates,
    "label_noise": check_label_noise,
    "shortcut": check_shortcut,
    "hint_miswired": check_hint_miswired,
    "temperature_low": check_temperature_low,
    "temperature_high": check_temperature_high,
    "kd_vanishes": check_kd_vanishes,
    "lr_low": check_lr_low,
    "too_short": check_too_short,
    "capacity_gap": check_capacity_gap,
    "calibration": check_calibration,
    "dark_knowledge": check_dark_knowledge,
    "representation": check_representation,
    "sharpness": check_sharpness,
}

#: the rules whose findings are notes (never a warning)
NOTE_RULES = ("calibration", "dark_knowledge", "representation", "sharpness")

#: the evidence each rule needs, by name (for "not checked" reasons)
NEEDS: dict[str, tuple[str, ...]] = {
    "wrong_teacher": ("teacher_acc",),
    "lr_high": ("lr_scale", "gap"),
    "kd_dominates": ("kd_weight",),
    "label_noise": ("teacher_train_label_acc",),
    "shortcut": ("context_follow", "teacher_context_follow"),
    "hint_miswired": ("hint_depth_gap",),
    "temperature_low": ("teacher_soft_entropy",),
    "temperature_high": ("teacher_soft_entropy",),
    "kd_vanishes": ("kd_share",),
    "lr_low": ("lr_scale", "gap"),
    "too_short": ("passes", "gap"),
    "capacity_gap": ("param_ratio", "gap"),
    "calibration": ("student_ece", "teacher_ece"),
    "dark_knowledge": ("class_rank_correlation",),
    "representation": ("matched_cka",),
    "sharpness": ("student_eigenvalue", "scratch_eigenvalue"),
}


def missing_evidence(ev: Evidence) -> dict[str, str]:
    """Rules that cannot be checked on ``ev``, with the evidence each lacks (``label_noise`` falls
    back on the history when the training labels were not measured)."""
    out = {}
    for rule, names in NEEDS.items():
        lacking = [n for n in names if ev.get(n) is None]
        if rule == "label_noise" and lacking and ev.get("train_acc_last") is not None:
            continue
        if lacking:
            why = ev.get("why_missing")
            reasons = [why[n] for n in lacking if isinstance(why, Mapping) and why.get(n)]
            out[rule] = reasons[0] if reasons else f"no {', '.join(lacking)} measured"
    return out


def apply_rules(
    ev: Evidence, thresholds: DoctorThresholds | Mapping[str, Any] | None = None
) -> list[Finding]:
    """Every rule of :data:`RULES` applied to the evidence, the findings ranked (warnings before
    notes, then by decreasing severity, ties in registry order)."""
    from workbench.analysis.doctor.report import rank_findings

    th = as_thresholds(thresholds)
    found = [f for fn in RULES.values() if (f := fn(ev, th)) is not None]
    return rank_findings(found)
