"""The job queue: training for every face (app, widgets, CLI) runs in worker processes.

The queue's state is files in the run store (:mod:`workbench.jobs.state`: one JSON file per job
under ``<runs>/.jobs``, a lock around every change). :meth:`JobQueue.pump` is the scheduler: it
marks jobs whose worker died as failed and starts queued jobs while fewer than ``max_jobs`` run,
round-robin by workspace (:func:`~workbench.jobs.scheduling.pick_next`), each as a detached local
worker process (``python -m workbench.jobs.worker``) or a Ray task
(:mod:`workbench.jobs.ray_backend`). A :class:`~workbench.jobs.ticker.Ticker` calls it on a timer
(the app's server and ``workbench jobs worker``), faces call it now and then; it is safe to call
from many threads and processes at once, and a finishing worker calls it too, so the queue moves on
without a face. It starts nothing while the class's queue is paused, and it skips damaged job files
(:meth:`JobQueue.damaged`). Nothing is held in memory that a restart would lose.

With ``warm=True`` (the app's server and ``workbench jobs worker``) the queue keeps ``max_jobs``
warm workers (:mod:`workbench.jobs.warm`): processes that stay alive between jobs with their
imports done and the shipped teachers loaded, each taking the jobs the scheduler hands it through
its record (:mod:`workbench.jobs.pool`), so a dispatched job trains at once instead of after a
process start. A worker that dies is replaced, one that did ``recycle_after`` jobs or grew above
``memory_mark_mb`` is recycled, one left idle for ``idle_timeout`` seconds leaves.
"""

from __future__ import annotations

import dataclasses
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
from workbench.jobs.controls import QueueControls, move_job, resumed_status
from workbench.jobs.pool import (
    IDLE_TIMEOUT,
    MEMORY_MARK_MB,
    RECYCLE_AFTER,
    all_workers,
    check_worker_id,
    lease_expired,
    new_worker_id,
    new_worker_record,
    read_worker,
    remove_worker,
    renew_lease,
    workers_dir,
    write_worker,
)
from workbench.jobs.ray_backend import launch_ray, ray_task_ended
from workbench.jobs.scheduling import (
    default_max_jobs,
    pick_next,
    thread_budget,
    thread_env,
    with_positions,
)
from workbench.jobs.settings import cap_message, read_settings, room_left
from workbench.jobs.state import (
    FINAL_STATES,
    HEARTBEAT_TIMEOUT,
    RUN_ID_RE,
    Job,
    JobError,
    all_job_files,
    clear_signals,
    heartbeat_age,
    job_file_name,
    jobs_dir,
    load_job,
    now,
    scan_job_files,
    set_state,
    state_lock,
    update_job_file,
    write_job_file,
)
from workbench.procs import pid_alive

#: the environment variable that turns warm workers on for a queue that does not say (``1``/``0``)
WARM_ENV = "WORKBENCH_WARM_WORKERS"
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
    """Whether ``pid`` runs the worker of ``job_id`` (a job id, or a warm worker's id: both are on
    the worker's command line; checked through /proc where there is one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return b"workbench.jobs.worker" in cmdline and job_id.encode() in cmdline


def warm_default() -> bool:
    """Whether a queue that does not say keeps warm workers: ``$WORKBENCH_WARM_WORKERS`` is ``1``
    (or ``true``, ``yes``, ``on``); off otherwise."""
    return os.environ.get(WARM_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _worker_env(threads: int, root: Path) -> dict[str, str]:
    """The environment of a worker process: this one's, the thread budget, the store and the
    package's folder on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.update(thread_env(threads))
    env["WORKBENCH_RUNS"] = str(root.resolve())
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def _reap_children() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


# ---- the queue ---------------------------------------------------------------------------------
class JobQueue(QueueControls):
    """The background job queue of one run store.

    Its class controls (:class:`~workbench.jobs.controls.QueueControls`): :meth:`settings`,
    :meth:`set_cap`, :meth:`pause`, :meth:`resume`, :meth:`room`, :meth:`damaged`; and
    :meth:`move` puts a queued job at the front or the back.

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
        warm: keep ``max_jobs`` warm workers on this host and hand jobs to them (default
            :func:`warm_default`, from ``$WORKBENCH_WARM_WORKERS``); off with ``ray_address``.
        recycle_after: a warm worker retires after this many jobs.
        memory_mark_mb: ... or when its resident memory is above this many MiB after a job.
        idle_timeout: ... or when no scheduler pass with ``warm`` ran for this many seconds while
            it had no job (or soon after the last process that ran one ended).
        lease: whether this queue's passes keep idle warm workers alive (see
            :func:`~workbench.jobs.pool.lease_expired`); the warm workers' own passes do not.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        max_jobs: int | None = None,
        *,
        ray_address: str | None = None,
        reserve: int = 1,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        warm: bool | None = None,
        recycle_after: int = RECYCLE_AFTER,
        memory_mark_mb: float = MEMORY_MARK_MB,
        idle_timeout: float = IDLE_TIMEOUT,
        lease: bool = True,
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
        if isinstance(recycle_after, bool) or not isinstance(recycle_after, int) or recycle_after < 1:
            raise JobError(f"recycle_after: expected an integer >= 1, got {recycle_after!r}")
        for name, value in (("memory_mark_mb", memory_mark_mb), ("idle_timeout", idle_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise JobError(f"{name}: expected a positive number, got {value!r}")
        self.warm = (warm_default() if warm is None else bool(warm)) and not ray_address
        self.recycle_after = recycle_after
        self.memory_mark_mb = float(memory_mark_mb)
        self.idle_timeout = float(idle_timeout)
        self.lease = bool(lease)
        self._refs: dict[str, Any] = {}  # job id -> Ray ObjectRef of the tasks this queue started

    @property
    def dir(self) -> Path:
        """``<root>/.jobs``."""
        return jobs_dir(self.root)

    def __repr__(self) -> str:
        backend = f", ray_address={self.ray_address!r}" if self.ray_address else ""
        warm = ", warm=True" if self.warm else ""
        return f"JobQueue({str(self.root)!r}, max_jobs={self.max_jobs}{backend}{warm})"

    # ---- reading ------------------------------------------------------------------------------
    def _jobs(self) -> list[Job]:
        return [Job.from_dict(d) for d in all_job_files(self.root)]

    def _with_run_status(self, job: Job) -> Job:
        status = resumed_status(self.root, job)
        return dataclasses.replace(job, run_status=status) if status else job

    def list(self, workspace: str | None = None, *, check: bool = True) -> list[Job]:
        """The healthy jobs (of ``workspace`` only, if given; a damaged job file's job is in no
        workspace's list, see :meth:`damaged`): running first, then queued in the order they will
        start (``position`` 1, 2, ... counted over all workspaces), then final ones, newest first;
        a final job whose run was resumed since carries its run's ``run_status``.

        With ``check`` (the default), while any job runs, jobs whose worker died are marked failed
        first (:meth:`check_workers`), so the list agrees with the run store on who is alive.
        """
        if check and any(d["state"] == "running" for d in all_job_files(self.root)):
            self.check_workers()
        jobs = with_positions(self._jobs())
        if workspace is not None:
            jobs = [j for j in jobs if j.workspace == workspace]
        return [self._with_run_status(j) for j in jobs]

    def resolve(self, job_id: str, *, damaged: bool = False) -> str:
        """The full id of ``job_id`` (an exact id or a unique prefix), among the healthy jobs and,
        with ``damaged``, the damaged job files too.

        Raises:
            JobError: empty, unknown or ambiguous, naming the id; or the job's file is damaged
                (without ``damaged``), naming the file, the reason and how to remove it.
        """
        if not isinstance(job_id, str) or not job_id.strip():
            raise JobError("job id: empty; give a job id or a unique prefix (see `workbench jobs list`)")
        from workbench.runs.store import prefix_matches

        job_id = job_id.strip()
        healthy, broken = scan_job_files(self.root)
        matches = prefix_matches(job_id, sorted([d["id"] for d in healthy] + [d.id for d in broken]))
        if len(matches) > 1:
            raise JobError(f"job {job_id!r}: ambiguous, matches {', '.join(matches[:5])}")
        if not matches:
            raise JobError(f"job {job_id!r}: not found in {self.dir}")
        bad = next((d for d in broken if d.id == matches[0]), None)
        if bad is not None and not damaged:
            raise JobError(
                f"job {bad.id}: its file {job_file_name(bad.id)} is damaged: {bad.reason}; "
                f"remove it with `workbench jobs remove {bad.id}`"
            )
        return matches[0]

    def get(self, job_id: str) -> Job:
        """One job (an exact id or a unique prefix), with its queue position and ``run_status``."""
        full = self.resolve(job_id)
        for job in with_positions(self._jobs()):
            if job.id == full:
                return self._with_run_status(job)
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
        path = self.dir / f"{self.resolve(job_id, damaged=True)}.log"
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
                string, ``run_id`` is not a plain run id, or ``workspace`` already has as many
                jobs queued or running as the class's cap allows (:meth:`set_cap`, :meth:`room`).
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
        if run_id is not None and (not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id)):
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
            cap = read_settings(self.root).cap if workspace is not None else None
            if cap is not None:
                self._reap_dead()  # a job whose worker died holds no place under the cap
            raw, broken = scan_job_files(self.root)
            if room_left(raw, workspace, cap) == 0:
                active = sum(1 for d in raw if d.get("workspace") == workspace and d["state"] in ("queued", "running"))
                raise JobError(cap_message(str(workspace), active, int(cap or 0)))
            taken = {d["id"] for d in raw} | {d.id for d in broken}
            while data["id"] in taken:
                data["id"] = uuid.uuid4().hex[:8]
            data["seq"] = max((d["seq"] for d in raw), default=0) + 1
            write_job_file(self.root, data)
        return self.get(data["id"])

    def stop(self, job_id: str) -> Job:
        """Stop a job from any process: a queued job is marked ``stopped`` at once; for a running
        one a stop request file is written, which its worker sees at its next step and ends the
        run as ``stopped`` (loadable). A final job is returned unchanged."""
        full = self.resolve(job_id)
        with state_lock(self.root):
            job = load_job(self.root, full)
            if job is None:
                raise JobError(f"job {job_id!r}: not found in {self.dir}")
            if job.state == "queued":
                set_state(self.root, full, "stopped", finished=now(), stop_requested=True)
            elif job.state == "running":
                (self.dir / f"{full}.stop").write_text(now() + "\n", encoding="utf-8")
                update_job_file(self.root, full, stop_requested=True)
        return self.get(full)

    def remove(self, job_id: str) -> str:
        """Forget a final job, or a damaged job file (:meth:`damaged`): its files under ``.jobs``
        (the run stays in the store). Returns its id.

        Raises:
            JobError: the job is still queued or running.
        """
        full = self.resolve(job_id, damaged=True)
        with state_lock(self.root):
            try:
                job = load_job(self.root, full)
            except JobError:
                job = None  # damaged: its state is unknown, and it is never scheduled
            if job is not None and job.state not in FINAL_STATES:
                raise JobError(f"job {full}: still {job.state}; stop it first")
            for suffix in (".json", ".stop", ".beat", ".log"):
                (self.dir / f"{full}{suffix}").unlink(missing_ok=True)
        return full

    def move(self, job_id: str, where: str) -> Job:
        """Move a queued job (an id or a unique prefix) to the front (``"first"``: it starts before
        every other queued job) or the back (``"last"``) of the queue
        (:func:`~workbench.jobs.controls.move_job`). Returns it with its new ``position``.

        Raises:
            JobError: ``where`` is not ``first`` or ``last``; the job is unknown or not queued.
        """
        move_job(self.root, self.resolve(job_id), where)
        return self.get(job_id)

    def check_workers(self) -> list[str]:
        """The first half of :meth:`pump`, which starts nothing: mark the running jobs whose worker
        died as failed (their runs ``interrupted``, keeping the completed epochs). Returns their ids."""
        with state_lock(self.root):
            return self._reap_dead()

    def pump(self) -> list[Job]:
        """The scheduler's one step: mark jobs whose worker died as failed, then, unless the queue
        is paused (:meth:`pause`), start queued jobs (the highest priority first, then round-robin
        by workspace) while fewer than ``max_jobs`` run. Damaged job files are skipped. Safe to call
        from any number of threads and processes at once (a lock file serialises it; no job starts
        twice).

        With ``warm``, dead warm workers are forgotten first; each job started goes to a warm
        worker without a job (a ready one first), else to a new worker process that stays warm
        after it; then, while nothing waits, warm workers are started until ``max_jobs`` are
        alive, so the next job finds one ready.

        Returns:
            The jobs started by this call.
        """
        _reap_children()
        started: list[str] = []
        with state_lock(self.root):
            self._reap_dead()
            if read_settings(self.root).paused:
                return []
            free = self._free_workers() if self.warm else []
            while True:
                jobs = self._jobs()
                if sum(1 for j in jobs if j.state == "running") >= self.max_jobs:
                    break
                nxt = pick_next(jobs)
                if nxt is None:
                    break
                start_seq = max((j.start_seq or 0 for j in jobs), default=0) + 1
                self._start(nxt, start_seq, free.pop(0) if free else None)
                started.append(nxt.id)
            if self.warm:
                self._top_up()
        return [self.get(i) for i in started]

    def workers(self) -> list[dict[str, Any]]:
        """The warm workers' records (:mod:`workbench.jobs.pool`), oldest first: ``id``, ``pid``,
        ``host``, ``state`` (``starting``, ``idle``, ``busy``), ``job``, ``jobs_done``, ..."""
        return all_workers(self.root)

    def retire_workers(self) -> list[str]:
        """Ask every warm worker of this host to leave: an idle one at once, a busy one when its
        job is final (the job is not stopped). Returns their ids."""
        host, asked = socket.gethostname(), []
        with state_lock(self.root):
            for data in all_workers(self.root):
                if data.get("host") == host and not data.get("retire"):
                    data["retire"] = True
                    write_worker(self.root, data)
                    asked.append(data["id"])
        return asked

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
    def _reap_dead(self) -> list[str]:
        """Mark the running jobs whose worker is gone as failed (under the lock); their ids."""
        dead = []
        for data in all_job_files(self.root):
            if data["state"] == "running":
                why = self._dead_reason(data)
                if why is not None:
                    self._mark_dead(data, why)
                    dead.append(data["id"])
        return dead

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
            worker = data.get("worker")
            if not _child_alive(pid):
                return f"worker (pid {pid}) ended without reporting (killed or crashed)"
            if not _is_our_worker(pid, worker or job_id):
                return f"worker (pid {pid}) is gone (the pid now belongs to another process)"
            if worker and (_worker_record_of(self.root, worker) or {}).get("job") != job_id:
                return f"warm worker {worker} (pid {pid}) no longer holds the job"
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
        if data.get("worker"):  # what the warm worker said last (a crash outside the job's own output)
            self._keep_worker_output(data["id"], str(data["worker"]))

    def _keep_worker_output(self, job_id: str, worker_id: str, tail: int = 4000) -> None:
        """Append the end of warm worker ``worker_id``'s own log to job ``job_id``'s log."""
        try:
            path = workers_dir(self.root) / f"{check_worker_id(worker_id)}.log"
            text = path.read_text(encoding="utf-8", errors="replace")
        except (OSError, JobError):
            return
        if text.strip():
            with open(self.dir / f"{job_id}.log", "a", encoding="utf-8") as log:
                log.write(f"--- the end of warm worker {worker_id}'s output ---\n{text[-tail:]}")

    def _start(self, job: Job, start_seq: int, worker: dict[str, Any] | None = None) -> None:
        """Mark ``job`` running and hand it to the warm ``worker``, or start a worker for it
        (under the lock)."""
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
        if worker is not None:
            fields.update(pid=worker["pid"], host=worker["host"], worker=worker["id"], threads=self.threads)
            set_state(self.root, job.id, "running", **fields)
            write_worker(self.root, {**worker, "job": job.id, "token": token, "state": "busy"})
            return
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
                pid, host = self._launch(job.id, token), socket.gethostname()
                update_job_file(self.root, job.id, pid=pid, host=host)
                if self.warm:  # the process stays as a warm worker once this job is final
                    record = self._worker_record(_launched_worker_id(job.id), pid)
                    write_worker(self.root, {**record, "job": job.id, "token": token})
                    update_job_file(self.root, job.id, worker=record["id"], threads=self.threads)
        except Exception as err:  # noqa: BLE001 - the job records why it could not start
            error = f"could not start: {one_line(err, typed=True)}"
            set_state(self.root, job.id, "failed", finished=now(), error=error)

    def _launch(self, job_id: str, token: str) -> int:
        """Start a detached worker process for ``job_id``; returns its pid. With ``warm`` it is a
        warm worker (``--warm w<job id>``) that finds the job in its record, written by the caller."""
        if self.warm:
            return self._popen_warm(_launched_worker_id(job_id))
        env = _worker_env(self.threads, self.root)
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

    # ---- warm workers (under the lock) ----------------------------------------------------------
    def _live_workers(self) -> list[dict[str, Any]]:
        """This host's warm workers that live and were not asked to leave; the records of dead ones
        are removed (another host's pool keeps its own)."""
        host, live = socket.gethostname(), []
        for data in all_workers(self.root):
            if data.get("host") != host:
                continue
            pid = data.get("pid")
            if not isinstance(pid, int) or not _child_alive(pid) or not _is_our_worker(pid, data["id"]):
                remove_worker(self.root, data["id"])
            elif not data.get("retire"):
                live.append(data)
        return live

    def _free_workers(self) -> list[dict[str, Any]]:
        """The live warm workers without a job, ready ones first, then the oldest. (A worker frees
        its record in the locked step that records its job's outcome.)"""
        if self.lease:
            renew_lease(self.root)
        free = [d for d in self._live_workers() if not d.get("job")]
        return sorted(free, key=lambda d: (d.get("state") != "idle", float(d.get("started_ts") or 0)))

    def _top_up(self) -> None:
        """While no job waits, start warm workers until ``max_jobs`` live; ask idle ones beyond
        that to leave (a pool that grew while every worker was busy). A pass that does not keep
        the lease starts none once no face's scheduler keeps the pool."""
        if any(d["state"] == "queued" for d in all_job_files(self.root)):
            return
        if not self.lease and lease_expired(self.root, self.idle_timeout):
            return
        live = self._live_workers()
        for data in [d for d in live if not d.get("job")][: max(0, len(live) - self.max_jobs)]:
            write_worker(self.root, {**data, "retire": True})
        for _ in range(self.max_jobs - len(live)):
            worker_id = new_worker_id()
            try:
                pid = self._popen_warm(worker_id)
            except OSError as err:
                print(f"warm worker: could not start: {one_line(err, typed=True)}", file=sys.stderr)
                return
            write_worker(self.root, self._worker_record(worker_id, pid))

    def _worker_record(self, worker_id: str, pid: int) -> dict[str, Any]:
        return new_worker_record(
            worker_id,
            pid,
            socket.gethostname(),
            threads=self.threads,
            max_jobs=self.max_jobs,
            recycle_after=self.recycle_after,
            memory_mark_mb=self.memory_mark_mb,
            idle_timeout=self.idle_timeout,
        )

    def _popen_warm(self, worker_id: str) -> int:
        """Start the detached warm worker process ``worker_id`` (its record is the caller's to
        write); returns its pid."""
        folder = workers_dir(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "workbench.jobs.worker",
            "--root",
            str(self.root.resolve()),
            "--warm",
            worker_id,
            "--threads",
            str(self.threads),
        ]
        with open(folder / f"{worker_id}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_worker_env(self.threads, self.root),
                start_new_session=True,  # a rerun, Ctrl-C or exit of the caller leaves it running
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        return proc.pid


def _worker_record_of(root: Path, worker_id: object) -> dict[str, Any] | None:
    """The record of warm worker ``worker_id`` as a job file names it; ``None`` when there is none
    (or the name is not a worker id)."""
    try:
        return read_worker(root, str(worker_id))
    except JobError:
        return None


def _launched_worker_id(job_id: str) -> str:
    """The id of the warm worker started for job ``job_id``: ``w`` and the job's id."""
    return f"w{job_id}"


def submit_demo(queue: JobQueue, workspace: str | None = None, *, epochs: int | None = None) -> list[Job]:
    """Queue the demo pair: the ``cnn_small`` student from scratch and with KD from the shipped
    MNIST teacher (Hinton et al. 2015), as :func:`workbench.demo.demo_configs` builds them."""
    from workbench.demo import DEMO_EPOCHS, demo_configs

    configs = demo_configs(DEMO_EPOCHS if epochs is None else epochs)
    return [queue.submit(cfg, workspace=workspace, label=cfg.name) for cfg in configs]
