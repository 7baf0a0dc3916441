"""A plain convolutional net: stages of conv-BN-ReLU with max-pool downsampling, GAP + linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.models.errors import check_float, check_int, check_int_tuple
from workbench.models.layers import ConvBNAct, GlobalAvgPool, downsample_pool, init_conv_bn, plan_strides


class PlainCNN(nn.Module):
    """``len(channels)`` stages; stage ``i`` is ``[2x2 max-pool if i > 0] + convs_per_stage x
    (3x3 conv -> BN -> ReLU)`` with ``channels[i]`` filters, then global average pooling and a
    linear classifier (``pool``, ``fc``).

    A pool is skipped once the map is narrower than 4 pixels, so 8x8 inputs end on a 2x2 map
    (28x28 -> 28, 14, 7; 32x32 -> 32, 16, 8; 8x8 -> 8, 4, 2 with the default three stages).
    Stages are ``features.0``, ``features.1``, ...; ``features.<last>`` is the map CAMs use.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (16, 32, 64),
        convs_per_stage: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        prev = check_int("in_channels", in_channels)
        widths = check_int_tuple("channels", channels)
        convs = check_int("convs_per_stage", convs_per_stage)
        p = check_float("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        strides = plan_strides(image_size, [1] + [2] * (len(widths) - 1))
        stages = []
        for width, stride in zip(widths, strides, strict=True):
            layers: list[nn.Module] = [downsample_pool(stride)] if stride == 2 else []
            for _ in range(convs):
                layers.append(ConvBNAct(prev, width))
                prev = width
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        self.pool = GlobalAvgPool()
        self.drop = nn.Dropout(p) if p > 0 else nn.Identity()
        self.fc = nn.Linear(prev, num_classes)
        self.stages: list[str] = [f"features.{i}" for i in range(len(widths))]
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        return self.fc(self.drop(self.pool(self.features(x))))
