"""Examining a student: :func:`diagnose_models` checks what it is given, runs the evidence
collectors of :data:`~workbench.analysis.doctor.collectors.COLLECTORS` in order, applies the rules
and hands back a :class:`~workbench.analysis.doctor.report.DoctorReport`.

It reports one monotone progress bar over the collectors' analyses (each analysis's own progress
mapped into its share through :meth:`workbench.runtime.Tracker.part`) and stops at the next check
when ``cancel`` is set, raising :class:`~workbench.runtime.Cancelled`. The analyses compute on
working copies, so the caller's models are never changed, also when a call fails or is cancelled.

Nothing here reads the run store: the run-level service that loads a stored run's models, data
and history is :func:`workbench.diagnosis.diagnose`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from workbench.analysis.doctor.collectors import COLLECTORS
from workbench.analysis.doctor.exam import (
    OPTION_FIELDS,
    DoctorOptions,
    Exam,
    Steps,
    check_options,
    resolve_temperature,
)
from workbench.analysis.doctor.findings import DoctorError
from workbench.analysis.doctor.inputs import INPUT_FIELDS, DoctorInputs, check_inputs
from workbench.analysis.doctor.recorded import check_history
from workbench.analysis.doctor.report import DoctorReport
from workbench.analysis.doctor.rules import apply_rules, missing_evidence
from workbench.analysis.doctor.thresholds import DoctorThresholds, as_thresholds
from workbench.runtime import CancelToken, ProgressFn

__all__ = ["diagnose_models"]


def _check_models(teacher: Any, student: Any, scratch: Any, failure: Any) -> None:
    if not isinstance(teacher, nn.Module):
        raise DoctorError(f"teacher: expected a torch.nn.Module, got {type(teacher).__name__}")
    if student is None and not failure:
        raise DoctorError("student: expected a torch.nn.Module, got NoneType")
    if student is not None and not isinstance(student, nn.Module):
        raise DoctorError(f"student: expected a torch.nn.Module, got {type(student).__name__}")
    if scratch is not None and not isinstance(scratch, nn.Module):
        raise DoctorError(f"scratch: expected a torch.nn.Module or None, got {type(scratch).__name__}")


def _split_settings(
    images: Any, labels: Any, inputs: DoctorInputs | None, settings: Mapping[str, Any]
) -> tuple[DoctorInputs, DoctorOptions]:
    """The inputs (``inputs=``, or ``images``, ``labels`` and the data keywords) and the options."""
    unknown = [k for k in settings if k not in OPTION_FIELDS and k not in INPUT_FIELDS]
    if unknown:
        raise TypeError(
            f"diagnose_models() got an unexpected keyword argument {unknown[0]!r} "
            f"(options: {', '.join(OPTION_FIELDS)}; data: {', '.join(INPUT_FIELDS[2:])})"
        )
    data = {k: v for k, v in settings.items() if k in INPUT_FIELDS}
    if inputs is None:
        inputs = DoctorInputs(images, labels, **data)
    elif images is not None or labels is not None or data:
        given = "images" if images is not None else "labels" if labels is not None else next(iter(data))
        raise DoctorError(f"{given}: pass the data either as inputs= or as images, labels, ..., not both")
    options = DoctorOptions(**{k: v for k, v in settings.items() if k in OPTION_FIELDS})
    return check_inputs(inputs), check_options(options)


def _report(exam: Exam, steps: Steps, th: DoctorThresholds, meta: Mapping[str, Any] | None) -> DoctorReport:
    """Apply the rules to the collected evidence and describe the examination."""
    ev, opts, inputs, n = exam.evidence, exam.options, exam.inputs, exam.n
    ev["why_missing"] = exam.why
    findings = apply_rules(ev, th)
    info: dict[str, Any] = {"teacher": opts.names[0], "student": opts.names[1], "n_samples": n}
    info["temperature"] = exam.temperature
    info.update(dict(meta or {}))
    params = {
        "n_samples": n,
        "n_train_samples": None if inputs.train_images is None else int(inputs.train_images.shape[0]),
        "temperature": exam.temperature,
        "layer_pairs": [list(p) for p in exam.memo["layer_pairs"]],
        "layer_pairs_source": exam.memo["layer_pairs_source"],
        "cam_samples": min(opts.cam_samples, n) if inputs.masks is not None else None,
        "cam_method": opts.cam_method,
        "hessian_samples": min(opts.hessian_samples, n) if exam.scratch is not None else None,
        "hessian_iters": opts.hessian_iters,
        "seed": int(opts.seed),
        "batch_size": opts.batch_size,
        "device": None if opts.device is None else str(opts.device),
    }
    steps.finish()
    return DoctorReport(
        findings=findings,
        evidence=ev,
        skipped=missing_evidence(ev),
        thresholds=th,
        meta=info,
        results=exam.results,
        class_names=None if inputs.class_names is None else list(inputs.class_names),
        params=params,
    )


def diagnose_models(
    teacher: nn.Module,
    student: nn.Module | None,
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    inputs: DoctorInputs | None = None,
    scratch: nn.Module | None = None,
    history: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    config: Any = None,
    failure: Mapping[str, Any] | None = None,
    evidence: Mapping[str, Any] | None = None,
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: ProgressFn | Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **settings: Any,
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
    Each is gathered by a collector of :data:`~workbench.analysis.doctor.collectors.COLLECTORS`.

    Args:
        teacher, student: the two networks; never changed (the analyses run on working copies).
            ``student`` may be ``None`` only for a run that failed before saving one (``failure``).
        images, labels: normalized test inputs ``(N, C, H, W)`` and int64 labels ``(N,)``, when the
            data is not given as ``inputs``.
        inputs: the data as :class:`~workbench.analysis.doctor.inputs.DoctorInputs` (e.g.
            :func:`dataset_inputs`), instead of ``images``, ``labels`` and the data keywords.
        scratch: the same student architecture trained without a teacher; enables the sharpness note.
        history: the run's per-epoch metrics (a list of dicts, or the run's metrics mapping).
        config: the run's :class:`workbench.config.RunConfig` (method, temperature, weights,
            learning rate, hint layers, data options are evidence).
        failure: the failed run's failure record (``step``, ``terms``), when its loss became non-finite.
        evidence: further evidence the caller knows, by name (e.g. ``suggested_teacher``: a teacher
            source trained on this data, which the wrong-teacher experiment switches to).
        thresholds: :class:`DoctorThresholds` or a mapping overriding some defaults.
        meta: extra descriptive entries for the report (run id, dataset, ...).
        progress: ``progress(done, total, message)``: one monotone bar over the analyses.
        cancel: a :class:`~workbench.runtime.CancelToken`.
        settings: the options, fields of :class:`~workbench.analysis.doctor.exam.DoctorOptions`
            (``layers``, ``temperature``, ``names``, ``device``, ``batch_size``, ``cam_samples``,
            ``cam_method``, ``hessian_samples``, ``hessian_iters``, ``seed``), and with ``images``
            and ``labels`` the other fields of ``DoctorInputs`` (``masks``, ``boxes``,
            ``class_names``, ``train_images``, ``train_labels``, ``context``, ``context_classes``,
            ``context_purity``, ``train_size``).

    Returns:
        :class:`DoctorReport`.

    Raises:
        DoctorError: one line naming the argument that is wrong.
        TypeError: a keyword that is neither an option nor a data field.
        Cancelled: ``cancel`` was set; nothing is kept and the models are as they were.
    """
    th = as_thresholds(thresholds)
    _check_models(teacher, student, scratch, failure)
    data, options = _split_settings(images, labels, inputs, settings)
    check_history(history)
    exam = Exam(
        teacher=teacher,
        student=student,
        scratch=scratch,
        inputs=data,
        options=options,
        temperature=resolve_temperature(options.temperature, config),
        config=config,
        history=history,
        failure=failure,
        given=evidence,
        cancel=cancel,
    )
    steps = Steps([s for c in COLLECTORS.values() for s in c.steps(exam)], progress, cancel)
    steps.start()
    for collector in COLLECTORS.values():
        exam.take(collector.collect(exam, steps))
    return _report(exam, steps, th, meta)
