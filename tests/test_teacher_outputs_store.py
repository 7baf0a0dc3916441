"""Fixed teachers' outputs kept in the run store across runs: a second identical run reads them and
runs no teacher forward over the train split; anything that changes the values the teacher sees or
returns makes them a miss; broken files are recomputed; the folder is capped; the data fingerprint."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest
import torch

from workbench.config import validate_config
from workbench.data import load_dataset
from workbench.data.fingerprint import dataset_fingerprint
from workbench.models.cnn import PlainCNN
from workbench.runs import RunStore
from workbench.train import Trainer
from workbench.train.cache import TeacherCache
from workbench.train.output_store import (
    STORE_FOLDER,
    TeacherOutputStore,
    output_key,
    teacher_weights_hash,
)

BATCH = 64  # the train batch: 320 images -> 5 teacher forwards of 64 per epoch
EVAL_BATCH = 100  # the test chunks (100 + 28), told apart from train batches by their size

#: the batch size of every teacher forward since the last reset (all copies of the teacher share it)
CALLS: list[int] = []


class CountingCNN(PlainCNN):
    """A plain CNN teacher that records the batch size of each of its forwards in ``CALLS``; the
    engine's copies of it (frozen, BatchNorm-folded) are of this class too, so they count."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS.append(int(x.shape[0]))
        return super().forward(x)


def train_forwards() -> int:
    """Forwards over a lazily cached train batch (64 rows)."""
    return sum(1 for n in CALLS if n == BATCH)


def eval_forwards() -> int:
    """Forwards over the test split (chunks of 100 and 28 rows)."""
    return sum(1 for n in CALLS if n in (EVAL_BATCH, 28))


def data_forwards() -> int:
    """Every forward over the run's data, whatever the split or the batch (all but the 2-image
    probe with which set-up finds the BatchNorm pairs to fold)."""
    return sum(1 for n in CALLS if n != 2)


@pytest.fixture(scope="module")
def small(digits):
    """320 training and 128 test digits."""
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(320)), test=digits.test.subset(torch.arange(128))
    )


def _teacher(small, seed=0):
    torch.manual_seed(seed)
    net = CountingCNN(num_classes=10, in_channels=1, image_size=8, channels=[8, 16])
    net.train()
    with torch.no_grad():  # running statistics that are not the defaults
        net(small.normalize(small.train.images[:128]))
    return net.eval()


@pytest.fixture(scope="module")
def teacher(small):
    return _teacher(small)


FITNET = {
    "name": "fitnet",
    "weight": 0.5,
    "params": {"student_layers": ["features.1"], "teacher_layers": ["features.1"]},
}


def _kd(methods=None, augment=None, precision="float32", train_subset=None, cache=True):
    return validate_config(
        {
            "kind": "distill",
            "seed": 0,
            "data": {
                "dataset": "digits",
                "batch_size": BATCH,
                "eval_batch_size": EVAL_BATCH,
                "augment": augment or {},
                "train_subset": train_subset,
            },
            "model": {"name": "cnn", "kwargs": {"channels": [4, 8]}},
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "train": {"epochs": 1, "snapshot_every_epoch": False},
            "distill": {
                "methods": methods or [{"name": "kd", "weight": 0.9}],
                "ce_weight": 0.1,
                "teacher_precision": precision,
                "teacher_cache": cache,
            },
        }
    )


def _run(config, store, data, teacher, **kwargs):
    """Train once; returns the trainer, each step's loss terms and the teacher's forwards over lazily
    cached train batches and over the test split."""
    CALLS.clear()
    trainer = Trainer(config, store=store, dataset=data, teachers=[teacher], **kwargs)
    terms: list[dict[str, float]] = []
    trainer.term_hook = lambda t, step: terms.append({k: float(v.detach()) for k, v in t.items()})
    trainer.run()
    return trainer, terms, train_forwards(), eval_forwards()


def _entries(store: RunStore) -> list[str]:
    folder = store.root / STORE_FOLDER
    return sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []


# ---- the second identical run --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lazy", pytest.param("eager", marks=pytest.mark.slow)])
def test_a_second_identical_run_reads_the_outputs_and_runs_no_teacher_forward(mode, small, teacher, tmp_path):
    store = RunStore(tmp_path / "runs")
    first, terms1, _, _ = _run(_kd(), store, small, teacher, teacher_cache=mode)
    assert data_forwards() == (5 if mode == "lazy" else 4) + 2  # train batches (or chunks), test
    assert first.stored_outputs.used == {"train": "saved", "test": "saved"}
    assert len(_entries(store)) == 2  # the train split's outputs and the test split's logits
    second, terms2, _, _ = _run(_kd(), store, small, teacher, teacher_cache=mode)
    assert data_forwards() == 0
    assert second.stored_outputs.used == {"train": "loaded", "test": "loaded"}
    assert second.lazy_cache is None and second.cache is not None
    # the same seed gives the same loss terms, step by step
    assert len(terms1) == len(terms2) == 5
    for a, b in zip(terms1, terms2, strict=True):
        assert a.keys() == b.keys() == {"ce", "kd"}
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k
    # the stored logits are the teacher's own (the folded copy computes the same function)
    with torch.no_grad():
        direct = teacher(small.normalize(small.train.images))
    assert torch.allclose(second.cache.logits[0], direct, atol=1e-4)
    assert second.teacher_test_logits is not None


def test_a_run_without_a_store_or_with_the_cache_off_keeps_nothing(small, teacher, tmp_path):
    trainer, _, train, _ = _run(_kd(), None, small, teacher)
    assert train == 5 and trainer.stored_outputs.store is None
    store = RunStore(tmp_path / "runs")
    trainer, _, train, _ = _run(_kd(cache=False), store, small, teacher)
    assert train == 5 and _entries(store) == []


# ---- what makes stored outputs stale ---------------------------------------------------------------


@pytest.fixture(scope="module")
def primed_folder(small, teacher, tmp_path_factory):
    """The teacher-output folder of a store after the plain KD run (computed once per module)."""
    store = RunStore(tmp_path_factory.mktemp("primed") / "runs")
    _run(_kd(), store, small, teacher)
    assert len(_entries(store)) == 2
    return store.root / STORE_FOLDER


@pytest.fixture
def primed(primed_folder, tmp_path):
    """A store of its own holding the outputs of the plain KD run."""
    store = RunStore(tmp_path / "runs")
    shutil.copytree(primed_folder, store.root / STORE_FOLDER)
    return store


def test_an_augmentation_uses_no_stored_outputs_and_stores_none(primed, small, teacher):
    trainer, _, train, _ = _run(_kd(augment={"crop_padding": 1}), primed, small, teacher)
    assert train == 5 and trainer.cache is None and trainer.lazy_cache is None  # a forward per step
    assert "train" not in trainer.stored_outputs.used
    assert len(_entries(primed)) == 2  # the test logits were read, nothing new was written


def test_another_train_subset_is_a_miss(primed, small, teacher):
    trainer, _, train, test = _run(_kd(train_subset=256), primed, small, teacher)
    assert train == 4 and test == 0  # 256 / 64 batches computed; the test split is the same
    assert trainer.stored_outputs.used == {"train": "saved", "test": "loaded"}
    assert len(_entries(primed)) == 3


def test_another_order_of_the_same_images_is_a_miss(primed, small, teacher):
    perm = torch.arange(319, -1, -1)
    reordered = dataclasses.replace(small, train=small.train.subset(perm))
    _, _, train, _ = _run(_kd(), primed, reordered, teacher)
    assert train == 5


def test_other_teacher_weights_are_a_miss(primed, small, teacher):
    other = _teacher(small)
    with torch.no_grad():
        other.fc.bias[0] += 1e-3  # one weight changed
    assert teacher_weights_hash(other) != teacher_weights_hash(teacher)
    _, _, train, test = _run(_kd(), primed, small, other)
    assert (train, test) == (5, 2)
    assert len(_entries(primed)) == 4


def test_another_teacher_precision_is_a_miss(primed, small, teacher):
    trainer, _, train, test = _run(_kd(precision="bfloat16"), primed, small, teacher)
    assert (train, test) == (5, 2)
    assert trainer.stored_outputs.parts("train")["transform"]["precision"] == "bfloat16"


def test_a_method_that_reads_teacher_features_is_a_miss_then_a_hit(primed, small, teacher):
    methods = [{"name": "kd", "weight": 0.9}, FITNET]
    trainer, _, train, test = _run(_kd(methods=methods), primed, small, teacher)
    assert (train, test) == (5, 0)  # the logits-only entry does not hold the features
    outputs = trainer.stored_outputs
    assert outputs.parts("train")["outputs"]["features"] == ["features.1"]
    stored = outputs.store.load(outputs.parts("train"))  # what the next such run reads
    assert stored is not None and set(stored.features[0]) == {"features.1"}
    assert torch.equal(stored.features[0]["features.1"], trainer.lazy_cache.cache.features[0]["features.1"])
    assert len(_entries(primed)) == 3


# ---- broken files, the budget and the cap --------------------------------------------------------


def _train_names(store: RunStore) -> set[str]:
    """The files of train-split entries in ``store`` (their JSON says the split)."""
    folder = store.root / STORE_FOLDER
    out = set()
    for meta in folder.glob("*.json"):
        if json.loads(meta.read_text())["data"]["split"] == "train":
            out.add(meta.with_suffix(".safetensors").name)
    return out


def _damage(path, how: str) -> None:
    data = bytearray(open(path, "rb").read())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped byte":
        data[-5] ^= 0xFF  # inside the last tensor: only the digest tells
    else:
        data = bytearray()
    open(path, "wb").write(bytes(data))


def test_a_truncated_file_is_recomputed_and_replaced(primed, small, teacher):
    (name,) = [n for n in _entries(primed) if n in _train_names(primed)]
    path = primed.root / STORE_FOLDER / name
    _damage(path, "truncated")
    trainer, _, train, test = _run(_kd(), primed, small, teacher)
    assert (train, test) == (5, 0) and trainer.stored_outputs.used == {"train": "saved", "test": "loaded"}
    assert trainer.stored_outputs.store.load(trainer.stored_outputs.parts("train")) is not None  # whole again


@pytest.mark.parametrize("how", ["truncated", "flipped byte", "empty"])
def test_a_damaged_file_is_ignored_and_removed(how, tmp_path):
    folder = TeacherOutputStore(tmp_path)
    parts = {"rows": 64, "teachers": ["t"], "outputs": {"logits": True, "features": ["a.b"]}}
    cache = TeacherCache(logits=[torch.randn(64, 10)], features=[{"a.b": torch.randn(64, 4, 2, 2)}])
    assert folder.save(parts, cache, budget_mb=1)
    back = folder.load(parts)
    assert back is not None and torch.equal(back.features[0]["a.b"], cache.features[0]["a.b"])
    _damage(folder.path(output_key(parts)), how)
    assert folder.load(parts) is None
    assert folder.entries() == [] and not (folder.folder / f"{output_key(parts)}.json").exists()


def test_an_entry_of_other_shapes_is_a_miss(tmp_path):
    folder = TeacherOutputStore(tmp_path)
    parts = {"rows": 64, "teachers": ["t"], "outputs": {"logits": True, "features": []}}
    assert folder.save(parts, TeacherCache(logits=[torch.randn(64, 10)], features=[{}]), budget_mb=1)
    assert folder.load({**parts, "rows": 65}) is None  # another key: nothing stored under it
    wrong = TeacherCache(logits=[torch.randn(63, 10)], features=[{}])  # rows the key does not say
    assert folder.save(parts, wrong, budget_mb=1) and folder.load(parts) is None


def test_an_entry_over_the_budget_is_not_written(tmp_path):
    folder = TeacherOutputStore(tmp_path)
    cache = TeacherCache(logits=[torch.zeros(1024, 256)], features=[{}])  # 1 MiB
    parts = {"rows": 1024, "teachers": ["t"], "outputs": {"logits": True, "features": []}}
    assert not folder.save(parts, cache, budget_mb=0.5)
    assert folder.entries() == []
    assert folder.save(parts, cache, budget_mb=2)
    assert folder.load(parts) is not None


def test_the_folder_is_capped_least_recently_used_first(tmp_path):
    entry = TeacherCache(logits=[torch.ones(256, 256)], features=[{}])  # 256 KiB of tensors
    folder = TeacherOutputStore(tmp_path, cap_mb=0.6)  # room for two entries, not three
    parts = [{"rows": 256, "teachers": [f"t{i}"], "outputs": {"logits": True, "features": []}} for i in range(4)]
    keys = [output_key(p) for p in parts]
    assert folder.save(parts[0], entry, budget_mb=1) and folder.save(parts[1], entry, budget_mb=1)
    os.utime(folder.path(keys[0]), (1_000_000, 1_000_000))
    os.utime(folder.path(keys[1]), (2_000_000, 2_000_000))
    assert folder.load(parts[0]) is not None  # a read makes entry 0 the most recently used
    assert folder.save(parts[2], entry, budget_mb=1)
    assert sorted(k for k, _, _ in folder.entries()) == sorted([keys[0], keys[2]])  # 1 was evicted
    assert not (folder.folder / f"{keys[1]}.json").exists()
    assert folder.load(parts[1]) is None
    # the cap holds whatever the order of writes
    assert folder.save(parts[3], entry, budget_mb=1)
    assert sum(size for _, size, _ in folder.entries()) <= folder.cap_bytes
    assert keys[3] in [k for k, _, _ in folder.entries()]


def test_an_unwritable_store_is_not_an_error(small, teacher, tmp_path):
    store = RunStore(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ".cache").write_text("a file where the folder would go")
    trainer, _, train, _ = _run(_kd(), store, small, teacher)
    assert train == 5 and trainer.stored_outputs.used == {"train": "computed", "test": "computed"}


# ---- the data fingerprint ------------------------------------------------------------------------


def test_the_fingerprint_follows_the_data_not_the_object(small):
    a = load_dataset("digits")
    b = load_dataset("digits")  # rebuilt from the same files: another object, the same data
    assert a is not b and dataset_fingerprint(a) == dataset_fingerprint(b)
    assert dataset_fingerprint(a, "test") == dataset_fingerprint(b, "test") != dataset_fingerprint(a)
    images = a.train.images.clone()
    images[17, 0, 3, 4] ^= 1  # one pixel, one bit
    c = dataclasses.replace(a, train=dataclasses.replace(a.train, images=images))
    assert dataset_fingerprint(c) != dataset_fingerprint(a)
    labels = a.train.labels.clone()
    labels[0] = (labels[0] + 1) % 10
    d = dataclasses.replace(a, train=dataclasses.replace(a.train, labels=labels))
    assert dataset_fingerprint(d) != dataset_fingerprint(a)
    assert dataset_fingerprint(small) != dataset_fingerprint(a)  # a subset is other data


def test_the_memoised_fingerprint_sees_an_edit_in_place():
    data = load_dataset("digits")
    before = dataset_fingerprint(data)
    assert dataset_fingerprint(data) == before  # memoised
    data.train.images[0, 0, 0, 0] += 1
    after = dataset_fingerprint(data)
    assert after != before
    data.train.images[0, 0, 0, 0] -= 1
    assert dataset_fingerprint(data) == before
