"""Deletion and insertion curves of maps (Petsiuk et al. 2018, RISE): :func:`faithfulness`,
:func:`cross_faithfulness` and :func:`curve_auc`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_label_range,
    check_positive_float,
    check_positive_int,
    resolve_device,
)
from workbench.analysis.cam import metrics
from workbench.analysis.cam._checks import (
    as_tensor,
    check_class_names,
    check_images4d,
    check_labels_cpu,
    check_maps,
)
from workbench.analysis.cam.compute import own_copy
from workbench.analysis.cam.results import CrossFaithfulnessResult, FaithfulnessResult
from workbench.runtime import CancelToken, Tracker

__all__ = ["cross_faithfulness", "curve_auc", "faithfulness"]

Targets = int | torch.Tensor | np.ndarray | Sequence[int]


def curve_auc(
    scores: torch.Tensor | np.ndarray, fractions: torch.Tensor | np.ndarray | None = None
) -> np.ndarray:
    """Trapezoid area under each curve of ``scores`` ``(N, S)`` (or one curve ``(S,)``) against
    ``fractions`` ``(S,)`` (default: ``S`` evenly spaced points on ``[0, 1]``), as RISE reports AUC."""
    s = as_tensor(scores, "scores").to("cpu", torch.float64)
    single = s.ndim == 1
    if single:
        s = s.unsqueeze(0)
    if s.ndim != 2 or s.shape[1] < 2:
        raise AnalysisError(f"scores: expected curves (N, S) with S >= 2 points, got shape {tuple(s.shape)}")
    f = (
        torch.linspace(0.0, 1.0, s.shape[1], dtype=torch.float64)
        if fractions is None
        else as_tensor(fractions, "fractions").to("cpu", torch.float64)
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
    t = as_tensor(choice, "baseline").to(images.device, images.dtype)
    if t.shape == images.shape[1:]:
        t = t.unsqueeze(0)
    try:
        return t.expand_as(images), "tensor"
    except RuntimeError:
        raise AnalysisError(
            f"baseline: expected a tensor of shape {tuple(images.shape[1:])} or {tuple(images.shape)}, "
            f"got {tuple(t.shape)}"
        ) from None


def _check_targets(targets: object, n: int) -> torch.Tensor:
    if isinstance(targets, (torch.Tensor, np.ndarray, list, tuple)):
        return check_labels_cpu(targets, n, "targets")
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        return torch.full((n,), int(targets), dtype=torch.int64)
    raise AnalysisError(f"targets: expected a class index or a tensor ({n},) of classes, got {targets!r}")


@dataclasses.dataclass(frozen=True)
class _CurveOptions:
    """The checked options of one deletion/insertion run (shared by both public calls)."""

    mode: str
    score: str
    steps: int
    batch_size: int
    blur_kernel: int
    blur_sigma: float
    baseline: object
    fold_bn: bool


def _check_options(
    mode: str,
    score: str,
    steps: int,
    batch_size: int,
    blur_kernel: int,
    blur_sigma: float,
    baseline: object,
    fold_bn: bool,
) -> _CurveOptions:
    """The options as :class:`_CurveOptions`, or a one-line :class:`AnalysisError` naming the argument."""
    if mode not in ("deletion", "insertion"):
        raise AnalysisError(f"mode: unknown {mode!r}; known: deletion, insertion")
    if score not in ("prob", "logit"):
        raise AnalysisError(f"score: unknown {score!r}; known: prob, logit")
    return _CurveOptions(
        mode=mode,
        score=score,
        steps=check_positive_int(steps, "steps"),
        batch_size=check_positive_int(batch_size, "batch_size"),
        blur_kernel=check_positive_int(blur_kernel, "blur_kernel"),
        blur_sigma=check_positive_float(blur_sigma, "blur_sigma"),
        baseline=baseline,
        fold_bn=fold_bn,
    )


def _probe_classes(model: nn.Module, probe_images: torch.Tensor) -> int:
    """The number of classes of ``model`` from one forward on ``probe_images`` (a one-line error if not logits)."""
    probe = model(probe_images)
    if not isinstance(probe, torch.Tensor) or probe.ndim != 2:
        raise AnalysisError("model: expected logits of shape (N, K) from forward")
    return int(probe.shape[1])


def _curves(
    model: nn.Module,
    images: torch.Tensor,
    map_t: torch.Tensor,
    tgt_cpu: torch.Tensor,
    opts: _CurveOptions,
    names: list[str] | None,
    device: str | torch.device | None,
    progress: Callable[[int, int, str], None] | None,
    cancel: CancelToken | None,
) -> FaithfulnessResult:
    """The curves of checked ``images`` ``(N, C, H, W)``, ``map_t`` ``(N, H, W)`` and ``tgt_cpu`` ``(N,)``."""
    n, _, h, w = (int(s) for s in images.shape)
    chunks = batch_slices((opts.steps + 1) * n, opts.batch_size)
    track = Tracker(progress, cancel, total=len(chunks), label=f"{opts.mode} curves")
    track.check()
    dev = resolve_device(model, device)
    p = h * w
    counts = torch.tensor([round(s * p / opts.steps) for s in range(opts.steps + 1)], dtype=torch.int64)
    fractions = counts.to(torch.float64) / p

    work = own_copy(model, dev, opts.fold_bn, example=images[:2])
    with torch.inference_mode():
        x_all = images.to(dev)
        base, base_name = _baseline_images(opts.baseline, opts.mode, x_all, opts.blur_kernel, opts.blur_sigma)
        order = torch.sort(map_t.reshape(n, p).to(dev), dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(p, device=dev).expand(n, p))
        counts_d = counts.to(dev)
        k = _probe_classes(work, x_all[:1])
        names = check_class_names(names, k) if names is not None else None
        check_label_range(tgt_cpu, k, "targets")
        tgt = tgt_cpu.to(dev)
        out = torch.empty(opts.steps + 1, n, dtype=torch.float64, device=dev)
        track.start()
        for sl in chunks:
            track.check()
            idx = torch.arange(sl.start, sl.stop, device=dev)
            si, ii = idx // n, idx % n
            chosen = (rank[ii] < counts_d[si].unsqueeze(1)).view(-1, 1, h, w)
            if opts.mode == "deletion":
                xp = torch.where(chosen, base[ii], x_all[ii])
            else:
                xp = torch.where(chosen, x_all[ii], base[ii])
            logits = work(xp).float()
            values = torch.softmax(logits, dim=1) if opts.score == "prob" else logits
            out.view(-1)[sl] = values.gather(1, tgt[ii].unsqueeze(1)).squeeze(1).to(torch.float64)
            track.advance()
    del work
    return _result(opts, base_name, fractions, out.t().cpu(), names, dev)


def _result(
    opts: _CurveOptions,
    base_name: str,
    fractions: torch.Tensor,
    scores: torch.Tensor,
    names: list[str] | None,
    dev: torch.device,
) -> FaithfulnessResult:
    """The :class:`FaithfulnessResult` of curves ``scores`` ``(N, S)`` at ``fractions`` ``(S,)``."""
    return FaithfulnessResult(
        mode=opts.mode,
        score=opts.score,
        baseline=base_name,
        fractions=fractions.numpy(),
        scores=scores.numpy(),
        auc=metrics.trapezoid_auc(fractions, scores).numpy(),
        class_names=names,
        params={
            "mode": opts.mode,
            "steps": opts.steps,
            "baseline": base_name,
            "score": opts.score,
            "batch_size": opts.batch_size,
            "device": str(dev),
            "fold_bn": bool(opts.fold_bn),
            "blur_kernel": opts.blur_kernel,
            "blur_sigma": opts.blur_sigma,
        },
    )


def _split(result: FaithfulnessResult, n: int) -> tuple[FaithfulnessResult, FaithfulnessResult]:
    """The curves of the first ``n`` maps and of the rest, as two results."""
    first = dataclasses.replace(result, scores=result.scores[:n], auc=result.auc[:n])
    second = dataclasses.replace(result, scores=result.scores[n:], auc=result.auc[n:])
    return first, second


def faithfulness(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor | np.ndarray,
    targets: Targets,
    *,
    mode: str = "deletion",
    steps: int = 20,
    baseline: str | torch.Tensor | None = None,
    score: str = "prob",
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    fold_bn: bool = True,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> FaithfulnessResult:
    """Deletion or insertion curve of each map (Petsiuk et al. 2018, RISE, sec. 4.1).

    Pixels are ranked by ``maps`` ``(N, H, W)`` (highest first, ties in raster order). At step
    ``s = 0..steps`` the first ``round(s * H * W / steps)`` pixels (all channels) are replaced by the
    baseline (``mode="deletion"``) or copied from the image into the baseline (``"insertion"``).
    ``baseline``: ``"zeros"`` (the dataset mean after normalization), ``"blur"`` (Gaussian blur with
    ``blur_kernel``/``blur_sigma``) or a tensor; default as in RISE: zeros for deletion, blur for
    insertion. ``score``: softmax probability (``"prob"``) or logit (``"logit"``) of ``targets`` (an
    int or a tensor ``(N,)``, any device). All ``N * (steps + 1)`` perturbed images are built by
    index arithmetic in chunks of ``batch_size`` and evaluated under ``inference_mode`` on one copy
    of the model (BatchNorm folded with ``fold_bn``); the caller's model is never touched.
    ``progress`` is reported and ``cancel`` checked per chunk. Returns a :class:`FaithfulnessResult`.
    """
    images = check_images4d(images)
    n, _, h, w = (int(s) for s in images.shape)
    map_t = check_maps(maps, n, (h, w), "maps")
    opts = _check_options(mode, score, steps, batch_size, blur_kernel, blur_sigma, baseline, fold_bn)
    tgt_cpu = _check_targets(targets, n)
    names = check_class_names(class_names)
    return _curves(model, images, map_t, tgt_cpu, opts, names, device, progress, cancel)


def cross_faithfulness(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    teacher_maps: torch.Tensor | np.ndarray,
    student_maps: torch.Tensor | np.ndarray,
    targets: Targets,
    *,
    mode: str = "deletion",
    steps: int = 20,
    baseline: str | torch.Tensor | None = None,
    score: str = "prob",
    names: tuple[str, str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    fold_bn: bool = True,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> CrossFaithfulnessResult:
    """Deletion/insertion curves of both maps on both models (see :func:`faithfulness`).

    Each model scores the teacher's and the student's maps in one call (the two map sets stacked),
    with the same ``targets`` (e.g. the true labels). ``progress`` runs over both calls. Returns a
    :class:`CrossFaithfulnessResult` whose ``student_map_on_teacher`` says whether the student looks
    where the teacher's decision depends.
    """
    images = check_images4d(images)
    n, _, h, w = (int(s) for s in images.shape)
    tm = check_maps(teacher_maps, n, (h, w), "teacher_maps")
    sm = check_maps(student_maps, n, (h, w), "student_maps")
    if not isinstance(names, (tuple, list)) or len(names) != 2 or not all(isinstance(s, str) for s in names):
        raise AnalysisError(f"names: expected two strings (teacher, student), got {names!r}")
    opts = _check_options(mode, score, steps, batch_size, blur_kernel, blur_sigma, baseline, fold_bn)
    tgt = _check_targets(targets, n)
    class_list = check_class_names(class_names)
    per_call = len(batch_slices((opts.steps + 1) * 2 * n, opts.batch_size))
    both_targets = torch.cat([tgt, tgt])
    stacked_images = torch.cat([images, images])
    stacked_maps = torch.cat([tm, sm])
    track = Tracker(progress, cancel, total=2 * per_call, label=f"cross {mode}")
    track.start()
    on_teacher = _curves(
        teacher,
        stacked_images,
        stacked_maps,
        both_targets,
        opts,
        class_list,
        device,
        track.part(0, per_call, names[0]),
        cancel,
    )
    on_student = _curves(
        student,
        stacked_images,
        stacked_maps,
        both_targets,
        opts,
        class_list,
        device,
        track.part(per_call, 2 * per_call, names[1]),
        cancel,
    )
    track.report(2 * per_call)
    tt, st = _split(on_teacher, n)
    ts, ss = _split(on_student, n)
    return CrossFaithfulnessResult(
        mode=mode,
        teacher_map_on_teacher=tt,
        student_map_on_teacher=st,
        teacher_map_on_student=ts,
        student_map_on_student=ss,
        names=(names[0], names[1]),
        class_names=tt.class_names,
        params={**tt.params, "names": list(names)},
    )
