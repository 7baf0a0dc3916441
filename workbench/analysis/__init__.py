"""Analyses of a teacher and a student (models + data -> typed results).

Modules: :mod:`~workbench.analysis.cam` (a package: class activation maps and attributions,
compared across models), :mod:`~workbench.analysis.agreement`, :mod:`~workbench.analysis.similarity`
(CKA between models; the estimators in :mod:`~workbench.analysis.cka`, the feature reading in
:mod:`~workbench.analysis.features`), :mod:`~workbench.analysis.embedding`,
:mod:`~workbench.analysis.landscape` and :mod:`~workbench.analysis.interpolation` (over
:mod:`~workbench.analysis.objectives`, :mod:`~workbench.analysis.evaluation`,
:mod:`~workbench.analysis.directions` and :mod:`~workbench.analysis.landscape_grid`),
:mod:`~workbench.analysis.hessian`, :mod:`~workbench.analysis.difficulty` and
:mod:`~workbench.analysis.doctor` (a package: rules, evidence, report). Every analysis on models
takes ``(teacher, student, images, labels, *, ...)`` with ``progress=`` and ``cancel=``
(:mod:`workbench.runtime`), computes on a copy (the caller's model is never changed) and returns a
dataclass with ``class_names``, ``params`` and ``to_dict()``. The landscape objectives (``cross_entropy``, ``kd``,
``agreement``, ``accuracy``) are reached through their module, ``workbench.analysis.objectives``.
"""

from workbench.analysis._common import AnalysisError
from workbench.analysis.agreement import (
    GALLERY_CATEGORIES,
    AgreementResult,
    DisagreementGallery,
    ReliabilityDiagram,
    agreement_from_logits,
    agreement_report,
    nontarget_rank_correlation,
    reliability_diagram,
    soft_labels_across_temperatures,
)
from workbench.analysis.cam import (
    CAM_METHODS,
    TARGET_MODES,
    CAMComparison,
    CAMResult,
    CrossFaithfulnessResult,
    FaithfulnessResult,
    LocalizationResult,
    MapAgreement,
    cam_method_schema,
    compare_cams,
    compare_maps,
    compute_cams,
    cross_faithfulness,
    curve_auc,
    describe_cam_methods,
    faithfulness,
    list_cam_methods,
    localization_metrics,
)
from workbench.analysis.cka import KERNELS, MinibatchCKA, linear_cka, rbf_cka
from workbench.analysis.difficulty import DifficultyResult, difficulty_from_logits, difficulty_report
from workbench.analysis.directions import random_direction
from workbench.analysis.doctor import (
    RULES,
    DoctorError,
    DoctorInputs,
    DoctorReport,
    DoctorThresholds,
    Finding,
    SoftnessResult,
    dataset_inputs,
    diagnose_models,
    distilled_layer_pairs,
    rank_findings,
    softness_from_logits,
)
from workbench.analysis.embedding import EMBED_METHODS, EmbeddingResult, embedding_2d
from workbench.analysis.hessian import (
    HessianEigenResult,
    HessianTraceResult,
    hessian_top_eigenvalue,
    hessian_trace,
)
from workbench.analysis.interpolation import interpolate
from workbench.analysis.landscape import BN_MODES, landscape_1d, landscape_2d
from workbench.analysis.landscape_grid import ORDERS, LandscapeResult
from workbench.analysis.objectives import Objective, builtin_objectives
from workbench.analysis.similarity import (
    CKAResult,
    CKATrainingResult,
    cka_matrix,
    cka_over_training,
    matched_pairs,
)
from workbench.analysis.soft_labels import SoftLabelResult, soft_labels, soft_labels_from_logits
from workbench.metrics import expected_calibration_error  # the one ECE (the engine's metric too)

__all__ = [
    "RULES",
    "DoctorError",
    "DoctorInputs",
    "DoctorReport",
    "DoctorThresholds",
    "Finding",
    "SoftLabelResult",
    "SoftnessResult",
    "soft_labels",
    "soft_labels_from_logits",
    "dataset_inputs",
    "diagnose_models",
    "distilled_layer_pairs",
    "rank_findings",
    "softness_from_logits",
    "BN_MODES",
    "CAM_METHODS",
    "GALLERY_CATEGORIES",
    "TARGET_MODES",
    "AgreementResult",
    "AnalysisError",
    "CAMComparison",
    "CAMResult",
    "CKAResult",
    "CKATrainingResult",
    "CrossFaithfulnessResult",
    "EMBED_METHODS",
    "KERNELS",
    "MapAgreement",
    "ORDERS",
    "cam_method_schema",
    "describe_cam_methods",
    "matched_pairs",
    "DifficultyResult",
    "DisagreementGallery",
    "EmbeddingResult",
    "FaithfulnessResult",
    "HessianEigenResult",
    "HessianTraceResult",
    "LandscapeResult",
    "LocalizationResult",
    "MinibatchCKA",
    "Objective",
    "ReliabilityDiagram",
    "agreement_from_logits",
    "agreement_report",
    "builtin_objectives",
    "cka_matrix",
    "cka_over_training",
    "compare_cams",
    "compare_maps",
    "compute_cams",
    "cross_faithfulness",
    "curve_auc",
    "difficulty_from_logits",
    "difficulty_report",
    "embedding_2d",
    "expected_calibration_error",
    "faithfulness",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "interpolate",
    "landscape_1d",
    "landscape_2d",
    "linear_cka",
    "localization_metrics",
    "list_cam_methods",
    "nontarget_rank_correlation",
    "random_direction",
    "rbf_cka",
    "reliability_diagram",
    "soft_labels_across_temperatures",
]
