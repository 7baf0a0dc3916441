"""Datasets of one's own in the run store: every loader through add_dataset on files in the real
formats, what a failed add leaves (nothing), removal, the command and the panel."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from workbench.config import validate_config
from workbench.data import DataError, load_dataset
from workbench.data.idx import encode_idx
from workbench.runs.datasets import (
    add_dataset,
    dataset_choices,
    detect_loader,
    get_store_dataset,
    list_store_datasets,
    open_dataset,
    remove_dataset,
)
from workbench.runtime import Cancelled, CancelToken

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---- files in the real formats ------------------------------------------------------------------
def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _image_folder(root: Path, counts: dict[str, int], size: int = 6) -> dict[str, list[np.ndarray]]:
    """``root/<class>/<i>.png``: RGB images whose red value says the class, green the image."""
    made: dict[str, list[np.ndarray]] = {}
    for k, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            pixels = np.zeros((size, size, 3), dtype=np.uint8)
            pixels[..., 0], pixels[..., 1] = 40 * k, 10 * i
            _png(root / cls / f"{i:02d}.png", pixels)
            made.setdefault(cls, []).append(pixels)
    return made


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar10(folder: Path, per_batch: int = 2) -> None:
    """The five train batches, the test batch and the meta file, flat in ``folder``."""
    rng = np.random.default_rng(1)
    for i in range(1, 6):
        labels = [(2 * i + j) % 10 for j in range(per_batch)]
        _dump(folder / f"data_batch_{i}", {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                                            b"labels": labels})
    _dump(folder / "test_batch", {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [0, 1, 2]})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES]})


def _cifar100(folder: Path) -> None:
    rng = np.random.default_rng(2)
    fine = np.arange(100) % 100
    _dump(folder / "train", {b"data": rng.integers(0, 256, (100, 3072), dtype=np.uint8),
                             b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()})
    _dump(folder / "test", {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                            b"fine_labels": [0, 1, 2, 3], b"coarse_labels": [0, 0, 0, 0]})
    _dump(folder / "meta", {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
                            b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]})


def _idx_set(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        (folder / name).write_bytes(gzip.compress(encode_idx(array)))


def _zip_of(folder: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _left(store: Path) -> list[str]:
    folder = store / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- every loader --------------------------------------------------------------------------------
def test_a_folder_is_registered_where_it_is(tmp_path: Path) -> None:
    made = _image_folder(tmp_path / "pets", {"cat": 6, "dog": 5})
    store = tmp_path / "store"
    entry = add_dataset(store, "pets", tmp_path / "pets")
    assert (entry.loader, entry.in_store, entry.class_names) == ("imagefolder", False, ["cat", "dog"])
    assert entry.root == (tmp_path / "pets").resolve() and entry.image_shape == (3, 6, 6)
    assert entry.train_size + entry.test_size == 11 and entry.notes == []
    # red is 0 for cat and 40 for dog; the train split keeps 5 cats and 4 dogs (a 0.2 stratified split)
    assert entry.mean[0] == pytest.approx(4 * 40 / 9 / 255)
    assert entry.data_section() == {"dataset": "imagefolder", "name": "pets", "root": str(entry.root), "options": {}}
    assert validate_config({"data": entry.data_section()}).data.label == "pets"
    section = entry.data_section()
    direct = load_dataset(section["dataset"], root=section["root"], **section["options"])
    loaded = entry.load()
    assert loaded.name == "pets" and torch.equal(loaded.train.images, direct.train.images)
    assert any(np.array_equal(loaded.train.images[0].numpy().transpose(1, 2, 0), img) for img in made["cat"])
    assert [e.name for e in list_store_datasets(store)] == ["pets"]
    assert get_store_dataset(store, "pets") == entry
    assert _left(store) == ["pets.json"]


def test_a_zip_upload_is_unpacked_into_the_store(tmp_path: Path) -> None:
    _image_folder(tmp_path / "src", {"cat": 4, "dog": 4})
    data = _zip_of(tmp_path / "src", "pets/", {"__MACOSX/pets/._x.png": b"fork"})
    upload = io.BytesIO(data)
    upload.name = "pets.zip"
    store = tmp_path / "store"
    entry = add_dataset(store, "pets", upload, options={"test_fraction": 0.25})
    assert entry.in_store and entry.source == "upload pets.zip"
    assert entry.root == (store / "datasets" / "pets" / "files" / "pets").resolve()
    assert (entry.train_size, entry.test_size, entry.options) == (6, 2, {"test_fraction": 0.25})
    record = json.loads((store / "datasets" / "pets.json").read_text())
    assert record["root"] == "pets" and record["in_store"] is True  # the store can move
    assert _left(store) == ["pets", "pets.json"]
    assert sorted(p.name for p in (store / "datasets" / "pets" / "files").iterdir()) == ["pets"]
    assert len(entry.load().train) == 6


def test_cifar10_from_a_zip_of_the_flat_batch_files(tmp_path: Path) -> None:
    _cifar10(tmp_path / "batches")
    entry = add_dataset(tmp_path / "store", "c10", _zip_of(tmp_path / "batches"))
    assert entry.loader == "cifar10" and entry.class_names == CIFAR10_NAMES
    assert (entry.train_size, entry.test_size, entry.image_shape) == (10, 3, (3, 32, 32))
    assert entry.data_section()["dataset"] == "cifar10"
    assert load_dataset("cifar10", root=entry.root).train.labels.tolist() == [
        (2 * i + j) % 10 for i in range(1, 6) for j in range(2)
    ]


def test_cifar100_from_a_folder_in_the_standard_layout(tmp_path: Path) -> None:
    _cifar100(tmp_path / "data" / "cifar-100-python")
    assert detect_loader(tmp_path / "data") == "cifar100"
    entry = add_dataset(tmp_path / "store", "c100", tmp_path / "data", options={"label_mode": "coarse"})
    assert entry.loader == "cifar100" and entry.num_classes == 20 and entry.class_names[3] == "coarse3"
    assert entry.root == (tmp_path / "data").resolve() and entry.options == {"label_mode": "coarse"}


def test_mnist_and_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    _idx_set(tmp_path / "idx")
    entry = add_dataset(tmp_path / "store", "digits-full", tmp_path / "idx")
    assert (entry.loader, entry.train_size, entry.test_size) == ("mnist", 20, 10)
    assert entry.class_names == [str(d) for d in range(10)] and entry.image_shape == (1, 28, 28)
    fashion = add_dataset(tmp_path / "store", "clothes", tmp_path / "idx", loader="fashion-mnist")
    assert fashion.class_names[0] == "T-shirt/top"
    assert [c.name for c in dataset_choices(tmp_path / "store") if c.where == "store"] == ["clothes", "digits-full"]


def test_a_cifar_archive_by_url_is_checked_against_its_checksum(tmp_path: Path) -> None:
    _cifar10(tmp_path / "pack" / "cifar-10-batches-py")
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "pack" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    store = tmp_path / "store"
    with pytest.raises(DataError, match="does not match"):
        add_dataset(store, "c10", archive.as_uri(), options={"checksums": {"cifar-10-python.tar.gz": "0" * 32}})
    assert _left(store) == []
    seen: list[tuple[int, int]] = []
    entry = add_dataset(store, "c10", archive.as_uri(), options={"checksums": {"cifar-10-python.tar.gz": md5}},
                        progress=lambda done, total, message: seen.append((done, total)))
    assert entry.loader == "cifar10" and entry.options == {} and entry.source == archive.as_uri()
    assert _left(store) == ["c10", "c10.json"]
    assert sorted(p.name for p in (store / "datasets" / "c10").rglob("*.tar.gz")) == []  # archive not kept
    assert seen[-1] == (100, 100) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(DataError, match="expected the URL of a CIFAR archive"):
        add_dataset(store, "other", "https://example.org/data.zip")


# ---- bad input leaves nothing ------------------------------------------------------------------
def test_bad_names_are_refused(tmp_path: Path) -> None:
    _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    store = tmp_path / "store"
    for name, message in (("My Pets", "not a plain slug"), ("../x", "not a plain slug"),
                          ("mnist", "taken by the built-in dataset"), ("-x", "not a plain slug")):
        with pytest.raises(DataError, match=message):
            add_dataset(store, name, tmp_path / "pets")
    add_dataset(store, "pets", tmp_path / "pets")
    with pytest.raises(DataError, match="dataset name 'pets': already taken"):
        add_dataset(store, "pets", tmp_path / "pets")
    assert _left(store) == ["pets.json"]


@pytest.mark.parametrize("case", ["no-classes", "unreadable", "mixed-sizes", "traversal", "too-large",
                                  "cifar-layout", "not-found", "cancelled"])
def test_a_failed_add_is_one_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    src = tmp_path / "src"
    _image_folder(src, {"cat": 3, "dog": 3})
    kwargs: dict = {}
    source: object = _zip_of(src)
    if case == "no-classes":
        _png(tmp_path / "flat" / "a.png", np.zeros((4, 4, 3), dtype=np.uint8))
        source, message = _zip_of(tmp_path / "flat"), "cannot tell the dataset's format"
    elif case == "unreadable":
        (src / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
        source, message = _zip_of(src), "dog/broken.png: not a readable image"
    elif case == "mixed-sizes":
        _png(src / "dog" / "big.png", np.zeros((9, 9, 3), dtype=np.uint8))
        source, message = _zip_of(src), "big.png: size 9x9 differs from 6x6 .* pass option image_size"
    elif case == "traversal":
        source, message = _zip_of(src, extra={"../evil.png": b"x"}), "would be written outside"
    elif case == "too-large":
        kwargs, message = {"max_bytes": 100}, "over the limit of 100 B; nothing was unpacked"
    elif case == "cifar-layout":
        _cifar10(tmp_path / "c10")
        (tmp_path / "c10" / "data_batch_3").unlink()
        source, message = _zip_of(tmp_path / "c10"), "not the cifar10 layout; .* missing data_batch_3"
    elif case == "not-found":
        source, message = tmp_path / "absent", "source .*absent: not found"
    else:
        token = CancelToken()
        token.cancel()
        kwargs, message = {"cancel": token}, "adding x"
    store = tmp_path / "store"
    with pytest.raises((DataError, Cancelled), match=message) as err:
        add_dataset(store, "x", source, **kwargs)
    assert "\n" not in str(err.value)
    assert _left(store) == [] and list_store_datasets(store) == []
    assert not (tmp_path / "evil.png").exists()


def test_a_folder_without_class_sub_folders_named_for_imagefolder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        add_dataset(tmp_path / "store", "x", tmp_path / "empty", loader="imagefolder")


def test_converted_and_resized_images_are_noted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image_folder(src, {"cat": 3, "dog": 3})
    _png(src / "cat" / "alpha.png", np.full((6, 6, 4), 200, dtype=np.uint8), "RGBA")
    _png(src / "dog" / "gray.png", np.full((8, 8), 90, dtype=np.uint8), "L")
    entry = add_dataset(tmp_path / "store", "mixed", src, options={"image_size": 6})
    assert entry.notes == ["2 of 8 images converted to RGB (from 1 L, 1 RGBA)",
                           "1 of 8 images resized to 6x6 (option image_size)"]
    assert entry.image_shape == (3, 6, 6)


# ---- removing, damage, opening ---------------------------------------------------------------------
def test_remove_deletes_the_stores_files_and_never_a_folder_elsewhere(tmp_path: Path) -> None:
    _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    store = tmp_path / "store"
    add_dataset(store, "here", tmp_path / "pets")
    add_dataset(store, "copy", _zip_of(tmp_path / "pets"))
    assert remove_dataset(store, "copy").in_store
    assert remove_dataset(store, "here").root == (tmp_path / "pets").resolve()
    assert _left(store) == [] and len(list((tmp_path / "pets").rglob("*.png"))) == 4
    with pytest.raises(DataError, match="dataset 'here': not in the store .*; stored: none"):
        remove_dataset(store, "here")


def test_a_damaged_entry_is_listed_refused_and_removable(tmp_path: Path) -> None:
    folder = tmp_path / "store" / "datasets"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text("{not json")
    (folder / "odd.json").write_text(json.dumps({"name": "odd", "loader": "nope"}))
    entries = {e.name: e.damage for e in list_store_datasets(tmp_path / "store")}
    assert entries == {"bad": "bad.json: unreadable (JSONDecodeError)",
                       "odd": "odd.json: wrong shape (missing 'root')"}
    with pytest.raises(DataError, match="dataset 'bad': bad.json: unreadable"):
        get_store_dataset(tmp_path / "store", "bad")
    remove_dataset(tmp_path / "store", "bad")
    assert [e.name for e in list_store_datasets(tmp_path / "store")] == ["odd"]


def test_open_dataset_finds_the_stores_then_the_built_in_ones(tmp_path: Path) -> None:
    _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    store = tmp_path / "store"
    add_dataset(store, "pets", tmp_path / "pets")
    assert open_dataset(store, "pets").class_names == ["cat", "dog"]
    assert open_dataset(store, "mnist").image_shape == (1, 28, 28)
    with pytest.raises(DataError, match="'cifar10': reads its files from a folder; add your copy"):
        open_dataset(store, "cifar10")
    with pytest.raises(DataError, match="'nope': neither built-in nor in the store .*known: mnist.* pets"):
        open_dataset(store, "nope")


# ---- the faces -------------------------------------------------------------------------------------
def test_the_command_adds_lists_previews_and_removes(tmp_path: Path) -> None:
    from workbench.cli import app

    _image_folder(tmp_path / "pets", {"cat": 8, "dog": 2})
    runs = str(tmp_path / "store")
    runner = CliRunner()
    added = runner.invoke(app, ["data", "add", "pets", str(tmp_path / "pets"), "--runs", runs,
                                "--option", "test_fraction=0.5"])
    assert added.exit_code == 0, added.output
    assert "added pets: imagefolder, 5 train / 5 test, shape 3x6x6, 2 classes" in added.output
    listed = runner.invoke(app, ["data", "list", "--runs", runs])
    assert listed.exit_code == 0 and "pets" in listed.output and "store" in listed.output
    assert "built-in" in listed.output and "shapes" in listed.output
    shown = runner.invoke(app, ["data", "preview", "pets", "--runs", runs])
    assert shown.exit_code == 0, shown.output
    assert "pets: 3x6x6 images, 2 classes, 5 train / 5 test" in shown.output
    assert "warning: class imbalance: 'cat' has 4 train images, 'dog' 1 (ratio 4.00" in shown.output
    bad = runner.invoke(app, ["data", "add", "Pets!", str(tmp_path / "pets"), "--runs", runs])
    assert bad.exit_code == 2 and "error: dataset name 'Pets!': not a plain slug" in bad.output
    removed = runner.invoke(app, ["data", "remove", "pets", "--runs", runs])
    assert removed.exit_code == 0 and "removed pets" in removed.output
    assert list_store_datasets(runs) == []


def test_the_panel_previews_and_adds(tmp_path: Path) -> None:
    pytest.importorskip("ipywidgets")
    from workbench.widgets import DataPanel

    _image_folder(tmp_path / "src", {"cat": 4, "dog": 4})
    store = tmp_path / "store"
    panel = DataPanel(store=store, dataset="mnist", per_class=3)
    preview = panel.wait(60)
    assert panel.error is None and preview is not None and preview.samples.shape[:2] == (10, 3)
    assert panel.figure is not None and panel.warnings == []
    assert ("pets (store)", "pets") not in panel.controls["dataset"].options
    data = _zip_of(tmp_path / "src")
    upload = {"name": "pets.zip", "type": "application/zip", "size": len(data), "content": memoryview(data),
              "last_modified": datetime.now(timezone.utc)}
    panel.upload.value = (upload,)
    panel.set(name="pets")
    panel.wait(60)
    panel.add()
    panel.wait(60)
    assert panel.error is None, panel.error
    assert panel.added is not None and panel.added.source == "upload pets.zip"
    assert panel.value("dataset") == "pets" and panel.result.name == "pets"
    assert ("pets (store)", "pets") in panel.controls["dataset"].options
    assert panel.result.counts["train"].tolist() == [3, 3] and panel.upload.value == ()
    assert [e.name for e in list_store_datasets(store)] == ["pets"]
    panel.add("pets", tmp_path / "src")
    panel.wait(60)
    assert panel.error is not None and "already taken" in panel.error
    panel.close()
