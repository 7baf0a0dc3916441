"""Objectives evaluated over a fixed evaluation subset, for the landscapes and the Hessian estimates.

:func:`eval_set` checks the subset once, puts it on the compute device and computes the teacher's
logits once (only when an objective reads them). :func:`evaluate` is the size-weighted mean of
every objective with one forward per batch; :func:`evaluate_stacked` does the same for ``P``
parameter sets at once, one :func:`torch.func.vmap` over :func:`torch.func.functional_call` per
batch. The remaining helpers prepare the network evaluated at a point: channels-last layout
(:func:`eval_layout`), BatchNorm folded into the convs (:func:`evaluated_net`) and BatchNorm
statistics re-estimated on a set of images (:func:`recompute_bn`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    batched_logits,
    check_images,
    check_labels,
    check_memory_format,
    check_model,
    check_positive_int,
    resolve_device,
    working_copy,
)
from workbench.analysis.objectives import ObjectiveFn, needs_teacher
from workbench.models.fusion import BatchNormFolder
from workbench.models.layout import as_channels_last, channels_last, wants_channels_last

__all__ = [
    "EvalSet",
    "check_memory_format",
    "eval_layout",
    "eval_set",
    "evaluate",
    "evaluate_stacked",
    "evaluated_net",
    "recompute_bn",
    "tracked_bns",
]


@dataclass
class EvalSet:
    """The fixed evaluation subset on the compute device, with teacher logits computed once."""

    images: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None
    slices: list[slice]
    batch_size: int


def _checked_teacher_logits(teacher_logits: object, n: int) -> torch.Tensor:
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.ndim != 2 or len(teacher_logits) != n:
        got = (
            tuple(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else type(teacher_logits)
        )
        raise AnalysisError(f"teacher_logits: expected a tensor ({n}, K), got {got}")
    return teacher_logits


def eval_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    objs: Mapping[str, ObjectiveFn] | None,
    teacher: nn.Module | None,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    device: str | torch.device | None,
    dev: torch.device,
) -> EvalSet:
    """Validate the evaluation subset, move it to ``dev`` and compute the teacher's logits once.

    Args:
        images, labels: the subset ``(N, C, H, W)``, ``(N,)``.
        objs: the objectives to be evaluated; the teacher's logits are computed (on a working copy
            of ``teacher``) only when one of them needs them.
        teacher: the teacher, or ``None``. teacher_logits: precomputed ``(N, K)`` logits instead.
        batch_size: evaluation batch size. device: the caller's ``device=`` (places the teacher).
        dev: the compute device of the evaluated network.

    Returns:
        :class:`EvalSet` on ``dev``.

    Raises:
        AnalysisError: invalid inputs, or an objective needs teacher logits and none were given.
    """
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    check_model(teacher, "teacher", optional=True)
    need = needs_teacher(objs or {})
    t: torch.Tensor | None = None
    if teacher_logits is not None:
        t = _checked_teacher_logits(teacher_logits, len(images)).detach().to(dev)
    elif need and teacher is not None:
        t_dev = resolve_device(teacher, device)
        t = batched_logits(working_copy(teacher, t_dev), images, bs, t_dev).to(dev)
    elif need:
        raise AnalysisError(
            "teacher: an objective needs the teacher's logits; pass the teacher or teacher_logits="
        )
    return EvalSet(images.to(dev), y.to(dev), t, batch_slices(len(images), bs), bs)


def _accumulate(
    sums: dict[str, torch.Tensor],
    objs: Mapping[str, ObjectiveFn],
    logits: torch.Tensor,
    data: EvalSet,
    sl: slice,
) -> None:
    """Add every objective of one batch, weighted by the batch size, to ``sums`` (float64)."""
    t = data.teacher_logits[sl] if data.teacher_logits is not None else None
    weight = float(sl.stop - sl.start)
    for name, fn in objs.items():
        value = torch.as_tensor(fn(logits, data.labels[sl], t))
        if value.numel() != 1:
            raise AnalysisError(
                f"objectives[{name!r}]: expected a scalar per batch, got shape {tuple(value.shape)}"
            )
        value = value.reshape(()).to(torch.float64) * weight
        sums[name] = sums[name] + value.to(sums[name].device) if name in sums else value


def evaluate(model: nn.Module, objs: Mapping[str, ObjectiveFn], data: EvalSet) -> dict[str, float]:
    """Size-weighted mean of every objective over the evaluation set (one forward per batch).

    Args:
        model: the network, called as it is (mode and device are the caller's business).
        objs: ``{name: callable(logits, labels, teacher_logits)}``. data: the evaluation subset.

    Returns:
        ``{name: mean value}``.
    """
    n = len(data.images)
    sums: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for sl in data.slices:
            _accumulate(sums, objs, model(data.images[sl]), data, sl)
    return {name: float(s) / n for name, s in sums.items()}


def evaluate_stacked(
    net: nn.Module,
    stacked: dict[str, torch.Tensor],
    shared: dict[str, torch.Tensor],
    objs: Mapping[str, ObjectiveFn],
    data: EvalSet,
) -> list[dict[str, float]]:
    """:func:`evaluate` for ``P`` networks at once.

    Args:
        net: the network whose tensors are replaced.
        stacked: tensors that differ between the networks, each ``(P, ...)``.
        shared: tensors that are the same for all of them.
        objs, data: as in :func:`evaluate`.

    Returns:
        One ``{name: mean value}`` per network, from one vmapped forward per batch for all ``P``.
    """
    n = len(data.images)
    count = next(iter(stacked.values())).shape[0]
    sums: list[dict[str, torch.Tensor]] = [{} for _ in range(count)]

    def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(net, (params, shared), (x,))

    batched = vmap(forward, in_dims=(0, None))
    with torch.no_grad():
        for sl in data.slices:
            logits = batched(stacked, data.images[sl])
            for k in range(count):
                _accumulate(sums[k], objs, logits[k], data, sl)
    return [{name: float(s) / n for name, s in point.items()} for point in sums]


@contextmanager
def eval_layout(model: nn.Module, data: EvalSet, memory_format: str, device: torch.device) -> Iterator[None]:
    """Run the block channels-last when ``memory_format`` asks for it.

    ``"auto"`` means conv nets on the CPU (see :mod:`workbench.models.layout`): the model's 4-D
    tensors and ``data.images`` are converted inside, and both get their layout back afterwards.
    Values then agree with an NCHW forward up to float rounding, not bitwise.
    """
    check_memory_format(memory_format)
    enabled = wants_channels_last(memory_format, device, model)
    images = data.images
    with channels_last(model, enabled=enabled):
        if enabled:
            data.images = as_channels_last(images)
        try:
            yield
        finally:
            data.images = images


def evaluated_net(
    model: nn.Module, fold_bn: bool, example: torch.Tensor | None = None
) -> tuple[nn.Module, Callable[[], None], list[tuple[str, str]]]:
    """The network the objectives are evaluated on.

    Args:
        model: the working copy whose tensors the analysis changes.
        fold_bn: evaluate a copy with BatchNorm folded into the convs before it
            (:class:`workbench.models.fusion.BatchNormFolder`); else the model itself.
        example: a couple of the inputs, so the pairs are found by a thread-safe probe rather than
            an fx trace.

    Returns:
        ``(net, refresh, pairs)``: the network, the call that refreshes it after the model's
        tensors change (a no-op without folding) and its folded ``(conv path, bn path)`` pairs.
    """
    if fold_bn:
        try:
            folder = BatchNormFolder(model, example=example)
        except Exception:  # a model that cannot be deep-copied is evaluated as it is
            return model, _nothing, []
        return folder.model, folder.sync, list(folder.pairs)
    return model, _nothing, []


def _nothing() -> None:
    return None


def tracked_bns(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def recompute_bn(model: nn.Module, bns: list[_BatchNorm], images: torch.Tensor, slices: list[slice]) -> None:
    """Reset BatchNorm statistics and re-estimate them as the equal-weight average over the batches.

    Only the BatchNorm layers ``bns`` switch to training mode (``momentum=None``: cumulative
    average); dropout and the rest stay in eval mode. The layers are put back in eval mode afterwards.
    ``images[sl]`` for ``sl`` in ``slices`` are the batches.
    """
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for sl in slices:
            model(images[sl])
    for m in bns:
        m.eval()
