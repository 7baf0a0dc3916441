"""MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks") for small images, in the CIFAR layout of the RepDistiller model zoo: a 3x3
stride-2 stem, the seven inverted-residual groups of the paper's Table 2 with expansion
``expand_ratio``, a 1x1 conv to ``last_channel``, global average pooling and a linear head."""

from __future__ import annotations

import torch
from torch import nn

from workbench.models.errors import ModelError, check_int, check_positive_float
from workbench.models.layers import ConvBNAct, GlobalAvgPool, init_conv_bn, plan_strides

#: (expansion, channels, repeats, stride) per group; expansion None means ``expand_ratio``
GROUPS: list[tuple[int | None, int, int, int]] = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """``1x1 expand -> BN -> ReLU -> 3x3 depthwise -> BN -> ReLU -> 1x1 project -> BN``, plus
    the input when stride is 1 and the width is kept (linear bottleneck, no final activation)."""

    def __init__(self, in_planes: int, planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == planes
        self.conv = nn.Sequential(
            nn.Conv2d(in_planes, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, planes, 1, 1, 0, bias=False),
            nn.BatchNorm2d(planes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 with widths ``int(c * width_mult)``; ``width_mult=0.5`` with
    ``expand_ratio=6`` is the "MobileNetV2" student of the CIFAR-100 distillation benchmarks.

    ``last_channel`` defaults to 1280 (``int(1280 * width_mult)`` above 1). The stem and groups
    3, 4 and 6 halve the map while it is at least 4 pixels wide (32 -> 2x2, 28 -> 2x2,
    8 -> 2x2). Stages: ``blocks.1``, ``blocks.2``, ``blocks.4``, ``blocks.6`` and ``conv2`` (the
    final 1x1 conv map); head ``pool`` (GAP) and ``fc``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        width_mult: float = 0.5,
        expand_ratio: int = 6,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        in_channels = check_int("in_channels", in_channels)
        wm = check_positive_float("width_mult", width_mult)
        t = check_int("expand_ratio", expand_ratio)
        if last_channel is None:
            last = int(1280 * wm) if wm > 1.0 else 1280
        else:
            last = check_int("last_channel", last_channel)
        strides = plan_strides(image_size, [2] + [s for _, _, _, s in GROUPS])
        stem = int(32 * wm)
        if stem < 1 or int(16 * wm) < 1:
            raise ModelError(
                f"width_mult={width_mult!r}: too small, every group needs at least one channel (>= 0.0625)"
            )
        self.conv1 = ConvBNAct(in_channels, stem, 3, strides[0])
        prev = stem
        groups = []
        for (e, c, n, _), stride in zip(GROUPS, strides[1:], strict=True):
            planes = int(c * wm)
            blocks = []
            for j in range(n):
                blocks.append(InvertedResidual(prev, planes, stride if j == 0 else 1, t if e is None else e))
                prev = planes
            groups.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*groups)
        self.conv2 = ConvBNAct(prev, last, 1)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(last, num_classes)
        self.stages: list[str] = ["blocks.1", "blocks.2", "blocks.4", "blocks.6", "conv2"]
        init_conv_bn(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        return self.fc(self.pool(self.conv2(self.blocks(self.conv1(x)))))
