"""The run-store subscriber: turns engine events into files in the run directory.

It is the only writer of a run's checkpoints: the CLI, the demo, the sweep workers and the job
worker all train through :func:`workbench.train.run`, which attaches it.
"""

from __future__ import annotations

from typing import Any

from workbench.runs import RunWriter, utc_now
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
)
from workbench.train.resume import RESUME_CHECKPOINT


class StoreWriter:
    """Writes model spec, metrics, per-epoch/best/final checkpoints and status as events arrive.

    Checkpoints are written before the status that refers to them, each file atomically. The
    weights come from each event's snapshot, read while the event is emitted (no copy is made
    for an epoch that writes no checkpoint). At every epoch end the resume point
    (``checkpoints/resume.safetensors``: weights, optimizer, RNG and method state, see
    :mod:`workbench.train.resume`) replaces the previous one; a completed run drops it.
    Warnings (:class:`RunWarning`) are kept in the status (``warnings``).
    """

    def __init__(self, writer: RunWriter, snapshot_every_epoch: bool | None = None) -> None:
        self.writer = writer
        self.snapshots = snapshot_every_epoch
        self.teacher_metrics: dict[str, Any] = {}
        self.warnings: list[str] = []

    def _metrics(self, history: Any, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"epochs": list(history), "summary": summary or {}, "teacher": self.teacher_metrics}

    def __call__(self, event: Event) -> None:
        w = self.writer
        if isinstance(event, RunStarted):
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
            w.save_checkpoint("final", event.snapshot.state())
            w.write_metrics(self._metrics(event.history, event.summary))
            status = "completed" if isinstance(event, RunFinished) else "stopped"
            w.update_status(status=status, finished=utc_now(), step=event.step)
            if status == "completed":  # nothing left to resume: drop the optimizer/RNG state
                w.run.checkpoint_path(RESUME_CHECKPOINT).unlink(missing_ok=True)
        elif isinstance(event, RunFailed):
            w.write_metrics(self._metrics(event.history))
            w.update_status(
                status="failed",
                finished=utc_now(),
                step=event.step,
                error=event.error,
                failure={"step": event.step, "epoch": event.epoch, "terms": event.terms},
            )
