"""The scikit-learn ``digits`` set: 1,797 handwritten digits of 8x8 pixels (UCI optical recognition data).

Pixel values 0..16 are scaled to 0..255 ``uint8`` (``round(v * 255 / 16)``); the train/test split is
stratified per class and fixed by ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.data.core import Dataset, Split, channel_stats, stratified_split
from workbench.data.errors import DataError

OPTIONS: dict[str, Any] = {"test_fraction": 0.2, "seed": 0}


def load_digits_dataset(
    name: str, root: str | Path | None, download: bool, options: dict[str, Any]
) -> Dataset:
    """Registry entry for ``digits``: options ``test_fraction`` (default 0.2) and ``seed`` (default 0)."""
    from sklearn.datasets import load_digits

    fraction, seed = options["test_fraction"], options["seed"]
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 < float(fraction) < 1.0
    ):
        raise DataError(f"option test_fraction: expected a number in (0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"option seed: expected an integer, got {seed!r}")
    if root is not None or download:
        raise DataError("dataset 'digits': ships with scikit-learn; root and download are not used")
    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)
    images = np.rint(values * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_index, test_index = stratified_split(labels, float(fraction), seed)
    train = Split(
        images=torch.from_numpy(np.ascontiguousarray(images[train_index])),
        labels=torch.from_numpy(labels[train_index]),
    )
    test = Split(
        images=torch.from_numpy(np.ascontiguousarray(images[test_index])),
        labels=torch.from_numpy(labels[test_index]),
    )
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        train=train,
        test=test,
        class_names=[str(d) for d in range(10)],
        mean=mean,
        std=std,
        hflip_ok=False,
        source=f"scikit-learn load_digits (UCI optical recognition of handwritten digits), "
        f"stratified split test_fraction={float(fraction)} seed={seed}",
    )
