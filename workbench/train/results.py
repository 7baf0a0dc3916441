"""What a run gives back: its result, its summary, the training state a checkpoint holds, and the
error of a run whose loss stopped being finite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.distill import MethodStack
from workbench.runs import checkpoint_state

#: the last evaluation's metrics a summary repeats
SUMMARY_KEYS = ("test_acc", "test_loss", "ece", "agreement", "kl_teacher_student", "train_acc")


class TrainingFailed(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the epoch (from 1) and every
    term's value."""

    def __init__(self, step: int, epoch: int, terms: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): {shown}")
        self.step, self.epoch, self.terms = step, epoch, terms


@dataclass
class TrainResult:
    """What a finished (or stopped) run returns to its caller.

    ``link_ids`` lists every run the call trained, in order: ``[run_id]`` for one run, each
    link's id for a chain (``ban``, ``takd``), whose result is the last link's. ``student`` is the
    trained network on the device it was given on (a student built from the config: the CPU).
    ``warnings`` holds the run's warnings (e.g. a teacher near chance on this data).
    """

    run_id: str | None
    status: str
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    student: nn.Module
    method: MethodStack
    link_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def training_state(student: nn.Module, method: MethodStack) -> dict[str, torch.Tensor]:
    """Everything a checkpoint holds: the student, the method's trainable extras (connectors,
    heads; ``extras.*``) and each peer of an online method on its own (``peerN.*``)."""
    extras = method if len(method.state_dict()) else None
    return checkpoint_state(student, extras, method.peers())


def frozen_history(history: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """A copy of the history for an event: later epochs do not change what an event holds."""
    return tuple(dict(h) for h in history)


def run_summary(
    history: list[dict[str, Any]],
    step: int,
    *,
    model_spec: dict[str, Any],
    teacher_metrics: dict[str, float],
    cached: bool,
    teacher_precision: str | None,
) -> dict[str, Any]:
    """The summary of a run: epochs and steps done, seconds, the student's size, the teachers'
    test metrics, the last evaluation's metrics and the best test accuracy.

    Args:
        history: the per-epoch metrics, in order.
        step: the steps done.
        model_spec: the run's model description (``student.params`` and ``student.flops`` are read).
        teacher_metrics: the teachers' test metrics (``teacher_test_acc``), if computed.
        cached: whether the teachers' outputs were cached.
        teacher_precision: the teachers' precision name, or ``None`` for a run without teachers.

    Returns:
        A JSON-ready mapping.
    """
    last = next((h for h in reversed(history) if "test_acc" in h), {})
    accs = [h["test_acc"] for h in history if "test_acc" in h]
    out: dict[str, Any] = {
        "epochs_done": len(history),
        "steps": step,
        "seconds": sum(h["seconds"] for h in history),
        "params": model_spec["student"]["params"],
        "flops": model_spec["student"]["flops"],
        "teacher_cache": cached,
        **teacher_metrics,
    }
    if teacher_precision is not None:
        out["teacher_precision"] = teacher_precision
    for key in SUMMARY_KEYS:
        if key in last:
            out[key] = last[key]
    if accs:
        out["best_test_acc"] = max(accs)
    return out
