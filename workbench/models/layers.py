"""Building blocks shared by the zoo: the global-average-pooling head, conv-BN-ReLU, stride
planning that keeps small inputs valid, and the usual initialisations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from workbench.models.errors import ModelError, check_int


class GlobalAvgPool(nn.Module):
    """Global average pooling and flatten: ``(B, C, H, W) -> (B, C)``.

    Its output is the penultimate embedding of a zoo conv net; with a linear head after it the
    class activation map of Zhou et al. (2016), ``CAM_k = sum_c W[k, c] * A_c``, averages to the
    logit exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ModelError(f"pool input of shape {tuple(x.shape)}: expected (B, C, H, W)")
        return x.mean(dim=(2, 3))


class TokenMeanPool(nn.Module):
    """Mean over tokens: ``(B, N, D) -> (B, D)`` (the transformer analogue of GAP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ModelError(f"pool input of shape {tuple(x.shape)}: expected (B, N, D)")
        return x.mean(dim=1)


class ConvBNAct(nn.Sequential):
    """``Conv2d(k, stride, padding=k//2, bias=False) -> BatchNorm2d -> ReLU`` (no in-place ops, so
    a captured output is never overwritten by a later layer)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


def plan_strides(image_size: int, wanted: Sequence[int], min_size: int = 4) -> list[int]:
    """Which of the ``wanted`` downsampling steps (2 = halve, 1 = keep) to take on ``image_size``.

    A step halves the map (``ceil(s / 2)``, as a stride-2 conv with padding 1 or a ceil-mode
    2x2 pool does) only while the map is at least ``min_size`` wide, so 8x8 inputs keep a
    2x2 final map instead of collapsing to 1x1 or failing. 28 and 32 keep the published strides.
    """
    size = check_int("image_size", image_size)
    out = []
    for s in wanted:
        if s == 2 and size >= min_size:
            out.append(2)
            size = math.ceil(size / 2)
        else:
            out.append(1)
    return out


def downsample_pool(stride: int) -> nn.Module:
    """A ceil-mode 2x2 max-pool for stride 2 (valid even on a 1x1 map), identity for stride 1."""
    return nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()


def init_conv_bn(model: nn.Module, linear_std: float | None = None) -> None:
    """He et al. (2015) initialisation as in the CIFAR ResNet/WRN/VGG references: conv weights
    ``N(0, 2 / (k*k*out_channels))`` (kaiming normal, fan-out), conv biases zero, norm layers
    weight 1 / bias 0; linear layers get ``N(0, linear_std)`` with zero bias when ``linear_std`` is
    given, else keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
