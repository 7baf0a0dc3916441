"""Private helpers shared by the model-level analyses.

Input validation, devices, batching, training-mode bookkeeping, batched logits and the
probability divergences the agreement and difficulty analyses share. Nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from workbench.devices import DeviceError
from workbench.devices import resolve_device as _resolve
from workbench.metrics import kl_rows  # noqa: F401  (re-exported for the analyses)
from workbench.models.copies import frozen_copy
from workbench.runtime import CancelToken, Tracker


class AnalysisError(ValueError):
    """An analysis input is wrong; the message is one line naming the argument and what was expected."""


# ---- validation ---------------------------------------------------------------------------------
def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Return ``images`` as a floating tensor with a batch dimension, or raise :class:`AnalysisError`."""
    if not isinstance(images, torch.Tensor):
        raise AnalysisError(f"{name}: expected a float tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim < 2 or images.shape[0] == 0:
        raise AnalysisError(f"{name}: expected a non-empty batch (N, ...), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise AnalysisError(f"{name}: expected a floating (normalized) tensor, got dtype {images.dtype}")
    return images


def check_labels(labels: object, n: int, name: str = "labels") -> torch.Tensor:
    """Return ``labels`` as an int64 tensor of shape ``(n,)``, or raise :class:`AnalysisError`."""
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor):
        raise AnalysisError(f"{name}: expected an int64 tensor of shape ({n},), got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise AnalysisError(f"{name}: expected integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise AnalysisError(f"{name}: expected shape ({n},), got {tuple(labels.shape)}")
    return labels.long()


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int ``>= minimum`` or raise :class:`AnalysisError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise AnalysisError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(value: object, name: str) -> float:
    """Return ``value`` as a finite float ``> 0`` or raise :class:`AnalysisError` naming ``name``."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnalysisError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(out) or out <= 0:
        raise AnalysisError(f"{name}: expected a positive finite number, got {value!r}")
    return out


def check_logits(logits: object, name: str, n: int | None = None, k: int | None = None) -> torch.Tensor:
    """Return ``logits`` (tensor or array) as a float64 CPU tensor ``(N, K)``; check its shape."""
    if isinstance(logits, np.ndarray):
        logits = torch.from_numpy(logits)
    if not isinstance(logits, torch.Tensor):
        raise AnalysisError(f"{name}: expected logits (N, K) as tensor or array, got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise AnalysisError(f"{name}: expected shape (N, K), N >= 1, K >= 2, got {tuple(logits.shape)}")
    if n is not None and logits.shape[0] != n:
        raise AnalysisError(f"{name}: expected {n} rows to match the other inputs, got {logits.shape[0]}")
    if k is not None and logits.shape[1] != k:
        raise AnalysisError(f"{name}: expected {k} classes to match the other logits, got {logits.shape[1]}")
    out = logits.detach().to("cpu", torch.float64)
    if not torch.isfinite(out).all():
        raise AnalysisError(f"{name}: contains NaN or infinite values")
    return out


def check_label_range(labels: torch.Tensor, k: int, name: str = "labels") -> None:
    """Raise :class:`AnalysisError` when a label falls outside ``[0, k)``."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        lo, hi = int(labels.min()), int(labels.max())
        raise AnalysisError(f"{name}: expected class indices in [0, {k}), got values in [{lo}, {hi}]")


def check_model(model: object, name: str, optional: bool = False) -> nn.Module | None:
    """Return ``model`` if it is an ``nn.Module`` (or ``None`` when ``optional``), else raise."""
    if model is None and optional:
        return None
    if not isinstance(model, nn.Module):
        expected = "a torch.nn.Module or None" if optional else "a torch.nn.Module"
        raise AnalysisError(f"{name}: expected {expected}, got {type(model).__name__}")
    return model


def check_memory_format(memory_format: object) -> str:
    """``memory_format`` if it is one of :data:`workbench.models.layout.MEMORY_FORMATS` (``auto``,
    ``channels_last``, ``contiguous``), else a one-line :class:`AnalysisError`."""
    from workbench.models.layout import MEMORY_FORMATS

    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    return str(memory_format)


def check_names(names: object, default: tuple[str, str] = ("teacher", "student")) -> tuple[str, str]:
    """``names`` as a pair of display strings (``None``: ``default``)."""
    if names is None:
        return default
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != 2:
        raise AnalysisError(f"names: expected a pair of display names, got {names!r}")
    return str(names[0]), str(names[1])


def check_class_names(class_names: object, k: int | None = None) -> list[str] | None:
    """``class_names`` as a list of strings (``None`` stays ``None``); at least ``k`` of them."""
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise AnalysisError(f"class_names: expected a list of names, got {type(class_names).__name__}")
    out = [str(c) for c in class_names]
    if k is not None and len(out) < k:
        raise AnalysisError(f"class_names: expected at least {k} names (one per class), got {len(out)}")
    return out


def new_tracker(progress: object, cancel: object, total: int, label: str) -> Tracker:
    """A :class:`workbench.runtime.Tracker`, with a wrong ``progress``/``cancel`` as :class:`AnalysisError`."""
    if progress is not None and not callable(progress):
        raise AnalysisError(
            f"progress: expected a callable progress(done, total, message), got {type(progress).__name__}"
        )
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise AnalysisError(f"cancel: expected a workbench.runtime.CancelToken, got {type(cancel).__name__}")
    return Tracker(progress, cancel, total=total, label=label)  # type: ignore[arg-type]


# ---- devices, batches, modes --------------------------------------------------------------------
def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without tensors."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device`, defaulting to the model's own device."""
    if device is None:
        return model_device(model)
    try:
        return _resolve(device, field="device")
    except DeviceError as err:
        raise AnalysisError(str(err)) from None


def working_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """An eval-mode, gradient-free copy of ``model`` on ``device`` without the caller's hooks
    (:func:`workbench.models.copies.frozen_copy`): every analysis computes on one."""
    return frozen_copy(model, device)


@contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Run the body with ``model`` on ``device``; move it back to where it was afterwards."""
    original = model_device(model)
    moved = original != device
    if moved:
        model.to(device)
    try:
        yield model
    finally:
        if moved:
            model.to(original)


@contextmanager
def preserved_modes(*models: nn.Module) -> Iterator[None]:
    """Record every submodule's ``training`` flag and restore each one exactly afterwards."""
    saved = [(m, m.training) for model in models for m in model.modules()]
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put the models in eval mode for the body; restore every submodule's flag afterwards."""
    with preserved_modes(*models):
        for model in models:
            model.eval()
        yield


def batch_slices(n: int, batch_size: int, min_size: int = 1) -> list[slice]:
    """Consecutive slices of ``batch_size`` covering ``range(n)``.

    A tail shorter than ``min_size`` is folded into the previous slice (so every slice holds at
    least ``min_size`` rows when ``n >= min_size``).
    """
    starts = list(range(0, n, batch_size))
    out = [slice(s, min(s + batch_size, n)) for s in starts]
    if len(out) > 1 and out[-1].stop - out[-1].start < min_size:
        tail = out.pop()
        out[-1] = slice(out[-1].start, tail.stop)
    return out


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    layout: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits of ``model`` on ``images`` in eval mode, batched, under ``inference_mode``.

    ``layout`` (e.g. :func:`workbench.models.as_channels_last`) is applied to each batch.
    Returns a tensor ``(N, K)`` on ``device``; the model's training flags are restored.
    """
    prep = layout or (lambda x: x)
    with on_device(model, device), eval_mode(model), torch.inference_mode():
        outs = [model(prep(images[sl].to(device))) for sl in batch_slices(len(images), batch_size)]
    logits = torch.cat(outs)
    if logits.ndim != 2:
        raise AnalysisError(f"model: expected logits of shape (N, K) from forward, got {tuple(logits.shape)}")
    return logits


def batched_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    tracker: Tracker | None = None,
    message: str = "",
) -> torch.Tensor:
    """Logits ``(N, K)`` of a working copy (already in eval mode on ``device``), batched under
    ``inference_mode``; ``tracker`` advances by one per batch and checks for a stop."""
    outs = []
    for sl in batch_slices(len(images), batch_size):
        if tracker is not None:
            tracker.check()
        with torch.inference_mode():
            outs.append(model(images[sl].to(device, non_blocking=True)))
        if tracker is not None:
            tracker.advance(message=message or None)
    logits = torch.cat(outs)
    if logits.ndim != 2:
        raise AnalysisError(f"model: expected logits of shape (N, K) from forward, got {tuple(logits.shape)}")
    return logits


def models_logits(
    models: Sequence[tuple[str, nn.Module]],
    images: torch.Tensor,
    batch_size: int,
    device: str | torch.device | None,
    progress: object,
    cancel: object,
    label: str,
) -> list[torch.Tensor]:
    """Logits ``(N, K)`` of each ``(role, model)`` on ``images``, in order: one eval working copy per
    model on its device (:func:`resolve_device`, :func:`working_copy`), batched under ``inference_mode``
    (:func:`batched_logits`) and dropped right after. One tracker named ``label`` runs over every batch
    of every model (progress messages ``"<label>: <role>"``) and checks ``cancel`` before each batch.
    The logits stay on each model's device."""
    track = new_tracker(progress, cancel, len(models) * len(batch_slices(len(images), batch_size)), label)
    track.start()
    logits = []
    for role, model in models:
        dev = resolve_device(model, device)
        copy_ = working_copy(model, dev)
        logits.append(batched_logits(copy_, images, batch_size, dev, track, f"{label}: {role}"))
        del copy_
    return logits


# ---- probabilities and divergences (float64) ----------------------------------------------------
def log_softmax_t(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)`` along the last dimension."""
    return torch.log_softmax(logits / temperature, dim=-1)


def js_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen–Shannon divergence ``½KL(p||m) + ½KL(q||m)``, ``m = (p+q)/2``; in ``[0, ln 2]``."""
    log_m = torch.logaddexp(log_p, log_q) - np.log(2.0)
    return 0.5 * kl_rows(log_p, log_m) + 0.5 * kl_rows(log_q, log_m)


def nanmean_by_class(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` over the samples of each class ``0..k-1`` (NaN where a class is absent).

    NaN entries of ``values`` are left out of their class mean.
    """
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    sums = np.bincount(labels[ok], weights=values[ok], minlength=k)
    counts = np.bincount(labels[ok], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
