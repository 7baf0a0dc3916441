"""Downloads with checksum verification and atomic writes, and archive extraction that cannot escape.

A file is streamed into a temporary file next to its destination while its MD5 is computed; only
when the digest matches the published one is it renamed into place, so an interrupted or
tampered download never leaves a file under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from workbench.data.errors import DataError

MIRROR_ENV = "WORKBENCH_DATA_MIRROR"
_CHUNK = 1 << 20
#: the largest file a download may bring (the CIFAR archives are about 170 MB)
DOWNLOAD_MAX_BYTES = 1 << 30
#: the most an archive may unpack to (the CIFAR folders are about 180 MB)
EXTRACT_MAX_BYTES = 4 << 30
#: the most files an archive may hold
EXTRACT_MAX_FILES = 200_000

_DRIVE = re.compile(r"^[A-Za-z]:")


def file_md5(path: str | Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_urls(defaults: list[str], mirror: str | None) -> list[str]:
    """Base URLs to try, in order: ``mirror`` if given, else ``$WORKBENCH_DATA_MIRROR``, else ``defaults``."""
    chosen = mirror if mirror else os.environ.get(MIRROR_ENV, "")
    if chosen:
        parsed = urllib.parse.urlparse(chosen)
        if parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
            raise DataError(f"option mirror: {chosen!r} is not an http(s):// or file:// base URL")
        return [chosen if chosen.endswith("/") else chosen + "/"]
    return list(defaults)


def resolve_checksums(defaults: Mapping[str, str], override: Mapping[str, str] | None) -> dict[str, str]:
    """Merge published MD5 checksums with an ``override`` mapping of file name -> hex MD5."""
    merged = dict(defaults)
    if override is None:
        return merged
    if not isinstance(override, Mapping):
        raise DataError(
            f"option checksums: expected a mapping of file name to MD5 hex digest, "
            f"got {type(override).__name__}"
        )
    for name, value in override.items():
        if name not in defaults:
            raise DataError(f"option checksums: unknown file {name!r}; known: {', '.join(sorted(defaults))}")
        if (
            not isinstance(value, str)
            or len(value) != 32
            or any(ch not in "0123456789abcdefABCDEF" for ch in value)
        ):
            raise DataError(f"option checksums: {name!r} -> {value!r} is not a 32-digit MD5 hex digest")
        merged[name] = value.lower()
    return merged


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlparse(url).hostname or ""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    # A loopback address is always reached directly, never through a configured proxy.
    return (
        urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if loopback
        else urllib.request.build_opener()
    )


def download_file(
    urls: list[str],
    dest: str | Path,
    md5: str,
    timeout: float = 60.0,
    max_bytes: int = DOWNLOAD_MAX_BYTES,
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Fetch ``dest.name`` from the first base URL in ``urls`` that answers, verify its MD5, write atomically.

    A source announcing a ``Content-Length`` over ``max_bytes`` is not read at all; a stream that
    grows past ``max_bytes`` is cut off and its partial file removed (that source counts as
    failed). On a checksum mismatch the partial file is removed and :class:`DataError` is raised;
    when every URL fails the error lists what each one answered. ``progress(done, total, message)``
    is called after every chunk with the bytes received and the announced length (``0`` when the
    source announces none); an exception it raises (a cancellation) ends the download and removes
    the partial file. Returns ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for base in urls:
        url = urllib.parse.urljoin(base, dest.name)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as out, _opener(url).open(url, timeout=timeout) as response:
                announced = _content_length(response)
                if announced is not None and announced > max_bytes:
                    failures.append(
                        f"{url}: announces {announced} bytes, over the limit of {max_bytes}; not downloaded"
                    )
                    continue
                received = 0
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    received += len(chunk)
                    if received > max_bytes:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(received, announced or 0, f"downloading {dest.name}")
                if received > max_bytes:
                    failures.append(f"{url}: sent more than the limit of {max_bytes} bytes; aborted")
                    continue
                out.flush()
                os.fsync(out.fileno())
            got = digest.hexdigest()
            if got != md5.lower():
                raise DataError(
                    f"file {dest.name} from {url}: MD5 {got} does not match the expected {md5}; "
                    f"the file was removed"
                )
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            failures.append(f"{url}: {getattr(err, 'reason', None) or err}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"file {dest.name}: download failed from every source ({'; '.join(failures)})")


def _content_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def check_member_name(name: str, archive: str | Path) -> PurePosixPath:
    """The relative path an archive member ``name`` is unpacked to, or a one-line :class:`DataError`.

    Refused: an empty name, an absolute path (``/x``), a ``..`` part, a backslash (a Windows path
    that would be read as one odd file name here), a drive letter (``C:``) and a NUL character, all
    of which could place a file outside the folder an archive is unpacked into. ``archive`` names
    the archive in the message.
    """
    path = PurePosixPath(name)
    if (
        not name.strip("/")
        or path.is_absolute()
        or ".." in path.parts
        or name.startswith(("/", "\\"))
        or "\\" in name
        or "\x00" in name
        or _DRIVE.match(name)
    ):
        raise DataError(f"archive {archive}: member {name!r} would be written outside the target folder")
    return path


def check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a tar member that is not a plain file or folder, or whose path leaves the extraction folder
    (:func:`check_member_name`)."""
    check_member_name(member.name, archive)
    if not (member.isfile() or member.isdir()):
        raise DataError(
            f"archive {archive}: member {member.name!r} is a link or device; "
            f"only files and folders are extracted"
        )


def extract_tar(
    archive: str | Path,
    dest: str | Path,
    max_bytes: int = EXTRACT_MAX_BYTES,
    max_files: int = EXTRACT_MAX_FILES,
) -> None:
    """Extract a (gzip) tar archive into ``dest`` after checking every member with :func:`check_tar_member`.

    The archive may hold at most ``max_files`` files, and the member sizes it declares must add up
    to at most ``max_bytes`` and fit the free space of ``dest``, or nothing is extracted (a tar
    member's data is exactly its declared size, so the declared total is what is written).
    Extraction goes to a temporary folder inside ``dest`` whose top-level entries are then renamed
    into place, so a failure leaves no half-extracted folder under its final name.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"archive {archive}: cannot be opened as a tar archive ({err})") from None
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest))
    try:
        with tar:
            try:
                members = tar.getmembers()
                for member in members:
                    check_tar_member(member, archive)
                files = sum(1 for m in members if m.isfile())
                if files > max_files:
                    raise DataError(
                        f"archive {archive}: holds {files} files, over the limit of {max_files}; "
                        f"nothing was extracted"
                    )
                total = sum(m.size for m in members if m.isfile())
                free = shutil.disk_usage(staging).free
                if total > min(max_bytes, free):
                    where = f"the limit of {max_bytes}" if total > max_bytes else f"the {free} bytes free"
                    raise DataError(
                        f"archive {archive}: its members unpack to {total} bytes, over {where}; "
                        f"nothing was extracted"
                    )
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(staging, members=members)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise DataError(f"archive {archive}: corrupt or truncated ({err})") from None
        for entry in staging.iterdir():
            final = dest / entry.name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(entry, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
