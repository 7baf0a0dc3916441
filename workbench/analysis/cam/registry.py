"""The CAM method registry: each method one small class with its parameters declared as a schema.

A method declares, as :mod:`workbench.distill` methods do, its name, a one-line description, the
paper it follows, its kind and a pydantic ``Params`` model (type, default, range and help of each
parameter). :func:`cam_method_schema` returns that model's JSON schema, so the CLI, the app and
the widgets render one form for any method; :func:`parse_cam_params` validates keyword arguments
against it with one-line errors that name the closest known parameter.

Kinds:

``gradient``
    layer activations ``A`` and gradients ``dy^c/dA`` from one forward and one backward per batch,
    combined by the method's kernel (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM);
``activation``
    the activations alone, class-agnostic (Eigen-CAM);
``cam``
    activations weighted by the classifier's rows (CAM, global-average-pool + linear heads);
``score``
    activations used as input masks, weighted by the target's confidence gain (Score-CAM);
``pixel``
    attributions to the input pixels through captum (Integrated Gradients, Saliency, SmoothGrad,
    Occlusion).

Each method computes one batch in :meth:`CAMMethod.run_batch`; :func:`workbench.analysis.cam.compute_cams`
drives the batches, the working copy of the model, targets, progress and cancellation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from workbench.analysis._common import AnalysisError, batch_slices
from workbench.analysis.cam import kernels
from workbench.analysis.cam._checks import did_you_mean
from workbench.models.taps import FeatureTaps, classifier_layer, get_module, split_path

__all__ = [
    "CAM_METHODS",
    "CAMMethod",
    "CAMParams",
    "cam_method_schema",
    "describe_cam_methods",
    "get_cam_method",
    "list_cam_methods",
    "parse_cam_params",
    "register_cam_method",
]


class CAMParams(BaseModel):
    """Base class of every CAM method's parameter schema (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class BatchContext:
    """What a method sees while it computes one call's batches.

    ``model``: the working copy (eval mode, parameters frozen, on ``device``); ``layer``: the
    module path of the maps (``"input"`` for pixel methods); ``layout``: applied to every input
    batch (channels-last or identity); ``tick(n)``: report ``n`` finer units of work (Score-CAM mask
    chunks, occlusion windows); ``check()``: raise :class:`workbench.runtime.Cancelled` when asked
    to stop. ``state`` holds what :meth:`CAMMethod.prepare` computed once per call.
    """

    model: nn.Module
    layer: str
    batch_size: int
    device: torch.device
    layout: Callable[[torch.Tensor], torch.Tensor]
    image_shape: tuple[int, int, int]
    tick: Callable[[int], None] = lambda n=1: None
    check: Callable[[], None] = lambda: None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchMaps:
    """One batch's output: raw maps ``(B, h, w)``; the pass's logits and chosen targets when the
    method's own forward ran the plain images; pixel attributions ``(B, C, H, W)`` for pixel methods."""

    raw: torch.Tensor
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    attributions: torch.Tensor | None = None


class CAMMethod(ABC):
    """Base class of a map method. Subclasses set the class attributes and :meth:`run_batch`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: ReLU on the raw map before upsampling and normalization, as the method's paper does
    relu: ClassVar[bool] = True
    Params: ClassVar[type[CAMParams]] = CAMParams

    def __init__(self, params: CAMParams) -> None:
        self.params = params

    @property
    def fused(self) -> bool:
        """Whether the method's own pass runs the plain images (and so yields logits and predictions)."""
        return self.kind in ("gradient", "activation", "cam")

    @property
    def needs_layer(self) -> bool:
        """Whether the maps live at a layer (else at the input pixels)."""
        return self.kind != "pixel"

    def resolved_params(self, image_shape: tuple[int, int, int]) -> dict[str, Any]:
        """The parameters as used for images of ``image_shape`` (defaults that depend on it filled in)."""
        return self.params.model_dump()

    def prepare(self, ctx: BatchContext, images: torch.Tensor) -> None:
        """Compute once per call what every batch needs (stored in ``ctx.state``); nothing by default."""
        return None

    def units(self, ctx: BatchContext, batch: int) -> int:
        """Progress units of one batch of ``batch`` images (default 1)."""
        return 1

    @abstractmethod
    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        """Raw maps of the batch ``x`` (on the device, laid out) for classes ``t`` (None: predicted)."""


_REGISTRY: dict[str, type[CAMMethod]] = {}

CAM_METHODS: dict[str, type[CAMMethod]] = _REGISTRY
"""Known methods by name (registration order), each a :class:`CAMMethod` class with ``kind``,
``relu``, ``reference``, ``description`` and ``Params``."""


def register_cam_method(cls: type[CAMMethod]) -> type[CAMMethod]:
    """Class decorator adding a CAM method to the registry under ``cls.name``."""
    if not cls.name or not cls.kind:
        raise ValueError(f"{cls.__name__}: a registered CAM method needs a name and a kind")
    _REGISTRY[cls.name] = cls
    return cls


def list_cam_methods() -> list[str]:
    """Names accepted by ``method=`` in ``compute_cams`` and ``compare_cams``, in display order."""
    return list(_REGISTRY)


def describe_cam_methods() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered method."""
    return [(name, cls.description) for name, cls in _REGISTRY.items()]


def get_cam_method(name: object) -> type[CAMMethod]:
    """The method class registered under ``name``; one-line :class:`AnalysisError` otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY) if isinstance(name, str) else ""
        raise AnalysisError(f"method: unknown {name!r}{hint or ';'} known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def cam_method_schema(name: str) -> dict[str, Any]:
    """JSON schema of a method's parameters, as :func:`workbench.distill.method_schema` gives for
    distillation methods: ``properties`` with each parameter's ``type``, ``default``, range
    (``minimum``/``maximum``/``exclusiveMinimum``) and ``description``; ``title`` is the method name,
    ``description`` its one-line summary and reference, ``x-kind`` its kind."""
    cls = get_cam_method(name)
    schema = cls.Params.model_json_schema()
    schema["title"] = cls.name
    schema["description"] = f"{cls.description} ({cls.reference})"
    schema["x-kind"] = cls.kind
    schema.setdefault("properties", {})
    return schema


def parse_cam_params(name: str, params: Mapping[str, Any]) -> CAMParams:
    """Validate keyword ``params`` for method ``name``; one-line :class:`AnalysisError` naming the
    parameter (and the closest known one, or the method it belongs to) otherwise."""
    cls = get_cam_method(name)
    known = list(cls.Params.model_fields)
    for key in params:
        if key not in known:
            owners = [m for m, c in _REGISTRY.items() if key in c.Params.model_fields]
            where = f" (it belongs to {', '.join(repr(o) for o in owners)})" if owners else ""
            hint = did_you_mean(key, known) if not owners else ""
            allowed = ", ".join(known) or "none"
            raise AnalysisError(
                f"{key}: method {name!r} has no parameter {key!r}{where}{hint} (its parameters: {allowed})"
            )
    try:
        return cls.Params.model_validate(dict(params))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "params"
        msg = first["msg"].removeprefix("Value error, ")
        raise AnalysisError(f"{loc}: method {name!r}: {msg} (got {first.get('input')!r})") from None


# ---- layer helpers -------------------------------------------------------------------------------
def as_grid(acts: torch.Tensor, path: str) -> torch.Tensor:
    """A layer's output as a map ``(B, C, h, w)``; tokens ``(B, T, D)`` laid out on their patch grid."""
    if acts.ndim == 4:
        return acts
    if acts.ndim == 3:
        return kernels.tokens_to_grid(acts, path)
    raise AnalysisError(
        f"layer {path!r}: expected a 4-D (B, C, H, W) feature map or 3-D tokens (B, T, D), "
        f"got shape {tuple(acts.shape)}"
    )


def _replace_first_tensor(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with its tensor (or the first tensor of a tuple/list) replaced by ``fn(tensor)``."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            if isinstance(item, torch.Tensor):
                items = list(value)
                items[i] = fn(item)
                return type(value)(items) if isinstance(value, list) else tuple(items)
    raise AnalysisError(f"layer: expected the module to pass a tensor, got {type(value).__name__}")


def _check_logits(logits: object) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shown = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise AnalysisError(f"model: expected logits of shape (N, K) from forward, got {shown}")
    return logits


def layer_pass(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass that records the autograd graph only from ``layer`` on.

    The forward runs without gradient tracking up to ``layer``; a hook there swaps the layer's
    output (or input, for a ``:input`` path) for a detached leaf that requires grad and turns
    tracking on for the rest of the pass (grad mode is thread-local and restored when the
    ``no_grad`` block ends). Nothing is kept for backward below the layer, and parameters are not
    needed to require grad. Returns ``(logits, leaf)``; the leaf holds the layer's values (a clone
    goes on, so an in-place op after the layer cannot overwrite them).
    """
    module_path, to_input = split_path(layer)
    module = get_module(model, module_path)
    leaves: list[torch.Tensor] = []

    def to_leaf(t: torch.Tensor) -> torch.Tensor:
        leaf = t.detach().requires_grad_(True)
        leaves.append(leaf)
        torch.set_grad_enabled(True)
        return leaf.clone()

    if to_input:

        def swap_input(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if not args:
                raise AnalysisError(f"layer {layer!r}: the module takes its input by keyword; use its output")
            return _replace_first_tensor(args, to_leaf), kwargs

        handle = module.register_forward_pre_hook(swap_input, with_kwargs=True)
    else:
        handle = module.register_forward_hook(lambda _m, _a, out: _replace_first_tensor(out, to_leaf))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    if not leaves:
        raise AnalysisError(f"layer {layer!r}: the forward pass never reached it")
    return _check_logits(logits), leaves[-1]


def probe_layer(model: nn.Module, layer: str, probe: torch.Tensor) -> tuple[tuple[int, ...], int]:
    """``(shape of the layer's map as a grid (1, C, h, w), number of classes)`` from one forward."""
    with FeatureTaps(model, [layer], detach=True) as taps, torch.inference_mode():
        logits = model(probe)
        if layer not in taps:
            raise AnalysisError(f"layer {layer!r}: the forward pass never reached it")
        acts = taps.features[layer]
    if acts.ndim not in (3, 4):
        raise AnalysisError(
            f"layer {layer!r}: expected a 4-D feature map or 3-D tokens, got a {acts.ndim}-D output"
        )
    grid = as_grid(acts, layer)
    return tuple(grid.shape), int(_check_logits(logits).shape[1])


# ---- gradient CAMs -------------------------------------------------------------------------------
class _GradientMethod(CAMMethod):
    """One forward and one backward for the whole batch, the backward only from the logits down to
    the layer: the gradient of ``sum_i y_i[t_i]`` gives each sample its own ``dy^c / dA`` (samples
    do not interact in eval mode). ``t=None`` takes each image's predicted class from the same pass."""

    kind = "gradient"

    @staticmethod
    @abstractmethod
    def kernel(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """The method's map from the layer's activations and their gradients (``kernels.py``)."""

    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        with torch.enable_grad():
            logits, acts = layer_pass(ctx.model, x, ctx.layer)
            if t is None:
                t = logits.detach().argmax(dim=1)
            score = logits.gather(1, t.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
        if grads is None:
            raise AnalysisError(f"layer {ctx.layer!r}: the logits do not depend on it")
        raw = self.kernel(as_grid(acts.detach(), ctx.layer), as_grid(grads, ctx.layer))
        return BatchMaps(raw, logits.detach(), t)


@register_cam_method
class GradCAM(_GradientMethod):
    name = "gradcam"
    description = "gradient-weighted class activation map: channels weighted by their mean gradient"
    reference = "Selvaraju et al. 2017, Grad-CAM"
    kernel = staticmethod(kernels.gradcam)


@register_cam_method
class GradCAMPlusPlus(_GradientMethod):
    name = "gradcam++"
    description = "Grad-CAM with pixel-wise weights of the positive gradients (several objects)"
    reference = "Chattopadhay et al. 2018, Grad-CAM++"
    kernel = staticmethod(kernels.gradcam_plus_plus)


@register_cam_method
class HiResCAM(_GradientMethod):
    name = "hirescam"
    description = "element-wise gradient x activation, summed over channels (faithful to the model)"
    reference = "Draelos & Carin 2020, HiResCAM"
    kernel = staticmethod(kernels.hirescam)


@register_cam_method
class LayerCAM(_GradientMethod):
    name = "layercam"
    description = "activations weighted by their positive gradients at every position"
    reference = "Jiang et al. 2021, LayerCAM"
    kernel = staticmethod(kernels.layercam)


# ---- activation-only, CAM and Score-CAM ----------------------------------------------------------------
@register_cam_method
class EigenCAM(CAMMethod):
    name = "eigencam"
    description = "first principal component of the layer's activations (class-agnostic)"
    reference = "Muhammad & Yeasin 2020, Eigen-CAM"
    kind = "activation"

    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        with torch.inference_mode(), FeatureTaps(ctx.model, [ctx.layer], detach=True) as taps:
            logits = ctx.model(x)
            acts = taps.features[ctx.layer]
        if t is None:  # class-agnostic map; the target recorded is the prediction
            t = logits.argmax(dim=1)
        return BatchMaps(kernels.eigencam(as_grid(acts, ctx.layer)), logits, t)


@register_cam_method
class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al. 2020, eq. 6-7): ``alpha_k = p_c(X * M_k) - p_c(X_b)`` with the zero
    (mean) image as baseline ``X_b``; map ``= sum_k alpha_k A_k``. The ``B*K`` masked images (and
    their masks) are built in chunks of ``batch_size`` by index arithmetic (no per-image loop)."""

    name = "scorecam"
    description = "channels weighted by how much the target's probability rises when only they show"
    reference = "Wang et al. 2020, Score-CAM"
    kind = "score"

    def prepare(self, ctx: BatchContext, images: torch.Tensor) -> None:
        with torch.inference_mode():
            zero = ctx.layout(torch.zeros_like(images[:1], device=ctx.device))
            ctx.state["base_probs"] = torch.softmax(ctx.model(zero).float(), dim=1)[0]

    def units(self, ctx: BatchContext, batch: int) -> int:
        return len(batch_slices(batch * int(ctx.state["channels"]), ctx.batch_size))

    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        assert t is not None
        with torch.inference_mode():
            with FeatureTaps(ctx.model, [ctx.layer], detach=True) as taps:
                ctx.model(x)
                acts = taps.features[ctx.layer]
            grid = as_grid(acts, ctx.layer)
            b, k = grid.shape[:2]
            size = (int(x.shape[2]), int(x.shape[3]))
            scores = torch.empty(b * k, device=x.device, dtype=torch.float32)
            for sl in batch_slices(b * k, ctx.batch_size):
                ctx.check()
                idx = torch.arange(sl.start, sl.stop, device=x.device)
                bi, ki = idx // k, idx % k
                masks = kernels.scorecam_masks(grid[bi, ki].unsqueeze(1), size)  # (chunk, 1, H, W)
                probs = torch.softmax(ctx.model(x[bi] * masks.to(x.dtype)).float(), dim=1)
                scores[sl] = probs.gather(1, t[bi].unsqueeze(1)).squeeze(1)
                ctx.tick(1)
            alpha = scores.view(b, k) - ctx.state["base_probs"][t].unsqueeze(1)
            return BatchMaps((alpha.to(grid.dtype).view(b, k, 1, 1) * grid).sum(dim=1))


@register_cam_method
class ClassActivationMap(CAMMethod):
    name = "cam"
    description = "the map that global average pooling feeds the classifier, weighted by the class's row"
    reference = "Zhou et al. 2016, CAM (global-average-pool + linear heads)"
    kind = "cam"
    relu = False

    def prepare(self, ctx: BatchContext, images: torch.Tensor) -> None:
        ctx.state["head"] = classifier_layer(ctx.model)

    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        head = ctx.state["head"]
        head_input = f"{head}:input"
        with torch.inference_mode(), FeatureTaps(ctx.model, [ctx.layer, head_input], detach=True) as taps:
            logits = ctx.model(x)
            acts, pooled = taps.features[ctx.layer], taps.features[head_input]
        if t is None:
            t = logits.argmax(dim=1)
        grid = as_grid(acts, ctx.layer)
        weight = get_module(ctx.model, head).weight
        if pooled.ndim != 2 or pooled.shape[1] != grid.shape[1] or weight.shape[1] != grid.shape[1]:
            raise AnalysisError(
                f"method 'cam': layer {ctx.layer!r} has {grid.shape[1]} channels but classifier {head!r} "
                f"takes {tuple(pooled.shape[1:])}; CAM needs the map that is average-pooled into the classifier"
            )
        if not torch.allclose(pooled, grid.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5):
            raise AnalysisError(
                f"method 'cam': layer {ctx.layer!r} does not feed global average pooling straight into "
                f"{head!r}; use that layer or a gradient method such as 'gradcam'"
            )
        return BatchMaps(kernels.class_activation_map(grid, weight.detach()[t]), logits, t)


# ---- pixel attributions (captum) ---------------------------------------------------------------------
class _PixelMethod(CAMMethod):
    kind = "pixel"

    def forward_fn(self, ctx: BatchContext, count: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """The model as captum's ``forward_func``, checking for a stop (and counting calls) on each call."""
        model = ctx.model

        def forward(x: torch.Tensor) -> torch.Tensor:
            ctx.check()
            out = model(x)
            if count:
                ctx.tick(1)
            return out

        return forward

    @abstractmethod
    def attribute(
        self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel attributions of ``x`` for classes ``t``, and the logits of the same pass."""

    def run_batch(self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor | None) -> BatchMaps:
        assert t is not None
        with torch.enable_grad():
            raw, attr = self.attribute(ctx, x.clone().requires_grad_(True), t)
        return BatchMaps(raw.detach(), attributions=attr.detach())


class IntegratedGradientsParams(CAMParams):
    steps: int = Field(32, ge=1, le=1024, description="Riemann steps on the path from the zero baseline")


@register_cam_method
class IntegratedGradientsMethod(_PixelMethod):
    name = "integrated_gradients"
    description = "gradients integrated on the straight path from a zero (mean) image; channels summed"
    reference = "Sundararajan et al. 2017, Integrated Gradients"
    Params = IntegratedGradientsParams

    def attribute(
        self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p: IntegratedGradientsParams = self.params  # type: ignore[assignment]
        attr = IntegratedGradients(self.forward_fn(ctx)).attribute(
            x, baselines=0.0, target=t, n_steps=p.steps, internal_batch_size=ctx.batch_size
        )
        return attr.sum(dim=1), attr


@register_cam_method
class SaliencyMethod(_PixelMethod):
    name = "saliency"
    description = "absolute input gradient of the target score; maximum over channels"
    reference = "Simonyan et al. 2014, gradient saliency"
    relu = False

    def attribute(
        self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attr = Saliency(self.forward_fn(ctx)).attribute(x, target=t, abs=True)
        return attr.amax(dim=1), attr


class SmoothGradParams(CAMParams):
    samples: int = Field(16, ge=1, le=1024, description="noisy copies of each image averaged")
    noise: float = Field(
        0.15,
        gt=0.0,
        le=10.0,
        description="noise standard deviation, as a fraction of the batch's value range",
    )
    seed: int = Field(0, ge=0, description="seed of the noise (the global RNG state is left as it was)")


@register_cam_method
class SmoothGradMethod(_PixelMethod):
    name = "smoothgrad"
    description = "saliency averaged over noisy copies of each image; maximum over channels"
    reference = "Smilkov et al. 2017, SmoothGrad over saliency"
    relu = False
    Params = SmoothGradParams

    def attribute(
        self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p: SmoothGradParams = self.params  # type: ignore[assignment]
        b = x.shape[0]
        spread = ctx.state["spread"]
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(p.seed)
            attr = NoiseTunnel(Saliency(self.forward_fn(ctx))).attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=p.samples,
                nt_samples_batch_size=max(1, ctx.batch_size // b),
                stdevs=p.noise * (spread if spread > 0 else 1.0),
                target=t,
                abs=True,
            )
        return attr.amax(dim=1), attr

    def prepare(self, ctx: BatchContext, images: torch.Tensor) -> None:
        ctx.state["spread"] = float(images.max() - images.min())


class OcclusionParams(CAMParams):
    window: int | None = Field(
        None,
        ge=1,
        description="side of the square zero patch in pixels (default: an eighth of the image side)",
    )
    stride: int | None = Field(
        None, ge=1, description="step of the patch in pixels (default: half the window)"
    )


@register_cam_method
class OcclusionMethod(_PixelMethod):
    name = "occlusion"
    description = "drop of the target score when a zero patch covers each pixel, averaged over patches"
    reference = "Zeiler & Fergus 2014, occlusion"
    Params = OcclusionParams

    def resolved_params(self, image_shape: tuple[int, int, int]) -> dict[str, Any]:
        p: OcclusionParams = self.params  # type: ignore[assignment]
        side = min(image_shape[1], image_shape[2])
        window = max(1, side // 8) if p.window is None else p.window
        if window > side:
            raise AnalysisError(f"window: expected at most the image side {side}, got {window}")
        stride = max(1, window // 2) if p.stride is None else p.stride
        if stride > window and window < side:
            raise AnalysisError(f"stride: expected at most the window {window}, got {stride}")
        return {"window": window, "stride": stride}

    def prepare(self, ctx: BatchContext, images: torch.Tensor) -> None:
        ctx.state.update(self.resolved_params(ctx.image_shape))

    def _evals(self, ctx: BatchContext, batch: int) -> int:
        """Forward calls captum's Occlusion makes for one batch: one plain evaluation, then the
        windows (``ceil((side - window) / stride) + 1`` per axis) in groups of ``perturbations_per_eval``."""
        _, h, w = ctx.image_shape
        window, stride = ctx.state["window"], ctx.state["stride"]
        windows = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
        return 1 + math.ceil(windows / max(1, ctx.batch_size // batch))

    def units(self, ctx: BatchContext, batch: int) -> int:
        return self._evals(ctx, batch)

    def attribute(
        self, ctx: BatchContext, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = x.shape[:2]
        window, stride = ctx.state["window"], ctx.state["stride"]
        attr = Occlusion(self.forward_fn(ctx, count=True)).attribute(
            x,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=0.0,
            target=t,
            perturbations_per_eval=max(1, ctx.batch_size // b),
        )
        return attr.mean(dim=1), attr
