"""The job worker: trains one queued job in its own process (or Ray task) and records the outcome.

Started by :meth:`workbench.jobs.JobQueue.pump` as
``python -m workbench.jobs.worker --root R --job ID --token T --threads N`` with the thread
budget already in its environment (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY=PASSIVE``), so the
OpenMP runtime starts with it. The worker

1. checks that the job is still the one it was started for (state ``running``, same token);
2. trains through the one training entry, with a :class:`~workbench.runtime.CancelToken` that
   watches the job's stop file (and SIGTERM/SIGINT), writing the run into the store as it goes;
3. marks the job ``finished``, ``stopped`` or ``failed`` (one line), and pumps the queue so the
   next job starts even when no face is open.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from workbench.jobs.queue import (
    HEARTBEAT_EVERY,
    JobQueue,
    _now,
    _one_line,
    jobs_dir,
    read_job_file,
    state_lock,
    update_job_file,
)
from workbench.jobs.scheduling import thread_env
from workbench.runtime import Cancelled, CancelToken


def set_thread_budget(threads: int) -> None:
    """Hold this process to ``threads`` compute threads: environment for OpenMP/MKL (effective
    when set before torch starts its thread pool) and ``torch.set_num_threads``."""
    os.environ.update(thread_env(threads))
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _train(config: Any, store: Any, run_id: str | None, cancel: CancelToken) -> tuple[str, str | None]:
    """Train ``config`` into ``store`` as run ``run_id`` through the one training entry
    (:func:`workbench.train.run`); returns ``(run status, run id)`` (for a chain of linked runs,
    ``run_id`` names the first link and the id returned is the last link's).

    A stop request during training ends the run ``stopped`` (loadable); during set-up it raises
    :class:`~workbench.runtime.Cancelled` and leaves no run directory.
    """
    from workbench.train import run

    result = run(config, store=store, run_id=run_id, cancel=cancel)
    return result.status, result.run_id


class _Heartbeat:
    """Touches ``path`` every few seconds while the job trains (liveness across hosts)."""

    def __init__(self, path: Path, every: float = HEARTBEAT_EVERY) -> None:
        self.path, self.every = path, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-heartbeat", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                self.path.touch()
            except OSError:
                pass
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.every)


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
    this worker's."""
    from workbench.config import validate_config
    from workbench.runs import RunStore

    root = Path(root)
    folder = jobs_dir(root)
    with state_lock(root):
        data = read_job_file(root, job_id)
        if data is None or data.get("state") != "running" or data.get("token") != token:
            return "skipped"
        data = update_job_file(root, job_id, pid=os.getpid(), host=socket.gethostname()) or data
    cancel = cancel or CancelToken()
    cancel.watch_file(folder / f"{job_id}.stop")
    state, error, run_id = "failed", None, data.get("run_id")
    try:
        with _Heartbeat(folder / f"{job_id}.beat"):
            config = validate_config(data["config"])
            status, run_id = _train(config, RunStore(root), run_id, cancel)
        state = {"completed": "finished", "stopped": "stopped"}.get(status, "failed")
        if state == "failed":
            error = f"the run ended as {status!r}"
    except Cancelled:
        state = "stopped"
        if run_id and not (root / run_id / "status.json").exists():
            run_id = None  # stopped during set-up: no run was created
    except BaseException as err:  # noqa: BLE001 - every failure becomes the job's one-line error
        state, error = "failed", _one_line(err)
        traceback.print_exc()
    finally:
        with state_lock(root):
            current = read_job_file(root, job_id)
            if current is not None and current.get("token") == token and current.get("state") == "running":
                update_job_file(root, job_id, state=state, finished=_now(), error=error, run_id=run_id)
            for suffix in (".stop", ".beat"):
                (folder / f"{job_id}{suffix}").unlink(missing_ok=True)
    print(f"job {job_id}: {state}" + (f" ({error})" if error else ""), flush=True)
    if pump_after:
        try:  # start the next queued job, so the queue moves on without a face
            JobQueue(root, max_jobs=int(data.get("max_jobs") or 1)).pump()
        except Exception:  # noqa: BLE001 - the job's own outcome is already recorded
            traceback.print_exc()
    return state


def ray_job(root: str, job_id: str, token: str, threads: int) -> str:
    """The Ray task body: the same worker, in a Ray worker process on some node."""
    set_thread_budget(threads)
    return run_job(root, job_id, token, pump_after=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m workbench.jobs.worker``."""
    parser = argparse.ArgumentParser(prog="python -m workbench.jobs.worker", description=__doc__)
    parser.add_argument("--root", required=True, help="the run store's root")
    parser.add_argument("--job", required=True, help="the job id")
    parser.add_argument("--token", required=True, help="the token the scheduler started the job with")
    parser.add_argument("--threads", type=int, default=1, help="compute threads for this worker")
    args = parser.parse_args(argv)
    set_thread_budget(args.threads)
    cancel = CancelToken()

    def on_signal(signum: int, frame: Any) -> None:
        cancel.cancel(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    state = run_job(args.root, args.job, args.token, cancel=cancel)
    return 0 if state in ("finished", "stopped", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
