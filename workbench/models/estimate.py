"""Model size from the architecture alone, before anything is allocated.

:func:`estimate_model` follows each family's constructor layer by layer and adds up the
parameters (float32), the buffers (BatchNorm running statistics, float32, plus the int64 batch
counter) and the modules (about :data:`MODULE_OVERHEAD_BYTES` of Python objects each). It does
arithmetic only, so ``mlp`` with ``hidden=[100000, 100000]`` or a ResNet of depth a million costs
microseconds to size. :func:`check_model_memory` compares the estimate with the memory budget of
:mod:`workbench.data.limits`; :func:`workbench.models.create_model` calls it before building.
Parameter counts are exact (the tests compare them with the built models of every zoo name).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.data.limits import MemoryBudgetError, over_budget
from workbench.models.errors import (
    ModelError,
    check_float,
    check_int,
    check_int_tuple,
    check_positive_float,
)
from workbench.models.layers import plan_strides

#: Python-side bytes of one ``nn.Module`` with its parameter objects (measured: about 2.4 kB)
MODULE_OVERHEAD_BYTES = 4096
_FLOAT = 4
_INT64 = 8


@dataclass(frozen=True)
class ModelEstimate:
    """``params``: parameter count; ``buffer_bytes``: bytes of buffers; ``modules``: module count;
    ``bytes``: the estimated memory of the built model (parameters, buffers, module objects)."""

    params: int
    buffer_bytes: int
    modules: int

    @property
    def bytes(self) -> int:
        """``4 * params + buffer_bytes + MODULE_OVERHEAD_BYTES * modules``."""
        return _FLOAT * self.params + self.buffer_bytes + MODULE_OVERHEAD_BYTES * self.modules


class _Tally:
    def __init__(self) -> None:
        self.params = 0
        self.buffers = 0
        self.modules = 1  # the model itself

    def module(self, n: int = 1) -> None:
        self.modules += n

    def conv(self, cin: int, cout: int, k: int, groups: int = 1, bias: bool = False) -> None:
        self.params += cout * (cin // groups) * k * k + (cout if bias else 0)
        self.modules += 1

    def bn(self, c: int) -> None:
        self.params += 2 * c
        self.buffers += _FLOAT * 2 * c + _INT64
        self.modules += 1

    def linear(self, cin: int, cout: int, bias: bool = True) -> None:
        self.params += cin * cout + (cout if bias else 0)
        self.modules += 1

    def layernorm(self, d: int) -> None:
        self.params += 2 * d
        self.modules += 1

    def repeat(self, times: int, build: Callable[[_Tally], None]) -> None:
        """Add ``times`` copies of what ``build`` adds (counted once, multiplied: no loop over depth)."""
        if times <= 0:
            return
        one = _Tally()
        one.modules = 0
        build(one)
        self.params += times * one.params
        self.buffers += times * one.buffers
        self.modules += times * one.modules

    def result(self) -> ModelEstimate:
        return ModelEstimate(self.params, self.buffers, self.modules)


def _mlp(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    widths = check_int_tuple("hidden", kw.get("hidden", (256, 128)))
    p = check_float("dropout", kw.get("dropout", 0.0), 0.0, 1.0, high_inclusive=False)
    batchnorm = bool(kw.get("batchnorm", False))
    prev = cin * size * size
    t.module(4)  # layers, pool, drop, (flatten)
    for i, width in enumerate(widths):
        t.module(2 + (1 if i > 0 and p > 0 else 0))  # Sequential, ReLU, Dropout
        t.linear(prev, width, bias=not batchnorm)
        if batchnorm:
            t.bn(width)
        prev = width
    t.linear(prev, nc)


def _cnn(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    widths = check_int_tuple("channels", kw.get("channels", (16, 32, 64)))
    convs = check_int("convs_per_stage", kw.get("convs_per_stage", 2))
    check_float("dropout", kw.get("dropout", 0.0), 0.0, 1.0, high_inclusive=False)
    strides = plan_strides(size, [1] + [2] * (len(widths) - 1))
    prev = cin
    t.module(3)
    for width, stride in zip(widths, strides, strict=True):
        t.module(1 + (stride == 2))
        t.module(2)  # ConvBNAct, ReLU
        t.conv(prev, width, 3)
        t.bn(width)
        prev = width

        def conv_bn(u: _Tally, width: int = width) -> None:
            u.module(2)
            u.conv(width, width, 3)
            u.bn(width)

        t.repeat(convs - 1, conv_bn)
    t.linear(prev, nc)


def _resnet(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    depth = check_int("depth", kw.get("depth", 20), minimum=8)
    if (depth - 2) % 6:
        raise ModelError(f"depth={depth}: expected 6n+2 (8, 14, 20, 32, 44, 56, 110, ...)")
    width = check_int("width", kw.get("width", 1))
    channels = kw.get("channels")
    widths = (
        tuple(c * width for c in (16, 16, 32, 64))
        if channels is None
        else check_int_tuple("channels", channels, length=4)
    )
    n = (depth - 2) // 6
    strides = plan_strides(size, [1, 2, 2])
    t.conv(cin, widths[0], 3)
    t.bn(widths[0])
    t.module(3)  # relu, pool, and the stage containers below
    prev = widths[0]
    for planes, stride in zip(widths[1:], strides, strict=True):
        t.module(1)

        def block(u: _Tally, cin: int, planes: int = planes, stride: int = 1) -> None:
            u.module(4)  # block, relu1, relu2, downsample (Identity or Sequential)
            u.conv(cin, planes, 3)
            u.bn(planes)
            u.conv(planes, planes, 3)
            u.bn(planes)
            if stride != 1 or cin != planes:
                u.conv(cin, planes, 1)
                u.bn(planes)

        block(t, prev, planes, stride)
        t.repeat(n - 1, lambda u, planes=planes: block(u, planes, planes))
        prev = planes
    t.linear(prev, nc)


def _wrn(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    depth = check_int("depth", kw.get("depth", 16), minimum=10)
    if (depth - 4) % 6:
        raise ModelError(f"depth={depth}: expected 6n+4 (10, 16, 22, 28, 40, ...)")
    k = check_int("widen_factor", kw.get("widen_factor", 1))
    check_float("dropout", kw.get("dropout", 0.0), 0.0, 1.0, high_inclusive=False)
    n = (depth - 4) // 6
    widths = (16, 16 * k, 32 * k, 64 * k)
    strides = plan_strides(size, [1, 2, 2])
    t.conv(cin, widths[0], 3)
    prev = widths[0]
    for planes, stride in zip(widths[1:], strides, strict=True):
        t.module(1)

        def block(u: _Tally, cin: int, planes: int = planes, stride: int = 1) -> None:
            u.module(4)  # block, relu1, relu2, drop
            u.bn(cin)
            u.conv(cin, planes, 3)
            u.bn(planes)
            u.conv(planes, planes, 3)
            if not (cin == planes and stride == 1):
                u.conv(cin, planes, 1)

        block(t, prev, planes, stride)
        t.repeat(n - 1, lambda u, planes=planes: block(u, planes, planes))
        prev = planes
    t.bn(prev)
    t.module(2)
    t.linear(prev, nc)


def _vgg(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    from workbench.models.vgg import VGG_CONFIGS

    depth = kw.get("depth", 8)
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or depth not in VGG_CONFIGS:
        raise ModelError(f"depth={depth!r}: expected one of {', '.join(map(str, VGG_CONFIGS))}")
    scale = check_positive_float("width", kw.get("width", 1.0))
    plan_strides(size, [2, 2, 2])
    prev = cin
    t.module(4)  # down0..down2, pool
    for block in VGG_CONFIGS[depth]:
        t.module(1)
        for c in block:
            out = max(1, round(c * scale))
            t.conv(prev, out, 3, bias=True)
            t.bn(out)
            t.module(1)
            prev = out
    t.linear(prev, nc)


def _mobilenetv2(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    from workbench.models.mobilenetv2 import GROUPS

    wm = check_positive_float("width_mult", kw.get("width_mult", 0.5))
    e_default = check_int("expand_ratio", kw.get("expand_ratio", 6))
    last_channel = kw.get("last_channel")
    last = (
        (int(1280 * wm) if wm > 1.0 else 1280)
        if last_channel is None
        else check_int("last_channel", last_channel)
    )
    plan_strides(size, [2] + [s for _, _, _, s in GROUPS])
    stem = int(32 * wm)
    if stem < 1 or int(16 * wm) < 1:
        raise ModelError(f"width_mult={wm!r}: too small, every group needs at least one channel (>= 0.0625)")
    t.module(3)
    t.conv(cin, stem, 3)
    t.bn(stem)
    prev = stem
    t.module(1)
    for e, c, n, _ in GROUPS:
        planes = int(c * wm)
        t.module(1)
        for _ in range(n):
            hidden = prev * (e_default if e is None else e)
            t.module(4)  # block, Sequential, two ReLUs
            t.conv(prev, hidden, 1)
            t.bn(hidden)
            t.conv(hidden, hidden, 3, groups=hidden)
            t.bn(hidden)
            t.conv(hidden, planes, 1)
            t.bn(planes)
            prev = planes
    t.module(2)
    t.conv(prev, last, 1)
    t.bn(last)
    t.linear(last, nc)


def _vit(t: _Tally, nc: int, cin: int, size: int, kw: dict[str, Any]) -> None:
    from workbench.models.vit import default_patch_size

    patch = kw.get("patch_size")
    p = default_patch_size(size) if patch is None else check_int("patch_size", patch)
    if size % p:
        raise ModelError(f"patch_size={p}: expected a divisor of image_size={size}")
    dim = check_int("dim", kw.get("dim", 64))
    depth = check_int("depth", kw.get("depth", 6))
    heads = check_int("heads", kw.get("heads", 4))
    if dim % heads:
        raise ModelError(f"heads={heads}: expected a divisor of dim={dim}")
    ratio = check_positive_float("mlp_ratio", kw.get("mlp_ratio", 2.0))
    check_float("dropout", kw.get("dropout", 0.0), 0.0, 1.0, high_inclusive=False)
    if not math.isfinite(ratio):
        raise ModelError(f"mlp_ratio={ratio!r}: expected a finite number > 0")
    hidden = max(1, round(dim * ratio))
    grid = size // p
    t.conv(cin, dim, p, bias=True)
    t.params += grid * grid * dim
    t.module(3)  # pos_drop, blocks, pool

    def block(u: _Tally) -> None:
        u.module(8)  # block, attn, softmax, drops, mlp Sequential, GELU
        u.layernorm(dim)
        u.linear(dim, 3 * dim)
        u.linear(dim, dim)
        u.layernorm(dim)
        u.linear(dim, hidden)
        u.linear(hidden, dim)

    t.repeat(depth, block)
    t.layernorm(dim)
    t.linear(dim, nc)


_ESTIMATORS = {
    "mlp": _mlp,
    "cnn": _cnn,
    "resnet": _resnet,
    "wrn": _wrn,
    "vgg": _vgg,
    "mobilenetv2": _mobilenetv2,
    "vit": _vit,
}


def estimate_family(
    family: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict[str, Any]
) -> ModelEstimate | None:
    """The :class:`ModelEstimate` of ``family`` built with ``kwargs`` (all of them, pinned ones
    included); ``None`` for a family without an estimator. Invalid values raise the same
    :class:`ModelError` the constructor would."""
    fn = _ESTIMATORS.get(family)
    if fn is None:
        return None
    tally = _Tally()
    nc = check_int("num_classes", num_classes)
    cin = check_int("in_channels", in_channels)
    size = check_int("image_size", image_size)
    fn(tally, nc, cin, size, kwargs)
    return tally.result()


def describe_kwargs(kwargs: dict[str, Any], limit: int = 120) -> str:
    """``"hidden=[100000, 100000], dropout=0.1"``, cut to ``limit`` characters."""
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def memory_problem(estimate: ModelEstimate) -> str | None:
    """``None`` when ``estimate`` fits the memory budget, else the reason (one line)."""
    try:
        problem = over_budget(estimate.bytes)
    except MemoryBudgetError as err:
        raise ModelError(str(err)) from None
    if problem is None:
        return None
    n = estimate.params
    count = f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"
    return f"{count} parameters, {problem}"
