"""Step metrics on the engine's side: which steps are recorded and what their record holds.

``train.step_log_every`` picks the steps: ``None`` about 50 per epoch (every
``max(1, round(steps_per_epoch / 50))`` steps), ``0`` none, ``N`` every N-th global step; the last
step of every epoch (and of the run) is recorded too. A record is built only at those steps, so a
step that is not recorded costs one comparison: no ``.item()``, no clock read.

The record travels on :class:`~workbench.train.events.StepEnded` (``metrics``); the run-store
writer appends it to the run's step log (:mod:`workbench.runs.steps`).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from workbench.vocabulary import LOSS_TERM_PREFIX

#: points per epoch when ``train.step_log_every`` is not set
POINTS_PER_EPOCH = 50


def step_log_interval(step_log_every: int | None, steps_per_epoch: int) -> int:
    """Steps between two records: ``step_log_every`` itself when set (``0`` = no step metrics),
    else about :data:`POINTS_PER_EPOCH` per epoch of ``steps_per_epoch`` steps."""
    if step_log_every is None:
        return max(1, round(steps_per_epoch / POINTS_PER_EPOCH))
    return int(step_log_every)


class StepRecorder:
    """Decides which steps are recorded and builds their records.

    ``elapsed``: training seconds already spent (a resumed run's), so that ``time`` continues.
    ``images_per_s`` counts the images since the previous record of the same epoch (or since the
    epoch's first step) over the wall seconds since then: evaluation and checkpoints between
    epochs are not training throughput.
    """

    def __init__(self, every: int, steps_per_epoch: int, total_steps: int, elapsed: float = 0.0) -> None:
        self.every = every
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self._t0 = time.perf_counter() - elapsed
        self._mark_t = time.perf_counter()
        self._mark_seen = 0

    def elapsed(self) -> float:
        """Seconds since training started (across resumes)."""
        return time.perf_counter() - self._t0

    def start_epoch(self) -> None:
        """Start the throughput window at the epoch's first step."""
        self._mark_t = time.perf_counter()
        self._mark_seen = 0

    def due(self, step: int, epoch_step: int) -> bool:
        """Whether global ``step`` (the ``epoch_step``-th of its epoch, both from 1) is recorded."""
        every = self.every
        return bool(every) and (
            step % every == 0 or epoch_step == self.steps_per_epoch or step == self.total_steps
        )

    def record(
        self,
        *,
        step: int,
        epoch: int,
        loss: float,
        terms: dict[str, float],
        lr: float,
        hits: torch.Tensor,
        batch_size: int,
        seen: int,
    ) -> dict[str, Any]:
        """The record of a due step: ``terms`` the step's weighted loss terms as floats, ``hits``
        the batch's correct predictions (a 0-dim tensor, read here), ``seen`` the images of the
        epoch so far."""
        now = time.perf_counter()
        span = now - self._mark_t
        images = seen - self._mark_seen
        self._mark_t, self._mark_seen = now, seen
        out: dict[str, Any] = {"step": step, "epoch": epoch, "loss": loss}
        out.update({f"{LOSS_TERM_PREFIX}{k}": v for k, v in terms.items()})
        out["lr"] = lr
        out["batch_acc"] = float(hits) / max(batch_size, 1)
        out["images_per_s"] = images / span if span > 0 else None
        out["time"] = now - self._t0
        return out


__all__ = ["POINTS_PER_EPOCH", "StepRecorder", "step_log_interval"]
