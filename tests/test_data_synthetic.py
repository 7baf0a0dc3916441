"""The scikit-learn digits set and the procedural shapes set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data import BACKGROUNDS, PAIRED_BACKGROUND, SHAPE_CLASSES, DataError, load_dataset
from workbench.data.shapes import boxes_from_masks, render_shapes


def test_digits_scaling_and_stratified_split() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    ds = load_dataset("digits")
    assert len(ds.train) + len(ds.test) == 1797
    assert ds.image_shape == (1, 8, 8) and not ds.hflip_ok
    counts = np.bincount(raw.target, minlength=10)
    expected_test = [round(c * 0.2) for c in counts]
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == expected_test
    # 0..16 scaled to 0..255: every pixel is round(k * 255 / 16) for an integer k
    allowed = {round(k * 255 / 16) for k in range(17)}
    assert set(torch.unique(ds.train.images).tolist()) <= allowed
    assert int(ds.train.images.max()) == 255
    # the split is a partition of the original images (compare as scaled bytes)
    scaled = np.rint(raw.images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    ours = torch.cat([ds.train.images, ds.test.images]).reshape(1797, -1).numpy()
    key = lambda rows: sorted(map(bytes, rows))  # noqa: E731
    assert key(ours) == key(scaled)


def test_digits_seed_controls_split() -> None:
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)
    half = load_dataset("digits", test_fraction=0.5)
    assert abs(len(half.test) - 1797 / 2) <= 10
    with pytest.raises(DataError, match="option test_fraction: expected a number in \\(0, 1\\), got 0"):
        load_dataset("digits", test_fraction=0)


def test_shapes_contract_and_determinism() -> None:
    a = load_dataset("shapes", n_train=500, n_test=200, seed=7)
    b = load_dataset("shapes", n_train=500, n_test=200, seed=7)
    c = load_dataset("shapes", n_train=500, n_test=200, seed=8)
    assert a.train.images.shape == (500, 3, 32, 32) and a.train.images.dtype == torch.uint8
    assert a.train.masks.shape == (500, 32, 32) and a.train.masks.dtype == torch.bool
    assert a.train.boxes.shape == (500, 4) and a.train.boxes.dtype == torch.float32
    assert a.train.context.dtype == torch.int64 and a.test.context.shape == (200,)
    assert a.class_names == SHAPE_CLASSES and len(BACKGROUNDS) == 10 and a.hflip_ok
    for field in ("images", "labels", "masks", "boxes", "context"):
        assert torch.equal(getattr(a.train, field), getattr(b.train, field))
        assert torch.equal(getattr(a.test, field), getattr(b.test, field))
    assert not torch.equal(a.train.images, c.train.images)
    assert torch.bincount(a.train.labels, minlength=10).tolist() == [50] * 10
    # train and test come from independent streams: the test split does not depend on n_train
    d = load_dataset("shapes", n_train=300, n_test=200, seed=7)
    assert torch.equal(d.test.images, a.test.images)
    # a returned dataset is a copy: changing it does not change the next load
    a.train.images.zero_()
    assert torch.equal(load_dataset("shapes", n_train=500, n_test=200, seed=7).train.images, b.train.images)


def test_shapes_masks_match_boxes_and_pixels() -> None:
    ds = load_dataset("shapes", n_train=400, n_test=10, seed=1)
    masks, boxes, images = ds.train.masks, ds.train.boxes, ds.train.images
    assert bool(masks.flatten(1).any(1).all())
    for i in range(len(ds.train)):
        ys, xs = torch.nonzero(masks[i], as_tuple=True)
        expected = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert boxes[i].tolist() == expected
        # the shape is painted in one flat colour: every masked pixel has the same RGB value
        shape_pixels = images[i][:, masks[i]]
        assert bool((shape_pixels == shape_pixels[:, :1]).all())


def test_shapes_geometry_by_class() -> None:
    ds = load_dataset("shapes", n_train=1000, n_test=10, seed=2)
    labels, boxes, masks = ds.train.labels, ds.train.boxes, ds.train.masks
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    name = {n: i for i, n in enumerate(SHAPE_CLASSES)}
    circle = labels == name["circle"]
    assert ((width[circle] - height[circle]).abs() <= 1).all()
    assert (width[labels == name["ellipse"]] > 1.5 * height[labels == name["ellipse"]]).all()
    assert (height[labels == name["bar"]] > 2 * width[labels == name["bar"]]).all()
    # a ring has a hole: the pixel at the centre of its box is background
    ring = torch.nonzero(labels == name["ring"]).flatten()
    cy = ((boxes[ring, 1] + boxes[ring, 3]) / 2).long()
    cx = ((boxes[ring, 0] + boxes[ring, 2]) / 2).long()
    assert not masks[ring, cy, cx].any()
    # a filled circle covers its box centre
    circ = torch.nonzero(circle).flatten()
    ccy = ((boxes[circ, 1] + boxes[circ, 3]) / 2).long()
    ccx = ((boxes[circ, 0] + boxes[circ, 2]) / 2).long()
    assert masks[circ, ccy, ccx].all()


def test_shapes_confounding_rates() -> None:
    ds = load_dataset("shapes", n_train=6000, n_test=3000, confounding=0.6, seed=0)
    paired = torch.tensor(PAIRED_BACKGROUND)
    train_rate = (ds.train.context == paired[ds.train.labels]).float().mean().item()
    # paired with probability 0.6, otherwise uniform over 10 types (which hits the pair 1 time in 10)
    assert train_rate == pytest.approx(0.6 + 0.4 / 10, abs=0.025)
    test_rate = (ds.test.context == paired[ds.test.labels]).float().mean().item()
    assert test_rate == pytest.approx(0.1, abs=0.025)
    test_freq = torch.bincount(ds.test.context, minlength=10).float() / 3000
    assert ((test_freq - 0.1).abs() < 0.025).all()
    full = load_dataset("shapes", n_train=200, n_test=50, confounding=1.0)
    assert torch.equal(full.train.context, paired[full.train.labels])


def test_shapes_options_are_checked() -> None:
    with pytest.raises(DataError, match="option confounding: expected a number in \\[0, 1\\], got 1.5"):
        load_dataset("shapes", confounding=1.5)
    with pytest.raises(DataError, match="option n_train"):
        load_dataset("shapes", n_train=0)
    with pytest.raises(DataError, match="option seed"):
        load_dataset("shapes", seed=-1)
    with pytest.raises(DataError, match="root and download are not used"):
        load_dataset("shapes", root="somewhere")


def test_boxes_from_masks_hand_made() -> None:
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 0] = True
    expected = [[2.0, 1.0, 5.0, 3.0], [0.0, 4.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]]
    assert boxes_from_masks(masks).tolist() == expected


def test_shapes_default_size() -> None:
    out = render_shapes(10000, 0.0, 0, 0)
    assert out["images"].shape == (10000, 3, 32, 32)
    assert torch.bincount(out["labels"]).tolist() == [1000] * 10
