"""The student doctor: measure a distilled student against its teacher, its run's config and its
history, and say in the user's terms what went wrong, with the numbers that show it, the view
that draws them and a concrete next experiment (config overrides a face can run).

The package's modules, each importing only those listed before it:

* :mod:`~workbench.analysis.doctor.findings` — :class:`Finding`, :class:`Experiment`,
  :func:`apply_overrides`, :class:`DoctorError`.
* :mod:`~workbench.analysis.doctor.thresholds` — :class:`DoctorThresholds` (read off the doctor
  clinic, ``benchmarks/doctor_clinic.py``), :func:`as_thresholds`.
* :mod:`~workbench.analysis.doctor.rules` — the rule registry :data:`RULES`: each rule a pure
  function from the evidence (a flat mapping of named numbers) to a :class:`Finding` (or
  ``None``), grouped in submodules by what they read; :func:`apply_rules`, :func:`rank_findings`,
  :func:`missing_evidence`.
* :mod:`~workbench.analysis.doctor.report` — :class:`DoctorReport`.
* :mod:`~workbench.analysis.doctor.softness` — the softened-output entropies (:func:`softness_from_logits`).
* :mod:`~workbench.analysis.doctor.inputs` — :class:`DoctorInputs`, the data a student is examined
  on, and :func:`dataset_inputs`.
* :mod:`~workbench.analysis.doctor.recorded` — what a run recorded, as evidence: its config and
  history (:func:`config_evidence`, :func:`history_evidence`, :func:`config_temperature`,
  :func:`distilled_layer_pairs`).
* :mod:`~workbench.analysis.doctor.exam` — :class:`DoctorOptions` and the examination the
  collectors share.
* :mod:`~workbench.analysis.doctor.collectors` — the evidence collector registry :data:`COLLECTORS`.
* :mod:`~workbench.analysis.doctor.evidence` — :func:`diagnose_models`: check the inputs, run the
  collectors, apply the rules.

Diagnosing a stored run (loading its teacher, student, data and history) and verifying the top
finding's experiment are services above training and the run store: :func:`workbench.diagnosis.diagnose`
and :func:`workbench.diagnosis.verify`.
"""

from __future__ import annotations

from workbench.analysis.doctor.collectors import COLLECTORS
from workbench.analysis.doctor.evidence import diagnose_models
from workbench.analysis.doctor.exam import DoctorOptions
from workbench.analysis.doctor.findings import DoctorError, Experiment, Finding, apply_overrides
from workbench.analysis.doctor.inputs import DoctorInputs, dataset_inputs
from workbench.analysis.doctor.recorded import (
    config_evidence,
    config_temperature,
    distilled_layer_pairs,
    history_evidence,
)
from workbench.analysis.doctor.report import DoctorReport
from workbench.analysis.doctor.rules import NOTE_RULES, RULES, apply_rules, missing_evidence, rank_findings
from workbench.analysis.doctor.softness import SoftnessResult, softness_from_logits
from workbench.analysis.doctor.thresholds import DoctorThresholds, as_thresholds

__all__ = [
    "COLLECTORS",
    "NOTE_RULES",
    "RULES",
    "DoctorError",
    "DoctorInputs",
    "DoctorOptions",
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
