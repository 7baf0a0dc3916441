"""CIFAR-10 and CIFAR-100 from the standard "python version" pickles (Krizhevsky, 2009).

Layout: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``root/cifar-100-python/{train, test, meta}``, or ``root`` being that folder itself (the batch
files directly in it, whatever the folder's name). Each batch is a pickled dict with ``b"data"``: a
``uint8`` array (N, 3072) holding the red, green and blue 32x32 planes row by row, and
``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100). Files are read
with the restricted unpickler of :mod:`workbench.data.safe_pickle`, never plain ``pickle.load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.data.core import Dataset, Split, channel_stats
from workbench.data.download import base_urls, download_file, extract_tar, file_md5, resolve_checksums
from workbench.data.errors import DataError
from workbench.data.limits import over_budget
from workbench.data.safe_pickle import safe_load
from workbench.errors import one_line


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant is published and how its folder is laid out."""

    name: str
    folder: str
    archive: str
    md5: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str


SOURCES = {
    "cifar10": CifarSource(
        name="cifar10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
    ),
    "cifar100": CifarSource(
        name="cifar100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
    ),
}
URLS = ["https://www.cs.toronto.edu/~kriz/"]
LABEL_MODES = ("fine", "coarse")

OPTIONS_10: dict[str, Any] = {"mirror": None, "checksums": None}
OPTIONS_100: dict[str, Any] = {"mirror": None, "checksums": None, "label_mode": "fine"}


def _key(obj: dict, name: str, path: Path) -> Any:
    """Fetch ``name`` from an unpickled dict whose keys may be ``bytes`` (Python 2 files) or ``str``."""
    for key in (name.encode(), name):
        if key in obj:
            return obj[key]
    keys = ", ".join(sorted(k.decode("latin-1") if isinstance(k, bytes) else str(k) for k in obj))
    raise DataError(f"file {path}: has no {name!r} entry; found: {keys}")


def _load_dict(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"file {path}: not found; pass download=True to fetch the archive")
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"file {path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _names(obj: dict, key: str, path: Path) -> list[str]:
    values = _key(obj, key, path)
    if (
        not isinstance(values, (list, tuple))
        or not values
        or not all(isinstance(v, (bytes, str)) for v in values)
    ):
        raise DataError(f"file {path}: {key!r} should be a non-empty list of names (strings)")
    # undecodable bytes and lone surrogates become U+FFFD / '?', so names always serialise as UTF-8
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else v.encode("utf-8", "replace").decode("utf-8")
        for v in values
    ]


def _batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    obj = _load_dict(path)
    data = _key(obj, "data", path)
    raw_labels = _key(obj, label_key, path)
    try:
        labels = np.asarray(raw_labels)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise DataError(
            f"file {path}: {label_key!r} should be a list of integer labels, "
            f"got {type(raw_labels).__name__} ({one_line(err) if str(err) else 'unreadable'})"
        ) from None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
    ):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"file {path}: 'data' should be a uint8 array (N, 3072), got {dtype} {shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"file {path}: {label_key!r} should hold {data.shape[0]} integer labels, "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"file {path}: {label_key!r} values span [{int(labels.min())}, {int(labels.max())}], "
            f"expected [0, {num_classes})"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _split(paths: list[Path], label_key: str, num_classes: int) -> Split:
    parts = [_batch(p, label_key, num_classes) for p in paths]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return Split(images=torch.from_numpy(np.ascontiguousarray(images)), labels=torch.from_numpy(labels))


def estimate_cifar(name: str, root: Path) -> int | None:
    """Peak bytes of loading ``name`` from ``root``: the train batches twice (read, then joined)
    plus the test batch, from the file sizes alone. ``None`` when the folder is not complete
    yet (a download would fetch it). Raises :class:`DataError` when over the memory budget."""
    source = SOURCES[name]
    folder = batch_folder(root, source)
    paths = [folder / f for f in source.train_files] + [folder / source.test_file]
    try:
        sizes = [p.stat().st_size for p in paths]
    except OSError:
        return None
    train = sum(sizes[:-1])
    total = (2 * train if len(source.train_files) > 1 else train) + sizes[-1]
    problem = over_budget(total)
    if problem:
        raise DataError(f"folder {folder}: loading its {len(paths)} batch files {problem}")
    return total


def batch_folder(root: Path, source: CifarSource) -> Path:
    """The folder holding the batch files of ``source``: ``root/<source.folder>`` when it is a folder,
    else ``root`` itself when its first train file is there (an unpacked archive without its top
    folder), else ``root/<source.folder>`` (which the caller then reports missing)."""
    nested = root / source.folder
    if not nested.is_dir() and (root / source.train_files[0]).is_file():
        return root
    return nested


def download_cifar(
    root: Path, source: CifarSource, mirror: str | None, checksums: dict[str, str] | None
) -> None:
    """Fetch and extract the archive of ``source`` into ``root`` unless its folder is already complete."""
    needed = [*source.train_files, source.test_file, source.meta_file]
    if all((root / source.folder / name).is_file() for name in needed):
        return
    md5 = resolve_checksums({source.archive: source.md5}, checksums)[source.archive]
    archive = root / source.archive
    if not (archive.is_file() and file_md5(archive) == md5):
        download_file(base_urls(URLS, mirror), archive, md5)
    extract_tar(archive, root)


def load_cifar(name: str, root: str | Path | None, download: bool, options: dict[str, Any]) -> Dataset:
    """Registry entry for ``cifar10`` and ``cifar100`` (option ``label_mode``: ``fine`` | ``coarse``)."""
    source = SOURCES[name]
    if root is None:
        raise DataError(
            f"dataset {name!r}: needs root=FOLDER holding {source.folder}/ (or download=True with a root)"
        )
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"root {root}: is a file; expected a folder holding {source.folder}/")
    mirror = options.get("mirror")
    if mirror is not None and not isinstance(mirror, str):
        raise DataError(f"option mirror: expected a base URL string, got {mirror!r}")
    if download:
        root.mkdir(parents=True, exist_ok=True)
        download_cifar(root, source, mirror, options.get("checksums"))
    folder = batch_folder(root, source)
    if not folder.is_dir():
        raise DataError(
            f"root {root}: has no {source.folder}/ folder (nor its batch files); "
            f"pass download=True to fetch it"
        )
    if name == "cifar10":
        meta_key, label_key = "label_names", "labels"
    else:
        mode = options.get("label_mode", "fine")
        if mode not in LABEL_MODES:
            raise DataError(f"option label_mode: unknown value {mode!r}; known: {', '.join(LABEL_MODES)}")
        meta_key, label_key = f"{mode}_label_names", f"{mode}_labels"
    estimate_cifar(name, root)
    meta_path = folder / source.meta_file
    class_names = _names(_load_dict(meta_path), meta_key, meta_path)
    k = len(class_names)
    train = _split([folder / f for f in source.train_files], label_key, k)
    test = _split([folder / source.test_file], label_key, k)
    mean, std = channel_stats(train.images)
    suffix = f", {options.get('label_mode', 'fine')} labels" if name == "cifar100" else ""
    return Dataset(
        name=name,
        train=train,
        test=test,
        class_names=class_names,
        mean=mean,
        std=std,
        hflip_ok=True,
        source=f"CIFAR-{name.removeprefix('cifar')} (Krizhevsky, 2009){suffix}: python pickles in {folder}",
    )
