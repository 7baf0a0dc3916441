"""Loss landscapes and linear interpolation between two networks (curvature: :mod:`.hessian`).

* Random directions and 1-D / 2-D slices follow Li, Xu, Taylor, Studer & Goldstein 2018,
  "Visualizing the Loss Landscape of Neural Nets": a Gaussian direction is filter-normalized
  (each filter of the direction gets the norm of the matching filter of the weights) and biases
  and normalization-layer parameters are left out ("ignore biasbn").
* Interpolation ``(1-α)·θa + α·θb`` is the linear path of Goodfellow, Vinyals & Saxe 2015; the
  BatchNorm statistics along it are re-estimated at every point (averaging running statistics is
  not the statistics of the averaged network), or interpolated with the parameters.

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

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    batched_logits,
    check_class_names,
    check_images,
    check_labels,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis._result import AnalysisResult
from workbench.distill.functional import kd_loss
from workbench.models.fusion import BatchNormFolder
from workbench.models.layout import MEMORY_FORMATS, as_channels_last, channels_last, wants_channels_last
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = [
    "BN_MODES",
    "ORDERS",
    "LandscapeResult",
    "Objective",
    "accuracy",
    "agreement",
    "builtin_objectives",
    "cross_entropy",
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
                f"objective {self.name!r}: needs teacher logits; pass the teacher or teacher_logits="
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
    device: str | torch.device | None,
    dev: torch.device,
) -> _EvalSet:
    """Validate the evaluation subset, move it to ``dev`` and compute the teacher's logits once
    (on a working copy of the teacher, only when an objective needs them)."""
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    check_model(teacher, "teacher", optional=True)
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
        t = teacher_logits.detach().to(dev)
    elif need and teacher is not None:
        t_dev = resolve_device(teacher, device)
        t = batched_logits(working_copy(teacher, t_dev), images, bs, t_dev).to(dev)
    elif need:
        raise AnalysisError(
            "teacher: an objective needs the teacher's logits; pass the teacher or teacher_logits="
        )
    return _EvalSet(images.to(dev), y.to(dev), t, batch_slices(len(images), bs), bs)


def _accumulate(
    sums: dict[str, torch.Tensor],
    objs: Mapping[str, ObjectiveFn],
    logits: torch.Tensor,
    data: _EvalSet,
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


def _evaluate(model: nn.Module, objs: Mapping[str, ObjectiveFn], data: _EvalSet) -> dict[str, float]:
    """Size-weighted mean of every objective over the evaluation set (one forward per batch)."""
    n = len(data.images)
    sums: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for sl in data.slices:
            _accumulate(sums, objs, model(data.images[sl]), data, sl)
    return {name: float(s) / n for name, s in sums.items()}


def _evaluate_stacked(
    net: nn.Module,
    stacked: dict[str, torch.Tensor],
    shared: dict[str, torch.Tensor],
    objs: Mapping[str, ObjectiveFn],
    data: _EvalSet,
) -> list[dict[str, float]]:
    """:func:`_evaluate` for ``P`` networks at once: ``net`` with the tensors of ``stacked`` (each
    ``(P, ...)``) and ``shared`` (the same for all), one vmapped forward per batch for all ``P``."""
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


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (persistent or not) by name, shared tensors once."""
    return list(model.named_parameters()) + list(model.named_buffers())


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


def _evaluated_net(
    model: nn.Module, fold_bn: bool, example: torch.Tensor | None = None
) -> tuple[nn.Module, Callable[[], None], list[tuple[str, str]]]:
    """The network the objectives are evaluated on, the call that refreshes it after the
    model's tensors change, and its folded ``(conv path, bn path)`` pairs: with ``fold_bn`` a copy
    with BatchNorm folded into the convs before it (:class:`workbench.models.fusion.BatchNormFolder`),
    else the model itself (a no-op, no pairs). ``example`` (a couple of the inputs) lets the pairs
    be found by a thread-safe probe rather than an fx trace."""
    if fold_bn:
        try:
            folder = BatchNormFolder(model, example=example)
        except Exception:  # a model that cannot be deep-copied is evaluated as it is
            return model, _nothing, []
        return folder.model, folder.sync, list(folder.pairs)
    return model, _nothing, []


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
    """Writes ``θ0 + Σ_i c_i d_i`` into the parameters in place (parameters with a zero direction
    skipped), or builds the stacked tensors of many points for a vmapped evaluation."""

    def __init__(self, model: nn.Module, directions: Sequence[Mapping[str, torch.Tensor]]) -> None:
        self.entries = []
        self.names: list[str] = []
        for name, p in model.named_parameters():
            ds = [d[name] for d in directions]
            if any(bool(d.any()) for d in ds):
                self.entries.append((p, p.detach().clone(), ds))
                self.names.append(name)

    def stacked(self, coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (P, ...) tensor}`` of the perturbed parameters at the ``P`` points ``coeffs``
        ``(P, n_directions)`` (float64 coefficients, as :meth:`set` uses them)."""
        out = {}
        for name, (_, base, ds) in zip(self.names, self.entries, strict=True):
            shape = (-1,) + (1,) * base.ndim
            value = base.unsqueeze(0)
            for i, d in enumerate(ds):
                c = coeffs[:, i].to(device=base.device, dtype=base.dtype).reshape(shape)
                value = value + c * d.unsqueeze(0)
            out[name] = value.expand(coeffs.shape[0], *base.shape)
        return out

    def set(self, coeffs: Sequence[float]) -> None:
        with torch.no_grad():
            for p, base, ds in self.entries:
                p.copy_(base)
                for c, d in zip(coeffs, ds, strict=True):
                    if c != 0.0:
                        p.add_(d, alpha=float(c))


def _stacked_tensors(
    model: nn.Module, pairs: Sequence[tuple[str, str]], writer: _PlaneWriter, coeffs: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tensors of the evaluated network at the points ``coeffs`` ``(P, n_directions)``, split
    into ``stacked`` (``(P, ...)``, one per point) and ``shared`` (the same at every point), for
    :func:`_evaluate_stacked`.

    The perturbed parameters come from ``writer``; each folded ``(conv, bn)`` pair is folded again
    per point with the formula of :mod:`workbench.models.fusion` (``s = γ / sqrt(var + eps)``,
    ``W' = W·s``, ``b' = (b - μ)·s + β``), batched over the points. Tensors the evaluated network
    holds unchanged at every point are not listed (it keeps its own).
    """
    perturbed = writer.stacked(coeffs)

    def get(path: str, attr: str) -> torch.Tensor | None:
        name = f"{path}.{attr}" if path else attr
        if name in perturbed:
            return perturbed[name]
        t = getattr(model.get_submodule(path), attr, None)
        return t.detach() if isinstance(t, torch.Tensor) else None

    stacked: dict[str, torch.Tensor] = {}
    shared: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for conv_path, bn_path in pairs:
        conv = model.get_submodule(conv_path)
        bn = model.get_submodule(bn_path)
        w, b = get(conv_path, "weight"), get(conv_path, "bias")
        mean, var = get(bn_path, "running_mean"), get(bn_path, "running_var")
        gamma, beta = get(bn_path, "weight"), get(bn_path, "bias")
        assert w is not None and mean is not None and var is not None
        dev, dt = w.device, torch.promote_types(w.dtype, var.dtype)
        mean, var = mean.to(dev, dt), var.to(dev, dt)
        gamma = gamma.to(dev, dt) if gamma is not None else torch.ones_like(var)
        beta = beta.to(dev, dt) if beta is not None else torch.zeros_like(var)
        scale = gamma / torch.sqrt(var + bn.eps)
        bias = b.to(dev, dt) if b is not None else torch.zeros_like(mean)
        ndim = conv.weight.ndim
        new_w = (w.to(dt) * scale.reshape(*scale.shape, *([1] * (ndim - 1)))).to(conv.weight.dtype)
        bias_dtype = conv.bias.dtype if conv.bias is not None else conv.weight.dtype
        new_b = ((bias - mean) * scale + beta).to(bias_dtype)
        for name, value, plain_ndim in ((f"{conv_path}.weight", new_w, ndim), (f"{conv_path}.bias", new_b, 1)):
            (stacked if value.ndim > plain_ndim else shared)[name] = value
        used.update(f"{path}.{attr}" for path in (conv_path, bn_path) for attr in ("weight", "bias"))
    for name, value in perturbed.items():
        if name not in used:
            stacked[name] = value
    return stacked, shared


#: points evaluated in one vmapped call with ``points_per_batch="auto"`` on CUDA: about this many
#: samples per call (``points = max(1, min(64, _AUTO_SAMPLES // batch_size))``)
_AUTO_SAMPLES = 8192


def _points_per_batch(value: object, device: torch.device, batch_size: int, bn_mode: str) -> int:
    """Resolve ``points_per_batch``: ``"auto"`` is 1 on the CPU (stacking points does not make the
    CPU's convolutions faster) and about ``_AUTO_SAMPLES / batch_size`` on CUDA; ``"recompute"``
    BatchNorm statistics are estimated per point, so that mode evaluates one point at a time."""
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


# ---- results ------------------------------------------------------------------------------------
@dataclass
class LandscapeResult(AnalysisResult):
    """Objective values on a line, a plane or an interpolation path.

    ``kind`` is ``"1d"``, ``"2d"`` or ``"interpolation"``. For 1-D and interpolation,
    ``values[name][i]`` is at ``alphas[i]``; for 2-D, ``values[name][i, j]`` is at
    ``θ0 + alphas[i]·d1 + betas[j]·d2``. ``references`` holds the objectives of the unperturbed
    network(s) with their own BatchNorm buffers: ``{"model": ...}`` for slices,
    ``{"start": ..., "end": ...}`` for interpolation. A partial result (handed to ``on_row`` while
    the grid fills in) has ``complete=False`` and NaN where a point is not computed yet.
    """

    kind: str
    alphas: np.ndarray
    betas: np.ndarray | None
    values: dict[str, np.ndarray]
    n_samples: int
    bn_mode: str
    seed: int | None = None
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    complete: bool = True
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def objectives(self) -> list[str]:
        """Names of the evaluated objectives."""
        return list(self.values)


ORDERS = ("rows", "coarse_to_fine")


def _visit_order(shape: tuple[int, ...], order: str) -> list[tuple[int, ...]]:
    """Grid indices in evaluation order: row-major, or coarse to fine (every ``2^k``-th point of
    each axis first, ``k`` decreasing, each level row-major)."""
    points = list(np.ndindex(*shape))
    if order == "rows":
        return points
    stride = 1
    while stride * 2 < max(shape):
        stride *= 2
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while stride >= 1:
        for p in points:
            if p not in seen and all(i % stride == 0 for i in p):
                seen.add(p)
                out.append(p)
        stride //= 2
    return out


def _chunks(points: list[tuple[int, ...]], n: int) -> list[list[tuple[int, ...]]]:
    """``points`` in ``n`` consecutive chunks of (almost) equal size."""
    bounds = np.linspace(0, len(points), n + 1).round().astype(int)
    return [points[bounds[i] : bounds[i + 1]] for i in range(n)]


def _check_on_row(on_row: object) -> None:
    if on_row is not None and not callable(on_row):
        raise AnalysisError(f"on_row: expected a callable(partial LandscapeResult), got {type(on_row).__name__}")


def _check_order(order: object) -> str:
    if order not in ORDERS:
        raise AnalysisError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
    return str(order)


def _fill_grid(
    shape: tuple[int, ...],
    order: str,
    objs: Mapping[str, ObjectiveFn],
    evaluate: Callable[[list[tuple[int, ...]]], list[dict[str, float]]],
    track: Tracker,
    make_result: Callable[[dict[str, np.ndarray], bool], LandscapeResult],
    on_row: Callable[[LandscapeResult], None] | None,
    label: str,
    group: int = 1,
) -> dict[str, np.ndarray]:
    """Evaluate every grid point in ``order``, in ``shape[0]`` chunks (a 2-D grid: one row's worth
    each), ``evaluate(points)`` taking up to ``group`` points of one chunk at a time; after each
    chunk report progress and hand ``on_row`` a partial result (NaN where not computed yet).
    Checks for a stop before every group of points."""
    values = {name: np.full(shape, np.nan) for name in objs}
    chunks = _chunks(_visit_order(shape, order), shape[0])
    for k, chunk in enumerate(chunks, start=1):
        for start in range(0, len(chunk), group):
            track.check()
            points = chunk[start : start + group]
            for index, point in zip(points, evaluate(points), strict=True):
                for name, v in point.items():
                    values[name][index] = v
        last = k == len(chunks)
        if on_row is not None:
            on_row(make_result({n: v.copy() for n, v in values.items()}, last))
        track.report(k, f"{label}: {k}/{len(chunks)}")
        if not last:
            track.check()
    return values


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
    objs = _resolve_objectives(objectives)
    _check_bn_mode(bn_mode, recompute_images)
    order = _check_order(order)
    _check_on_row(on_row)
    pair = check_names(names)
    classes = check_class_names(class_names)
    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    shape = tuple(len(g) for g in grids)
    label = f"landscape {kind}"
    track = new_tracker(progress, cancel, shape[0], label)
    track.start()
    dev = resolve_device(student, device)
    data = _eval_set(images, labels, objs, teacher, teacher_logits, batch_size, device, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    rec_slices = batch_slices(len(rec), data.batch_size)
    ppb = _points_per_batch(points_per_batch, dev, data.batch_size, bn_mode)
    model = working_copy(student, dev)
    track.check()
    params = {
        "objectives": list(objs),
        "seed": int(seed) if directions is None else None,
        "points_per_batch": ppb,
        "bn_mode": bn_mode,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
        "order": order,
        "batch_size": data.batch_size,
        "span": [float(grids[0][0]), float(grids[0][-1])],
        "steps": list(shape),
    }
    with _layout(model, data, memory_format, dev):
        if directions is None:
            dirs = [random_direction(model, seed + i) for i in range(len(grids))]
        else:
            dirs = [_check_direction(model, d, f"directions[{i}]") for i, d in enumerate(directions)]
        net, refresh, pairs = _evaluated_net(model, fold_bn, data.images[:2])
        reference = _evaluate(net, objs, data)
        writer = _PlaneWriter(model, dirs)
        bns = _tracked_bns(model) if bn_mode == "recompute" else []
        per_call = [ppb]

        def evaluate_at(index: tuple[int, ...]) -> dict[str, float]:
            writer.set([g[i] for g, i in zip(grids, index, strict=True)])
            if bns:
                _recompute_bn(model, bns, rec, rec_slices)
            refresh()
            return _evaluate(net, objs, data)

        def evaluate(points: list[tuple[int, ...]]) -> list[dict[str, float]]:
            out: list[dict[str, float]] = []
            while len(out) < len(points):
                part = points[len(out) : len(out) + per_call[0]]
                if len(part) == 1 or not writer.entries:
                    out.extend(evaluate_at(index) for index in part)
                    continue
                coeffs = torch.tensor(
                    [[float(g[i]) for g, i in zip(grids, index, strict=True)] for index in part],
                    dtype=torch.float64,
                )
                try:
                    stacked, shared = _stacked_tensors(model, pairs, writer, coeffs)
                    out.extend(_evaluate_stacked(net, stacked, shared, objs, data))
                except RuntimeError as err:  # too many points for the device: halve and go on
                    if not _out_of_memory(err):
                        raise
                    del err
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    per_call[0] = max(1, len(part) // 2)
            return out

        def make_result(values: dict[str, np.ndarray], complete: bool) -> LandscapeResult:
            return LandscapeResult(
                kind=kind,
                alphas=grids[0],
                betas=grids[1] if len(grids) > 1 else None,
                values=values,
                n_samples=len(data.images),
                bn_mode=bn_mode,
                seed=int(seed) if directions is None else None,
                references={"model": dict(reference)},
                complete=complete,
                names=pair,
                class_names=classes,
                params=dict(params),
            )

        values = _fill_grid(shape, order, objs, evaluate, track, make_result, on_row, label, ppb)
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
        objectives: a built-in name (see :func:`builtin_objectives`), a list of names, or
            ``{name: callable(logits, labels, teacher_logits)}``; all share each point's forwards.
        direction: ``{parameter name: tensor}``; default: :func:`random_direction` with ``seed``.
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
        [_grid(span, steps, "span")],
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

    Default directions are :func:`random_direction` with seeds ``seed`` and ``seed + 1``. The grid
    is ``linspace(*span, steps)`` for ``α`` and ``linspace(*span_beta, steps_beta)`` for ``β``
    (default: the same as ``α``). Every grid point is one batched evaluation of the fixed subset;
    all objectives share its forward passes. Progress is reported once per row (``steps`` rows);
    ``on_row(partial)`` gets the grid after every row (NaN where not computed yet), so a page can
    draw it filling in. With ``order="coarse_to_fine"`` every 2^k-th point of each axis comes
    first (a coarse picture early), still in ``steps`` equal chunks. Other arguments as in
    :func:`landscape_1d`.

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


# ---- interpolation --------------------------------------------------------------------------------
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
        progress, cancel, on_row: once per point, as in :func:`landscape_1d`.
        Others as in :func:`landscape_1d`.

    Returns:
        :class:`LandscapeResult` of kind ``"interpolation"``; ``references`` holds both models' own
        values under ``"start"`` and ``"end"``.
    """
    check_model(start, "start")
    check_model(end, "end")
    if bn_mode not in _INTERP_BN:
        raise AnalysisError(f"bn_mode: unknown mode {bn_mode!r}; known: {', '.join(_INTERP_BN)}")
    if recompute_images is not None:
        check_images(recompute_images, "recompute_images")
    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    _check_on_row(on_row)
    objs = _resolve_objectives(objectives)
    alphas = _grid(span, steps, "span")
    pair = check_names(names, ("start", "end"))
    classes = check_class_names(class_names)

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

    label = "interpolation"
    track = new_tracker(progress, cancel, len(alphas), label)
    track.start()
    dev = resolve_device(start, device)
    data = _eval_set(images, labels, objs, teacher, teacher_logits, batch_size, device, dev)
    rec = data.images if recompute_images is None else recompute_images.to(dev)
    rec_slices = batch_slices(len(rec), data.batch_size)
    end_copy = working_copy(end, dev)
    ref_b = _evaluate(end_copy, objs, data)
    tensors_end = dict(_tensors(end_copy))
    model = working_copy(start, dev)
    track.check()
    params = {
        "objectives": list(objs),
        "bn_mode": bn_mode,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
        "batch_size": data.batch_size,
        "span": [float(alphas[0]), float(alphas[-1])],
        "steps": len(alphas),
    }
    with _layout(model, data, memory_format, dev):
        net, refresh, _ = _evaluated_net(model, fold_bn, data.images[:2])
        ref_a = _evaluate(net, objs, data)
        pairs = [(t, t.detach().clone(), tensors_end[name].detach().clone()) for name, t in _tensors(model)]
        del end_copy, tensors_end
        bns = _tracked_bns(model) if bn_mode == "recompute" else []

        def evaluate_at(index: tuple[int, ...]) -> dict[str, float]:
            alpha = float(alphas[index[0]])
            with torch.no_grad():
                for t, ta, tb in pairs:
                    if alpha == 0.0:
                        t.copy_(ta)
                    elif alpha == 1.0 or not t.is_floating_point():
                        t.copy_(tb if alpha == 1.0 else ta)
                    else:
                        t.copy_(ta * (1.0 - alpha) + tb.to(t.dtype) * alpha)
            if bns:
                _recompute_bn(model, bns, rec, rec_slices)
            refresh()
            return _evaluate(net, objs, data)

        def make_result(values: dict[str, np.ndarray], complete: bool) -> LandscapeResult:
            return LandscapeResult(
                kind="interpolation",
                alphas=alphas,
                betas=None,
                values=values,
                n_samples=len(data.images),
                bn_mode=bn_mode,
                references={"start": dict(ref_a), "end": dict(ref_b)},
                complete=complete,
                names=pair,
                class_names=classes,
                params=dict(params),
            )

        values = _fill_grid(
            (len(alphas),),
            "rows",
            objs,
            lambda points: [evaluate_at(index) for index in points],
            track,
            make_result,
            on_row,
            label,
        )
    return make_result(values, True)


_MOVED = ("HessianEigenResult", "HessianTraceResult", "hessian_top_eigenvalue", "hessian_trace")


def __getattr__(name: str) -> Any:
    # the Hessian estimates moved to workbench.analysis.hessian
    if name in _MOVED:
        from workbench.analysis import hessian

        return getattr(hessian, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
