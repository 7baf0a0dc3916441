"""Model size and cost: parameter counts and FLOPs per sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from workbench.models.errors import ModelError
from workbench.models.taps import _check_shape, _dummy, training_mode


@dataclass(frozen=True)
class ModelInfo:
    """``params`` (all parameters), ``trainable_params`` (``requires_grad``) and ``flops``: the
    floating-point operations of one forward pass per sample, counted as 2 x the
    multiply-accumulates of convolutions, linear layers and matrix products (biases,
    normalisation and activations not counted — the convention of most papers' FLOP tables)."""

    params: int
    trainable_params: int
    flops: int


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs per sample of ``model`` on one input of ``input_shape`` (channels, height, width):
    ``2 * MACs`` of every conv, linear and matmul op the forward pass dispatches, measured with
    PyTorch's operator-level ``FlopCounterMode`` on a batch of 2 in eval mode (restored after)."""
    shape = _check_shape(input_shape)
    x = _dummy(model, shape)
    with training_mode(model, False), torch.inference_mode():
        counter = FlopCounterMode(display=False)
        try:
            with counter:
                model(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelError(
                f"input_shape={shape}: a forward pass of {type(model).__name__} failed: {first}"
            ) from err
    return int(counter.get_total_flops()) // x.shape[0]


def model_info(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelInfo:
    """Parameter counts and FLOPs per sample (see :class:`ModelInfo`) of ``model`` on inputs of
    ``input_shape`` = (channels, height, width). Shared parameters are counted once."""
    params = list(model.parameters())
    return ModelInfo(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        flops=count_flops(model, input_shape),
    )
