"""A warm worker: one process that trains job after job, so a job's first step does not wait for a
process start, the imports and the teachers.

Started by :meth:`workbench.jobs.JobQueue.pump` (with ``warm``) as
``python -m workbench.jobs.worker --root R --warm WORKER_ID --threads N``. The worker

1. warms up (:func:`warm_up`): the training stack's imports, the one that every torch optimizer
   makes on first use, and each shipped teacher loaded and run once;
2. marks its record (:mod:`workbench.jobs.pool`) ``idle`` and polls it every
   :data:`~workbench.jobs.pool.POLL_EVERY` seconds;
3. when the scheduler wrote a job into the record, trains it exactly as a cold worker does
   (:func:`workbench.jobs.runner.train_job`: the claim with the job's token, the stop file, the
   heartbeat, the outcome recorded), with the job's thread budget and its output in the job's own
   log; then clears the record and pumps the queue, which may hand it the next job;
4. retires (removes its record and exits) after ``recycle_after`` jobs, after a failed job, above
   its memory mark, when asked to (:meth:`~workbench.jobs.JobQueue.retire_workers`, SIGTERM,
   SIGINT) or once idle with no scheduler keeping it (:func:`~workbench.jobs.pool.lease_expired`).
   Every change of its record is made under the queue's lock, and a job's outcome and the freed
   record are written in one locked step, so a job is never handed to a worker that is leaving.

Each job builds its own data, models and teachers from its config, as in any other process, so its
numbers are those of the same config trained by ``workbench train``: a shared teacher module would
change them (building a model draws the initial weights that loading then overwrites, and the
engine's set-up order fixes the random draws), so the warm-up leaves the teachers' files read and
their code and kernels ready instead. A job that fails is recorded as failed and its worker is
replaced (whatever the failure left in the process goes with it); a job that kills the process
fails alone (the scheduler sees the dead pid, keeps the run's completed epochs and starts a new
worker).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from workbench.jobs.pool import (
    POLL_EVERY,
    check_worker_id,
    lease_expired,
    read_worker,
    remove_worker,
    resident_mb,
    write_worker,
)
from workbench.jobs.runner import set_thread_budget, train_job
from workbench.jobs.state import jobs_dir, read_job_file, state_lock
from workbench.procs import output_to
from workbench.runtime import CancelToken


def warm_up() -> dict[str, float]:
    """Do once what every job of this process would otherwise do first: import the training stack
    (config checks, data, models, methods, engine, run store), the ``torch._dynamo`` import every
    torch optimizer makes when it is built (about a second), and load each shipped teacher and run
    it once on a batch of zeros (its weights file read, its layers' kernels prepared).

    Returns:
        Seconds spent per part: ``imports``, ``optimizer``, ``teachers``.
    """
    t0 = time.perf_counter()
    import torch

    import workbench.train  # noqa: F401 - the engine, the methods, the models, the data
    import workbench.validate  # noqa: F401 - the config checks every job starts with
    from workbench.runs.teachers import list_shipped_teachers, load_shipped_teacher

    t1 = time.perf_counter()
    weight = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([weight], lr=0.1)
    weight.sum().backward()
    opt.step()
    opt.zero_grad()
    t2 = time.perf_counter()
    for card in list_shipped_teachers():
        try:
            model = load_shipped_teacher(card["name"])
            shape = (2, int(card["in_channels"]), int(card["image_size"]), int(card["image_size"]))
            with torch.inference_mode():
                model(torch.zeros(shape))
        except Exception as err:  # noqa: BLE001 - a broken card fails the job that uses it, not the worker
            print(f"warm-up: shipped teacher {card.get('name')!r} skipped: {err}", file=sys.stderr)
    t3 = time.perf_counter()
    return {"imports": t1 - t0, "optimizer": t2 - t1, "teachers": t3 - t2}


def _mark_ready(root: Path, worker_id: str) -> bool:
    """Record that the worker is warm; ``False`` when its record is gone or names another pid."""
    with state_lock(root):
        data = read_worker(root, worker_id)
        if data is None or data.get("pid") != os.getpid():
            return False
        if data.get("state") == "starting":
            write_worker(root, {**data, "state": "busy" if data.get("job") else "idle"})
        return True


def _release(
    root: Path, worker_id: str, shutdown: CancelToken, job_id: str | None = None
) -> tuple[bool, str | None]:
    """After job ``job_id`` (under the queue's lock, with the job's outcome): count the job and
    free the record, or remove the record when the worker retires: asked to, after a failed job
    (whatever the failure left in the process, a CUDA error say, goes with it), after
    ``recycle_after`` jobs, above its memory mark. Returns whether it stays and why it leaves
    (``None`` when its record was taken from it)."""
    gc.collect()  # what the run left in reference cycles, before the memory is read
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()  # the GPU memory the run cached goes back for other processes
    data = read_worker(root, worker_id)
    if data is None or data.get("pid") != os.getpid():
        return False, None
    data = {**data, "job": None, "token": None, "state": "idle", "jobs_done": int(data["jobs_done"]) + 1}
    mb, why = resident_mb(), None
    if shutdown.cancelled or data.get("retire"):
        why = "asked to"
    elif job_id is not None and (read_job_file(root, job_id) or {}).get("state") == "failed":
        why = f"recycled after job {job_id} failed"
    elif data["jobs_done"] >= int(data["recycle_after"]):
        why = f"recycled after {data['jobs_done']} jobs"
    elif mb > float(data["memory_mark_mb"]):
        why = f"recycled at {mb:.0f} MiB resident, above its mark of {float(data['memory_mark_mb']):.0f} MiB"
    if why is None:
        write_worker(root, data)
        return True, None
    remove_worker(root, worker_id)
    return False, why


def _leave_if_idle(root: Path, worker_id: str, why: str) -> bool:
    """Remove the record and say so when it still holds no job (under the lock)."""
    with state_lock(root):
        data = read_worker(root, worker_id)
        if data is not None and data.get("job") and data.get("pid") == os.getpid():
            return False  # a job came in meanwhile: train it first
        if data is not None and data.get("pid") == os.getpid():
            remove_worker(root, worker_id)
    print(f"warm worker {worker_id}: retiring ({why})", flush=True)
    return True


def _train_one(
    root: Path, worker_id: str, data: dict[str, Any], shutdown: CancelToken
) -> tuple[str, bool, str | None]:
    """Train the job written into the worker's record ``data``, then free the record in the same
    locked step that records the job's outcome. Returns the job's final state, whether the worker
    stays and why it leaves."""
    job_id, token = str(data["job"]), str(data["token"])
    job = read_job_file(root, job_id) or {}
    set_thread_budget(int(job.get("threads") or data.get("threads") or 1))
    cancel = CancelToken().watch(lambda: shutdown.cancelled)  # SIGTERM stops the job, then the worker
    after: list[tuple[bool, str | None]] = []

    def on_final() -> None:  # under the lock, right after the job's outcome is recorded
        after.append(_release(root, worker_id, shutdown, job_id))

    with output_to(jobs_dir(root) / f"{job_id}.log"):
        state, claimed = train_job(root, job_id, token, cancel=cancel, on_final=on_final)
    if claimed is None:  # not (or no longer) this worker's job: nothing was recorded
        with state_lock(root):
            after.append(_release(root, worker_id, shutdown))
    stays, why = after[0]
    return state, stays, why


def _pump(root: Path, data: dict[str, Any]) -> None:
    """Move the queue on after a job, as a cold worker does (it may hand this worker the next)."""
    from workbench.jobs.queue import JobQueue

    try:
        JobQueue(
            root,
            max_jobs=int(data.get("max_jobs") or 1),
            warm=True,
            recycle_after=int(data["recycle_after"]),
            memory_mark_mb=float(data["memory_mark_mb"]),
            idle_timeout=float(data["idle_timeout"]),
            lease=False,
        ).pump()
    except Exception:  # noqa: BLE001 - the job's own outcome is already recorded
        traceback.print_exc()


def serve_warm(
    root: str | Path,
    worker_id: str,
    *,
    threads: int = 1,
    shutdown: CancelToken | None = None,
    poll: float = POLL_EVERY,
) -> int:
    """Run warm worker ``worker_id`` of the store at ``root`` until it retires (see the module's
    description); returns the number of jobs it trained.

    Args:
        root: the run store's root.
        worker_id: the id its record was written under by the scheduler.
        threads: the thread budget until a job brings its own.
        shutdown: a token whose cancellation stops the current job and retires the worker (the
            worker's SIGTERM/SIGINT handler cancels it).
        poll: seconds between two looks at its record while idle.
    """
    root, worker_id = Path(root), check_worker_id(worker_id)
    shutdown = shutdown or CancelToken()
    set_thread_budget(threads)
    took = warm_up()
    print(f"warm worker {worker_id} (pid {os.getpid()}): ready; " + ", ".join(
        f"{k} {v:.2f} s" for k, v in took.items()), flush=True)
    if not _mark_ready(root, worker_id):
        return 0
    done, next_lease_check = 0, 0.0
    while True:
        data = read_worker(root, worker_id)
        if data is None or data.get("pid") != os.getpid():
            return done  # removed by a scheduler that took it for dead: leave
        if data.get("job"):
            state, stays, why = _train_one(root, worker_id, data, shutdown)
            done += 1
            print(f"warm worker {worker_id}: job {data['job']} {state}", flush=True)
            if why is not None:
                print(f"warm worker {worker_id}: retiring ({why})", flush=True)
            if stays or (why or "").startswith("recycled"):
                _pump(root, data)  # the next job: to this worker, or to the one that replaces it
            if not stays:
                return done
            continue
        why = None
        if shutdown.cancelled or data.get("retire"):
            why = "asked to"
        elif time.monotonic() >= next_lease_check:  # once a second is enough for an idle timeout
            next_lease_check = time.monotonic() + 1.0
            why = lease_expired(root, float(data["idle_timeout"]))
        if why is not None and _leave_if_idle(root, worker_id, why):
            return done
        time.sleep(poll)


__all__ = ["serve_warm", "warm_up"]
