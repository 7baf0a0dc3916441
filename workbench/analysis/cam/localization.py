"""Localization of maps against known objects: energy-based pointing game, GT-known localization,
context reliance."""

from __future__ import annotations

import numpy as np
import torch

from workbench.analysis._common import AnalysisError
from workbench.analysis.cam import metrics
from workbench.analysis.cam._checks import as_tensor, check_class_names, check_fraction, check_map_stack
from workbench.analysis.cam.results import LocalizationResult

__all__ = ["check_objects", "localization_metrics"]


def check_objects(
    masks: object, boxes: object, n: int, size: tuple[int, int]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``masks`` as a bool CPU tensor ``(n, H, W)`` and ``boxes`` as float64 CPU ``(n, 4)`` (each or None)."""
    h, w = size
    mask_t = box_t = None
    if masks is not None:
        mask_t = as_tensor(masks, "masks").cpu()
        if mask_t.dtype != torch.bool or tuple(mask_t.shape) != (n, h, w):
            raise AnalysisError(
                f"masks: expected a bool tensor of shape ({n}, {h}, {w}), "
                f"got {mask_t.dtype} {tuple(mask_t.shape)}"
            )
    if boxes is not None:
        box_t = as_tensor(boxes, "boxes").cpu()
        if tuple(box_t.shape) != (n, 4) or box_t.dtype == torch.bool:
            raise AnalysisError(
                f"boxes: expected a numeric tensor of shape ({n}, 4), got {tuple(box_t.shape)}"
            )
        box_t = box_t.to(torch.float64)
    return mask_t, box_t


def localization_metrics(
    maps: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray | None = None,
    boxes: torch.Tensor | np.ndarray | None = None,
    *,
    threshold: float = 0.2,
    component: str = "largest",
    iou_threshold: float = 0.5,
    class_names: list[str] | None = None,
) -> LocalizationResult:
    """Localization of maps ``(N, H, W)`` against object ``masks`` (bool ``(N, H, W)``) and/or ``boxes``
    (``(N, 4)`` pixel boxes ``(x0, y0, x1, y1)``, exclusive ends; from the masks when not given).

    Energy-based pointing game (Wang et al. 2020, Score-CAM, sec. 5.2): share of the map's
    non-negative total inside the box; with masks also inside the mask, and context reliance = the
    share outside it. GT-known localization (Zhou et al. 2016; Choe et al. 2020): threshold each map
    at ``threshold`` times its maximum, take the box of the largest 8-connected component
    (``component="largest"``) or of the whole region (``"all"``), count it correct when its IoU with
    the true box is ``>= iou_threshold``. Inputs may live on any device. Returns a
    :class:`LocalizationResult`.
    """
    m = check_map_stack(maps, "maps").to(torch.float64)
    n, h, w = (int(s) for s in m.shape)
    thr = check_fraction(threshold, "threshold")
    iou_thr = check_fraction(iou_threshold, "iou_threshold")
    if component not in ("largest", "all"):
        raise AnalysisError(f"component: unknown {component!r}; known: largest, all")
    if masks is None and boxes is None:
        raise AnalysisError("masks: localization needs object masks or boxes, got neither")
    names = check_class_names(class_names)
    mask_t, box_t = check_objects(masks, boxes, n, (h, w))
    if box_t is None:
        assert mask_t is not None
        box_t = metrics.tight_boxes(mask_t)

    in_box = metrics.energy_share(m, metrics.box_masks(box_t, h, w))
    in_mask = None if mask_t is None else metrics.energy_share(m, mask_t)
    peak = m.reshape(n, -1).amax(dim=1).view(n, 1, 1)
    region = (m >= thr * peak) & (peak > 0)
    if component == "largest":
        region = metrics.largest_component(region)
    pred_boxes = metrics.tight_boxes(region)
    iou = metrics.box_iou(pred_boxes, box_t)
    return LocalizationResult(
        threshold=thr,
        component=component,
        iou_threshold=iou_thr,
        energy_in_box=in_box.numpy(),
        energy_in_mask=None if in_mask is None else in_mask.numpy(),
        context_reliance=None if in_mask is None else (1.0 - in_mask).numpy(),
        predicted_boxes=pred_boxes.numpy(),
        true_boxes=box_t.numpy(),
        box_iou=iou.numpy(),
        correct=(iou >= iou_thr).numpy(),
        class_names=names,
        params={
            "threshold": thr,
            "component": component,
            "iou_threshold": iou_thr,
            "masks": masks is not None,
            "boxes": boxes is not None,
        },
    )
