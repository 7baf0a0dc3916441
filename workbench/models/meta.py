"""Trying a model out without paying for it: builds on PyTorch's ``meta`` device (shapes only,
nothing allocated, weight initialisation skipped) and one forward pass of a ``(1, C, H, W)``
input that checks the model returns logits.

The registry sizes architectures without an estimator this way, and
:mod:`workbench.validate` uses it to refuse, at config time, a model that cannot be built for a
dataset's shape or whose forward pass fails on it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from workbench.errors import one_line
from workbench.models.errors import ModelError
from workbench.models.taps import training_mode

#: in-place initialisers and value-only in-place ops: on meta tensors they have nothing to do, and
#: some of them would import torch's compiler stack (seconds) just to do nothing
_VALUE_ONLY_OPS = frozenset(
    "normal_ uniform_ fill_ zero_ erfinv_ mul_ add_ sub_ div_ clamp_ exponential_ bernoulli_ random_ "
    "log_normal_ cauchy_ geometric_ trunc_normal_ kaiming_normal_ kaiming_uniform_ xavier_uniform_ "
    "xavier_normal_ constant_ ones_ zeros_ orthogonal_ dirac_ eye_ sparse_".split()
)


class SkipInitOnMeta(TorchFunctionMode):
    """Inside the block, weight initialisers and value-only in-place ops called on meta tensors
    return at once (there are no values to initialise); everything else runs as usual."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if (
            getattr(func, "__name__", "") in _VALUE_ONLY_OPS
            and isinstance(target, torch.Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **kwargs)


def on_meta_only(err: BaseException) -> bool:
    """Whether ``err`` is an operation the meta device cannot do (a kernel without a meta
    implementation, reading a value): the same call may well work on real tensors."""
    return isinstance(err, NotImplementedError) or "meta" in str(err).lower()


def check_forward(
    model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, *, name: str | None = None
) -> None:
    """Run ``model`` on one input of ``input_shape`` (channels, height, width) in eval mode
    (restored after) without gradients, on the device of its parameters (``meta`` for a model
    built there: nothing is computed), and check it returns logits ``(1, num_classes)``.

    Raises:
        ModelError: one line naming ``name`` (else the model's class), the input shape and what
            went wrong (the forward's own first line, or the shape it returned); the forward's own
            exception is its ``__cause__`` (see :func:`on_meta_only`).
    """
    who = name if name is not None else type(model).__name__
    ref = next((t for t in [*model.parameters(), *model.buffers()]), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    x = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    shown = "x".join(str(d) for d in input_shape)
    try:
        with training_mode(model, False), torch.no_grad():
            out = model(x)
    except Exception as err:  # noqa: BLE001 - a user model may raise anything; reported in one line
        raise ModelError(
            f"model {who!r}: fails a forward pass on a {shown} input ({one_line(err, typed=True)})"
        ) from err
    expected = (1, num_classes)
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"model {who!r}: returns {type(out).__name__} from a forward pass on a {shown} input, expected "
            f"a logits tensor of shape {expected}"
        )
    if tuple(out.shape) != expected:
        raise ModelError(
            f"model {who!r}: returns shape {tuple(out.shape)} from a forward pass on a {shown} input, "
            f"expected logits of shape {expected} (one score per class)"
        )


__all__ = ["SkipInitOnMeta", "check_forward", "on_meta_only"]
