"""One place that turns a device setting into a :class:`torch.device`.

``auto`` picks CUDA when present, then Apple's MPS, else the CPU. An explicit device that this
machine does not have (``cuda`` without CUDA, ``cuda:3`` on a one-GPU box, ``mps`` off a Mac, a
misspelt name) is a one-line :class:`DeviceError` naming the field, never a traceback from deep
inside torch.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device setting names a device this machine does not have; one line naming the field."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device names usable here, e.g. ``['cpu', 'cuda', 'cuda:0']``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(spec: str | torch.device | None = "auto", *, field: str = "device") -> torch.device:
    """``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a :class:`torch.device`) as a
    device this machine has; ``None`` means ``auto``. Raises :class:`DeviceError` naming ``field``."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec.strip() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):
        shown = repr(spec)[:60]
        raise DeviceError(
            f"{field}: expected auto, cpu, cuda, cuda:N or mps, got {shown}"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{field}: {str(dev)!r} requested but CUDA is not available here; use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"{field}: {str(dev)!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"{field}: 'mps' requested but MPS is not available here; use auto or cpu")
        return dev
    raise DeviceError(f"{field}: device type {dev.type!r} is not supported; use auto, cpu, cuda or mps")


__all__ = ["DeviceError", "available_devices", "resolve_device"]
