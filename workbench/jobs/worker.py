"""The job worker process: trains one queued job and records the outcome, then moves the queue on.

Started by :meth:`workbench.jobs.JobQueue.pump` as
``python -m workbench.jobs.worker --root R --job ID --token T --threads N`` with the thread
budget already in its environment (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY=PASSIVE``), so the
OpenMP runtime starts with it. The worker

1. checks that the job is still the one it was started for (state ``running``, same token);
2. trains through the one training entry, with a :class:`~workbench.runtime.CancelToken` that
   watches the job's stop file (and SIGTERM/SIGINT), writing the run into the store as it goes;
3. marks the job ``finished``, ``stopped`` or ``failed`` (one line), and pumps the queue so the
   next job starts even when no face is open.

Steps 1 and 2 and the record of step 3 are :func:`workbench.jobs.runner.train_job`, which a Ray
task runs as well (:mod:`workbench.jobs.ray_backend`).

``python -m workbench.jobs.worker --root R --warm WORKER_ID --threads N`` runs a warm worker
instead, which trains job after job as the scheduler hands them to it
(:func:`workbench.jobs.warm.serve_warm`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from workbench.jobs.queue import JobQueue
from workbench.jobs.runner import set_thread_budget, train_job
from workbench.runtime import CancelToken


def run_job(
    root: str | Path,
    job_id: str,
    token: str,
    *,
    cancel: CancelToken | None = None,
    pump_after: bool = True,
) -> str:
    """Train one job that a scheduler marked running with ``token``; returns its final state
    (``finished``, ``stopped``, ``failed``) or ``skipped`` when the job is not (or no longer)
    this worker's. With ``pump_after`` the queue is pumped afterwards (the next job starts)."""
    state, data = train_job(root, job_id, token, cancel=cancel)
    if data is not None and pump_after:
        try:  # start the next queued job, so the queue moves on without a face (as it was started)
            JobQueue(root, max_jobs=int(data.get("max_jobs") or 1), warm=False).pump()
        except Exception:  # noqa: BLE001 - the job's own outcome is already recorded
            traceback.print_exc()
    return state


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m workbench.jobs.worker``."""
    parser = argparse.ArgumentParser(prog="python -m workbench.jobs.worker", description=__doc__)
    parser.add_argument("--root", required=True, help="the run store's root")
    parser.add_argument("--job", help="the job id")
    parser.add_argument("--token", help="the token the scheduler started the job with")
    parser.add_argument("--warm", metavar="WORKER_ID", help="run as the warm worker with this id")
    parser.add_argument("--threads", type=int, default=1, help="compute threads for this worker")
    args = parser.parse_args(argv)
    if args.warm is None and (args.job is None or args.token is None):
        parser.error("give --job and --token, or --warm WORKER_ID")
    set_thread_budget(args.threads)
    cancel = CancelToken()

    def on_signal(signum: int, frame: Any) -> None:
        cancel.cancel(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.warm is not None:
        from workbench.jobs.warm import serve_warm

        serve_warm(args.root, args.warm, threads=args.threads, shutdown=cancel)
        return 0
    state = run_job(args.root, args.job, args.token, cancel=cancel)
    return 0 if state in ("finished", "stopped", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
