"""A dataset's preview against hand-computed values: counts, mean/std, samples, warnings, the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.data import IMBALANCE_RATIO, DataError, Dataset, Split, preview_dataset
from workbench.data.preview import class_samples
from workbench.viz.datasets import dataset_preview_figure, sample_montage


def _dataset(train: np.ndarray, train_labels: list[int], test: np.ndarray, test_labels: list[int],
             classes: list[str]) -> Dataset:
    c = train.shape[1]
    return Dataset(
        name="hand",
        train=Split(torch.from_numpy(train), torch.tensor(train_labels)),
        test=Split(torch.from_numpy(test), torch.tensor(test_labels)),
        class_names=classes,
        mean=(0.5,) * c,
        std=(0.5,) * c,
        hflip_ok=True,
        source="made by hand",
    )


def _flat(values: list[list[int]], c: int = 1, side: int = 2) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8).reshape(len(values), c, side, side)


def test_counts_and_mean_std_of_a_known_set() -> None:
    # one channel, 2x2: all black, all white, half and half -> six 0s and six 1s: mean 0.5, std 0.5
    train = _flat([[0, 0, 0, 0], [255, 255, 255, 255], [0, 255, 0, 255]])
    test = _flat([[10, 10, 10, 10]])
    p = preview_dataset(_dataset(train, [0, 0, 1], test, [1], ["a", "b"]))
    assert p.counts["train"].tolist() == [2, 1] and p.counts["test"].tolist() == [0, 1]
    assert p.mean == pytest.approx((0.5,)) and p.std == pytest.approx((0.5,))
    assert p.image_shape == (1, 2, 2) and p.num_classes == 2
    assert p.warnings[0] == "no test images for 1 class: 'a'"


def test_rgb_statistics_per_channel() -> None:
    # red constant 51 (0.2, one grey level of std), green 0 or 255 (0.5 +- 0.5), blue 0..3 of 4 pixels
    red = np.full((2, 4), 51)
    green = np.array([[0, 0, 0, 0], [255, 255, 255, 255]])
    blue = np.array([[0, 255, 0, 255], [0, 255, 0, 255]])
    train = np.stack([red, green, blue], axis=1).reshape(2, 3, 2, 2).astype(np.uint8)
    p = preview_dataset(_dataset(train, [0, 1], train[:1], [0], ["a", "b"]))
    assert p.mean == pytest.approx((0.2, 0.5, 0.5))
    assert p.std == pytest.approx((1 / 255, 0.5, 0.5))


def test_a_planted_imbalance_is_warned_and_the_boundary_is_not() -> None:
    images = _flat([[i] * 4 for i in range(6)])
    skewed = preview_dataset(_dataset(images[:4], [0, 0, 0, 1], images[4:], [0, 1], ["cat", "dog"]))
    assert skewed.imbalance_ratio == pytest.approx(3.0)
    assert [w for w in skewed.warnings if w.startswith("class imbalance")] == [
        f"class imbalance: 'cat' has 3 train images, 'dog' 1 (ratio 3.00, over {IMBALANCE_RATIO})"
    ]
    # 3 against 2 is a ratio of exactly 1.5: not over the rule
    even = preview_dataset(_dataset(images[:5], [0, 0, 0, 1, 1], images[5:], [0], ["cat", "dog"]))
    assert even.imbalance_ratio == pytest.approx(1.5)
    assert not any(w.startswith("class imbalance") for w in even.warnings)


def test_a_planted_duplicate_is_found_and_a_near_copy_is_not() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    near = train[4].copy()
    near[0, 0, 0] ^= 1  # one bit of one pixel differs
    test = np.stack([rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), train[2], near, train[2]])
    p = preview_dataset(_dataset(train, [0, 1, 0, 1, 0, 1], test, [0, 1, 0, 1], ["a", "b"]))
    assert p.duplicates == 2
    assert p.duplicate_pairs.tolist() == [[2, 1], [2, 3]]
    assert any(w.startswith("2 of 4 test images are exact copies of train images (train 2 = test 1")
               for w in p.warnings)
    clean = preview_dataset(_dataset(train, [0, 1, 0, 1, 0, 1], test[[0, 2]], [0, 1], ["a", "b"]))
    assert clean.duplicates == 0 and clean.duplicate_pairs.shape == (0, 2) and clean.warnings == []


def test_samples_come_from_their_class_without_repeats_and_pad_with_minus_one() -> None:
    labels = np.array([2, 0, 0, 1, 0, 2, 0, 2, 0])
    index = class_samples(labels, 4, 3, seed=5)
    assert index.shape == (4, 3)
    for k in range(4):
        row = index[k][index[k] >= 0]
        assert len(row) == min(3, int((labels == k).sum())) and len(set(row.tolist())) == len(row)
        assert (labels[row] == k).all()
    assert index[1].tolist()[1:] == [-1, -1] and index[3].tolist() == [-1, -1, -1]
    assert np.array_equal(index, class_samples(labels, 4, 3, seed=5))
    draws = {tuple(class_samples(labels, 4, 2, seed=s)[0].tolist()) for s in range(20)}
    assert len(draws) > 1  # the seed changes which images of a class are drawn


def test_the_sample_images_are_the_split_images_at_their_index(digits) -> None:
    p = preview_dataset(digits, per_class=4, seed=1)
    assert p.samples.shape == (10, 4, 1, 8, 8) and p.samples.dtype == np.uint8
    for k in range(10):
        for j, i in enumerate(p.sample_index[k].tolist()):
            assert int(digits.train.labels[i]) == k
            assert np.array_equal(p.samples[k, j], digits.train.images[i].numpy())
    assert p.counts["train"].sum() == len(digits.train) and p.counts["test"].sum() == len(digits.test)
    json.dumps(p.to_dict())  # plain values throughout


def test_bad_arguments_are_one_line_errors(digits) -> None:
    with pytest.raises(DataError, match=r"per_class: expected an integer in \[1, 64\], got 0"):
        preview_dataset(digits, per_class=0)
    with pytest.raises(DataError, match="dataset: expected a workbench Dataset, got str"):
        preview_dataset("digits")  # type: ignore[arg-type]


def test_the_figure_shows_a_montage_by_class_and_the_counts() -> None:
    images = np.stack([np.full((1, 2, 2), v, dtype=np.uint8) for v in (10, 20, 30, 40)])
    p = preview_dataset(_dataset(images[:3], [0, 0, 1], images[3:], [1], ["a", "b"]), per_class=2)
    fig = dataset_preview_figure(p)
    montage = np.asarray(fig.data[0].z)
    # 2 classes x 2 samples of 2x2 pixels with a 1-pixel white gap: 5 x 5
    assert montage.shape == (5, 5, 3)
    assert (montage[2, :, :] == 255).all() and (montage[:, 2, :] == 255).all()
    assert sorted({int(v) for v in montage[:2, :2, 0].ravel()} | {int(v) for v in montage[:2, 3:, 0].ravel()}) == [
        10, 20
    ]
    assert (montage[3:, 3:] == 255).all()  # class b has one image: its second cell is blank
    assert int(montage[3, 0, 0]) == 30
    bars = {t.name: list(t.y) for t in fig.data[1:]}
    assert bars == {"train": [2, 1], "test": [0, 1]}
    assert "hand: 1x2x2 images, 2 classes, 3 train / 1 test" in fig.layout.title.text
    assert sample_montage(p.samples, p.sample_index, gap=0).shape == (4, 4, 3)
