"""A first look at a dataset before training on it: sample images per class, how many images each
class has in each split, the image shape, the per-channel mean and std, and warnings for what
tends to spoil a distillation experiment (a skewed class balance, test images that are copies of
training images).

:func:`preview_dataset` takes a loaded :class:`~workbench.data.Dataset` and returns a
:class:`DatasetPreview`: plain arrays and numbers with ``to_dict()``, drawn by
:func:`workbench.viz.datasets.dataset_preview_figure`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.data.core import Dataset, channel_stats
from workbench.data.errors import DataError

#: a class-balance warning is given when the largest class of the train split has more than this many
#: times the images of the smallest one
IMBALANCE_RATIO = 1.5
#: how many (train, test) index pairs of duplicated images a preview keeps
DUPLICATE_PAIRS_SHOWN = 5
#: the most sample images per class a preview takes
MAX_PER_CLASS = 64


@dataclass
class DatasetPreview:
    """What :func:`preview_dataset` finds in a dataset.

    Attributes:
        name: the dataset's name. class_names: its classes, in label order.
        image_shape: ``(C, H, W)`` of one image.
        counts: ``{"train": (K,), "test": (K,)}`` images per class in each split (``int64``).
        mean, std: per channel, of the train split, on the ``[0, 1]`` pixel scale (population std;
            a constant channel reads as one grey level, 1/255, as the datasets normalize with).
        sample_index: ``(K, per_class)`` positions in the train split of the sample images of each
            class, ``-1`` where a class has fewer images than ``per_class``.
        samples: ``uint8`` ``(K, per_class, C, H, W)``, the images at ``sample_index`` (zeros at ``-1``).
        imbalance_ratio: the largest class count of the train split over the smallest (``inf`` when
            a class has none).
        duplicates: how many test images are byte-for-byte copies of a train image.
        duplicate_pairs: ``(m, 2)`` of ``(train position, test position)``, the first
            :data:`DUPLICATE_PAIRS_SHOWN` duplicates in test order.
        warnings: one line per problem found (class balance, duplicates, empty classes).
        per_class, seed: the parameters the samples were drawn with.
    """

    name: str
    class_names: list[str]
    image_shape: tuple[int, int, int]
    counts: dict[str, np.ndarray]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sample_index: np.ndarray
    samples: np.ndarray
    imbalance_ratio: float
    duplicates: int
    duplicate_pairs: np.ndarray
    warnings: list[str] = field(default_factory=list)
    per_class: int = 8
    seed: int = 0

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (arrays as nested lists; an infinite ratio as ``None``)."""
        ratio = self.imbalance_ratio
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "counts": {split: c.tolist() for split, c in self.counts.items()},
            "mean": list(self.mean),
            "std": list(self.std),
            "sample_index": self.sample_index.tolist(),
            "samples": self.samples.tolist(),
            "imbalance_ratio": ratio if np.isfinite(ratio) else None,
            "duplicates": int(self.duplicates),
            "duplicate_pairs": self.duplicate_pairs.tolist(),
            "warnings": list(self.warnings),
            "per_class": self.per_class,
            "seed": self.seed,
        }


def class_samples(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``(num_classes, per_class)`` positions of up to ``per_class`` samples of each class, drawn
    without replacement by a permutation seeded with ``seed``; ``-1`` where a class has fewer.
    Vectorized: one permutation, one stable sort by label, one gather."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(labels.shape[0])
    order = perm[np.argsort(labels[perm], kind="stable")]
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    starts = np.cumsum(counts) - counts
    offsets = np.arange(per_class)
    present = offsets[None, :] < counts[:, None]
    positions = np.where(present, starts[:, None] + offsets[None, :], 0)
    out = order[positions] if order.size else np.zeros_like(positions)
    return np.where(present, out, -1).astype(np.int64)


def image_digests(images: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per image of ``images`` ``(N, ...)`` (its exact bytes)."""
    array = np.ascontiguousarray(images)
    return [hashlib.blake2b(memoryview(array[i]), digest_size=16).digest() for i in range(array.shape[0])]


def cross_duplicates(train: np.ndarray, test: np.ndarray) -> tuple[int, np.ndarray]:
    """How many ``test`` images are byte-for-byte copies of a ``train`` image, and the first
    :data:`DUPLICATE_PAIRS_SHOWN` ``(train position, test position)`` pairs (the first train copy)."""
    first: dict[bytes, int] = {}
    for i, digest in enumerate(image_digests(train)):
        first.setdefault(digest, i)
    pairs = []
    count = 0
    for j, digest in enumerate(image_digests(test)):
        i = first.get(digest)
        if i is not None and np.array_equal(train[i], test[j]):
            count += 1
            if len(pairs) < DUPLICATE_PAIRS_SHOWN:
                pairs.append((i, j))
    return count, np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _warnings(
    class_names: list[str], counts: dict[str, np.ndarray], duplicates: int, n_test: int, pairs: np.ndarray
) -> tuple[float, list[str]]:
    out: list[str] = []
    train = counts["train"]
    if not train.size:
        return float("nan"), out
    for split in ("train", "test"):
        empty = [class_names[k] for k in np.flatnonzero(counts[split] == 0)]
        if empty:
            shown = ", ".join(repr(n) for n in empty[:5]) + (" ..." if len(empty) > 5 else "")
            out.append(f"no {split} images for {len(empty)} class{'es' if len(empty) > 1 else ''}: {shown}")
    big, small = int(np.argmax(train)), int(np.argmin(train))
    ratio = float(train[big]) / float(train[small]) if train[small] > 0 else float("inf")
    if train.size and ratio > IMBALANCE_RATIO and train[small] > 0:
        out.append(
            f"class imbalance: {class_names[big]!r} has {int(train[big])} train images, "
            f"{class_names[small]!r} {int(train[small])} (ratio {ratio:.2f}, over {IMBALANCE_RATIO})"
        )
    if duplicates:
        shown = ", ".join(f"train {i} = test {j}" for i, j in pairs.tolist())
        out.append(
            f"{duplicates} of {n_test} test images are exact copies of train images ({shown}); "
            f"test accuracy over-states how the model generalizes"
        )
    return ratio, out


def preview_dataset(dataset: Dataset, *, per_class: int = 8, seed: int = 0) -> DatasetPreview:
    """Preview ``dataset``: ``per_class`` sample images of each class of its train split (drawn with
    ``seed``), its counts per class per split, image shape, train mean/std per channel, and warnings.

    Warnings: a class with no images in a split; class imbalance, when the largest train class
    has more than :data:`IMBALANCE_RATIO` times the images of the smallest; test images that are
    exact byte copies of train images (BLAKE2b digests of the ``uint8`` images, confirmed by
    comparing the pixels).

    Raises:
        DataError: ``dataset`` is not a Dataset, or ``per_class`` is not an integer in
            ``[1, MAX_PER_CLASS]``.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset: expected a workbench Dataset, got {type(dataset).__name__}")
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or not (
        1 <= int(per_class) <= MAX_PER_CLASS
    ):
        raise DataError(f"per_class: expected an integer in [1, {MAX_PER_CLASS}], got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed: expected an integer, got {seed!r}")
    k = dataset.num_classes
    train_images = dataset.train.images.cpu().numpy()
    test_images = dataset.test.images.cpu().numpy()
    train_labels = dataset.train.labels.cpu().numpy()
    counts = {
        "train": np.bincount(train_labels, minlength=k)[:k].astype(np.int64),
        "test": np.bincount(dataset.test.labels.cpu().numpy(), minlength=k)[:k].astype(np.int64),
    }
    index = class_samples(train_labels, k, int(per_class), int(seed))
    samples = train_images[np.maximum(index, 0)] if len(train_images) else np.zeros(
        (*index.shape, *dataset.image_shape), dtype=np.uint8
    )
    samples = np.where((index >= 0)[:, :, None, None, None], samples, 0).astype(np.uint8)
    mean, std = channel_stats(dataset.train.images) if len(dataset.train) else ((), ())
    duplicates, pairs = cross_duplicates(train_images, test_images)
    ratio, warnings = _warnings(list(dataset.class_names), counts, duplicates, len(test_images), pairs)
    return DatasetPreview(
        name=dataset.name,
        class_names=list(dataset.class_names),
        image_shape=dataset.image_shape,
        counts=counts,
        mean=tuple(mean),
        std=tuple(std),
        sample_index=index,
        samples=samples,
        imbalance_ratio=ratio,
        duplicates=duplicates,
        duplicate_pairs=pairs,
        warnings=warnings,
        per_class=int(per_class),
        seed=int(seed),
    )
