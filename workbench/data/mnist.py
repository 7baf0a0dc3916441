"""MNIST and Fashion-MNIST: the embedded class-balanced subsets, or the full sets from IDX files.

With ``root=None`` the subsets shipped in ``assets/`` are loaded (12,000 train and 2,000 test
images, class-balanced; see ``assets/README.md`` for their provenance). With ``root=FOLDER`` the
four standard IDX files in that folder are loaded; with ``download=True`` missing files are first
fetched from the public distribution and checked against the published MD5 checksums.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import workbench
from workbench.data.core import Dataset, Split, channel_stats, images_from_numpy
from workbench.data.download import base_urls, download_file, file_md5, resolve_checksums
from workbench.data.errors import DataError
from workbench.data.idx import read_idx, read_idx_header
from workbench.data.limits import over_budget

ASSETS_ENV = "WORKBENCH_ASSETS"

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# IDX file roles -> canonical (gzip) file name as published.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset is published and how to recognise its files."""

    name: str
    class_names: list[str]
    hflip_ok: bool
    urls: list[str]
    md5: dict[str, str]
    torchvision_folder: str
    citation: str


SOURCES = {
    "mnist": IdxSource(
        name="mnist",
        class_names=MNIST_CLASSES,
        hflip_ok=False,
        urls=["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        torchvision_folder="MNIST",
        citation="MNIST (LeCun, Cortes and Burges)",
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        class_names=FASHION_CLASSES,
        hflip_ok=True,
        urls=[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        torchvision_folder="FashionMNIST",
        citation="Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017)",
    ),
}

OPTIONS: dict[str, Any] = {"mirror": None, "checksums": None}

_EMBEDDED_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "class_names", "mean", "std")


def assets_dir() -> Path:
    """The folder of embedded assets: ``$WORKBENCH_ASSETS`` if set, else ``assets/`` beside the package."""
    override = os.environ.get(ASSETS_ENV, "")
    if override:
        return Path(override).expanduser()
    return Path(workbench.__file__).resolve().parent.parent / "assets"


def _candidates(role: str) -> list[str]:
    """Accepted names of one IDX file: ``train-images-idx3-ubyte``, ``train-images.idx3-ubyte``, +``.gz``."""
    stem = IDX_FILES[role].removesuffix(".gz")
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(root: Path, source: IdxSource) -> dict[str, Path | None]:
    """Locate the four IDX files in ``root`` (or the ``<root>/<Name>/raw`` layout); ``None`` where absent."""
    folders = [root, root / source.torchvision_folder / "raw"]
    found: dict[str, Path | None] = {}
    for role in IDX_FILES:
        found[role] = next(
            (folder / name for folder in folders for name in _candidates(role) if (folder / name).is_file()),
            None,
        )
    return found


def download_idx(root: Path, source: IdxSource, mirror: str | None, checksums: dict[str, str] | None) -> None:
    """Fetch the IDX files of ``source`` missing from ``root`` and verify the ones already there.

    A published ``.gz`` file already in ``root`` whose MD5 differs is reported (it belongs to
    another dataset or is damaged) rather than silently used.
    """
    md5 = resolve_checksums(source.md5, checksums)
    urls = base_urls(source.urls, mirror)
    present = find_idx_files(root, source)
    for role, file_name in IDX_FILES.items():
        existing = present[role]
        if existing is None:
            download_file(urls, root / file_name, md5[file_name])
        elif existing.name == file_name and file_md5(existing) != md5[file_name]:
            raise DataError(
                f"file {existing}: MD5 {file_md5(existing)} is not the published {md5[file_name]} "
                f"of {source.name}; "
                f"it belongs to another dataset or is damaged (use a separate folder per dataset)"
            )


IMAGE_SIZE = 28


def check_idx_headers(found: dict[str, Path], num_classes: int) -> int:
    """Read only the headers of the four IDX files and check them against each other.

    Images must be ``uint8`` ``N x 28 x 28``, labels ``uint8`` ``N``, with the same ``N`` per split;
    the whole set held in memory (``uint8`` images, ``int64`` labels) must fit the memory budget
    (:mod:`workbench.data.limits`). Returns that estimate in bytes; raises a one-line
    :class:`DataError` naming the file otherwise. Nothing beyond the headers is decompressed.
    """
    del num_classes  # label values are checked once read
    total = 0
    for split in ("train", "test"):
        images_path, labels_path = found[f"{split}_images"], found[f"{split}_labels"]
        images = read_idx_header(images_path)
        labels = read_idx_header(labels_path)
        if len(images.dims) != 3 or images.dims[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
            raise DataError(
                f"file {images_path}: header declares {images.dtype} images of shape {images.dims}, "
                f"expected uint8 N x {IMAGE_SIZE} x {IMAGE_SIZE}"
            )
        if len(labels.dims) != 1 or labels.dtype != np.uint8:
            raise DataError(
                f"file {labels_path}: header declares {labels.dtype} labels of shape {labels.dims}, "
                f"expected uint8 N"
            )
        if images.dims[0] != labels.dims[0]:
            raise DataError(
                f"file {labels_path}: holds {labels.dims[0]} labels but {images_path.name} "
                f"holds {images.dims[0]} images"
            )
        total += images.nbytes + 8 * labels.dims[0]
    problem = over_budget(total)
    if problem:
        raise DataError(f"file {found['train_images']}: the IDX set {problem}")
    return total


def _load_idx_split(images_path: Path, labels_path: Path, num_classes: int) -> Split:
    images = read_idx(images_path, ndim=3, dtype=np.uint8, shape=(None, IMAGE_SIZE, IMAGE_SIZE))
    labels = read_idx(labels_path, ndim=1, dtype=np.uint8, shape=(images.shape[0],))
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(
            f"file {labels_path}: label {int(labels.max())} is out of range for {num_classes} classes"
        )
    return Split(
        images=images_from_numpy(images, str(images_path)),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


def _found_or_error(root: Path, source: IdxSource) -> dict[str, Path]:
    found = find_idx_files(root, source)
    missing = [IDX_FILES[role] for role, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"root {root}: missing {source.name} files {', '.join(missing)} (plain or .gz); "
            f"pass download=True to fetch them"
        )
    return found  # type: ignore[return-value]


def estimate_idx_dataset(source: IdxSource, root: Path) -> int | None:
    """Bytes the full set in ``root`` would take in memory, from the IDX headers alone.

    ``None`` when the files are not all there yet (a download would fetch them). Raises
    :class:`DataError` for headers that disagree or a set over the memory budget.
    """
    if not root.is_dir():
        return None
    found = find_idx_files(root, source)
    if any(path is None for path in found.values()):
        return None
    return check_idx_headers(found, len(source.class_names))  # type: ignore[arg-type]


def load_idx_dataset(
    source: IdxSource, root: Path, download: bool, mirror: str | None, checksums: dict[str, str] | None
) -> Dataset:
    """Load the full set of ``source`` from the IDX files in ``root`` (fetched first if ``download``)."""
    if root.exists() and not root.is_dir():
        raise DataError(f"root {root}: is a file; expected a folder holding the {source.name} IDX files")
    if download:
        root.mkdir(parents=True, exist_ok=True)
        download_idx(root, source, mirror, checksums)
    found = _found_or_error(root, source)
    k = len(source.class_names)
    check_idx_headers(found, k)
    train = _load_idx_split(found["train_images"], found["train_labels"], k)
    test = _load_idx_split(found["test_images"], found["test_labels"], k)
    mean, std = channel_stats(train.images)
    return Dataset(
        name=source.name,
        train=train,
        test=test,
        class_names=list(source.class_names),
        mean=mean,
        std=std,
        hflip_ok=source.hflip_ok,
        source=f"{source.citation}: full set, IDX files in {root}",
    )


def load_embedded(source: IdxSource) -> Dataset:
    """Load the class-balanced subset of ``source`` shipped as ``assets/<name>.npz``."""
    path = assets_dir() / f"{source.name}.npz"
    if not path.is_file():
        raise DataError(
            f"file {path}: embedded subset of {source.name} not found; rebuild it with "
            f"scripts/build_data_assets.py or pass root=FOLDER with the IDX files"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            inflated = sum(info.file_size for info in npz.zip.infolist())
            problem = over_budget(inflated)
            if problem:
                raise DataError(f"file {path}: its arrays {problem}")
            missing = [key for key in _EMBEDDED_KEYS if key not in npz.files]
            if missing:
                raise DataError(
                    f"file {path}: missing arrays {', '.join(missing)}; expected {', '.join(_EMBEDDED_KEYS)}"
                )
            arrays = {key: npz[key] for key in _EMBEDDED_KEYS}
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"file {path}: not a readable npz archive ({err})") from None
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"file {path}: corrupt array data ({err})") from None
    class_names = [str(c) for c in arrays["class_names"].tolist()]
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[0] != labels.shape[0] or labels.ndim != 1:
            raise DataError(
                f"file {path}: {split}_images {images.shape} and {split}_labels {labels.shape} "
                f"do not form a split"
            )
        if labels.size and int(labels.max()) >= len(class_names):
            raise DataError(
                f"file {path}: {split} label {int(labels.max())} is out of range "
                f"for {len(class_names)} classes"
            )
        splits[split] = Split(
            images=images_from_numpy(images, f"file {path} {split}_images"),
            labels=torch.from_numpy(labels.astype(np.int64)),
        )
    return Dataset(
        name=source.name,
        train=splits["train"],
        test=splits["test"],
        class_names=class_names,
        mean=tuple(float(m) for m in np.atleast_1d(arrays["mean"])),
        std=tuple(float(s) for s in np.atleast_1d(arrays["std"])),
        hflip_ok=source.hflip_ok,
        source=f"{source.citation}: embedded class-balanced subset {path.name} (see assets/README.md)",
    )


def load_mnist_like(name: str, root: str | Path | None, download: bool, options: dict[str, Any]) -> Dataset:
    """Registry entry for ``mnist`` and ``fashion-mnist``: embedded subset or full IDX set."""
    source = SOURCES[name]
    mirror, checksums = options["mirror"], options["checksums"]
    if mirror is not None and not isinstance(mirror, str):
        raise DataError(f"option mirror: expected a base URL string, got {mirror!r}")
    if root is None:
        if download:
            raise DataError(
                f"dataset {name!r}: download=True needs root=FOLDER to store the full set; "
                f"without root the embedded subset is used"
            )
        return load_embedded(source)
    return load_idx_dataset(source, Path(root).expanduser(), download, mirror, checksums)
