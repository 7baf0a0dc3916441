"""The view of a dataset preview (:class:`workbench.data.DatasetPreview`): sample images by class
above the images per class in each split."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz._layout import positive_int, require
from workbench.viz.images import to_display_images
from workbench.viz.theme import NEUTRAL_COLOR, TEACHER_COLOR, style_figure

__all__ = ["dataset_preview_figure", "sample_montage"]

#: colour of each split's bars
SPLIT_COLORS = {"train": TEACHER_COLOR, "test": NEUTRAL_COLOR}


def sample_montage(samples: np.ndarray, index: np.ndarray, gap: int | None = None) -> np.ndarray:
    """One ``uint8`` RGB picture ``(rows, cols, 3)`` of a preview's samples: a row of images per
    class, ``gap`` white pixels between images (default: an eighth of the image height, at least
    one), white where a class has fewer images than the others (``index`` -1).

    ``samples``: ``uint8`` ``(K, P, C, H, W)``; ``index``: ``(K, P)``. Vectorized (no loop over images).
    """
    k, p, c, h, w = samples.shape
    g = max(1, h // 8) if gap is None else int(gap)
    pics = to_display_images(samples.reshape(k * p, c, h, w)).reshape(k, p, h, w, 3)
    pics = np.where((np.asarray(index) >= 0)[:, :, None, None, None], pics, np.uint8(255))
    padded = np.full((k, p, h + g, w + g, 3), 255, dtype=np.uint8)
    padded[:, :, :h, :w] = pics
    canvas = padded.transpose(0, 2, 1, 3, 4).reshape(k * (h + g), p * (w + g), 3)
    return np.ascontiguousarray(canvas[: k * (h + g) - g, : p * (w + g) - g])


def dataset_preview_figure(preview: object, *, max_classes: int = 20, title: str | None = None) -> go.Figure:
    """Sample images of each class (one row per class, the first ``max_classes`` classes) above a bar
    chart of the images per class in the train and test splits (every class).

    Args:
        preview: a :class:`workbench.data.DatasetPreview`.
        max_classes: the most classes whose samples are drawn (the counts show them all).
        title: figure title (default: the dataset's name, shape, classes and split sizes, with the
            train mean and std per channel below).

    Returns:
        A figure with one ``Image`` trace (the montage, class names on its y axis) and one ``Bar``
        trace per split.
    """
    require(preview, ("samples", "sample_index", "counts", "class_names", "mean", "std"), "preview",
            "a DatasetPreview")
    limit = positive_int(max_classes, "max_classes")
    samples = np.asarray(preview.samples)
    index = np.asarray(preview.sample_index)
    names = [str(n) for n in preview.class_names]
    shown = min(len(names), limit)
    h = samples.shape[3]
    gap = max(1, h // 8)
    montage = sample_montage(samples[:shown], index[:shown], gap)
    rows_px = montage.shape[0]
    fig = make_subplots(
        rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.1,
        subplot_titles=(
            f"Samples of the train split ({shown} of {len(names)} classes)" if shown < len(names)
            else "Samples of the train split",
            "Images per class",
        ),
    )
    fig.add_trace(go.Image(z=montage, hoverinfo="skip", name="samples"), row=1, col=1)
    centers = [k * (h + gap) + h / 2 for k in range(shown)]
    fig.update_yaxes(tickvals=centers, ticktext=names[:shown], showgrid=False, zeroline=False,
                     autorange="reversed", scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
    for split, counts in preview.counts.items():
        fig.add_trace(
            go.Bar(x=names, y=np.asarray(counts).tolist(), name=split,
                   marker_color=SPLIT_COLORS.get(split, NEUTRAL_COLOR),
                   hovertemplate="%{x}: %{y} " + split + " images<extra></extra>"),
            row=2, col=1,
        )
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.12})
    fig.update_yaxes(title_text="images", row=2, col=1)
    if title is None:
        c, hh, w = (int(v) for v in preview.image_shape)
        n_train = int(np.asarray(preview.counts["train"]).sum())
        n_test = int(np.asarray(preview.counts["test"]).sum())
        stats = ", ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(preview.mean, preview.std, strict=True))
        title = (
            f"{preview.name}: {c}x{hh}x{w} images, {len(names)} classes, {n_train} train / {n_test} test"
            f"<br><sup>train mean ± std per channel: {stats}</sup>"
        )
    return style_figure(fig, title, height=int(min(900, max(240, rows_px * 1.5))) + 340)
