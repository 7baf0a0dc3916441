"""Image folders of PNG/JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data import DataError, load_dataset


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(value: tuple[int, int, int], size: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (size, size, 3)).copy()


def test_train_test_layout_rgb(tmp_path: Path) -> None:
    # classes named so that sorting matters: "b_cat" < "dog"
    for i in range(3):
        _png(tmp_path / "train" / "dog" / f"{i}.png", _rgb((0, 0, 255)))
        _png(tmp_path / "train" / "b_cat" / f"{i}.png", _rgb((255, 0, 0)))
    _png(tmp_path / "test" / "dog" / "t.png", _rgb((0, 0, 255)))
    ds = load_dataset("imagefolder", root=tmp_path)
    assert ds.class_names == ["b_cat", "dog"]
    assert ds.train.images.shape == (6, 3, 8, 8) and ds.test.images.shape == (1, 3, 8, 8)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.train.images[0, :, 0, 0].tolist() == [255, 0, 0]
    assert ds.test.labels.tolist() == [1] and ds.test.images[0, 2].min().item() == 255
    # red for half the train images, blue for the other half: channel means 0.5, 0, 0.5; stds 0.5, 0, 0.5
    assert ds.mean == pytest.approx((0.5, 0.0, 0.5))
    assert ds.std[0] == pytest.approx(0.5) and ds.std[2] == pytest.approx(0.5)
    assert ds.hflip_ok


def test_grayscale_detected_and_channels_forced(tmp_path: Path) -> None:
    for cls, value in (("a", 10), ("b", 200)):
        for i in range(5):
            _png(tmp_path / cls / f"{i}.png", np.full((6, 6), value, dtype=np.uint8))
    ds = load_dataset("imagefolder", root=tmp_path)
    assert ds.image_shape == (1, 6, 6)
    assert set(ds.train.images[:, 0, 0, 0].tolist()) == {10, 200}
    rgb = load_dataset("imagefolder", root=tmp_path, channels=3)
    assert rgb.image_shape == (3, 6, 6)
    assert torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])


def test_split_by_seed_is_stratified_and_deterministic(tmp_path: Path) -> None:
    for cls, n in (("x", 10), ("y", 5)):
        for i in range(n):
            _png(tmp_path / cls / f"{i:02d}.png", np.full((4, 4), i * 20, dtype=np.uint8))
    a = load_dataset("imagefolder", root=tmp_path, test_fraction=0.2, seed=3)
    b = load_dataset("imagefolder", root=tmp_path, test_fraction=0.2, seed=3)
    c = load_dataset("imagefolder", root=tmp_path, test_fraction=0.2, seed=4)
    # round(10 * 0.2) = 2 test images of x, round(5 * 0.2) = 1 of y
    assert torch.bincount(a.test.labels, minlength=2).tolist() == [2, 1]
    assert torch.bincount(a.train.labels, minlength=2).tolist() == [8, 4]
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    seeds_differ = not torch.equal(a.test.images, c.test.images)
    other_seeds = [load_dataset("imagefolder", root=tmp_path, seed=s).test.images for s in range(5, 9)]
    assert seeds_differ or any(not torch.equal(a.test.images, t) for t in other_seeds)
    with pytest.raises(DataError, match="option test_fraction"):
        load_dataset("imagefolder", root=tmp_path, test_fraction=1.5)


def test_resize_and_size_mismatch(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "big.png", _rgb((1, 2, 3), size=16))
    _png(tmp_path / "train" / "a" / "small.png", _rgb((1, 2, 3), size=8))
    _png(tmp_path / "test" / "a" / "t.png", _rgb((1, 2, 3), size=8))
    with pytest.raises(DataError, match="small.png: size 8x8 differs from 16x16.*image_size"):
        load_dataset("imagefolder", root=tmp_path)
    ds = load_dataset("imagefolder", root=tmp_path, image_size=4)
    assert ds.image_shape == (3, 4, 4)
    # a constant image stays constant under resizing
    assert ds.train.images[:, :, 1, 1].tolist() == [[1, 2, 3], [1, 2, 3]]


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "ok.png", _rgb((0, 0, 0)))
    bad = tmp_path / "train" / "a" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    _png(tmp_path / "test" / "a" / "t.png", _rgb((0, 0, 0)))
    with pytest.raises(DataError, match=f"file {bad}: not a readable image"):
        load_dataset("imagefolder", root=tmp_path)


def test_layout_errors(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "0.png", _rgb((0, 0, 0)))
    with pytest.raises(DataError, match="has train/ but no test/ folder"):
        load_dataset("imagefolder", root=tmp_path)
    _png(tmp_path / "test" / "zebra" / "0.png", _rgb((0, 0, 0)))
    with pytest.raises(DataError, match="class 'zebra' is not among the train classes; known: a"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="empty: holds no images"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataError, match="option channels"):
        load_dataset("imagefolder", root=tmp_path, channels=2)
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("imagefolder", root=tmp_path / "missing")


def test_jpeg_files_load(tmp_path: Path) -> None:
    for cls in ("p", "q"):
        for i in range(2):
            path = tmp_path / "train" / cls / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb((120, 60, 30))).save(path, quality=95)
        (tmp_path / "test" / cls).mkdir(parents=True)
        Image.fromarray(_rgb((120, 60, 30))).save(tmp_path / "test" / cls / "0.JPEG", format="JPEG")
    ds = load_dataset("imagefolder", root=tmp_path)
    assert ds.image_shape == (3, 8, 8) and len(ds.test) == 2
    # JPEG is lossy, but a flat colour survives within a few levels
    assert (ds.train.images[:, 0].float() - 120).abs().max() <= 3
