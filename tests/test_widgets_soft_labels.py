"""workbench.analysis.soft_labels: the teacher's soft labels at a temperature and the student's KD loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis import AnalysisError
from workbench.analysis.soft_labels import soft_labels, soft_labels_from_logits


def test_two_class_kd_loss_and_entropy_by_hand():
    r = soft_labels_from_logits(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), temperature=2.0)
    pt = np.array([1.0, math.exp(-1.0)]) / (1.0 + math.exp(-1.0))
    ps = np.array([math.exp(-0.5), 1.0]) / (1.0 + math.exp(-0.5))
    assert r.teacher_probs[0] == pytest.approx(pt)
    assert r.entropy[0] == pytest.approx(-(pt * np.log(pt)).sum())
    assert r.kd_loss == pytest.approx(4.0 * (pt * np.log(pt / ps)).sum(), rel=1e-12)


def test_entropy_increases_with_temperature_and_bad_temperature():
    z = torch.tensor([[3.0, 1.0, -2.0, 0.5]])
    ent = [soft_labels_from_logits(z, temperature=t).entropy[0] for t in (0.25, 1.0, 4.0, 16.0)]
    assert all(b > a for a, b in zip(ent, ent[1:], strict=False)) and ent[-1] < math.log(4)
    with pytest.raises(AnalysisError, match="temperature"):
        soft_labels_from_logits(z, temperature=-1.0)


def test_models_run_on_chosen_samples_and_are_left_untouched():
    torch.manual_seed(0)
    teacher, student = nn.Sequential(nn.Linear(3, 4)), nn.Sequential(nn.Linear(3, 4))
    teacher.train()
    x, y = torch.randn(10, 3), torch.arange(10) % 4
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    r = soft_labels(teacher, student, x, y, temperature=3.0, samples=[2, 7])
    assert r.samples.tolist() == [2, 7] and r.labels.tolist() == [2, 3]
    with torch.no_grad():
        expect = torch.softmax(teacher(x[[2, 7]]).double() / 3.0, dim=1).numpy()
    assert r.teacher_probs == pytest.approx(expect)
    assert teacher.training and all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert r.kd_loss == pytest.approx(float(np.mean(r.kd_per_sample)))
    with pytest.raises(AnalysisError, match="samples"):
        soft_labels(teacher, None, x, samples=[10])
