"""Diagnosing a stored run: the service that finds a run in the run store, loads its student,
teacher, scratch student, data, method config and history, and hands them to the student doctor
(:func:`workbench.analysis.doctor.diagnose_models`).

It sits above :mod:`workbench.train` (teacher loading) and :mod:`workbench.runs` (the run store),
which the analyses below it never import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from workbench.analysis.doctor import (
    DoctorError,
    DoctorReport,
    DoctorThresholds,
    dataset_inputs,
    diagnose_models,
)
from workbench.devices import DeviceError, resolve_device
from workbench.runtime import CancelToken, ProgressFn, Tracker

if TYPE_CHECKING:
    from workbench.runs import Run

__all__ = ["diagnose"]

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
    """Diagnose a stored run: load its student, teacher, data, method config and history, then call
    :func:`workbench.analysis.doctor.diagnose_models`.

    Args:
        run: a :class:`workbench.runs.Run`, a run id (or unique prefix) in ``runs_root``, or a run
            directory.
        teacher: override the run's teacher: a network, a ``TeacherSpec``, or a source string
            (``shipped:NAME``, ``run:ID``, or a bare run id). Default: the run config's first teacher.
        scratch_run: the scratch student to compare curvature with: a run, run id, directory or network.
        n_samples: test samples examined (a random subset seeded by ``seed``).
        device: where the models are loaded and analysed (``auto``, ``cpu``, ``cuda``, ...);
            default ``auto``. A network passed in is never moved (the analyses use copies).
        runs_root: the workspace of run ids; default the run's own parent folder (or the store default).
        which: the student checkpoint (``final`` falls back to ``best`` when absent).
        seed: seed of the sample subset, the Hessian start vector and the landscape direction.
        thresholds: as in :func:`~workbench.analysis.doctor.diagnose_models`.
        progress: ``progress(done, total, message)`` over loading and the analyses (one monotone bar).
        cancel: a :class:`~workbench.runtime.CancelToken`; when set the call raises
            :class:`~workbench.runtime.Cancelled` at its next check.
        options: further keywords of :func:`~workbench.analysis.doctor.diagnose_models`
            (``temperature``, ``layers``, ``cam_samples``, ``hessian_iters``, ...).

    Returns:
        :class:`~workbench.analysis.doctor.DoctorReport` whose ``meta`` names the run.
    """
    from workbench.config import TeacherSpec
    from workbench.data import load_dataset
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
    data = load_dataset(cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options)
    inputs = dataset_inputs(data, n_samples=n_samples, seed=seed)
    tracker.check()
    student = _load_student(r, which, dev)

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
        "dataset": getattr(data, "name", cfg.data.dataset),
        "model": cfg.model.name,
        "methods": "+".join(m.name for m in cfg.distill.methods),
        "teacher_source": source,
        "teachers_in_config": len(cfg.teachers),
    }
    return diagnose_models(
        teacher_model,
        student,
        **inputs,
        history=r.metrics,
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
