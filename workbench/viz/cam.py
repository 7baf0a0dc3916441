"""Views of class activation maps: the teacher/student grid, per-class agreement, localization, faithfulness.

Inputs are the dataclasses of :mod:`workbench.analysis.cam` (:class:`CAMComparison`,
:class:`LocalizationResult`, :class:`FaithfulnessResult`, :class:`CrossFaithfulnessResult`).
A comparison with extra models (``compare_cams(..., extra=...)``) shows one column per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz._layout import class_bars, image_axes, pick_indices, positive_int, require
from workbench.viz.images import to_display_images
from workbench.viz.theme import (
    MAP_SCALE,
    SEQUENTIAL_SCALE,
    STUDENT_COLOR,
    TEACHER_COLOR,
    VizError,
    class_labels,
    role_color,
    style_figure,
)

if TYPE_CHECKING:
    from workbench.analysis.cam import (
        CAMComparison,
        CrossFaithfulnessResult,
        FaithfulnessResult,
        LocalizationResult,
    )

__all__ = [
    "cam_class_agreement",
    "cam_grid",
    "cross_faithfulness_heatmap",
    "faithfulness_curves",
    "localization_summary",
]

_COMPARISON = ("teacher", "student", "labels", "pearson")


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def _name(classes: list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def _models(comparison: object) -> dict:
    """Every model's CAM result by name (teacher, student, extras); plain teacher/student otherwise."""
    results = getattr(comparison, "results", None)
    if isinstance(results, Mapping) and results:
        return dict(results)
    return {"teacher": comparison.teacher, "student": comparison.student}  # type: ignore[attr-defined]


def _pair_scores(comparison: object, first: str, name: str, i: int) -> tuple[float, float]:
    """Pearson and Spearman of image ``i`` between the first model's map and ``name``'s."""
    names = tuple(getattr(comparison, "names", ("teacher", "student")))
    if len(names) == 2 and name == names[1]:
        return float(comparison.pearson[i]), float(comparison.spearman[i])  # type: ignore[attr-defined]
    agreement = comparison.agreement(first, name)  # type: ignore[attr-defined]
    return float(agreement.pearson[i]), float(agreement.spearman[i])


def _grid_images(
    images: object | None, mean: Sequence[float] | None, std: Sequence[float] | None, maps: np.ndarray
) -> np.ndarray | None:
    """``images`` as display images matching ``maps`` ``(N, H, W)``; None without images."""
    if images is None:
        return None
    pics = to_display_images(images, mean, std)
    n = int(maps.shape[0])
    if pics.shape[0] != n or pics.shape[1:3] != maps.shape[1:]:
        raise VizError(
            f"images: expected {n} images of size {maps.shape[1]}x{maps.shape[2]} to match the maps, "
            f"got {pics.shape[0]} of {pics.shape[1]}x{pics.shape[2]}"
        )
    return pics


def _grid_titles(
    comparison: CAMComparison, models: dict, rows: list[int], classes: list[str], with_images: bool
) -> list[str]:
    """The subplot titles of :func:`cam_grid`, row by row."""
    model_names = list(models)
    titles = []
    for i in rows:
        if with_images:
            labels = comparison.labels
            titles.append(f"#{i} · {_name(classes, int(labels[i]))}" if labels is not None else f"#{i}")
        for j, name in enumerate(model_names):
            res = models[name]
            tgt, pred = int(res.targets[i]), int(res.predictions[i])
            text = f"{name}: map {_name(classes, tgt)}, pred {_name(classes, pred)}"
            if j > 0:
                r, rho = _pair_scores(comparison, model_names[0], name, i)
                text += f" · r={_fmt(r)} ρ={_fmt(rho)}"
            titles.append(text)
    return titles


def _add_grid_row(
    fig: go.Figure, r: int, i: int, models: dict, pics: np.ndarray | None, opacity: float
) -> None:
    """Row ``r`` of :func:`cam_grid`: image ``i`` (with images), then each model's map (over it)."""
    last = list(models)[-1]
    c = 1
    if pics is not None:
        fig.add_trace(go.Image(z=pics[i], name=f"image {i}", hoverinfo="skip"), row=r, col=c)
        c += 1
    for role, res in models.items():
        maps = np.asarray(res.maps)
        if pics is not None:
            fig.add_trace(go.Image(z=pics[i], name=f"image {i}", hoverinfo="skip"), row=r, col=c)
        fig.add_trace(
            go.Heatmap(
                z=maps[i],
                zmin=0.0,
                zmax=1.0,
                colorscale=MAP_SCALE,
                opacity=float(opacity) if pics is not None else 1.0,
                showscale=(r == 1 and role == last),
                colorbar={"title": "map", "len": 0.5},
                name=f"{role} map {i}",
                hovertemplate=f"{role}<br>x=%{{x}} y=%{{y}}<br>map=%{{z:.2f}}<extra></extra>",
            ),
            row=r,
            col=c,
        )
        c += 1


def cam_grid(
    comparison: CAMComparison,
    images: object | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    max_images: int = 6,
    class_names: Sequence[str] | None = None,
    opacity: float = 0.5,
    title: str | None = None,
) -> go.Figure:
    """Teacher and student (and any extra models') maps side by side, one row per image, each map's
    correlation with the teacher's in the titles.

    Args:
        comparison: a :class:`CAMComparison` (maps ``(N, H, W)`` in ``[0, 1]``).
        images: the same ``N`` images (see :func:`workbench.viz.images.to_display_images` for the
            accepted forms); when given, the first column shows the image and the maps are laid
            over it with ``opacity``; without images only the maps are drawn.
        mean, std: the dataset's statistics when ``images`` are normalized floats.
        indices: which images to show (positions in ``0..N-1``); default the first ``max_images``.
        max_images: number of rows when ``indices`` is not given.
        class_names: display names of the classes.
        opacity: opacity of a map over its image.
        title: figure title.

    Returns:
        A figure with one row per image and columns (image,) teacher map, student map (, extra
        models' maps). Per row the traces are: ``Image`` (with images), then for each model
        (``Image``,) ``Heatmap`` whose ``z`` is that model's ``maps[i]``. Titles name the true class
        (when labels are known), each model's target and prediction, and the Pearson/Spearman
        correlation of each map with the first model's.
    """
    require(comparison, _COMPARISON, "comparison", "a CAMComparison")
    models = _models(comparison)
    model_names = list(models)
    maps_t = np.asarray(models[model_names[0]].maps)
    n = int(maps_t.shape[0])
    rows = pick_indices(indices, n, positive_int(max_images, "max_images"))
    if not rows:
        raise VizError("indices: expected at least one image to show, got none")
    if not 0.0 <= float(opacity) <= 1.0:
        raise VizError(f"opacity: expected a number in [0, 1], got {opacity!r}")
    pics = _grid_images(images, mean, std, maps_t)
    k = int(np.asarray(models[model_names[0]].probabilities).shape[1])
    if class_names is None:
        class_names = getattr(comparison, "class_names", None)
    classes = class_labels(k, class_names)
    cols = len(model_names) + (1 if pics is not None else 0)
    fig = make_subplots(
        rows=len(rows),
        cols=cols,
        subplot_titles=_grid_titles(comparison, models, rows, classes, pics is not None),
        horizontal_spacing=0.03,
        vertical_spacing=min(0.08, 0.3 / max(len(rows), 1)),
    )
    for r, i in enumerate(rows, start=1):
        _add_grid_row(fig, r, i, models, pics, opacity)
    image_axes(fig, len(rows), cols)
    fig.update_annotations(font_size=10)
    method = getattr(comparison, "method", "cam")
    return style_figure(
        fig,
        title if title is not None else f"{method}: {' vs '.join(model_names)} maps",
        height=max(260, 200 * len(rows) + 80),
    )


def cam_class_agreement(
    comparison: CAMComparison,
    class_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
) -> go.Figure:
    """Per-class agreement of teacher and student maps: mean Pearson, Spearman and top-k IoU by true
    class (by the teacher's predicted class when the comparison was made without labels).

    Returns:
        A bar chart with three traces (``per_class_pearson``, ``per_class_spearman``,
        ``per_class_topk_iou`` of ``comparison``), x = class names; NaN for classes without images.
    """
    require(
        comparison,
        ("per_class_pearson", "per_class_spearman", "per_class_topk_iou", "class_counts"),
        "comparison",
        "a CAMComparison",
    )
    k = len(comparison.per_class_pearson)
    if class_names is None:
        class_names = getattr(comparison, "class_names", None)
    classes = class_labels(k, class_names)
    counts = np.asarray(comparison.class_counts)
    top = int(round(100 * float(getattr(comparison, "top_k", 0.2))))
    fig = class_bars(
        classes,
        (
            ("Pearson", comparison.per_class_pearson, "#4e79a7"),
            ("Spearman", comparison.per_class_spearman, "#76b7b2"),
            (f"top-{top}% IoU", comparison.per_class_topk_iou, "#f28e2b"),
        ),
        counts,
        "images",
    )
    by_label = getattr(comparison, "labels", ()) is not None
    fig.update_layout(
        barmode="group",
        xaxis_title="true class" if by_label else "teacher's predicted class",
        yaxis_title="teacher–student map agreement",
    )
    fig.update_yaxes(
        range=[min(0.0, float(np.nanmin(np.r_[comparison.per_class_pearson, 0.0]))) - 0.05, 1.05]
    )
    return style_figure(fig, title if title is not None else "Where the maps agree, by class")


def localization_summary(
    results: CAMComparison | Mapping[str, LocalizationResult],
    *,
    title: str | None = None,
) -> go.Figure:
    """How well each model's maps sit on the objects: energy in box/mask, context reliance, GT-known loc.

    Args:
        results: a :class:`CAMComparison` computed with masks or boxes (teacher, student and any
            extra models), or a mapping ``{name: LocalizationResult}`` for any number of models.

    Returns:
        A grouped bar chart with one trace per model; x = the metrics of
        :meth:`LocalizationResult.summary` that are defined (mask metrics need masks), y = their values.
    """
    if isinstance(results, Mapping):
        named = dict(results)
    else:
        require(results, ("teacher_localization", "student_localization"), "results", "a CAMComparison")
        if results.teacher_localization is None or results.student_localization is None:
            raise VizError("results: the comparison has no localization; compute it with masks or boxes")
        named = dict(getattr(results, "localization", {})) or {
            "teacher": results.teacher_localization,
            "student": results.student_localization,
        }
    if not named:
        raise VizError("results: expected at least one localization result, got none")
    summaries = {}
    for name, loc in named.items():
        require(loc, ("summary",), f"results[{name!r}]", "a LocalizationResult")
        summaries[name] = loc.summary()
    keys = [k for k in next(iter(summaries.values())) if any(np.isfinite(s[k]) for s in summaries.values())]
    labels = {
        "energy_in_box": "energy in box",
        "energy_in_mask": "energy in mask",
        "context_reliance": "context reliance",
        "gt_known_accuracy": "GT-known loc. acc.",
        "mean_box_iou": "mean box IoU",
    }
    fig = go.Figure()
    for i, (name, summ) in enumerate(summaries.items()):
        fig.add_trace(
            go.Bar(
                x=[labels.get(k, k) for k in keys],
                y=[summ[k] for k in keys],
                name=name,
                marker_color=role_color(name, i),
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(barmode="group", yaxis_title="share / accuracy")
    fig.update_yaxes(range=[0, 1.05])
    return style_figure(fig, title if title is not None else "Localization of the maps")


def _curves(result: object) -> dict[str, FaithfulnessResult]:
    if hasattr(result, "teacher_map_on_teacher"):
        return {
            "teacher map, teacher scores": result.teacher_map_on_teacher,  # type: ignore[attr-defined]
            "student map, teacher scores": result.student_map_on_teacher,  # type: ignore[attr-defined]
            "teacher map, student scores": result.teacher_map_on_student,  # type: ignore[attr-defined]
            "student map, student scores": result.student_map_on_student,  # type: ignore[attr-defined]
        }
    if isinstance(result, Mapping):
        return dict(result)
    require(result, ("fractions", "scores", "auc"), "result", "a FaithfulnessResult")
    return {str(getattr(result, "mode", "curve")): result}  # type: ignore[dict-item]


def faithfulness_curves(
    result: CrossFaithfulnessResult | FaithfulnessResult | Mapping[str, FaithfulnessResult],
    *,
    title: str | None = None,
) -> go.Figure:
    """Deletion or insertion curves (RISE, Petsiuk et al. 2018): mean target score against the fraction
    of pixels removed or inserted, with each curve's mean AUC in the legend.

    Args:
        result: a :class:`CrossFaithfulnessResult` (four curves: whose map x which model scores), one
            :class:`FaithfulnessResult`, or a mapping ``{name: FaithfulnessResult}``.

    Returns:
        A line chart with one trace per curve: ``x = fractions``, ``y = scores.mean(axis=0)``. For
        the cross result the colour says whose map orders the pixels (teacher blue, student orange)
        and the dash which model scores (solid: teacher, dashed: student).
    """
    curves = _curves(result)
    if not curves:
        raise VizError("result: expected at least one faithfulness curve, got none")
    fig = go.Figure()
    mode = "deletion"
    for i, (name, curve) in enumerate(curves.items()):
        require(curve, ("fractions", "scores", "auc"), f"result[{name!r}]", "a FaithfulnessResult")
        mode = str(getattr(curve, "mode", mode))
        color, dash = role_color(name, i), "solid"
        if "map," in name:
            color = TEACHER_COLOR if name.startswith("teacher") else STUDENT_COLOR
            dash = "solid" if name.endswith("teacher scores") else "dash"
        auc = float(np.mean(curve.auc))
        fig.add_trace(
            go.Scatter(
                x=np.asarray(curve.fractions, dtype=np.float64),
                y=np.asarray(curve.scores, dtype=np.float64).mean(axis=0),
                mode="lines+markers",
                name=f"{name} (AUC {auc:.3f})",
                line={"color": color, "dash": dash},
                marker={"size": 4},
            )
        )
    what = "removed" if mode == "deletion" else "inserted"
    score = str(getattr(next(iter(curves.values())), "score", "prob"))
    fig.update_layout(
        xaxis_title=f"fraction of pixels {what} (most important first)",
        yaxis_title="target probability" if score == "prob" else "target logit",
    )
    return style_figure(fig, title if title is not None else f"{mode.capitalize()} curves")


def cross_faithfulness_heatmap(result: CrossFaithfulnessResult, *, title: str | None = None) -> go.Figure:
    """The 2x2 matrix of mean deletion/insertion AUCs: rows = scoring model, columns = whose map.

    Returns:
        One ``Heatmap`` trace whose ``z`` is ``result.auc_matrix()`` with the values written in the cells.
    """
    require(result, ("auc_matrix", "mode"), "result", "a CrossFaithfulnessResult")
    z = np.asarray(result.auc_matrix(), dtype=np.float64)
    better = "lower" if result.mode == "deletion" else "higher"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=["teacher map", "student map"],
            y=["teacher scores", "student scores"],
            colorscale=SEQUENTIAL_SCALE if result.mode == "insertion" else SEQUENTIAL_SCALE + "_r",
            texttemplate="%{z:.3f}",
            colorbar={"title": "AUC"},
            hovertemplate="%{y}, %{x}: AUC %{z:.4f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return style_figure(
        fig,
        title if title is not None else f"Cross-faithfulness ({result.mode} AUC, {better} is more faithful)",
        height=380,
    )
