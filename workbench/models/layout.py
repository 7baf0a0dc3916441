"""Memory layout of convolutional models: running them channels-last (NHWC).

oneDNN (CPU) and cuDNN pick their convolution kernels from the layout of the input and weight
tensors. On the CPU, channels-last is markedly faster for the zoo's small conv nets (a training
step of ``resnet20`` or ``mobilenetv2`` about 1.5-2x, see ``docs/benchmarks.md``); the values
match an NCHW run up to float rounding, not bitwise. The engine and the analyses use these helpers
with ``memory_format="auto"``: channels-last on the CPU for models that contain a ``Conv2d``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: accepted values of a ``memory_format`` setting
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def has_conv2d(*modules: nn.Module | None) -> bool:
    """True when any of ``modules`` contains an ``nn.Conv2d``."""
    return any(isinstance(m, nn.Conv2d) for mod in modules if mod is not None for m in mod.modules())


def wants_channels_last(memory_format: str, device: torch.device | str, *modules: nn.Module | None) -> bool:
    """Resolve a ``memory_format`` setting (one of :data:`MEMORY_FORMATS`) to channels-last or not.

    ``"auto"`` means channels-last on the CPU when a module contains a 2-D convolution (on CUDA
    the gain depends on the GPU and precision, so ``auto`` leaves the layout alone there).
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if memory_format == "contiguous":
        return False
    if memory_format == "channels_last":
        return True
    return torch.device(device).type == "cpu" and has_conv2d(*modules)


def as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels-last layout (same values); any other tensor unchanged."""
    if x.ndim == 4 and not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def input_layout(enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function to apply to each input batch: :func:`as_channels_last` when ``enabled``, else
    the identity."""
    return as_channels_last if enabled else _unchanged


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def channels_last(*modules: nn.Module | None, enabled: bool = True) -> Iterator[bool]:
    """Hold every 4-D parameter and buffer of ``modules`` in channels-last layout inside the block.

    Tensors are swapped through ``.data`` so ``nn.Parameter`` objects (and an optimizer holding
    them) stay the same; on exit each swapped tensor is converted back to the default layout
    *with its current values*, so training inside the block keeps its updates. Yields whether
    channels-last was asked for. With ``enabled=False`` nothing happens.
    """
    swapped: list[torch.Tensor] = []
    if enabled:
        seen: set[int] = set()
        for mod in modules:
            if mod is None:
                continue
            for t in [*mod.parameters(), *mod.buffers()]:
                if id(t) in seen or t.ndim != 4 or t.is_contiguous(memory_format=torch.channels_last):
                    continue
                seen.add(id(t))
                t.data = t.data.contiguous(memory_format=torch.channels_last)
                swapped.append(t)
    try:
        yield enabled
    finally:
        for t in swapped:
            t.data = t.data.contiguous()
