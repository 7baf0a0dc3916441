"""Unpacking a dataset's archive (a ``.zip`` upload, or a tar archive) so that nothing lands outside
the folder it is unpacked into and nothing unpacks past the caps.

A zip is checked from its central directory before a byte is written: at most ``max_files``
files, declared sizes adding up to at most ``max_bytes`` (and fitting the free disk space), and
every member name a plain relative path (:func:`workbench.data.download.check_member_name`: no
absolute path, ``..``, backslash, drive letter or NUL) of a plain file or folder (no symbolic
link, device or pipe; no encrypted member). While unpacking, the bytes actually written are
counted against each member's declared size and against ``max_bytes`` again, so a directory that
lies about sizes (a zip bomb) is stopped at the cap. Everything is written into a hidden staging
folder beside the destination and renamed into place at the end: a refused or failed archive
leaves nothing behind.

Folders that archiving tools add on their own (``__MACOSX/`` resource forks, ``.DS_Store``) are
skipped. Tar archives go through :func:`workbench.data.download.extract_tar`, which applies the
same rules.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from workbench.data.download import check_member_name, extract_tar
from workbench.data.errors import DataError
from workbench.data.limits import format_bytes

#: the most an uploaded archive may unpack to
MAX_UNPACKED_BYTES = 2 << 30
#: the most files an uploaded archive may hold
MAX_ARCHIVE_FILES = 100_000
#: names of archive entries that are the archiving tool's, never the dataset's
SKIPPED_PARTS = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})
#: file names (lower case) read as tar archives
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

_CHUNK = 1 << 20
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

ArchiveSource = str | Path | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class Unpacked:
    """What unpacking wrote: the folder, how many files and bytes, and how many entries were skipped
    as the archiving tool's own (``__MACOSX/``, ``.DS_Store``)."""

    dest: Path
    files: int
    bytes: int
    skipped: int


def is_zip(source: ArchiveSource) -> bool:
    """Whether ``source`` (a path, bytes or a seekable binary file) starts like a zip archive."""
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as fh:
                head = fh.read(4)
        except OSError:
            return False
    elif isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:4])
    else:
        pos = source.tell()
        head = source.read(4)
        source.seek(pos)
    return head in _ZIP_MAGIC


def is_tar_name(name: str) -> bool:
    """Whether a file name ends like a tar archive (:data:`TAR_SUFFIXES`)."""
    return name.lower().endswith(TAR_SUFFIXES)


def _open_zip(source: ArchiveSource, what: str) -> zipfile.ZipFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    try:
        return zipfile.ZipFile(source)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise DataError(f"archive {what}: not a readable zip file ({err})") from None


def _skipped(path: PurePosixPath) -> bool:
    return any(part in SKIPPED_PARTS or part.startswith("._") for part in path.parts)


def _kind(info: zipfile.ZipInfo) -> int:
    """The file-type bits a Unix archiver recorded (0 when none were)."""
    return stat.S_IFMT(info.external_attr >> 16)


def _plan_zip(zf: zipfile.ZipFile, what: str, max_bytes: int, max_files: int) -> tuple[list, int]:
    """Check every member from the central directory; returns the members to write and the bytes they
    declare."""
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    skipped = 0
    for info in zf.infolist():
        path = check_member_name(info.filename, what)
        kind = _kind(info)
        if kind == stat.S_IFLNK:
            raise DataError(
                f"archive {what}: member {info.filename!r} is a symbolic link; "
                f"only files and folders are unpacked"
            )
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DataError(
                f"archive {what}: member {info.filename!r} is a device or pipe; "
                f"only files and folders are unpacked"
            )
        if info.flag_bits & 0x1:
            raise DataError(
                f"archive {what}: member {info.filename!r} is encrypted; give an archive without a password"
            )
        if info.is_dir() or kind == stat.S_IFDIR:
            continue
        if _skipped(path):
            skipped += 1
            continue
        if path in seen:
            raise DataError(f"archive {what}: member {info.filename!r} appears twice")
        seen.add(path)
        members.append((info, path))
    if len(members) > max_files:
        raise DataError(
            f"archive {what}: holds {len(members)} files, over the limit of {max_files}; nothing was unpacked"
        )
    total = sum(info.file_size for info, _ in members)
    if total > max_bytes:
        raise DataError(
            f"archive {what}: its files unpack to {format_bytes(total)}, over the limit of "
            f"{format_bytes(max_bytes)}; nothing was unpacked"
        )
    return members, skipped


def _write_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, what: str, budget: int
) -> int:
    """Write one member to ``target`` counting the bytes actually produced; returns them. Stops with
    :class:`DataError` past the member's declared size or past ``budget`` (the bytes left under the cap)."""
    written = 0
    with zf.open(info) as src, open(target, "xb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            written += len(chunk)
            if written > info.file_size:
                raise DataError(
                    f"archive {what}: member {info.filename!r} holds more than the {info.file_size} bytes "
                    f"it declares (a zip bomb or a damaged archive); nothing was unpacked"
                )
            if written > budget:
                raise DataError(
                    f"archive {what}: unpacking went past the size limit ({format_bytes(budget)} left); "
                    f"nothing was unpacked"
                )
            out.write(chunk)
    return written


def unpack_zip(
    source: ArchiveSource,
    dest: str | Path,
    *,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_files: int = MAX_ARCHIVE_FILES,
    name: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Unpacked:
    """Unpack the zip archive ``source`` into the new folder ``dest`` (which must not exist yet).

    Args:
        source: a ``.zip`` file's path, its bytes, or a seekable binary file (an upload).
        dest: the folder to create; its parent is created when missing.
        max_bytes: the most the files may unpack to, checked from the central directory first and
            against the bytes actually written while unpacking.
        max_files: the most files the archive may hold (folders not counted).
        name: how the archive is named in messages (default: its path, or ``upload``).
        progress: ``progress(done, total, message)`` in bytes written.

    Returns:
        :class:`Unpacked` with the folder, the files and bytes written and the skipped entries.

    Raises:
        DataError: one line naming the archive and the member for an escaping or linked member, an
            encrypted one, too many files, too many bytes (declared or written), a corrupt archive;
            ``dest`` is then left absent.
    """
    what = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    dest = Path(dest)
    if os.path.lexists(dest):
        raise DataError(f"folder {dest}: already exists; archives are unpacked into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        with _open_zip(source, what) as zf:
            members, skipped = _plan_zip(zf, what, max_bytes, max_files)
            declared = sum(info.file_size for info, _ in members)
            free = shutil.disk_usage(staging).free
            if declared > free:
                raise DataError(
                    f"archive {what}: its files unpack to {format_bytes(declared)}, over the "
                    f"{format_bytes(free)} free on disk; nothing was unpacked"
                )
            written = 0
            made: set[Path] = set()
            for info, path in members:
                target = staging.joinpath(*path.parts)
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                written += _write_member(zf, info, target, what, max_bytes - written)
                if progress is not None:
                    progress(written, declared, f"unpacking {what}")
        os.replace(staging, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"archive {what}: corrupt or not unpackable ({err})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Unpacked(dest=dest, files=len(members), bytes=written, skipped=skipped)


def unpack_archive(
    source: ArchiveSource,
    dest: str | Path,
    *,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_files: int = MAX_ARCHIVE_FILES,
    name: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Unpacked:
    """Unpack a zip (:func:`unpack_zip`) or, for a path whose name ends in :data:`TAR_SUFFIXES`, a tar
    archive (:func:`workbench.data.download.extract_tar`, same caps) into the new folder ``dest``.
    Arguments, result and errors as :func:`unpack_zip`."""
    if not (isinstance(source, (str, Path)) and is_tar_name(Path(source).name) and not is_zip(source)):
        return unpack_zip(
            source, dest, max_bytes=max_bytes, max_files=max_files, name=name, progress=progress
        )
    dest = Path(dest)
    if os.path.lexists(dest):
        raise DataError(f"folder {dest}: already exists; archives are unpacked into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        extract_tar(source, staging, max_bytes=max_bytes, max_files=max_files)
        sizes = [p.stat().st_size for p in staging.rglob("*") if p.is_file()]
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if progress is not None:
        progress(sum(sizes), sum(sizes), f"unpacking {name or source}")
    return Unpacked(dest=dest, files=len(sizes), bytes=sum(sizes), skipped=0)
