"""The student doctor: measure a distilled student against its teacher, its run's config and its
history, and say in the user's terms what went wrong, with the numbers that show it, the view
that draws them and a concrete next experiment (config overrides a face can run).

* :mod:`~workbench.analysis.doctor.rules` — the rule registry :data:`RULES`: each rule a pure
  function from the evidence (a flat mapping of named numbers) to a :class:`Finding` (or
  ``None``), its thresholds in :class:`DoctorThresholds`, read off the doctor clinic
  (``benchmarks/doctor_clinic.py``); :func:`apply_rules`.
* :mod:`~workbench.analysis.doctor.evidence` — :func:`diagnose_models`: gathers the evidence from a
  teacher, a student, a set of images, the run's config and history, and applies the rules.
* :mod:`~workbench.analysis.doctor.softness` — the softened-output entropies (:func:`softness_from_logits`).
* :mod:`~workbench.analysis.doctor.report` — :class:`Finding`, :class:`Experiment`,
  :class:`DoctorReport`, :func:`rank_findings`, :func:`apply_overrides`.

Diagnosing a stored run (loading its teacher, student, data and history) and verifying the top
finding's experiment are services above training and the run store: :func:`workbench.diagnosis.diagnose`
and :func:`workbench.diagnosis.verify`.
"""

from __future__ import annotations

from typing import Any

from workbench.analysis.doctor.evidence import (
    config_evidence,
    config_temperature,
    dataset_inputs,
    diagnose_models,
    distilled_layer_pairs,
    history_evidence,
)
from workbench.analysis.doctor.report import (
    DoctorError,
    DoctorReport,
    Experiment,
    Finding,
    apply_overrides,
    rank_findings,
)
from workbench.analysis.doctor.rules import (
    NOTE_RULES,
    RULES,
    DoctorThresholds,
    apply_rules,
    as_thresholds,
    missing_evidence,
)
from workbench.analysis.doctor.softness import SoftnessResult, softness_from_logits

__all__ = [
    "NOTE_RULES",
    "RULES",
    "DoctorError",
    "DoctorReport",
    "DoctorThresholds",
    "Experiment",
    "Finding",
    "SoftnessResult",
    "apply_overrides",
    "apply_rules",
    "as_thresholds",
    "config_evidence",
    "config_temperature",
    "dataset_inputs",
    "diagnose_models",
    "distilled_layer_pairs",
    "history_evidence",
    "missing_evidence",
    "rank_findings",
    "softness_from_logits",
]


def __getattr__(name: str) -> Any:
    # ``diagnose`` / ``verify`` (a stored run) live above training and the run store, in
    # workbench.diagnosis; they are reached from here only on request, so importing this package
    # never loads them.
    if name in ("diagnose", "verify"):
        import workbench.diagnosis as diagnosis

        return getattr(diagnosis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
