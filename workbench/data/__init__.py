"""Datasets held in memory as tensors, and batching with vectorized augmentation.

``load_dataset(name, root=None, download=False, **options)`` returns a :class:`Dataset` of two
:class:`Split` objects (``uint8`` images, ``int64`` labels, optional masks/boxes/context) with its
class names and normalization statistics. :class:`BatchLoader` turns a split into batches of
normalized tensors on a device. Registered names: ``mnist``, ``fashion-mnist``, ``cifar10``,
``cifar100``, ``digits``, ``shapes``, ``imagefolder`` (see :func:`list_datasets`).
:func:`preview_dataset` gives a first look at a loaded dataset (samples per class, counts, mean and
std, warnings); :func:`unpack_archive` unpacks a dataset's zip or tar archive within caps, never
outside its folder.
"""

from __future__ import annotations

from workbench.data.archives import Unpacked, unpack_archive, unpack_zip
from workbench.data.batching import Augment, Batch, BatchLoader
from workbench.data.core import Dataset, DatasetInfo, Split, channel_stats, seeded_subset
from workbench.data.errors import DataError
from workbench.data.limits import MemoryBudgetError, memory_budget_bytes
from workbench.data.preview import IMBALANCE_RATIO, DatasetPreview, preview_dataset
from workbench.data.registry import (
    check_dataset,
    dataset_options,
    list_datasets,
    load_dataset,
    prepare_dataset,
)
from workbench.data.shapes import BACKGROUNDS, PAIRED_BACKGROUND, SHAPE_CLASSES
from workbench.data.uploads import decode_upload

__all__ = [
    "seeded_subset",
    "decode_upload",
    "Augment",
    "BACKGROUNDS",
    "Batch",
    "BatchLoader",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "DatasetPreview",
    "IMBALANCE_RATIO",
    "MemoryBudgetError",
    "PAIRED_BACKGROUND",
    "SHAPE_CLASSES",
    "Split",
    "channel_stats",
    "check_dataset",
    "dataset_options",
    "list_datasets",
    "load_dataset",
    "memory_budget_bytes",
    "prepare_dataset",
    "preview_dataset",
    "Unpacked",
    "unpack_archive",
    "unpack_zip",
]
