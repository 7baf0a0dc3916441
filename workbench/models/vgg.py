"""VGG with batch normalisation for small images (Simonyan & Zisserman, 2015), in the CIFAR
layout of the RepDistiller model zoo: five conv blocks, 2x2 max-pools after the first three,
global average pooling and a single linear classifier (no large fully connected layers)."""

from __future__ import annotations

import torch
from torch import nn

from workbench.models.errors import ModelError, check_int, check_positive_float
from workbench.models.layers import GlobalAvgPool, downsample_pool, init_conv_bn, plan_strides

#: conv widths per block for each depth (depth = number of convs + 3, counting VGG's original
#: three fully connected layers): 8 = "S", 11 = "A", 13 = "B", 16 = "D", 19 = "E"
VGG_CONFIGS: dict[int, list[list[int]]] = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


class VGG(nn.Module):
    """VGG-``depth`` with BN; conv widths are scaled by ``width``.

    Each block is ``(3x3 conv -> BN -> ReLU) x k``; ``down0``..``down2`` are 2x2 max-pools
    between blocks 0-1, 1-2, 2-3 (skipped below 4 pixels: 32 -> 32, 16, 8, 4, 4;
    28 -> 28, 14, 7, 4, 4; 8 -> 8, 4, 2, 2, 2). Stages: ``block0`` .. ``block4``; head
    ``pool`` (GAP) and ``fc``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        depth: int = 8,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        prev = check_int("in_channels", in_channels)
        if depth not in VGG_CONFIGS:
            raise ModelError(f"depth={depth!r}: expected one of {', '.join(map(str, VGG_CONFIGS))}")
        scale = check_positive_float("width", width)
        strides = plan_strides(image_size, [2, 2, 2])
        for i, block in enumerate(VGG_CONFIGS[depth]):
            layers: list[nn.Module] = []
            for c in block:
                out = max(1, round(c * scale))
                layers += [nn.Conv2d(prev, out, 3, 1, 1), nn.BatchNorm2d(out), nn.ReLU()]
                prev = out
            self.add_module(f"block{i}", nn.Sequential(*layers))
            if i < 3:
                self.add_module(f"down{i}", downsample_pool(strides[i]))
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(prev, num_classes)
        self.stages: list[str] = [f"block{i}" for i in range(5)]
        init_conv_bn(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, num_classes)`` logits."""
        x = self.down0(self.block0(x))
        x = self.down1(self.block1(x))
        x = self.down2(self.block2(x))
        x = self.block4(self.block3(x))
        return self.fc(self.pool(x))
