"""Reading and writing IDX files, the format of the MNIST and Fashion-MNIST distributions.

Format (LeCun et al., "The MNIST database of handwritten digits"): two zero bytes, one byte
giving the element type (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double),
one byte giving the number of dimensions, then one big-endian ``uint32`` per dimension, then the
elements in C order, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.data.errors import DataError
from workbench.data.limits import MemoryBudgetError, format_bytes, memory_budget_bytes

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class _Stream:
    """An IDX file opened for reading: the plain file, or a gzip decompressor over it.

    Reads through the decompressor are always bounded by the caller, so a small file that
    inflates to gigabytes is never inflated beyond what its header promised.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed in close()
            magic = self._raw.read(2)
            self._raw.seek(0)
            self.size = os.fstat(self._raw.fileno()).st_size
        except OSError as err:
            raise DataError(f"file {path}: cannot be read ({err.strerror or err})") from None
        self.gzipped = magic == _GZIP_MAGIC
        self._fh: io.BufferedIOBase = gzip.GzipFile(fileobj=self._raw) if self.gzipped else self._raw

    def read_into(self, buffer: memoryview) -> int:
        """Fill ``buffer`` as far as the data goes; return the number of bytes read."""
        done = 0
        try:
            while done < len(buffer):
                got = self._fh.readinto(buffer[done : done + _CHUNK])
                if not got:
                    break
                done += got
        except (OSError, EOFError, zlib.error) as err:
            if not self.gzipped:
                raise DataError(f"file {self.path}: cannot be read ({err})") from None
            raise DataError(f"file {self.path}: corrupt or truncated gzip data ({err})") from None
        return done

    def read(self, n: int) -> bytearray:
        """Up to ``n`` bytes (fewer at the end of the data), read in chunks: memory follows the data
        actually there, never ``n`` up front."""
        out = bytearray()
        while len(out) < n:
            chunk = bytearray(min(_CHUNK, n - len(out)))
            got = self.read_into(memoryview(chunk))
            if not got:
                break
            out += chunk[:got]
        return out

    def close(self) -> None:
        self._fh.close()
        self._raw.close()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_file_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """Return the content of ``path``, transparently un-gzipped (detected by the gzip magic bytes).

    At most ``max_bytes`` bytes (default: the memory budget of :mod:`workbench.data.limits`) are
    ever decompressed; content beyond that raises :class:`DataError` naming the file.
    """
    cap = memory_budget_or_error(path) if max_bytes is None else max_bytes
    with _Stream(path) as stream:
        if not stream.gzipped and stream.size > cap:
            raise DataError(f"file {path}: {stream.size} bytes, over the limit of {format_bytes(cap)}")
        data = stream.read(cap + 1)
    if len(data) > cap:
        raise DataError(f"file {path}: decompresses to more than {format_bytes(cap)}; refused")
    return bytes(data)


def memory_budget_or_error(path: Path | str) -> int:
    """The memory budget in bytes; a bad ``$WORKBENCH_MEMORY_BUDGET_MB`` becomes a :class:`DataError`."""
    try:
        return memory_budget_bytes()
    except MemoryBudgetError as err:
        raise DataError(f"file {path}: {err}") from None


def _parse_header(head: bytes, what: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, dims, header_length)`` of the IDX header at the start of ``head``."""
    if len(head) < 4:
        raise DataError(f"file {what}: too short for an IDX header ({len(head)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or code not in IDX_TYPES:
        raise DataError(
            f"file {what}: not an IDX file (magic bytes {head[:4].hex()}; expected 0000 + type code "
            f"{'/'.join(f'{c:02x}' for c in IDX_TYPES)} + ndim)"
        )
    if ndim == 0:
        raise DataError(f"file {what}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"file {what}: truncated IDX header (needs {header} bytes, has {len(head)})")
    dims = tuple(int(d) for d in struct.unpack(f">{ndim}I", head[4:header]))
    return IDX_TYPES[code], dims, header


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Parse IDX ``data`` into a native-endian numpy array; ``what`` names the file in error messages."""
    dtype, dims, header = _parse_header(data[: 4 + 4 * 255], what)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "has trailing bytes"
        raise DataError(f"file {what}: {state}: dims {tuple(dims)} need {expected} data bytes, found {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else array


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares: element ``dtype``, ``dims`` and the number of data bytes."""

    dtype: np.dtype
    dims: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of element data the header promises (``prod(dims) * itemsize``)."""
        return math.prod(self.dims) * self.dtype.itemsize


def read_idx_header(path: str | Path) -> IdxHeader:
    """Read only the header of the IDX file at ``path`` (plain or gzip); nothing else is decompressed."""
    path = Path(path)
    with _Stream(path) as stream:
        head = stream.read(4)
        if len(head) == 4:
            head += stream.read(4 * head[3])
    dtype, dims, _ = _parse_header(head, str(path))
    return IdxHeader(dtype, dims)


def _check_header(
    path: Path,
    header: IdxHeader,
    ndim: int | None,
    dtype: np.dtype | type | None,
    shape: tuple[int | None, ...] | None,
) -> None:
    if ndim is not None and len(header.dims) != ndim:
        raise DataError(f"file {path}: expected an IDX array with {ndim} dimensions, got shape {header.dims}")
    if dtype is not None and header.dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise DataError(f"file {path}: expected IDX elements of type {np.dtype(dtype)}, got {header.dtype}")
    if shape is not None and (
        len(shape) != len(header.dims)
        or any(want is not None and want != got for want, got in zip(shape, header.dims, strict=True))
    ):
        wanted = "x".join("N" if s is None else str(s) for s in shape)
        raise DataError(f"file {path}: header declares shape {header.dims}, expected {wanted}")


def read_idx(
    path: str | Path,
    ndim: int | None = None,
    dtype: np.dtype | type | None = None,
    *,
    shape: tuple[int | None, ...] | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Read an IDX file (plain or gzip) and check its number of dimensions, element type and shape.

    The header is read and checked first: against ``ndim``, ``dtype`` and ``shape`` (``None``
    entries match any size), then its data size against ``max_bytes`` (default: the memory
    budget of :mod:`workbench.data.limits`) and, for a plain file, against the file size. Only
    then is exactly the declared number of bytes read (through a bounded decompressor for gzip),
    so a file that claims or inflates to more than allowed is refused without being inflated.
    Returns a native-endian numpy array; raises :class:`DataError` naming the file when it is
    missing, truncated, corrupt, too large or of another shape/type than asked.
    """
    path = Path(path)
    with _Stream(path) as stream:
        head = stream.read(4)
        if len(head) == 4:
            head += stream.read(4 * head[3])
        found_dtype, dims, header_len = _parse_header(head, str(path))
        header = IdxHeader(found_dtype, dims)
        _check_header(path, header, ndim, dtype, shape)
        expected = header.nbytes
        cap = memory_budget_or_error(path) if max_bytes is None else max_bytes
        if expected > cap:
            raise DataError(
                f"file {path}: header declares dims {dims} = {format_bytes(expected)} of data, over the "
                f"limit of {format_bytes(cap)}; refused before reading"
            )
        if not stream.gzipped and stream.size - header_len != expected:
            found = stream.size - header_len
            state = "truncated" if found < expected else "has trailing bytes"
            raise DataError(f"file {path}: {state}: dims {dims} need {expected} data bytes, found {found}")
        if stream.gzipped:  # grows with the data actually inflated: a lying header costs nothing
            buffer = stream.read(expected)
            got = len(buffer)
        else:
            buffer = bytearray(expected)
            got = stream.read_into(memoryview(buffer))
        if got < expected:
            raise DataError(f"file {path}: truncated: dims {dims} need {expected} data bytes, found {got}")
        if stream.gzipped and stream.read(1):
            raise DataError(
                f"file {path}: has trailing bytes: dims {dims} need {expected} data bytes, "
                f"the file decompresses to more"
            )
    array = np.frombuffer(buffer, dtype=found_dtype).reshape(dims)
    return array.astype(found_dtype.newbyteorder("="), copy=False) if found_dtype.itemsize > 1 else array


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a ``uint8`` or ``int8`` numpy array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _TYPE_CODES:
        raise DataError(f"encode_idx array: expected dtype uint8 or int8, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise DataError(f"encode_idx array: expected 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(">HBB", 0, _TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()
