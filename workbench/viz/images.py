"""Turning image batches into displayable ``uint8`` RGB arrays.

Analyses keep images normalized (``(x / 255 - mean) / std``, as the models see them). A view that
shows images takes them in one of three forms and calls :func:`to_display_images`:

* ``uint8`` ``(N, C, H, W)`` — raw pixels, e.g. ``dataset.test.images[idx]``;
* float ``(N, C, H, W)`` in ``[0, 1]`` — e.g. ``dataset.denormalize(x)``;
* float normalized ``(N, C, H, W)`` together with the dataset's ``mean`` and ``std``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.viz.theme import VizError

__all__ = ["to_display_images"]


def _as_array(images: object) -> np.ndarray:
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # a torch tensor, without importing torch
        return images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        return images
    raise VizError(f"images: expected a tensor or numpy array (N, C, H, W), got {type(images).__name__}")


def to_display_images(
    images: object,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Images as ``uint8`` RGB ``(N, H, W, 3)`` for ``go.Image``.

    Args:
        images: ``(N, C, H, W)`` (or one image ``(C, H, W)``) tensor or array with ``C`` 1 or 3:
            ``uint8`` pixels are used as they are; floats are taken to be in ``[0, 1]`` unless
            ``mean`` and ``std`` are given, in which case they are first un-normalized as
            ``x * std + mean`` per channel (the inverse of the datasets' normalization).
        mean, std: per-channel statistics in ``[0, 1]`` pixel units (``dataset.mean``/``dataset.std``);
            both or neither.

    Returns:
        ``uint8`` array ``(N, H, W, 3)``; single-channel images are repeated to grey RGB, floats are
        clipped to ``[0, 1]`` and rounded to ``0..255``.
    """
    arr = _as_array(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise VizError(f"images: expected shape (N, C, H, W) with C 1 or 3, got {tuple(arr.shape)}")
    if (mean is None) != (std is None):
        raise VizError("mean: give both mean and std (the dataset's statistics) or neither")
    c = arr.shape[1]
    if arr.dtype == np.uint8:
        if mean is not None:
            raise VizError("mean: uint8 images are raw pixels; mean/std apply to normalized float images")
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float64)
        if mean is not None and std is not None:
            m = np.asarray(mean, dtype=np.float64).reshape(-1)
            s = np.asarray(std, dtype=np.float64).reshape(-1)
            if m.size != c or s.size != c:
                raise VizError(
                    f"mean: expected {c} values per statistic (one per channel), got {m.size} and {s.size}"
                )
            x = x * s.reshape(1, c, 1, 1) + m.reshape(1, c, 1, 1)
        x = np.nan_to_num(x, nan=0.0)
        out = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise VizError(f"images: expected uint8 pixels or floating images, got dtype {arr.dtype}")
    out = np.transpose(out, (0, 2, 3, 1))
    if c == 1:
        out = np.repeat(out, 3, axis=3)
    return np.ascontiguousarray(out)
