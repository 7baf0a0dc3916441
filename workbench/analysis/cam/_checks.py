"""Input checks shared by the CAM modules (private): tensors, maps, fractions, targets, names.

Every check raises a one-line :class:`~workbench.analysis._common.AnalysisError` naming the argument.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from workbench.analysis._common import AnalysisError, check_images, check_label_range, check_labels


def nanmean(values: np.ndarray) -> float:
    """Mean of the finite-or-infinite (non-NaN) entries; NaN when there are none."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else math.nan


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (also when ``name`` ends in ``_x``), else ``""``."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if not close:
        close = [k for k in known if name.endswith("_" + k) or name.startswith(k + "_")][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def as_tensor(value: object, name: str) -> torch.Tensor:
    """``value`` (tensor or numpy array) as a detached tensor on its own device."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value.detach()
    raise AnalysisError(f"{name}: expected a tensor or numpy array, got {type(value).__name__}")


def check_images4d(images: object) -> torch.Tensor:
    """``images`` as a float tensor ``(N, C, H, W)``."""
    images = check_images(images)
    if images.ndim != 4:
        raise AnalysisError(f"images: expected a float tensor (N, C, H, W), got shape {tuple(images.shape)}")
    return images


def check_labels_cpu(labels: object, n: int, name: str = "labels") -> torch.Tensor:
    """``labels`` as an int64 CPU tensor ``(n,)`` (a CUDA tensor is copied to the host)."""
    return check_labels(labels, n, name).cpu()


def check_maps(maps: object, n: int, size: tuple[int, int], name: str) -> torch.Tensor:
    """``maps`` as float32 CPU ``(N, H, W)``; ``(N, 1, H, W)`` is accepted."""
    t = as_tensor(maps, name)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] != n or tuple(t.shape[1:]) != size:
        raise AnalysisError(
            f"{name}: expected maps of shape ({n}, {size[0]}, {size[1]}), got {tuple(t.shape)}"
        )
    if t.dtype == torch.bool or t.is_complex():
        raise AnalysisError(f"{name}: expected real-valued maps, got dtype {t.dtype}")
    t = t.to("cpu", torch.float32)
    if not torch.isfinite(t).all():
        raise AnalysisError(f"{name}: contains NaN or infinite values")
    return t


def check_map_stack(maps: object, name: str) -> torch.Tensor:
    """``maps`` ``(N, H, W)`` or ``(N, 1, H, W)`` as float ``(N, H, W)``, its own size taken as given."""
    t = as_tensor(maps, name)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] == 0:
        raise AnalysisError(
            f"{name}: expected a non-empty stack of maps (N, H, W), got shape {tuple(t.shape)}"
        )
    return check_maps(t, int(t.shape[0]), (int(t.shape[1]), int(t.shape[2])), name)


def check_fraction(value: object, name: str) -> float:
    """``value`` as a float in ``(0, 1]``."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnalysisError(f"{name}: expected a number in (0, 1], got {value!r}") from None
    if not 0.0 < out <= 1.0:
        raise AnalysisError(f"{name}: expected a number in (0, 1], got {value!r}")
    return out


def explicit_targets(target: object, n: int, k: int | None, known_modes: Sequence[str]) -> torch.Tensor:
    """An int or a per-image tensor/array ``(n,)`` (any device) as an int64 CPU tensor of classes."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t = torch.full((n,), int(target), dtype=torch.int64)
    elif isinstance(target, (torch.Tensor, np.ndarray, list, tuple)):
        t = check_labels_cpu(target, n, "target")
    else:
        raise AnalysisError(
            f"target: expected a class index, a tensor ({n},) or one of {', '.join(known_modes)}, "
            f"got {target!r}"
        )
    if k is not None:
        check_label_range(t, k, "target")
    return t


def check_class_names(class_names: object, k: int | None = None) -> list[str] | None:
    """``class_names`` as a list of strings (``k`` of them when ``k`` is known), or None."""
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise AnalysisError(f"class_names: expected a list of strings, got {type(class_names).__name__}")
    names = [str(c) for c in class_names]
    if k is not None and len(names) != k:
        raise AnalysisError(f"class_names: expected {k} names, one per class, got {len(names)}")
    return names
