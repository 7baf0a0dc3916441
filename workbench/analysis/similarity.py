"""Representation similarity between two networks: CKA between their layers, and over training.

:func:`cka_matrix` gives the minibatch CKA (Nguyen, Raghu & Kornblith 2021) between every chosen
layer of a teacher and of a student in one pass over the images; :func:`cka_over_training` the CKA
of every student snapshot against the teacher at matched layer pairs (by default the pairs feature
distillation trains, :func:`matched_pairs`). The estimators themselves (linear and RBF HSIC,
biased and debiased, the minibatch accumulator and its precision) are pure tensor functions in
:mod:`.cka`; the features are read through forward hooks on working copies (:mod:`.features`), so
the caller's models are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    check_memory_format,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    model_device,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis._result import AnalysisResult
from workbench.analysis.cka import MinibatchCKA, check_kernel, check_precision
from workbench.analysis.features import ROLES, capture_features, check_paths, feature_net, split_layers
from workbench.models.errors import ModelError
from workbench.models.layout import channels_last, wants_channels_last
from workbench.models.taps import match_stages, penultimate_layer, stage_layers
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = [
    "CKAResult",
    "CKATrainingResult",
    "cka_matrix",
    "cka_over_training",
    "default_layers",
    "matched_pairs",
]


# ---- CKA between two models ----------------------------------------------------------------------
@dataclass
class CKAResult(AnalysisResult):
    """Minibatch CKA between every chosen layer of a teacher (rows) and a student (columns).

    ``matrix[i, j]`` is CKA between ``teacher_layers[i]`` and ``student_layers[j]`` over
    ``n_samples`` images in batches of (at most) ``batch_size``; ``names`` are the two display names.
    """

    matrix: np.ndarray
    teacher_layers: list[str]
    student_layers: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    kernel: str = "linear"
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def default_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The stage outputs of ``model`` followed by its penultimate embedding, without repeats.

    Args:
        model: the network. input_shape: one input's shape ``(C, H, W)``.

    Returns:
        Module paths, in forward order.
    """
    layers = list(stage_layers(model, input_shape))
    pen = penultimate_layer(model)
    if pen not in layers:
        layers.append(pen)
    return layers


def _layer_list(layers: object, model: nn.Module, input_shape: tuple[int, ...], arg: str) -> list[str]:
    if layers is None:
        try:
            return default_layers(model, input_shape)
        except ModelError as err:
            raise AnalysisError(f"{arg}: no default layers ({err}); pass the module paths") from None
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise AnalysisError(f"{arg}: expected a list of layer paths, got {layers!r}")
    out = [str(s) for s in layers]
    if not out:
        raise AnalysisError(f"{arg}: expected at least one layer path, got none")
    return check_paths(model, out, arg)


def _two_model_features(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    layers_a: list[str],
    layers_b: list[str],
    cl: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward per model (one in total when both are the same module)."""
    if model_a is model_b:
        feats = capture_features(model_a, x, list(dict.fromkeys(layers_a + layers_b)), cl)
        return feats, feats
    return capture_features(model_a, x, layers_a, cl), capture_features(model_b, x, layers_b, cl)


def _copies(
    teacher: nn.Module, student: nn.Module, device: str | torch.device | None
) -> tuple[nn.Module, nn.Module]:
    """Working copies of both models (one shared copy when they are the same module)."""
    dev_t, dev_s = resolve_device(teacher, device), resolve_device(student, device)
    t_copy = working_copy(teacher, dev_t)
    s_copy = t_copy if student is teacher and dev_s == dev_t else working_copy(student, dev_s)
    return t_copy, s_copy


def _check_cka_inputs(
    images: object, labels: object, batch_size: object, debiased: bool, kernel: object, bandwidth: object
) -> tuple[torch.Tensor, int, int, float]:
    images = check_images(images)
    if labels is not None:
        check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    check_kernel(kernel)
    bw = check_positive_float(bandwidth, "bandwidth")
    need = 4 if debiased else 2
    if len(images) < need:
        raise AnalysisError(f"images: minibatch CKA needs at least {need} images, got {len(images)}")
    return images, bs, need, bw


def cka_matrix(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    layers: Mapping[str, Sequence[str] | None] | Sequence[str] | None = None,
    kernel: str = "linear",
    bandwidth: float = 0.5,
    debiased: bool = True,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    precision: str = "float32",
    fold_bn: bool = True,
    memory_format: str = "auto",
) -> CKAResult:
    """CKA between every layer pair of a teacher and a student in one pass over ``images``.

    Minibatch CKA (Nguyen, Raghu & Kornblith 2021) with one forward per model per batch; every
    layer's Gram matrix is computed once per batch and all pairs come from one matrix product.
    Works for teacher vs student, student vs student, and a model against itself (``teacher is
    student``: a single forward per batch). The models are never changed: the forwards run on
    eval-mode working copies.

    Args:
        teacher, student: the two networks (rows and columns of the matrix).
        images: normalized inputs ``(N, C, H, W)``.
        labels: optional ``(N,)`` classes; checked, not needed by CKA.
        layers: ``{"teacher": [...], "student": [...]}`` module paths (``path:input`` captures a
            module's input; a missing key or ``None``: the model's stage outputs followed by its
            penultimate embedding), or one list used for both models.
        kernel: ``"linear"`` (Kornblith et al. 2019, eq. 5) or ``"rbf"`` (median heuristic per batch).
        bandwidth: RBF ``σ`` as a fraction of the median pairwise distance.
        debiased: average the unbiased ``HSIC_1`` (recommended) or the biased ``HSIC_0``.
        names, class_names: display names kept in the result.
        device: where the models run; default: each model's own device.
        batch_size: examples per batch; a tail shorter than 4 is merged into the previous batch.
        progress: ``progress(done, total, message)`` once per batch. cancel: checked every batch.
        precision: ``"float32"`` (default) forms each linear Gram matrix in float32 from centred
            features and accumulates HSIC in float64 (within 1e-6 of ``"float64"``, which forms
            every Gram matrix in float64); see :class:`workbench.analysis.cka.MinibatchCKA`.
        fold_bn: read the features from copies with BatchNorm folded into the convolutions before
            it (pairs whose raw output a tap reads are kept), fewer layers per forward; the
            features agree with the unfolded model up to float rounding.
        memory_format: ``"auto"`` (conv nets channels-last on the CPU, faster; values equal up to
            float rounding), ``"contiguous"`` or ``"channels_last"``.

    Returns:
        :class:`CKAResult` with ``matrix`` of shape ``(len(teacher_layers), len(student_layers))``.
    """
    check_model(teacher, "teacher")
    check_model(student, "student")
    images, bs, need, bw = _check_cka_inputs(images, labels, batch_size, debiased, kernel, bandwidth)
    prec = check_precision(precision)
    fmt = check_memory_format(memory_format)
    pair = check_names(names)
    classes = check_class_names(class_names)
    req = split_layers(layers)
    slices = batch_slices(len(images), bs, min_size=need)
    track = new_tracker(progress, cancel, len(slices), "CKA")
    track.start()
    t_copy, s_copy = _copies(teacher, student, device)
    shape = tuple(images.shape[1:])
    lt = _layer_list(req["teacher"], t_copy, shape, "layers['teacher']")
    ls = _layer_list(req["student"], s_copy, shape, "layers['student']")
    acc = MinibatchCKA(lt, ls, debiased=debiased, kernel=kernel, bandwidth=bw, precision=prec)
    if t_copy is s_copy:
        t_net = s_net = feature_net(t_copy, lt + ls, fold_bn, images[:2])
    else:
        t_net = feature_net(t_copy, lt, fold_bn, images[:2])
        s_net = feature_net(s_copy, ls, fold_bn, images[:2])
    del t_copy, s_copy
    cl = wants_channels_last(fmt, model_device(t_net), t_net) and wants_channels_last(
        fmt, model_device(s_net), s_net
    )
    with channels_last(t_net, s_net, enabled=cl):
        for sl in slices:
            track.check()
            ft, fs = _two_model_features(t_net, s_net, images[sl], lt, ls, cl)
            acc.update(ft, fs)
            track.advance()
    return CKAResult(
        matrix=acc.compute(),
        teacher_layers=lt,
        student_layers=ls,
        n_samples=acc.n_samples,
        batch_size=bs,
        debiased=bool(debiased),
        kernel=kernel,
        names=pair,
        class_names=classes,
        params=_cka_params(kernel, bw, debiased, bs, prec, fold_bn, fmt),
    )


def _cka_params(
    kernel: str,
    bandwidth: Any,
    debiased: bool,
    batch_size: int,
    precision: str,
    fold_bn: bool,
    memory_format: str,
) -> dict[str, Any]:
    """The settings a CKA result records in ``params``."""
    return {
        "kernel": kernel,
        "bandwidth": bandwidth,
        "debiased": bool(debiased),
        "batch_size": batch_size,
        "precision": precision,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
    }


# ---- CKA over training ---------------------------------------------------------------------------
@dataclass
class CKATrainingResult(AnalysisResult):
    """CKA of each student snapshot against the teacher at matched layer pairs.

    ``values[e, p]`` is CKA between ``student_layers[p]`` of the snapshot of ``epochs[e]`` and
    ``teacher_layers[p]`` of the teacher.
    """

    epochs: np.ndarray
    values: np.ndarray
    student_layers: list[str]
    teacher_layers: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    kernel: str = "linear"
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


Snapshot = nn.Module | Callable[[], nn.Module]
Snapshots = Mapping[int, Snapshot] | Sequence[Snapshot | tuple[int, Snapshot]]


def _snapshot_items(snapshots: object) -> list[tuple[int, Snapshot]]:
    """``(epoch, model or loader)`` pairs from a mapping or a sequence (bare entries numbered 1, 2, ...)."""
    if isinstance(snapshots, Mapping):
        items = list(snapshots.items())
    elif isinstance(snapshots, Sequence) and not isinstance(snapshots, str):
        items = []
        for position, item in enumerate(snapshots, start=1):
            if isinstance(item, tuple) and len(item) == 2:
                items.append(item)
            else:
                items.append((position, item))
    else:
        raise AnalysisError(
            f"snapshots: expected a mapping epoch -> model (or a list of models), got {type(snapshots).__name__}"
        )
    out = []
    for epoch, value in items:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise AnalysisError(f"snapshots: expected integer epochs, got {epoch!r}")
        if not isinstance(value, nn.Module) and not callable(value):
            raise AnalysisError(
                f"snapshots[{int(epoch)}]: expected a model or a loader returning one, got {type(value).__name__}"
            )
        out.append((int(epoch), value))
    if not out:
        raise AnalysisError("snapshots: expected at least one student snapshot, got none")
    return out


def _load_snapshot(epoch: int, value: Snapshot) -> nn.Module:
    model = value if isinstance(value, nn.Module) else value()
    if not isinstance(model, nn.Module):
        raise AnalysisError(f"snapshots[{epoch}]: the loader returned {type(model).__name__}, not a model")
    return model


def matched_pairs(
    student: nn.Module, teacher: nn.Module, input_shape: tuple[int, ...]
) -> list[tuple[str, str]]:
    """The ``(student_path, teacher_path)`` pairs feature distillation trains by default
    (:func:`workbench.models.taps.match_stages`), followed by the two penultimate embeddings."""
    try:
        pairs = match_stages(student, teacher, input_shape, input_shape)  # type: ignore[arg-type]
    except ModelError as err:
        raise AnalysisError(f"layers: no default stage pairs ({err}); pass the module paths") from None
    pen = (penultimate_layer(student), penultimate_layer(teacher))
    if pen not in pairs:
        pairs.append(pen)
    return pairs


def _training_layers(
    layers: Mapping[str, Sequence[str]] | None, t_copy: nn.Module, first: nn.Module, shape: tuple[int, ...]
) -> tuple[list[str], list[str]]:
    """The paired ``(teacher paths, student paths)``: ``layers`` checked, or the default pairs."""
    if layers is None:
        pairs = matched_pairs(first, t_copy, shape)
        return [p[1] for p in pairs], [p[0] for p in pairs]
    lt = _layer_list(layers["teacher"], t_copy, shape, "layers['teacher']")
    ls = _layer_list(layers["student"], first, shape, "layers['student']")
    if len(lt) != len(ls):
        raise AnalysisError(
            f"layers: expected as many teacher paths as student paths, got {len(lt)} and {len(ls)}"
        )
    return lt, ls


def _teacher_stats(
    acc: MinibatchCKA,
    t_net: nn.Module,
    images: torch.Tensor,
    slices: list[slice],
    paths: list[str],
    memory_format: str,
    track: Tracker,
    message: str,
) -> list[Any]:
    """The teacher's Gram statistics of every batch (computed once, reused for every snapshot)."""
    t_cl = wants_channels_last(memory_format, model_device(t_net), t_net)
    t_stats = []
    with channels_last(t_net, enabled=t_cl):
        for sl in slices:
            track.check()
            t_stats.append(acc.batch_stats(capture_features(t_net, images[sl], paths, t_cl), paths))
            track.advance(message=message)
    return t_stats


def _snapshot_matrix(
    acc: MinibatchCKA,
    s_copy: nn.Module,
    paths: list[str],
    images: torch.Tensor,
    slices: list[slice],
    t_stats: list[Any],
    *,
    fold_bn: bool,
    memory_format: str,
    track: Tracker,
    message: str,
) -> np.ndarray:
    """CKA between every student path of one snapshot and every teacher path, from ``t_stats``."""
    acc.reset()
    s_net = feature_net(s_copy, paths, fold_bn, images[:2])
    s_cl = wants_channels_last(memory_format, model_device(s_net), s_net)
    with channels_last(s_net, enabled=s_cl):
        for sl, stats_t in zip(slices, t_stats, strict=True):
            track.check()
            feats = capture_features(s_net, images[sl], paths, s_cl)
            acc.update_stats(acc.batch_stats(feats, paths), stats_t, sl.stop - sl.start)
            track.advance(message=message)
    del s_net
    return acc.compute()


def _snapshot_copy(
    epoch: int, value: Snapshot, paths: list[str], device: str | torch.device | None
) -> nn.Module:
    """A working copy of one snapshot (loaded if ``value`` is a loader), its paths checked."""
    model = _load_snapshot(epoch, value)
    s_copy = working_copy(model, resolve_device(model, device))
    check_paths(s_copy, paths, f"snapshots[{epoch}]")
    return s_copy


def cka_over_training(
    teacher: nn.Module,
    snapshots: Snapshots,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    layers: Mapping[str, Sequence[str]] | None = None,
    kernel: str = "linear",
    bandwidth: float = 0.5,
    debiased: bool = True,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    precision: str = "float32",
    fold_bn: bool = True,
    memory_format: str = "auto",
) -> CKATrainingResult:
    """Minibatch CKA of every student snapshot against the teacher at matched layer pairs.

    The teacher's per-batch Gram matrices are computed once and reused for every snapshot (memory
    ``O(N · batch)`` per teacher layer), so each snapshot costs one forward per batch. Snapshots
    given as loaders are loaded one at a time.

    Args:
        teacher: the fixed reference network.
        snapshots: ``{epoch: student model or zero-argument loader returning one}``, or a list of
            models / ``(epoch, model)`` pairs (bare models are numbered 1, 2, ...).
        images: normalized inputs ``(N, C, H, W)``; labels: optional, checked, not needed.
        layers: ``{"teacher": [...], "student": [...]}`` paths of equal length, paired in order;
            default: the stage pairs feature distillation trains
            (:func:`workbench.models.taps.match_stages` on the first snapshot) and the two
            penultimate embeddings.
        kernel, bandwidth, debiased, names, class_names, device, batch_size, precision, fold_bn,
            memory_format: as in :func:`cka_matrix`.
        progress: once per batch (the teacher's pass, then each snapshot's). cancel: every batch.

    Returns:
        :class:`CKATrainingResult` with ``values`` of shape ``(n_snapshots, n_pairs)``.
    """
    check_model(teacher, "teacher")
    images, bs, need, bw = _check_cka_inputs(images, labels, batch_size, debiased, kernel, bandwidth)
    prec = check_precision(precision)
    fmt = check_memory_format(memory_format)
    pair = check_names(names)
    classes = check_class_names(class_names)
    items = _snapshot_items(snapshots)
    if layers is not None:
        if not isinstance(layers, Mapping) or set(layers) != set(ROLES):
            raise AnalysisError("layers: expected {'teacher': [...], 'student': [...]} of equal length")
    shape = tuple(images.shape[1:])
    slices = batch_slices(len(images), bs, min_size=need)
    track = new_tracker(progress, cancel, len(slices) * (1 + len(items)), "CKA over training")
    track.start()

    t_copy = working_copy(teacher, resolve_device(teacher, device))
    first_model = _load_snapshot(*items[0])
    first = working_copy(first_model, resolve_device(first_model, device))
    del first_model
    lt, ls = _training_layers(layers, t_copy, first, shape)
    t_unique = list(dict.fromkeys(lt))
    t_index = [t_unique.index(p) for p in lt]
    acc = MinibatchCKA(ls, t_unique, debiased=debiased, kernel=kernel, bandwidth=bw, precision=prec)
    t_net = feature_net(t_copy, t_unique, fold_bn, images[:2])
    del t_copy
    t_stats = _teacher_stats(
        acc, t_net, images, slices, t_unique, fmt, track, f"CKA over training: {pair[0]}"
    )
    del t_net

    epochs: list[int] = []
    rows: list[np.ndarray] = []
    for k, (epoch, value) in enumerate(items):
        s_copy = first if k == 0 else _snapshot_copy(epoch, value, ls, device)
        full = _snapshot_matrix(
            acc,
            s_copy,
            ls,
            images,
            slices,
            t_stats,
            fold_bn=fold_bn,
            memory_format=fmt,
            track=track,
            message=f"CKA over training: epoch {epoch}",
        )
        rows.append(full[np.arange(len(ls)), t_index])
        epochs.append(epoch)
        del s_copy
    return CKATrainingResult(
        epochs=np.asarray(epochs, dtype=np.int64),
        values=np.stack(rows),
        student_layers=ls,
        teacher_layers=lt,
        n_samples=len(images),
        batch_size=bs,
        debiased=bool(debiased),
        kernel=kernel,
        names=pair,
        class_names=classes,
        params=_cka_params(kernel, bw, debiased, bs, prec, fold_bn, fmt),
    )
