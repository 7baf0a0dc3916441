"""Teacher-output cache: with a deterministic input pipeline, teacher logits and the features a
method asks for are computed once per run (batched, under inference mode) and then read by
index slices on every step."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench.models.taps import FeatureTaps
from workbench.runtime import CancelToken, Tracker


@dataclass
class TeacherCache:
    """Per-teacher logits ``(N, K)`` and features ``{path: (N, ...)}`` for a whole split."""

    logits: list[torch.Tensor]
    features: list[dict[str, torch.Tensor]]

    def lookup(self, index: torch.Tensor) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Teacher outputs for the split positions ``index``."""
        logits = [t.index_select(0, index) for t in self.logits]
        feats = [{k: v.index_select(0, index) for k, v in f.items()} for f in self.features]
        return logits, feats

    @property
    def nbytes(self) -> int:
        total = sum(t.numel() * t.element_size() for t in self.logits)
        total += sum(v.numel() * v.element_size() for f in self.features for v in f.values())
        return total


def teacher_forward(
    teachers: Sequence[nn.Module], x: torch.Tensor, paths: Sequence[str]
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Run every teacher on ``x`` without gradients, capturing ``paths``."""
    logits, feats = [], []
    with torch.no_grad():
        for teacher in teachers:
            with FeatureTaps(teacher, paths, detach=True) as taps:
                logits.append(teacher(x))
                feats.append(dict(taps.features))
    return logits, feats


def build_teacher_cache(
    teachers: Sequence[nn.Module],
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    paths: Sequence[str],
    batch_size: int,
    budget_mb: float,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> TeacherCache | None:
    """Compute the cache over ``images`` (uint8, on the target device), or None when the
    teachers' outputs for the whole split would exceed ``budget_mb``.

    Reports one unit per batch through ``progress`` and checks ``cancel`` before every batch
    (raising :class:`workbench.runtime.Cancelled`; nothing is kept).
    """
    n = images.shape[0]
    tracker = Tracker(progress, cancel, total=cache_batches(n, batch_size), label="teacher cache")
    tracker.start()
    first_logits, first_feats = teacher_forward(teachers, normalize(images[:2]), paths)
    per_sample = sum(t[0].numel() * 4 for t in first_logits)
    per_sample += sum(v[0].numel() * 4 for f in first_feats for v in f.values())
    if per_sample * n > budget_mb * 2**20:
        return None
    logits: list[list[torch.Tensor]] = [[] for _ in teachers]
    feats: list[dict[str, list[torch.Tensor]]] = [{p: [] for p in paths} for _ in teachers]
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            out_l, out_f = teacher_forward(teachers, normalize(images[start : start + batch_size]), paths)
            for i in range(len(teachers)):
                logits[i].append(out_l[i].float())
                for p in paths:
                    feats[i][p].append(out_f[i][p].float())
            tracker.advance()
    return TeacherCache(
        logits=[torch.cat(chunks).clone() for chunks in logits],
        features=[{p: torch.cat(v).clone() for p, v in f.items()} for f in feats],
    )


def cache_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`build_teacher_cache` runs over ``n`` images."""
    return max(math.ceil(n / max(batch_size, 1)), 1)
