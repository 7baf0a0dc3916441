"""One image uploaded by a user (a PNG or JPEG file's bytes), as an image of a dataset's shape.

:func:`decode_upload` is what every face (the app's CAM page, a notebook) calls on uploaded bytes.
It refuses a file larger than :data:`MAX_UPLOAD_BYTES` and an image whose header declares more than
:data:`MAX_UPLOAD_PIXELS` pixels before any pixel is decoded: the width and height are read from the
PNG ``IHDR`` chunk or the JPEG start-of-frame segment by this module itself, so no process-wide
setting of Pillow (``Image.MAX_IMAGE_PIXELS``) is read or changed. Every failure is one
:class:`~workbench.data.DataError` line starting with ``upload:``.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch

from workbench.data.errors import DataError

#: largest uploaded image accepted, in pixels (width x height), checked before decoding
MAX_UPLOAD_PIXELS = 16_000_000
#: largest uploaded file accepted, in bytes
MAX_UPLOAD_BYTES = 8 * 1024 * 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT (C4), JPG (C8), DAC (CC)
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# markers without a length field: TEM, RST0-7, SOI, EOI
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
_UNREADABLE = "upload: not a readable PNG or JPEG image"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first start-of-frame segment of a JPEG, or ``None``."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def image_header_size(data: bytes) -> tuple[int, int]:
    """The ``(width, height)`` a PNG or JPEG file declares in its header, read without decoding.

    Args:
        data: the file's bytes.

    Returns:
        ``(width, height)`` in pixels, from the PNG ``IHDR`` chunk or the JPEG SOF segment.

    Raises:
        DataError: the bytes are neither a PNG nor a JPEG with a readable header.
    """
    data = bytes(data)
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
        if size is not None:
            return size
    raise DataError(_UNREADABLE)


def decode_upload(data: bytes, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """An uploaded PNG/JPEG as a ``uint8`` tensor ``(1, C, H, W)`` of a dataset's shape.

    The image is converted to grayscale (``C == 1``) or RGB (``C == 3``) and resized (bilinear) to
    ``H x W``. The file size and the pixel count the header declares are checked before decoding.

    Args:
        data: the uploaded file's bytes.
        image_shape: the dataset's ``(channels, height, width)`` (channels 1 or 3).

    Returns:
        A CPU ``uint8`` tensor ``(1, C, H, W)``; normalize it with the dataset's statistics before
        giving it to a model.

    Raises:
        DataError: one line starting with ``upload:``: empty file, more than :data:`MAX_UPLOAD_BYTES`
            bytes, more than :data:`MAX_UPLOAD_PIXELS` pixels, not a readable PNG or JPEG, or an
            ``image_shape`` that is not ``(1 or 3, H, W)``.
    """
    from PIL import Image, UnidentifiedImageError

    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
    if (
        len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
        or shape[0] not in (1, 3)
    ):
        raise DataError(f"upload: image_shape: expected (1 or 3, height, width), got {image_shape!r}")
    c, h, w = shape
    if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
        raise DataError("upload: the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(
            f"upload: the file has {len(data):,} bytes; at most {MAX_UPLOAD_BYTES:,} are accepted"
        )
    data = bytes(data)
    width, height = image_header_size(data)
    if width * height > MAX_UPLOAD_PIXELS:
        raise DataError(
            f"upload: the image has {width}x{height} pixels; at most {MAX_UPLOAD_PIXELS:,} are accepted"
        )
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as img:
            # Pillow's own reading of the header must agree before any pixel is decoded
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise DataError(
                    f"upload: the image has {img.width}x{img.height} pixels; at most "
                    f"{MAX_UPLOAD_PIXELS:,} are accepted"
                )
            img = img.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise DataError(_UNREADABLE) from None
    array = array[None] if c == 1 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).unsqueeze(0)


__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "decode_upload", "image_header_size"]
