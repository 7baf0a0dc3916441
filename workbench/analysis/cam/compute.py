"""One model's class activation maps (or pixel attributions) for a batch of images: :func:`compute_cams`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_label_range,
    check_memory_format,
    check_positive_int,
    resolve_device,
    working_copy,
)
from workbench.analysis.cam import metrics
from workbench.analysis.cam._checks import (
    check_class_names,
    check_images4d,
    check_labels_cpu,
    did_you_mean,
    explicit_targets,
)
from workbench.analysis.cam.registry import (
    BatchContext,
    CAMMethod,
    get_cam_method,
    parse_cam_params,
    probe_layer,
)
from workbench.analysis.cam.results import CAMResult
from workbench.errors import one_line
from workbench.models.errors import ModelError
from workbench.models.fusion import fold_batchnorm
from workbench.models.layout import channels_last, input_layout, wants_channels_last
from workbench.models.taps import get_module, last_conv_layer, split_path
from workbench.runtime import CancelToken, Tracker

__all__ = ["TARGET_MODES", "compute_cams", "normalize_target", "own_copy"]

TARGET_MODES = ("label", "predicted", "teacher", "student")
"""Named ways of choosing the class whose map is drawn (besides an int or a per-image tensor):
the true label, each model's own prediction, the teacher's prediction, the student's prediction."""

_ALIASES = {"pred": "predicted"}
_TARGET_NAMES = {"label": "labels", "teacher": "teacher predictions", "explicit": "target"}

Target = str | int | torch.Tensor | np.ndarray | Sequence[int]


def normalize_target(target: object) -> str | None:
    """A named target mode (``"pred"`` read as ``"predicted"``), or None for an int/tensor target."""
    if target is None:
        return "predicted"
    if not isinstance(target, str):
        return None
    mode = _ALIASES.get(target, target)
    if mode not in TARGET_MODES:
        raise AnalysisError(
            f"target: unknown mode {target!r}{did_you_mean(target, TARGET_MODES) or ';'} "
            f"known: {', '.join(TARGET_MODES)}, a class index or a tensor of classes"
        )
    return mode


def _drop_hooks(model: nn.Module) -> None:
    for m in model.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
        m._backward_hooks.clear()
        getattr(m, "_backward_pre_hooks", {}).clear()


def own_copy(
    model: nn.Module,
    device: torch.device,
    fold_bn: bool,
    keep: Sequence[str] = (),
    *,
    example: torch.Tensor | None = None,
) -> nn.Module:
    """The analysis's own copy of ``model``: eval mode, on ``device``, parameters frozen, no hooks.

    With ``fold_bn`` it is the BatchNorm-folded copy of :func:`workbench.models.fusion.fold_batchnorm`
    (the modules at ``keep`` never folded away; the pairs found by one forward pass on ``example``,
    a few of the analysed images, which is safe while other threads run forwards) post-processed in
    place, so the model is copied once; otherwise :func:`workbench.analysis._common.working_copy`.
    The caller's model is never touched. A model that cannot be deep-copied is a one-line :class:`AnalysisError`.
    """
    if not isinstance(model, nn.Module):
        raise AnalysisError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    try:
        if not fold_bn:
            return working_copy(model, device)
        work, _ = fold_batchnorm(model, keep=list(keep), example=example)
    except (AnalysisError, ModelError):
        raise
    except Exception as err:  # deepcopy of exotic modules
        raise AnalysisError(f"model: cannot be copied for the analysis: {one_line(err)}") from None
    _drop_hooks(work)
    work = work.to(device).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    return work


def _check_layer_arg(layer: object, spec: CAMMethod) -> str | None:
    if not spec.needs_layer:
        if layer is not None and layer != "input":
            raise AnalysisError(
                f"layer: method {spec.name!r} attributes to the input pixels; leave layer=None, got {layer!r}"
            )
        return "input"
    if layer is None:
        return None
    if not isinstance(layer, str) or not layer:
        raise AnalysisError(f"layer: expected a module path such as 'layer3', got {layer!r}")
    return layer


def _declared_layer(model: nn.Module) -> str | None:
    """The default CAM layer when the model declares its stages (no forward pass needed), else None."""
    try:
        return last_conv_layer(model)
    except ModelError:
        return None


def _predict(
    model: nn.Module,
    images: torch.Tensor,
    slices: list[slice],
    device: torch.device,
    layout: Callable[[torch.Tensor], torch.Tensor],
    track: Tracker,
) -> torch.Tensor:
    """Logits ``(N, K)`` (float32, CPU) of ``model`` batch by batch; one progress unit per batch."""
    outs = []
    for sl in slices:
        track.check()
        with torch.inference_mode():
            out = model(layout(images[sl].to(device)))
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise AnalysisError(f"model: expected logits of shape (N, K) from forward, got {shown}")
        outs.append(out.float().cpu())
        track.report(track.done + 1)
    return torch.cat(outs)


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == size:
        return maps
    return LayerAttribution.interpolate(maps.unsqueeze(1), size, interpolate_mode="bilinear").squeeze(1)


def _check_target_args(
    target: Target, labels: torch.Tensor | np.ndarray | None, teacher: nn.Module | None, n: int
) -> tuple[str | None, torch.Tensor | None, torch.Tensor | None]:
    """``(target mode or None, labels as int64 CPU (n,) or None, explicit targets or None)``."""
    mode = normalize_target(target)
    label_t = None if labels is None else check_labels_cpu(labels, n, "labels")
    if mode == "label" and label_t is None:
        raise AnalysisError("labels: target='label' needs labels, got None")
    if mode == "teacher" and not isinstance(teacher, nn.Module):
        raise AnalysisError(f"teacher: target='teacher' needs a teacher model, got {type(teacher).__name__}")
    explicit = explicit_targets(target, n, None, TARGET_MODES) if mode is None else None
    return mode, label_t, explicit


def _working_model(
    model: nn.Module,
    images: torch.Tensor,
    image_shape: tuple[int, int, int],
    layer_arg: str | None,
    device: torch.device,
    fold_bn: bool,
) -> tuple[nn.Module, str]:
    """The analysis's own copy of ``model`` (the maps' layer never folded away) and that layer's path."""
    if layer_arg is not None:
        keep = [] if layer_arg == "input" else [split_path(layer_arg)[0]]
    else:
        declared = _declared_layer(model)
        keep = [] if declared is None else [split_path(declared)[0]]
    work = own_copy(model, device, fold_bn, keep, example=images[:2])
    if layer_arg is None:
        return work, last_conv_layer(work, input_shape=image_shape)
    if layer_arg != "input":
        get_module(work, split_path(layer_arg)[0])
    return work, layer_arg


def _plan_batches(
    spec: CAMMethod, ctx: BatchContext, images: torch.Tensor, mode: str | None, track: Tracker
) -> tuple[int | None, list[slice], list[int]]:
    """Prepare ``spec`` for the call and start ``track`` over every pass.

    Returns ``(number of classes when a layer probe found it, else None; batch slices; progress
    units per batch)``.
    """
    k: int | None = None
    if spec.needs_layer:
        grid_shape, k = probe_layer(ctx.model, ctx.layer, ctx.layout(images[:1].to(ctx.device)))
        ctx.state["channels"] = int(grid_shape[1])
    spec.prepare(ctx, images)
    slices = batch_slices(int(images.shape[0]), ctx.batch_size)
    units = [spec.units(ctx, sl.stop - sl.start) for sl in slices]
    passes = (0 if spec.fused else 1) + (1 if mode == "teacher" else 0)
    track.total = max(sum(units) + passes * len(slices), 1)
    track.start()
    return k, slices, units


def _teacher_predictions(
    teacher: nn.Module,
    images: torch.Tensor,
    slices: list[slice],
    device: torch.device,
    fold_bn: bool,
    memory_format: str,
    track: Tracker,
) -> torch.Tensor:
    """The teacher's predicted class per image, from its own copy (one progress unit per batch)."""
    t_work = own_copy(teacher, device, fold_bn, example=images[:2])
    t_nhwc = wants_channels_last(memory_format, device, t_work)
    with channels_last(t_work, enabled=t_nhwc):
        t_logits = _predict(t_work, images, slices, device, input_layout(t_nhwc), track)
    del t_work
    return t_logits.argmax(dim=1)


@dataclass
class _Collected:
    """The per-batch outputs of a method, on the CPU, in batch order."""

    raws: list[torch.Tensor] = field(default_factory=list)
    attrs: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)


def _run_batches(
    spec: CAMMethod,
    ctx: BatchContext,
    images: torch.Tensor,
    slices: list[slice],
    units: list[int],
    targets: torch.Tensor | None,
    track: Tracker,
) -> _Collected:
    """Run ``spec`` on every batch; ``units[i]`` progress units for batch ``i`` (finer ticks inside it)."""
    got = _Collected()
    for sl, u in zip(slices, units, strict=True):
        track.check()
        base, sub = track.done, 0

        def tick(count: int = 1, base: int = base, u: int = u) -> None:
            nonlocal sub
            sub = min(sub + count, u - 1)
            track.report(base + sub)

        ctx.tick = tick
        t = None if targets is None else targets[sl].to(ctx.device)
        out = spec.run_batch(ctx, ctx.layout(images[sl].to(ctx.device)), t)
        got.raws.append(out.raw.detach().float().cpu())
        if out.attributions is not None:
            got.attrs.append(out.attributions.detach().float().cpu())
        if out.logits is not None:
            got.logits.append(out.logits.detach().float().cpu())
        if out.targets is not None:
            got.targets.append(out.targets.detach().cpu())
        elif t is not None:
            got.targets.append(t.detach().cpu())
        track.report(base + u)
        track.check()
    return got


def _cam_result(
    cls: type[CAMMethod],
    got: _Collected,
    logits: torch.Tensor | None,
    targets: torch.Tensor | None,
    names: list[str] | None,
    size: tuple[int, int],
    params: dict[str, Any],
) -> CAMResult:
    """The :class:`CAMResult` of the collected batches (``logits``/``targets`` from them when None)."""
    raw = torch.cat(got.raws)
    if logits is None:
        logits = torch.cat(got.logits)
    probs = torch.softmax(logits.float(), dim=1)
    if names is not None:
        names = check_class_names(names, int(probs.shape[1]))
    if targets is None:
        targets = torch.cat(got.targets)
    shown = torch.relu(raw) if cls.relu else raw
    return CAMResult(
        method=cls.name,
        layer=params["layer"],
        target_mode=params["target"],
        targets=targets.numpy().astype(np.int64),
        predictions=probs.argmax(dim=1).numpy().astype(np.int64),
        probabilities=probs.numpy().astype(np.float32),
        raw=raw.numpy().astype(np.float32),
        upsampled_raw=_upsample(raw, size).numpy().astype(np.float32),
        maps=metrics.normalize_maps(_upsample(shown, size)).numpy().astype(np.float32),
        attributions=torch.cat(got.attrs).numpy().astype(np.float32) if got.attrs else None,
        class_names=names,
        params=params,
    )


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target: Target = "predicted",
    labels: torch.Tensor | np.ndarray | None = None,
    teacher: nn.Module | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    memory_format: str = "auto",
    fold_bn: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **method_params: Any,
) -> CAMResult:
    """Maps of ``model`` for every image of ``images`` ``(N, C, H, W)`` (normalized floats).

    ``method``: a name of :func:`workbench.analysis.cam.list_cam_methods` (Grad-CAM, Grad-CAM++,
    HiResCAM, LayerCAM, Eigen-CAM, Score-CAM, CAM, Integrated Gradients, Saliency, SmoothGrad,
    Occlusion); ``method_params``: that method's parameters (see
    :func:`workbench.analysis.cam.cam_method_schema`, e.g. ``steps`` for ``integrated_gradients``,
    ``samples``/``noise``/``seed`` for ``smoothgrad``, ``window``/``stride`` for ``occlusion``).

    ``layer``: the module path of the maps (default: ``last_conv_layer`` of the model; a path may
    end in ``:input``; transformer tokens ``(B, T, D)`` are laid out on their square patch grid, a
    class token dropped). Pixel methods attribute to the input and need ``layer=None``; their raw
    map reduces channels as their papers do (IG: sum; saliency/SmoothGrad: max of ``|grad|``;
    occlusion: mean).

    ``target``: the class per image — ``"predicted"`` (the model's own prediction; also
    ``"student"``), ``"label"`` (needs ``labels``), ``"teacher"`` (needs ``teacher``: its
    prediction), an int, or a tensor/array ``(N,)`` on any device. ``batch_size`` images go through
    each pass (Score-CAM: that many masked images per forward). ``device``: default the model's own.
    ``memory_format``: ``"auto"`` runs conv nets channels-last on the CPU (maps equal an NCHW run up
    to float rounding), ``"channels_last"`` or ``"contiguous"`` force a layout. ``fold_bn``: compute
    on a copy whose ``Conv2d -> BatchNorm2d`` pairs are folded into single convolutions (the same
    function up to float rounding; the chosen layer is never folded away).

    The maps are computed on one copy of the model made per call (eval mode, on ``device``,
    parameters frozen, no hooks): the caller's model — device, ``training`` flags, parameters,
    ``requires_grad``, hooks — is never touched, also when the call fails or is cancelled. Gradient
    CAMs, CAM and Eigen-CAM take one pass per batch that also yields the logits; a gradient pass
    records the autograd graph only from the layer on (Selvaraju et al. 2017 for Grad-CAM; the maps
    equal captum's ``LayerGradCam``). ``progress(done, total, message)`` is called per batch (and per
    Score-CAM mask chunk / occlusion window evaluation); ``cancel`` is checked per batch and raises
    :class:`workbench.runtime.Cancelled`.

    Returns a :class:`CAMResult` (numpy arrays, on the CPU) with ``class_names`` and ``params``.
    """
    cls = get_cam_method(method)
    spec = cls(parse_cam_params(method, method_params))
    images = check_images4d(images)
    bs = check_positive_int(batch_size, "batch_size")
    check_memory_format(memory_format)
    n, c, h, w = (int(s) for s in images.shape)
    image_shape = (c, h, w)
    mode, label_t, explicit = _check_target_args(target, labels, teacher, n)
    names = check_class_names(class_names)
    method_values = spec.resolved_params(image_shape)
    layer_arg = _check_layer_arg(layer, spec)
    track = Tracker(progress, cancel, total=1, label=cls.name)
    track.check()
    dev = resolve_device(model, device)
    work, layer_path = _working_model(model, images, image_shape, layer_arg, dev, fold_bn)

    nhwc = wants_channels_last(memory_format, dev, work)
    with channels_last(work, enabled=nhwc):
        layout = input_layout(nhwc)
        ctx = BatchContext(work, layer_path, bs, dev, layout, image_shape, check=track.check)
        k, slices, units = _plan_batches(spec, ctx, images, mode, track)
        logits = None if spec.fused else _predict(work, images, slices, dev, layout, track)
        if logits is not None:
            k = int(logits.shape[1])
        targets: torch.Tensor | None
        if mode == "teacher":
            assert teacher is not None
            targets = _teacher_predictions(teacher, images, slices, dev, fold_bn, memory_format, track)
        elif mode == "label":
            targets = label_t
        elif mode is None:
            targets = explicit
        else:  # predicted / student: the model's own prediction
            targets = None if logits is None else logits.argmax(dim=1)
        shown_mode = mode or "explicit"
        if targets is not None and k is not None:
            check_label_range(targets, k, _TARGET_NAMES.get(shown_mode, "target"))
        if names is not None and k is not None:
            names = check_class_names(names, k)
        got = _run_batches(spec, ctx, images, slices, units, targets, track)
    del work

    params = {
        "method": cls.name,
        "method_params": method_values,
        "layer": layer_path,
        "target": shown_mode,
        "batch_size": bs,
        "device": str(dev),
        "memory_format": memory_format,
        "fold_bn": bool(fold_bn),
    }
    return _cam_result(cls, got, logits, targets, names, (h, w), params)
