"""The student doctor: run the analyses on a distilled student and say, in order of severity, what
looks wrong, the numbers that show it, why it matters and which experiment to try next.

* :mod:`~workbench.analysis.doctor.rules` — the rule registry :data:`RULES`: each rule a pure
  function from numbers to a :class:`Finding` (or ``None``), its thresholds in
  :class:`DoctorThresholds`.
* :mod:`~workbench.analysis.doctor.evidence` — :func:`diagnose_models`: gathers the numbers from a
  teacher, a student and a set of images with the analyses of this package and applies the rules.
* :mod:`~workbench.analysis.doctor.softness` — the softened-output entropies (:func:`softness_from_logits`).
* :mod:`~workbench.analysis.doctor.report` — :class:`Finding`, :class:`DoctorReport`, :func:`rank_findings`.

Diagnosing a stored run (loading its teacher, student, scratch student, data and history) is a
service above training and the run store: :func:`workbench.diagnosis.diagnose`.
"""

from __future__ import annotations

from typing import Any

from workbench.analysis.doctor.evidence import (
    config_temperature,
    dataset_inputs,
    diagnose_models,
    distilled_layer_pairs,
)
from workbench.analysis.doctor.report import DoctorError, DoctorReport, Finding, rank_findings
from workbench.analysis.doctor.rules import (
    RULES,
    DoctorThresholds,
    check_calibration,
    check_capacity_gap,
    check_context_reliance,
    check_dark_knowledge,
    check_loss_balance,
    check_representation,
    check_sharpness,
    check_softness,
)
from workbench.analysis.doctor.softness import SoftnessResult, softness_from_logits

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
    "config_temperature",
    "dataset_inputs",
    "diagnose_models",
    "distilled_layer_pairs",
    "rank_findings",
    "softness_from_logits",
]


def __getattr__(name: str) -> Any:
    # ``diagnose`` (a stored run) lives above training and the run store, in workbench.diagnosis;
    # it is reached from here only on request, so importing this package never loads them.
    if name == "diagnose":
        from workbench.diagnosis import diagnose

        return diagnose
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
