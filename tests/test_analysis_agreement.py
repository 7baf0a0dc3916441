"""Teacher–student agreement: ECE (Guo et al. 2017), divergences, confusion, rank correlation, gallery."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.agreement import (
    GALLERY_CATEGORIES,
    agreement_from_logits,
    agreement_report,
    expected_calibration_error,
    nontarget_rank_correlation,
    reliability_diagram,
    soft_labels_across_temperatures,
)


def _random_logits(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


# ---- calibration --------------------------------------------------------------------------------
def test_ece_on_a_hand_computed_four_sample_example():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1])
    # 5 bins (0,.2] .. (.8,1]; confidences .9 (right), .7 (wrong), .6 (right), .8 (right; on an edge,
    # so in the lower bin (.6,.8]). Bins: (.4,.6] -> |1 - .6| * 1/4; (.6,.8] -> |.5 - .75| * 2/4;
    # (.8,1] -> |1 - .9| * 1/4. ECE = .1 + .125 + .025 = .25
    assert expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.25, abs=1e-12)
    diagram = reliability_diagram(probs, labels, n_bins=5)
    assert diagram.count.tolist() == [0, 0, 1, 2, 1]
    np.testing.assert_allclose(diagram.confidence[2:], [0.6, 0.75, 0.9], atol=1e-12)
    np.testing.assert_allclose(diagram.accuracy[2:], [1.0, 0.5, 1.0], atol=1e-12)
    assert np.isnan(diagram.confidence[:2]).all()
    # one bin: |accuracy − mean confidence| = |.75 − .75| = 0
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.0, abs=1e-12)


def test_ece_rejects_logits_and_bad_labels():
    with pytest.raises(ValueError, match="probs: expected rows of probabilities"):
        expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 2\)"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([2]))


# ---- divergences and agreement ------------------------------------------------------------------
def test_identical_models_agree_fully_with_zero_divergence():
    logits = _random_logits(30, 6, 0)
    labels = torch.randint(0, 6, (30,), generator=torch.Generator().manual_seed(1))
    res = agreement_from_logits(logits, logits.clone(), labels, temperature=3.0)
    assert res.agreement == 1.0 and res.agree.all()
    assert res.kl == pytest.approx(0.0, abs=1e-12) and res.js == pytest.approx(0.0, abs=1e-12)
    assert len(res.gallery) == 0 and not res.confusion_diff.any()
    np.testing.assert_allclose(res.rank_correlation, 1.0, atol=1e-12)
    assert res.teacher_accuracy == res.student_accuracy
    assert res.teacher_calibration.ece == pytest.approx(res.student_calibration.ece, abs=1e-15)


def test_kl_at_a_temperature_by_hand():
    teacher = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    student = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    res = agreement_from_logits(teacher, student, torch.tensor([0]), temperature=1.0)
    # p = (1/2, 1/2), q = (3/4, 1/4): KL = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3)
    assert res.kl == pytest.approx(0.5 * math.log(4.0 / 3.0), abs=1e-12)
    res2 = agreement_from_logits(teacher, student, torch.tensor([0]), temperature=2.0)
    q0 = math.sqrt(3.0) / (1.0 + math.sqrt(3.0))  # softmax((ln 3)/2, 0)
    assert res2.kl == pytest.approx(0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / (1.0 - q0)), abs=1e-12)


def test_js_is_symmetric_and_bounded_by_ln2():
    t, s = _random_logits(50, 5, 2), _random_logits(50, 5, 3)
    labels = torch.zeros(50, dtype=torch.long)
    a = agreement_from_logits(t, s, labels, temperature=2.0)
    b = agreement_from_logits(s, t, labels, temperature=2.0)
    np.testing.assert_allclose(a.js_per_sample, b.js_per_sample, atol=1e-14)
    assert (a.js_per_sample >= 0).all() and (a.js_per_sample <= math.log(2.0)).all()
    assert not np.allclose(a.kl_per_sample, b.kl_per_sample)  # KL is not symmetric
    # (almost) disjoint supports reach the bound
    far_t = torch.tensor([[60.0, 0.0, -60.0]], dtype=torch.float64)
    far = agreement_from_logits(far_t, -far_t, torch.tensor([0]))
    assert far.js == pytest.approx(math.log(2.0), abs=1e-9)


def test_confusion_matrices_per_class_views_and_gallery_on_a_hand_made_case():
    labels = torch.tensor([0, 0, 1, 2, 2])
    t_pred, s_pred = [0, 1, 1, 2, 0], [0, 0, 2, 2, 2]
    t_conf = [0.5, 0.6, 0.7, 0.8, 0.9]  # the margin sets the top-1 probability
    t = torch.full((5, 3), 0.0, dtype=torch.float64)
    s = torch.full((5, 3), 0.0, dtype=torch.float64)
    for i in range(5):
        t[i, t_pred[i]] = 4.0 * t_conf[i]
        s[i, s_pred[i]] = 2.0
    res = agreement_from_logits(t, s, labels)
    np.testing.assert_array_equal(res.confusion_teacher, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(res.confusion_student, [[2, 0, 0], [0, 0, 1], [0, 0, 2]])
    np.testing.assert_array_equal(res.confusion_diff, [[1, -1, 0], [0, -1, 1], [-1, 0, 1]])
    np.testing.assert_allclose(res.per_class_teacher_accuracy, [0.5, 1.0, 0.5])
    np.testing.assert_allclose(res.per_class_student_accuracy, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(res.per_class_agreement, [0.5, 0.0, 0.5])
    assert res.agreement == pytest.approx(0.4) and res.class_counts.tolist() == [2, 1, 2]
    # sample 2: teacher right, student wrong -> first; samples 1 and 4: student right, teacher wrong,
    # the more confident teacher mistake (sample 4) first
    g = res.gallery
    assert g.indices.tolist() == [2, 4, 1]
    assert [GALLERY_CATEGORIES[c] for c in g.category] == [
        "teacher_right_student_wrong",
        "student_right_teacher_wrong",
        "student_right_teacher_wrong",
    ]
    assert g.teacher_pred.tolist() == [1, 0, 1] and g.student_pred.tolist() == [2, 2, 0]
    assert g.teacher_confidence[1] > g.teacher_confidence[2]
    assert g.counts() == {
        "teacher_right_student_wrong": 1,
        "both_wrong_differently": 0,
        "student_right_teacher_wrong": 2,
    }


def test_gallery_puts_both_wrong_between_the_one_sided_groups():
    labels = torch.tensor([0, 0, 0])
    t = torch.tensor([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    g = agreement_from_logits(t, s, labels).gallery
    assert g.indices.tolist() == [2, 0, 1] and g.category.tolist() == [0, 1, 2]


# ---- dark knowledge -----------------------------------------------------------------------------
def test_rank_correlation_is_one_for_a_monotone_transform_and_minus_one_when_reversed():
    t = _random_logits(20, 7, 4)
    labels = torch.randint(0, 7, (20,), generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(
        nontarget_rank_correlation(t, torch.exp(t) * 3.0 - 1.0, labels), 1.0, atol=1e-12
    )
    res = agreement_from_logits(t, -t, labels)
    np.testing.assert_allclose(res.rank_correlation, -1.0, atol=1e-12)
    present = res.class_counts > 0
    np.testing.assert_allclose(res.per_class_rank_correlation[present], -1.0, atol=1e-12)
    assert np.isnan(res.per_class_rank_correlation[~present]).all()


def test_rank_correlation_ignores_the_target_class():
    t = torch.tensor([[9.0, 3.0, 2.0, 1.0]], dtype=torch.float64)
    s = torch.tensor([[-9.0, 3.0, 2.0, 1.0]], dtype=torch.float64)  # only the target logit differs
    assert nontarget_rank_correlation(t, s, torch.tensor([0]))[0] == pytest.approx(1.0)
    assert np.isnan(nontarget_rank_correlation(t[:, :2], s[:, :2], torch.tensor([0]))[0])  # K = 2


# ---- soft labels --------------------------------------------------------------------------------
def test_soft_labels_sum_to_one_and_approach_uniform_at_high_temperature():
    row = np.array([4.0, 1.0, -2.0, 0.5])
    soft = soft_labels_across_temperatures(row, [1.0, 4.0, 1e6])
    assert soft.shape == (3, 4)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(soft[0], np.exp(row) / np.exp(row).sum(), atol=1e-12)
    np.testing.assert_allclose(soft[2], 0.25, atol=1e-5)
    assert soft[0, 0] > soft[1, 0] > soft[2, 0]
    with pytest.raises(ValueError, match="temperatures"):
        soft_labels_across_temperatures(row, [1.0, 0.0])


# ---- the report from models ---------------------------------------------------------------------
def test_agreement_report_runs_both_models_and_restores_them():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 4))
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    teacher.train()
    images = torch.randn(25, 1, 4, 4)
    labels = torch.randint(0, 4, (25,))
    res = agreement_report(teacher, student, images, labels, temperature=2.0, batch_size=7)
    assert teacher.training and student.training
    with torch.no_grad():
        teacher.eval()
        t, s = teacher(images), student(images)
        teacher.train()
    want = agreement_from_logits(t, s, labels, temperature=2.0)
    np.testing.assert_allclose(res.kl_per_sample, want.kl_per_sample, atol=1e-6)
    np.testing.assert_array_equal(res.teacher_pred, want.teacher_pred)
    assert res.n_samples == 25 and res.num_classes == 4
    with pytest.raises(ValueError, match=r"labels: expected shape \(25,\)"):
        agreement_report(teacher, student, images, labels[:-1])
