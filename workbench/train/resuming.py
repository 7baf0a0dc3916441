"""Resuming a stored run: checking that it may be resumed with a config, reading its resume
point, reopening its directory for writing, and putting the saved state back in place.

The resume point's format is :mod:`workbench.train.resume`'s; this module is the engine's side of
it: the run store, the run's status and the live modules.
"""

from __future__ import annotations

import os
import socket

import torch
from safetensors import safe_open
from torch import nn

from workbench.config import RunConfig, config_to_yaml
from workbench.distill import MethodStack
from workbench.distill.chains import CHAIN_METHODS
from workbench.procs import process_start
from workbench.runs import Run, RunWriter, atomic_write_text, load_weights, process_gone, split_state, utc_now
from workbench.runs.failures import clear_failure
from workbench.train.resume import (
    RESUME_CHECKPOINT,
    ResumeError,
    ResumePoint,
    check_resumable_config,
    restore,
)


def check_resumable(run: Run, config: RunConfig) -> None:
    """Raise :class:`ResumeError` unless ``run`` may be continued with ``config``: it has not
    completed, is not damaged, its process is gone, it is not a link of a chain, and ``config``
    equals its recorded config except for ``train.epochs`` (else a
    :class:`~workbench.config.ConfigError` naming the field)."""
    info = run.status
    state = info.get("status")
    if state == "completed":
        raise ResumeError(f"resume {run.id}: the run completed; there is nothing to resume")
    if state == "damaged":
        raise ResumeError(f"resume {run.id}: the run is damaged ({info.get('damage')})")
    if state == "running" and not process_gone(info):
        raise ResumeError(f"resume {run.id}: the run is still running (pid {info.get('pid')})")
    check_resumable_config(run.id, run.config, config)
    if any(m.name in CHAIN_METHODS for m in config.distill.methods):
        raise ResumeError(f"resume {run.id}: a link of a chain (ban, takd) cannot be resumed on its own")


def read_resume_point(run: Run, config: RunConfig) -> ResumePoint | None:
    """The resume point of ``run`` after :func:`check_resumable`, or ``None`` for a run that ended
    before its first epoch (it starts again from the beginning).

    Raises:
        ResumeError: the run cannot be resumed with ``config`` (see :func:`check_resumable`), its
            resume checkpoint is unreadable, it has finished epochs but no resume checkpoint, or
            it already trained ``config.train.epochs`` epochs.
    """
    check_resumable(run, config)
    point = None
    if RESUME_CHECKPOINT in run.checkpoints():
        path = run.checkpoint_path(RESUME_CHECKPOINT)
        try:
            with safe_open(str(path), "pt") as fh:
                metadata = fh.metadata()
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line error
            raise ResumeError(f"resume {run.id}: resume checkpoint unreadable ({err})") from None
        point = ResumePoint.from_file(load_weights(path), metadata)
    elif run.metrics.get("epochs"):
        raise ResumeError(f"resume {run.id}: it has finished epochs but no resume checkpoint")
    if point is not None:
        total_epochs = config.train.epochs
        if point.epoch >= total_epochs:
            raise ResumeError(
                f"resume {run.id}: it already trained {point.epoch} epoch(s) of train.epochs={total_epochs}; "
                "raise train.epochs to train further"
            )
    return point


def reopen_run(run: Run, config: RunConfig, point: ResumePoint | None) -> RunWriter:
    """The resumed run's writer: status back to running (this process), a ``resumed`` entry added,
    config.yaml rewritten when ``config`` trains for another number of epochs, and the failure an
    earlier attempt recorded beside the run (:mod:`workbench.runs.failures`) removed."""
    writer = RunWriter(run)
    if run.config.train.epochs != config.train.epochs:
        atomic_write_text(run.path / "config.yaml", config_to_yaml(config), make_parents=False)
    resumed = list(writer.status.get("resumed") or [])
    resumed.append({"at": utc_now(), "epoch": point.epoch if point else 0})
    writer.update_status(
        status="running",
        finished=None,
        error=None,
        failure=None,
        warnings=[],
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
        host=socket.gethostname(),
        resumed=resumed,
    )
    clear_failure(run.path.parent, run.id)
    return writer


def restore_point(
    point: ResumePoint,
    student: nn.Module,
    method: MethodStack,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> None:
    """Load the resume point's weights (student, method extras, peers) onto ``device``, then the
    optimizer's, the method's and the RNG states."""
    state = point.tensors
    student.load_state_dict({k: v.to(device) for k, v in split_state(state, "student").items()})
    extras = split_state(state, "extras")
    if extras:
        method.load_state_dict({k: v.to(device) for k, v in extras.items()}, strict=False)
    for i, peer in enumerate(method.peers()):
        own = split_state(state, f"peer{i}")
        if own:
            peer.load_state_dict({k: v.to(device) for k, v in own.items()})
    restore(point, method=method, optimizer=optimizer)
