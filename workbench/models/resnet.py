"""CIFAR-style residual networks (He et al., 2016, "Deep Residual Learning for Image
Recognition", Sec. 4.2), with the layout of the RepDistiller model zoo (Tian et al., 2020):
a 3x3 stem, three stages of ``n = (depth - 2) / 6`` basic blocks, 1x1-conv projection
shortcuts where the shape changes, global average pooling and a linear classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.models.errors import ModelError, check_int, check_int_tuple
from workbench.models.layers import GlobalAvgPool, init_conv_bn, plan_strides


class BasicBlock(nn.Module):
    """``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``: two 3x3 convs and a shortcut
    (identity, or 1x1 conv + BN when stride or width change). ``relu2:input`` is the
    pre-activation sum that some feature methods distill."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for small images.

    ``channels`` = (stem, stage1, stage2, stage3) widths; default ``width * (16, 16, 32, 64)``.
    ``resnet8x4`` / ``resnet32x4`` use (32, 64, 128, 256). Stages 2 and 3 halve the map
    (skipped below 4 pixels, so 8x8 inputs end on 2x2). Stages: ``layer1``, ``layer2``,
    ``layer3``; the head is ``pool`` (GAP) and ``fc``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        depth: int = 20,
        width: int = 1,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        in_channels = check_int("in_channels", in_channels)
        depth = check_int("depth", depth, minimum=8)
        if (depth - 2) % 6:
            raise ModelError(f"depth={depth}: expected 6n+2 (8, 14, 20, 32, 44, 56, 110, ...)")
        width = check_int("width", width)
        if channels is None:
            widths = tuple(c * width for c in (16, 16, 32, 64))
        else:
            widths = check_int_tuple("channels", channels, length=4)
        n = (depth - 2) // 6
        strides = plan_strides(image_size, [1, 2, 2])
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        prev = widths[0]
        for i, (planes, stride) in enumerate(zip(widths[1:], strides, strict=True), start=1):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(prev, planes, stride if j == 0 else 1))
                prev = planes
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(prev, num_classes)
        self.stages: list[str] = ["layer1", "layer2", "layer3"]
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))
