"""A multilayer perceptron on flattened images (the smallest student of the zoo)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.models.errors import check_float, check_int, check_int_tuple


class MLP(nn.Module):
    """``flatten -> [Linear -> (BatchNorm1d) -> ReLU] x len(hidden) -> Linear``.

    Stages are the hidden activations ``layers.0``, ``layers.1``, ...; ``pool`` is a flatten (an
    identity on the ``(B, D)`` last hidden activation), ``fc`` the classifier. ``dropout`` is
    applied to the input of every hidden layer after the first and in front of ``fc``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        num_classes = check_int("num_classes", num_classes)
        in_features = check_int("in_channels", in_channels) * check_int("image_size", image_size) ** 2
        widths = check_int_tuple("hidden", hidden)
        p = check_float("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        blocks = []
        prev = in_features
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [nn.Dropout(p)] if (i > 0 and p > 0) else []
            layers.append(nn.Linear(prev, width, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            blocks.append(nn.Sequential(*layers))
            prev = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.Flatten(1)
        self.drop = nn.Dropout(p) if p > 0 else nn.Identity()
        self.fc = nn.Linear(prev, num_classes)
        self.stages: list[str] = [f"layers.{i}" for i in range(len(widths))]
        for block in self.layers:
            for m in block:
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` (or already flat ``(B, C*H*W)``) images -> ``(B, num_classes)`` logits."""
        return self.fc(self.drop(self.pool(self.layers(x.flatten(1)))))
