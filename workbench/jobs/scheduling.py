"""Pure scheduling: which queued job starts next, the queue's order, and thread budgets.

Nothing here touches files or processes, so the queue's order and fairness are testable alone
(the job record itself is :class:`workbench.jobs.state.Job`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from workbench.jobs.state import Job, JobError


def _ws(job: Job) -> str:
    return job.workspace or ""


def pick_next(jobs: Iterable[Job]) -> Job | None:
    """The queued job to start next: the highest ``priority`` first, then round-robin by workspace.

    Only the queued jobs of the highest priority compete (0 for all unless the instructor moved
    one to the front, above every other, or to the back, below). Among their workspaces, take the
    one whose most recent start is oldest (a workspace that never started a job comes first; ties
    go to the workspace whose oldest queued job was submitted first), and start that workspace's
    oldest queued job. So one workspace that queues ten jobs cannot hold back another that queues
    one.

    Args:
        jobs: every job of the queue (all states: the started ones say when each workspace last
            started a job).

    Returns:
        The job to start, or ``None`` when nothing is queued.
    """
    jobs = list(jobs)
    last: dict[str, int] = {}
    for j in jobs:
        if j.start_seq is not None:
            last[_ws(j)] = max(last.get(_ws(j), 0), j.start_seq)
    queued = [j for j in jobs if j.state == "queued"]
    if not queued:
        return None
    top = max(j.priority for j in queued)
    oldest: dict[str, Job] = {}
    for j in sorted((j for j in queued if j.priority == top), key=lambda j: (j.seq, j.created, j.id)):
        oldest.setdefault(_ws(j), j)
    chosen = min(oldest, key=lambda w: (last.get(w, 0), oldest[w].seq, oldest[w].id))
    return oldest[chosen]


def queue_order(jobs: Iterable[Job]) -> list[Job]:
    """The queued jobs in the order they will start (position 1 first), by :func:`pick_next`
    applied repeatedly as if each pick started at once."""
    jobs = list(jobs)
    counter = max((j.start_seq or 0 for j in jobs), default=0)
    order: list[Job] = []
    while True:
        nxt = pick_next(jobs)
        if nxt is None:
            return order
        order.append(nxt)
        counter += 1
        jobs = [dataclasses.replace(j, state="running", start_seq=counter) if j.id == nxt.id else j for j in jobs]


def with_positions(jobs: Iterable[Job]) -> list[Job]:
    """The jobs with ``position`` filled for the queued ones (others ``None``), listed running
    first (in start order), then queued (by position), then final ones, newest first."""
    jobs = list(jobs)
    pos = {j.id: i for i, j in enumerate(queue_order(jobs), 1)}
    placed = [dataclasses.replace(j, position=pos.get(j.id)) for j in jobs]
    running = sorted((j for j in placed if j.state == "running"), key=lambda j: j.start_seq or 0)
    queued = sorted((j for j in placed if j.state == "queued"), key=lambda j: j.position or 0)
    final = sorted(
        (j for j in placed if j.done), key=lambda j: (j.finished or "", j.seq), reverse=True
    )
    return running + queued + final


def default_max_jobs(cores: int | None = None) -> int:
    """How many jobs run at once by default: 1 on up to 4 cores, else one per 4 cores."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if cores < 1:
        raise JobError(f"cores: expected a positive count, got {cores}")
    return 1 if cores <= 4 else cores // 4


def thread_budget(max_jobs: int, cores: int | None = None, reserve: int = 1) -> int:
    """Threads each worker may use: ``max(1, (cores - reserve) // max_jobs)``.

    ``reserve`` cores stay with the server (the app's script threads, the analyses); the rest is
    split evenly over the ``max_jobs`` workers that may run at once, so that workers and server
    never oversubscribe the CPU (spinning OpenMP threads of one process slow every other one).

    Args:
        max_jobs: jobs running at once (>= 1).
        cores: CPU cores (default ``os.cpu_count()``).
        reserve: cores kept for the serving process (>= 0).

    Returns:
        The per-worker thread count, at least 1.
    """
    if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
        raise JobError(f"max_jobs: expected an integer >= 1, got {max_jobs!r}")
    if not isinstance(reserve, int) or reserve < 0:
        raise JobError(f"reserve: expected an integer >= 0, got {reserve!r}")
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if cores < 1:
        raise JobError(f"cores: expected a positive count, got {cores}")
    return max(1, (cores - reserve) // max_jobs)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that hold a worker to ``threads`` OpenMP/MKL threads that sleep
    (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning while they wait for work."""
    n = str(max(1, int(threads)))
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "OMP_WAIT_POLICY": "PASSIVE",
    }
