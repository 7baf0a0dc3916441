"""Reading and writing IDX files, the format of the MNIST and Fashion-MNIST distributions.

Format (LeCun et al., "The MNIST database of handwritten digits"): two zero bytes, one byte
giving the element type (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double),
one byte giving the number of dimensions, then one big-endian ``uint32`` per dimension, then the
elements in C order, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from workbench.data.errors import DataError

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


def read_file_bytes(path: Path) -> bytes:
    """Return the content of ``path``, transparently un-gzipped (detected by the gzip magic bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"file {path}: cannot be read ({err.strerror or err})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"file {path}: corrupt or truncated gzip data ({err})") from None
    return raw


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Parse IDX ``data`` into a native-endian numpy array; ``what`` names the file in error messages."""
    if len(data) < 4:
        raise DataError(f"file {what}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_TYPES:
        raise DataError(
            f"file {what}: not an IDX file (magic bytes {data[:4].hex()}; expected 0000 + type code "
            f"{'/'.join(f'{c:02x}' for c in IDX_TYPES)} + ndim)"
        )
    if ndim == 0:
        raise DataError(f"file {what}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"file {what}: truncated IDX header (needs {header} bytes, has {len(data)})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        state = "truncated" if found < expected else "has trailing bytes"
        raise DataError(f"file {what}: {state}: dims {tuple(dims)} need {expected} data bytes, found {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else array


def read_idx(path: str | Path, ndim: int | None = None, dtype: np.dtype | type | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) and check its number of dimensions and element type.

    Returns a read-only numpy array; raises :class:`DataError` naming the file when it is missing,
    truncated, corrupt or of another shape/type than asked.
    """
    path = Path(path)
    array = parse_idx(read_file_bytes(path), str(path))
    if ndim is not None and array.ndim != ndim:
        raise DataError(f"file {path}: expected an IDX array with {ndim} dimensions, got shape {array.shape}")
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise DataError(f"file {path}: expected IDX elements of type {np.dtype(dtype)}, got {array.dtype}")
    return array


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
