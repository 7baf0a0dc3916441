"""A dataset split's fingerprint: one short hex string that changes when any pixel or label of the
split changes, and stays the same when the same data is loaded again into a new object.

It keys what is computed once from a split and kept across runs (the teacher-output store of
:mod:`workbench.train.output_store`). The hash is BLAKE2b over the dataset's name and class names,
the split's name, shapes and dtypes, then its ``uint8`` image bytes and ``int64`` label bytes;
where the data came from (a folder's path) is not part of it, the data itself is.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from typing import Any

import torch

from workbench.data.core import Dataset, Split
from workbench.data.errors import DataError

SPLITS = ("train", "test")

# (id(dataset), split) -> (weak reference to the dataset, what the digest was computed from, digest)
_MEMO: dict[tuple[int, str], tuple[weakref.ref[Any], tuple[int, ...], str]] = {}
_LOCK = threading.Lock()


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of ``t`` in row-major order, for hashing: a view of its memory when it is a
    contiguous CPU tensor, else of a contiguous CPU copy."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _state(split: Split) -> tuple[int, ...]:
    """What a memoised digest depends on: the tensor objects and their in-place version counters
    (an in-place edit of a pixel bumps ``_version``, so a stale digest is never returned)."""
    images, labels = split.images, split.labels
    return (id(images), images._version, images.data_ptr(), id(labels), labels._version, labels.data_ptr())


def _digest(dataset: Dataset, name: str, split: Split) -> str:
    head = {
        "dataset": dataset.name,
        "class_names": [str(c) for c in dataset.class_names],
        "split": name,
        "images": [list(split.images.shape), str(split.images.dtype)],
        "labels": [list(split.labels.shape), str(split.labels.dtype)],
    }
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(head, sort_keys=True).encode("utf-8"))
    h.update(tensor_bytes(split.images))
    h.update(tensor_bytes(split.labels))
    return h.hexdigest()


def dataset_fingerprint(dataset: Dataset, split: str = "train") -> str:
    """A 32-hex-digit BLAKE2b fingerprint of ``dataset``'s ``split`` (``"train"`` or ``"test"``):
    its images and labels (bytes, shapes, dtypes, order), the dataset's name and class names.

    Equal data gives an equal fingerprint whatever object holds it (a dataset loaded twice from
    the same files, a copy); one changed pixel or label, another order or another subset gives
    another one. The digest is memoised per dataset object and split, and recomputed when the
    split's tensors were replaced or edited in place.

    Raises:
        DataError: ``dataset`` is not a :class:`~workbench.data.Dataset` or ``split`` is unknown.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset_fingerprint dataset: expected a workbench Dataset, got {type(dataset).__name__}")
    if split not in SPLITS:
        raise DataError(f"dataset_fingerprint split: expected one of {', '.join(SPLITS)}, got {split!r}")
    part: Split = getattr(dataset, split)
    key, state = (id(dataset), split), _state(part)
    with _LOCK:
        memo = _MEMO.get(key)
        if memo is not None and memo[0]() is dataset and memo[1] == state:
            return memo[2]
    digest = _digest(dataset, split, part)
    with _LOCK:
        if key not in _MEMO:
            weakref.finalize(dataset, _forget, key)
        _MEMO[key] = (weakref.ref(dataset), state, digest)
    return digest


def _forget(key: tuple[int, str]) -> None:
    with _LOCK:
        _MEMO.pop(key, None)
