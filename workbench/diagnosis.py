"""Diagnosing a stored run, and checking the advice.

:func:`diagnose` opens a run of the run store through the run adapter
(:func:`workbench.runs.session.open_run`): its student, teacher, data, config, history and status,
and hands them to the student doctor (:func:`workbench.analysis.doctor.diagnose_models`).
:func:`verify` runs the top finding's experiment as a short run from the same seed, through
:func:`workbench.train.run`, into the same store (labelled as a verification), diagnoses it too,
and reports whether the advice helped and by how much.

It sits above :mod:`workbench.train` and :mod:`workbench.runs`, which the analyses below it never
import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from workbench.analysis._result import AnalysisResult
from workbench.analysis.doctor import (
    DoctorError,
    DoctorReport,
    DoctorThresholds,
    Experiment,
    Finding,
    dataset_inputs,
    diagnose_models,
)
from workbench.devices import DeviceError, resolve_device
from workbench.errors import one_line
from workbench.runtime import CancelToken, ProgressFn, Tracker
from workbench.vocabulary import DOCTOR_N_SAMPLES

if TYPE_CHECKING:
    from workbench.config import RunConfig
    from workbench.runs import Run, RunStore
    from workbench.runs.session import OpenedRun

__all__ = ["DOCTOR_VERSION", "VerifyResult", "diagnose", "measure_run", "verify"]

#: version of the doctor's evidence (the clinic re-measures a run when it changes)
DOCTOR_VERSION = 2

#: progress units of :func:`diagnose`: loading takes the first ``_LOAD`` of ``_TOTAL``
_TOTAL, _LOAD = 100, 5


# ---- diagnosing a stored run --------------------------------------------------------------------
def _open(
    run: Run | str | Path,
    store: RunStore | str | Path | None,
    checkpoint: str,
    dataset: Any,
    n_samples: int,
    seed: int,
    device: str | torch.device | None,
) -> OpenedRun:
    """The run opened through the run adapter, on a checked device, with the dataset given (if any)."""
    from workbench.runs.session import open_run

    try:
        dev = resolve_device(device, field="device")
    except DeviceError as err:
        raise DoctorError(str(err)) from None
    if dataset is not None and (not hasattr(dataset, "train") or not hasattr(dataset, "normalize")):
        raise DoctorError(f"dataset: expected a workbench Dataset, got {type(dataset).__name__}")
    return open_run(
        run, store=store, checkpoint=checkpoint, n_samples=n_samples, seed=seed, device=dev,
        fallback=True, dataset=dataset,
    )


def _student(opened: OpenedRun) -> nn.Module | None:
    """The run's student (``checkpoint``, else ``final``, else ``best``); ``None`` for a run that
    failed before saving one."""
    from workbench.runs import RunStoreError

    try:
        return opened.student
    except (RunStoreError, FileNotFoundError, KeyError):
        if not _failure(opened.run):
            raise
        return None


def _failure(run: Run) -> Mapping[str, Any] | None:
    """A failed run's failure record (``step``, ``terms``), else ``None``."""
    status = run.status
    return (status.get("failure") or None) if status.get("status") == "failed" else None


def _teacher(opened: OpenedRun, teacher: nn.Module | str | Any | None) -> tuple[nn.Module, str]:
    """The teacher to compare with and its source: a network as given, else the ``TeacherSpec`` or
    source string given, else the run config's first teacher, loaded for the run's dataset."""
    from workbench.config import TEACHER_PREFIXES, TeacherSpec
    from workbench.runs.session import run_teacher

    if isinstance(teacher, nn.Module):
        return teacher, type(teacher).__name__
    cfg = opened.config
    if teacher is None:
        if not cfg.teachers:
            raise DoctorError(f"teacher: run {opened.id} has no teacher in its config; pass teacher=")
        spec = cfg.teachers[0]
    elif isinstance(teacher, TeacherSpec):
        spec = teacher
    elif isinstance(teacher, str):
        spec = TeacherSpec(source=teacher if teacher.startswith(TEACHER_PREFIXES) else f"run:{teacher}")
    else:
        raise DoctorError(
            f"teacher: expected a network, a TeacherSpec or a source string, got {type(teacher).__name__}"
        )
    model = run_teacher(cfg, opened.dataset, device=opened.device, store=opened.store, spec=spec)
    assert model is not None  # a spec is given
    return model, spec.source


def _scratch(scratch_run: Any, opened: OpenedRun) -> nn.Module | None:
    """The scratch student (its ``final``, else ``best`` checkpoint), from a run, id, directory or network."""
    from workbench.runs import Run
    from workbench.runs.session import pick_checkpoint, resolve_run

    if scratch_run is None or isinstance(scratch_run, nn.Module):
        return scratch_run
    if not isinstance(scratch_run, (Run, str, Path)):
        raise DoctorError(
            "scratch_run: expected a Run, a run id, a run directory or a network, "
            f"got {type(scratch_run).__name__}"
        )
    run = resolve_run(scratch_run, opened.store)
    return run.load_model(pick_checkpoint(run, "final", fallback=True), device=opened.device)


def _shipped_teacher_for(config: RunConfig, current: str | None) -> str | None:
    """A shipped teacher trained on the run's dataset (not the run's own teacher), or ``None``."""
    from workbench.runs.teachers import list_shipped_teachers

    for card in list_shipped_teachers():
        source = f"shipped:{card['name']}"
        if card.get("dataset") == config.data.dataset and source != current:
            return source
    return None


def _meta(opened: OpenedRun, source: str, dataset_given: bool) -> dict[str, Any]:
    """What the report says was diagnosed."""
    cfg = opened.config
    return {
        "run": opened.id,
        "status": opened.run.status.get("status"),
        "dataset": getattr(opened.dataset, "name", cfg.data.dataset),
        "model": cfg.model.name,
        "methods": "+".join(m.name for m in cfg.distill.methods),
        "teacher_source": source,
        "teachers_in_config": len(cfg.teachers),
        "dataset_given": dataset_given,
    }


def diagnose(
    run: Run | str | Path,
    *,
    teacher: nn.Module | str | Any | None = None,
    scratch_run: Run | str | Path | nn.Module | None = None,
    dataset: Any = None,
    n_samples: int = DOCTOR_N_SAMPLES,
    device: str | torch.device | None = None,
    store: RunStore | str | Path | None = None,
    checkpoint: str = "final",
    seed: int = 0,
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    progress: ProgressFn | Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> DoctorReport:
    """Diagnose a stored run: open it (:func:`workbench.runs.session.open_run`), load its student,
    teacher, data, config, history and status, then call
    :func:`workbench.analysis.doctor.diagnose_models`.

    Args:
        run: a :class:`workbench.runs.Run`, a run id (or unique prefix) in ``store``, or a run
            directory.
        teacher: override the run's teacher: a network, a ``TeacherSpec``, or a source string
            (``shipped:NAME``, ``run:ID``, or a bare run id). Default: the run config's first teacher.
        scratch_run: the scratch student to compare curvature with: a run, run id, directory or network.
        dataset: the :class:`workbench.data.Dataset` the run trained on when it was not the one its
            config names (passed to ``workbench.train.run(dataset=...)``); its training labels are
            evidence (label noise). Default: loaded from the run's config.
        n_samples: test samples examined (a random subset seeded by ``seed``; as many training
            samples); default :data:`workbench.vocabulary.DOCTOR_N_SAMPLES`.
        device: where the models are loaded and analysed (``auto``, ``cpu``, ``cuda``, ...);
            default ``auto``. A network passed in is never moved (the analyses use copies).
        store: the run store (a :class:`~workbench.runs.RunStore` or its folder) that resolves run
            ids (the run's, ``run:ID`` teachers, the scratch run's); default the run's own parent
            folder for a Run or a directory, else ``$WORKBENCH_RUNS`` or ``./runs``.
        checkpoint: the student's checkpoint (``final`` falls back to ``best`` when absent).
        seed: seed of the sample subsets, the Hessian start vector and the landscape direction.
        thresholds: as in :func:`~workbench.analysis.doctor.diagnose_models`.
        progress: ``progress(done, total, message)`` over loading and the analyses (one monotone bar).
        cancel: a :class:`~workbench.runtime.CancelToken`; when set the call raises
            :class:`~workbench.runtime.Cancelled` at its next check.
        options: further keywords of :func:`~workbench.analysis.doctor.diagnose_models`
            (``temperature``, ``layers``, ``cam_samples``, ``hessian_iters``, ...).

    Returns:
        :class:`~workbench.analysis.doctor.DoctorReport` whose ``meta`` names the run. A run that
        failed (non-finite loss) before saving a student is diagnosed from its config, history
        and teacher.
    """
    tracker = Tracker(progress, cancel, total=_TOTAL, label="doctor")
    tracker.start("loading the run")
    opened = _open(run, store, checkpoint, dataset, n_samples, seed, device)
    inputs = dataset_inputs(opened.dataset, n_samples=n_samples, seed=seed)
    tracker.check()
    student = _student(opened)
    teacher_model, source = _teacher(opened, teacher)
    scratch = _scratch(scratch_run, opened)
    tracker.report(_LOAD, "loading the run")
    tracker.check()
    cfg = opened.config
    return diagnose_models(
        teacher_model,
        student,
        inputs=inputs,
        evidence={
            "suggested_teacher": _shipped_teacher_for(cfg, cfg.teachers[0].source if cfg.teachers else None)
        },
        history=opened.run.metrics,
        failure=_failure(opened.run),
        scratch=scratch,
        config=cfg,
        device=opened.device,
        seed=seed,
        thresholds=thresholds,
        meta=_meta(opened, source, dataset is not None),
        progress=tracker.part(_LOAD, _TOTAL),
        cancel=cancel,
        **options,
    )


def measure_run(run: Run | str | Path, **kwargs: Any) -> dict[str, Any]:
    """The doctor's evidence of a stored run as a JSON-ready mapping (what the clinic caches, so
    that the rules can be re-applied without re-running the analyses). Keywords as :func:`diagnose`."""
    from workbench.analysis._result import plain

    report = diagnose(run, **kwargs)
    return {"evidence": plain(report.evidence), "meta": plain(report.meta)}


# ---- verifying the advice -----------------------------------------------------------------------
@dataclass
class VerifyResult(AnalysisResult):
    """What the top finding's experiment did.

    ``run_id``: the diagnosed run; ``verify_run_id``: the verification run (in the same store);
    ``finding``: the rule verified; ``experiment``: the :class:`Experiment` run; ``metric``,
    ``goal``: the finding's own measure and which way it should move; ``before``/``after``:
    ``student_acc``, ``agreement``, ``gap`` and the metric on the diagnosed and on the new run;
    ``delta``: after minus before, by name; ``helped``: the metric moved the right way (by more
    than ``tolerance``); ``after_findings``: the rules that still fire on the new run;
    ``report``: the new run's :class:`DoctorReport`.
    """

    run_id: str
    verify_run_id: str | None
    finding: str
    experiment: Experiment
    metric: str
    goal: str
    before: dict[str, Any]
    after: dict[str, Any]
    delta: dict[str, Any]
    helped: bool
    tolerance: float
    after_findings: list[str]
    report: DoctorReport | None = field(default=None, repr=False)
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: everything but the new run's report (summarized by ``after_findings``)."""
        from workbench.analysis._result import plain

        out = {
            k: plain(getattr(self, k))
            for k in (
                "run_id",
                "verify_run_id",
                "finding",
                "metric",
                "goal",
                "before",
                "after",
                "delta",
                "helped",
                "tolerance",
                "after_findings",
                "params",
            )
        }
        out["experiment"] = self.experiment.to_dict()
        out["kind"] = type(self).__name__
        return out

    def to_text(self) -> str:
        """Plain text for a terminal."""
        lines = [
            f"Verified '{self.finding}' on {self.run_id} with run {self.verify_run_id}:",
            f"  experiment: {self.experiment.text}",
        ]
        for k in dict.fromkeys([self.metric, "student_acc", "agreement", "gap"]):
            b, a = self.before.get(k), self.after.get(k)
            lines.append(f"  {k}: {_fmt(b)} -> {_fmt(a)}")
        verdict = "helped" if self.helped else "did not help"
        lines.append(f"  {self.metric} should go {self.goal}: the experiment {verdict}.")
        lines.append(f"  still found: {', '.join(self.after_findings) or 'nothing'}")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "n/a"
    return "n/a" if v is None else str(v)


_COMPARED = ("student_acc", "agreement", "gap")


def _values(ev: Mapping[str, Any], metric: str) -> dict[str, Any]:
    return {k: ev.get(k) for k in dict.fromkeys([metric, *_COMPARED])}


def _store_and_run(run: Run | str | Path, store: RunStore | str | Path | None) -> tuple[RunStore, Run]:
    """The store and the run in it (the run's own parent folder when no store is given)."""
    from workbench.runs.session import as_store, resolve_run

    if store is None:
        found = resolve_run(run)
        return as_store(found.path.parent), found
    the_store = as_store(store)
    return the_store, resolve_run(run, the_store)


def _choose(report: DoctorReport, finding: Finding | str | None) -> tuple[Finding, Experiment]:
    """The finding to verify (given, named, or the top warning with an experiment) and its experiment."""
    chosen: Finding | None
    if isinstance(finding, Finding):
        chosen = finding
    elif isinstance(finding, str):
        chosen = next((f for f in report.findings if f.rule == finding), None)
        if chosen is None:
            raise DoctorError(
                f"finding: no {finding!r} finding in the report; have {[f.rule for f in report.findings]}"
            )
    else:
        chosen = next((f for f in report.findings if f.experiment is not None and f.level == "warning"), None)
    if chosen is None or chosen.experiment is None:
        raise DoctorError(
            "report: no warning-level finding with an experiment to verify (the run looks healthy)"
        )
    return chosen, chosen.experiment


def _verify_config(run: Run, exp: Experiment, epochs: int | None) -> RunConfig:
    """The run's config with the experiment's overrides, its seed, a ``-verify`` name and a link to it."""
    from workbench.validate import validate_run_config

    data = exp.apply(run.config)
    data["name"] = f"{(run.config.name or run.id)[:48]}-verify"
    data["seed"] = run.config.seed
    data.setdefault("links", {})["verifies"] = run.id
    if epochs is not None:
        data["train"]["epochs"] = int(epochs)
    try:
        return validate_run_config(data)
    except ValueError as err:
        raise DoctorError(f"experiment: its overrides give an invalid config: {one_line(err)}") from None


def _train(
    cfg: RunConfig,
    store: RunStore,
    dataset: Any,
    progress: Callable[[int, int, str], None],
    cancel: CancelToken | None,
) -> str | None:
    """Train the verification run; its id (also when its loss became non-finite), else ``None``."""
    from workbench.train import TrainingFailed
    from workbench.train import run as train_run

    try:
        return train_run(cfg, store=store, dataset=dataset, progress=progress, cancel=cancel).run_id
    except TrainingFailed:
        return next(
            (
                x.id
                for x in store.list()
                if x.status.get("name") == cfg.name and x.status.get("status") == "failed"
            ),
            None,
        )


def _compare(
    report: DoctorReport, after_report: DoctorReport | None, exp: Experiment, tolerance: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bool]:
    """``before``, ``after``, ``delta`` (after minus before, by name) and whether the experiment's
    metric moved its way by more than ``tolerance``."""
    before = _values(report.evidence, exp.metric)
    after = _values(after_report.evidence, exp.metric) if after_report is not None else {}
    delta = {
        k: (after[k] - before[k])
        if isinstance(after.get(k), (int, float)) and isinstance(before.get(k), (int, float))
        else None
        for k in before
    }
    d = delta.get(exp.metric)
    helped = d is not None and (d > tolerance if exp.goal == "up" else d < -tolerance)
    return before, after, delta, bool(helped)


def verify(
    run: Run | str | Path,
    report: DoctorReport | None = None,
    *,
    epochs: int | None = None,
    finding: Finding | str | None = None,
    dataset: Any = None,
    store: RunStore | str | Path | None = None,
    device: str | torch.device | None = None,
    tolerance: float = 0.0,
    progress: ProgressFn | Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **diagnose_options: Any,
) -> VerifyResult:
    """Run the top finding's experiment and report whether it helped.

    The run's config with the experiment's overrides, the same seed, a name ending in ``-verify``
    and ``links={"verifies": <run id>}`` is trained through :func:`workbench.train.run` into the
    run's store, then diagnosed like the original.

    Args:
        run: the diagnosed run (a :class:`workbench.runs.Run`, id or directory).
        report: its report (default: diagnosed now).
        epochs: train the verification for this many epochs (default: the run's, or the
            experiment's when it sets ``train.epochs``).
        finding: the finding to verify (a finding of the report or a rule name; default the top one).
        dataset: the dataset the run trained on when it is not its config's (as in :func:`diagnose`).
        store, device: as in :func:`diagnose` (the verification run is written to that store).
        tolerance: the least change of the metric that counts as help.
        progress: ``progress(done, total, message)``: diagnosis, training and diagnosis again.
        cancel: a :class:`~workbench.runtime.CancelToken`; a cancelled verification leaves no run
            when cancelled during set-up, a ``stopped`` one when cancelled while training.
        diagnose_options: further keywords of :func:`diagnose` (``n_samples``, ...).

    Returns:
        :class:`VerifyResult`.

    Raises:
        DoctorError: the report has no finding with an experiment to run.
    """
    tracker = Tracker(progress, cancel, total=300, label="verify")
    tracker.start("verify")
    the_store, r = _store_and_run(run, store)
    opts = dict(diagnose_options, dataset=dataset, store=the_store, device=device, cancel=cancel)
    if report is None:
        report = diagnose(r, progress=tracker.part(0, 100, "diagnosing"), **opts)
    tracker.report(100, "diagnosed")
    chosen, exp = _choose(report, finding)
    cfg = _verify_config(r, exp, epochs)
    vid = _train(cfg, the_store, dataset, tracker.part(100, 200, "training"), cancel)
    tracker.report(200, "trained")
    after_report = (
        diagnose(vid, progress=tracker.part(200, 300, "diagnosing the new run"), **opts) if vid else None
    )
    before, after, delta, helped = _compare(report, after_report, exp, tolerance)
    tracker.report(300, "verified")
    return VerifyResult(
        run_id=r.id,
        verify_run_id=vid,
        finding=chosen.rule,
        experiment=exp,
        metric=exp.metric,
        goal=exp.goal,
        before=before,
        after=after,
        delta=delta,
        helped=helped,
        tolerance=float(tolerance),
        after_findings=[f.rule for f in after_report.warnings] if after_report is not None else [],
        report=after_report,
        params={"epochs": epochs, "seed": r.config.seed},
    )
