"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis, 2016, "Wide Residual Networks"):
pre-activation basic blocks, three groups of ``n = (d - 4) / 6`` blocks with widths
``16k, 32k, 64k``, a final BN-ReLU, global average pooling and a linear classifier (the
CIFAR layout used by the RepDistiller model zoo)."""

from __future__ import annotations

import torch
from torch import nn

from workbench.models.errors import ModelError, check_float, check_int
from workbench.models.layers import GlobalAvgPool, init_conv_bn, plan_strides


class WideBasic(nn.Module):
    """Pre-activation block: ``conv2(drop(relu2(bn2(conv1(relu1(bn1(x))))))) + shortcut``.

    The shortcut is ``x`` when width and stride are kept, else a 1x1 conv of the activated input.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.equal = in_planes == planes and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.drop(self.relu2(self.bn2(self.conv1(act)))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``.

    Stages: ``block1``, ``block2`` (pre-activation group outputs) and ``relu`` (the final
    BN-ReLU of ``block3``'s output, the map that is pooled). ``block2``/``block3`` halve the map
    (skipped below 4 pixels). The head is ``pool`` (GAP) and ``fc``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        depth: int = 16,
        widen_factor: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        in_channels = check_int("in_channels", in_channels)
        depth = check_int("depth", depth, minimum=10)
        if (depth - 4) % 6:
            raise ModelError(f"depth={depth}: expected 6n+4 (10, 16, 22, 28, 40, ...)")
        k = check_int("widen_factor", widen_factor)
        p = check_float("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        n = (depth - 4) // 6
        widths = (16, 16 * k, 32 * k, 64 * k)
        strides = plan_strides(image_size, [1, 2, 2])
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        prev = widths[0]
        for i, (planes, stride) in enumerate(zip(widths[1:], strides, strict=True), start=1):
            blocks = []
            for j in range(n):
                blocks.append(WideBasic(prev, planes, stride if j == 0 else 1, p))
                prev = planes
            self.add_module(f"block{i}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(prev)
        self.relu = nn.ReLU()
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(prev, num_classes)
        self.stages: list[str] = ["block1", "block2", "relu"]
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn(x))))
