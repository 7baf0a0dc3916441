"""Objectives along the straight line between two networks of one architecture.

Interpolation ``(1-α)·θa + α·θb`` is the linear path of Goodfellow, Vinyals & Saxe 2015. The
BatchNorm statistics along it are re-estimated at every point (averaging running statistics is
not the statistics of the averaged network), or interpolated with the parameters. Neither network
is changed: the path is walked on a working copy of the first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_class_names,
    check_images,
    check_memory_format,
    check_model,
    check_names,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis.evaluation import (
    EvalSet,
    eval_layout,
    eval_set,
    evaluate,
    evaluated_net,
    recompute_bn,
    tracked_bns,
)
from workbench.analysis.landscape_grid import LandscapeResult, check_on_row, fill_grid, grid_axis
from workbench.analysis.objectives import ObjectiveFn, resolve_objectives
from workbench.runtime import CancelToken, ProgressFn

__all__ = ["interpolate"]

#: how the path treats BatchNorm statistics: re-estimated per point, or interpolated
_INTERP_BN = ("recompute", "running")


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (persistent or not) by name, shared tensors once."""
    return list(model.named_parameters()) + list(model.named_buffers())


def _check_same_architecture(start: nn.Module, end: nn.Module) -> None:
    """Both models have the same parameter and buffer names, with the same shapes."""
    names_a = _tensors(start)
    tensors_b = dict(_tensors(end))
    for name, t in names_a:
        other = tensors_b.get(name)
        if other is None:
            raise AnalysisError(f"end: has no tensor {name!r}; the two models must share one architecture")
        if other.shape != t.shape:
            raise AnalysisError(f"end: {name!r} has shape {tuple(other.shape)}, start's {tuple(t.shape)}")
    extra = [k for k in tensors_b if k not in dict(names_a)]
    if extra:
        raise AnalysisError(f"end: has tensor {extra[0]!r} that start lacks; architectures differ")


def _check_interpolation_args(
    start: object, end: object, bn_mode: str, recompute_images: torch.Tensor | None, memory_format: str
) -> None:
    check_model(start, "start")
    check_model(end, "end")
    if bn_mode not in _INTERP_BN:
        raise AnalysisError(f"bn_mode: unknown mode {bn_mode!r}; known: {', '.join(_INTERP_BN)}")
    if recompute_images is not None:
        check_images(recompute_images, "recompute_images")
    check_memory_format(memory_format)


class _Path:
    """The objectives at ``(1-α)·θ_start + α·θ_end`` on the working copy ``model`` (``α = 0`` and
    ``α = 1`` copy the two models' tensors exactly; integer tensors are ``start``'s below 1)."""

    def __init__(
        self,
        model: nn.Module,
        end_tensors: Mapping[str, torch.Tensor],
        alphas: np.ndarray,
        objs: Mapping[str, ObjectiveFn],
        data: EvalSet,
        *,
        fold_bn: bool,
        bn_mode: str,
        recompute_images: torch.Tensor,
    ) -> None:
        self.model, self.alphas, self.objs, self.data = model, alphas, objs, data
        self.net, self.refresh, _ = evaluated_net(model, fold_bn, data.images[:2])
        self.reference = evaluate(self.net, objs, data)
        self.pairs = [
            (t, t.detach().clone(), end_tensors[name].detach().clone()) for name, t in _tensors(model)
        ]
        self.bns = tracked_bns(model) if bn_mode == "recompute" else []
        self.rec = recompute_images
        self.rec_slices = batch_slices(len(recompute_images), data.batch_size)

    def write(self, alpha: float) -> None:
        with torch.no_grad():
            for t, ta, tb in self.pairs:
                if alpha == 0.0:
                    t.copy_(ta)
                elif alpha == 1.0 or not t.is_floating_point():
                    t.copy_(tb if alpha == 1.0 else ta)
                else:
                    t.copy_(ta * (1.0 - alpha) + tb.to(t.dtype) * alpha)

    def evaluate_at(self, index: tuple[int, ...]) -> dict[str, float]:
        self.write(float(self.alphas[index[0]]))
        if self.bns:
            recompute_bn(self.model, self.bns, self.rec, self.rec_slices)
        self.refresh()
        return evaluate(self.net, self.objs, self.data)

    def evaluate(self, points: list[tuple[int, ...]]) -> list[dict[str, float]]:
        return [self.evaluate_at(index) for index in points]


def interpolate(
    teacher: nn.Module | None,
    start: nn.Module,
    end: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | str | None = "cross_entropy",
    steps: int = 21,
    span: tuple[float, float] = (0.0, 1.0),
    bn_mode: str = "recompute",
    recompute_images: torch.Tensor | None = None,
    fold_bn: bool = True,
    memory_format: str = "auto",
    teacher_logits: torch.Tensor | None = None,
    names: Sequence[str] = ("start", "end"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_row: Callable[[LandscapeResult], None] | None = None,
) -> LandscapeResult:
    """Objectives along the straight line ``(1-α)·θ_start + α·θ_end`` between two networks of one
    architecture (Goodfellow, Vinyals & Saxe 2015), e.g. two students.

    Floating-point parameters and buffers are interpolated (``α = 0`` and ``α = 1`` copy the two
    models' tensors exactly; integer buffers are ``start``'s, ``end``'s at ``α = 1``). BatchNorm:

    * ``bn_mode="recompute"``: at every ``α`` the running mean/variance are reset and re-estimated
      on ``recompute_images`` (default: ``images``) as a cumulative average (``momentum=None``),
      since the average of two networks' statistics is not the statistics of the averaged network;
    * ``bn_mode="running"``: the running statistics are interpolated with the parameters, so the
      endpoints reproduce both models' own values exactly.

    Neither model is changed: the path is walked on a working copy of ``start``.

    Args:
        teacher: needed only by the ``kd`` / ``agreement`` objectives; may be ``None``.
        start, end: networks with the same parameter and buffer names and shapes.
        steps: number of points in ``span`` (default ``[0, 1]``; wider spans extrapolate).
        names: display names of ``start`` and ``end``.
        progress, cancel, on_row: once per point, as in
            :func:`workbench.analysis.landscape.landscape_1d`.
        Others as in :func:`workbench.analysis.landscape.landscape_1d`.

    Returns:
        :class:`LandscapeResult` of kind ``"interpolation"``; ``references`` holds both models' own
        values under ``"start"`` and ``"end"``.
    """
    _check_interpolation_args(start, end, bn_mode, recompute_images, memory_format)
    check_on_row(on_row)
    objs = resolve_objectives(objectives)
    alphas = grid_axis(span, steps, "span")
    pair = check_names(names, ("start", "end"))
    classes = check_class_names(class_names)
    _check_same_architecture(start, end)
    label = "interpolation"
    track = new_tracker(progress, cancel, len(alphas), label)
    track.start()
    dev = resolve_device(start, device)
    data = eval_set(images, labels, objs, teacher, teacher_logits, batch_size, device, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    end_copy = working_copy(end, dev)
    ref_end = evaluate(end_copy, objs, data)
    end_tensors = dict(_tensors(end_copy))
    model = working_copy(start, dev)
    track.check()
    params: dict[str, Any] = {
        "objectives": list(objs),
        "bn_mode": bn_mode,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
        "batch_size": data.batch_size,
        "span": [float(alphas[0]), float(alphas[-1])],
        "steps": len(alphas),
    }
    with eval_layout(model, data, memory_format, dev):
        path = _Path(
            model, end_tensors, alphas, objs, data, fold_bn=fold_bn, bn_mode=bn_mode, recompute_images=rec
        )
        del end_copy, end_tensors

        def make_result(values: dict[str, np.ndarray], complete: bool) -> LandscapeResult:
            return LandscapeResult(
                kind="interpolation",
                alphas=alphas,
                betas=None,
                values=values,
                n_samples=len(data.images),
                bn_mode=bn_mode,
                references={"start": dict(path.reference), "end": dict(ref_end)},
                complete=complete,
                names=pair,
                class_names=classes,
                params=dict(params),
            )

        values = fill_grid((len(alphas),), "rows", objs, path.evaluate, track, make_result, on_row, label)
    return make_result(values, True)
