"""Evaluation on the test split: the student's logits in chunks, the fixed teachers' test logits,
and the warning for a teacher whose accuracy on the student's data is near chance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from workbench.config import TeacherSpec
from workbench.train.cache import teacher_forward

Inputs = Callable[[torch.Tensor], torch.Tensor]


def teacher_warning_threshold(num_classes: int) -> float:
    """Test accuracy under which a teacher is reported as near chance on the student's data:
    ``max(2/K, 1/K + 0.1)``, capped at halfway between chance and 1 (so two classes give 0.75)."""
    k = max(int(num_classes), 1)
    return min(max(2 / k, 1 / k + 0.1), (1 / k + 1) / 2)


def predict_logits(model: nn.Module, images: torch.Tensor, inputs: Inputs, chunk: int) -> torch.Tensor:
    """``model``'s float32 logits for ``images`` (raw, on the model's device), ``chunk`` images per
    forward under ``torch.inference_mode()``; ``inputs`` turns raw images into the model's inputs.
    The model's mode is the caller's to set."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            chunks.append(model(inputs(images[start : start + chunk])).float())
    return torch.cat(chunks)


def teacher_test_logits(
    teachers: Sequence[nn.Module],
    images: torch.Tensor,
    inputs: Inputs,
    chunk: int,
    dtype: torch.dtype | None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The teachers' mean float32 logits for ``images`` and each teacher's own, ``chunk`` images
    per forward (autocast to ``dtype`` when given, see :func:`workbench.train.cache.teacher_forward`)."""
    per: list[list[torch.Tensor]] = [[] for _ in teachers]
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            logits, _ = teacher_forward(teachers, inputs(images[start : start + chunk]), [], dtype=dtype)
            for i, t in enumerate(logits):
                per[i].append(t.float())
    each = [torch.cat(chunks).clone() for chunks in per]
    return torch.stack(each).mean(0), each


def near_chance_warnings(
    each: Sequence[torch.Tensor],
    labels: torch.Tensor,
    num_classes: int,
    dataset: str,
    specs: Sequence[TeacherSpec],
) -> list[str]:
    """One line per teacher whose test accuracy (``each[i]``'s argmax against ``labels``) is below
    :func:`teacher_warning_threshold`, naming the teacher (with its ``specs[i].source`` when
    given), its accuracy, chance and the threshold; empty when every teacher is above it."""
    limit = teacher_warning_threshold(num_classes)
    out = []
    for i, logits in enumerate(each):
        acc = float((logits.argmax(1) == labels).float().mean())
        if acc < limit:
            name = f"teachers[{i}]"
            if i < len(specs):
                name += f" ({specs[i].source})"
            out.append(
                f"{name}: test accuracy {100 * acc:.1f}% on {dataset} is near chance "
                f"({100 / num_classes:.1f}%, warning below {100 * limit:.1f}%); was it trained on other data?"
            )
    return out
