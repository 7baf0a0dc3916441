"""The job queue: training for every face (app, widgets, CLI) runs in worker processes.

The queue's state is files in the run store (:mod:`workbench.jobs.state`: one JSON file per job
under ``<runs>/.jobs``, a lock around every change). :meth:`JobQueue.pump` is the scheduler: it
marks jobs whose worker died as failed and starts queued jobs while fewer than ``max_jobs`` run,
round-robin by workspace (:func:`~workbench.jobs.scheduling.pick_next`), each as a detached local
worker process (``python -m workbench.jobs.worker``) or a Ray task
(:mod:`workbench.jobs.ray_backend`). Any face calls it now and then; it is safe to call from many
threads and processes at once, and a finishing worker calls it too, so the queue moves on without
a face. Nothing is held in memory that a restart would lose.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.errors import one_line
from workbench.jobs.ray_backend import launch_ray, ray_task_ended
from workbench.jobs.scheduling import (
    default_max_jobs,
    pick_next,
    thread_budget,
    thread_env,
    with_positions,
)
from workbench.jobs.state import (
    FINAL_STATES,
    HEARTBEAT_TIMEOUT,
    Job,
    JobError,
    all_job_files,
    clear_signals,
    heartbeat_age,
    jobs_dir,
    now,
    read_job_file,
    set_state,
    state_lock,
    update_job_file,
    write_job_file,
)
from workbench.procs import pid_alive

#: a run id given at submit (the run store's own rule: a plain name, no path)
_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
# worker processes started by this process, kept so that finished ones are reaped (no zombies)
_CHILDREN: dict[int, subprocess.Popen] = {}


def _new_run_id(config: dict[str, Any], label: str | None) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    text = config.get("name") or label or f"{config.get('kind', 'student')}-{config.get('model', {}).get('name')}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")[:40] or "run"
    return f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


# ---- liveness of local workers ----------------------------------------------------------------
def _child_alive(pid: int) -> bool:
    """Whether worker ``pid`` lives; a child of this process that exited is reaped here."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    return pid_alive(pid)


def _is_our_worker(pid: int, job_id: str) -> bool:
    """Whether ``pid`` runs the worker of ``job_id`` (checked through /proc where there is one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"workbench.jobs.worker" in cmdline and job_id.encode() in cmdline


def _reap_children() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


# ---- the queue ---------------------------------------------------------------------------------
class JobQueue:
    """The background job queue of one run store.

    Args:
        root: the run store's root (default ``$WORKBENCH_RUNS`` or ``./runs``); jobs live in
            ``<root>/.jobs``.
        max_jobs: jobs running at once (default :func:`default_max_jobs`: 1 on up to 4 cores).
        ray_address: dispatch jobs as Ray tasks instead of local processes: ``"local"`` starts a
            local Ray instance, any other value is passed to ``ray.init(address=...)`` (the run
            store must then be on storage the cluster shares); an already initialised Ray is used
            as it is.
        reserve: cores kept for the calling server when sizing each worker's thread budget.
        heartbeat_timeout: seconds without a heartbeat after which a worker that cannot be checked
            by its pid (another host, a Ray task) counts as dead.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        max_jobs: int | None = None,
        *,
        ray_address: str | None = None,
        reserve: int = 1,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    ) -> None:
        from workbench.runs import default_root

        self.root = Path(root) if root is not None else default_root()
        if max_jobs is None:
            max_jobs = default_max_jobs()
        if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
            raise JobError(f"max_jobs: expected an integer >= 1, got {max_jobs!r}")
        self.max_jobs = max_jobs
        self.reserve = reserve
        self.threads = thread_budget(max_jobs, reserve=reserve)
        self.ray_address = ray_address
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._refs: dict[str, Any] = {}  # job id -> Ray ObjectRef of the tasks this queue started

    @property
    def dir(self) -> Path:
        """``<root>/.jobs``."""
        return jobs_dir(self.root)

    def __repr__(self) -> str:
        backend = f", ray_address={self.ray_address!r}" if self.ray_address else ""
        return f"JobQueue({str(self.root)!r}, max_jobs={self.max_jobs}{backend})"

    # ---- reading ------------------------------------------------------------------------------
    def _jobs(self) -> list[Job]:
        return [Job.from_dict(d) for d in all_job_files(self.root)]

    def list(self, workspace: str | None = None) -> list[Job]:
        """The jobs (of ``workspace`` only, if given): running first, then queued in the order they
        will start (``position`` 1, 2, ... counted over all workspaces), then final ones, newest
        first."""
        jobs = with_positions(self._jobs())
        if workspace is not None:
            jobs = [j for j in jobs if j.workspace == workspace]
        return jobs

    def resolve(self, job_id: str) -> str:
        """The full id of ``job_id`` (an exact id or a unique prefix).

        Raises:
            JobError: empty, unknown or ambiguous, naming the id.
        """
        if not isinstance(job_id, str) or not job_id.strip():
            raise JobError("job id: empty; give a job id or a unique prefix (see `workbench jobs list`)")
        from workbench.runs.store import prefix_matches

        job_id = job_id.strip()
        matches = prefix_matches(job_id, sorted(d["id"] for d in all_job_files(self.root)))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise JobError(f"job {job_id!r}: not found in {self.dir}")
        raise JobError(f"job {job_id!r}: ambiguous, matches {', '.join(matches[:5])}")

    def get(self, job_id: str) -> Job:
        """One job (an exact id or a unique prefix), with its queue position."""
        full = self.resolve(job_id)
        for job in with_positions(self._jobs()):
            if job.id == full:
                return job
        raise JobError(f"job {job_id!r}: not found in {self.dir}")  # removed meanwhile

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """How far the job's run has come (``step``, ``total_steps``, ``epoch``, ``epochs`` and the
        run's ``status``) as the run store records it, or ``None`` before the run exists."""
        job = self.get(job_id)
        if not job.run_id:
            return None
        try:
            status = json.loads((self.root / job.run_id / "status.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return {k: status.get(k) for k in ("status", "step", "total_steps", "epoch", "epochs")}

    def log(self, job_id: str, tail: int = 4000) -> str:
        """The last ``tail`` characters of the worker's output (tracebacks land here)."""
        path = self.dir / f"{self.resolve(job_id)}.log"
        try:
            return path.read_text(encoding="utf-8", errors="replace")[-tail:]
        except OSError:
            return ""

    # ---- changing -----------------------------------------------------------------------------
    def submit(
        self,
        config: Any,
        *,
        workspace: str | None = None,
        label: str | None = None,
        experiment: str | None = None,
        trial: str | None = None,
        run_id: str | None = None,
    ) -> Job:
        """Queue one training run.

        Args:
            config: a :class:`~workbench.config.RunConfig` or a mapping (validated here).
            workspace: whose job it is; the queue is fair across workspaces (round-robin).
            label: a short name shown in listings (default: the config's name).
            experiment: the experiment the job trains a trial of (recorded with the job).
            trial: that trial's key.
            run_id: the id of the run it trains into (default: a new one when it starts).

        Returns:
            The queued job (nothing starts until :meth:`pump` runs).

        Raises:
            ConfigError: the config is invalid, by the schema or the registries (one line naming
                the field; see :func:`workbench.validate.check_config`).
            JobError: ``workspace``, ``label``, ``experiment`` or ``trial`` is not a non-empty
                string, or ``run_id`` is not a plain run id.
        """
        from workbench.config import RunConfig, validate_config
        from workbench.validate import check_config

        if not isinstance(config, RunConfig):
            if not isinstance(config, dict):
                raise JobError(f"config: expected a RunConfig or a mapping, got {type(config).__name__}")
            config = validate_config(config)
        check_config(config)  # registries too: a bad name fails here, not later in the worker
        for name, value in (("workspace", workspace), ("label", label), ("experiment", experiment), ("trial", trial)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise JobError(f"{name}: expected a non-empty string or None, got {value!r}")
        if run_id is not None and (not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id)):
            raise JobError(f"run_id: {run_id!r} is not a run id; use letters, digits, '-', '_' and '.'")
        data = {
            "id": uuid.uuid4().hex[:8],
            "state": "queued",
            "config": config.model_dump(mode="json"),
            "workspace": workspace,
            "label": label,
            "created": now(),
            "backend": "ray" if self.ray_address else "local",
            "experiment": experiment,
            "trial": trial,
            "run_id": run_id,
        }
        with state_lock(self.root):
            raw = all_job_files(self.root)
            while any(d["id"] == data["id"] for d in raw):
                data["id"] = uuid.uuid4().hex[:8]
            data["seq"] = max((int(d.get("seq", 0)) for d in raw), default=0) + 1
            write_job_file(self.root, data)
        return self.get(data["id"])

    def stop(self, job_id: str) -> Job:
        """Stop a job from any process: a queued job is marked ``stopped`` at once; for a running
        one a stop request file is written, which its worker sees at its next step and ends the
        run as ``stopped`` (loadable). A final job is returned unchanged."""
        full = self.resolve(job_id)
        with state_lock(self.root):
            data = read_job_file(self.root, full)
            if data is None:
                raise JobError(f"job {job_id!r}: not found in {self.dir}")
            if data["state"] == "queued":
                set_state(self.root, full, "stopped", finished=now(), stop_requested=True)
            elif data["state"] == "running":
                (self.dir / f"{full}.stop").write_text(now() + "\n", encoding="utf-8")
                update_job_file(self.root, full, stop_requested=True)
        return self.get(full)

    def remove(self, job_id: str) -> str:
        """Forget a final job (its files under ``.jobs``; the run stays in the store). Returns its id.

        Raises:
            JobError: the job is still queued or running.
        """
        full = self.resolve(job_id)
        with state_lock(self.root):
            data = read_job_file(self.root, full)
            if data is not None and data["state"] not in FINAL_STATES:
                raise JobError(f"job {full}: still {data['state']}; stop it first")
            for suffix in (".json", ".stop", ".beat", ".log"):
                (self.dir / f"{full}{suffix}").unlink(missing_ok=True)
        return full

    def pump(self) -> list[Job]:
        """The scheduler's one step: mark jobs whose worker died as failed, then start queued jobs
        (round-robin by workspace) while fewer than ``max_jobs`` run. Safe to call from any number
        of threads and processes at once (a lock file serialises it; no job starts twice).

        Returns:
            The jobs started by this call.
        """
        _reap_children()
        started: list[str] = []
        with state_lock(self.root):
            for data in all_job_files(self.root):
                if data["state"] == "running":
                    why = self._dead_reason(data)
                    if why is not None:
                        self._mark_dead(data, why)
            while True:
                jobs = self._jobs()
                if sum(1 for j in jobs if j.state == "running") >= self.max_jobs:
                    break
                nxt = pick_next(jobs)
                if nxt is None:
                    break
                start_seq = max((j.start_seq or 0 for j in jobs), default=0) + 1
                self._start(nxt, start_seq)
                started.append(nxt.id)
        return [self.get(i) for i in started]

    def wait(self, job_id: str, timeout: float | None = None, *, poll: float = 0.5, pump: bool = True) -> Job:
        """Block until the job is final (pumping the queue meanwhile unless ``pump=False``).

        Raises:
            TimeoutError: still not final after ``timeout`` seconds (names the job and its state).
        """
        full = self.resolve(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if pump:
                self.pump()
            job = self.get(full)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {full}: still {job.state} after {timeout} s")
            time.sleep(poll)

    # ---- internals ----------------------------------------------------------------------------
    def _dead_reason(self, data: dict[str, Any]) -> str | None:
        """Why a running job's worker is gone, or ``None`` while it lives."""
        job_id, pid = data["id"], data.get("pid")
        if data.get("backend") == "ray":
            ref = self._refs.get(job_id)
            if ref is not None:
                why = ray_task_ended(ref)
                if why is not None:
                    self._refs.pop(job_id, None)
                return why
            if heartbeat_age(self.root, data) > self.heartbeat_timeout:
                return f"no heartbeat from the Ray task for over {self.heartbeat_timeout:.0f} s"
            return None
        if data.get("host") == socket.gethostname() and isinstance(pid, int):
            if not _child_alive(pid):
                return f"worker (pid {pid}) ended without reporting (killed or crashed)"
            if not _is_our_worker(pid, job_id):
                return f"worker (pid {pid}) is gone (the pid now belongs to another process)"
            return None
        if heartbeat_age(self.root, data) > self.heartbeat_timeout:
            return f"no heartbeat from the worker on {data.get('host')} for over {self.heartbeat_timeout:.0f} s"
        return None

    def _mark_dead(self, data: dict[str, Any], why: str) -> None:
        run_id = data.get("run_id")
        detail = "before its run was created"
        run_dir = self.root / run_id if run_id else None
        if run_dir is not None and (run_dir / "status.json").exists():
            from workbench.runs import Run, RunStoreError, RunWriter

            try:
                status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
                epochs = int(status.get("epoch") or 0)
                if status.get("status") == "running":
                    RunWriter(Run(run_id, run_dir)).update_status(
                        status="interrupted", finished=now(), error=why
                    )
                detail = f"run {run_id} keeps its {epochs} completed epoch(s)"
            except (OSError, ValueError, RunStoreError):
                detail = f"run {run_id} unreadable"
        set_state(self.root, data["id"], "failed", finished=now(), error=f"{why}; {detail}")
        clear_signals(self.root, data["id"])

    def _start(self, job: Job, start_seq: int) -> None:
        """Mark ``job`` running and start its worker (under the lock)."""
        token = uuid.uuid4().hex
        fields: dict[str, Any] = {
            "started": now(),
            "started_ts": time.time(),
            "start_seq": start_seq,
            "run_id": job.run_id or _new_run_id(job.config, job.label),
            "token": token,
            "max_jobs": self.max_jobs,
            "backend": "ray" if self.ray_address else "local",
            "pid": None,
            "host": None,
        }
        set_state(self.root, job.id, "running", **fields)
        try:
            if self.ray_address:
                self._refs[job.id] = launch_ray(
                    str(self.root.resolve()),
                    job.id,
                    token,
                    self.threads,
                    address=self.ray_address,
                    max_jobs=self.max_jobs,
                )
            else:
                pid = self._launch(job.id, token)
                update_job_file(self.root, job.id, pid=pid, host=socket.gethostname())
        except Exception as err:  # noqa: BLE001 - the job records why it could not start
            error = f"could not start: {one_line(err, typed=True)}"
            set_state(self.root, job.id, "failed", finished=now(), error=error)

    def _launch(self, job_id: str, token: str) -> int:
        """Start a detached worker process for ``job_id``; returns its pid."""
        env = dict(os.environ)
        env.update(thread_env(self.threads))
        env["WORKBENCH_RUNS"] = str(self.root.resolve())
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-m",
            "workbench.jobs.worker",
            "--root",
            str(self.root.resolve()),
            "--job",
            job_id,
            "--token",
            token,
            "--threads",
            str(self.threads),
        ]
        with open(self.dir / f"{job_id}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a rerun, Ctrl-C or exit of the caller leaves it running
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        return proc.pid


def submit_demo(queue: JobQueue, workspace: str | None = None, *, epochs: int | None = None) -> list[Job]:
    """Queue the demo pair: the ``cnn_small`` student from scratch and with KD from the shipped
    MNIST teacher (Hinton et al. 2015), as :func:`workbench.demo.demo_configs` builds them."""
    from workbench.demo import DEMO_EPOCHS, demo_configs

    configs = demo_configs(DEMO_EPOCHS if epochs is None else epochs)
    return [queue.submit(cfg, workspace=workspace, label=cfg.name) for cfg in configs]
