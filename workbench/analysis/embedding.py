"""2-D maps of a teacher's and a student's penultimate features (PCA or t-SNE), side by side.

Each model's features are projected separately (their widths may differ): scikit-learn's PCA or
t-SNE (van der Maaten & Hinton 2008). The student's map is then centred and rotated/reflected onto
the teacher's by orthogonal Procrustes (Schönemann 1966), so corresponding clusters sit in the same
place while distances within each map are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
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
from workbench.analysis.features import capture_features, check_paths, split_layers
from workbench.models.taps import penultimate_layer
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = ["EMBED_METHODS", "EmbeddingResult", "embedding_2d"]

#: the projections :func:`embedding_2d` knows
EMBED_METHODS = ("pca", "tsne")


@dataclass
class EmbeddingResult(AnalysisResult):
    """Penultimate features of a teacher and a student on the same images, projected to 2-D.

    ``teacher_coords[i]`` and ``student_coords[i]`` belong to image ``indices[i]`` with label
    ``labels[i]``. ``*_explained_variance`` hold PCA's explained-variance ratios of the two axes
    (None for t-SNE). With ``aligned`` the student's map was Procrustes-aligned onto the teacher's.
    """

    teacher_coords: np.ndarray
    student_coords: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    method: str
    teacher_layer: str
    student_layer: str
    aligned: bool
    teacher_explained_variance: np.ndarray | None = None
    student_explained_variance: np.ndarray | None = None
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _collect(
    model: nn.Module, images: torch.Tensor, path: str, bs: int, track: Tracker, message: str
) -> np.ndarray:
    parts = []
    for sl in batch_slices(len(images), bs):
        track.check()
        p = capture_features(model, images[sl], [path])[path]
        parts.append(p.reshape(p.shape[0], -1).float().cpu())
        track.advance(message=message)
    return torch.cat(parts).numpy()


def _project(
    feats: np.ndarray, method: str, seed: int, perplexity: float, arg: str
) -> tuple[np.ndarray, np.ndarray | None]:
    if feats.shape[1] < 2:
        raise AnalysisError(f"{arg}: expected an embedding with at least 2 features, got {feats.shape[1]}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(feats.astype(np.float64))
        return coords, pca.explained_variance_ratio_.astype(np.float64)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # scikit-learn's OpenMP runtime and torch's spin-wait against each other when both are
    # loaded; one OpenMP thread for the fit avoids a slowdown of one to two orders of magnitude.
    with threadpool_limits(limits=1, user_api="openmp"):
        coords = tsne.fit_transform(feats.astype(np.float32))
    return coords.astype(np.float64), None


def _procrustes_align(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre both point sets; rotate/reflect ``moving`` onto ``reference`` (orthogonal Procrustes)."""
    ref = reference - reference.mean(0)
    mov = moving - moving.mean(0)
    u, _, vt = np.linalg.svd(mov.T @ ref)
    return ref, mov @ (u @ vt)


def embedding_2d(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    layers: Mapping[str, str | None] | str | None = None,
    method: str = "pca",
    perplexity: float = 30.0,
    align: bool = True,
    seed: int = 0,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> EmbeddingResult:
    """2-D maps of both models' penultimate features (scikit-learn PCA or t-SNE, van der Maaten 2008).

    Args:
        teacher, student: the two networks; never changed (the forwards run on working copies).
        images: normalized inputs ``(N, C, H, W)``; labels: int64 ``(N,)``.
        layers: the feature path of each model, ``{"teacher": path, "student": path}`` (a missing
            key or ``None``: that model's penultimate embedding), or one path for both.
        method: ``"pca"`` or ``"tsne"``. perplexity: t-SNE perplexity (must be below N).
        align: Procrustes-align the student's map onto the teacher's.
        seed: random state of PCA / t-SNE.
        names, class_names: display names kept in the result.
        device, batch_size: placement and batching of the forwards.
        progress: once per batch of each model, then once per projection. cancel: checked between.

    Returns:
        :class:`EmbeddingResult` with ``teacher_coords``, ``student_coords`` of shape ``(N, 2)``.
    """
    check_model(teacher, "teacher")
    check_model(student, "student")
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    if method not in EMBED_METHODS:
        raise AnalysisError(f"method: unknown projection {method!r}; known: {', '.join(EMBED_METHODS)}")
    if len(images) < 3:
        raise AnalysisError(f"images: a 2-D embedding needs at least 3 images, got {len(images)}")
    perp = check_positive_float(perplexity, "perplexity")
    if method == "tsne" and perp >= len(images):
        raise AnalysisError(
            f"perplexity: expected a value below the number of images {len(images)}, got {perp}"
        )
    pair = check_names(names)
    classes = check_class_names(class_names)
    req = split_layers(layers)
    for role in ("teacher", "student"):
        if req[role] is not None and not isinstance(req[role], str):
            raise AnalysisError(f"layers['{role}']: expected one module path, got {req[role]!r}")
    n_batches = len(batch_slices(len(images), bs))
    track = new_tracker(progress, cancel, 2 * n_batches + 2, "embedding")
    track.start()
    feats, paths = [], []
    for role, model in (("teacher", teacher), ("student", student)):
        work = working_copy(model, resolve_device(model, device))
        path = req[role] if req[role] is not None else penultimate_layer(work)
        check_paths(work, [path], f"layers['{role}']")
        feats.append(_collect(work, images, path, bs, track, f"embedding: {role} features"))
        paths.append(path)
        del work
    projected = []
    for role, f in zip(("teacher", "student"), feats, strict=True):
        projected.append(_project(f, method, int(seed), perp, f"layers['{role}']"))
        track.advance(message=f"embedding: {method} of the {role}")
    (ct, vt), (cs, vs) = projected
    if align:
        ct, cs = _procrustes_align(ct, cs)
    return EmbeddingResult(
        teacher_coords=ct,
        student_coords=cs,
        labels=y.cpu().numpy(),
        indices=np.arange(len(images)),
        method=method,
        teacher_layer=paths[0],
        student_layer=paths[1],
        aligned=bool(align),
        teacher_explained_variance=vt,
        student_explained_variance=vs,
        names=pair,
        class_names=classes,
        params={"method": method, "perplexity": perp, "align": bool(align), "seed": int(seed), "batch_size": bs},
    )
