"""Training one job in this process: the body of a worker, in a local process or a Ray task.

:func:`train_job` claims a job that a scheduler marked running (same token), trains it through
the one training entry with a :class:`~workbench.runtime.CancelToken` that watches the job's stop
file, keeps its heartbeat while it trains, and records the outcome (``finished``, ``stopped`` or
``failed`` with one line). Moving the queue on afterwards is the caller's part
(:func:`workbench.jobs.worker.run_job`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import one_line
from workbench.jobs.scheduling import thread_env
from workbench.jobs.state import HEARTBEAT_EVERY, claim_job, finish_job, jobs_dir
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


def _trial_claim(store: Any, data: dict[str, Any]) -> contextlib.AbstractContextManager[bool]:
    """The experiment trial's claim (the lock `workbench sweep` takes too) for a trial's job, so the
    two never train the same trial at once; a plain job needs none."""
    if not data.get("experiment") or not data.get("trial"):
        return contextlib.nullcontext(True)
    from workbench.sweep.runner import claim_trial

    return claim_trial(store, str(data["experiment"]), str(data["trial"]))


def train_job(
    root: str | Path,
    job_id: str,
    token: str,
    *,
    cancel: CancelToken | None = None,
    on_final: Callable[[], None] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Train one job that a scheduler marked running with ``token``.

    Args:
        root: the run store's root.
        job_id: the job's id.
        token: the token the scheduler started the job with.
        cancel: a token to stop the job with (it also watches the job's stop file).
        on_final: called under the queue's lock right after the outcome is recorded (see
            :func:`~workbench.jobs.state.finish_job`); not called for a skipped job.

    Returns:
        The job's final state (``finished``, ``stopped``, ``failed``) and its record as this
        worker claimed it; ``("skipped", None)`` when the job is not (or no longer) this worker's.
    """
    from workbench.config import validate_config
    from workbench.runs import RunStore

    root = Path(root)
    folder = jobs_dir(root)
    data = claim_job(root, job_id, token)
    if data is None:
        return "skipped", None
    cancel = cancel or CancelToken()
    cancel.watch_file(folder / f"{job_id}.stop")
    state, error, run_id = "failed", None, data.get("run_id")
    try:
        with _Heartbeat(folder / f"{job_id}.beat"), _trial_claim(RunStore(root), data) as held:
            if held:
                config = validate_config(data["config"])
                status, run_id = _train(config, RunStore(root), run_id, cancel)
        if not held:
            run_id, error = (
                None,
                (
                    f"trial {data['trial']} of experiment {data['experiment']!r} is being trained by another "
                    "process (a `workbench sweep`); re-submit the experiment once it ends"
                ),
            )
        else:
            state = {"completed": "finished", "stopped": "stopped"}.get(status, "failed")
            if state == "failed":
                error = f"the run ended as {status!r}"
    except Cancelled:
        state = "stopped"
        if run_id and not (root / run_id / "status.json").exists():
            run_id = None  # stopped during set-up: no run was created
    except BaseException as err:  # noqa: BLE001 - every failure becomes the job's one-line error
        state, error = "failed", one_line(err, typed=True)
        traceback.print_exc()
    finally:
        finish_job(root, job_id, token, state, error, run_id, then=on_final)
    print(f"job {job_id}: {state}" + (f" ({error})" if error else ""), flush=True)
    return state, data
