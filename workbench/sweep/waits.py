"""How long queued jobs will wait and how far running ones have come, for every face: the Training
page's "position N, starts in about ..." and the ``TrainPanel``'s queued line.

A running job's remaining time is its run's steps left at its measured rate (from its step log),
else what is left of its estimate; queued jobs take the queue's slots in order, each holding its
slot for its estimate (:func:`workbench.sweep.estimate_seconds`: measured speeds of the store's
finished runs of the same dataset and student, else FLOPs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from workbench.jobs.state import Job
from workbench.runs import Run, RunStore, RunStoreError
from workbench.sweep.estimate import estimate_seconds
from workbench.sweep.spec import Trial


def run_progress(run: Run, records: Sequence[Mapping[str, Any]]) -> tuple[int, int, float | None]:
    """``(step, total steps, steps per second)`` of ``run``: the step from its last step record
    (the status says it only at epoch ends), the rate from that record's time since training
    started (``None`` before the first record)."""
    status = run.status
    step = int(status.get("step") or 0)
    rate = None
    if records:
        last = records[-1]
        step = max(step, int(last.get("step") or 0))
        seconds = last.get("time")
        if isinstance(seconds, (int, float)) and seconds > 0 and last.get("step"):
            rate = float(last["step"]) / float(seconds)
    return step, int(status.get("total_steps") or 0), rate


def job_estimates(jobs: Sequence[tuple[str, Mapping[str, Any]]], store: RunStore | str) -> dict[str, float]:
    """Estimated seconds of each job's whole training, by job id, from ``(id, config mapping)`` pairs;
    a config that does not validate is left out."""
    from workbench.validate import validate_run_config

    trials = []
    for job_id, config in jobs:
        try:
            cfg = validate_run_config(dict(config))
        except ValueError:
            continue
        trials.append(Trial(key=job_id, params={}, seed=cfg.seed, config=cfg))
    root = store.root if isinstance(store, RunStore) else store
    return dict(estimate_seconds(trials, str(root)).per_trial) if trials else {}


def _elapsed(job: Job, now: float) -> float:
    try:
        return max(0.0, now - datetime.fromisoformat(job.started or "").timestamp())
    except ValueError:
        return 0.0


def remaining_seconds(job: Job, estimate: float, store: RunStore, *, now: float | None = None) -> float:
    """Seconds a running job still needs: its run's steps left at its measured rate, else what is
    left of its ``estimate``."""
    if job.run_id:
        try:
            run = store.load(job.run_id)
            step, total, rate = run_progress(run, run.step_metrics().records)
        except (RunStoreError, ValueError):
            step, total, rate = 0, 0, None
        if rate and total:
            return max(0.0, (total - step) / rate)
    return max(0.0, estimate - _elapsed(job, time.time() if now is None else now))


def queue_waits(
    jobs: Sequence[Job],
    store: RunStore,
    max_jobs: int,
    *,
    estimates: Mapping[str, float] | None = None,
    remaining: Callable[[Job, float], float] | None = None,
) -> dict[str, float]:
    """Estimated seconds until each queued job starts, by job id.

    The ``max_jobs`` slots free up as the running jobs finish (:func:`remaining_seconds`, or
    ``remaining(job, estimate)``); each queued job, in queue order, takes the first slot to free and
    holds it for its estimate (``estimates`` by job id, else :func:`job_estimates`; a job without one
    costs the mean of the others, or 60 s).
    """
    active = [j for j in jobs if j.state in ("queued", "running")]
    if not any(j.state == "queued" for j in active):
        return {}
    if estimates is None:
        estimates = job_estimates([(j.id, j.config) for j in active], store)
    default = sum(estimates.values()) / len(estimates) if estimates else 60.0
    left = remaining or (lambda job, estimate: remaining_seconds(job, estimate, store))
    slots = sorted(left(j, estimates.get(j.id, default)) for j in active if j.state == "running")
    slots += [0.0] * max(0, int(max_jobs) - len(slots))
    waits: dict[str, float] = {}
    for job in sorted((j for j in active if j.state == "queued"), key=lambda j: j.position or math.inf):
        slots.sort()
        start = slots.pop(0)
        waits[job.id] = start
        slots.append(start + estimates.get(job.id, default))
    return waits


__all__ = ["job_estimates", "queue_waits", "remaining_seconds", "run_progress"]
