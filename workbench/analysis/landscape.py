"""Loss landscapes: a student's objectives on a line or a plane through its parameters.

Random directions and 1-D / 2-D slices follow Li, Xu, Taylor, Studer & Goldstein 2018,
"Visualizing the Loss Landscape of Neural Nets" (:mod:`.directions`: a Gaussian direction is
filter-normalized and biases and normalization-layer parameters are left out, "ignore biasbn").
The straight path between two networks is in :mod:`.interpolation`, curvature in :mod:`.hessian`,
the objectives in :mod:`.objectives`.

Each evaluation is batched over a fixed evaluation subset; several objectives are read from the
same forward pass, so one plane is seen under cross-entropy, under a distillation objective and as
top-1 agreement with the teacher. Every call computes on one eval-mode working copy of the model
(made once per call), so the caller's model (parameters, buffers, flags, device, hooks) is never
touched, also when an evaluation raises or the call is cancelled.

Several grid points can share one forward call (``points_per_batch``): their parameter sets are
stacked and the (BatchNorm-folded) network is evaluated with :func:`torch.func.functional_call`
under :func:`torch.func.vmap`, one launch for all of them, which keeps a GPU busy where one point
at a time does not.
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
    check_positive_int,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis.directions import PlaneWriter, check_direction, random_direction, stacked_tensors
from workbench.analysis.evaluation import (
    EvalSet,
    eval_layout,
    eval_set,
    evaluate,
    evaluate_stacked,
    evaluated_net,
    recompute_bn,
    tracked_bns,
)
from workbench.analysis.landscape_grid import LandscapeResult, check_on_row, check_order, fill_grid, grid_axis
from workbench.analysis.objectives import ObjectiveFn, resolve_objectives
from workbench.runtime import CancelToken, ProgressFn

__all__ = ["BN_MODES", "landscape_1d", "landscape_2d", "resolve_points_per_batch"]

#: how a slice treats BatchNorm statistics: the model's running statistics, or re-estimated per point
BN_MODES = ("eval", "recompute")

#: points evaluated in one vmapped call with ``points_per_batch="auto"`` on CUDA: about this many
#: samples per call (``points = max(1, min(64, _AUTO_SAMPLES // batch_size))``)
_AUTO_SAMPLES = 8192


def resolve_points_per_batch(value: object, device: torch.device, batch_size: int, bn_mode: str) -> int:
    """The number of grid points evaluated in one forward call.

    Args:
        value: ``"auto"`` (1 on the CPU, where stacking points does not make the convolutions
            faster; about ``8192 / batch_size`` on CUDA, at most 64) or an integer >= 1.
        device: the compute device. batch_size: the evaluation batch size.
        bn_mode: ``"recompute"`` estimates BatchNorm statistics per point, so it always gives 1.

    Returns:
        The number of points per call (>= 1).
    """
    if value == "auto":
        n = max(1, min(64, _AUTO_SAMPLES // batch_size)) if torch.device(device).type == "cuda" else 1
    else:
        if isinstance(value, str):
            raise AnalysisError(f"points_per_batch: expected 'auto' or an integer >= 1, got {value!r}")
        n = check_positive_int(value, "points_per_batch")
    return 1 if bn_mode == "recompute" else n


def _out_of_memory(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(err, oom)) or "out of memory" in str(err).lower()


def _check_bn_mode(bn_mode: str, recompute_images: torch.Tensor | None) -> None:
    if bn_mode not in BN_MODES:
        raise AnalysisError(f"bn_mode: unknown mode {bn_mode!r}; known: {', '.join(BN_MODES)}")
    if recompute_images is not None:
        check_images(recompute_images, "recompute_images")


class _Plane:
    """The objectives at points ``θ0 + Σ_i c_i d_i`` of a working copy, ``c_i`` read off ``grids``
    at a grid index: point by point, or several points in one vmapped call (halving the number of
    points per call when the device runs out of memory)."""

    def __init__(
        self,
        model: nn.Module,
        directions: list[dict[str, torch.Tensor]],
        grids: list[np.ndarray],
        objs: Mapping[str, ObjectiveFn],
        data: EvalSet,
        *,
        fold_bn: bool,
        bn_mode: str,
        recompute_images: torch.Tensor,
        per_call: int,
    ) -> None:
        self.model, self.grids, self.objs, self.data = model, grids, objs, data
        self.net, self.refresh, self.pairs = evaluated_net(model, fold_bn, data.images[:2])
        self.reference = evaluate(self.net, objs, data)
        self.writer = PlaneWriter(model, directions)
        self.bns = tracked_bns(model) if bn_mode == "recompute" else []
        self.rec = recompute_images
        self.rec_slices = batch_slices(len(recompute_images), data.batch_size)
        self.per_call = per_call

    def coefficients(self, index: tuple[int, ...]) -> list[float]:
        return [float(g[i]) for g, i in zip(self.grids, index, strict=True)]

    def evaluate_at(self, index: tuple[int, ...]) -> dict[str, float]:
        self.writer.set([g[i] for g, i in zip(self.grids, index, strict=True)])
        if self.bns:
            recompute_bn(self.model, self.bns, self.rec, self.rec_slices)
        self.refresh()
        return evaluate(self.net, self.objs, self.data)

    def evaluate(self, points: list[tuple[int, ...]]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        while len(out) < len(points):
            part = points[len(out) : len(out) + self.per_call]
            if len(part) == 1 or not self.writer.entries:
                out.extend(self.evaluate_at(index) for index in part)
                continue
            coeffs = torch.tensor([self.coefficients(index) for index in part], dtype=torch.float64)
            try:
                stacked, shared = stacked_tensors(self.model, self.pairs, self.writer, coeffs)
                out.extend(evaluate_stacked(self.net, stacked, shared, self.objs, self.data))
            except RuntimeError as err:  # too many points for the device: halve and go on
                if not _out_of_memory(err):
                    raise
                del err
                if self.data.images.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.per_call = max(1, len(part) // 2)
        return out


def _plane_directions(
    model: nn.Module, directions: Sequence[Mapping[str, torch.Tensor]] | None, seed: int, count: int
) -> list[dict[str, torch.Tensor]]:
    """The given directions checked against ``model``, or ``count`` random ones from ``seed``, ``seed + 1``, ..."""
    if directions is None:
        return [random_direction(model, seed + i) for i in range(count)]
    return [check_direction(model, d, f"directions[{i}]") for i, d in enumerate(directions)]


def _slice_landscape(
    kind: str,
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    directions: Sequence[Mapping[str, torch.Tensor]] | None,
    grids: list[np.ndarray],
    *,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | str | None,
    seed: int,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    bn_mode: str,
    recompute_images: torch.Tensor | None,
    device: str | torch.device | None,
    memory_format: str,
    fold_bn: bool,
    order: str,
    names: Sequence[str],
    class_names: Sequence[str] | None,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
    on_row: Callable[[LandscapeResult], None] | None,
    points_per_batch: int | str,
) -> LandscapeResult:
    check_model(student, "student")
    objs = resolve_objectives(objectives)
    _check_bn_mode(bn_mode, recompute_images)
    order = check_order(order)
    check_on_row(on_row)
    pair = check_names(names)
    classes = check_class_names(class_names)
    check_memory_format(memory_format)
    shape = tuple(len(g) for g in grids)
    label = f"landscape {kind}"
    track = new_tracker(progress, cancel, shape[0], label)
    track.start()
    dev = resolve_device(student, device)
    data = eval_set(images, labels, objs, teacher, teacher_logits, batch_size, device, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    ppb = resolve_points_per_batch(points_per_batch, dev, data.batch_size, bn_mode)
    model = working_copy(student, dev)
    track.check()
    used_seed = int(seed) if directions is None else None
    params: dict[str, Any] = {
        "objectives": list(objs),
        "seed": used_seed,
        "points_per_batch": ppb,
        "bn_mode": bn_mode,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
        "order": order,
        "batch_size": data.batch_size,
        "span": [float(grids[0][0]), float(grids[0][-1])],
        "steps": list(shape),
    }
    with eval_layout(model, data, memory_format, dev):
        dirs = _plane_directions(model, directions, seed, len(grids))
        plane = _Plane(
            model,
            dirs,
            grids,
            objs,
            data,
            fold_bn=fold_bn,
            bn_mode=bn_mode,
            recompute_images=rec,
            per_call=ppb,
        )

        def make_result(values: dict[str, np.ndarray], complete: bool) -> LandscapeResult:
            return LandscapeResult(
                kind=kind,
                alphas=grids[0],
                betas=grids[1] if len(grids) > 1 else None,
                values=values,
                n_samples=len(data.images),
                bn_mode=bn_mode,
                seed=used_seed,
                references={"model": dict(plane.reference)},
                complete=complete,
                names=pair,
                class_names=classes,
                params=dict(params),
            )

        values = fill_grid(shape, order, objs, plane.evaluate, track, make_result, on_row, label, ppb)
    return make_result(values, True)


def landscape_1d(
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | str | None = "cross_entropy",
    direction: Mapping[str, torch.Tensor] | None = None,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int = 21,
    seed: int = 0,
    bn_mode: str = "eval",
    recompute_images: torch.Tensor | None = None,
    fold_bn: bool = True,
    memory_format: str = "auto",
    order: str = "rows",
    teacher_logits: torch.Tensor | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_row: Callable[[LandscapeResult], None] | None = None,
    points_per_batch: int | str = "auto",
) -> LandscapeResult:
    """The student's objectives along ``θ0 + α·d`` for ``α`` in ``linspace(*span, steps)`` (Li et al. 2018).

    The student is never changed: the line is walked on one eval-mode working copy, made once.

    Args:
        teacher: needed only by the ``kd`` and ``agreement`` objectives (its logits are computed
            once); may be ``None``.
        student: the network whose landscape is drawn.
        images, labels: the fixed evaluation subset ``(N, C, H, W)``, ``(N,)``.
        objectives: a built-in name (see :func:`workbench.analysis.objectives.builtin_objectives`),
            a list of names, or ``{name: callable(logits, labels, teacher_logits)}``; all share each
            point's forwards.
        direction: ``{parameter name: tensor}``; default:
            :func:`workbench.analysis.directions.random_direction` with ``seed``.
        span, steps: the grid of ``α`` (a grid value within ``1e-12·span`` of 0 is set to exactly 0).
        bn_mode: ``"eval"`` (running statistics; the point ``α = 0`` then reproduces the model's own
            values, bitwise with ``memory_format="contiguous"`` and ``fold_bn=False``) or
            ``"recompute"`` (statistics re-estimated at every point on ``recompute_images``,
            default the evaluation images).
        fold_bn: evaluate a copy with each BatchNorm folded into the conv before it, folded again
            after every change of the weights (:class:`workbench.models.fusion.BatchNormFolder`;
            fewer layers per forward, same values up to float rounding).
        memory_format: ``"auto"`` (conv nets channels-last on the CPU: faster, values equal up to
            float rounding), ``"contiguous"`` or ``"channels_last"``.
        order: ``"rows"`` (left to right) or ``"coarse_to_fine"`` (every 2^k-th point first).
        teacher_logits: precomputed ``(N, K)`` teacher logits instead of ``teacher``.
        names, class_names: display names kept in the result.
        device: where to evaluate; default: the student's device. batch_size: evaluation batch size.
        progress: once per point. cancel: checked before every point (every group of points with
            ``points_per_batch > 1``); a cancelled call leaves the student untouched and raises
            :class:`workbench.runtime.Cancelled`.
        on_row: ``on_row(partial)`` after each point with a :class:`LandscapeResult` whose points not
            computed yet are NaN (the last call gets the final values).
        points_per_batch: grid points evaluated in one forward call (their parameter sets stacked,
            :func:`torch.func.vmap` over :func:`torch.func.functional_call` on the folded network),
            never across a progress step. ``"auto"``: about 8192 samples per call on CUDA
            (``8192 // batch_size`` points, at most 64), 1 on the CPU, where stacking does not
            make the convolutions faster. Values equal the point-by-point ones up to float
            rounding. ``bn_mode="recompute"`` always goes point by point. On running out of device
            memory the number is halved and the evaluation goes on.

    Returns:
        :class:`LandscapeResult` of kind ``"1d"``.
    """
    return _slice_landscape(
        "1d",
        teacher,
        student,
        images,
        labels,
        None if direction is None else [direction],
        [grid_axis(span, steps, "span")],
        objectives=objectives,
        seed=seed,
        teacher_logits=teacher_logits,
        batch_size=batch_size,
        bn_mode=bn_mode,
        recompute_images=recompute_images,
        device=device,
        memory_format=memory_format,
        fold_bn=fold_bn,
        order=order,
        names=names,
        class_names=class_names,
        progress=progress,
        cancel=cancel,
        on_row=on_row,
        points_per_batch=points_per_batch,
    )


def landscape_2d(
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | str | None = "cross_entropy",
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int = 21,
    span_beta: tuple[float, float] | None = None,
    steps_beta: int | None = None,
    seed: int = 0,
    bn_mode: str = "eval",
    recompute_images: torch.Tensor | None = None,
    fold_bn: bool = True,
    memory_format: str = "auto",
    order: str = "rows",
    teacher_logits: torch.Tensor | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    on_row: Callable[[LandscapeResult], None] | None = None,
    points_per_batch: int | str = "auto",
) -> LandscapeResult:
    """The student's objectives on the plane ``θ0 + α·d1 + β·d2`` (Li et al. 2018, section 4).

    Default directions are :func:`workbench.analysis.directions.random_direction` with seeds
    ``seed`` and ``seed + 1``. The grid is ``linspace(*span, steps)`` for ``α`` and
    ``linspace(*span_beta, steps_beta)`` for ``β`` (default: the same as ``α``). Every grid point
    is one batched evaluation of the fixed subset; all objectives share its forward passes.
    Progress is reported once per row (``steps`` rows); ``on_row(partial)`` gets the grid after
    every row (NaN where not computed yet), so a page can draw it filling in. With
    ``order="coarse_to_fine"`` every 2^k-th point of each axis comes first (a coarse picture
    early), still in ``steps`` equal chunks. Other arguments as in :func:`landscape_1d`.

    Returns:
        :class:`LandscapeResult` of kind ``"2d"``; ``values[name]`` has shape ``(len(alphas), len(betas))``.
    """
    if directions is not None and (not isinstance(directions, (tuple, list)) or len(directions) != 2):
        raise AnalysisError("directions: expected a pair (d1, d2) of {parameter name: tensor} mappings")
    grids = [
        grid_axis(span, steps, "span"),
        grid_axis(
            span if span_beta is None else span_beta, steps if steps_beta is None else steps_beta, "span_beta"
        ),
    ]
    return _slice_landscape(
        "2d",
        teacher,
        student,
        images,
        labels,
        directions,
        grids,
        objectives=objectives,
        seed=seed,
        teacher_logits=teacher_logits,
        batch_size=batch_size,
        bn_mode=bn_mode,
        recompute_images=recompute_images,
        device=device,
        memory_format=memory_format,
        fold_bn=fold_bn,
        order=order,
        names=names,
        class_names=class_names,
        progress=progress,
        cancel=cancel,
        on_row=on_row,
        points_per_batch=points_per_batch,
    )
