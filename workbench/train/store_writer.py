"""The run-store subscriber: turns engine events into files in the run directory.

It is the only writer of a run's checkpoints: the CLI, the demo, the sweep workers and the job
worker all train through :func:`workbench.train.run`, which attaches it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from workbench.runs import RunDeletedError, RunWriteError, RunWriter, utc_now
from workbench.runs.steps import StepLogAppender
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StepEnded,
)
from workbench.train.resume import RESUME_CHECKPOINT


class StoreWriter:
    """Writes model spec, metrics, per-epoch/best/final checkpoints and status as events arrive.

    Checkpoints are written before the status that refers to them, each file atomically. The
    weights come from each event's snapshot, read while the event is emitted (no copy is made
    for an epoch that writes no checkpoint). At every epoch end the resume point
    (``checkpoints/resume.safetensors``: weights, optimizer, RNG and method state, see
    :mod:`workbench.train.resume`) replaces the previous one; a completed run drops it.
    Warnings (:class:`RunWarning`) are kept in the status (``warnings``). A file that cannot be
    written raises :class:`~workbench.runs.RunWriteError` naming it (the engine then ends the run
    ``failed``); the failure is recorded in status.json, or beside the run when status.json cannot
    be written (:meth:`~workbench.runs.RunWriter.fail`). Step records (a
    :class:`StepEnded` with ``metrics``) are appended to the run's step log, one flushed line each
    (:mod:`workbench.runs.steps`); a resumed run appends after its earlier records.
    """

    def __init__(self, writer: RunWriter, snapshot_every_epoch: bool | None = None) -> None:
        self.writer = writer
        self.snapshots = snapshot_every_epoch
        self.teacher_metrics: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.steps = StepLogAppender(writer.path)

    def _append_step(self, record: dict[str, Any]) -> None:
        try:
            self.steps.append(record)
        except FileNotFoundError as err:
            if not self.writer.path.is_dir():
                raise RunDeletedError(
                    f"run {self.writer.id}: its directory is gone (the run was removed while it was written); "
                    "nothing more is recorded"
                ) from None
            raise self.writer.cannot_write(self.steps.path, err) from None
        except OSError as err:
            raise self.writer.cannot_write(self.steps.path, err) from None

    def _metrics(self, history: Any, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"epochs": list(history), "summary": summary or {}, "teacher": self.teacher_metrics}

    def __call__(self, event: Event) -> None:
        w = self.writer
        if isinstance(event, StepEnded):
            if event.metrics is not None:
                self._append_step(event.metrics)
        elif isinstance(event, RunStarted):
            w.write_model_spec(event.model_spec)
            self.teacher_metrics = dict(event.teacher_metrics)
            if self.snapshots is None:
                self.snapshots = event.config.train.snapshot_every_epoch
            history = list(event.history)
            w.write_metrics(self._metrics(history, {"epochs_done": event.start_epoch} if history else None))
            w.update_status(
                total_steps=event.total_steps,
                epochs=event.epochs,
                step=history[-1]["step"] if history else 0,
                epoch=event.start_epoch,
            )
        elif isinstance(event, EvalEnded):
            if event.teacher:
                self.teacher_metrics.update(event.teacher)
        elif isinstance(event, RunWarning):
            self.warnings.append(event.message)
            w.update_status(warnings=list(self.warnings))
        elif isinstance(event, EpochEnded):
            if self.snapshots or event.is_best:
                state = event.snapshot.state()
                if self.snapshots:
                    w.save_checkpoint(f"epoch_{event.epoch:03d}", state)
                if event.is_best:
                    w.save_checkpoint("best", state)
            if event.resume is not None:
                point = event.resume.point()
                w.save_checkpoint(RESUME_CHECKPOINT, point.tensors, point.file_metadata())
            last = event.metrics
            summary = {k: last[k] for k in ("test_acc", "agreement", "ece") if k in last}
            summary["epochs_done"] = event.epoch
            w.write_metrics(self._metrics(event.history, summary))
            w.update_status(step=event.step, epoch=event.epoch)
        elif isinstance(event, (RunFinished, RunStopped)):
            self.steps.close()
            w.save_checkpoint("final", event.snapshot.state())
            w.write_metrics(self._metrics(event.history, event.summary))
            status = "completed" if isinstance(event, RunFinished) else "stopped"
            w.update_status(status=status, finished=utc_now(), step=event.step)
            if status == "completed":  # nothing left to resume: drop the optimizer/RNG state
                with contextlib.suppress(OSError):  # a resume point left in a read-only folder is harmless
                    w.run.checkpoint_path(RESUME_CHECKPOINT).unlink(missing_ok=True)
        elif isinstance(event, RunFailed):
            self._failed(event)

    def _failed(self, event: RunFailed) -> None:
        """Record a failure where it can be: the metrics so far and status ``failed`` with the error;
        a run whose files cannot be written (the failure itself, often) keeps the metrics it has and
        has its failure recorded beside it (:meth:`RunWriter.fail`). Only a removed run raises."""
        with contextlib.suppress(OSError):
            self.steps.close()
        with contextlib.suppress(RunWriteError):
            self.writer.write_metrics(self._metrics(event.history))
        self.writer.fail(
            event.error, step=event.step, failure={"step": event.step, "epoch": event.epoch, "terms": event.terms}
        )
