"""Image folders: ``root/train/<class>/*.png`` + ``root/test/<class>/``, or ``root/<class>/`` split by seed.

Class names are the sorted sub-folder names of the train folder. Images are decoded with Pillow,
converted to grayscale or RGB (detected from the files unless option ``channels`` says), and
resized to ``image_size`` x ``image_size`` when that option is given (otherwise all images must
already share one size). Mean and std come from the train split.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.data.core import Dataset, Split, channel_stats, stratified_split
from workbench.data.errors import DataError
from workbench.data.limits import over_budget

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")

OPTIONS: dict[str, Any] = {
    "image_size": None,
    "channels": None,
    "test_fraction": 0.2,
    "seed": 0,
    "hflip_ok": True,
}


#: images whose header declares more pixels than this are refused before decoding (decompression
#: bombs); Pillow's own default limit, applied as a hard error instead of a warning
MAX_IMAGE_PIXELS = 89_478_485


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"folder {folder}: cannot be listed ({err.strerror or err})") from None
    for d in dirs:
        try:
            d.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(
                f"folder {d}: its name is not valid UTF-8, so it cannot be a class name; rename it"
            ) from None
    return dirs


def _images_in(folder: Path) -> list[Path]:
    try:
        return sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
    except OSError as err:
        raise DataError(f"folder {folder}: cannot be listed ({err.strerror or err})") from None


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


def _unreadable(path: Path, err: BaseException) -> DataError:
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DataError(
            f"file {path}: refused, its header declares more than {MAX_IMAGE_PIXELS} pixels "
            f"(a decompression bomb or a huge image)"
        )
    detail = str(err).strip() or type(err).__name__
    return DataError(f"file {path}: not a readable image ({type(err).__name__}: {detail[:200]})")


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` with decompression-bomb warnings raised as errors, and any failure
    (not an image, truncated, corrupt, a bomb) turned into a one-line :class:`DataError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                yield img
        except DataError:
            raise
        except (Exception, Image.DecompressionBombWarning) as err:  # noqa: BLE001 - any decoder failure
            raise _unreadable(path, err) from None


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    gray: bool
    mode: str


def _read_header(path: Path) -> _Header:
    """Size and colour of one image from its header; refuses sizes over :data:`MAX_IMAGE_PIXELS`."""
    with _opened(path) as img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise DataError(
                f"file {path}: refused, its header declares {width}x{height} = {width * height} pixels, "
                f"over the limit of {MAX_IMAGE_PIXELS} (a decompression bomb or a huge image)"
            )
        mode = img.mode
        gray = mode in GRAY_MODES
        if mode == "P":
            palette = img.getpalette() or []
            rgb = np.asarray(palette, dtype=np.int32).reshape(-1, 3) if len(palette) % 3 == 0 else None
            gray = rgb is not None and bool(np.all(rgb == rgb[:, :1]))
    return _Header(int(width), int(height), gray, str(mode))


def _decode_into(out: np.ndarray, files: list[Path], channels: int, image_size: int | None) -> None:
    """Decode ``files`` into the preallocated ``uint8`` array ``out`` ``(N, C, H, W)``, one at a time."""
    mode = "L" if channels == 1 else "RGB"
    h, w = out.shape[2:]
    for i, path in enumerate(files):
        with _opened(path) as img:
            img = img.convert(mode)
            if image_size is not None and img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        if array.shape[:2] != (h, w):
            raise DataError(
                f"file {path}: decodes to {array.shape[1]}x{array.shape[0]}, its header said {w}x{h}"
            )
        out[i] = array[None] if channels == 1 else array.transpose(2, 0, 1)


@dataclass
class _Plan:
    """Everything known about an image folder before any pixel is decoded."""

    root: Path
    class_names: list[str]
    train_files: list[Path]
    train_labels: list[int]
    test_files: list[Path]
    test_labels: list[int]
    layout: str
    channels: int
    height: int
    width: int
    notes: list[str]

    @property
    def nbytes(self) -> int:
        """Bytes of both splits as ``uint8`` tensors plus their ``int64`` labels."""
        n = len(self.train_files) + len(self.test_files)
        return n * (self.channels * self.height * self.width + 8)


def _notes(headers: list[_Header], channels: int, size: int | None) -> list[str]:
    """One line per change decoding makes to the files: images converted to the common colour mode,
    images resized to ``size``."""
    target = "L" if channels == 1 else "RGB"
    converted: dict[str, int] = {}
    for head in headers:
        if head.mode != target:
            converted[head.mode] = converted.get(head.mode, 0) + 1
    notes = []
    if converted:
        n = sum(converted.values())
        modes = ", ".join(f"{count} {mode}" for mode, count in sorted(converted.items()))
        notes.append(f"{n} of {len(headers)} images converted to {target} (from {modes})")
    if size is not None:
        resized = sum(1 for head in headers if (head.width, head.height) != (size, size))
        if resized:
            notes.append(f"{resized} of {len(headers)} images resized to {size}x{size} (option image_size)")
    return notes


def _plan(root: Path, options: dict[str, Any]) -> _Plan:
    """List the files, read every header (size, colour; bombs and non-images refused by name),
    and fix channels and size; then check the whole set against the memory budget."""
    size, channels, fraction, seed, _ = _validate(options)
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
    every = train_files + test_files
    headers = [_read_header(path) for path in every]
    if size is None:
        first = headers[0]
        for path, head in zip(every, headers, strict=True):
            if (head.width, head.height) != (first.width, first.height):
                raise DataError(
                    f"file {path}: size {head.width}x{head.height} differs from {first.width}x{first.height} "
                    f"of {every[0].name}; pass option image_size to resize"
                )
        height, width = first.height, first.width
    else:
        height = width = size
    c = channels if channels is not None else (1 if all(h.gray for h in headers) else 3)
    plan = _Plan(
        root, class_names, train_files, train_labels, test_files, test_labels, layout, c, height, width,
        _notes(headers, c, size),
    )
    problem = over_budget(plan.nbytes)
    if problem:
        raise DataError(
            f"root {root}: the set of {len(every)} images of {c}x{height}x{width} {problem}; "
            f"pass a smaller option image_size"
        )
    return plan


@dataclass(frozen=True)
class FolderScan:
    """What an image folder holds, read from the file headers alone (no pixel decoded).

    ``image_shape`` is ``(C, H, W)`` as loaded; ``layout`` says how the splits were found;
    ``notes`` has one line per change loading makes to the files (colour modes converted, images
    resized), empty when the files are loaded as they are; ``nbytes`` is the memory the set takes.
    """

    root: Path
    class_names: list[str]
    train_size: int
    test_size: int
    image_shape: tuple[int, int, int]
    layout: str
    notes: list[str]
    nbytes: int


def scan_imagefolder(root: str | Path, options: dict[str, Any]) -> FolderScan:
    """Read the headers of every image under ``root`` (with ``options`` of ``imagefolder``, defaults
    filled in) and say what loading would give: classes, split sizes, image shape and the notes on
    converted or resized images. Raises the same one-line :class:`DataError` as loading for a folder
    without class sub-folders, an unreadable image, a decompression bomb, mixed sizes without
    ``image_size`` or a set over the memory budget."""
    plan = _plan(Path(root).expanduser(), {**OPTIONS, **options})
    return FolderScan(
        root=plan.root,
        class_names=list(plan.class_names),
        train_size=len(plan.train_files),
        test_size=len(plan.test_files),
        image_shape=(plan.channels, plan.height, plan.width),
        layout=plan.layout,
        notes=list(plan.notes),
        nbytes=plan.nbytes,
    )


def check_options(options: dict[str, Any]) -> None:
    """Check the option values of ``imagefolder`` (``image_size``, ``channels``, ``test_fraction``,
    ``seed``, ``hflip_ok``); raises a one-line :class:`DataError` naming the option."""
    _validate({**OPTIONS, **options})


def estimate_imagefolder(root: str | Path, options: dict[str, Any]) -> int:
    """Bytes the image folder at ``root`` would take in memory with ``options``, from the image
    headers alone (no pixel is decoded). Raises :class:`DataError` naming the file or option for
    unreadable images, decompression bombs, mixed sizes without ``image_size``, or a set over
    the memory budget."""
    return _plan(Path(root).expanduser(), {**OPTIONS, **options}).nbytes


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
    """Registry entry for ``imagefolder``: load a folder of class sub-folders of image files.

    Every header is read first (:func:`estimate_imagefolder`), so an unreadable file, a
    decompression bomb or a set over the memory budget is refused before any pixel is decoded;
    images are then decoded one at a time into one preallocated array per split.
    """
    _, _, _, _, hflip_ok = _validate(options)
    if root is None:
        raise DataError(
            "dataset 'imagefolder': needs root=FOLDER holding train/<class>/ and test/<class>/ (or <class>/)"
        )
    if download:
        raise DataError("dataset 'imagefolder': download=True is not possible; the images come from root")
    plan = _plan(Path(root).expanduser(), options)
    size = options["image_size"]
    splits = []
    for files, labels in ((plan.train_files, plan.train_labels), (plan.test_files, plan.test_labels)):
        images = np.empty((len(files), plan.channels, plan.height, plan.width), dtype=np.uint8)
        _decode_into(images, files, plan.channels, size)
        splits.append(Split(images=torch.from_numpy(images), labels=torch.tensor(labels, dtype=torch.int64)))
    train, test = splits
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        train=train,
        test=test,
        class_names=plan.class_names,
        mean=mean,
        std=std,
        hflip_ok=hflip_ok,
        source=f"image folder {plan.root} ({plan.layout})",
    )
