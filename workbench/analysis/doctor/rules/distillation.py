"""The rules that read the distillation terms: their weight against cross-entropy, the
temperature of the soft labels, and how a feature hint is wired."""

from __future__ import annotations

from workbench.analysis.doctor.findings import Experiment, Finding
from workbench.analysis.doctor.rules._helpers import (
    Evidence,
    _below,
    _beyond,
    _g,
    _kd_path,
    _num,
    _pct,
    _pick,
    _used,
)
from workbench.analysis.doctor.thresholds import DoctorThresholds

__all__ = [
    "check_hint_miswired",
    "check_kd_dominates",
    "check_kd_vanishes",
    "check_temperature_high",
    "check_temperature_low",
]


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

