"""The result dataclasses of the CAM analyses (numpy arrays plus what produced them).

Every result derives from :class:`~workbench.analysis._result.AnalysisResult` (``to_dict()``) and
carries ``class_names`` (or None) and ``params`` (the call's parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.analysis._common import AnalysisError
from workbench.analysis._result import AnalysisResult
from workbench.analysis.cam._checks import nanmean

__all__ = [
    "CAMComparison",
    "CAMResult",
    "CrossFaithfulnessResult",
    "FaithfulnessResult",
    "LocalizationResult",
    "MapAgreement",
]


@dataclass
class CAMResult(AnalysisResult):
    """One model's maps for a batch of images.

    ``raw``: ``(N, h, w)`` signed map at the layer's resolution, before ReLU and normalization, so
    magnitudes compare across models and images (pixel methods: ``(N, H, W)``, channels reduced).
    ``upsampled_raw``: ``raw`` bilinearly upsampled to the image size ``(N, H, W)``.
    ``maps``: ``(N, H, W)`` in ``[0, 1]``: ReLU where the method's paper applies it (before
    upsampling), upsampled, min-max normalized per image (a constant map becomes zeros).
    ``attributions``: ``(N, C, H, W)`` per-channel pixel attributions for pixel methods, else None.
    ``targets``: class of each map; ``target_mode``: how they were chosen ("label", "predicted",
    "teacher", "student" or "explicit"); ``predictions``/``probabilities``: the model's own outputs.
    ``layer``: module path of the maps ("input" for pixel methods). ``params``: method, its
    parameters (``method_params``), layer, target, batch size, device, memory format, fold_bn.
    """

    method: str
    layer: str
    target_mode: str
    targets: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    raw: np.ndarray
    upsampled_raw: np.ndarray
    maps: np.ndarray
    attributions: np.ndarray | None = None
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        """Number of images ``N``."""
        return int(self.maps.shape[0])


@dataclass
class LocalizationResult(AnalysisResult):
    """How well maps ``(N, H, W)`` sit on the known objects.

    ``energy_in_box``: energy-based pointing game (Wang et al. 2020, Score-CAM, sec. 5.2): share of
    the map's total inside the object's box (NaN for an all-zero map). ``energy_in_mask``: the
    same inside the object mask, ``context_reliance = 1 - energy_in_mask`` (both None without
    masks). ``predicted_boxes``: box of the region ``map >= threshold * max`` (its largest
    8-connected component when ``component == "largest"``, as in CAM, Zhou et al. 2016; the whole
    region for ``"all"``), ``(x0, y0, x1, y1)`` exclusive ends. ``box_iou`` against ``true_boxes``;
    ``correct``: GT-known localization hit, ``box_iou >= iou_threshold``.
    """

    threshold: float
    component: str
    iou_threshold: float
    energy_in_box: np.ndarray
    energy_in_mask: np.ndarray | None
    context_reliance: np.ndarray | None
    predicted_boxes: np.ndarray
    true_boxes: np.ndarray
    box_iou: np.ndarray
    correct: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_energy_in_box(self) -> float:
        """Mean energy-based pointing game score (NaN entries left out)."""
        return nanmean(self.energy_in_box)

    @property
    def mean_energy_in_mask(self) -> float:
        """Mean share of energy inside the masks (NaN without masks)."""
        return math.nan if self.energy_in_mask is None else nanmean(self.energy_in_mask)

    @property
    def mean_context_reliance(self) -> float:
        """Mean share of energy outside the masks (NaN without masks)."""
        return math.nan if self.context_reliance is None else nanmean(self.context_reliance)

    @property
    def gt_known_accuracy(self) -> float:
        """Fraction of images whose predicted box has IoU >= ``iou_threshold`` with the true box."""
        return float(self.correct.mean()) if self.correct.size else math.nan

    def summary(self) -> dict[str, float]:
        """The means as a flat dict (for tables)."""
        return {
            "energy_in_box": self.mean_energy_in_box,
            "energy_in_mask": self.mean_energy_in_mask,
            "context_reliance": self.mean_context_reliance,
            "gt_known_accuracy": self.gt_known_accuracy,
            "mean_box_iou": nanmean(self.box_iou),
        }


@dataclass
class MapAgreement(AnalysisResult):
    """How far the maps of two models ``a`` and ``b`` agree on the same images.

    Per image: ``pearson``, ``spearman`` (NaN where a map is constant), ``topk_iou`` and
    ``same_prediction``; ``per_class_*``: their means over the images of each class (grouped by
    the true labels, or by the first model's predictions without labels; NaN for an empty class).
    """

    a: str
    b: str
    pearson: np.ndarray
    spearman: np.ndarray
    topk_iou: np.ndarray
    same_prediction: np.ndarray
    per_class_pearson: np.ndarray
    per_class_spearman: np.ndarray
    per_class_topk_iou: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_pearson(self) -> float:
        """Mean per-image Pearson correlation (NaN entries left out)."""
        return nanmean(self.pearson)

    @property
    def mean_spearman(self) -> float:
        """Mean per-image Spearman correlation (NaN entries left out)."""
        return nanmean(self.spearman)

    @property
    def mean_topk_iou(self) -> float:
        """Mean per-image top-k region IoU."""
        return nanmean(self.topk_iou)


@dataclass
class CAMComparison(AnalysisResult):
    """Maps of a teacher, a student (and any extra models) on the same images, and how far they agree.

    ``teacher``/``student``: the two models' :class:`CAMResult` (named ``names``); ``extra``: the
    results of further models by name (e.g. a student trained from scratch). The teacher–student
    agreement sits in the top-level fields: per image ``pearson``, ``spearman`` (average ranks for
    ties; NaN where a map is constant), ``topk_iou`` (IoU of the ``top_k`` fraction of highest
    pixels of each map) and ``same_prediction``; ``per_class_*``: the means over the images of each
    class (NaN for a class without images), ``class_counts`` the images per class. ``labels``: the
    true classes (None when none were given; classes are then grouped by the teacher's predictions).
    ``pairwise``: a :class:`MapAgreement` for every pair of models, teacher–student first.
    ``teacher_localization``/``student_localization`` (and ``extra_localization``) when masks or
    boxes were given.
    """

    method: str
    target_mode: str
    top_k: float
    teacher: CAMResult
    student: CAMResult
    labels: np.ndarray | None
    pearson: np.ndarray
    spearman: np.ndarray
    topk_iou: np.ndarray
    same_prediction: np.ndarray
    class_counts: np.ndarray
    per_class_pearson: np.ndarray
    per_class_spearman: np.ndarray
    per_class_topk_iou: np.ndarray
    teacher_localization: LocalizationResult | None = None
    student_localization: LocalizationResult | None = None
    names: tuple[str, str] = ("teacher", "student")
    extra: dict[str, CAMResult] = field(default_factory=dict)
    extra_localization: dict[str, LocalizationResult] = field(default_factory=dict)
    pairwise: list[MapAgreement] = field(default_factory=list)
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def results(self) -> dict[str, CAMResult]:
        """Every model's result by name: teacher, student, then the extra models."""
        return {self.names[0]: self.teacher, self.names[1]: self.student, **self.extra}

    @property
    def localization(self) -> dict[str, LocalizationResult]:
        """Every model's localization by name (empty without masks or boxes)."""
        out = {}
        if self.teacher_localization is not None:
            out[self.names[0]] = self.teacher_localization
        if self.student_localization is not None:
            out[self.names[1]] = self.student_localization
        out.update(self.extra_localization)
        return out

    def agreement(self, a: str, b: str) -> MapAgreement:
        """The :class:`MapAgreement` of models ``a`` and ``b`` (in either order)."""
        for pair in self.pairwise:
            if {pair.a, pair.b} == {a, b}:
                return pair
        known = ", ".join(f"{p.a}/{p.b}" for p in self.pairwise) or "none"
        raise AnalysisError(f"agreement: no pair {a!r}/{b!r} in this comparison; known: {known}")

    @property
    def mean_pearson(self) -> float:
        """Mean per-image teacher–student Pearson correlation (NaN entries left out)."""
        return nanmean(self.pearson)

    @property
    def mean_spearman(self) -> float:
        """Mean per-image teacher–student Spearman correlation (NaN entries left out)."""
        return nanmean(self.spearman)

    @property
    def mean_topk_iou(self) -> float:
        """Mean per-image teacher–student top-k region IoU."""
        return nanmean(self.topk_iou)


@dataclass
class FaithfulnessResult(AnalysisResult):
    """Deletion or insertion curves (Petsiuk et al. 2018, RISE).

    ``fractions``: ``(steps + 1,)`` share of pixels removed (deletion) or inserted (insertion);
    ``scores``: ``(N, steps + 1)`` target-class score at each fraction (softmax probability for
    ``score == "prob"``, logit for ``"logit"``); ``auc``: ``(N,)`` trapezoid area under each curve.
    Lower deletion AUC and higher insertion AUC mean a more faithful map.
    """

    mode: str
    score: str
    baseline: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_auc(self) -> float:
        """Mean AUC over images."""
        return float(self.auc.mean())

    @property
    def mean_curve(self) -> np.ndarray:
        """Mean score at each fraction, ``(steps + 1,)``."""
        return self.scores.mean(axis=0)


@dataclass
class CrossFaithfulnessResult(AnalysisResult):
    """The four combinations of (whose map) x (whose model scores it) for deletion or insertion.

    ``student_map_on_teacher``: the student's map ordering pixels, the teacher's score measured —
    does the student look where the teacher's decision actually depends? ``names``: the two
    models' display names.
    """

    mode: str
    teacher_map_on_teacher: FaithfulnessResult
    student_map_on_teacher: FaithfulnessResult
    teacher_map_on_student: FaithfulnessResult
    student_map_on_student: FaithfulnessResult
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def auc_matrix(self) -> np.ndarray:
        """Mean AUCs ``(2, 2)``: rows = scoring model (teacher, student), columns = map (teacher, student)."""
        return np.array(
            [
                [self.teacher_map_on_teacher.mean_auc, self.student_map_on_teacher.mean_auc],
                [self.teacher_map_on_student.mean_auc, self.student_map_on_student.mean_auc],
            ]
        )
