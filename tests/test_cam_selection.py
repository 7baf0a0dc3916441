"""The image selector both faces use for CAMs: by class, at random, by disagreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analysis import AnalysisError
from workbench.analysis.cam import select_images

LABELS = torch.tensor([3, 1, 3, 0, 3, 2, 3])


def test_class_takes_the_first_of_that_class_in_pool_order():
    assert select_images(LABELS, "class", count=3, klass=3).tolist() == [0, 2, 4]
    with pytest.raises(AnalysisError, match="class 9: no sample"):
        select_images(LABELS, "class", count=3, klass=9)


def test_random_is_a_seeded_sorted_subset():
    a = select_images(LABELS, "random", count=4, seed=5)
    assert a.tolist() == sorted(torch.randperm(7, generator=torch.Generator().manual_seed(5))[:4].tolist())
    assert np.array_equal(a, select_images(LABELS.numpy(), "random", count=4, seed=5))
    assert len(set(a.tolist())) == 4


def test_disagreement_follows_the_gallery_order():
    assert select_images(LABELS, "disagreement", count=2, gallery=[6, 1, 4]).tolist() == [6, 1]
    with pytest.raises(AnalysisError, match="agree on all 7"):
        select_images(LABELS, "disagreement", count=2, gallery=[])


def test_bad_choice_and_count_are_one_line():
    with pytest.raises(AnalysisError, match="unknown choice 'best'"):
        select_images(LABELS, "best", count=2)
    with pytest.raises(AnalysisError, match="count"):
        select_images(LABELS, "random", count=0)


def test_seeded_subset_is_the_same_draw_everywhere():
    from workbench.data import seeded_subset

    assert seeded_subset(5, 9, seed=3).tolist() == [0, 1, 2, 3, 4]
    idx = seeded_subset(100, 10, seed=3)
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:10].sort().values
    assert idx.tolist() == expected.tolist()
