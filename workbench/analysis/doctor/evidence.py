"""Gathering the doctor's evidence: run the analyses on a teacher, a student and a set of images,
turn their results into the numbers each rule takes, and apply the rules.

:func:`diagnose_models` is the orchestration. It runs, in order, teacher-student agreement and
calibration (:func:`~workbench.analysis.agreement.agreement_report` at the distillation
temperature), the softened-output entropies (:func:`softness_from_logits`), minibatch linear CKA
of the layer pairs feature distillation trains (:func:`distilled_layer_pairs`), class activation
maps against object masks when masks are given, and, with a scratch student, the top Hessian
eigenvalue of the cross-entropy and 1-D loss landscapes of both students. It reports one
monotone progress bar over these analyses (each analysis's own progress mapped into its share
through :meth:`workbench.runtime.Tracker.part`) and stops at the next check when ``cancel`` is
set, raising :class:`~workbench.runtime.Cancelled`. The analyses compute on working copies, so
the caller's models are never changed, also when a call fails or is cancelled.

Nothing here reads the run store: the run-level service that loads a stored run's models, data
and history is :func:`workbench.diagnosis.diagnose`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import AnalysisError, check_images, check_labels, check_positive_int
from workbench.analysis.agreement import AgreementResult, agreement_report
from workbench.analysis.cam import compare_cams
from workbench.analysis.doctor.report import DoctorError, DoctorReport
from workbench.analysis.doctor.rules import DoctorThresholds, apply_rules, as_thresholds, missing_evidence
from workbench.analysis.doctor.softness import softness_from_logits
from workbench.analysis.hessian import hessian_top_eigenvalue
from workbench.analysis.landscape import landscape_1d
from workbench.analysis.similarity import cka_matrix
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = [
    "config_evidence",
    "config_temperature",
    "dataset_inputs",
    "diagnose_models",
    "distilled_layer_pairs",
    "history_evidence",
]

LayerPairs = Sequence[tuple[str, str]] | Mapping[str, str]

#: progress units per analysis, so each analysis's own progress shows within its share of the bar
_UNITS = 100


# ---- inputs -------------------------------------------------------------------------------------
def dataset_inputs(
    dataset: Any, *, n_samples: int = 1000, n_train: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """The doctor's data from a :class:`workbench.data.Dataset`: a seeded random subset of
    ``n_samples`` test images (all of them when the split is smaller), normalized, with labels,
    object masks and boxes when the dataset has them, and the class names; a seeded subset of
    ``n_train`` training images with *their* labels (default ``n_samples``; the label-noise
    evidence); and, when the dataset records a context per image (the background of ``shapes``),
    the test images' contexts with the class each context co-occurs with most in the training split.

    Returns:
        ``{"images", "labels", "masks", "boxes", "class_names", "train_images", "train_labels",
        "context", "context_classes", "context_purity", "train_size"}`` (``context_purity``: the
        share of training images whose context is their class's most frequent one), ready to be passed on as
        ``diagnose_models(teacher, student, **dataset_inputs(data))``.
    """
    for attr in ("test", "normalize", "class_names"):
        if not hasattr(dataset, attr):
            raise DoctorError(
                f"dataset: expected a workbench Dataset (with {attr!r}), got {type(dataset).__name__}"
            )
    n = check_positive_int(n_samples, "n_samples")
    split = dataset.test
    idx = _subset(len(split), n, seed)
    masks = getattr(split, "masks", None)
    boxes = getattr(split, "boxes", None)
    train = dataset.train
    n_tr = check_positive_int(n_samples if n_train is None else n_train, "n_train")
    tidx = _subset(len(train), n_tr, seed + 1)
    context = getattr(split, "context", None)
    train_context = getattr(train, "context", None)
    context_classes = None
    context_purity = None
    if context is not None and train_context is not None and len(train):
        k = int(dataset.num_classes)
        n_ctx = int(max(int(train_context.max()), int(context.max()))) + 1
        table = torch.zeros(n_ctx, k, dtype=torch.int64)
        table.index_put_((train_context, train.labels), torch.ones_like(train.labels), accumulate=True)
        context_classes = torch.where(table.sum(1) > 0, table.argmax(1), torch.full((n_ctx,), -1))
        context_purity = float(table.max(1).values.sum()) / max(len(train), 1)
    return {
        "images": dataset.normalize(split.images[idx]),
        "labels": split.labels[idx],
        "masks": None if masks is None else masks[idx],
        "boxes": None if boxes is None else boxes[idx],
        "class_names": [str(c) for c in dataset.class_names],
        "train_images": dataset.normalize(train.images[tidx]),
        "train_labels": train.labels[tidx],
        "context": None if context is None or context_classes is None else context[idx],
        "context_classes": context_classes,
        "context_purity": context_purity,
        "train_size": len(train),
    }


def _subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    from workbench.data import seeded_subset

    return seeded_subset(n_total, n, seed)


def _weighted_methods(config: Any) -> list[tuple[str, Any]]:
    """``(name, validated params)`` of every method of a run config with a positive weight."""
    if config is None:
        return []
    distill = getattr(config, "distill", None)
    methods = getattr(distill, "methods", None)
    if methods is None:
        raise DoctorError(
            f"config: expected a run config (with distill.methods), got {type(config).__name__}"
        )
    from workbench.distill.base import parse_params

    return [(spec.name, parse_params(spec.name, spec.params)) for spec in methods if spec.weight > 0]


def config_temperature(config: Any) -> float | None:
    """The temperature of a run config's first weighted method that has one (``None`` if none has)."""
    for _, params in _weighted_methods(config):
        value = getattr(params, "temperature", None)
        if value is not None:
            return float(value)
    return None


def distilled_layer_pairs(
    teacher: nn.Module,
    student: nn.Module,
    input_shape: Sequence[int],
    config: Any = None,
) -> tuple[list[tuple[str, str]], str]:
    """The ``(teacher path, student path)`` layer pairs feature distillation trains.

    The pairs a run set in its method config (``teacher_layers``/``student_layers`` zipped in order,
    ``teacher_layer``/``student_layer`` as one pair; a method naming only one side contributes no
    pair), in the order of the methods and without repeats; when it set none, the stages paired by
    :func:`workbench.models.taps.match_stages` (relative depth and resolution), the pairing the
    feature methods use by default.

    Args:
        teacher, student: the two networks (only inspected; a shape probe runs on copies of them).
        input_shape: ``(C, H, W)`` of one input.
        config: the run's :class:`workbench.config.RunConfig`, or ``None``.

    Returns:
        ``(pairs, source)`` with ``source`` ``"config"`` or ``"match_stages"``.
    """
    pairs: list[tuple[str, str]] = []
    for _, params in _weighted_methods(config):
        s_many, t_many = getattr(params, "student_layers", None), getattr(params, "teacher_layers", None)
        if s_many and t_many:
            pairs.extend((str(t), str(s)) for s, t in zip(s_many, t_many, strict=False))
        s_one, t_one = getattr(params, "student_layer", None), getattr(params, "teacher_layer", None)
        if s_one and t_one:
            pairs.append((str(t_one), str(s_one)))
    if pairs:
        return list(dict.fromkeys(pairs)), "config"
    from workbench.models.taps import match_stages

    shape = tuple(int(d) for d in input_shape)
    found = match_stages(student, teacher, shape, shape)  # type: ignore[arg-type]
    return [(t, s) for s, t in found], "match_stages"


def _layer_pairs(layers: LayerPairs) -> list[tuple[str, str]]:
    """Explicit ``layers=``: ``(teacher path, student path)`` pairs or ``{teacher path: student path}``."""
    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    if not items:
        raise DoctorError("layers: expected at least one (teacher path, student path) pair, got none")
    out = []
    for i, pair in enumerate(items):
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(p, str) and p for p in pair)
        ):
            raise DoctorError(f"layers[{i}]: expected a (teacher path, student path) pair, got {pair!r}")
        out.append((pair[0], pair[1]))
    return out


def _epochs(history: Any) -> list[Mapping[str, Any]]:
    if history is None:
        return []
    if isinstance(history, Mapping):
        if "epochs" not in history:
            raise DoctorError(
                f"history: expected a run's metrics with an 'epochs' list, got keys {', '.join(history)}"
            )
        history = history["epochs"]
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise DoctorError(f"history: expected a list of per-epoch metric dicts, got {type(history).__name__}")
    if not all(isinstance(e, Mapping) for e in history):
        raise DoctorError("history: every epoch entry must be a mapping of metric names to numbers")
    return list(history)


def _loss_means(epochs: list[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """Mean over epochs of the logged CE term and of the sum of the other (distillation) terms."""
    ce, kd = [], []
    for e in epochs:
        terms = {k[5:]: float(v) for k, v in e.items() if k.startswith("loss/") and v is not None}
        if not terms:
            continue
        if "ce" in terms:
            ce.append(terms["ce"])
        others = [v for k, v in terms.items() if k != "ce"]
        if others:
            kd.append(sum(others))
    return (float(np.mean(ce)) if ce else None, float(np.mean(kd)) if kd else None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ---- the analyses, one call each ----------------------------------------------------------------
def _cka(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    pairs: list[tuple[str, str]],
    **kw: Any,
) -> Any:
    t_layers = list(dict.fromkeys(t for t, _ in pairs))
    s_layers = list(dict.fromkeys(s for _, s in pairs))
    return cka_matrix(
        teacher,
        student,
        images,
        labels,
        layers={"teacher": t_layers, "student": s_layers},
        **kw,
    )


def _cams(
    teacher: nn.Module, student: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw: Any
) -> Any:
    return compare_cams(teacher, student, images, labels, **kw)


def _hessian(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> Any:
    return hessian_top_eigenvalue(
        None,
        model,
        images,
        labels,
        objective="cross_entropy",
        **kw,
    )


def _landscape(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> Any:
    return landscape_1d(
        None,
        model,
        images,
        labels,
        objectives=["cross_entropy", "accuracy"],
        **kw,
    )


# ---- evidence from the run's config and history -------------------------------------------------
#: the usual learning rate of each optimizer (SGD with momentum on these datasets; AdamW's default)
USUAL_LR = {"sgd": 0.05, "adamw": 1e-3, "adam": 1e-3}


def _params(model: nn.Module | None) -> int | None:
    return None if model is None else int(sum(p.numel() for p in model.parameters()))


def _depths(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Relative depth ``(i + 1) / n`` of each stage path of ``model``."""
    from workbench.models.taps import stage_layers

    stages = stage_layers(model, tuple(int(d) for d in input_shape))  # type: ignore[arg-type]
    return {p: (i + 1) / len(stages) for i, p in enumerate(stages)}


def _depth_of(path: str, depths: Mapping[str, float]) -> float | None:
    if path in depths:
        return depths[path]
    for stage, d in depths.items():
        if path.startswith(stage + "."):
            return d
    return None


def _bigger_student(config: Any) -> dict[str, Any]:
    """Overrides that give a clearly larger student of the same family (and a phrase naming it)."""
    name, kwargs = config.model.name, dict(config.model.kwargs)
    if isinstance(kwargs.get("hidden"), (list, tuple)):
        hidden = [max(64, 8 * int(h)) for h in kwargs["hidden"]]
        return {"overrides": {"model.kwargs.hidden": hidden}, "text": f"a student with hidden={hidden}"}
    if isinstance(kwargs.get("channels"), (list, tuple)):
        ch = [4 * int(c) for c in kwargs["channels"]]
        return {"overrides": {"model.kwargs.channels": ch}, "text": f"a student with channels={ch}"}
    if name == "mlp":
        return {"overrides": {"model.kwargs.hidden": [512, 256]}, "text": "an MLP with hidden=[512, 256]"}
    from workbench.models import describe_models

    specs = describe_models()
    family = next((s.family for s in specs if s.name == name), None)
    same = [s.name for s in specs if s.family == family and s.name != family]
    if name in same and same.index(name) < len(same) - 1:
        nxt = same[same.index(name) + 1]
        return {"overrides": {"model.name": nxt}, "text": f"the larger {nxt}"}
    return {}


def config_evidence(
    config: Any,
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
    input_shape: Sequence[int] | None = None,
    train_size: int | None = None,
) -> dict[str, Any]:
    """What a run recorded as its plan, as evidence: methods, the first temperature-scaled method's
    index, weight and temperature, ``ce_weight``, optimizer and learning rate (and its ratio to
    the optimizer's usual rate, :data:`USUAL_LR`), epochs and step limit, batch size, training-set
    size, data options (``confounding``), mixing augmentations, the hint layers a feature method
    was wired to (and how far apart in relative depth), parameter counts, and the experiments
    that a fix would need (a larger student, a matching shipped teacher)."""
    ev: dict[str, Any] = {}
    if config is None:
        return ev
    methods = [(i, spec) for i, spec in enumerate(config.distill.methods)]
    ev["methods"] = [spec.name for _, spec in methods]
    ev["ce_weight"] = float(config.distill.ce_weight)
    from workbench.distill.base import parse_params

    for i, spec in methods:
        if spec.weight <= 0 or spec.name == "none":
            continue
        params = parse_params(spec.name, spec.params)
        t = getattr(params, "temperature", None)
        if t is not None and "kd_index" not in ev:
            ev.update(kd_index=i, temperature=float(t), kd_weight=float(spec.weight), kd_method=spec.name)
    opt = config.optim.name
    ev["optimizer"] = opt
    ev["lr"] = float(config.optim.lr)
    usual = USUAL_LR.get(opt)
    if usual:
        ev["lr_usual"] = usual
        ev["lr_scale"] = float(config.optim.lr) / usual
    ev["epochs"] = int(config.train.epochs)
    ev["max_steps"] = config.train.max_steps
    ev["batch_size"] = int(config.data.batch_size)
    subset = config.data.train_subset
    if train_size is not None:
        ev["train_size"] = int(min(train_size, subset)) if subset else int(train_size)
    ev["confounding"] = config.data.options.get("confounding")
    aug = config.data.augment
    ev["mixing"] = bool(aug.mixup_alpha > 0 or aug.cutmix_alpha > 0)
    ev["teacher_source"] = config.teachers[0].source if config.teachers else None
    ev["student_params"] = _params(student)
    ev["teacher_params"] = _params(teacher)
    if ev["student_params"] and ev["teacher_params"]:
        ev["param_ratio"] = ev["teacher_params"] / ev["student_params"]
    ev["bigger_student"] = _bigger_student(config)
    if teacher is not None and student is not None and input_shape is not None:
        ev.update(_hint_evidence(config, teacher, student, input_shape))
    return ev


def _hint_evidence(
    config: Any, teacher: nn.Module, student: nn.Module, input_shape: Sequence[int]
) -> dict[str, Any]:
    """The configured hint pair that lies furthest apart in relative depth, and the fix."""
    from workbench.distill.base import parse_params

    try:
        s_depth, t_depth = _depths(student, input_shape), _depths(teacher, input_shape)
    except ValueError:
        return {}
    worst: tuple[float, int, str, str, str] | None = None
    for i, spec in enumerate(config.distill.methods):
        if spec.weight <= 0 or spec.name == "none":
            continue
        params = parse_params(spec.name, spec.params)
        pairs: list[tuple[str, str, str]] = []
        s_many, t_many = getattr(params, "student_layers", None), getattr(params, "teacher_layers", None)
        if s_many and t_many:
            pairs += [(str(s), str(t), "student_layers") for s, t in zip(s_many, t_many, strict=False)]
        s_one, t_one = getattr(params, "student_layer", None), getattr(params, "teacher_layer", None)
        if s_one and t_one:
            pairs.append((str(s_one), str(t_one), "student_layer"))
        for s, t, key in pairs:
            ds, dt = _depth_of(s, s_depth), _depth_of(t, t_depth)
            if ds is None or dt is None:
                continue
            if worst is None or abs(ds - dt) > worst[0]:
                worst = (abs(ds - dt), i, s, t, key)
    if worst is None:
        return (
            {"hint_depth_gap": 0.0}
            if any(
                getattr(parse_params(m.name, m.params), "student_layers", None) is not None
                or getattr(parse_params(m.name, m.params), "student_layer", None) is not None
                for m in config.distill.methods
                if m.name != "none"
            )
            else {}
        )
    gap, i, s, t, key = worst
    dt = _depth_of(t, t_depth) or 1.0
    good = min(s_depth, key=lambda p: abs(s_depth[p] - dt))
    params = dict(config.distill.methods[i].params)
    if key == "student_layers":
        s_list = list(params.get("student_layers") or [])
        t_list = list(params.get("teacher_layers") or [])
        fixed = [
            min(s_depth, key=lambda p, tt=tt: abs(s_depth[p] - (_depth_of(tt, t_depth) or 1.0)))
            for tt in t_list
        ]
        over: dict[str, Any] = {f"distill.methods[{i}].params.student_layers": fixed or s_list}
    else:
        over = {f"distill.methods[{i}].params.student_layer": good}
    return {
        "hint_depth_gap": float(gap),
        "hint_pair": [s, t],
        "hint_fix": {"student_layer": good, "overrides": over},
    }


def history_evidence(history: Any, *, failure: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the run's per-epoch history says: steps taken, last-epoch training and test accuracy,
    the test accuracy per epoch, whether the training loss rose from the first to the last epoch,
    and (from ``failure``, a failed run's status entry) where the loss became non-finite."""
    epochs = _epochs(history)
    ev: dict[str, Any] = {"failed": bool(failure)}
    if failure:
        ev["failed_step"] = failure.get("step")
        ev["failed_terms"] = dict(failure.get("terms") or {})
    if not epochs:
        return ev
    last = epochs[-1]
    ev["steps"] = int(last.get("step") or 0)
    if last.get("train_acc") is not None:
        ev["train_acc_last"] = float(last["train_acc"])
    tests = [float(e["test_acc"]) for e in epochs if e.get("test_acc") is not None]
    if tests:
        ev["test_acc_last"] = tests[-1]
        ev["test_acc_history"] = tests
    losses = [float(e["train_loss"]) for e in epochs if e.get("train_loss") is not None]
    if len(losses) >= 2:
        ev["loss_rise"] = losses[-1] - losses[0]
    return ev


# ---- the measurements ---------------------------------------------------------------------------
def _logits(model: nn.Module, images: torch.Tensor, device: Any, batch_size: int) -> torch.Tensor:
    from workbench.analysis._common import working_copy

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    m = working_copy(model, dev)
    out = []
    with torch.inference_mode():
        for i in range(0, int(images.shape[0]), batch_size):
            out.append(m(images[i : i + batch_size].to(dev)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _kd_share(
    t_logits: np.ndarray, s_logits: np.ndarray, labels: np.ndarray, ev: Mapping[str, Any]
) -> float | None:
    """Share of the temperature-scaled KD term in the gradient on the student's logits.

    ``w_kd T |softmax(z_s/T) - softmax(z_t/T)|`` (the gradient of ``w_kd T² KL``, Hinton et al.
    2015) against ``w_ce |softmax(z_s) - onehot(y)|``, each averaged over the samples.
    """
    t, w = ev.get("temperature"), ev.get("kd_weight")
    if t is None or w is None:
        return None
    zt, zs = torch.as_tensor(t_logits, dtype=torch.float64), torch.as_tensor(s_logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    g_kd = w * t * (torch.softmax(zs / t, 1) - torch.softmax(zt / t, 1)).norm(dim=1).mean()
    onehot = torch.nn.functional.one_hot(y, zs.shape[1]).to(zs.dtype)
    g_ce = float(ev.get("ce_weight", 0.0)) * (torch.softmax(zs, 1) - onehot).norm(dim=1).mean()
    total = float(g_kd + g_ce)
    return float(g_kd) / total if total > 0 else None


def _context_follow(pred: np.ndarray, labels: np.ndarray, context: Any, context_classes: Any) -> float | None:
    """Share of the images whose context belongs to another class on which ``pred`` is that class."""
    ctx = np.asarray(torch.as_tensor(context).cpu().numpy(), dtype=np.int64)
    cls = np.asarray(torch.as_tensor(context_classes).cpu().numpy(), dtype=np.int64)
    ok = (ctx >= 0) & (ctx < len(cls))
    other = np.full(ctx.shape, -1)
    other[ok] = cls[ctx[ok]]
    judged = (other >= 0) & (other != labels)
    if not judged.any():
        return None
    return float((pred[judged] == other[judged]).mean())


# ---- the orchestration --------------------------------------------------------------------------
def diagnose_models(
    teacher: nn.Module,
    student: nn.Module | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    scratch: nn.Module | None = None,
    history: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    config: Any = None,
    layers: LayerPairs | None = None,
    masks: torch.Tensor | np.ndarray | None = None,
    boxes: torch.Tensor | np.ndarray | None = None,
    temperature: float | None = None,
    train_images: torch.Tensor | None = None,
    train_labels: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    context_classes: torch.Tensor | None = None,
    context_purity: float | None = None,
    train_size: int | None = None,
    failure: Mapping[str, Any] | None = None,
    evidence: Mapping[str, Any] | None = None,
    names: tuple[str, str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    cam_samples: int = 128,
    cam_method: str = "gradcam",
    hessian_samples: int = 256,
    hessian_iters: int = 20,
    seed: int = 0,
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: ProgressFn | Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> DoctorReport:
    """Measure the evidence on ``teacher`` and ``student`` and apply every rule of :data:`RULES`.

    The evidence (one flat mapping, ``report.evidence``) combines the run's config and history
    (:func:`config_evidence`, :func:`history_evidence`) with measurements on the test images:
    accuracy, agreement, ECE (Guo et al. 2017) and per-class non-target rank correlation at the
    distillation temperature (:func:`~workbench.analysis.agreement.agreement_report`), the
    normalized entropy of both models' softened outputs, the KD term's share of the logit
    gradient, the share of off-class-context predictions (with ``context``), linear CKA of the
    distilled layer pairs, CAM energy off the object (with ``masks``) and, with a scratch student,
    Hessian sharpness; and on ``train_images`` the teacher's accuracy against the training labels.

    Args:
        teacher, student: the two networks; never changed (the analyses run on working copies).
            ``student`` may be ``None`` only for a run that failed before saving one (``failure``).
        images: normalized test inputs ``(N, C, H, W)``; labels: int64 ``(N,)``.
        scratch: the same student architecture trained without a teacher; enables the sharpness note.
        history: the run's per-epoch metrics (a list of dicts, or the run's metrics mapping).
        config: the run's :class:`workbench.config.RunConfig` (method, temperature, weights,
            learning rate, hint layers, data options are evidence).
        layers: override the CKA layer pairs: ``(teacher path, student path)`` pairs or a mapping.
        masks, boxes: object masks ``(N, H, W)`` / boxes ``(N, 4)`` of ``images``.
        temperature: the distillation temperature ``T`` (default: the config's).
        train_images, train_labels: training images and the labels the run trained on (label noise).
        context, context_classes: per test image a context id (e.g. the background), and per
            context id the class it co-occurs with in training (shortcut learning);
            ``context_purity``: how strongly context predicts the class in training.
        train_size: the number of training images (passes over the data).
        failure: the failed run's failure record (``step``, ``terms``), when its loss became non-finite.
        evidence: further evidence the caller knows, by name (e.g. ``suggested_teacher``: a teacher
            source trained on this data, which the wrong-teacher experiment switches to).
        names, class_names, device, batch_size, cam_samples, cam_method, hessian_samples,
            hessian_iters, seed: as in the analyses they are passed to.
        thresholds: :class:`DoctorThresholds` or a mapping overriding some defaults.
        meta: extra descriptive entries for the report (run id, dataset, ...).
        progress: ``progress(done, total, message)``: one monotone bar over the analyses.
        cancel: a :class:`~workbench.runtime.CancelToken`.

    Returns:
        :class:`DoctorReport`.

    Raises:
        DoctorError: one line naming the argument that is wrong.
        Cancelled: ``cancel`` was set; nothing is kept and the models are as they were.
    """
    th = as_thresholds(thresholds)
    if not isinstance(teacher, nn.Module):
        raise DoctorError(f"teacher: expected a torch.nn.Module, got {type(teacher).__name__}")
    if student is None and not failure:
        raise DoctorError("student: expected a torch.nn.Module, got NoneType")
    if student is not None and not isinstance(student, nn.Module):
        raise DoctorError(f"student: expected a torch.nn.Module, got {type(student).__name__}")
    if scratch is not None and not isinstance(scratch, nn.Module):
        raise DoctorError(f"scratch: expected a torch.nn.Module or None, got {type(scratch).__name__}")
    try:
        images = check_images(images)
        labels = check_labels(labels, int(images.shape[0]))
        if train_images is not None:
            train_images = check_images(train_images, "train_images")
            train_labels = check_labels(train_labels, int(train_images.shape[0]), "train_labels")
    except AnalysisError as err:
        raise DoctorError(str(err)) from None
    except TypeError:
        raise DoctorError("train_images: expected normalized images (N, C, H, W) with train_labels") from None
    n = int(images.shape[0])
    n_cam = check_positive_int(cam_samples, "cam_samples")
    n_hess = check_positive_int(hessian_samples, "hessian_samples")
    iters = check_positive_int(hessian_iters, "hessian_iters")
    bs = check_positive_int(batch_size, "batch_size")
    if masks is not None and len(masks) != n:
        raise DoctorError(f"masks: expected {n} masks, one per image, got {len(masks)}")
    if boxes is not None and len(boxes) != n:
        raise DoctorError(f"boxes: expected {n} boxes, one per image, got {len(boxes)}")
    if context is not None and len(context) != n:
        raise DoctorError(f"context: expected {n} context ids, one per image, got {len(context)}")
    if len(names) != 2 or not all(isinstance(x, str) for x in names):
        raise DoctorError(f"names: expected two display names, got {names!r}")
    names = (str(names[0]), str(names[1]))
    classes = None if class_names is None else [str(c) for c in class_names]
    temp = config_temperature(config) if temperature is None else temperature
    if temp is not None:
        try:
            temp = float(temp)
        except (TypeError, ValueError):
            raise DoctorError(f"temperature: expected a positive number, got {temp!r}") from None
        if not (math.isfinite(temp) and temp > 0):
            raise DoctorError(f"temperature: expected a positive number, got {temp!r}")
    explicit = None if layers is None else _layer_pairs(layers)

    shape = tuple(int(d) for d in images.shape[1:])
    ev: dict[str, Any] = {}
    ev.update(config_evidence(config, teacher, student, shape, train_size))
    if temperature is not None:
        ev["temperature"] = temp
    ev.update(history_evidence(history, failure=failure))
    ev.update(dict(evidence or {}))
    if ev.get("steps") and ev.get("train_size"):
        ev["passes"] = ev["steps"] * ev.get("batch_size", 1) / ev["train_size"]
    why: dict[str, str] = {}
    results: dict[str, Any] = {}
    if history is not None:
        results["history"] = history

    have_student = student is not None
    steps = ["agreement"] + (["train_labels"] if train_images is not None else [])
    if have_student:
        steps += ["cka"] + (["cam"] if masks is not None else [])
        if scratch is not None:
            steps += ["hessian_student", "hessian_scratch", "landscape_student", "landscape_scratch"]
    tracker = Tracker(progress, cancel, total=_UNITS * len(steps), label="doctor")
    tracker.start("doctor")
    common = {"device": device, "batch_size": bs, "cancel": cancel}

    def part(step: str, label: str) -> Callable[[int, int, str], None]:
        i = steps.index(step) * _UNITS
        return tracker.part(i, i + _UNITS, label)

    def done(step: str, label: str) -> None:
        tracker.report((steps.index(step) + 1) * _UNITS, label)
        tracker.check()

    k: int
    labels_np = labels.cpu().numpy()
    if have_student:
        agreement: AgreementResult = agreement_report(
            teacher,
            student,
            images,
            labels,
            temperature=temp or 1.0,
            names=names,
            class_names=classes,
            progress=part("agreement", "agreement"),
            **common,
        )
        results["agreement"] = agreement
        k = int(agreement.teacher_logits.shape[1])
        t_logits, s_logits = np.asarray(agreement.teacher_logits), np.asarray(agreement.student_logits)
        ev.update(
            teacher_acc=agreement.teacher_accuracy,
            student_acc=agreement.student_accuracy,
            gap=agreement.teacher_accuracy - agreement.student_accuracy,
            agreement=agreement.agreement,
            teacher_ece=agreement.teacher_calibration.ece,
            student_ece=agreement.student_calibration.ece,
            student_confidence=float(np.asarray(agreement.student_probs).max(1).mean()),
            class_rank_correlation=np.asarray(agreement.per_class_rank_correlation).tolist(),
            class_counts=np.asarray(agreement.class_counts).tolist(),
        )
        if context is not None and context_classes is not None:
            ev["context_purity"] = None if context_purity is None else float(context_purity)
            ev["context_follow"] = _context_follow(
                np.asarray(agreement.student_pred), labels_np, context, context_classes
            )
            ev["teacher_context_follow"] = _context_follow(
                np.asarray(agreement.teacher_pred), labels_np, context, context_classes
            )
        else:
            why["context_follow"] = "the data records no per-image context (e.g. backgrounds)"
        share = _kd_share(t_logits, s_logits, labels_np, ev)
        if share is not None:
            ev["kd_share"] = share
    else:
        t_all = _logits(teacher, images, device, bs)
        k = int(t_all.shape[1])
        t_logits = t_all.numpy()
        ev["teacher_acc"] = float((t_all.argmax(1).numpy() == labels_np).mean())
        why.update(gap="the run failed before saving a student", kd_share="no student to measure")
    done("agreement", "agreement")
    ev["chance"] = 1.0 / k
    ev["class_names"] = classes if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    if temp is not None:
        if have_student:
            soft = softness_from_logits(t_logits, s_logits, temp, class_names=ev["class_names"])
            results["softness"] = soft
            ev["student_soft_entropy"] = soft.student_mean
            ev["teacher_soft_entropy"] = soft.teacher_mean
        else:
            soft = softness_from_logits(t_logits, t_logits, temp)
            ev["teacher_soft_entropy"] = soft.teacher_mean
    else:
        why["teacher_soft_entropy"] = "no distillation temperature in the run's methods"
        why["kd_share"] = "no temperature-scaled distillation term in the run's methods"

    if train_images is not None and train_labels is not None:
        tl = _logits(teacher, train_images, device, bs)
        y = train_labels.cpu().numpy()
        ev["teacher_train_label_acc"] = float((tl.argmax(1).numpy() == y).mean())
        if have_student:
            sl = _logits(student, train_images, device, bs)  # type: ignore[arg-type]
            ev["student_train_label_acc"] = float((sl.argmax(1).numpy() == y).mean())
        done("train_labels", "training labels")
    else:
        why["teacher_train_label_acc"] = "the training data was not given (pass dataset=)"

    pairs: list[tuple[str, str]] = []
    pair_source = "layers"
    if have_student:
        assert student is not None
        try:
            if explicit is not None:
                pairs = explicit
            else:
                pairs, pair_source = distilled_layer_pairs(teacher, student, shape, config)
            cka = _cka(
                teacher, student, images, labels, pairs, names=names, progress=part("cka", "CKA"), **common
            )
        except ValueError as err:  # AnalysisError, ModelError and MethodError are ValueErrors
            why["matched_cka"] = f"CKA could not be computed: {_first_line(err)}"
        else:
            results["cka"] = cka
            t_index = {name: i for i, name in enumerate(cka.teacher_layers)}
            s_index = {name: j for j, name in enumerate(cka.student_layers)}
            ev["matched_cka"] = [float(cka.matrix[t_index[t], s_index[s]]) for t, s in pairs]
            ev["layer_pairs"] = [[t, s] for t, s in pairs]
            hp = ev.get("hint_pair")
            if hp and hp[1] in t_index and hp[0] in s_index:
                ev["hint_cka"] = float(cka.matrix[t_index[hp[1]], s_index[hp[0]]])
        done("cka", "CKA")

        if masks is None:
            why["student_context"] = "the dataset has no object masks"
        else:
            try:
                cam = _cams(
                    teacher,
                    student,
                    images[:n_cam],
                    labels[:n_cam],
                    method=cam_method,
                    masks=masks[:n_cam],
                    boxes=None if boxes is None else boxes[:n_cam],
                    names=names,
                    class_names=classes,
                    progress=part("cam", "class activation maps"),
                    **common,
                )
            except ValueError as err:
                why["student_context"] = f"class activation maps could not be computed: {_first_line(err)}"
            else:
                results["cam"] = cam
                assert cam.teacher_localization is not None and cam.student_localization is not None
                ev["teacher_context"] = cam.teacher_localization.mean_context_reliance
                ev["student_context"] = cam.student_localization.mean_context_reliance
            done("cam", "class activation maps")

        if scratch is None:
            why["scratch_eigenvalue"] = "no scratch student given (scratch=)"
        else:
            h_images, h_labels = images[:n_hess], labels[:n_hess]
            eig: dict[str, Any] = {}
            for role, model in (("student", student), ("scratch", scratch)):
                eig[role] = _hessian(
                    model,
                    h_images,
                    h_labels,
                    iters=iters,
                    seed=seed,
                    progress=part(f"hessian_{role}", f"Hessian ({role})"),
                    **common,
                )
                done(f"hessian_{role}", f"Hessian ({role})")
            landscapes: dict[str, Any] = {}
            for role, model in (("student", student), ("scratch", scratch)):
                landscapes[role] = _landscape(
                    model,
                    h_images,
                    h_labels,
                    seed=seed,
                    progress=part(f"landscape_{role}", f"landscape ({role})"),
                    **common,
                )
                done(f"landscape_{role}", f"landscape ({role})")
            results["hessian"] = eig
            results["landscapes"] = landscapes
            ev["student_eigenvalue"] = eig["student"].eigenvalue
            ev["scratch_eigenvalue"] = eig["scratch"].eigenvalue
    else:
        why["matched_cka"] = "the run failed before saving a student"
    if "hint_depth_gap" not in ev:
        why["hint_depth_gap"] = "the run's methods wire no feature hint between named layers"
    ev["why_missing"] = why

    findings = apply_rules(ev, th)
    info: dict[str, Any] = {"teacher": names[0], "student": names[1], "n_samples": n, "temperature": temp}
    info.update(dict(meta or {}))
    params = {
        "n_samples": n,
        "n_train_samples": None if train_images is None else int(train_images.shape[0]),
        "temperature": temp,
        "layer_pairs": [list(p) for p in pairs],
        "layer_pairs_source": pair_source,
        "cam_samples": min(n_cam, n) if masks is not None else None,
        "cam_method": cam_method,
        "hessian_samples": min(n_hess, n) if scratch is not None else None,
        "hessian_iters": iters,
        "seed": int(seed),
        "batch_size": bs,
        "device": None if device is None else str(device),
    }
    tracker.report(tracker.total, "doctor")
    return DoctorReport(
        findings=findings,
        evidence=ev,
        skipped=missing_evidence(ev),
        thresholds=th,
        meta=info,
        results=results,
        class_names=classes,
        params=params,
    )
