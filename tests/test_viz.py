"""Every view returns a plotly figure whose traces carry exactly the result's arrays.

Results are small hand-made dataclasses (no training, no model runs).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from workbench import viz
from workbench.analysis.agreement import AgreementResult, DisagreementGallery, ReliabilityDiagram
from workbench.analysis.cam import (
    CAMComparison,
    CAMResult,
    CrossFaithfulnessResult,
    FaithfulnessResult,
    LocalizationResult,
)
from workbench.analysis.difficulty import DifficultyResult
from workbench.analysis.doctor import DoctorReport, DoctorThresholds, Finding, SoftnessResult
from workbench.analysis.embedding import EmbeddingResult
from workbench.analysis.landscape_grid import LandscapeResult
from workbench.analysis.similarity import CKAResult, CKATrainingResult
from workbench.viz import VizError


def _types(fig: go.Figure) -> list[str]:
    return [t.type for t in fig.data]


# ---- images ------------------------------------------------------------------------------------
def test_display_images_from_uint8_float_and_normalized():
    raw = torch.tensor([[[[0, 255], [10, 20]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    out = viz.to_display_images(raw)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, :, :, 0].tolist() == [[0, 255], [10, 20]]
    assert (out[..., 0] == out[..., 2]).all()  # grey repeated to RGB

    halves = np.full((2, 3, 1, 1), 0.5, dtype=np.float32)
    assert viz.to_display_images(halves)[0, 0, 0].tolist() == [128, 128, 128]  # round(127.5)
    over = np.array([[[[-1.0]], [[2.0]], [[0.2]]]])
    assert viz.to_display_images(over)[0, 0, 0].tolist() == [0, 255, 51]  # clipped, 0.2 * 255 = 51

    # normalized: x = (p - mean) / std, so p = x * std + mean
    x = torch.tensor([[[[0.0, 2.0]]]])
    assert viz.to_display_images(x, mean=[0.5], std=[0.25])[0, 0, :, 0].tolist() == [128, 255]


def test_display_images_rejects_bad_input():
    with pytest.raises(VizError, match="mean"):
        viz.to_display_images(np.zeros((1, 1, 2, 2)), mean=[0.5])
    with pytest.raises(VizError, match="images"):
        viz.to_display_images(np.zeros((1, 2, 2, 2)))
    with pytest.raises(VizError, match="dtype"):
        viz.to_display_images(np.zeros((1, 1, 2, 2), dtype=np.int32))
    with pytest.raises(VizError, match="uint8"):
        viz.to_display_images(np.zeros((1, 1, 2, 2), dtype=np.uint8), mean=[0.1], std=[0.2])
    with pytest.raises(VizError, match="images"):
        viz.to_display_images([1, 2, 3])


# ---- CAM ------------------------------------------------------------------------------------------
def _cam_result(maps: np.ndarray, preds: list[int]) -> CAMResult:
    n = maps.shape[0]
    probs = np.full((n, 3), 1.0 / 3.0)
    return CAMResult(
        method="gradcam",
        layer="features.2",
        target_mode="label",
        targets=np.array([0, 1, 2][:n]),
        predictions=np.array(preds),
        probabilities=probs,
        raw=maps[:, ::2, ::2],
        upsampled_raw=maps,
        maps=maps,
    )


def _localization(in_mask: list[float] | None) -> LocalizationResult:
    n = 3
    return LocalizationResult(
        threshold=0.2,
        component="largest",
        iou_threshold=0.5,
        energy_in_box=np.array([0.9, 0.8, 0.7]),
        energy_in_mask=None if in_mask is None else np.array(in_mask),
        context_reliance=None if in_mask is None else 1.0 - np.array(in_mask),
        predicted_boxes=np.zeros((n, 4)),
        true_boxes=np.zeros((n, 4)),
        box_iou=np.array([0.6, 0.4, 0.8]),
        correct=np.array([True, False, True]),
    )


@pytest.fixture
def comparison() -> CAMComparison:
    rng = np.random.default_rng(0)
    t_maps = rng.random((3, 4, 4))
    s_maps = rng.random((3, 4, 4))
    return CAMComparison(
        method="gradcam",
        target_mode="label",
        top_k=0.2,
        teacher=_cam_result(t_maps, [0, 1, 2]),
        student=_cam_result(s_maps, [0, 2, 2]),
        labels=np.array([0, 1, 2]),
        pearson=np.array([0.5, -0.25, 0.125]),
        spearman=np.array([0.4, 0.0, 0.1]),
        topk_iou=np.array([1.0, 0.0, 0.5]),
        same_prediction=np.array([True, False, True]),
        class_counts=np.array([1, 1, 1]),
        per_class_pearson=np.array([0.5, -0.25, np.nan]),
        per_class_spearman=np.array([0.4, 0.0, np.nan]),
        per_class_topk_iou=np.array([1.0, 0.0, np.nan]),
        teacher_localization=_localization([0.75, 0.5, 0.25]),
        student_localization=_localization([0.25, 0.5, 0.0]),
    )


def test_cam_grid_with_images_overlays_each_map(comparison):
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    fig = viz.cam_grid(comparison, images, max_images=2, class_names=["a", "b", "c"], title="grid")
    assert isinstance(fig, go.Figure)
    # per row: image, (image, teacher heatmap), (image, student heatmap)
    assert _types(fig) == ["image", "image", "heatmap", "image", "heatmap"] * 2
    heat = [t for t in fig.data if t.type == "heatmap"]
    np.testing.assert_array_equal(heat[0].z, comparison.teacher.maps[0])
    np.testing.assert_array_equal(heat[1].z, comparison.student.maps[0])
    np.testing.assert_array_equal(heat[3].z, comparison.student.maps[1])
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 6
    assert "r=0.50" in titles[2] and "r=-0.25" in titles[5]
    assert "pred c" in titles[5]  # the student predicts class 2 for image 1
    assert fig.layout.title.text == "grid"


def test_cam_grid_maps_only_and_chosen_indices(comparison):
    fig = viz.cam_grid(comparison, indices=[2])
    assert _types(fig) == ["heatmap", "heatmap"]
    np.testing.assert_array_equal(fig.data[1].z, comparison.student.maps[2])
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 of the map on top
    with pytest.raises(VizError, match="indices"):
        viz.cam_grid(comparison, indices=[3])
    with pytest.raises(VizError, match="images"):
        viz.cam_grid(comparison, torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(VizError, match="comparison"):
        viz.cam_grid(object())


def test_cam_class_agreement_bars(comparison):
    fig = viz.cam_class_agreement(comparison, ["a", "b", "c"])
    assert _types(fig) == ["bar"] * 3
    np.testing.assert_array_equal(fig.data[0].y, comparison.per_class_pearson)
    np.testing.assert_array_equal(fig.data[2].y, comparison.per_class_topk_iou)
    assert list(fig.data[1].x) == ["a", "b", "c"]
    assert fig.data[2].name == "top-20% IoU"


def test_localization_summary_values_and_missing_masks(comparison):
    fig = viz.localization_summary(comparison)
    assert _types(fig) == ["bar", "bar"]
    assert [t.name for t in fig.data] == ["teacher", "student"]
    # teacher: box 0.8, mask 0.5, context 0.5, GT-known 2/3, IoU 0.6
    np.testing.assert_allclose(fig.data[0].y, [0.8, 0.5, 0.5, 2 / 3, 0.6])
    np.testing.assert_allclose(fig.data[1].y, [0.8, 0.25, 0.75, 2 / 3, 0.6])
    no_masks = viz.localization_summary({"teacher": _localization(None)})
    assert len(no_masks.data[0].x) == 3  # the two mask metrics are undefined and left out
    comparison.teacher_localization = None
    with pytest.raises(VizError, match="localization"):
        viz.localization_summary(comparison)


def _faith(scores: list[list[float]], mode: str = "deletion") -> FaithfulnessResult:
    s = np.array(scores)
    f = np.linspace(0.0, 1.0, s.shape[1])
    auc = ((s[:, 1:] + s[:, :-1]) / 2 * np.diff(f)).sum(1)
    return FaithfulnessResult(mode=mode, score="prob", baseline="zeros", fractions=f, scores=s, auc=auc)


def test_faithfulness_curves_and_cross_matrix():
    tt = _faith([[1.0, 0.5, 0.0], [1.0, 1.0, 0.0]])  # AUCs 0.5 and 0.75
    st = _faith([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # AUC 1
    ts = _faith([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # AUC 0
    ss = _faith([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # AUC 0.25
    cross = CrossFaithfulnessResult("deletion", tt, st, ts, ss)
    fig = viz.faithfulness_curves(cross)
    assert _types(fig) == ["scatter"] * 4
    np.testing.assert_allclose(fig.data[0].y, [1.0, 0.75, 0.0])
    np.testing.assert_array_equal(fig.data[0].x, [0.0, 0.5, 1.0])
    assert "AUC 0.625" in fig.data[0].name and "AUC 0.250" in fig.data[3].name
    assert fig.data[1].line.dash == "solid" and fig.data[2].line.dash == "dash"
    assert fig.data[0].line.color == viz.TEACHER_COLOR and fig.data[1].line.color == viz.STUDENT_COLOR

    heat = viz.cross_faithfulness_heatmap(cross)
    assert _types(heat) == ["heatmap"]
    np.testing.assert_allclose(heat.data[0].z, [[0.625, 1.0], [0.0, 0.25]])

    single = viz.faithfulness_curves(_faith([[1.0, 0.0]], "insertion"))
    assert len(single.data) == 1 and "inserted" in single.layout.xaxis.title.text


# ---- agreement ------------------------------------------------------------------------------------
def _cal(acc: list[float], conf: list[float], ece: float) -> ReliabilityDiagram:
    return ReliabilityDiagram(np.array([0.0, 0.5, 1.0]), np.array(conf), np.array(acc), np.array([1, 3]), ece)


@pytest.fixture
def agreement() -> AgreementResult:
    # 4 samples, 3 classes: labels 0 1 2 2; teacher predicts 0 1 2 1, student 0 2 2 0
    labels = np.array([0, 1, 2, 2])
    tp, sp = np.array([0, 1, 2, 1]), np.array([0, 2, 2, 0])
    conf_t = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]])
    conf_s = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1]])
    gallery = DisagreementGallery(
        indices=np.array([1, 3]),
        category=np.array([0, 1]),
        labels=np.array([1, 2]),
        teacher_pred=np.array([1, 1]),
        student_pred=np.array([2, 0]),
        teacher_confidence=np.array([0.9, 0.6]),
        student_confidence=np.array([0.8, 0.7]),
    )
    probs = np.full((4, 3), 1.0 / 3.0)
    return AgreementResult(
        n_samples=4,
        num_classes=3,
        temperature=4.0,
        labels=labels,
        teacher_logits=np.zeros((4, 3)),
        student_logits=np.zeros((4, 3)),
        teacher_probs=probs,
        student_probs=probs,
        teacher_pred=tp,
        student_pred=sp,
        agree=tp == sp,
        agreement=0.5,
        teacher_accuracy=0.75,
        student_accuracy=0.5,
        kl_per_sample=np.zeros(4),
        kl=0.0,
        js_per_sample=np.zeros(4),
        js=0.0,
        class_counts=np.array([1, 1, 2]),
        per_class_teacher_accuracy=np.array([1.0, 1.0, 0.5]),
        per_class_student_accuracy=np.array([1.0, 0.0, 0.5]),
        per_class_agreement=np.array([1.0, 0.0, 0.5]),
        confusion_teacher=conf_t,
        confusion_student=conf_s,
        confusion_diff=conf_s - conf_t,
        teacher_calibration=_cal([1.0, 0.5], [0.4, 0.9], 0.25),
        student_calibration=_cal([np.nan, 0.25], [np.nan, 0.75], 0.5),
        rank_correlation=np.array([1.0, -1.0, 0.5, np.nan]),
        rank_correlation_mean=1.0 / 6.0,
        per_class_rank_correlation=np.array([1.0, -1.0, 0.5]),
        gallery=gallery,
    )


def test_confusion_matrices_and_difference(agreement):
    fig = viz.confusion_matrices(agreement, ["a", "b", "c"])
    assert _types(fig) == ["heatmap"] * 3
    np.testing.assert_array_equal(fig.data[0].z, agreement.confusion_teacher)
    np.testing.assert_array_equal(fig.data[1].z, agreement.confusion_student)
    # the difference panel is student minus teacher, centred on zero
    np.testing.assert_array_equal(fig.data[2].z, agreement.confusion_student - agreement.confusion_teacher)
    assert fig.data[2].zmid == 0 and fig.data[2].zmin == -1 and fig.data[2].zmax == 1
    assert [a.text for a in fig.layout.annotations] == ["teacher", "student", "student − teacher"]
    with pytest.raises(VizError, match="class_names"):
        viz.confusion_matrices(agreement, ["a", "b"])


def test_reliability_diagrams(agreement):
    fig = viz.reliability_diagrams(agreement)
    assert _types(fig) == ["bar", "scatter", "scatter"] * 2
    np.testing.assert_array_equal(fig.data[0].x, [0.25, 0.75])  # bin centres
    np.testing.assert_array_equal(fig.data[0].y, [1.0, 0.5])
    np.testing.assert_array_equal(fig.data[4].y, [np.nan, 0.75])
    assert "ECE 0.250" in fig.layout.annotations[0].text and "ECE 0.500" in fig.layout.annotations[1].text


def test_per_class_and_rank_correlation_bars(agreement):
    fig = viz.per_class_bars(agreement)
    assert _types(fig) == ["bar"] * 3
    np.testing.assert_array_equal(fig.data[1].y, [1.0, 0.0, 0.5])
    assert list(fig.data[0].x) == ["0", "1", "2"]
    bars = viz.rank_correlation_bars(agreement, threshold=0.6)
    assert _types(bars) == ["bar"]
    np.testing.assert_array_equal(bars.data[0].y, [1.0, -1.0, 0.5])
    colors = list(bars.data[0].marker.color)
    assert colors[0] != colors[1] and colors[1] == colors[2]  # classes 1 and 2 fall below 0.6


def test_disagreement_gallery_shows_the_gallery_order(agreement):
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous() * 50
    fig = viz.disagreement_gallery(agreement, images, class_names=["a", "b", "c"], columns=2)
    assert _types(fig) == ["image", "image"]
    assert int(fig.data[0].z[0, 0, 0]) == 50 and int(fig.data[1].z[0, 0, 0]) == 150  # samples 1 then 3
    assert fig.layout.annotations[0].text == "b · T b (0.90) · S c (0.80)"
    one = viz.disagreement_gallery(agreement, images, max_images=1)
    assert len(one.data) == 1
    agreement.gallery = DisagreementGallery(*(np.zeros(0, dtype=np.int64) for _ in range(7)))
    assert len(viz.disagreement_gallery(agreement, images).data) == 0
    with pytest.raises(VizError, match="images"):
        viz.disagreement_gallery(agreement, images[:3])


def test_soft_label_plot_lines_and_heatmap():
    probs = np.array([[0.8, 0.15, 0.05], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33]])
    temps = [1.0, 4.0, 20.0]
    lines = viz.soft_label_plot(probs, temps, ["cat", "dog", "car"])
    assert _types(lines) == ["scatter"] * 3
    np.testing.assert_array_equal(lines.data[1].y, probs[:, 1])
    np.testing.assert_array_equal(lines.data[1].x, temps)
    assert lines.data[2].name == "car" and lines.layout.xaxis.type == "log"
    heat = viz.soft_label_plot(probs, temps, kind="heatmap")
    np.testing.assert_array_equal(heat.data[0].z, probs)
    assert list(heat.data[0].y) == ["T=1", "T=4", "T=20"]
    with pytest.raises(VizError, match="kind"):
        viz.soft_label_plot(probs, temps, kind="bars")
    with pytest.raises(VizError, match="probs"):
        viz.soft_label_plot(probs, temps[:2])


# ---- similarity -----------------------------------------------------------------------------------
def test_cka_heatmap_is_the_matrix():
    m = np.array([[0.9, 0.2], [0.4, 0.8], [0.1, 0.95]])
    res = CKAResult(m, ["l1", "l2", "pool"], ["s1", "pool"], 100, 50, True, names=("teacher", "student"))
    fig = viz.cka_heatmap(res)
    assert _types(fig) == ["heatmap"]
    np.testing.assert_array_equal(fig.data[0].z, m)
    assert list(fig.data[0].y) == ["l1", "l2", "pool"] and list(fig.data[0].x) == ["s1", "pool"]
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(VizError, match="matrix"):
        viz.cka_heatmap(CKAResult(m[:2], ["l1", "l2", "pool"], ["s1", "pool"], 100, 50, True))


def test_cka_training_lines():
    vals = np.array([[0.1, 0.2], [0.5, 0.6], [0.7, 0.9]])
    res = CKATrainingResult(np.array([1, 2, 3]), vals, ["a", "b"], ["ta", "tb"], 64, 32, True, names=("teacher", "student"))
    fig = viz.cka_training_lines(res)
    assert _types(fig) == ["scatter", "scatter"]
    np.testing.assert_array_equal(fig.data[1].y, [0.2, 0.6, 0.9])
    np.testing.assert_array_equal(fig.data[0].x, [1, 2, 3])
    assert fig.data[1].name == "b ↔ teacher tb"


def test_embedding_scatter_one_trace_per_class_and_model():
    labels = np.array([0, 2, 0, 2, 2])
    ca = np.arange(10, dtype=np.float64).reshape(5, 2)
    cb = -ca
    res = EmbeddingResult(
        ca,
        cb,
        labels,
        np.arange(5),
        "pca",
        "pool",
        "pool",
        True,
        np.array([0.5, 0.25]),
        np.array([0.6, 0.2]),
        names=("teacher", "student"),
    )
    fig = viz.embedding_scatter(res, class_names=["zero", "one", "two"])
    assert len(fig.data) == 4  # classes 0 and 2, in both panels
    np.testing.assert_array_equal(fig.data[0].x, [0.0, 4.0])  # class 0 in a: rows 0 and 2
    np.testing.assert_array_equal(fig.data[3].y, [-3.0, -7.0, -9.0])  # class 2 in b
    assert [t.name for t in fig.data] == ["zero", "two", "zero", "two"]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert "75% variance" in fig.layout.annotations[0].text
    with pytest.raises(VizError, match="class_names"):
        viz.embedding_scatter(res, class_names=["zero"])


# ---- landscapes -----------------------------------------------------------------------------------
@pytest.fixture
def plane() -> LandscapeResult:
    alphas, betas = np.array([-1.0, 0.0, 1.0]), np.array([-0.5, 0.5])
    ce = alphas[:, None] ** 2 + 2 * betas[None, :] ** 2  # (3, 2): values[i, j] at alphas[i], betas[j]
    acc = 1.0 - ce / 10
    return LandscapeResult(
        "2d",
        alphas,
        betas,
        {"cross_entropy": ce, "accuracy": acc},
        10,
        "eval",
        0,
        {"model": {"cross_entropy": 0.1, "accuracy": 0.99}},
    )


def test_landscape_surface_and_contours_transpose_to_alpha_on_x(plane):
    fig = viz.landscape_surface(plane, "accuracy")
    assert _types(fig) == ["surface", "scatter3d"]
    np.testing.assert_array_equal(fig.data[0].z, plane.values["accuracy"].T)
    np.testing.assert_array_equal(fig.data[0].x, plane.alphas)
    assert list(fig.data[1].z) == [0.99]
    cont = viz.landscape_contours(plane)
    assert _types(cont) == ["contour", "scatter", "contour", "scatter"]
    np.testing.assert_array_equal(cont.data[0].z, plane.values["cross_entropy"].T)
    np.testing.assert_array_equal(cont.data[2].y, plane.betas)
    only = viz.landscape_contours(plane, "accuracy")
    assert len(only.data) == 2
    with pytest.raises(VizError, match="objective"):
        viz.landscape_contours(plane, ["kd"])
    with pytest.raises(VizError, match="kind"):
        viz.landscape_lines(plane)


def test_landscape_lines_interpolation_and_comparison():
    alphas = np.linspace(-1, 1, 5)
    line = LandscapeResult(
        "1d",
        alphas,
        None,
        {"cross_entropy": alphas**2, "accuracy": 1 - alphas**2},
        8,
        "eval",
        0,
        {"model": {"cross_entropy": 0.0, "accuracy": 1.0}},
    )
    fig = viz.landscape_lines(line)
    assert _types(fig) == ["scatter"] * 4
    np.testing.assert_array_equal(fig.data[2].y, 1 - alphas**2)
    assert list(fig.data[1].x) == [0.0] and list(fig.data[1].y) == [0.0]

    ts = np.linspace(0, 1, 3)
    path = LandscapeResult(
        "interpolation",
        ts,
        None,
        {"cross_entropy": np.array([0.2, 0.9, 0.3])},
        8,
        "recompute",
        None,
        {"start": {"cross_entropy": 0.25}, "end": {"cross_entropy": 0.35}},
    )
    interp = viz.interpolation_curves(path, names=("student", "teacher"))
    assert _types(interp) == ["scatter", "scatter"]
    np.testing.assert_array_equal(interp.data[0].y, [0.2, 0.9, 0.3])
    assert list(interp.data[1].x) == [0.0, 1.0] and list(interp.data[1].y) == [0.25, 0.35]

    sharp = LandscapeResult("1d", alphas, None, {"cross_entropy": 4 * alphas**2}, 8, "eval")
    cmp = viz.landscape_comparison({"student": line, "scratch": sharp})
    assert [t.name for t in cmp.data] == ["student", "scratch"]
    np.testing.assert_array_equal(cmp.data[1].y, 4 * alphas**2)
    assert cmp.data[1].line.color == viz.SCRATCH_COLOR
    with pytest.raises(VizError, match="objective"):
        viz.landscape_comparison({"student": line}, "kd")


# ---- difficulty -----------------------------------------------------------------------------------
def test_difficulty_scatter_highlights_the_selected_samples():
    td = np.array([0.05, 0.1, 0.9, 0.15])
    sd = np.array([0.8, 0.2, 0.95, 0.6])
    res = DifficultyResult(
        n_samples=4,
        num_classes=2,
        labels=np.array([0, 1, 1, 0]),
        teacher_pred=np.zeros(4, dtype=np.int64),
        student_pred=np.zeros(4, dtype=np.int64),
        teacher_loss=-np.log1p(-td),
        student_loss=-np.log1p(-sd),
        teacher_difficulty=td,
        student_difficulty=sd,
        relative=sd - td,
        order=np.array([0, 3, 1, 2]),
        selected=np.array([0, 3]),
        teacher_easy=0.2,
        student_hard=0.5,
        quadrants=np.array([[1, 2], [0, 1]]),
        difficulty_spearman=0.4,
        class_counts=np.array([2, 2]),
        per_class_teacher_loss=np.zeros(2),
        per_class_student_loss=np.zeros(2),
        per_class_teacher_difficulty=np.array([0.1, 0.5]),
        per_class_student_difficulty=np.array([0.7, 0.575]),
        per_class_relative=np.zeros(2),
        per_class_selected=np.array([2, 0]),
    )
    fig = viz.difficulty_scatter(res, ["x", "y"])
    assert len(fig.data) == 2
    np.testing.assert_array_equal(fig.data[0].x, td)
    np.testing.assert_array_equal(fig.data[0].y, sd)
    np.testing.assert_array_equal(fig.data[1].x, [0.05, 0.15])
    np.testing.assert_array_equal(fig.data[1].y, [0.8, 0.6])
    assert "(2)" in fig.data[1].name
    bars = viz.difficulty_class_bars(res)
    assert _types(bars) == ["bar", "bar"]
    np.testing.assert_array_equal(bars.data[1].y, [0.7, 0.575])


# ---- training -------------------------------------------------------------------------------------
HISTORY = [
    {
        "epoch": 1,
        "test_acc": 0.5,
        "train_acc": 0.4,
        "agreement": 0.6,
        "kl_teacher_student": 0.9,
        "ece": 0.2,
        "loss/ce": 1.0,
        "loss/kd": 2.0,
    },
    {
        "epoch": 2,
        "test_acc": 0.7,
        "train_acc": 0.8,
        "agreement": 0.8,
        "kl_teacher_student": 0.5,
        "ece": 0.1,
        "loss/ce": 0.5,
        "loss/kd": 1.5,
    },
]


def test_training_curves_from_a_metrics_mapping():
    metrics = {"epochs": HISTORY, "summary": {}, "teacher": {"teacher_test_acc": 0.9}}
    fig = viz.training_curves(metrics)
    assert [t.name for t in fig.data] == [
        "student test",
        "student train",
        "agreement",
        "KL",
        "student ECE",
        "teacher test",
    ]
    np.testing.assert_array_equal(fig.data[0].y, [0.5, 0.7])
    np.testing.assert_array_equal(fig.data[3].y, [0.9, 0.5])
    np.testing.assert_array_equal(fig.data[0].x, [1, 2])
    assert list(fig.data[5].y) == [0.9, 0.9]
    # a scratch run logs no agreement or KL: those series are simply absent
    plain = viz.training_curves(
        [{k: v for k, v in e.items() if k not in ("agreement", "kl_teacher_student")} for e in HISTORY]
    )
    assert [t.name for t in plain.data] == ["student test", "student train", "student ECE"]

    class FakeRun:
        def __init__(self, m):
            self.metrics = m

    assert len(viz.training_curves(FakeRun(metrics)).data) == 6
    with pytest.raises(VizError, match="epochs"):
        viz.training_curves({"summary": {}})


def test_loss_terms_stack_and_compare_runs():
    fig = viz.loss_terms(HISTORY)
    assert [t.name for t in fig.data] == ["ce", "kd"]
    assert all(t.stackgroup == "loss" for t in fig.data)
    np.testing.assert_array_equal(fig.data[1].y, [2.0, 1.5])
    with pytest.raises(VizError, match="loss"):
        viz.loss_terms([{"epoch": 1, "test_acc": 0.5}])
    cmp = viz.compare_runs({"kd": HISTORY, "scratch": [{"epoch": 1, "test_acc": 0.3}]}, "test_acc")
    assert [t.name for t in cmp.data] == ["kd", "scratch"]
    np.testing.assert_array_equal(cmp.data[1].y, [0.3])
    with pytest.raises(VizError, match="metric"):
        viz.compare_runs({"kd": HISTORY}, "nothing")


def test_metric_series_numbers_epochs_when_missing():
    x, y = viz.metric_series([{"a": 1.0}, {"b": 2.0}, {"a": 3.0}], "a")
    assert x.tolist() == [1, 3] and y.tolist() == [1.0, 3.0]


# ---- doctor ---------------------------------------------------------------------------------------
def _report(agreement: AgreementResult) -> DoctorReport:
    findings = [
        Finding(
            "calibration",
            "Student is overconfident",
            0.8,
            {"teacher_ece": 0.02, "student_ece": 0.2},
            "why",
            "try",
            "reliability_diagrams",
            "agreement",
        ),
        Finding(
            "dark_knowledge",
            "Dark knowledge lost",
            0.6,
            {"classes": ["1"], "worst": -1.0},
            "why",
            "try",
            "rank_correlation_bars",
            "agreement",
        ),
    ]
    return DoctorReport(
        findings,
        {"calibration": {}},
        {"sharpness": "no scratch"},
        DoctorThresholds(),
        {"run": "r1"},
        {"agreement": agreement},
    )


def test_findings_table_bars_and_finding_figure(agreement):
    report = _report(agreement)
    table = viz.findings_table(report)
    assert _types(table) == ["table"]
    cells = table.data[0].cells.values
    assert list(cells[0]) == ["1", "2"] and list(cells[1]) == [
        "Student is overconfident",
        "Dark knowledge lost",
    ]
    assert list(cells[2]) == ["0.80", "0.60"] and list(cells[5]) == [
        "reliability_diagrams",
        "rank_correlation_bars",
    ]
    assert "student_ece: 0.2" in cells[3][0]
    bars = viz.findings_bars(report)
    assert list(bars.data[0].x) == [0.8, 0.6] and bars.data[0].orientation == "h"
    fig = viz.finding_figure(report, 0)
    assert _types(fig) == ["bar", "scatter", "scatter"] * 2  # the reliability diagrams
    assert fig.layout.title.text == "Student is overconfident"
    assert _types(viz.finding_figure(report, report.findings[1])) == ["bar"]
    with pytest.raises(VizError, match="finding"):
        viz.finding_figure(report, 2)
    empty = DoctorReport([], {}, {}, DoctorThresholds())
    assert len(viz.findings_bars(empty).data) == 0
    assert "No findings" in viz.findings_table(empty).data[0].cells.values[1][0]


def test_softness_histogram():
    res = SoftnessResult(4.0, 3, np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8]))
    fig = viz.softness_histogram(res, bins=10)
    assert _types(fig) == ["histogram", "histogram"]
    np.testing.assert_array_equal(fig.data[1].x, [0.7, 0.8])
    assert math.isclose(fig.data[0].xbins.size, 0.1)
    assert "T = 4" in fig.layout.xaxis.title.text


def test_every_view_styles_and_titles():
    fig = viz.style_figure(go.Figure(), "hello", height=300)
    assert fig.layout.title.text == "hello" and fig.layout.height == 300
    assert viz.role_color("teacher") == viz.TEACHER_COLOR and viz.role_color("student") == viz.STUDENT_COLOR
    assert viz.class_color(0) == viz.class_color(20)
