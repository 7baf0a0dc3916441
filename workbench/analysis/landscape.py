"""Loss landscapes, linear interpolation between two networks, and Hessian curvature.

* Random directions and 1-D / 2-D slices follow Li, Xu, Taylor, Studer & Goldstein 2018,
  "Visualizing the Loss Landscape of Neural Nets": a Gaussian direction is filter-normalized
  (each filter of the direction gets the norm of the matching filter of the weights) and biases
  and normalization-layer parameters are left out ("ignore biasbn").
* Interpolation ``(1-α)·θa + α·θb`` is the linear path of Goodfellow, Vinyals & Saxe 2015; the
  BatchNorm statistics along it are re-estimated at every point (averaging running statistics is
  not the statistics of the averaged network), or interpolated with the parameters.
* Curvature: power iteration on Hessian-vector products (Pearlmutter 1994, double backprop) for
  the eigenvalue of largest magnitude, and Hutchinson's 1989 trace estimator with Rademacher probes.

Each evaluation is batched over a fixed evaluation subset; several objectives are read from the
same forward pass, so one plane is seen under cross-entropy, under a distillation objective and as
top-1 agreement with the teacher. The model is always restored bitwise (parameters and buffers),
with its training flags and BatchNorm momenta, also when an evaluation raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    eval_mode,
    on_device,
    predict_logits,
    resolve_device,
)
from workbench.distill.functional import kd_loss
from workbench.models.fusion import BatchNormFolder
from workbench.models.layout import MEMORY_FORMATS, as_channels_last, channels_last, wants_channels_last

__all__ = [
    "BN_MODES",
    "HessianEigenResult",
    "HessianTraceResult",
    "LandscapeResult",
    "Objective",
    "accuracy",
    "agreement",
    "builtin_objectives",
    "cross_entropy",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "interpolate",
    "kd",
    "landscape_1d",
    "landscape_2d",
    "random_direction",
]

BN_MODES = ("eval", "recompute")
_INTERP_BN = ("recompute", "running")
_NORM_LAYERS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


# ---- objectives -----------------------------------------------------------------------------------
ObjectiveFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A scalar read from a batch: ``fn(logits, labels, teacher_logits)`` -> mean over the batch.

    ``needs_teacher`` says that ``teacher_logits`` must be given (the analyses then require a
    ``teacher`` or precomputed ``teacher_logits``). Plain callables with the same signature are
    accepted wherever an :class:`Objective` is.
    """

    name: str
    fn: ObjectiveFn
    needs_teacher: bool = False

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.needs_teacher and teacher_logits is None:
            raise AnalysisError(
                f"objective {self.name!r}: needs teacher logits; pass teacher= or teacher_logits="
            )
        return self.fn(logits, labels, teacher_logits)


def _ce(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def _accuracy(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    return (logits.argmax(1) == labels).to(logits.dtype).mean()


def _agreement(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    assert teacher_logits is not None
    return (logits.argmax(1) == teacher_logits.argmax(1)).to(logits.dtype).mean()


def _kd(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    assert teacher_logits is not None
    return kd_loss(logits, teacher_logits, temperature=temperature)


#: mean cross-entropy with the labels
cross_entropy = Objective("cross_entropy", _ce)
#: top-1 accuracy against the labels
accuracy = Objective("accuracy", _accuracy)
#: share of samples whose top-1 prediction equals the teacher's
agreement = Objective("agreement", _agreement, needs_teacher=True)


def kd(temperature: float = 4.0) -> Objective:
    """Hinton et al. 2015 distillation objective ``T² · KL(softmax(t/T) || softmax(s/T))`` (batch mean).

    Uses :func:`workbench.distill.functional.kd_loss`, the kernel training uses.
    """
    temp = check_positive_float(temperature, "temperature")
    return Objective(f"kd(T={temp:g})", functools.partial(_kd, temperature=temp), needs_teacher=True)


def builtin_objectives() -> dict[str, Objective]:
    """The objectives reachable by name: ``cross_entropy``, ``accuracy``, ``agreement``, ``kd`` (T=4)."""
    return {"cross_entropy": cross_entropy, "accuracy": accuracy, "agreement": agreement, "kd": kd(4.0)}


def _resolve_objectives(
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | None,
) -> dict[str, ObjectiveFn]:
    if objectives is None:
        return {"cross_entropy": cross_entropy}
    known = builtin_objectives()
    if isinstance(objectives, str):
        objectives = [objectives]
    if isinstance(objectives, Mapping):
        out = {str(k): v for k, v in objectives.items()}
        for name, fn in out.items():
            if not callable(fn):
                raise AnalysisError(
                    f"objectives[{name!r}]: expected a callable(logits, labels, teacher_logits)"
                )
    else:
        out = {}
        for name in objectives:
            if name not in known:
                raise AnalysisError(
                    f"objectives: unknown objective {name!r}; known: {', '.join(sorted(known))}"
                )
            out[name] = known[name]
    if not out:
        raise AnalysisError("objectives: expected at least one objective, got none")
    return out


def _needs_teacher(objs: Mapping[str, ObjectiveFn]) -> bool:
    return any(getattr(fn, "needs_teacher", False) for fn in objs.values())


# ---- shared plumbing --------------------------------------------------------------------------------
@dataclass
class _EvalSet:
    """The fixed evaluation subset on the compute device, with teacher logits computed once."""

    images: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None
    slices: list[slice]
    batch_size: int


def _eval_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    objs: Mapping[str, ObjectiveFn] | None,
    teacher: nn.Module | None,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
) -> _EvalSet:
    """Validate the evaluation subset, move it to ``device`` and compute teacher logits once."""
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    need = _needs_teacher(objs or {})
    t: torch.Tensor | None = None
    if teacher_logits is not None:
        if (
            not isinstance(teacher_logits, torch.Tensor)
            or teacher_logits.ndim != 2
            or len(teacher_logits) != len(images)
        ):
            got = (
                tuple(teacher_logits.shape)
                if isinstance(teacher_logits, torch.Tensor)
                else type(teacher_logits)
            )
            raise AnalysisError(f"teacher_logits: expected a tensor ({len(images)}, K), got {got}")
        t = teacher_logits.detach().to(device)
    elif teacher is not None:
        t = predict_logits(teacher, images, bs, resolve_device(teacher, device)).to(device)
    elif need:
        raise AnalysisError(
            "teacher: an objective needs the teacher's logits; pass teacher= or teacher_logits="
        )
    return _EvalSet(images.to(device), y.to(device), t, batch_slices(len(images), bs), bs)


def _evaluate(model: nn.Module, objs: Mapping[str, ObjectiveFn], data: _EvalSet) -> dict[str, float]:
    """Size-weighted mean of every objective over the evaluation set (one forward per batch)."""
    n = len(data.images)
    sums: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for sl in data.slices:
            logits = model(data.images[sl])
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
    return {name: float(s) / n for name, s in sums.items()}


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (persistent or not) by name, shared tensors once."""
    return list(model.named_parameters()) + list(model.named_buffers())


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Restore parameters and buffers bitwise, BatchNorm momenta and training flags afterwards."""
    saved = [(t, t.detach().clone()) for _, t in _tensors(model)]
    momenta = [(m, m.momentum) for m in model.modules() if isinstance(m, _BatchNorm)]
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, copy in saved:
                t.copy_(copy)
        for m, momentum in momenta:
            m.momentum = momentum
        for m, flag in flags:
            m.training = flag


@contextmanager
def _layout(model: nn.Module, data: _EvalSet, memory_format: str, device: torch.device) -> Iterator[None]:
    """Run the block channels-last when ``memory_format`` asks for it (``"auto"``: conv nets on the
    CPU, see :mod:`workbench.models.layout`): the model's 4-D tensors and the evaluation images are
    converted inside, and the model gets its layout back afterwards. Values then agree with an NCHW
    forward up to float rounding, not bitwise."""
    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    enabled = wants_channels_last(memory_format, device, model)
    images = data.images
    with channels_last(model, enabled=enabled):
        if enabled:
            data.images = as_channels_last(images)
        try:
            yield
        finally:
            data.images = images


def _evaluated_net(model: nn.Module, fold_bn: bool) -> tuple[nn.Module, Callable[[], None]]:
    """The network the objectives are evaluated on and the call that refreshes it after the
    model's tensors change: with ``fold_bn`` a copy with BatchNorm folded into the convs before it
    (:class:`workbench.models.fusion.BatchNormFolder`), else the model itself (and a no-op)."""
    if fold_bn:
        try:
            folder = BatchNormFolder(model)
        except Exception:  # a model that cannot be deep-copied is evaluated as it is
            return model, _nothing
        return folder.model, folder.sync
    return model, _nothing


def _nothing() -> None:
    return None


def _tracked_bns(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _recompute_bn(model: nn.Module, bns: list[_BatchNorm], images: torch.Tensor, slices: list[slice]) -> None:
    """Reset BatchNorm statistics and re-estimate them as the equal-weight average over the batches.

    Only the BatchNorm layers switch to training mode (``momentum=None``: cumulative average);
    dropout and the rest stay in eval mode. The layers are put back in eval mode afterwards.
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


def _grid(span: tuple[float, float], steps: int, arg: str) -> np.ndarray:
    try:
        lo, hi = (float(v) for v in span)
    except (TypeError, ValueError):
        raise AnalysisError(f"{arg}: expected a pair (low, high), got {span!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise AnalysisError(f"{arg}: expected finite low < high, got {span!r}")
    n = check_positive_int(steps, "steps")
    grid = np.linspace(lo, hi, n) if n > 1 else np.array([(lo + hi) / 2.0])
    grid[np.abs(grid) <= 1e-12 * (hi - lo)] = 0.0
    return grid


def _check_bn_mode(bn_mode: str, recompute_images: torch.Tensor | None) -> None:
    if bn_mode not in BN_MODES:
        raise AnalysisError(f"bn_mode: unknown mode {bn_mode!r}; known: {', '.join(BN_MODES)}")
    if recompute_images is not None:
        check_images(recompute_images, "recompute_images")


# ---- directions -----------------------------------------------------------------------------------
def random_direction(model: nn.Module, seed: int = 0, ignore_bias_bn: bool = True) -> dict[str, torch.Tensor]:
    """A filter-normalized Gaussian direction in parameter space (Li et al. 2018, section 4).

    For every parameter with more than one dimension, each filter of the direction (slice along
    dim 0: a conv output channel, a linear output row) is rescaled to the Frobenius norm of the
    matching filter of the weights. One-dimensional parameters (biases) and parameters of
    normalization layers are zeroed when ``ignore_bias_bn`` (the paper's "ignore biasbn"), else set
    equal to the weights, as in the paper's code.

    Args:
        model: the network; its parameters are read, not changed.
        seed: the Gaussian is drawn on the CPU from this seed in ``named_parameters`` order, so the
            same seed gives the same direction on any device (two objectives share one plane).
        ignore_bias_bn: zero biases and normalization parameters.

    Returns:
        ``{parameter name: tensor}`` shaped, typed and placed like the parameters.
    """
    gen = torch.Generator().manual_seed(int(seed))
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters(False)}
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            d = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(device=p.device, dtype=p.dtype)
            w = p.detach()
            if p.ndim <= 1 or id(p) in norm_params:
                d = torch.zeros_like(w) if ignore_bias_bn else w.clone()
            else:
                d_norm = d.reshape(d.shape[0], -1).norm(dim=1)
                w_norm = w.reshape(w.shape[0], -1).norm(dim=1)
                d = d * (w_norm / (d_norm + 1e-10)).reshape(-1, *([1] * (d.ndim - 1)))
            out[name] = d
    return out


def _check_direction(
    model: nn.Module, direction: Mapping[str, torch.Tensor], arg: str
) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    unknown = [k for k in direction if k not in params]
    if unknown:
        raise AnalysisError(f"{arg}: {unknown[0]!r} is not a parameter of the model")
    out = {}
    for name, p in params.items():
        d = direction.get(name)
        if d is None:
            raise AnalysisError(f"{arg}: missing parameter {name!r}")
        if tuple(d.shape) != tuple(p.shape):
            raise AnalysisError(f"{arg}[{name!r}]: expected shape {tuple(p.shape)}, got {tuple(d.shape)}")
        out[name] = d.detach().to(device=p.device, dtype=p.dtype)
    return out


class _PlaneWriter:
    """Writes ``θ0 + Σ_i c_i d_i`` into the parameters in place (parameters with a zero direction skipped)."""

    def __init__(self, model: nn.Module, directions: Sequence[Mapping[str, torch.Tensor]]) -> None:
        self.entries = []
        for name, p in model.named_parameters():
            ds = [d[name] for d in directions]
            if any(bool(d.any()) for d in ds):
                self.entries.append((p, p.detach().clone(), ds))

    def set(self, coeffs: Sequence[float]) -> None:
        with torch.no_grad():
            for p, base, ds in self.entries:
                p.copy_(base)
                for c, d in zip(coeffs, ds, strict=True):
                    if c != 0.0:
                        p.add_(d, alpha=float(c))


# ---- results ------------------------------------------------------------------------------------
@dataclass
class LandscapeResult:
    """Objective values on a line, a plane or an interpolation path.

    ``kind`` is ``"1d"``, ``"2d"`` or ``"interpolation"``. For 1-D and interpolation,
    ``values[name][i]`` is at ``alphas[i]``; for 2-D, ``values[name][i, j]`` is at
    ``θ0 + alphas[i]·d1 + betas[j]·d2``. ``references`` holds the objectives of the unperturbed
    network(s) with their own BatchNorm buffers: ``{"model": ...}`` for slices,
    ``{"model_a": ..., "model_b": ...}`` for interpolation.
    """

    kind: str
    alphas: np.ndarray
    betas: np.ndarray | None
    values: dict[str, np.ndarray]
    n_samples: int
    bn_mode: str
    seed: int | None = None
    references: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def objectives(self) -> list[str]:
        """Names of the evaluated objectives."""
        return list(self.values)


def _slice_landscape(
    kind: str,
    model: nn.Module,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    directions: Sequence[Mapping[str, torch.Tensor]] | None,
    grids: list[np.ndarray],
    *,
    seed: int,
    teacher: nn.Module | None,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    bn_mode: str,
    recompute_images: torch.Tensor | None,
    device: str | torch.device | None,
    memory_format: str,
    fold_bn: bool,
) -> LandscapeResult:
    objs = _resolve_objectives(objectives)
    _check_bn_mode(bn_mode, recompute_images)
    dev = resolve_device(model, device)
    data = _eval_set(images, labels, objs, teacher, teacher_logits, batch_size, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    rec_slices = batch_slices(len(rec), data.batch_size)
    shape = tuple(len(g) for g in grids)
    values = {name: np.empty(shape) for name in objs}
    with on_device(model, dev), _layout(model, data, memory_format, dev), _restored(model):
        model.eval()
        if directions is None:
            dirs = [random_direction(model, seed + i) for i in range(len(grids))]
        else:
            dirs = [_check_direction(model, d, f"directions[{i}]") for i, d in enumerate(directions)]
        net, refresh = _evaluated_net(model, fold_bn)
        reference = _evaluate(net, objs, data)
        writer = _PlaneWriter(model, dirs)
        bns = _tracked_bns(model) if bn_mode == "recompute" else []
        for index in np.ndindex(*shape):
            writer.set([g[i] for g, i in zip(grids, index, strict=True)])
            if bns:
                _recompute_bn(model, bns, rec, rec_slices)
            refresh()
            for name, v in _evaluate(net, objs, data).items():
                values[name][index] = v
    return LandscapeResult(
        kind=kind,
        alphas=grids[0],
        betas=grids[1] if len(grids) > 1 else None,
        values=values,
        n_samples=len(data.images),
        bn_mode=bn_mode,
        seed=int(seed) if directions is None else None,
        references={"model": reference},
    )


def landscape_1d(
    model: nn.Module,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    direction: Mapping[str, torch.Tensor] | None = None,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int = 21,
    *,
    seed: int = 0,
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    batch_size: int = 256,
    bn_mode: str = "eval",
    recompute_images: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
) -> LandscapeResult:
    """Objectives along ``θ0 + α·d`` for ``α`` in ``linspace(*span, steps)`` (Li et al. 2018).

    Args:
        model: the network (restored bitwise afterwards).
        objectives: ``{name: callable(logits, labels, teacher_logits)}`` or built-in names (see
            :func:`builtin_objectives`); default: cross-entropy.
        images, labels: the fixed evaluation subset ``(N, C, H, W)``, ``(N,)``.
        direction: ``{parameter name: tensor}``; default: :func:`random_direction` with ``seed``.
        span, steps: the grid of ``α`` (a grid value within ``1e-12·span`` of 0 is set to exactly 0).
        teacher / teacher_logits: needed by ``kd`` and ``agreement``; teacher logits are computed once.
        batch_size: evaluation batch size.
        bn_mode: ``"eval"`` (running statistics; the point ``α = 0`` then reproduces the model's own
            values, bitwise with ``memory_format="contiguous"`` and ``fold_bn=False``) or ``"recompute"`` (statistics
            re-estimated at every point on ``recompute_images``, default the evaluation images).
        device: where to evaluate (the model is moved there and back); default: the model's.
        memory_format: ``"auto"`` (default) evaluates conv nets in channels-last layout on the CPU
            (markedly faster for small conv nets; values then agree with the model's own NCHW
            forward up to float rounding instead of bitwise), ``"contiguous"`` keeps NCHW (the point
            ``α = 0`` then equals the model's own forward bitwise), ``"channels_last"`` forces it.
            The model's tensors get their original layout back.
        fold_bn: evaluate on a copy with each BatchNorm folded into the conv before it, folded
            again after every change of the weights (:class:`workbench.models.fusion.BatchNormFolder`;
            fewer layers per forward, same values up to float rounding). ``False`` evaluates the
            model itself; with ``memory_format="contiguous"`` the point ``α = 0`` is then bitwise.

    Returns:
        :class:`LandscapeResult` of kind ``"1d"``.
    """
    return _slice_landscape(
        "1d",
        model,
        objectives,
        images,
        labels,
        None if direction is None else [direction],
        [_grid(span, steps, "span")],
        seed=seed,
        teacher=teacher,
        teacher_logits=teacher_logits,
        batch_size=batch_size,
        bn_mode=bn_mode,
        recompute_images=recompute_images,
        device=device,
        memory_format=memory_format,
        fold_bn=fold_bn,
    )


def landscape_2d(
    model: nn.Module,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int = 21,
    *,
    span_beta: tuple[float, float] | None = None,
    steps_beta: int | None = None,
    seed: int = 0,
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    batch_size: int = 256,
    bn_mode: str = "eval",
    recompute_images: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
) -> LandscapeResult:
    """Objectives on the plane ``θ0 + α·d1 + β·d2`` (Li et al. 2018, section 4).

    Default directions are :func:`random_direction` with seeds ``seed`` and ``seed + 1``. The grid
    is ``linspace(*span, steps)`` for ``α`` and ``linspace(*span_beta, steps_beta)`` for ``β``
    (default: the same as ``α``). Every grid point is one batched evaluation of the fixed subset;
    all objectives share its forward passes. Other arguments as in :func:`landscape_1d`.

    Returns:
        :class:`LandscapeResult` of kind ``"2d"``; ``values[name]`` has shape ``(len(alphas), len(betas))``.
    """
    if directions is not None and (not isinstance(directions, (tuple, list)) or len(directions) != 2):
        raise AnalysisError("directions: expected a pair (d1, d2) of {parameter name: tensor} mappings")
    grids = [
        _grid(span, steps, "span"),
        _grid(
            span if span_beta is None else span_beta, steps if steps_beta is None else steps_beta, "span_beta"
        ),
    ]
    return _slice_landscape(
        "2d",
        model,
        objectives,
        images,
        labels,
        directions,
        grids,
        seed=seed,
        teacher=teacher,
        teacher_logits=teacher_logits,
        batch_size=batch_size,
        bn_mode=bn_mode,
        recompute_images=recompute_images,
        device=device,
        memory_format=memory_format,
        fold_bn=fold_bn,
    )


# ---- interpolation --------------------------------------------------------------------------------
def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 21,
    bn: str = "recompute",
    recompute_images: torch.Tensor | None = None,
    *,
    span: tuple[float, float] = (0.0, 1.0),
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
) -> LandscapeResult:
    """Objectives along the straight line ``(1-α)·θa + α·θb`` between two networks of one architecture.

    Floating-point parameters and buffers are interpolated (``α = 0`` and ``α = 1`` copy ``a``'s and
    ``b``'s tensors exactly; integer buffers are ``a``'s, ``b``'s at ``α = 1``). BatchNorm:

    * ``bn="recompute"``: at every ``α`` the running mean/variance are reset and re-estimated on
      ``recompute_images`` (default: ``images``) as a cumulative average (``momentum=None``), since
      the average of two networks' statistics is not the statistics of the averaged network;
    * ``bn="running"``: the running statistics are interpolated with the parameters, so the
      endpoints reproduce both models' own values exactly.

    The values are computed in ``model_a`` (restored bitwise afterwards); ``model_b`` is only read.

    Args:
        model_a, model_b: networks with the same parameter and buffer names and shapes.
        objectives, images, labels, teacher, teacher_logits, batch_size, device, memory_format,
            fold_bn: as in
            :func:`landscape_1d`.
        steps: number of points in ``span`` (default ``[0, 1]``; wider spans extrapolate).

    Returns:
        :class:`LandscapeResult` of kind ``"interpolation"``; ``references`` holds both models' own values.
    """
    if bn not in _INTERP_BN:
        raise AnalysisError(f"bn: unknown mode {bn!r}; known: {', '.join(_INTERP_BN)}")
    if recompute_images is not None:
        check_images(recompute_images, "recompute_images")
    objs = _resolve_objectives(objectives)
    alphas = _grid(span, steps, "span")
    dev = resolve_device(model_a, device)
    data = _eval_set(images, labels, objs, teacher, teacher_logits, batch_size, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    rec_slices = batch_slices(len(rec), data.batch_size)

    names_a = _tensors(model_a)
    tensors_b = dict(_tensors(model_b))
    for name, t in names_a:
        other = tensors_b.get(name)
        if other is None:
            raise AnalysisError(
                f"model_b: has no tensor {name!r}; the two models must share one architecture"
            )
        if other.shape != t.shape:
            raise AnalysisError(
                f"model_b: {name!r} has shape {tuple(other.shape)}, model_a's {tuple(t.shape)}"
            )
    extra = [k for k in tensors_b if k not in dict(names_a)]
    if extra:
        raise AnalysisError(f"model_b: has tensor {extra[0]!r} that model_a lacks; architectures differ")

    values = {name: np.empty(len(alphas)) for name in objs}
    with eval_mode(model_b), on_device(model_b, dev):
        ref_b = _evaluate(model_b, objs, data)
    with on_device(model_a, dev), _layout(model_a, data, memory_format, dev), _restored(model_a):
        model_a.eval()
        net, refresh = _evaluated_net(model_a, fold_bn)
        ref_a = _evaluate(net, objs, data)
        pairs = [(t, t.detach().clone(), tensors_b[name].detach().to(dev).clone()) for name, t in names_a]
        bns = _tracked_bns(model_a) if bn == "recompute" else []
        for i, alpha in enumerate(alphas):
            with torch.no_grad():
                for t, ta, tb in pairs:
                    if alpha == 0.0:
                        t.copy_(ta)
                    elif alpha == 1.0 or not t.is_floating_point():
                        t.copy_(tb if alpha == 1.0 else ta)
                    else:
                        t.copy_(ta * (1.0 - alpha) + tb * alpha)
            if bns:
                _recompute_bn(model_a, bns, rec, rec_slices)
            refresh()
            for name, v in _evaluate(net, objs, data).items():
                values[name][i] = v
    return LandscapeResult(
        kind="interpolation",
        alphas=alphas,
        betas=None,
        values=values,
        n_samples=len(data.images),
        bn_mode=bn,
        references={"model_a": ref_a, "model_b": ref_b},
    )


# ---- Hessian --------------------------------------------------------------------------------------
@dataclass
class HessianEigenResult:
    """The Hessian eigenvalue of largest magnitude (with its sign) from power iteration.

    ``history`` holds the Rayleigh quotient after each iteration.
    """

    eigenvalue: float
    iterations: int
    converged: bool
    history: np.ndarray
    n_samples: int


@dataclass
class HessianTraceResult:
    """Hutchinson's estimate of the Hessian trace: the mean of ``zᵀHz`` over Rademacher probes ``z``.

    ``std_error`` is the standard error of that mean; ``estimates`` the per-probe values.
    """

    trace: float
    std_error: float
    samples: int
    estimates: np.ndarray
    n_samples: int


class _HessianVectorProduct:
    """``v -> H v`` for the mean objective over a fixed data set (double backprop, batched)."""

    def __init__(
        self, model: nn.Module, loss_fn: ObjectiveFn, data: _EvalSet, params: list[torch.Tensor]
    ) -> None:
        self.model, self.loss_fn, self.data, self.params = model, loss_fn, data, params
        self.n = len(data.images)

    def __call__(self, vs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in self.params]
        for sl in self.data.slices:
            with torch.enable_grad():
                logits = self.model(self.data.images[sl])
                t = self.data.teacher_logits[sl] if self.data.teacher_logits is not None else None
                loss = torch.as_tensor(self.loss_fn(logits, self.data.labels[sl], t)).reshape(())
                loss = loss * ((sl.stop - sl.start) / self.n)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                dot = sum(
                    ((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None),
                    start=torch.zeros((), device=loss.device, dtype=loss.dtype),
                )
                if not dot.requires_grad:
                    continue
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            for acc, h in zip(out, hv, strict=True):
                if h is not None:
                    acc.add_(h.detach())
        return out


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


@contextmanager
def _hessian_setup(
    model: nn.Module,
    loss_fn: ObjectiveFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher: nn.Module | None,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    device: str | torch.device | None,
) -> Iterator[tuple[_HessianVectorProduct, list[torch.Tensor]]]:
    if not callable(loss_fn):
        raise AnalysisError("loss_fn: expected a callable(logits, labels, teacher_logits) -> mean loss")
    dev = resolve_device(model, device)
    data = _eval_set(images, labels, {"loss": loss_fn}, teacher, teacher_logits, batch_size, dev)
    with on_device(model, dev), _restored(model):
        model.eval()
        params = [p for p in model.parameters()]
        if not params:
            raise AnalysisError("model: has no parameters; its Hessian is empty")
        flags = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(True)
            yield _HessianVectorProduct(model, loss_fn, data, params), params
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)


def hessian_top_eigenvalue(
    model: nn.Module,
    loss_fn: ObjectiveFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    *,
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> HessianEigenResult:
    """Largest-magnitude eigenvalue of the Hessian of the mean objective, with its sign.

    Power iteration (von Mises) on Hessian-vector products computed by double backprop
    (Pearlmutter 1994) over all parameters, BatchNorm in eval mode: ``v <- Hv / ‖Hv‖``; the
    estimate is the Rayleigh quotient ``vᵀHv`` (so a dominant negative eigenvalue keeps its sign).
    Stops when the estimate changes by at most ``tol · |estimate|`` between two iterations.

    Args:
        model: the network (restored bitwise, including ``requires_grad`` flags).
        loss_fn: ``callable(logits, labels, teacher_logits)`` -> batch mean, e.g. ``cross_entropy``
            or ``kd(4.0)`` (then pass ``teacher`` or ``teacher_logits``).
        images, labels: the data set the objective is averaged over.
        iters: maximum number of iterations. tol: relative tolerance. seed: start vector seed.
        batch_size, device: batching and placement.

    Returns:
        :class:`HessianEigenResult`.
    """
    n_iter = check_positive_int(iters, "iters")
    tol_f = check_positive_float(tol, "tol")
    with _hessian_setup(model, loss_fn, images, labels, teacher, teacher_logits, batch_size, device) as (
        hvp,
        params,
    ):
        gen = torch.Generator().manual_seed(int(seed))
        v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
        norm = np.sqrt(_dot(v, v))
        v = [x / norm for x in v]
        history: list[float] = []
        converged = False
        for _ in range(n_iter):
            hv = hvp(v)
            lam = _dot(v, hv)
            history.append(lam)
            hv_norm = np.sqrt(_dot(hv, hv))
            if hv_norm == 0.0:
                converged = True
                break
            v = [h / hv_norm for h in hv]
            if len(history) > 1 and abs(history[-1] - history[-2]) <= tol_f * abs(history[-1]):
                converged = True
                break
    return HessianEigenResult(
        eigenvalue=history[-1],
        iterations=len(history),
        converged=converged,
        history=np.asarray(history),
        n_samples=len(images),
    )


def hessian_trace(
    model: nn.Module,
    loss_fn: ObjectiveFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: int = 100,
    seed: int = 0,
    *,
    teacher: nn.Module | None = None,
    teacher_logits: torch.Tensor | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> HessianTraceResult:
    """Hutchinson's estimator of the Hessian trace: ``tr(H) ≈ mean_i z_iᵀ H z_i``, ``z_i`` Rademacher.

    Hutchinson 1989 (unbiased; variance ``2 Σ_{i≠j} H_ij²`` per probe). Probes are drawn on the CPU
    from ``seed``; Hessian-vector products as in :func:`hessian_top_eigenvalue`.

    Args:
        model, loss_fn, images, labels, teacher, teacher_logits, batch_size, device: as in
            :func:`hessian_top_eigenvalue`.
        samples: number of probe vectors.
        seed: probe seed.

    Returns:
        :class:`HessianTraceResult`.
    """
    n_probe = check_positive_int(samples, "samples")
    with _hessian_setup(model, loss_fn, images, labels, teacher, teacher_logits, batch_size, device) as (
        hvp,
        params,
    ):
        gen = torch.Generator().manual_seed(int(seed))
        estimates = np.empty(n_probe)
        for i in range(n_probe):
            z = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params]
            estimates[i] = _dot(z, hvp(z))
    err = float(estimates.std(ddof=1) / np.sqrt(n_probe)) if n_probe > 1 else float("nan")
    return HessianTraceResult(
        trace=float(estimates.mean()),
        std_error=err,
        samples=n_probe,
        estimates=estimates,
        n_samples=len(images),
    )
