"""Image folders: ``root/train/<class>/*.png`` + ``root/test/<class>/``, or ``root/<class>/`` split by seed.

Class names are the sorted sub-folder names of the train folder. Images are decoded with Pillow,
converted to grayscale or RGB (detected from the files unless option ``channels`` says), and
resized to ``image_size`` x ``image_size`` when that option is given (otherwise all images must
already share one size). Mean and std come from the train split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from workbench.data.core import Dataset, Split, channel_stats, stratified_split
from workbench.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")

OPTIONS: dict[str, Any] = {
    "image_size": None,
    "channels": None,
    "test_fraction": 0.2,
    "seed": 0,
    "hflip_ok": True,
}


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _scan(folder: Path, class_names: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """List ``(class_names, files, labels)`` in ``folder/<class>/``, mapped onto ``class_names`` if given."""
    dirs = _visible_dirs(folder)
    if not dirs:
        raise DataError(f"folder {folder}: has no class sub-folders; expected {folder}/<class>/<image files>")
    names = class_names if class_names is not None else [d.name for d in dirs]
    lookup = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        if d.name not in lookup:
            raise DataError(
                f"folder {d}: class {d.name!r} is not among the train classes; known: {', '.join(names)}"
            )
        found = _images_in(d)
        if not found and class_names is None:
            raise DataError(f"folder {d}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files.extend(found)
        labels.extend([lookup[d.name]] * len(found))
    return names, files, labels


def _detect_channels(files: list[Path]) -> int:
    for path in files:
        try:
            with Image.open(path) as img:
                mode = img.mode
                if mode == "P":
                    palette = img.getpalette() or []
                    rgb = (
                        np.asarray(palette, dtype=np.int32).reshape(-1, 3) if len(palette) % 3 == 0 else None
                    )
                    if rgb is not None and np.all(rgb == rgb[:, :1]):
                        continue
                    return 3
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"file {path}: not a readable image ({err})") from None
        if mode not in GRAY_MODES:
            return 3
    return 1


def _decode(files: list[Path], channels: int, image_size: int | None) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    first_size: tuple[int, int] | None = None
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if image_size is not None and img.size != (image_size, image_size):
                    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"file {path}: not a readable image ({err})") from None
        size = (array.shape[1], array.shape[0])
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise DataError(
                f"file {path}: size {size[0]}x{size[1]} differs from {first_size[0]}x{first_size[1]} of "
                f"{files[0].name}; pass option image_size to resize"
            )
        arrays.append(array)
    stacked = np.stack(arrays)
    return stacked[:, None] if channels == 1 else stacked.transpose(0, 3, 1, 2)


def _validate(options: dict[str, Any]) -> tuple[int | None, int | None, float, int, bool]:
    size, channels, fraction, seed, hflip_ok = (
        options["image_size"],
        options["channels"],
        options["test_fraction"],
        options["seed"],
        options["hflip_ok"],
    )
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096):
        raise DataError(f"option image_size: expected an integer in [1, 4096] or None, got {size!r}")
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise DataError(f"option channels: expected 1, 3 or None (detect), got {channels!r}")
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 < float(fraction) < 1.0
    ):
        raise DataError(f"option test_fraction: expected a number in (0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"option seed: expected an integer, got {seed!r}")
    if not isinstance(hflip_ok, bool):
        raise DataError(f"option hflip_ok: expected true or false, got {hflip_ok!r}")
    return size, channels, float(fraction), seed, hflip_ok


def load_imagefolder(name: str, root: str | Path | None, download: bool, options: dict[str, Any]) -> Dataset:
    """Registry entry for ``imagefolder``: load a folder of class sub-folders of image files."""
    size, channels, fraction, seed, hflip_ok = _validate(options)
    if root is None:
        raise DataError(
            "dataset 'imagefolder': needs root=FOLDER holding train/<class>/ and test/<class>/ (or <class>/)"
        )
    if download:
        raise DataError("dataset 'imagefolder': download=True is not possible; the images come from root")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"root {root}: not a folder; expected train/<class>/ and test/<class>/ (or <class>/) inside"
        )
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        if not (train_dir.is_dir() and test_dir.is_dir()):
            missing = "test" if train_dir.is_dir() else "train"
            raise DataError(
                f"root {root}: has {'train' if missing == 'test' else 'test'}/ but no {missing}/ folder"
            )
        class_names, train_files, train_labels = _scan(train_dir, None)
        _, test_files, test_labels = _scan(test_dir, class_names)
        if not test_files:
            raise DataError(f"folder {test_dir}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        layout = "train/ and test/ folders"
    else:
        class_names, files, labels = _scan(root, None)
        label_array = np.asarray(labels)
        train_index, test_index = stratified_split(label_array, fraction, seed)
        if test_index.size == 0:
            raise DataError(f"root {root}: too few images to split off a test set (test_fraction={fraction})")
        train_files = [files[i] for i in train_index]
        test_files = [files[i] for i in test_index]
        train_labels = label_array[train_index].tolist()
        test_labels = label_array[test_index].tolist()
        layout = f"class folders split {1 - fraction:.2f}/{fraction:.2f} by seed {seed}"
    c = channels if channels is not None else _detect_channels(train_files + test_files)
    train_images = _decode(train_files, c, size)
    test_images = _decode(test_files, c, size)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"root {root}: train images {train_images.shape[2:]} and test images "
            f"{test_images.shape[2:]} differ in "
            f"size; pass option image_size to resize"
        )
    train = Split(
        images=torch.from_numpy(np.ascontiguousarray(train_images)),
        labels=torch.tensor(train_labels, dtype=torch.int64),
    )
    test = Split(
        images=torch.from_numpy(np.ascontiguousarray(test_images)),
        labels=torch.tensor(test_labels, dtype=torch.int64),
    )
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        train=train,
        test=test,
        class_names=class_names,
        mean=mean,
        std=std,
        hflip_ok=hflip_ok,
        source=f"image folder {root} ({layout})",
    )
