"""Diagnosing a stored run, and checking the advice.

:func:`diagnose` finds a run in the run store, loads its student, teacher, data, config, history
and status, and hands them to the student doctor
(:func:`workbench.analysis.doctor.diagnose_models`). :func:`verify` runs the top finding's
experiment as a short run from the same seed, through :func:`workbench.train.run`, into the same
store (labelled as a verification), diagnoses it too, and reports whether the advice helped and
by how much.

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
from workbench.runtime import CancelToken, ProgressFn, Tracker

if TYPE_CHECKING:
    from workbench.runs import Run

__all__ = ["DOCTOR_VERSION", "VerifyResult", "diagnose", "measure_run", "verify"]

#: version of the doctor's evidence (the clinic re-measures a run when it changes)
DOCTOR_VERSION = 2

#: progress units of :func:`diagnose`: loading takes the first ``_LOAD`` of ``_TOTAL``
_TOTAL, _LOAD = 100, 5


def _resolve_run(run: Any, runs_root: str | Path | None, arg: str) -> Run:
    from workbench.runs import Run, RunStore

    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        path = Path(run)
        if path.is_dir() and (path / "status.json").exists():
            return Run(path.name, path)
        return RunStore(runs_root).load(str(run))
    raise DoctorError(f"{arg}: expected a Run, a run id or a run directory, got {type(run).__name__}")


def _load_student(run: Run, which: str, device: torch.device) -> nn.Module:
    have = run.checkpoints()
    for name in (which, "final", "best"):
        if name in have:
            return run.load_model(name, device=device)
    return run.load_model(which, device=device)  # raises, naming the checkpoints the run has


def diagnose(
    run: Run | str | Path,
    *,
    teacher: nn.Module | str | Any | None = None,
    scratch_run: Run | str | Path | nn.Module | None = None,
    dataset: Any = None,
    n_samples: int = 1000,
    device: str | torch.device | None = None,
    runs_root: str | Path | None = None,
    which: str = "final",
    seed: int = 0,
    thresholds: DoctorThresholds | Mapping[str, Any] | None = None,
    progress: ProgressFn | Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> DoctorReport:
    """Diagnose a stored run: load its student, teacher, data, config, history and status, then call
    :func:`workbench.analysis.doctor.diagnose_models`.

    Args:
        run: a :class:`workbench.runs.Run`, a run id (or unique prefix) in ``runs_root``, or a run
            directory.
        teacher: override the run's teacher: a network, a ``TeacherSpec``, or a source string
            (``shipped:NAME``, ``run:ID``, or a bare run id). Default: the run config's first teacher.
        scratch_run: the scratch student to compare curvature with: a run, run id, directory or network.
        dataset: the :class:`workbench.data.Dataset` the run trained on when it was not the one its
            config names (passed to ``workbench.train.run(dataset=...)``); its training labels are
            evidence (label noise). Default: loaded from the run's config.
        n_samples: test samples examined (a random subset seeded by ``seed``; as many training samples).
        device: where the models are loaded and analysed (``auto``, ``cpu``, ``cuda``, ...);
            default ``auto``. A network passed in is never moved (the analyses use copies).
        runs_root: the workspace of run ids; default the run's own parent folder (or the store default).
        which: the student checkpoint (``final`` falls back to ``best`` when absent).
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
    from workbench.config import TeacherSpec
    from workbench.data import load_dataset
    from workbench.runs import RunStoreError
    from workbench.train.teachers import load_teacher

    tracker = Tracker(progress, cancel, total=_TOTAL, label="doctor")
    tracker.start("loading the run")
    try:
        dev = resolve_device(device, field="device")
    except DeviceError as err:
        raise DoctorError(str(err)) from None
    r = _resolve_run(run, runs_root, "run")
    root = Path(runs_root) if runs_root is not None else r.path.parent
    cfg = r.config
    status = r.status
    data = dataset
    if data is None:
        data = load_dataset(
            cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
        )
    elif not hasattr(data, "train") or not hasattr(data, "normalize"):
        raise DoctorError(f"dataset: expected a workbench Dataset, got {type(data).__name__}")
    inputs = dataset_inputs(data, n_samples=n_samples, seed=seed)
    tracker.check()
    failure = status.get("failure") if status.get("status") == "failed" else None
    try:
        student: nn.Module | None = _load_student(r, which, dev)
    except (RunStoreError, FileNotFoundError, KeyError):
        if not failure:
            raise
        student = None

    source: str
    if isinstance(teacher, nn.Module):
        teacher_model, source = teacher, type(teacher).__name__
    else:
        if teacher is None:
            if not cfg.teachers:
                raise DoctorError(f"teacher: run {r.id} has no teacher in its config; pass teacher=")
            spec = cfg.teachers[0]
        elif isinstance(teacher, TeacherSpec):
            spec = teacher
        elif isinstance(teacher, str):
            spec = TeacherSpec(
                source=teacher if teacher.startswith(("shipped:", "run:")) else f"run:{teacher}"
            )
        else:
            raise DoctorError(
                f"teacher: expected a network, a TeacherSpec or a source string, got {type(teacher).__name__}"
            )
        source = spec.source
        teacher_model = load_teacher(spec, data.num_classes, data.image_shape, dev, runs_root=str(root))

    scratch = None
    if scratch_run is not None:
        if isinstance(scratch_run, nn.Module):
            scratch = scratch_run
        else:
            scratch = _load_student(_resolve_run(scratch_run, root, "scratch_run"), "final", dev)
    tracker.report(_LOAD, "loading the run")
    tracker.check()

    meta = {
        "run": r.id,
        "status": status.get("status"),
        "dataset": getattr(data, "name", cfg.data.dataset),
        "model": cfg.model.name,
        "methods": "+".join(m.name for m in cfg.distill.methods),
        "teacher_source": source,
        "teachers_in_config": len(cfg.teachers),
        "dataset_given": dataset is not None,
    }
    return diagnose_models(
        teacher_model,
        student,
        **inputs,
        evidence={
            "suggested_teacher": _shipped_teacher_for(cfg, cfg.teachers[0].source if cfg.teachers else None)
        },
        history=r.metrics,
        failure=failure or None,
        scratch=scratch,
        config=cfg,
        device=dev,
        seed=seed,
        thresholds=thresholds,
        meta=meta,
        progress=tracker.part(_LOAD, _TOTAL),
        cancel=cancel,
        **options,
    )


def _shipped_teacher_for(config: Any, current: str | None) -> str | None:
    """A shipped teacher trained on the run's dataset (not the run's own teacher), or ``None``."""
    from workbench.train.teachers import list_shipped_teachers

    for card in list_shipped_teachers():
        source = f"shipped:{card['name']}"
        if card.get("dataset") == config.data.dataset and source != current:
            return source
    return None


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


def verify(
    run: Run | str | Path,
    report: DoctorReport | None = None,
    *,
    epochs: int | None = None,
    finding: Finding | str | None = None,
    dataset: Any = None,
    runs_root: str | Path | None = None,
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
        runs_root, device: as in :func:`diagnose`.
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
    from workbench.runs import RunStore
    from workbench.train import TrainingFailed
    from workbench.train import run as train_run
    from workbench.validate import validate_run_config

    tracker = Tracker(progress, cancel, total=300, label="verify")
    tracker.start("verify")
    r = _resolve_run(run, runs_root, "run")
    root = Path(runs_root) if runs_root is not None else r.path.parent
    opts = dict(diagnose_options, dataset=dataset, runs_root=root, device=device, cancel=cancel)
    if report is None:
        report = diagnose(r, progress=tracker.part(0, 100, "diagnosing"), **opts)
    tracker.report(100, "diagnosed")
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
    exp = chosen.experiment
    data = exp.apply(r.config)
    data["name"] = f"{(r.config.name or r.id)[:48]}-verify"
    data["seed"] = r.config.seed
    data.setdefault("links", {})["verifies"] = r.id
    if epochs is not None:
        data["train"]["epochs"] = int(epochs)
    try:
        cfg = validate_run_config(data)
    except ValueError as err:
        raise DoctorError(
            f"experiment: its overrides give an invalid config: {str(err).splitlines()[0]}"
        ) from None
    store = RunStore(root)
    vid: str | None
    try:
        res = train_run(
            cfg, store=store, dataset=dataset, progress=tracker.part(100, 200, "training"), cancel=cancel
        )
        vid = res.run_id
    except TrainingFailed:
        vid = next(
            (
                x.id
                for x in store.list()
                if x.status.get("name") == cfg.name and x.status.get("status") == "failed"
            ),
            None,
        )
    tracker.report(200, "trained")
    after_report = (
        diagnose(vid, progress=tracker.part(200, 300, "diagnosing the new run"), **opts) if vid else None
    )
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
        helped=bool(helped),
        tolerance=float(tolerance),
        after_findings=[f.rule for f in after_report.warnings] if after_report is not None else [],
        report=after_report,
        params={"epochs": epochs, "seed": r.config.seed},
    )
