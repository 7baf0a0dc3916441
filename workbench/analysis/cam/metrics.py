"""Map-level kernels behind :mod:`workbench.analysis.cam`: comparisons, localization, curves.

Everything here works on whole batches of maps ``(N, H, W)`` at once (no per-image Python loop);
the public wrappers in the package validate inputs and convert to and from numpy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalize each map of ``(N, H, W)`` to ``[0, 1]``; a constant map becomes all zeros."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (flat - lo) / safe, torch.zeros_like(flat)).reshape(maps.shape)


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair of ``(N, P)`` tensors, in float64; NaN where a row is constant."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    ac = a - a.mean(dim=1, keepdim=True)
    bc = b - b.mean(dim=1, keepdim=True)
    den = torch.sqrt((ac * ac).sum(dim=1) * (bc * bc).sum(dim=1))
    num = (ac * bc).sum(dim=1)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.full_like(den, math.nan))


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of ``(N, P)``, ties getting their average rank (``rankdata`` 'average')."""
    n, p = x.shape
    values, order = torch.sort(x, dim=1, stable=True)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.cumsum(dim=1) - 1 + torch.arange(n, device=x.device).unsqueeze(1) * p
    pos = torch.arange(p, device=x.device, dtype=torch.float64).expand(n, p).reshape(-1)
    flat_group = group.reshape(-1)
    first = torch.full((n * p,), math.inf, dtype=torch.float64, device=x.device)
    first = first.scatter_reduce(0, flat_group, pos, reduce="amin")
    last = torch.full((n * p,), -math.inf, dtype=torch.float64, device=x.device)
    last = last.scatter_reduce(0, flat_group, pos, reduce="amax")
    ranked_sorted = ((first + last) / 2.0 + 1.0)[flat_group].reshape(n, p)
    return torch.empty_like(ranked_sorted).scatter_(1, order, ranked_sorted)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row pair: Pearson of the average ranks; NaN where a row is constant."""
    return pearson_rows(average_ranks(a), average_ranks(b))


def topk_masks(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool masks ``(N, P)`` marking each row's ``max(1, round(fraction * P))`` largest entries."""
    n, p = x.shape
    k = max(1, min(p, int(round(fraction * p))))
    idx = torch.topk(x, k, dim=1).indices
    return torch.zeros(n, p, dtype=torch.bool, device=x.device).scatter_(1, idx, True)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each row pair of bool masks ``(N, P)``; 0 where both are empty."""
    inter = (a & b).sum(dim=1).to(torch.float64)
    union = (a | b).sum(dim=1).to(torch.float64)
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(union))


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bool masks ``(N, H, W)`` of pixel boxes ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive."""
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, width)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, height, 1)
    x0, y0, x1, y1 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x0, y0, x1, y1)`` (exclusive ends) of bool masks ``(N, H, W)``; zeros if empty."""
    n, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = max(h, w) + 1
    x0 = torch.where(cols, xs, big).amin(dim=1)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1)
    y0 = torch.where(rows, ys, big).amin(dim=1)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float64)
    return torch.where(cols.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each row pair of boxes ``(N, 4)`` ``(x0, y0, x1, y1)``; 0 where the union is empty."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0.0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0.0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0.0) * (a[:, 3] - a[:, 1]).clamp_min(0.0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0.0) * (b[:, 3] - b[:, 1]).clamp_min(0.0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def _max3x3(x: torch.Tensor) -> torch.Tensor:
    """Maximum over each pixel's 3x3 neighbourhood of non-negative maps ``(N, H, W)`` (zero outside),
    as two separable passes of shifted maxima."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
    return torch.maximum(torch.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def largest_component(foreground: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component of each bool mask ``(N, H, W)`` (ties: the lowest label).

    Labels spread by iterated 3x3 neighbourhood maxima restricted to the foreground until nothing changes,
    so every pixel of a component ends with the component's largest pixel id; all images advance
    together. An empty mask stays empty.
    """
    n, h, w = foreground.shape
    # float32 holds the pixel ids exactly up to 2**24 pixels per image
    fg = foreground.to(torch.float32)
    ids = torch.arange(1, h * w + 1, device=foreground.device, dtype=torch.float32).view(1, h, w) * fg
    for _ in range(h * w):
        grown = _max3x3(ids) * fg
        if torch.equal(grown, ids):
            break
        ids = grown
    labels = ids.to(torch.int64).reshape(n, -1)
    offsets = torch.arange(n, device=foreground.device).unsqueeze(1) * (h * w + 1)
    counts = torch.bincount((labels + offsets).reshape(-1), minlength=n * (h * w + 1)).reshape(n, h * w + 1)
    counts[:, 0] = 0
    best = counts.argmax(dim=1)
    keep = (labels == best.unsqueeze(1)) & (best.unsqueeze(1) > 0)
    return keep.reshape(n, h, w)


def energy_share(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's non-negative total inside ``region`` ``(N, H, W)``; NaN for an all-zero map."""
    m = maps.to(torch.float64).clamp_min(0.0)
    total = m.sum(dim=(1, 2))
    inside = (m * region).sum(dim=(1, 2))
    return torch.where(
        total > 0,
        inside / torch.where(total > 0, total, torch.ones_like(total)),
        torch.full_like(total, math.nan),
    )


def trapezoid_auc(fractions: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Area under each row of ``scores`` ``(N, S)`` against ``fractions`` ``(S,)`` by the trapezoid rule."""
    f = fractions.to(torch.float64)
    s = scores.to(torch.float64)
    return ((s[:, 1:] + s[:, :-1]) * 0.5 * (f[1:] - f[:-1])).sum(dim=1)


def gaussian_blur(images: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images, replicate padding (RISE's insertion baseline)."""
    radius = kernel_size // 2
    t = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, kernel.numel())
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, kernel.numel(), 1)
    x = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kx, groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(x, ky, groups=c)
