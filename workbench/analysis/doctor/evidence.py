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
from workbench.analysis.doctor.report import DoctorError, DoctorReport, rank_findings
from workbench.analysis.doctor.rules import RULES, DoctorThresholds, as_thresholds
from workbench.analysis.doctor.softness import softness_from_logits
from workbench.analysis.hessian import hessian_top_eigenvalue
from workbench.analysis.landscape import landscape_1d
from workbench.analysis.similarity import cka_matrix
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = ["config_temperature", "dataset_inputs", "diagnose_models", "distilled_layer_pairs"]

LayerPairs = Sequence[tuple[str, str]] | Mapping[str, str]

#: progress units per analysis, so each analysis's own progress shows within its share of the bar
_UNITS = 100


# ---- inputs -------------------------------------------------------------------------------------
def dataset_inputs(dataset: Any, *, n_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The doctor's data from a :class:`workbench.data.Dataset`: a seeded random subset of
    ``n_samples`` test images (all of them when the split is smaller), normalized, with labels,
    object masks and boxes when the dataset has them, and the class names.

    Returns:
        ``{"images", "labels", "masks", "boxes", "class_names"}``, ready to be passed on as
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
    return {
        "images": dataset.normalize(split.images[idx]),
        "labels": split.labels[idx],
        "masks": None if masks is None else masks[idx],
        "boxes": None if boxes is None else boxes[idx],
        "class_names": [str(c) for c in dataset.class_names],
    }


def _subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    if n >= n_total:
        return torch.arange(n_total)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=gen)[:n].sort().values


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


# ---- the orchestration --------------------------------------------------------------------------
def diagnose_models(
    teacher: nn.Module,
    student: nn.Module,
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
    """Run the analyses on ``teacher`` and ``student`` and apply every rule of :data:`RULES`.

    Args:
        teacher, student: the two networks; never changed (the analyses run on working copies).
        images: normalized inputs ``(N, C, H, W)``; labels: int64 ``(N,)``. A test subset, e.g.
            from :func:`dataset_inputs`.
        scratch: the same student architecture trained without a teacher; enables the sharpness rule.
        history: the run's per-epoch metrics (a list of dicts, or the run's metrics mapping with
            ``epochs``); needed by the capacity-gap plateau check and the loss-balance rule.
        config: the run's :class:`workbench.config.RunConfig`: its layer pairs decide which layers
            CKA compares (:func:`distilled_layer_pairs`) and its first weighted method with a
            temperature gives ``temperature`` when that is not passed.
        layers: override the CKA layer pairs: ``(teacher path, student path)`` pairs or a mapping
            ``{teacher path: student path}``.
        masks, boxes: object masks ``(N, H, W)`` / boxes ``(N, 4)`` of ``images``; masks enable the
            context-reliance rule.
        temperature: the distillation temperature ``T``; enables the softness rule.
        names: display names of the two models. class_names: the classes, by index.
        device: where the analyses run; default each model's own device.
        batch_size: evaluation batch size.
        cam_samples: of the images, how many (the first) get class activation maps (with masks).
        cam_method: a method of :func:`workbench.analysis.cam.list_cam_methods`.
        hessian_samples, hessian_iters: data (the first images) and power iterations of the
            curvature estimate.
        seed: seed of the Hessian start vector and the landscape direction.
        thresholds: :class:`DoctorThresholds` or a mapping overriding some defaults.
        meta: extra descriptive entries for the report (run id, dataset, ...).
        progress: ``progress(done, total, message)``: one monotone bar, 100 units per analysis run
            (each analysis's own progress mapped into its share, the message naming it).
        cancel: a :class:`~workbench.runtime.CancelToken`.

    Returns:
        :class:`DoctorReport`.

    Raises:
        DoctorError: one line naming the argument that is wrong.
        Cancelled: ``cancel`` was set; nothing is kept and the models are as they were.
    """
    th = as_thresholds(thresholds)
    for arg, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, nn.Module):
            raise DoctorError(f"{arg}: expected a torch.nn.Module, got {type(model).__name__}")
    if scratch is not None and not isinstance(scratch, nn.Module):
        raise DoctorError(f"scratch: expected a torch.nn.Module or None, got {type(scratch).__name__}")
    try:
        images = check_images(images)
        labels = check_labels(labels, int(images.shape[0]))
    except AnalysisError as err:
        raise DoctorError(str(err)) from None
    n = int(images.shape[0])
    n_cam = check_positive_int(cam_samples, "cam_samples")
    n_hess = check_positive_int(hessian_samples, "hessian_samples")
    iters = check_positive_int(hessian_iters, "hessian_iters")
    bs = check_positive_int(batch_size, "batch_size")
    if masks is not None and len(masks) != n:
        raise DoctorError(f"masks: expected {n} masks, one per image, got {len(masks)}")
    if boxes is not None and len(boxes) != n:
        raise DoctorError(f"boxes: expected {n} boxes, one per image, got {len(boxes)}")
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
    epochs = _epochs(history)
    explicit = None if layers is None else _layer_pairs(layers)

    evidence: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {}
    if history is not None:
        results["history"] = history
    steps = ["agreement", "cka"] + (["cam"] if masks is not None else [])
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

    # agreement, calibration, dark knowledge
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
    done("agreement", "agreement")
    results["agreement"] = agreement
    k = int(agreement.teacher_logits.shape[1])
    dk_names = classes if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    agreement_history = [float(e["agreement"]) for e in epochs if e.get("agreement") is not None]
    evidence["capacity_gap"] = {
        "teacher_accuracy": agreement.teacher_accuracy,
        "student_accuracy": agreement.student_accuracy,
        "agreement_history": agreement_history or None,
    }
    evidence["calibration"] = {
        "teacher_ece": agreement.teacher_calibration.ece,
        "student_ece": agreement.student_calibration.ece,
        "student_confidence": float(np.asarray(agreement.student_probs).max(1).mean()),
        "student_accuracy": agreement.student_accuracy,
    }
    evidence["dark_knowledge"] = {
        "per_class_rank_correlation": np.asarray(agreement.per_class_rank_correlation).tolist(),
        "class_counts": np.asarray(agreement.class_counts).tolist(),
        "class_names": dk_names,
    }

    # loss balance from the logged terms
    ce, kd = _loss_means(epochs)
    if not epochs:
        skipped["loss_balance"] = "no per-epoch history given (history=)"
    elif ce is None:
        skipped["loss_balance"] = "the history logs no cross-entropy term (ce_weight 0 or no loss/ce)"
    elif kd is None:
        skipped["loss_balance"] = "the history logs no distillation term"
    else:
        evidence["loss_balance"] = {"ce_loss": ce, "distill_loss": kd}

    # softened outputs at T
    if temp is None:
        skipped["softness"] = "no distillation temperature given (temperature= or a config with one)"
    else:
        soft = softness_from_logits(
            agreement.teacher_logits, agreement.student_logits, temp, class_names=dk_names
        )
        results["softness"] = soft
        evidence["softness"] = {
            "teacher_entropy": soft.teacher_mean,
            "student_entropy": soft.student_mean,
            "temperature": temp,
        }

    # representations of the layer pairs distillation trains
    pairs: list[tuple[str, str]] = []
    pair_source = "layers"
    try:
        if explicit is not None:
            pairs = explicit
        else:
            pairs, pair_source = distilled_layer_pairs(teacher, student, tuple(images.shape[1:]), config)
        cka = _cka(
            teacher,
            student,
            images,
            labels,
            pairs,
            names=names,
            progress=part("cka", "CKA"),
            **common,
        )
    except ValueError as err:  # AnalysisError, ModelError and MethodError are ValueErrors
        skipped["representation"] = f"CKA could not be computed: {_first_line(err)}"
    else:
        results["cka"] = cka
        t_index = {name: i for i, name in enumerate(cka.teacher_layers)}
        s_index = {name: j for j, name in enumerate(cka.student_layers)}
        evidence["representation"] = {
            "matched_cka": [float(cka.matrix[t_index[t], s_index[s]]) for t, s in pairs],
            "layer_pairs": [(t, s) for t, s in pairs],
        }
    done("cka", "CKA")

    # where the maps sit, when the objects are known
    if masks is None:
        skipped["context_reliance"] = "the dataset has no object masks"
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
            skipped["context_reliance"] = f"class activation maps could not be computed: {_first_line(err)}"
        else:
            results["cam"] = cam
            assert cam.teacher_localization is not None and cam.student_localization is not None
            evidence["context_reliance"] = {
                "teacher_context": cam.teacher_localization.mean_context_reliance,
                "student_context": cam.student_localization.mean_context_reliance,
            }
        done("cam", "class activation maps")

    # curvature against a student trained without the teacher
    if scratch is None:
        skipped["sharpness"] = "no scratch student given (scratch=)"
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
        evidence["sharpness"] = {
            "student_eigenvalue": eig["student"].eigenvalue,
            "scratch_eigenvalue": eig["scratch"].eigenvalue,
        }

    findings = []
    for rule, fn in RULES.items():
        if rule in evidence:
            found = fn(**evidence[rule], thresholds=th)
            if found is not None:
                findings.append(found)
    info: dict[str, Any] = {"teacher": names[0], "student": names[1], "n_samples": n, "temperature": temp}
    info.update(dict(meta or {}))
    params = {
        "n_samples": n,
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
        findings=rank_findings(findings),
        evidence=evidence,
        skipped=skipped,
        thresholds=th,
        meta=info,
        results=results,
        class_names=classes,
        params=params,
    )
