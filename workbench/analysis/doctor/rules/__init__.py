"""The doctor's rules: each a small pure function from the measured evidence to a :class:`Finding`
(or ``None``), registered by name in :data:`RULES`; :func:`apply_rules` applies them all and
:func:`rank_findings` orders what fired.

The evidence is one flat mapping of named numbers (see :mod:`workbench.analysis.doctor.collectors`
for how each is measured): what the run recorded in its config (method, temperature, weights,
learning rate, hint layers, data options), what its history logged, and what the analyses
measure on the teacher and the student. A rule reads the names it needs, compares them with the
fields of :class:`~workbench.analysis.doctor.thresholds.DoctorThresholds` and returns a finding
that states the fault in the user's terms, with its numbers, the view that shows them and a
concrete next experiment (:class:`~workbench.analysis.doctor.findings.Experiment`: config
overrides plus a sentence). A rule whose evidence is missing returns ``None`` and
:func:`missing_evidence` says why.

The rules are grouped by what they read: :mod:`.teacher_and_data` (the teacher's accuracy, the
training labels, the images' context), :mod:`.training` (learning rate, length of training,
capacity), :mod:`.distillation` (the distillation terms' weights, temperature and hint wiring)
and :mod:`.notes` (observations that accompany a fault). Every threshold was read off the doctor
clinic (``benchmarks/doctor_clinic.py``); ``docs/doctor.md`` lists each one's margins.

Severity lies in ``[0.5, 1]``: 0.5 exactly at the threshold, growing towards 1 the further the
evidence lies beyond it: ``1 - t / (2 v)`` for a quantity where higher is worse,
``0.5 + 0.5 (t - v) / (t - floor)`` where lower is worse. Findings of level ``"warning"`` name a
fault; ``"note"`` findings are observations that accompany one (calibration, dark knowledge,
representations, sharpness) and never make a run unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workbench.analysis.doctor.findings import Finding
from workbench.analysis.doctor.rules._helpers import Evidence
from workbench.analysis.doctor.rules.distillation import (
    check_hint_miswired,
    check_kd_dominates,
    check_kd_vanishes,
    check_temperature_high,
    check_temperature_low,
)
from workbench.analysis.doctor.rules.notes import (
    check_calibration,
    check_dark_knowledge,
    check_representation,
    check_sharpness,
)
from workbench.analysis.doctor.rules.teacher_and_data import (
    check_label_noise,
    check_shortcut,
    check_wrong_teacher,
)
from workbench.analysis.doctor.rules.training import (
    check_capacity_gap,
    check_lr_high,
    check_lr_low,
    check_too_short,
)
from workbench.analysis.doctor.thresholds import DoctorThresholds, as_thresholds

__all__ = [
    "NEEDS",
    "NOTE_RULES",
    "RULES",
    "Evidence",
    "apply_rules",
    "missing_evidence",
    "rank_findings",
]


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
    th = as_thresholds(thresholds)
    found = [f for fn in RULES.values() if (f := fn(ev, th)) is not None]
    return rank_findings(found)


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """``findings`` ranked: warnings before notes, then decreasing severity; equal severities keep
    the order of the rule registry :data:`RULES`."""
    order = {name: i for i, name in enumerate(RULES)}
    return sorted(
        findings,
        key=lambda f: (f.level != "warning", -float(f.severity), order.get(f.rule, len(order))),
    )
