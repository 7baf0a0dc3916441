"""CAM views of comparisons with extra models and without labels (maps from real compare_cams calls)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench import viz
from workbench.analysis.cam import compare_cams


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def test_cam_grid_has_one_column_per_model_and_names_them():
    x = torch.randn(3, 1, 6, 6)
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[:, 1:4, 1:4] = True
    out = compare_cams(
        _net(0), _net(1), x, extra={"scratch": _net(2)}, target="teacher", names=("big", "small"),
        layers={"big": "1", "small": "1", "scratch": "1"}, class_names=["a", "b", "c"], masks=masks,
    )  # fmt: skip
    fig = viz.cam_grid(out, indices=[0, 2])
    assert [t.type for t in fig.data] == ["heatmap"] * 6
    np.testing.assert_array_equal(fig.data[2].z, out.extra["scratch"].maps[0])
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("big: map ") and titles[1].startswith("small: map ")
    r = out.agreement("big", "scratch").pearson[0]
    assert titles[2].startswith("scratch: map ") and (f"r={r:.2f}" in titles[2] or not np.isfinite(r))
    assert any(name in titles[0] for name in ("a", "b", "c"))  # class names from the comparison
    bars = viz.localization_summary(out)
    assert [t.name for t in bars.data] == ["big", "small", "scratch"]
    agreement = viz.cam_class_agreement(out)
    assert agreement.layout.xaxis.title.text == "teacher's predicted class"
    with_images = viz.cam_grid(out, x, max_images=1)
    assert [t.type for t in with_images.data] == ["image"] + ["image", "heatmap"] * 3
    assert with_images.layout.annotations[0].text == "#0"  # no labels: no true class in the title
