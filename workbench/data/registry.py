"""The dataset registry: names, descriptions, options with their defaults, and the loaders behind them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.data import cifar, digits, imagefolder, mnist, shapes
from workbench.data.core import Dataset, DatasetInfo
from workbench.data.errors import DataError, known_names

Loader = Callable[[str, "str | Path | None", bool, dict[str, Any]], Dataset]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    loader: Loader
    options: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {
    "mnist": _Entry(
        DatasetInfo(
            "mnist",
            "handwritten digits 28x28; embedded 12k/2k class-balanced subset, or the full "
            "60k/10k IDX files with root",
            (1, 28, 28),
            10,
            False,
            False,
        ),
        mnist.load_mnist_like,
        mnist.OPTIONS,
    ),
    "fashion-mnist": _Entry(
        DatasetInfo(
            "fashion-mnist",
            "Zalando clothing images 28x28; embedded 12k/2k class-balanced subset, "
            "or the full 60k/10k IDX files with root",
            (1, 28, 28),
            10,
            False,
            False,
        ),
        mnist.load_mnist_like,
        mnist.OPTIONS,
    ),
    "cifar10": _Entry(
        DatasetInfo(
            "cifar10",
            "CIFAR-10 natural images 32x32 RGB, 50k/10k, from the python pickles in root",
            (3, 32, 32),
            10,
            False,
            True,
        ),
        cifar.load_cifar,
        cifar.OPTIONS_10,
    ),
    "cifar100": _Entry(
        DatasetInfo(
            "cifar100",
            "CIFAR-100 natural images 32x32 RGB, 50k/10k, 100 fine or 20 coarse classes "
            "(label_mode), from the python pickles in root",
            (3, 32, 32),
            100,
            False,
            True,
        ),
        cifar.load_cifar,
        cifar.OPTIONS_100,
    ),
    "digits": _Entry(
        DatasetInfo(
            "digits",
            "scikit-learn handwritten digits 8x8, 1,797 images, stratified split by seed",
            (1, 8, 8),
            10,
            False,
            False,
        ),
        digits.load_digits_dataset,
        digits.OPTIONS,
    ),
    "shapes": _Entry(
        DatasetInfo(
            "shapes",
            "procedural 32x32 RGB shapes on textured backgrounds with exact masks and boxes; "
            "optional shape-background confounding",
            (3, 32, 32),
            10,
            True,
            False,
        ),
        shapes.load_shapes,
        shapes.OPTIONS,
    ),
    "imagefolder": _Entry(
        DatasetInfo(
            "imagefolder",
            "your own images: root/train/<class>/ and root/test/<class>/ (or root/<class>/ split by seed)",
            (0, 0, 0),
            0,
            False,
            True,
        ),
        imagefolder.load_imagefolder,
        imagefolder.OPTIONS,
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, in registry order."""
    return [entry.info for entry in _REGISTRY.values()]


def dataset_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts, with their defaults (a copy)."""
    return dict(_entry(name).options)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise DataError(f"dataset {name!r}: unknown name; known: {known_names(_REGISTRY)}")
    return _REGISTRY[name]


def _resolve_options(name: str, entry: _Entry, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        accepted = known_names(entry.options) if entry.options else "none"
        raise DataError(f"dataset {name!r}: unknown option {unknown[0]!r}; accepted options: {accepted}")
    return {**entry.options, **options}


def load_dataset(
    name: str, root: str | Path | None = None, download: bool = False, **options: Any
) -> Dataset:
    """Load dataset ``name`` into memory.

    ``root`` is the folder holding the files where the dataset needs them (``mnist`` and
    ``fashion-mnist`` use the embedded subsets without it); ``download=True`` fetches missing
    files into ``root`` with checksum verification; ``options`` are the dataset's own keyword
    options (see :func:`dataset_options`). Unknown names and options raise :class:`DataError`.
    """
    entry = _entry(name)
    resolved = _resolve_options(name, entry, options)
    if root is not None and not isinstance(root, (str, Path)):
        raise DataError(f"root: expected a folder path, got {type(root).__name__}")
    if isinstance(root, str) and not root.strip():
        root = None
    return entry.loader(name, root, bool(download), resolved)


def check_dataset(
    name: str, root: str | Path | None = None, download: bool = False, **options: Any
) -> int | None:
    """Check dataset ``name`` with ``root`` and ``options`` cheaply, before anything is loaded.

    Unknown names and options, invalid option values where the loader can tell without the
    data (``shapes``, ``imagefolder``), unreadable image files and decompression bombs (from
    their headers), IDX headers that disagree, and a set whose estimated size exceeds the memory
    budget (:mod:`workbench.data.limits`) raise a one-line :class:`DataError` naming the option
    or file. Returns the estimated bytes the dataset takes in memory, or ``None`` where that is
    not known before loading (files still to be downloaded, the embedded or built-in sets).
    """
    entry = _entry(name)
    resolved = _resolve_options(name, entry, options)
    if root is not None and not isinstance(root, (str, Path)):
        raise DataError(f"root: expected a folder path, got {type(root).__name__}")
    if isinstance(root, str) and not root.strip():
        root = None
    folder = None if root is None else Path(root).expanduser()
    if name == "shapes":
        return shapes.estimate_shapes(resolved)
    if name == "imagefolder":
        imagefolder.check_options(resolved)
        return None if folder is None else imagefolder.estimate_imagefolder(folder, resolved)
    if name in mnist.SOURCES and folder is not None:
        return mnist.estimate_idx_dataset(mnist.SOURCES[name], folder)
    if name in cifar.SOURCES and folder is not None and folder.is_dir():
        return cifar.estimate_cifar(name, folder)
    return None


def prepare_dataset(
    name: str, root: str | Path | None = None, download: bool = False, **options: Any
) -> Dataset:
    """Fetch (if ``download``) and load dataset ``name``, then check it is usable for training.

    Beyond the checks made while loading, both splits must be non-empty and every class must
    occur in the train split. Returns the loaded :class:`Dataset`.
    """
    dataset = load_dataset(name, root=root, download=download, **options)
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        if len(split) == 0:
            raise DataError(f"dataset {name!r}: the {split_name} split is empty")
    counts = torch.bincount(dataset.train.labels, minlength=dataset.num_classes)
    absent = [dataset.class_names[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
    if absent:
        raise DataError(
            f"dataset {name!r}: classes {', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''} "
            f"have no train samples"
        )
    return dataset
