"""IDX parsing, MNIST / Fashion-MNIST from IDX files, and the embedded subsets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.data import DataError, load_dataset
from workbench.data.idx import encode_idx, parse_idx, read_idx
from workbench.data.mnist import FASHION_CLASSES

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_idx_set(
    folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = False, dotted: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a small MNIST-format set into ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        name = STEMS[role].replace("-idx", ".idx") if dotted else STEMS[role]
        data = encode_idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_parse_idx_hand_made_bytes() -> None:
    ubyte = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9])
    assert parse_idx(ubyte, "u").tolist() == [7, 8, 9]
    # big-endian int16 values 1 and -1, shape (1, 2)
    short = bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 2) + struct.pack(">hh", 1, -1)
    parsed = parse_idx(short, "s")
    assert parsed.shape == (1, 2) and parsed.tolist() == [[1, -1]]
    # big-endian float32 1.5
    flt = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + struct.pack(">f", 1.5)
    assert parse_idx(flt, "f").tolist() == [1.5]


def test_encode_parse_round_trip() -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = encode_idx(array)
    assert data[:4] == bytes([0, 0, 8, 3]) and len(data) == 4 + 12 + 24
    np.testing.assert_array_equal(parse_idx(data, "x"), array)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00\x00", "too short"),
        (b"\x12\x34\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated: dims (5,) need 5 data bytes, found 2"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
    ],
)
def test_parse_idx_rejects_corrupt_data(data: bytes, fragment: str) -> None:
    with pytest.raises(DataError, match="file the-file: ") as err:
        parse_idx(data, "the-file")
    assert fragment in str(err.value)


def test_read_idx_checks_dims_and_names_file(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(encode_idx(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match=f"file {path}: expected an IDX array with 3 dimensions"):
        read_idx(path, ndim=3)
    bad_gz = tmp_path / "broken.gz"
    bad_gz.write_bytes(gzip.compress(encode_idx(np.zeros(100, dtype=np.uint8)))[:20])
    with pytest.raises(DataError, match=f"file {bad_gz}: corrupt or truncated gzip"):
        read_idx(bad_gz)


@pytest.mark.parametrize(("gz", "dotted"), [(False, False), (True, False), (False, True), (True, True)])
def test_load_mnist_from_idx_files(tmp_path: Path, gz: bool, dotted: bool) -> None:
    arrays = make_idx_set(tmp_path, gz=gz, dotted=dotted)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.train.images.shape == (30, 1, 28, 28) and ds.test.images.shape == (10, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(ds.test.labels.numpy(), arrays["test_labels"])
    expected_mean = arrays["train_images"].astype(np.float64).mean() / 255
    assert ds.mean[0] == pytest.approx(expected_mean, rel=1e-9)
    assert ds.std[0] == pytest.approx(arrays["train_images"].astype(np.float64).std() / 255, rel=1e-9)
    assert ds.class_names == [str(d) for d in range(10)] and not ds.hflip_ok


def test_load_fashion_from_torchvision_layout(tmp_path: Path) -> None:
    make_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert len(ds.train) == 30 and ds.class_names == FASHION_CLASSES and ds.hflip_ok


def test_truncated_idx_file_is_named(tmp_path: Path) -> None:
    make_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"file {path}: truncated"):
        load_dataset("mnist", root=tmp_path)


def test_label_count_mismatch_and_range(tmp_path: Path) -> None:
    make_idx_set(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(encode_idx(np.zeros(9, dtype=np.uint8)))
    with pytest.raises(DataError, match=f"file {labels}: holds 9 labels"):
        load_dataset("mnist", root=tmp_path)
    labels.write_bytes(encode_idx(np.full(10, 12, dtype=np.uint8)))
    with pytest.raises(DataError, match="label 12 is out of range for 10 classes"):
        load_dataset("mnist", root=tmp_path)


def test_missing_files_are_listed(tmp_path: Path) -> None:
    make_idx_set(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing mnist files t10k-images-idx3-ubyte.gz.*download=True"):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize(
    ("name", "mean", "std"),
    [("mnist", 0.1307, 0.3081), ("fashion-mnist", 0.2860, 0.3530)],
)
def test_embedded_subsets(name: str, mean: float, std: float) -> None:
    ds = load_dataset(name)
    assert ds.train.images.shape == (12000, 1, 28, 28) and ds.test.images.shape == (2000, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.train.images.is_contiguous()
    assert torch.bincount(ds.train.labels, minlength=10).tolist() == [1200] * 10
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [200] * 10
    # a random class-balanced subset has nearly the published full-set pixel statistics
    assert ds.mean[0] == pytest.approx(mean, abs=0.006) and ds.std[0] == pytest.approx(std, abs=0.006)
    computed = ds.train.images.double().mean().item() / 255
    assert ds.mean[0] == pytest.approx(computed, rel=1e-9)
    assert ds.num_classes == 10 and ds.image_shape == (1, 28, 28)
    # shuffled, not sorted by class
    assert len(set(ds.train.labels[:20].tolist())) > 3


def test_embedded_fashion_train_and_test_are_disjoint() -> None:
    from workbench.data.mnist import assets_dir

    with np.load(assets_dir() / "fashion-mnist.npz") as npz:
        train, test = npz["train_source_index"], npz["test_source_index"]
    assert np.unique(train).size == train.size == 12000
    assert np.intersect1d(train, test).size == 0


def test_assets_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ASSETS", str(tmp_path))
    with pytest.raises(DataError, match=f"file {tmp_path / 'mnist.npz'}: embedded subset"):
        load_dataset("mnist")
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "mnist.npz",
        train_images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        train_labels=(np.arange(20) % 10).astype(np.uint8),
        test_images=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        test_labels=(np.arange(10) % 10).astype(np.uint8),
        class_names=np.array([str(d) for d in range(10)]),
        mean=np.array([0.5]),
        std=np.array([0.29]),
    )
    ds = load_dataset("mnist")
    assert len(ds.train) == 20 and ds.mean == (0.5,) and ds.std == (0.29,)


def test_corrupt_embedded_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ASSETS", str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=f"file {tmp_path / 'mnist.npz'}"):
        load_dataset("mnist")
    np.savez(tmp_path / "mnist.npz", train_images=np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="missing arrays train_labels"):
        load_dataset("mnist")
