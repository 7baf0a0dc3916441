"""Datasets of one's own, added once and registered in the run store by name, so that every face
(the command, the app, the panels) lists them beside the built-in ones.

Layout under the store::

    <store>/datasets/<name>.json        the entry: loader, root, options, when added, sizes, classes
    <store>/datasets/<name>/files/      the unpacked files of an archive, an upload or a download

A dataset comes from a folder (registered where it is; its files are not copied), a ``.zip`` (a
path, its bytes or an upload's file object; unpacked with the caps of
:mod:`workbench.data.archives`), a tar archive, or the URL of a CIFAR archive (downloaded and
checked against its published MD5). The loader (the registry name that reads the files:
``imagefolder``, ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``) is detected from the files
unless given. Adding loads the dataset once, so a bad file is refused then, in one line naming it.

Nothing half-written is ever left: files are unpacked into a hidden ``.staging-*`` folder that is
renamed to ``<name>/`` once the dataset has loaded, and the entry is written last, atomically. A
run trains on a stored dataset through :meth:`DatasetEntry.data_section`, the ``data`` section of
its config (loader, root, options), so the config stays self-contained.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from workbench.data import cifar, mnist
from workbench.data.archives import (
    MAX_ARCHIVE_FILES,
    MAX_UNPACKED_BYTES,
    is_tar_name,
    is_zip,
    unpack_archive,
)
from workbench.data.core import Dataset
from workbench.data.download import download_file, file_md5, resolve_checksums
from workbench.data.errors import DataError, known_names
from workbench.data.imagefolder import IMAGE_EXTENSIONS, scan_imagefolder
from workbench.data.registry import (
    check_dataset,
    dataset_options,
    list_datasets,
    load_dataset,
    prepare_dataset,
)
from workbench.procs import pid_alive
from workbench.runs.atomic import atomic_write_json
from workbench.runs.store import RunStore, utc_now
from workbench.runtime import CancelToken, Tracker

#: the folder of the store that holds its datasets
DATASETS_DIR = "datasets"
#: the folder of a dataset's own files, under ``<store>/datasets/<name>/``
FILES_DIR = "files"
#: the loaders a stored dataset can use (registry names that read files from a root)
LOADERS: tuple[str, ...] = ("imagefolder", "cifar10", "cifar100", "mnist", "fashion-mnist")
#: options about fetching files, not reading them: not kept in an entry
FETCH_OPTIONS = ("mirror", "checksums")
#: URL schemes a dataset can be downloaded from
URL_SCHEMES = ("http", "https", "file")

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_OWNER = ".owner.json"

Source = str | Path | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the store, as its entry file records it.

    ``name``: the store's name for it; ``loader``: the registry name that reads its files;
    ``root``: the folder the loader reads (absolute); ``options``: the loader's options;
    ``in_store``: its files live under ``<store>/datasets/<name>/`` (removed with it), else in the
    folder it was added from (never touched); ``source``: what it was added from (a folder, an
    archive, an upload, a URL); ``added``: when (UTC, ISO 8601); sizes, ``image_shape`` ``(C, H, W)``,
    ``class_names`` and ``mean``/``std`` (per channel, train split, ``[0, 1]`` scale) as loaded then;
    ``notes``: what loading changed (images converted or resized). ``damage``: why the entry file
    cannot be read, ``None`` for a healthy entry (a damaged one is listed so it can be removed).
    """

    name: str
    loader: str = ""
    root: Path = Path()
    options: dict[str, Any] = field(default_factory=dict)
    in_store: bool = False
    source: str = ""
    added: str = ""
    train_size: int = 0
    test_size: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)
    class_names: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    notes: list[str] = field(default_factory=list)
    damage: str | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def data_section(self) -> dict[str, Any]:
        """The ``data`` section of a run config that trains on this dataset: ``{"dataset": loader,
        "name": this entry's name, "root": absolute folder, "options": {...}}`` (merge it into a
        config's ``data``; listings show the name, :attr:`workbench.config.DataSpec.label`)."""
        self._healthy()
        return {"dataset": self.loader, "name": self.name, "root": str(self.root), "options": dict(self.options)}

    def load(self) -> Dataset:
        """Load the dataset into memory (a :class:`~workbench.data.Dataset` named after the entry).

        Raises:
            DataError: the entry is damaged, or its files changed or went missing since it was added
                (one line naming the file).
        """
        self._healthy()
        dataset = load_dataset(self.loader, root=self.root, **self.options)
        return replace(dataset, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able values (``root`` absolute)."""
        return {
            "name": self.name,
            "loader": self.loader,
            "root": str(self.root),
            "options": dict(self.options),
            "in_store": self.in_store,
            "source": self.source,
            "added": self.added,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "image_shape": list(self.image_shape),
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "notes": list(self.notes),
            "damage": self.damage,
        }

    def _healthy(self) -> None:
        if self.damage is not None:
            raise DataError(f"dataset {self.name!r}: {self.damage}; remove it and add it again")


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset a face can offer: ``where`` is ``built-in`` (the registry) or ``store``;
    ``loads_alone``: it loads by its name alone (a store dataset, or a built-in one that needs no
    root); ``description``: one line."""

    name: str
    where: str
    description: str
    loads_alone: bool


# ---- the store's folder and names -----------------------------------------------------------------


def datasets_folder(store: RunStore | str | Path | None = None) -> Path:
    """``<store>/datasets`` as an absolute path: where the store keeps its datasets (``store`` a
    RunStore, its folder, or ``None`` for ``$WORKBENCH_RUNS`` or ``./runs``)."""
    if isinstance(store, RunStore):
        root = store.root
    elif store is None or isinstance(store, (str, Path)):
        root = RunStore(store).root
    else:
        raise DataError(f"store: expected a RunStore or a folder, got {type(store).__name__}")
    return root.expanduser().resolve() / DATASETS_DIR


def check_name(name: object) -> str:
    """``name`` when it is a plain slug (lower-case letters, digits, ``-`` and ``_``, starting with a
    letter or digit, at most 63 characters) that no built-in dataset has; else a one-line
    :class:`DataError` naming it."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise DataError(
            f"dataset name {shown}: not a plain slug; use lower-case letters, digits, '-' and '_' "
            f"(starting with a letter or digit, at most 63 characters)"
        )
    if name in {d.name for d in list_datasets()}:
        raise DataError(f"dataset name {name!r}: taken by the built-in dataset of that name; pick another")
    return name


def _entry_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def _check_free(folder: Path, name: str) -> None:
    if os.path.lexists(_entry_path(folder, name)):
        raise DataError(
            f"dataset name {name!r}: already taken in {folder}; "
            f"remove that dataset first or pick another name"
        )


# ---- reading entries ------------------------------------------------------------------------------


def _read_entry(folder: Path, name: str) -> DatasetEntry:
    """The entry ``name`` of ``folder``; a damaged entry (unreadable, not JSON, wrong shape) comes back
    with :attr:`DatasetEntry.damage` set instead of raising."""
    path = _entry_path(folder, name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return DatasetEntry(name=name, damage=f"{path.name}: unreadable ({type(err).__name__})")
    try:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        root = Path(raw["root"])
        if raw["in_store"] is True:
            inner = PurePosixPath(raw["root"])
            if inner.is_absolute() or ".." in inner.parts:
                raise ValueError("root of files in the store leaves its folder")
            root = folder / name / FILES_DIR / inner
        elif not root.is_absolute():
            raise ValueError("root is not an absolute path")
        return DatasetEntry(
            name=name,
            loader=_one_of(raw["loader"], LOADERS, "loader"),
            root=root,
            options=dict(raw["options"]),
            in_store=bool(raw["in_store"]),
            source=str(raw["source"]),
            added=str(raw["added"]),
            train_size=int(raw["train_size"]),
            test_size=int(raw["test_size"]),
            image_shape=tuple(int(v) for v in raw["image_shape"]),  # type: ignore[arg-type]
            class_names=[str(c) for c in raw["class_names"]],
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
            notes=[str(n) for n in raw.get("notes", [])],
        )
    except (KeyError, TypeError, ValueError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else str(err)
        return DatasetEntry(name=name, damage=f"{path.name}: wrong shape ({what})")


def _one_of(value: Any, known: tuple[str, ...], what: str) -> str:
    if value not in known:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(known)}")
    return str(value)


def _stored_names(folder: Path) -> list[str]:
    try:
        names = [p.name for p in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise DataError(f"folder {folder}: cannot be listed ({err.strerror or err})") from None
    return sorted(n[:-5] for n in names if n.endswith(".json") and _NAME_RE.fullmatch(n[:-5]))


def list_store_datasets(store: RunStore | str | Path | None = None) -> list[DatasetEntry]:
    """The store's datasets, by name; damaged entries included (with :attr:`DatasetEntry.damage`)."""
    folder = datasets_folder(store)
    return [_read_entry(folder, name) for name in _stored_names(folder)]


def get_store_dataset(store: RunStore | str | Path | None, name: str) -> DatasetEntry:
    """The store's dataset ``name``.

    Raises:
        DataError: one line: ``name`` is not a slug, not in the store (naming the ones that are), or
            its entry is damaged.
    """
    folder = datasets_folder(store)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        check_name(name)
    if not _entry_path(folder, name).is_file():
        known = known_names(_stored_names(folder)) or "none"
        raise DataError(f"dataset {name!r}: not in the store {folder}; stored: {known}")
    entry = _read_entry(folder, name)
    entry._healthy()
    return entry


def remove_dataset(store: RunStore | str | Path | None, name: str) -> DatasetEntry:
    """Remove the store's dataset ``name`` (a damaged one too) and return its entry.

    The entry goes first (the dataset leaves every listing at once), then the store's own folder
    ``<store>/datasets/<name>/`` is renamed out of the way and deleted. Files of a dataset
    registered from a folder elsewhere are never touched.

    Raises:
        DataError: ``name`` is not a slug or not in the store.
    """
    folder = datasets_folder(store)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        check_name(name)
    path = _entry_path(folder, name)
    if not path.is_file():
        known = known_names(_stored_names(folder)) or "none"
        raise DataError(f"dataset {name!r}: not in the store {folder}; stored: {known}")
    entry = _read_entry(folder, name)
    trash = folder / f".trash-{name}-{uuid.uuid4().hex[:6]}"
    try:
        os.replace(path, trash.with_suffix(".json"))
        own = folder / name
        if own.is_dir() and not own.is_symlink():
            os.replace(own, trash)
    except OSError as err:
        raise DataError(f"dataset {name!r}: cannot be removed ({err.strerror or err})") from None
    trash.with_suffix(".json").unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    return entry


# ---- every dataset a face can offer ---------------------------------------------------------------


def dataset_choices(store: RunStore | str | Path | None = None) -> list[DatasetChoice]:
    """The built-in datasets (registry order) and then the store's (by name), as a face lists them."""
    out = [
        DatasetChoice(d.name, "built-in", d.description, loads_alone=not d.needs_root)
        for d in list_datasets()
    ]
    for e in list_store_datasets(store):
        if e.damage is not None:
            out.append(DatasetChoice(e.name, "store", f"damaged: {e.damage}", loads_alone=False))
            continue
        c, h, w = e.image_shape
        out.append(
            DatasetChoice(
                e.name,
                "store",
                f"{e.loader}, {e.train_size}/{e.test_size} images {c}x{h}x{w}, {e.num_classes} classes, "
                f"from {e.source}",
                loads_alone=True,
            )
        )
    return out


def open_dataset(store: RunStore | str | Path | None, name: str) -> Dataset:
    """Load the dataset a face names: the store's dataset ``name``, else the built-in one.

    Raises:
        DataError: unknown in both (naming what exists), a built-in that needs a root (add a copy to
            the store first), or the loader's own one-line error.
    """
    folder = datasets_folder(store)
    if isinstance(name, str) and _NAME_RE.fullmatch(name) and _entry_path(folder, name).is_file():
        return get_store_dataset(store, name).load()
    builtin = {d.name: d for d in list_datasets()}
    if name not in builtin:
        known = ", ".join([*builtin, *_stored_names(folder)])
        raise DataError(f"dataset {name!r}: neither built-in nor in the store {folder}; known: {known}")
    if builtin[name].needs_root:
        raise DataError(
            f"dataset {name!r}: reads its files from a folder; add your copy to the store first "
            f"(add_dataset, or `workbench data add NAME FOLDER --loader {name}`)"
        )
    return load_dataset(name)


# ---- telling the format of a folder ---------------------------------------------------------------


def _visible(folder: Path) -> tuple[list[Path], list[Path]]:
    """The visible sub-folders and files of ``folder`` (no hidden names)."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError as err:
        raise DataError(f"folder {folder}: cannot be listed ({err.strerror or err})") from None
    return [p for p in entries if p.is_dir()], [p for p in entries if p.is_file()]


def _fixed_format(folder: Path) -> str | None:
    """``cifar10``, ``cifar100``, ``mnist`` or ``fashion-mnist`` when ``folder`` holds those files."""
    for name, source in cifar.SOURCES.items():
        if (folder / source.folder).is_dir() or (folder / source.train_files[0]).is_file():
            return name
    found = mnist.find_idx_files(folder, mnist.SOURCES["mnist"])
    if any(path is not None for path in found.values()):
        images = found["train_images"]
        fashion = mnist.SOURCES["fashion-mnist"].md5.get(images.name) if images is not None else None
        if fashion is not None and images is not None and file_md5(images) == fashion:
            return "fashion-mnist"
        return "mnist"
    return None


def detect_loader(folder: str | Path) -> str | None:
    """The loader that reads ``folder``, from its contents: ``data_batch_1`` (or a
    ``cifar-10-batches-py/`` folder) -> ``cifar10``; ``train``/``test``/``meta`` pickles (or
    ``cifar-100-python/``) -> ``cifar100``; IDX files -> ``mnist`` (``fashion-mnist`` when the train
    images are the published Fashion-MNIST file); class sub-folders -> ``imagefolder``. ``None``
    when nothing matches."""
    folder = Path(folder)
    fixed = _fixed_format(folder)
    if fixed is not None:
        return fixed
    dirs, _ = _visible(folder)
    return "imagefolder" if dirs else None


def dataset_root(folder: str | Path) -> Path:
    """The folder a loader should read under ``folder``: ``folder`` itself, or the folder inside a
    chain of lone wrapper folders (an archive of ``pets/`` holding ``pets/cat/`` and ``pets/dog/``
    gives ``pets``)."""
    root = Path(folder)
    for _ in range(8):
        if _fixed_format(root) is not None:
            return root
        dirs, files = _visible(root)
        if len(dirs) != 1 or files:
            return root
        inner, _ = _visible(dirs[0])
        if not inner:
            return root
        root = dirs[0]
    return root


def _check_layout(root: Path, loader: str) -> None:
    """A one-line error naming the missing files of a CIFAR folder, before loading it."""
    if loader not in cifar.SOURCES:
        return
    source = cifar.SOURCES[loader]
    folder = cifar.batch_folder(root, source)
    needed = [*source.train_files, source.test_file, source.meta_file]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"folder {folder}: not the {loader} layout; it needs {', '.join(needed)}; "
            f"missing {', '.join(missing)}"
        )


def _locate(folder: Path, loader: str | None) -> tuple[Path, str]:
    root = dataset_root(folder)
    if loader is None:
        loader = detect_loader(root)
        if loader is None:
            raise DataError(
                f"folder {root}: cannot tell the dataset's format; expected class sub-folders of images "
                f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...), CIFAR python batches or MNIST IDX files "
                f"(or say which with loader=)"
            )
    _check_layout(root, loader)
    return root, loader


# ---- adding ---------------------------------------------------------------------------------------


def _check_options(loader: str | None, options: dict[str, Any] | None) -> dict[str, Any]:
    if loader is not None and loader not in LOADERS:
        raise DataError(f"loader {loader!r}: unknown; known: {', '.join(LOADERS)}")
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise DataError(
            f"options: expected a mapping of option names to values, got {type(options).__name__}"
        )
    return dict(options)


def _checked(name: str, loader: str, root: Path, options: dict[str, Any], track: Tracker) -> DatasetEntry:
    """Load the dataset at ``root`` once (every file read, every class present in train) and describe it."""
    accepted = dataset_options(loader)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(
            f"option {unknown[0]}: unknown for loader {loader}; accepted: {known_names(accepted) or 'none'}"
        )
    track.report(track.done, f"checking {name}: reading the file headers")
    notes: list[str] = []
    if loader == "imagefolder":
        notes = scan_imagefolder(root, options).notes
    else:
        check_dataset(loader, root, **options)
    track.check()
    track.report(track.done, f"checking {name}: loading every image once")
    dataset = prepare_dataset(loader, root=root, **options)
    kept = {k: v for k, v in options.items() if k not in FETCH_OPTIONS}
    return DatasetEntry(
        name=name,
        loader=loader,
        root=root,
        options=kept,
        added=utc_now(),
        train_size=len(dataset.train),
        test_size=len(dataset.test),
        image_shape=dataset.image_shape,
        class_names=list(dataset.class_names),
        mean=tuple(dataset.mean),
        std=tuple(dataset.std),
        notes=notes,
    )


def _write_entry(folder: Path, entry: DatasetEntry) -> None:
    record = entry.to_dict()
    del record["damage"]
    if entry.in_store:
        record["root"] = entry.root.relative_to(folder / entry.name / FILES_DIR).as_posix()
    atomic_write_json(_entry_path(folder, entry.name), record)


def _sub(track: Tracker, start: int, stop: int) -> Callable[[int, int, str], None]:
    """A progress callable for one phase, mapped into ``[start, stop]``, that also checks for a stop."""
    report = track.part(start, stop)

    def sub(done: int, total: int, message: str) -> None:
        report(done, total, message)
        track.check()

    return sub


def _url_archive(url: str, loader: str | None) -> cifar.CifarSource:
    parsed = urllib.parse.urlparse(url)
    filename = PurePosixPath(parsed.path).name
    source = next((s for s in cifar.SOURCES.values() if s.archive == filename), None)
    archives = " or ".join(s.archive for s in cifar.SOURCES.values())
    if parsed.scheme not in URL_SCHEMES or parsed.query or parsed.fragment or source is None:
        raise DataError(
            f"source {url}: expected the URL of a CIFAR archive ({archives}); "
            f"for other data, download it yourself and add the folder or a .zip"
        )
    if loader is not None and loader != source.name:
        raise DataError(f"loader {loader!r}: the archive {filename} holds {source.name}")
    return source


def _fetch(url: str, staging: Path, files: Path, loader: str | None, options: dict[str, Any],
           progress: Callable[[int, int, str], None]) -> str:
    """Download the CIFAR archive at ``url`` (published MD5, or ``options["checksums"]``) into
    ``staging`` and unpack it into ``files``; returns the loader."""
    source = _url_archive(url, loader)
    md5 = resolve_checksums({source.archive: source.md5}, options.get("checksums"))[source.archive]
    base = url[: url.rindex("/") + 1]
    archive = download_file([base], staging / source.archive, md5, progress=progress)
    unpack_archive(archive, files)
    archive.unlink()
    return source.name


def _source_kind(source: Source) -> str:
    """``url``, ``folder`` or ``archive`` (a path to a zip or tar file, bytes, or a binary file)."""
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        return "archive"
    if not isinstance(source, (str, Path)):
        raise DataError(
            f"source: expected a folder, a .zip path, archive bytes, a file object or a URL, "
            f"got {type(source).__name__}"
        )
    text = str(source)
    if isinstance(source, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return "url"
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DataError(f"source {text}: not found; expected a folder, a .zip file or a URL")
    if is_zip(path) or is_tar_name(path.name):
        return "archive"
    raise DataError(f"source {text}: not a folder, a .zip file or a tar archive")


def _describe_source(source: Source, kind: str) -> str:
    if kind == "url":
        return str(source)
    if kind == "folder":
        return f"folder {Path(str(source)).expanduser().resolve()}"
    if isinstance(source, (str, Path)):
        return f"archive {Path(source).name}"
    name = getattr(source, "name", None)
    return f"upload {Path(name).name}" if isinstance(name, str) and name else "upload"


def _stage(folder: Path, name: str) -> Path:
    """A new hidden staging folder for ``name`` owned by this process (see :func:`_clear_stale`)."""
    folder.mkdir(parents=True, exist_ok=True)
    _clear_stale(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=folder))
    atomic_write_json(staging / _OWNER, {"pid": os.getpid(), "host": socket.gethostname()})
    return staging


def _clear_stale(folder: Path) -> None:
    """Remove staging folders left by processes of this host that have ended (killed mid-add)."""
    for path in folder.glob(".staging-*"):
        with contextlib.suppress(OSError, ValueError, TypeError, json.JSONDecodeError):
            owner = json.loads((path / _OWNER).read_text(encoding="utf-8"))
            if owner.get("host") == socket.gethostname() and not pid_alive(int(owner["pid"])):
                shutil.rmtree(path, ignore_errors=True)


def add_dataset(
    store: RunStore | str | Path | None,
    name: str,
    source: Source,
    *,
    loader: str | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_files: int = MAX_ARCHIVE_FILES,
) -> DatasetEntry:
    """Add a dataset to the store under ``name`` and return its entry.

    Args:
        store: the run store (a RunStore, its folder, or ``None`` for the default).
        name: a plain slug (:func:`check_name`) not yet taken in the store.
        source: a folder (registered where it is, not copied); a ``.zip`` or tar archive's path, a
            zip's bytes, or a binary file object (an upload; its ``name`` is recorded); or the
            ``http(s)://`` / ``file://`` URL of a CIFAR archive (checked against its published MD5,
            or ``options["checksums"]``). Archives are unpacked into ``<store>/datasets/<name>/files/``.
        loader: ``imagefolder``, ``cifar10``, ``cifar100``, ``mnist`` or ``fashion-mnist``; detected
            from the files when ``None`` (:func:`detect_loader`).
        options: the loader's options (``image_size``, ``test_fraction``, ``label_mode``, ...).
        progress: ``progress(done, total, message)``, in percent over download, unpacking and
            checking. cancel: a :class:`~workbench.runtime.CancelToken`; a stopped add leaves nothing.
        max_bytes, max_files: the caps of an archive (:mod:`workbench.data.archives`).

    Raises:
        DataError: one line naming the field or file: a name that is not a slug or is taken, an
            unknown loader or option, a source that is not found or not readable, an archive that
            escapes its folder or is too large, a wrong checksum, a CIFAR folder missing files, a
            folder without class sub-folders, an unreadable image. Nothing is left in the store.
    """
    folder = datasets_folder(store)
    check_name(name)
    _check_free(folder, name)
    opts = _check_options(loader, options)
    kind = _source_kind(source)
    track = Tracker(progress, cancel, total=100, label=f"adding {name}")
    track.start()
    described = _describe_source(source, kind)
    if kind == "folder":
        root, found = _locate(Path(str(source)).expanduser().resolve(), loader)
        track.report(40)
        entry = replace(_checked(name, found, root, opts, track), source=described, in_store=False)
        _check_free(folder, name)
        _write_entry(folder, entry)
        track.report(100, f"added {name}")
        return entry
    staging = _stage(folder, name)
    try:
        files = staging / FILES_DIR
        if kind == "url":
            loader = _fetch(str(source), staging, files, loader, opts, _sub(track, 0, 60))
        else:
            unpack_archive(source, files, max_bytes=max_bytes, max_files=max_files, name=described,
                           progress=_sub(track, 0, 60))
        track.report(60)
        root, found = _locate(files, loader)
        entry = replace(_checked(name, found, root, opts, track), source=described, in_store=True)
        track.check()
        final = folder / name
        _check_free(folder, name)
        if os.path.lexists(final):  # files left without an entry by a killed add: nobody's
            shutil.rmtree(final)
        (staging / _OWNER).unlink()
        os.replace(staging, final)
        entry = replace(entry, root=final / root.relative_to(staging))
        try:
            _write_entry(folder, entry)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    track.report(100, f"added {name}")
    return entry


__all__ = [
    "DATASETS_DIR",
    "FILES_DIR",
    "LOADERS",
    "DatasetChoice",
    "DatasetEntry",
    "add_dataset",
    "check_name",
    "dataset_choices",
    "dataset_root",
    "datasets_folder",
    "detect_loader",
    "get_store_dataset",
    "list_store_datasets",
    "open_dataset",
    "remove_dataset",
]
