"""How long queued jobs will wait, when each job will finish, and how far running ones have come,
for every face: the Training page's "position N, starts in about ..., done in about ..." and the
``TrainPanel``'s queued line.

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

from workbench.jobs.settings import read_settings
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


def queue_times(
    jobs: Sequence[Job],
    store: RunStore,
    max_jobs: int,
    *,
    estimates: Mapping[str, float] | None = None,
    remaining: Callable[[Job, float], float] | None = None,
    paused: bool | None = None,
) -> dict[str, tuple[float | None, float | None]]:
    """Estimated ``(start, finish)`` of each queued and running job, in seconds from now, by job id.

    A running job has started (``0``) and finishes when its run is done (:func:`remaining_seconds`,
    or ``remaining(job, estimate)``). The ``max_jobs`` slots free up as the running jobs finish (with
    more running than ``max_jobs``, a slot frees only once enough of them ended); each queued job,
    in queue order (``position``), takes the first slot to free and holds it for its estimate
    (``estimates`` by job id, else :func:`job_estimates`; a job without one costs the mean of the
    others, or 60 s). While the queue is paused nothing starts, so a queued job's start and finish
    are unknown: ``(None, None)``.

    Args:
        jobs: the queue's jobs (every workspace's: they share the slots); final ones are ignored.
        store: the run store (the running jobs' progress, the estimates, the queue's settings).
        max_jobs: jobs running at once.
        estimates: seconds each job's whole training takes, by job id.
        remaining: seconds a running job still needs, given it and its estimate.
        paused: whether the queue is paused (default: its settings say, :mod:`workbench.jobs.settings`).
    """
    active = [j for j in jobs if j.state in ("queued", "running")]
    if not active:
        return {}
    queued = sorted((j for j in active if j.state == "queued"), key=lambda j: (j.position or math.inf, j.seq))
    running = [j for j in active if j.state == "running"]
    if estimates is None:
        estimates = job_estimates([(j.id, j.config) for j in active], store)
    default = sum(estimates.values()) / len(estimates) if estimates else 60.0
    left = remaining or (lambda job, estimate: remaining_seconds(job, estimate, store))
    times: dict[str, tuple[float | None, float | None]] = {}
    for job in running:
        times[job.id] = (0.0, max(0.0, float(left(job, estimates.get(job.id, default)))))
    if paused is None:
        paused = read_settings(store.root).paused
    if paused:
        return {**times, **{j.id: (None, None) for j in queued}}
    ends = sorted(times[j.id][1] or 0.0 for j in running)
    slots = ends[max(0, len(ends) - int(max_jobs)) :] + [0.0] * max(0, int(max_jobs) - len(ends))
    for job in queued:
        slots.sort()
        start = slots.pop(0)
        finish = start + estimates.get(job.id, default)
        times[job.id] = (start, finish)
        slots.append(finish)
    return times


def queue_waits(
    jobs: Sequence[Job],
    store: RunStore,
    max_jobs: int,
    *,
    estimates: Mapping[str, float] | None = None,
    remaining: Callable[[Job, float], float] | None = None,
    paused: bool | None = None,
) -> dict[str, float]:
    """Estimated seconds until each queued job starts, by job id: the starts of :func:`queue_times`
    (same arguments). While the queue is paused no queued job has a start, and none is listed."""
    if not any(j.state == "queued" for j in jobs):
        return {}
    times = queue_times(jobs, store, max_jobs, estimates=estimates, remaining=remaining, paused=paused)
    queued = {j.id for j in jobs if j.state == "queued"}
    return {job_id: start for job_id, (start, _) in times.items() if job_id in queued and start is not None}


__all__ = ["job_estimates", "queue_times", "queue_waits", "remaining_seconds", "run_progress"]
