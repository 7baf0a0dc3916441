"""Class activation maps and pixel attributions, compared across a teacher and its student.

Where a model looks, batched over many images:

* :func:`compute_cams` — one model's maps for a batch of images with any of the methods in
  :data:`CAM_METHODS`: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, Eigen-CAM, Score-CAM, plain CAM,
  and captum's Integrated Gradients, Saliency, SmoothGrad and Occlusion. Gradient CAMs take ONE
  forward and ONE backward pass per batch: the gradient of the sum of every sample's target score
  gives each sample's own gradient, because samples do not interact in eval mode (BatchNorm uses
  its running statistics). The forward records the autograd graph only from the CAM layer on and
  also gives the logits; the maps equal captum's ``LayerGradCam`` (tested).
* :func:`compare_cams` — teacher and student maps on the image grid, per-image Pearson and
  Spearman correlation and top-k% region IoU, the same averaged per class, and localization
  metrics when object masks or boxes are known.
* :func:`localization_metrics` — energy-based pointing game, GT-known localization and context
  reliance against object masks/boxes (the ``shapes`` dataset ships both).
* :func:`faithfulness` / :func:`cross_faithfulness` — deletion and insertion curves and their
  AUC (Petsiuk et al. 2018, RISE), including a student's map scored on the teacher and back.

Inputs are normalized float images ``(N, C, H, W)``; results are dataclasses of numpy arrays.
Every function runs the models in eval mode, puts back every module's ``training`` flag and
removes every hook it registered, also when it raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from workbench.analysis import _cam_kernels as kernels
from workbench.analysis import _cam_metrics as metrics
from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_images,
    check_label_range,
    check_labels,
    check_positive_float,
    check_positive_int,
    nanmean_by_class,
    on_device,
    predict_logits,
    resolve_device,
)
from workbench.models.fusion import fold_batchnorm
from workbench.models.layout import MEMORY_FORMATS, channels_last, input_layout, wants_channels_last
from workbench.models.taps import (
    FeatureTaps,
    classifier_layer,
    get_module,
    last_conv_layer,
    split_path,
    training_mode,
)

__all__ = [
    "CAM_METHODS",
    "TARGET_MODES",
    "CAMComparison",
    "CAMResult",
    "CrossFaithfulnessResult",
    "FaithfulnessResult",
    "LocalizationResult",
    "compare_cams",
    "compare_maps",
    "compute_cams",
    "cross_faithfulness",
    "curve_auc",
    "faithfulness",
    "list_cam_methods",
    "localization_metrics",
]


@dataclass(frozen=True)
class _Method:
    name: str
    kind: str  # "gradient" (layer activations + gradients), "activation", "score", "cam", "pixel"
    relu: bool  # ReLU on the raw map before upsampling and normalization, as the paper does
    reference: str


CAM_METHODS: dict[str, _Method] = {
    m.name: m
    for m in (
        _Method("gradcam", "gradient", True, "Selvaraju et al. 2017, Grad-CAM"),
        _Method("gradcam++", "gradient", True, "Chattopadhay et al. 2018, Grad-CAM++"),
        _Method("hirescam", "gradient", True, "Draelos & Carin 2020, HiResCAM"),
        _Method("layercam", "gradient", True, "Jiang et al. 2021, LayerCAM"),
        _Method("eigencam", "activation", True, "Muhammad & Yeasin 2020, Eigen-CAM"),
        _Method("scorecam", "score", True, "Wang et al. 2020, Score-CAM"),
        _Method("cam", "cam", False, "Zhou et al. 2016, CAM (global-average-pool + linear heads)"),
        _Method("integrated_gradients", "pixel", True, "Sundararajan et al. 2017, Integrated Gradients"),
        _Method("saliency", "pixel", False, "Simonyan et al. 2014, gradient saliency"),
        _Method("smoothgrad", "pixel", False, "Smilkov et al. 2017, SmoothGrad over saliency"),
        _Method("occlusion", "pixel", True, "Zeiler & Fergus 2014, occlusion"),
    )
}
"""Known methods by name, each with its kind, whether its map is ReLU'd, and its reference."""

TARGET_MODES = ("label", "teacher", "student", "pred")
"""Named ways of choosing the class whose map is drawn (besides an explicit tensor)."""

#: kinds whose pass runs the plain images, so it also yields the logits and predictions
_FUSED_KINDS = ("gradient", "activation", "cam")
_TARGET_NAMES = {
    "label": "labels",
    "teacher": "teacher predictions",
    "explicit": "target",
    "pred": "target",
    "student": "target",
}

_GRADIENT_KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": kernels.gradcam,
    "gradcam++": kernels.gradcam_plus_plus,
    "hirescam": kernels.hirescam,
    "layercam": kernels.layercam,
}


def list_cam_methods() -> list[str]:
    """Names accepted by ``method=`` in :func:`compute_cams` and :func:`compare_cams`, in display order."""
    return list(CAM_METHODS)


# ---- results ------------------------------------------------------------------------------------
@dataclass
class CAMResult:
    """One model's maps for a batch of images.

    ``raw``: ``(N, h, w)`` signed map at the layer's resolution, before ReLU and normalization, so
    magnitudes compare across models and images (pixel methods: ``(N, H, W)``, channels reduced).
    ``upsampled_raw``: ``raw`` bilinearly upsampled to the image size ``(N, H, W)``.
    ``maps``: ``(N, H, W)`` in ``[0, 1]``: ReLU where the method's paper applies it (before
    upsampling), upsampled, min-max normalized per image (a constant map becomes zeros).
    ``attributions``: ``(N, C, H, W)`` per-channel pixel attributions for pixel methods, else None.
    ``targets``: class of each map; ``target_mode``: how they were chosen ("label", "teacher",
    "student", "pred" or "explicit"); ``predictions``/``probabilities``: the model's own outputs.
    ``layer``: module path of the maps ("input" for pixel methods).
    """

    method: str
    layer: str
    target_mode: str
    targets: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    raw: np.ndarray
    upsampled_raw: np.ndarray
    maps: np.ndarray
    attributions: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        """Number of images ``N``."""
        return int(self.maps.shape[0])


@dataclass
class LocalizationResult:
    """How well maps ``(N, H, W)`` sit on the known objects.

    ``energy_in_box``: energy-based pointing game (Wang et al. 2020, Score-CAM, sec. 5.2): share of
    the map's total inside the object's box (NaN for an all-zero map). ``energy_in_mask``: the
    same inside the object mask, ``context_reliance = 1 - energy_in_mask`` (both None without
    masks). ``predicted_boxes``: box of the region ``map >= threshold * max`` (its largest
    8-connected component when ``component == "largest"``, as in CAM, Zhou et al. 2016; the whole
    region for ``"all"``), ``(x0, y0, x1, y1)`` exclusive ends. ``box_iou`` against ``true_boxes``;
    ``correct``: GT-known localization hit, ``box_iou >= iou_threshold``.
    """

    threshold: float
    component: str
    iou_threshold: float
    energy_in_box: np.ndarray
    energy_in_mask: np.ndarray | None
    context_reliance: np.ndarray | None
    predicted_boxes: np.ndarray
    true_boxes: np.ndarray
    box_iou: np.ndarray
    correct: np.ndarray

    @property
    def mean_energy_in_box(self) -> float:
        """Mean energy-based pointing game score (NaN entries left out)."""
        return _nanmean(self.energy_in_box)

    @property
    def mean_energy_in_mask(self) -> float:
        """Mean share of energy inside the masks (NaN without masks)."""
        return math.nan if self.energy_in_mask is None else _nanmean(self.energy_in_mask)

    @property
    def mean_context_reliance(self) -> float:
        """Mean share of energy outside the masks (NaN without masks)."""
        return math.nan if self.context_reliance is None else _nanmean(self.context_reliance)

    @property
    def gt_known_accuracy(self) -> float:
        """Fraction of images whose predicted box has IoU >= ``iou_threshold`` with the true box."""
        return float(self.correct.mean()) if self.correct.size else math.nan

    def summary(self) -> dict[str, float]:
        """The means as a flat dict (for tables)."""
        return {
            "energy_in_box": self.mean_energy_in_box,
            "energy_in_mask": self.mean_energy_in_mask,
            "context_reliance": self.mean_context_reliance,
            "gt_known_accuracy": self.gt_known_accuracy,
            "mean_box_iou": _nanmean(self.box_iou),
        }


@dataclass
class CAMComparison:
    """Teacher and student maps of the same images on the image grid, and how far they agree.

    Per image: ``pearson``, ``spearman`` (average ranks for ties; NaN where a map is constant),
    ``topk_iou`` (IoU of the ``top_k`` fraction of highest pixels of each map). ``per_class_*``
    are the means over the images of each true class (NaN for a class without images),
    ``class_counts`` the number of images per class. ``same_prediction``: the two models predict
    the same class. ``teacher_localization``/``student_localization`` when masks or boxes were given.
    """

    method: str
    target_mode: str
    top_k: float
    teacher: CAMResult
    student: CAMResult
    labels: np.ndarray
    pearson: np.ndarray
    spearman: np.ndarray
    topk_iou: np.ndarray
    same_prediction: np.ndarray
    class_counts: np.ndarray
    per_class_pearson: np.ndarray
    per_class_spearman: np.ndarray
    per_class_topk_iou: np.ndarray
    teacher_localization: LocalizationResult | None = None
    student_localization: LocalizationResult | None = None

    @property
    def mean_pearson(self) -> float:
        """Mean per-image Pearson correlation (NaN entries left out)."""
        return _nanmean(self.pearson)

    @property
    def mean_spearman(self) -> float:
        """Mean per-image Spearman correlation (NaN entries left out)."""
        return _nanmean(self.spearman)

    @property
    def mean_topk_iou(self) -> float:
        """Mean per-image top-k region IoU."""
        return _nanmean(self.topk_iou)


@dataclass
class FaithfulnessResult:
    """Deletion or insertion curves (Petsiuk et al. 2018, RISE).

    ``fractions``: ``(steps + 1,)`` share of pixels removed (deletion) or inserted (insertion);
    ``scores``: ``(N, steps + 1)`` target-class score at each fraction (softmax probability for
    ``score == "prob"``, logit for ``"logit"``); ``auc``: ``(N,)`` trapezoid area under each curve.
    Lower deletion AUC and higher insertion AUC mean a more faithful map.
    """

    mode: str
    score: str
    baseline: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray

    @property
    def mean_auc(self) -> float:
        """Mean AUC over images."""
        return float(self.auc.mean())

    @property
    def mean_curve(self) -> np.ndarray:
        """Mean score at each fraction, ``(steps + 1,)``."""
        return self.scores.mean(axis=0)


@dataclass
class CrossFaithfulnessResult:
    """The four combinations of (whose map) x (whose model scores it) for deletion or insertion.

    ``student_map_on_teacher``: the student's map ordering pixels, the teacher's score measured —
    does the student look where the teacher's decision actually depends?
    """

    mode: str
    teacher_map_on_teacher: FaithfulnessResult
    student_map_on_teacher: FaithfulnessResult
    teacher_map_on_student: FaithfulnessResult
    student_map_on_student: FaithfulnessResult

    def auc_matrix(self) -> np.ndarray:
        """Mean AUCs ``(2, 2)``: rows = scoring model (teacher, student), columns = map (teacher, student)."""
        return np.array(
            [
                [self.teacher_map_on_teacher.mean_auc, self.student_map_on_teacher.mean_auc],
                [self.teacher_map_on_student.mean_auc, self.student_map_on_student.mean_auc],
            ]
        )


# ---- small helpers ------------------------------------------------------------------------------
def _nanmean(values: np.ndarray) -> float:
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else math.nan


def _as_tensor(value: object, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value.detach()
    raise AnalysisError(f"{name}: expected a tensor or numpy array, got {type(value).__name__}")


def _check_images4d(images: object) -> torch.Tensor:
    images = check_images(images)
    if images.ndim != 4:
        raise AnalysisError(f"images: expected a float tensor (N, C, H, W), got shape {tuple(images.shape)}")
    return images


def _check_maps(maps: object, n: int, size: tuple[int, int], name: str) -> torch.Tensor:
    """``maps`` as float ``(N, H, W)``; ``(N, 1, H, W)`` is accepted."""
    t = _as_tensor(maps, name)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] != n or tuple(t.shape[1:]) != size:
        raise AnalysisError(
            f"{name}: expected maps of shape ({n}, {size[0]}, {size[1]}), got {tuple(t.shape)}"
        )
    if t.dtype == torch.bool or t.is_complex():
        raise AnalysisError(f"{name}: expected real-valued maps, got dtype {t.dtype}")
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise AnalysisError(f"{name}: contains NaN or infinite values")
    return t


def _check_map_stack(maps: object, name: str) -> torch.Tensor:
    """``maps`` ``(N, H, W)`` or ``(N, 1, H, W)`` as float ``(N, H, W)``, its own size taken as given."""
    t = _as_tensor(maps, name)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3 or t.shape[0] == 0:
        raise AnalysisError(
            f"{name}: expected a non-empty stack of maps (N, H, W), got shape {tuple(t.shape)}"
        )
    return _check_maps(t, int(t.shape[0]), (int(t.shape[1]), int(t.shape[2])), name)


def _check_fraction(value: object, name: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnalysisError(f"{name}: expected a number in (0, 1], got {value!r}") from None
    if not 0.0 < out <= 1.0:
        raise AnalysisError(f"{name}: expected a number in (0, 1], got {value!r}")
    return out


def _method_spec(method: object) -> _Method:
    if not isinstance(method, str) or method not in CAM_METHODS:
        raise AnalysisError(f"method: unknown {method!r}; known: {', '.join(CAM_METHODS)}")
    return CAM_METHODS[method]


def _explicit_targets(target: object, n: int, k: int | None) -> torch.Tensor:
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t = torch.full((n,), int(target), dtype=torch.int64)
    elif isinstance(target, (torch.Tensor, np.ndarray)):
        t = check_labels(target, n, "target")
    else:
        raise AnalysisError(
            f"target: expected a class index, a tensor ({n},) or one of {', '.join(TARGET_MODES)}, "
            f"got {target!r}"
        )
    if k is not None:
        check_label_range(t, k, "target")
    return t


def _as_grid(acts: torch.Tensor, path: str) -> torch.Tensor:
    if acts.ndim == 4:
        return acts
    if acts.ndim == 3:
        return kernels.tokens_to_grid(acts, path)
    raise AnalysisError(
        f"layer {path!r}: expected a 4-D (B, C, H, W) feature map or 3-D tokens (B, T, D), "
        f"got shape {tuple(acts.shape)}"
    )


def _resolve_layer(model: nn.Module, layer: object, spec: _Method, image_shape: tuple[int, int, int]) -> str:
    if spec.kind == "pixel":
        if layer is not None and layer != "input":
            raise AnalysisError(
                f"layer: method {spec.name!r} attributes to the input pixels; leave layer=None, got {layer!r}"
            )
        return "input"
    if layer is None:
        return last_conv_layer(model, input_shape=image_shape)
    if not isinstance(layer, str) or not layer:
        raise AnalysisError(f"layer: expected a module path such as 'layer3', got {layer!r}")
    get_module(model, split_path(layer)[0])
    return layer


def _probe_layer(model: nn.Module, layer: str, probe: torch.Tensor) -> tuple[int, int]:
    """``(ndim of the layer's output, number of classes)`` from one forward of ``probe``."""
    with FeatureTaps(model, [layer], detach=True) as taps, torch.inference_mode():
        logits = model(probe)
        if layer not in taps:
            raise AnalysisError(f"layer {layer!r}: the forward pass never reached it")
        ndim = int(taps.features[layer].ndim)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise AnalysisError(
            f"model: expected logits of shape (N, K) from forward, got {type(logits).__name__}"
        )
    return ndim, int(logits.shape[1])


# ---- per-method batch computations (return raw maps (B, h, w) and, for pixel methods, attributions)
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


def _layer_pass(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass that records the autograd graph only from ``layer`` on.

    The forward runs without gradient tracking up to ``layer``; a hook there swaps the layer's
    output (or input, for a ``:input`` path) for a detached leaf that requires grad and turns
    tracking on for the rest of the pass (grad mode is thread-local and restored when the
    ``no_grad`` block ends). Nothing is kept for backward below the layer, and parameters are not
    touched. Returns ``(logits, leaf)``; the leaf holds the layer's values (a clone goes on, so
    an in-place op after the layer cannot overwrite them).
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
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise AnalysisError(
            f"model: expected logits of shape (N, K) from forward, got {type(logits).__name__}"
        )
    return logits, leaves[-1]


def _gradient_batch(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor | None, layer: str, method: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and one backward for the whole batch, the backward only from the logits down to
    ``layer``: the gradient of ``sum_i y_i[t_i]`` gives each sample its own ``dy^c / dA`` (samples
    do not interact in eval mode). ``t=None`` takes each image's predicted class from the same
    pass. Returns ``(raw maps (B, h, w), logits, targets)``."""
    with torch.enable_grad():
        logits, acts = _layer_pass(model, x, layer)
        if t is None:
            t = logits.detach().argmax(dim=1)
        score = logits.gather(1, t.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
    if grads is None:
        raise AnalysisError(f"layer {layer!r}: the logits do not depend on it")
    raw = _GRADIENT_KERNELS[method](_as_grid(acts.detach(), layer), _as_grid(grads, layer))
    return raw, logits.detach(), t


def _activation_batch(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    with FeatureTaps(model, [layer], detach=True) as taps:
        logits = model(x)
        acts = taps.features[layer]
    return kernels.eigencam(_as_grid(acts, layer)), logits


def _cam_batch(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor | None, layer: str, head: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    head_input = f"{head}:input"
    with FeatureTaps(model, [layer, head_input], detach=True) as taps:
        logits = model(x)
        acts, pooled = taps.features[layer], taps.features[head_input]
    if t is None:
        t = logits.argmax(dim=1)
    grid = _as_grid(acts, layer)
    weight = get_module(model, head).weight
    if pooled.ndim != 2 or pooled.shape[1] != grid.shape[1] or weight.shape[1] != grid.shape[1]:
        raise AnalysisError(
            f"method 'cam': layer {layer!r} has {grid.shape[1]} channels but classifier {head!r} takes "
            f"{tuple(pooled.shape[1:])}; CAM needs the map that is average-pooled into the classifier"
        )
    if not torch.allclose(pooled, grid.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5):
        raise AnalysisError(
            f"method 'cam': layer {layer!r} does not feed global average pooling straight into {head!r}; "
            "use that layer or a gradient method such as 'gradcam'"
        )
    return kernels.class_activation_map(grid, weight.detach()[t]), logits, t


def _score_batch(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, layer: str, batch_size: int, base_probs: torch.Tensor
) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020, eq. 6-7): ``alpha_k = p_c(X * M_k) - p_c(X_b)`` with the zero
    (mean) image as baseline ``X_b``; map ``= sum_k alpha_k A_k``. The ``B*K`` masked images (and
    their masks) are built in chunks of ``batch_size`` by index arithmetic (no per-image loop)."""
    with FeatureTaps(model, [layer], detach=True) as taps:
        model(x)
        acts = taps.features[layer]
    grid = _as_grid(acts, layer)
    b, k = grid.shape[:2]
    size = (int(x.shape[2]), int(x.shape[3]))
    scores = torch.empty(b * k, device=x.device, dtype=torch.float32)
    for sl in batch_slices(b * k, batch_size):
        idx = torch.arange(sl.start, sl.stop, device=x.device)
        bi, ki = idx // k, idx % k
        masks = kernels.scorecam_masks(grid[bi, ki].unsqueeze(1), size)  # (chunk, 1, H, W)
        probs = torch.softmax(model(x[bi] * masks.to(x.dtype)).float(), dim=1)
        scores[sl] = probs.gather(1, t[bi].unsqueeze(1)).squeeze(1)
    alpha = scores.view(b, k) - base_probs[t].unsqueeze(1)
    return (alpha.to(grid.dtype).view(b, k, 1, 1) * grid).sum(dim=1)


def _pixel_batch(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, method: str, batch_size: int, opts: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = x.shape[:2]
    if method == "integrated_gradients":
        attr = IntegratedGradients(model).attribute(
            x, baselines=0.0, target=t, n_steps=opts["ig_steps"], internal_batch_size=batch_size
        )
        return attr.sum(dim=1), attr
    if method == "saliency":
        attr = Saliency(model).attribute(x, target=t, abs=True)
        return attr.amax(dim=1), attr
    if method == "smoothgrad":
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(opts["smoothgrad_seed"])
            attr = NoiseTunnel(Saliency(model)).attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=opts["smoothgrad_samples"],
                nt_samples_batch_size=max(1, batch_size // b),
                stdevs=opts["smoothgrad_stdev"],
                target=t,
                abs=True,
            )
        return attr.amax(dim=1), attr
    window, stride = opts["occlusion_window"], opts["occlusion_stride"]
    attr = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(c, window, window),
        strides=(c, stride, stride),
        baselines=0.0,
        target=t,
        perturbations_per_eval=max(1, batch_size // b),
    )
    return attr.mean(dim=1), attr


def _pixel_options(
    images: torch.Tensor,
    ig_steps: object,
    smoothgrad_samples: object,
    smoothgrad_noise: object,
    smoothgrad_seed: object,
    occlusion_window: object,
    occlusion_stride: object,
) -> dict[str, Any]:
    h, w = images.shape[2], images.shape[3]
    window = (
        max(1, min(h, w) // 8)
        if occlusion_window is None
        else check_positive_int(occlusion_window, "occlusion_window")
    )
    if window > min(h, w):
        raise AnalysisError(f"occlusion_window: expected at most the image side {min(h, w)}, got {window}")
    stride = (
        max(1, window // 2)
        if occlusion_stride is None
        else check_positive_int(occlusion_stride, "occlusion_stride")
    )
    noise = check_positive_float(smoothgrad_noise, "smoothgrad_noise")
    spread = float(images.max() - images.min())
    return {
        "ig_steps": check_positive_int(ig_steps, "ig_steps"),
        "smoothgrad_samples": check_positive_int(smoothgrad_samples, "smoothgrad_samples"),
        "smoothgrad_stdev": noise * (spread if spread > 0 else 1.0),
        "smoothgrad_seed": check_positive_int(smoothgrad_seed, "smoothgrad_seed", minimum=0),
        "occlusion_window": window,
        "occlusion_stride": stride,
    }


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == size:
        return maps
    return LayerAttribution.interpolate(maps.unsqueeze(1), size, interpolate_mode="bilinear").squeeze(1)


# ---- public: one model ----------------------------------------------------------------------------
def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    method: str = "gradcam",
    target: str | int | torch.Tensor | np.ndarray | None = None,
    batch_size: int = 256,
    *,
    labels: torch.Tensor | np.ndarray | None = None,
    teacher: nn.Module | None = None,
    device: str | torch.device | None = None,
    ig_steps: int = 32,
    smoothgrad_samples: int = 16,
    smoothgrad_noise: float = 0.15,
    smoothgrad_seed: int = 0,
    occlusion_window: int | None = None,
    occlusion_stride: int | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
) -> CAMResult:
    """Maps of ``model`` for every image of ``images`` ``(N, C, H, W)`` (normalized floats).

    ``method``: one of :data:`CAM_METHODS` (see :func:`list_cam_methods`). Layer methods use the
    module path ``layer`` (default: ``last_conv_layer`` of the model; a path may end in ``:input``;
    transformer tokens ``(B, T, D)`` are laid out on their square patch grid, a class token
    dropped). Pixel methods (``integrated_gradients`` with a zero baseline and ``ig_steps``,
    ``saliency``, ``smoothgrad`` with ``smoothgrad_samples`` draws of Gaussian noise of standard
    deviation ``smoothgrad_noise`` times the batch's value range, ``occlusion`` with a zero patch
    of ``occlusion_window`` pixels moved by ``occlusion_stride``) need ``layer=None``; their raw
    map reduces channels as their papers do (IG: sum; saliency/SmoothGrad: max of ``|grad|``;
    occlusion: mean).

    ``target``: the class per image — a tensor/array ``(N,)`` or an int, ``"label"`` (needs
    ``labels``), ``"teacher"`` (needs ``teacher``: its prediction), or ``"student"``/``"pred"``/
    None (the model's own prediction). ``batch_size`` images go through each forward+backward
    pass (Score-CAM: that many masked images per forward). ``device``: default the model's own.
    ``memory_format``: ``"auto"`` runs conv nets channels-last on the CPU (faster; maps equal an
    NCHW run up to float rounding), ``"channels_last"`` or ``"contiguous"`` force a layout.
    ``fold_bn``: run the maps on an eval-mode copy of the model whose ``Conv2d -> BatchNorm2d``
    pairs are folded into single convolutions (:func:`workbench.models.fusion.fold_batchnorm`; the
    same function up to float rounding, one layer less per pair; the chosen layer is never folded
    away). The model itself is not changed.

    Gradient CAMs, CAM and Eigen-CAM take one pass per batch that also yields the logits (and the
    predicted class used as target); a gradient pass records the autograd graph only from the
    layer on, and its backward runs from the target logits down to the layer, no further.

    Returns a :class:`CAMResult` (numpy arrays, on the CPU).
    """
    spec = _method_spec(method)
    images = _check_images4d(images)
    bs = check_positive_int(batch_size, "batch_size")
    dev = resolve_device(model, device)
    n, _, h, w = images.shape
    size = (int(h), int(w))
    opts = (
        _pixel_options(
            images,
            ig_steps,
            smoothgrad_samples,
            smoothgrad_noise,
            smoothgrad_seed,
            occlusion_window,
            occlusion_stride,
        )
        if spec.kind == "pixel"
        else {}
    )
    named = target if isinstance(target, str) else None
    if named is not None and named not in TARGET_MODES:
        raise AnalysisError(f"target: unknown mode {target!r}; known: {', '.join(TARGET_MODES)}")
    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    if named == "label" and labels is None:
        raise AnalysisError("labels: target='label' needs labels, got None")
    if named == "teacher" and not isinstance(teacher, nn.Module):
        raise AnalysisError(f"teacher: target='teacher' needs a teacher model, got {type(teacher).__name__}")

    fused = spec.kind in _FUSED_KINDS
    with on_device(model, dev), training_mode(model, False):
        layer_path = _resolve_layer(model, layer, spec, (int(images.shape[1]), size[0], size[1]))
        work = _working_copy(model, layer_path) if fold_bn else model
        with channels_last(work, enabled=wants_channels_last(memory_format, dev, work)) as nhwc:
            layout = input_layout(nhwc)
            if fused:
                logits = None  # the map's own pass yields them
            else:
                logits = predict_logits(work, images, bs, dev, layout).float()
            targets: torch.Tensor | None
            if target is None or named in ("pred", "student"):
                targets, mode = (None if logits is None else logits.argmax(dim=1).cpu()), named or "pred"
            elif named == "label":
                targets, mode = check_labels(labels, n, "labels"), "label"
            elif named == "teacher":
                assert teacher is not None
                t_logits = predict_logits(teacher, images, bs, dev, layout)
                targets, mode = t_logits.argmax(dim=1).cpu(), "teacher"
            else:
                targets, mode = _explicit_targets(target, n, None), "explicit"
            if targets is not None and logits is not None:
                check_label_range(targets, int(logits.shape[1]), _TARGET_NAMES[mode])
            raw, attributions, pass_logits, pass_targets = _run_method(
                work, images, targets, _TARGET_NAMES[mode], layer_path, spec, bs, dev, opts, layout
            )
    if logits is None:
        logits = pass_logits
    probs = torch.softmax(logits.float(), dim=1).cpu()
    preds = probs.argmax(dim=1)
    if targets is None:
        targets = pass_targets

    shown = torch.relu(raw) if spec.relu else raw
    return CAMResult(
        method=spec.name,
        layer=layer_path,
        target_mode=mode,
        targets=targets.numpy().astype(np.int64),
        predictions=preds.numpy().astype(np.int64),
        probabilities=probs.numpy().astype(np.float32),
        raw=raw.numpy().astype(np.float32),
        upsampled_raw=_upsample(raw, size).numpy().astype(np.float32),
        maps=metrics.normalize_maps(_upsample(shown, size)).numpy().astype(np.float32),
        attributions=None if attributions is None else attributions.numpy().astype(np.float32),
    )


def _run_method(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    target_name: str,
    layer: str,
    spec: _Method,
    bs: int,
    dev: torch.device,
    opts: dict[str, Any],
    layout: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Raw maps ``(N, h, w)`` (CPU float32) of every image, batch by batch; pixel attributions too.

    ``targets=None`` (only for the kinds in :data:`_FUSED_KINDS`): each image's predicted class,
    taken from the map's own forward pass. Returns ``(raw, attributions or None, logits of that
    pass or None, targets)``; logits come back for the fused kinds only.
    """
    raws: list[torch.Tensor] = []
    attrs: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    chosen: list[torch.Tensor] = []
    base_probs = torch.empty(0)
    if spec.kind != "pixel":
        ndim, k = _probe_layer(model, layer, layout(images[:1].to(dev)))
        if ndim not in (3, 4):
            raise AnalysisError(
                f"layer {layer!r}: expected a 4-D feature map or 3-D tokens, got a {ndim}-D output"
            )
        if targets is not None:
            check_label_range(targets, k, target_name)
    if spec.kind == "score":
        with torch.inference_mode():
            zero = layout(torch.zeros_like(images[:1], device=dev))
            base_probs = torch.softmax(model(zero).float(), dim=1)[0]
    head = classifier_layer(model) if spec.kind == "cam" else ""
    for sl in batch_slices(len(images), bs):
        t = None if targets is None else targets[sl].to(dev)
        x = layout(images[sl].to(dev))
        logits = None
        if spec.kind == "gradient":
            raw, logits, t = _gradient_batch(model, x, t, layer, spec.name)
        elif spec.kind == "pixel":
            assert t is not None
            with torch.enable_grad():
                raw, attr = _pixel_batch(model, x.clone().requires_grad_(True), t, spec.name, bs, opts)
            attrs.append(attr.detach().float().cpu())
        else:
            with torch.inference_mode():
                if spec.kind == "activation":
                    raw, logits = _activation_batch(model, x, layer)
                elif spec.kind == "cam":
                    raw, logits, t = _cam_batch(model, x, t, layer, head)
                else:
                    assert t is not None
                    raw = _score_batch(model, x, t, layer, bs, base_probs)
        raws.append(raw.detach().float().cpu())
        if logits is not None:
            outs.append(logits.detach().float().cpu())
        if t is not None:
            chosen.append(t.detach().cpu())
    return (
        torch.cat(raws),
        (torch.cat(attrs) if attrs else None),
        (torch.cat(outs) if outs else None),
        (torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.int64)),
    )


def _working_copy(model: nn.Module, layer: str) -> nn.Module:
    """The model the maps are computed on: an eval-mode copy with BatchNorm folded into the convs
    before it, keeping the module at ``layer`` intact; the model itself when it cannot be copied."""
    keep = [] if layer == "input" else [split_path(layer)[0]]
    try:
        work, _ = fold_batchnorm(model, keep=keep)
    except Exception:  # a model that cannot be deep-copied is used as it is
        return model
    return work


# ---- public: map comparisons and localization ------------------------------------------------------
def compare_maps(
    maps_a: torch.Tensor | np.ndarray, maps_b: torch.Tensor | np.ndarray, top_k: float = 0.2
) -> dict[str, np.ndarray]:
    """Per-image agreement of two stacks of maps ``(N, H, W)`` on the same grid.

    Returns ``{"pearson", "spearman", "topk_iou"}``, each ``(N,)`` float64: Pearson correlation of
    the pixel values, Spearman rank correlation (average ranks for ties; both NaN where a map is
    constant) and the IoU of the ``top_k`` fraction (``max(1, round(top_k * H * W))`` pixels) of
    each map's highest pixels.
    """
    a = _check_map_stack(maps_a, "maps_a")
    b = _check_maps(maps_b, int(a.shape[0]), (int(a.shape[1]), int(a.shape[2])), "maps_b")
    frac = _check_fraction(top_k, "top_k")
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return {
        "pearson": metrics.pearson_rows(fa, fb).numpy(),
        "spearman": metrics.spearman_rows(fa, fb).numpy(),
        "topk_iou": metrics.mask_iou(metrics.topk_masks(fa, frac), metrics.topk_masks(fb, frac)).numpy(),
    }


def localization_metrics(
    maps: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray | None = None,
    boxes: torch.Tensor | np.ndarray | None = None,
    threshold: float = 0.2,
    *,
    component: str = "largest",
    iou_threshold: float = 0.5,
) -> LocalizationResult:
    """Localization of maps ``(N, H, W)`` against object ``masks`` (bool ``(N, H, W)``) and/or ``boxes``
    (``(N, 4)`` pixel boxes ``(x0, y0, x1, y1)``, exclusive ends; from the masks when not given).

    Energy-based pointing game (Wang et al. 2020): share of the map's non-negative total inside the
    box; with masks also inside the mask, and context reliance = the share outside it. GT-known
    localization (Zhou et al. 2016; Choe et al. 2020): threshold each map at ``threshold`` times its
    maximum, take the box of the largest 8-connected component (``component="largest"``) or of the
    whole region (``"all"``), count it correct when its IoU with the true box is ``>= iou_threshold``.
    Returns a :class:`LocalizationResult`.
    """
    m = _check_map_stack(maps, "maps").to(torch.float64)
    n, h, w = (int(s) for s in m.shape)
    thr = _check_fraction(threshold, "threshold")
    iou_thr = _check_fraction(iou_threshold, "iou_threshold")
    if component not in ("largest", "all"):
        raise AnalysisError(f"component: unknown {component!r}; known: largest, all")
    if masks is None and boxes is None:
        raise AnalysisError("masks: localization needs object masks or boxes, got neither")
    mask_t: torch.Tensor | None = None
    if masks is not None:
        mask_t = _as_tensor(masks, "masks")
        if mask_t.dtype != torch.bool or tuple(mask_t.shape) != (n, h, w):
            raise AnalysisError(
                f"masks: expected a bool tensor of shape ({n}, {h}, {w}), "
                f"got {mask_t.dtype} {tuple(mask_t.shape)}"
            )
    if boxes is not None:
        box_t = _as_tensor(boxes, "boxes")
        if tuple(box_t.shape) != (n, 4) or box_t.dtype == torch.bool:
            raise AnalysisError(
                f"boxes: expected a numeric tensor of shape ({n}, 4), got {tuple(box_t.shape)}"
            )
        box_t = box_t.to(torch.float64)
    else:
        assert mask_t is not None
        box_t = metrics.tight_boxes(mask_t)

    in_box = metrics.energy_share(m, metrics.box_masks(box_t, h, w))
    in_mask = None if mask_t is None else metrics.energy_share(m, mask_t)
    peak = m.reshape(n, -1).amax(dim=1).view(n, 1, 1)
    region = (m >= thr * peak) & (peak > 0)
    if component == "largest":
        region = metrics.largest_component(region)
    pred_boxes = metrics.tight_boxes(region)
    iou = metrics.box_iou(pred_boxes, box_t)
    return LocalizationResult(
        threshold=thr,
        component=component,
        iou_threshold=iou_thr,
        energy_in_box=in_box.numpy(),
        energy_in_mask=None if in_mask is None else in_mask.numpy(),
        context_reliance=None if in_mask is None else (1.0 - in_mask).numpy(),
        predicted_boxes=pred_boxes.numpy(),
        true_boxes=box_t.numpy(),
        box_iou=iou.numpy(),
        correct=(iou >= iou_thr).numpy(),
    )


# ---- public: teacher vs student ---------------------------------------------------------------------
def compare_cams(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    method: str = "gradcam",
    target: str | int | torch.Tensor | np.ndarray = "label",
    teacher_layer: str | None = None,
    student_layer: str | None = None,
    top_k: float = 0.2,
    *,
    masks: torch.Tensor | np.ndarray | None = None,
    boxes: torch.Tensor | np.ndarray | None = None,
    threshold: float = 0.2,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    **cam_options: Any,
) -> CAMComparison:
    """Teacher and student maps of the same ``images`` and ``labels``, compared image by image.

    ``target``: ``"label"`` (true class), ``"teacher"`` / ``"student"`` (that model's prediction,
    used for both maps), ``"pred"`` (each model its own prediction), or explicit classes. Layers
    default to each model's last convolutional layer. Maps are compared on the image grid with
    :func:`compare_maps` (``top_k`` fraction for the region IoU) and averaged per true class;
    with ``masks``/``boxes`` both maps also get :func:`localization_metrics` at ``threshold``.
    ``cam_options`` go to :func:`compute_cams` (e.g. ``ig_steps``). Returns a :class:`CAMComparison`.
    """
    _method_spec(method)
    images = _check_images4d(images)
    n = int(images.shape[0])
    label_t = check_labels(labels, n, "labels")
    frac = _check_fraction(top_k, "top_k")
    named = target if isinstance(target, str) else None
    if named is not None and named not in TARGET_MODES:
        raise AnalysisError(f"target: unknown mode {target!r}; known: {', '.join(TARGET_MODES)}")
    common = {"method": method, "batch_size": batch_size, "labels": label_t, **cam_options}

    def run(model: nn.Module, layer: str | None, tgt: object, dev: str | torch.device | None) -> CAMResult:
        return compute_cams(model, images, layer, target=tgt, device=dev, **common)  # type: ignore[arg-type]

    if named == "teacher":
        t_res = run(teacher, teacher_layer, "pred", device)
        s_res = run(student, student_layer, torch.from_numpy(t_res.targets), device)
    elif named == "student":
        s_res = run(student, student_layer, "pred", device)
        t_res = run(teacher, teacher_layer, torch.from_numpy(s_res.targets), device)
    else:
        t_res = run(teacher, teacher_layer, target, device)
        s_res = run(student, student_layer, target, device)
    mode = named or "explicit"
    t_res = dataclasses.replace(t_res, target_mode=mode)
    s_res = dataclasses.replace(s_res, target_mode=mode)
    if t_res.probabilities.shape[1] != s_res.probabilities.shape[1]:
        raise AnalysisError(
            f"student: predicts {s_res.probabilities.shape[1]} classes but the teacher predicts "
            f"{t_res.probabilities.shape[1]}"
        )

    agreement = compare_maps(t_res.maps, s_res.maps, frac)
    k = int(t_res.probabilities.shape[1])
    lab = label_t.numpy()
    check_label_range(label_t, k, "labels")
    loc_t = loc_s = None
    if masks is not None or boxes is not None:
        loc_t = localization_metrics(t_res.maps, masks, boxes, threshold)
        loc_s = localization_metrics(s_res.maps, masks, boxes, threshold)
    return CAMComparison(
        method=method,
        target_mode=mode,
        top_k=frac,
        teacher=t_res,
        student=s_res,
        labels=lab,
        pearson=agreement["pearson"],
        spearman=agreement["spearman"],
        topk_iou=agreement["topk_iou"],
        same_prediction=t_res.predictions == s_res.predictions,
        class_counts=np.bincount(lab, minlength=k),
        per_class_pearson=nanmean_by_class(agreement["pearson"], lab, k),
        per_class_spearman=nanmean_by_class(agreement["spearman"], lab, k),
        per_class_topk_iou=nanmean_by_class(agreement["topk_iou"], lab, k),
        teacher_localization=loc_t,
        student_localization=loc_s,
    )


# ---- public: faithfulness -------------------------------------------------------------------------
def curve_auc(
    scores: torch.Tensor | np.ndarray, fractions: torch.Tensor | np.ndarray | None = None
) -> np.ndarray:
    """Trapezoid area under each curve of ``scores`` ``(N, S)`` (or one curve ``(S,)``) against
    ``fractions`` ``(S,)`` (default: ``S`` evenly spaced points on ``[0, 1]``), as RISE reports AUC."""
    s = _as_tensor(scores, "scores").to(torch.float64)
    single = s.ndim == 1
    if single:
        s = s.unsqueeze(0)
    if s.ndim != 2 or s.shape[1] < 2:
        raise AnalysisError(f"scores: expected curves (N, S) with S >= 2 points, got shape {tuple(s.shape)}")
    f = (
        torch.linspace(0.0, 1.0, s.shape[1], dtype=torch.float64)
        if fractions is None
        else _as_tensor(fractions, "fractions").to(torch.float64)
    )
    if f.ndim != 1 or f.shape[0] != s.shape[1]:
        raise AnalysisError(
            f"fractions: expected {s.shape[1]} points to match scores, got shape {tuple(f.shape)}"
        )
    auc = metrics.trapezoid_auc(f, s).numpy()
    return auc[0:1] if single else auc


def _baseline_images(
    baseline: object, mode: str, images: torch.Tensor, blur_kernel: int, blur_sigma: float
) -> tuple[torch.Tensor, str]:
    choice = ("zeros" if mode == "deletion" else "blur") if baseline is None else baseline
    if isinstance(choice, str):
        if choice == "zeros":
            return torch.zeros_like(images), "zeros"
        if choice == "blur":
            return metrics.gaussian_blur(images, blur_kernel, blur_sigma), "blur"
        raise AnalysisError(f"baseline: unknown {choice!r}; known: zeros, blur, or a tensor")
    t = _as_tensor(choice, "baseline").to(images.device, images.dtype)
    if t.shape == images.shape[1:]:
        t = t.unsqueeze(0)
    try:
        return t.expand_as(images), "tensor"
    except RuntimeError:
        raise AnalysisError(
            f"baseline: expected a tensor of shape {tuple(images.shape[1:])} or {tuple(images.shape)}, "
            f"got {tuple(t.shape)}"
        ) from None


def faithfulness(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor | np.ndarray,
    targets: int | torch.Tensor | np.ndarray,
    mode: str = "deletion",
    steps: int = 20,
    *,
    baseline: str | torch.Tensor | None = None,
    score: str = "prob",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
) -> FaithfulnessResult:
    """Deletion or insertion curve of each map (Petsiuk et al. 2018, RISE, sec. 4.1).

    Pixels are ranked by ``maps`` ``(N, H, W)`` (highest first, ties in raster order). At step
    ``s = 0..steps`` the first ``round(s * H * W / steps)`` pixels (all channels) are replaced by the
    baseline (``mode="deletion"``) or copied from the image into the baseline (``"insertion"``).
    ``baseline``: ``"zeros"`` (the dataset mean after normalization), ``"blur"`` (Gaussian blur with
    ``blur_kernel``/``blur_sigma``) or a tensor; default as in RISE: zeros for deletion, blur for
    insertion. ``score``: softmax probability (``"prob"``) or logit (``"logit"``) of ``targets``.
    All ``N * (steps + 1)`` perturbed images are built by index arithmetic in chunks of
    ``batch_size`` and evaluated under ``inference_mode``. Returns a :class:`FaithfulnessResult`.
    """
    images = _check_images4d(images)
    n, _, h, w = (int(s) for s in images.shape)
    map_t = _check_maps(maps, n, (h, w), "maps")
    if mode not in ("deletion", "insertion"):
        raise AnalysisError(f"mode: unknown {mode!r}; known: deletion, insertion")
    if score not in ("prob", "logit"):
        raise AnalysisError(f"score: unknown {score!r}; known: prob, logit")
    n_steps = check_positive_int(steps, "steps")
    bs = check_positive_int(batch_size, "batch_size")
    kernel = check_positive_int(blur_kernel, "blur_kernel")
    sigma = check_positive_float(blur_sigma, "blur_sigma")
    dev = resolve_device(model, device)
    p = h * w
    counts = torch.tensor([round(s * p / n_steps) for s in range(n_steps + 1)], dtype=torch.int64)
    fractions = counts.to(torch.float64) / p

    with on_device(model, dev), training_mode(model, False), torch.inference_mode():
        x_all = images.to(dev)
        base, base_name = _baseline_images(baseline, mode, x_all, kernel, sigma)
        order = torch.sort(map_t.reshape(n, p).to(dev), dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(p, device=dev).expand(n, p))
        counts_d = counts.to(dev)
        probe = model(x_all[:1])
        if probe.ndim != 2:
            raise AnalysisError(
                f"model: expected logits of shape (N, K) from forward, got {tuple(probe.shape)}"
            )
        tgt = _explicit_targets(targets, n, int(probe.shape[1])).to(dev)
        out = torch.empty(n_steps + 1, n, dtype=torch.float64, device=dev)
        for sl in batch_slices((n_steps + 1) * n, bs):
            idx = torch.arange(sl.start, sl.stop, device=dev)
            si, ii = idx // n, idx % n
            chosen = (rank[ii] < counts_d[si].unsqueeze(1)).view(-1, 1, h, w)
            if mode == "deletion":
                xp = torch.where(chosen, base[ii], x_all[ii])
            else:
                xp = torch.where(chosen, x_all[ii], base[ii])
            logits = model(xp).float()
            values = torch.softmax(logits, dim=1) if score == "prob" else logits
            out.view(-1)[sl] = values.gather(1, tgt[ii].unsqueeze(1)).squeeze(1).to(torch.float64)
    scores = out.t().cpu()
    return FaithfulnessResult(
        mode=mode,
        score=score,
        baseline=base_name,
        fractions=fractions.numpy(),
        scores=scores.numpy(),
        auc=metrics.trapezoid_auc(fractions, scores).numpy(),
    )


def cross_faithfulness(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    teacher_maps: torch.Tensor | np.ndarray,
    student_maps: torch.Tensor | np.ndarray,
    targets: int | torch.Tensor | np.ndarray,
    mode: str = "deletion",
    steps: int = 20,
    **options: Any,
) -> CrossFaithfulnessResult:
    """Deletion/insertion curves of both maps on both models (see :func:`faithfulness`).

    Each model scores the teacher's and the student's maps in one call (the two map sets stacked),
    with the same ``targets`` (e.g. the true labels). ``options`` go to :func:`faithfulness`
    (``baseline``, ``score``, ``batch_size``, ``device``, ...). Returns a
    :class:`CrossFaithfulnessResult`.
    """
    images = _check_images4d(images)
    n, _, h, w = (int(s) for s in images.shape)
    tm = _check_maps(teacher_maps, n, (h, w), "teacher_maps")
    sm = _check_maps(student_maps, n, (h, w), "student_maps")
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        tgt_t = check_labels(targets, n, "targets")
        both_targets: int | torch.Tensor = torch.cat([tgt_t, tgt_t])
    else:
        both_targets = targets
    stacked_images = torch.cat([images, images])
    stacked_maps = torch.cat([tm, sm])

    def split(result: FaithfulnessResult) -> tuple[FaithfulnessResult, FaithfulnessResult]:
        first = dataclasses.replace(result, scores=result.scores[:n], auc=result.auc[:n])
        second = dataclasses.replace(result, scores=result.scores[n:], auc=result.auc[n:])
        return first, second

    on_teacher = faithfulness(teacher, stacked_images, stacked_maps, both_targets, mode, steps, **options)
    on_student = faithfulness(student, stacked_images, stacked_maps, both_targets, mode, steps, **options)
    tt, st = split(on_teacher)
    ts, ss = split(on_student)
    return CrossFaithfulnessResult(
        mode=mode,
        teacher_map_on_teacher=tt,
        student_map_on_teacher=st,
        teacher_map_on_student=ts,
        student_map_on_student=ss,
    )
