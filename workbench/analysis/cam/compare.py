"""Maps of a teacher, a student and any further models on the same images, compared:
:func:`compare_cams` and the map-level :func:`compare_maps`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_label_range,
    check_positive_int,
    nanmean_by_class,
)
from workbench.analysis.cam import metrics
from workbench.analysis.cam._checks import (
    check_class_names,
    check_fraction,
    check_images4d,
    check_labels_cpu,
    check_map_stack,
    check_maps,
    did_you_mean,
    explicit_targets,
)
from workbench.analysis.cam.compute import TARGET_MODES, Target, compute_cams, normalize_target
from workbench.analysis.cam.localization import check_objects, localization_metrics
from workbench.analysis.cam.registry import get_cam_method, parse_cam_params
from workbench.analysis.cam.results import CAMComparison, CAMResult, LocalizationResult, MapAgreement
from workbench.runtime import CancelToken, Tracker

__all__ = ["compare_cams", "compare_maps"]


def compare_maps(
    maps_a: torch.Tensor | np.ndarray, maps_b: torch.Tensor | np.ndarray, *, top_k: float = 0.2
) -> dict[str, np.ndarray]:
    """Per-image agreement of two stacks of maps ``(N, H, W)`` on the same grid (any device).

    Returns ``{"pearson", "spearman", "topk_iou"}``, each ``(N,)`` float64: Pearson correlation of
    the pixel values, Spearman rank correlation (average ranks for ties; both NaN where a map is
    constant) and the IoU of the ``top_k`` fraction (``max(1, round(top_k * H * W))`` pixels) of
    each map's highest pixels.
    """
    a = check_map_stack(maps_a, "maps_a")
    b = check_maps(maps_b, int(a.shape[0]), (int(a.shape[1]), int(a.shape[2])), "maps_b")
    frac = check_fraction(top_k, "top_k")
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return {
        "pearson": metrics.pearson_rows(fa, fb).numpy(),
        "spearman": metrics.spearman_rows(fa, fb).numpy(),
        "topk_iou": metrics.mask_iou(metrics.topk_masks(fa, frac), metrics.topk_masks(fb, frac)).numpy(),
    }


def _check_models(
    teacher: object, student: object, names: object, extra: object
) -> list[tuple[str, nn.Module]]:
    if (
        not isinstance(names, (tuple, list))
        or len(names) != 2
        or not all(isinstance(s, str) and s for s in names)
        or names[0] == names[1]
    ):
        raise AnalysisError(
            f"names: expected two different non-empty strings (teacher, student), got {names!r}"
        )
    for arg, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, nn.Module):
            raise AnalysisError(f"{arg}: expected a torch.nn.Module, got {type(model).__name__}")
    models: list[tuple[str, nn.Module]] = [(names[0], teacher), (names[1], student)]  # type: ignore[list-item]
    if extra is None:
        return models
    if not isinstance(extra, Mapping):
        raise AnalysisError(f"extra: expected a dict name -> model, got {type(extra).__name__}")
    for name, model in extra.items():
        if not isinstance(name, str) or not name or name in (m for m, _ in models):
            raise AnalysisError(f"extra: expected new non-empty names besides {list(names)}, got {name!r}")
        if not isinstance(model, nn.Module):
            raise AnalysisError(f"extra[{name!r}]: expected a torch.nn.Module, got {type(model).__name__}")
        models.append((name, model))
    return models


def _check_layers(layers: object, model_names: list[str]) -> dict[str, str | None]:
    if layers is None:
        return dict.fromkeys(model_names)
    if isinstance(layers, Mapping):
        for key in layers:
            if key not in model_names:
                hint = did_you_mean(str(key), model_names) or ";"
                raise AnalysisError(f"layers: no model named {key!r}{hint} models: {', '.join(model_names)}")
        return {name: layers.get(name) for name in model_names}
    if isinstance(layers, (list, tuple)) and len(layers) == len(model_names):
        return dict(zip(model_names, layers, strict=True))
    raise AnalysisError(
        f"layers: expected a dict model name -> module path (or None) for {', '.join(model_names)}, "
        f"got {type(layers).__name__}"
    )


def _agreement(
    a: tuple[str, CAMResult], b: tuple[str, CAMResult], groups: np.ndarray, k: int, frac: float, names: Any
) -> MapAgreement:
    cmp = compare_maps(a[1].maps, b[1].maps, top_k=frac)
    return MapAgreement(
        a=a[0],
        b=b[0],
        pearson=cmp["pearson"],
        spearman=cmp["spearman"],
        topk_iou=cmp["topk_iou"],
        same_prediction=a[1].predictions == b[1].predictions,
        per_class_pearson=nanmean_by_class(cmp["pearson"], groups, k),
        per_class_spearman=nanmean_by_class(cmp["spearman"], groups, k),
        per_class_topk_iou=nanmean_by_class(cmp["topk_iou"], groups, k),
        class_names=names,
        params={"top_k": frac},
    )


def _maps_of_every_model(
    models: list[tuple[str, nn.Module]],
    images: torch.Tensor,
    layer_of: dict[str, str | None],
    mode: str | None,
    shared: torch.Tensor | None,
    common: dict[str, Any],
    track: Tracker,
    per_model: int,
) -> dict[str, CAMResult]:
    """Every model's :func:`compute_cams` result by name, with the call's target mode recorded.

    ``shared``: the targets of every model (None: each its own prediction, or, for the
    ``"teacher"``/``"student"`` modes, that model's predictions; that model goes first).
    ``track`` gets ``per_model`` units per model.
    """
    order = list(range(len(models)))
    leader = {"teacher": 0, "student": 1}.get(mode or "")
    if leader is not None:  # the model whose predictions become everybody's targets goes first
        order.remove(leader)
        order.insert(0, leader)
    results: dict[str, CAMResult] = {}
    for step, i in enumerate(order):
        name, model = models[i]
        tgt: object = "predicted" if shared is None else shared
        res = compute_cams(
            model,
            images,
            layer=layer_of[name],
            target=tgt,  # type: ignore[arg-type]
            progress=track.part(step * per_model, (step + 1) * per_model, name),
            **common,
        )
        if leader is not None and shared is None:
            shared = torch.from_numpy(res.targets)
        shown = mode or "explicit"
        results[name] = dataclasses.replace(res, target_mode=shown, params={**res.params, "target": shown})
    track.report(track.total)
    track.check()
    return results


def _class_count(results: dict[str, CAMResult], model_names: list[str]) -> int:
    """The number of classes every model predicts (a one-line error when a model differs)."""
    k = int(results[model_names[0]].probabilities.shape[1])
    for name in model_names[1:]:
        other = int(results[name].probabilities.shape[1])
        if other != k:
            raise AnalysisError(f"{name}: predicts {other} classes but the teacher predicts {k}")
    return k


def _localizations(
    results: dict[str, CAMResult],
    model_names: list[str],
    mask_t: torch.Tensor | None,
    box_t: torch.Tensor | None,
    threshold: float,
    names_list: list[str] | None,
) -> dict[str, LocalizationResult]:
    """Each model's :func:`localization_metrics` by name; empty without masks or boxes."""
    loc: dict[str, LocalizationResult] = {}
    if mask_t is not None or box_t is not None:
        for name in model_names:
            loc[name] = localization_metrics(
                results[name].maps, mask_t, box_t, threshold=threshold, class_names=names_list
            )
    return loc


def _comparison(
    cls_name: str,
    mode: str | None,
    results: dict[str, CAMResult],
    model_names: list[str],
    label_t: torch.Tensor | None,
    groups: np.ndarray,
    k: int,
    pairs: list[MapAgreement],
    loc: dict[str, LocalizationResult],
    names_list: list[str] | None,
    frac: float,
    threshold: float,
) -> CAMComparison:
    """The :class:`CAMComparison`: the first pair (teacher, student) on top, every pair in ``pairwise``."""
    main = pairs[0]
    t_name, s_name = model_names[0], model_names[1]
    return CAMComparison(
        method=cls_name,
        target_mode=mode or "explicit",
        top_k=frac,
        teacher=results[t_name],
        student=results[s_name],
        labels=None if label_t is None else label_t.numpy(),
        pearson=main.pearson,
        spearman=main.spearman,
        topk_iou=main.topk_iou,
        same_prediction=main.same_prediction,
        class_counts=np.bincount(groups, minlength=k),
        per_class_pearson=main.per_class_pearson,
        per_class_spearman=main.per_class_spearman,
        per_class_topk_iou=main.per_class_topk_iou,
        teacher_localization=loc.get(t_name),
        student_localization=loc.get(s_name),
        names=(t_name, s_name),
        extra={name: results[name] for name in model_names[2:]},
        extra_localization={name: loc[name] for name in model_names[2:] if name in loc},
        pairwise=pairs,
        class_names=names_list,
        params={
            **{key: v for key, v in results[t_name].params.items() if key != "layer"},
            "layers": {name: results[name].layer for name in model_names},
            "target": mode or "explicit",
            "top_k": frac,
            "threshold": float(threshold),
            "classes_by": "label" if label_t is not None else f"{t_name} prediction",
            "models": model_names,
        },
    )


def compare_cams(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    method: str = "gradcam",
    layers: Mapping[str, str | None] | Sequence[str | None] | None = None,
    target: Target = "label",
    names: tuple[str, str] = ("teacher", "student"),
    extra: Mapping[str, nn.Module] | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    memory_format: str = "auto",
    fold_bn: bool = True,
    masks: torch.Tensor | np.ndarray | None = None,
    boxes: torch.Tensor | np.ndarray | None = None,
    threshold: float = 0.2,
    top_k: float = 0.2,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **method_params: Any,
) -> CAMComparison:
    """Maps of ``teacher``, ``student`` (and the ``extra`` models) on the same ``images``, compared.

    Every model's maps come from :func:`compute_cams` with the same ``method`` (and
    ``method_params``), ``device``, ``batch_size``, ``memory_format`` and ``fold_bn``; ``layers``
    maps a model name (``names`` or a key of ``extra``) to its module path, None or a missing name
    meaning that model's last convolutional layer (a list in model order works too).

    ``target``: ``"label"`` (the true class; needs ``labels``), ``"teacher"`` / ``"student"`` (that
    model's prediction, used for every map), ``"predicted"`` (each model its own prediction), an
    int, or a per-image tensor/array ``(N,)`` (any device). ``extra``: further models by name, e.g.
    a student trained without the teacher, compared with the same method and targets.

    Maps are compared on the image grid with :func:`compare_maps` (``top_k`` fraction for the region
    IoU) for every pair of models and averaged per class — per true class, or per teacher-predicted
    class when ``labels`` is None. With ``masks``/``boxes`` every model also gets
    :func:`localization_metrics` at ``threshold``. ``progress`` runs over all models' batches;
    ``cancel`` is checked per batch (:class:`workbench.runtime.Cancelled`); no model is changed.

    Returns a :class:`CAMComparison` (teacher–student agreement in its top-level fields, every pair in
    ``pairwise``) with ``class_names`` and ``params``.
    """
    cls = get_cam_method(method)
    parse_cam_params(method, method_params)
    images = check_images4d(images)
    n, _, h, w = (int(s) for s in images.shape)
    label_t = None if labels is None else check_labels_cpu(labels, n, "labels")
    frac = check_fraction(top_k, "top_k")
    check_fraction(threshold, "threshold")
    bs = check_positive_int(batch_size, "batch_size")
    models = _check_models(teacher, student, names, extra)
    model_names = [name for name, _ in models]
    layer_of = _check_layers(layers, model_names)
    mode = normalize_target(target)
    if mode == "label" and label_t is None:
        raise AnalysisError("labels: target='label' needs labels, got None; pass labels or target='teacher'")
    explicit = explicit_targets(target, n, None, TARGET_MODES) if mode is None else None
    names_list = check_class_names(class_names)
    mask_t, box_t = check_objects(masks, boxes, n, (h, w))

    per_model = len(batch_slices(n, bs))
    track = Tracker(progress, cancel, total=per_model * len(models), label=f"{cls.name} maps")
    track.start()
    common = {
        "method": method,
        "batch_size": bs,
        "device": device,
        "memory_format": memory_format,
        "fold_bn": fold_bn,
        "class_names": names_list,
        "cancel": cancel,
        **method_params,
    }
    shared: torch.Tensor | None = explicit if mode is None else (label_t if mode == "label" else None)
    results = _maps_of_every_model(models, images, layer_of, mode, shared, common, track, per_model)

    k = _class_count(results, model_names)
    if label_t is not None:
        check_label_range(label_t, k, "labels")
    groups = label_t.numpy() if label_t is not None else results[model_names[0]].predictions
    pairs = [
        _agreement((a, results[a]), (b, results[b]), groups, k, frac, names_list)
        for i, a in enumerate(model_names)
        for b in model_names[i + 1 :]
    ]
    loc = _localizations(results, model_names, mask_t, box_t, threshold, names_list)
    return _comparison(
        cls.name, mode, results, model_names, label_t, groups, k, pairs, loc, names_list, frac, threshold
    )
