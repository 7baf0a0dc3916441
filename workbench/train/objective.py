"""The engine's own part of the objective and its schedule: the cross-entropy term (label
smoothing, Mixup/CutMix partners, per-sample weights) and the learning-rate factor per step."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, schedule: Any, base_lr: float) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    warm = int(round(schedule.warmup_epochs * steps_per_epoch))
    if warm and step < warm:
        return (step + 1) / warm
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        epoch = step // max(steps_per_epoch, 1)
        return schedule.gamma ** sum(1 for m in schedule.milestones if epoch >= m)
    span = max(total_steps - warm, 1)
    progress = min(max(step - warm, 0) / span, 1.0)
    floor = schedule.min_lr / base_lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def cross_entropy(
    logits: torch.Tensor, batch: Any, smoothing: float, weights: torch.Tensor | None
) -> torch.Tensor:
    """CE of ``logits`` against ``batch.y`` with label smoothing, mixed with ``batch.y_mix`` by
    ``batch.lam`` when the batch was Mixup/CutMix-ed; averaged, or weighted by per-sample
    ``weights`` (a 0-dim tensor)."""
    ce = F.cross_entropy(logits, batch.y, label_smoothing=smoothing, reduction="none")
    if batch.y_mix is not None and batch.lam is not None:
        ce = batch.lam * ce + (1 - batch.lam) * F.cross_entropy(
            logits, batch.y_mix, label_smoothing=smoothing, reduction="none"
        )
    if weights is not None:
        return (ce * weights).sum() / weights.sum().clamp_min(1e-12)
    return ce.mean()
