"""Relative difficulty of samples for teacher and student."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.difficulty import difficulty_from_logits, difficulty_report

LABELS = [0, 1, 0, 1, 2]
P_TEACHER = [0.9, 0.95, 0.3, 0.85, 0.99]  # probability of the true class
P_STUDENT = [0.2, 0.9, 0.1, 0.4, 0.6]


def _logits(p_true: list[float], labels: list[int], k: int = 3) -> torch.Tensor:
    """Log-probabilities with ``p`` on the true class and the rest split evenly."""
    probs = torch.empty(len(p_true), k, dtype=torch.float64)
    for i, (p, y) in enumerate(zip(p_true, labels, strict=True)):
        probs[i] = (1.0 - p) / (k - 1)
        probs[i, y] = p
    return probs.log()


@pytest.fixture(scope="module")
def result():
    return difficulty_from_logits(
        _logits(P_TEACHER, LABELS), _logits(P_STUDENT, LABELS), torch.tensor(LABELS)
    )


def test_per_sample_loss_and_difficulty(result):
    np.testing.assert_allclose(result.teacher_loss, [-math.log(p) for p in P_TEACHER], atol=1e-12)
    np.testing.assert_allclose(result.student_loss, [-math.log(p) for p in P_STUDENT], atol=1e-12)
    np.testing.assert_allclose(result.teacher_difficulty, [0.1, 0.05, 0.7, 0.15, 0.01], atol=1e-12)
    np.testing.assert_allclose(result.student_difficulty, [0.8, 0.1, 0.9, 0.6, 0.4], atol=1e-12)
    np.testing.assert_allclose(result.relative, [0.7, 0.05, 0.2, 0.45, 0.39], atol=1e-12)


def test_ranking_and_the_teacher_easy_student_hard_set(result):
    assert result.order.tolist() == [0, 3, 4, 2, 1]
    # teacher easy (difficulty <= .2): 0, 1, 3, 4; student hard (>= .5): 0, 2, 3
    assert result.selected.tolist() == [0, 3]
    np.testing.assert_array_equal(result.quadrants, [[2, 2], [0, 1]])
    assert result.teacher_easy == 0.2 and result.student_hard == 0.5


def test_thresholds_change_the_selection():
    t, s, y = _logits(P_TEACHER, LABELS), _logits(P_STUDENT, LABELS), torch.tensor(LABELS)
    loose = difficulty_from_logits(t, s, y, teacher_easy=1.0, student_hard=0.0)
    assert loose.selected.tolist() == loose.order.tolist() == [0, 3, 4, 2, 1]
    strict = difficulty_from_logits(t, s, y, teacher_easy=0.12, student_hard=0.7)
    assert strict.selected.tolist() == [0]
    with pytest.raises(ValueError, match=r"teacher_easy: expected a number in \[0, 1\], got 1.5"):
        difficulty_from_logits(t, s, y, teacher_easy=1.5)


def test_per_class_means_and_rank_correlation(result):
    np.testing.assert_allclose(result.per_class_relative, [0.45, 0.25, 0.39], atol=1e-12)
    np.testing.assert_allclose(result.per_class_teacher_difficulty, [0.4, 0.1, 0.01], atol=1e-12)
    np.testing.assert_allclose(result.per_class_student_difficulty, [0.85, 0.35, 0.4], atol=1e-12)
    assert result.per_class_selected.tolist() == [1, 1, 0]
    assert result.class_counts.tolist() == [2, 2, 1]
    # ranks of the difficulties: teacher (3,2,5,4,1), student (4,1,5,3,2); Σd² = 4
    assert result.difficulty_spearman == pytest.approx(1 - 6 * 4 / (5 * 24), abs=1e-12)


def test_ties_in_relative_difficulty_put_the_larger_student_loss_first():
    # samples 0 and 1 share relative = 0.3; sample 1 has the larger student loss
    t = _logits([0.9, 0.6, 0.5], [0, 0, 0])
    s = _logits([0.6, 0.3, 0.5], [0, 0, 0])
    res = difficulty_from_logits(t, s, torch.tensor([0, 0, 0]))
    assert res.order.tolist() == [1, 0, 2]
    assert np.isnan(res.per_class_relative[1:]).all()


def test_difficulty_report_uses_the_models_in_eval_mode():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(9, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    student = nn.Sequential(nn.Flatten(), nn.Linear(9, 3))
    with torch.no_grad():
        teacher.train()
        teacher(torch.randn(16, 1, 3, 3) + 1.0)  # non-trivial BatchNorm statistics
    images, labels = torch.randn(10, 1, 3, 3), torch.randint(0, 3, (10,))
    res = difficulty_report(teacher, student, images, labels, batch_size=4)
    assert teacher.training and student.training
    teacher.eval()
    with torch.no_grad():
        want = difficulty_from_logits(teacher(images), student(images), labels)
    np.testing.assert_allclose(res.teacher_loss, want.teacher_loss, atol=1e-6)
    np.testing.assert_allclose(res.student_difficulty, want.student_difficulty, atol=1e-6)
    with pytest.raises(ValueError, match="student_logits: expected 5 rows"):
        difficulty_from_logits(torch.zeros(5, 3), torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
