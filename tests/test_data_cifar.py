"""CIFAR-10/100 from python pickles in the original format, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.data import DataError, load_dataset, prepare_dataset
from workbench.data.safe_pickle import safe_load, safe_loads


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path, per_batch: int = 3, labels_in_train: int = 10) -> dict[str, np.ndarray]:
    """Write cifar-10-batches-py/ with ``per_batch`` images per train batch; returns the train arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % labels_in_train for j in range(per_batch)]
        _dump(
            folder / f"data_batch_{i}",
            {
                b"batch_label": b"training batch",
                b"data": data,
                b"labels": labels,
                b"filenames": [b"x.png"] * per_batch,
            },
        )
        all_data.append(data)
        all_labels.extend(labels)
    # test image 0: pure red (R plane 255, G and B planes 0)
    test = np.zeros((2, 3072), dtype=np.uint8)
    test[0, :1024] = 255
    test[1, 1024:2048] = np.arange(1024) % 256
    _dump(folder / "test_batch", {b"data": test, b"labels": [3, 7]})
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {"data": np.concatenate(all_data), "labels": np.array(all_labels)}


def make_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    fine = np.arange(200) % 100
    _dump(
        folder / "train",
        {
            b"data": rng.integers(0, 256, (200, 3072), dtype=np.uint8),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
        },
    )
    _dump(
        folder / "test",
        {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"fine_labels": [0, 5, 99, 50],
            b"coarse_labels": [0, 1, 19, 10],
        },
    )
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
            b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)],
        },
    )


def test_cifar10_loads_pickles(tmp_path: Path) -> None:
    train = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.train.images.shape == (15, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.train.labels.tolist() == train["labels"].tolist()
    np.testing.assert_array_equal(ds.train.images.reshape(15, -1).numpy(), train["data"])
    red = ds.test.images[0]
    assert bool((red[0] == 255).all()) and bool((red[1:] == 0).all())
    # green plane, row-major: row 0 holds 0..31, row 1 holds 32..63
    assert ds.test.images[1, 1, 1, :3].tolist() == [32, 33, 34]
    assert ds.class_names[:2] == ["airplane", "automobile"] and ds.class_names[9] == "truck"
    assert ds.hflip_ok and ds.in_channels == 3 and len(ds.mean) == 3
    assert ds.mean[0] == pytest.approx(train["data"][:, :1024].mean() / 255, rel=1e-9)


def test_cifar100_label_modes(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    fine = load_dataset("cifar100", root=tmp_path)
    assert fine.num_classes == 100 and fine.test.labels.tolist() == [0, 5, 99, 50]
    coarse = load_dataset("cifar100", root=tmp_path, label_mode="coarse")
    assert coarse.num_classes == 20 and coarse.test.labels.tolist() == [0, 1, 19, 10]
    assert coarse.class_names[19] == "coarse19"
    with pytest.raises(DataError, match="option label_mode: unknown value 'medium'; known: fine, coarse"):
        load_dataset("cifar100", root=tmp_path, label_mode="medium")


def test_missing_batch_is_named(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    missing = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    with pytest.raises(DataError, match=f"file {missing}: not found"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="has no cifar-100-python/ folder"):
        load_dataset("cifar100", root=tmp_path)


def test_malformed_batches(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    _dump(batch, {b"data": np.zeros((3, 100), dtype=np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(DataError, match=f"file {batch}: 'data' should be a uint8 array"):
        load_dataset("cifar10", root=tmp_path)
    _dump(batch, {b"data": np.zeros((3, 3072), dtype=np.uint8), b"labels": [0, 1, 12]})
    with pytest.raises(DataError, match=r"values span \[0, 12\], expected \[0, 10\)"):
        load_dataset("cifar10", root=tmp_path)
    _dump(batch, {b"data": np.zeros((3, 3072), dtype=np.uint8)})
    with pytest.raises(DataError, match="has no 'labels' entry; found: data"):
        load_dataset("cifar10", root=tmp_path)
    batch.write_bytes(pickle.dumps({b"data": 1})[:-5])
    with pytest.raises(DataError, match=f"file {batch}: not a readable data pickle"):
        load_dataset("cifar10", root=tmp_path)


def test_prepare_reports_classes_without_train_samples(tmp_path: Path) -> None:
    make_cifar10(tmp_path, labels_in_train=8)
    assert len(load_dataset("cifar10", root=tmp_path).train) == 15
    with pytest.raises(DataError, match="classes ship, truck have no train samples"):
        prepare_dataset("cifar10", root=tmp_path)


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


class _WritesFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (str(self.marker), "w"))


class _Evaluates:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (eval, ("__import__('os').getcwd()",))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = tmp_path / "evil"
    _dump(batch, {b"data": _RunsCommand(marker), b"labels": [0]})
    with pytest.raises(DataError, match=r"refused, the pickle asks for (posix|nt|os)\.system") as err:
        safe_load(batch)
    assert str(batch) in str(err.value)
    assert not marker.exists()


def test_malicious_cifar_batch_has_no_side_effect(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    marker = tmp_path / "written-by-pickle"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    _dump(batch, {b"data": _WritesFile(marker), b"labels": [0]})
    with pytest.raises(DataError, match=r"refused, the pickle asks for (_?io|builtins)\.open"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_eval_and_accepts_plain_data() -> None:
    with pytest.raises(DataError, match=r"builtins\.eval"):
        safe_loads(pickle.dumps(_Evaluates(), protocol=2))
    value = {
        b"a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "b": [1.5, (2, 3)],
        "c": {4, 5},
        "d": np.float32(2.5),
    }
    for protocol in (2, 4, 5):
        loaded = safe_loads(pickle.dumps(value, protocol=protocol))
        np.testing.assert_array_equal(loaded[b"a"], value[b"a"])
        assert loaded["b"] == [1.5, (2, 3)] and loaded["c"] == {4, 5} and loaded["d"] == 2.5
