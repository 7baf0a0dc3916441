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


#: the largest batch an inference pass (evaluation, teacher logits) runs at once on the CPU: larger
#: batches spill the activations out of the caches (on a 2-core AVX-512 CPU, batches of 1000 MNIST
#: images ran 1.8x (cnn_large) and 2.3x (cnn_small) slower per image than batches of 128); outputs
#: per sample do not depend on the chunking
CPU_INFERENCE_CHUNK = 128


def inference_chunk(device: torch.device | str, batch_size: int) -> int:
    """How many samples an inference pass on ``device`` should run at once when the configured
    batch is ``batch_size``: ``batch_size`` on accelerators, at most :data:`CPU_INFERENCE_CHUNK`
    on the CPU."""
    size = max(int(batch_size), 1)
    if torch.device(device).type == "cpu":
        return min(size, CPU_INFERENCE_CHUNK)
    return size


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 convolutions and matrix products in hardware, so that
    autocasting to bfloat16 is faster than float32: a CUDA device with bf16 support (Ampere and
    later), or a CPU with AVX-512 BF16 or AMX tiles (oneDNN's bf16 kernels). Emulated bf16
    (older CPUs, pre-Ampere GPUs, MPS) counts as not native."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # releases before the emulation flag: Ampere (sm_80) and later have bf16 units
            return torch.cuda.get_device_capability(dev)[0] >= 8
    if dev.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = [getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None)]
        return any(bool(check()) for check in checks if check is not None)
    return False


__all__ = [
    "CPU_INFERENCE_CHUNK",
    "DeviceError",
    "available_devices",
    "inference_chunk",
    "native_bfloat16",
    "resolve_device",
]
