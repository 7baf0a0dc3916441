"""The job queue's state on disk: the job record, its files, the lock, the states and the
transitions between them.

State lives in the run store's root, one JSON file per job, each replaced atomically::

    <runs>/.jobs/
        <job-id>.json      the job: state, config, workspace, label, pid, host, run id, error
        <job-id>.stop      a stop request (any process may write it; the worker watches it)
        <job-id>.beat      the worker's heartbeat (touched every few seconds)
        <job-id>.log       the worker's stdout and stderr
        .lock              fcntl lock held around every state change
        workers/           the warm workers' records (:mod:`workbench.jobs.pool`)

States: ``queued`` -> ``running`` -> ``finished`` | ``stopped`` | ``failed``; a queued job may go
straight to ``stopped`` (:data:`TRANSITIONS`). Every change of state goes through
:func:`set_state` under :func:`state_lock`. The queue (:mod:`workbench.jobs.queue`) and the worker
(:mod:`workbench.jobs.worker`) both build on this module; it imports neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOBS_DIR = ".jobs"
#: a worker on another host (or a Ray task whose handle this process does not hold) counts as
#: dead once its heartbeat is older than this many seconds
HEARTBEAT_TIMEOUT = 60.0
#: seconds between two heartbeats of a worker
HEARTBEAT_EVERY = 5.0
#: every state a job can be in; the last three are final
JOB_STATES = ("queued", "running", "finished", "stopped", "failed")
FINAL_STATES = ("finished", "stopped", "failed")
#: the states each state may change to (a final state changes no more)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "stopped"),
    "running": FINAL_STATES,
    "finished": (),
    "stopped": (),
    "failed": (),
}
#: the files of one job besides its record, that a worker's end leaves no more use for
SIGNAL_SUFFIXES = (".stop", ".beat")

_ID_RE = re.compile(r"^[0-9a-f]{8}$")


class JobError(ValueError):
    """A job cannot be found, submitted or changed; the message names the job or the field."""


@dataclass(frozen=True)
class Job:
    """One job as its state file records it (a read-only snapshot).

    ``seq`` orders submissions; ``start_seq`` orders starts (``None`` until started);
    ``position`` is the place in the visible queue (1 = starts next) for a queued job, else
    ``None``. ``run_id`` is the run the job trains into (given at submit, or chosen when it
    starts), ``pid``/``host`` the worker process, ``error`` one line when it failed.
    ``experiment`` and ``trial`` name the experiment and the trial key of a job queued by
    :func:`workbench.sweep.submit_experiment` (``None`` for a single run; job files written before
    these fields existed load with ``None``). ``worker`` is the id of the warm worker the job was
    handed to (:mod:`workbench.jobs.pool`; ``None`` for a job that got a worker process of its own).
    """

    id: str
    state: str
    config: dict[str, Any]
    seq: int
    created: str
    workspace: str | None = None
    label: str | None = None
    backend: str = "local"
    started: str | None = None
    finished: str | None = None
    start_seq: int | None = None
    pid: int | None = None
    host: str | None = None
    run_id: str | None = None
    error: str | None = None
    stop_requested: bool = False
    experiment: str | None = None
    trial: str | None = None
    worker: str | None = None
    position: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def done(self) -> bool:
        """Whether the job reached a final state (finished, stopped or failed)."""
        return self.state in FINAL_STATES

    @property
    def name(self) -> str:
        """A short human name: the label, else the config's name, else kind and model."""
        if self.label:
            return self.label
        cfg = self.config
        return cfg.get("name") or f"{cfg.get('kind', 'student')}-{cfg.get('model', {}).get('name', '?')}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (without the internal ``extra``), ``name`` and ``done`` added."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["name"] = self.name
        out["done"] = self.done
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], position: int | None = None) -> Job:
        """Build a job from its state file's mapping; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "position"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "position"}
        return cls(**known, position=position, extra=extra)


# ---- time -------------------------------------------------------------------------------------
def now() -> str:
    """The current UTC time as the job files record it (ISO-8601, seconds)."""
    from workbench.runs import utc_now  # not at import: the run store brings torch

    return utc_now()


def heartbeat_age(root: str | Path, data: dict[str, Any]) -> float:
    """Seconds since the worker of job ``data`` last touched its heartbeat file (since the job
    started when there is none yet; infinite when it never started)."""
    beat = jobs_dir(root) / f"{data['id']}.beat"
    try:
        return time.time() - beat.stat().st_mtime
    except OSError:
        started = data.get("started_ts")
        return time.time() - float(started) if started else float("inf")


# ---- files and the lock -----------------------------------------------------------------------
def jobs_dir(root: str | Path) -> Path:
    """The folder holding the job files of the run store at ``root``."""
    return Path(root) / JOBS_DIR


@contextlib.contextmanager
def state_lock(root: str | Path) -> Iterator[None]:
    """Hold the queue's lock file (``fcntl.flock``; an exclusive-create lock file where fcntl is
    missing) so that one process at a time changes job states."""
    folder = jobs_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    path = folder / ".lock.excl"  # pragma: no cover
    deadline = time.monotonic() + 60
    while True:  # pragma: no cover
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                path.unlink(missing_ok=True)  # a holder died; take it over
            time.sleep(0.05)
    try:  # pragma: no cover
        yield
    finally:
        path.unlink(missing_ok=True)


def read_json_file(path: str | Path) -> dict[str, Any] | None:
    """The mapping a JSON file holds, or ``None`` if it is missing, unreadable or not a mapping."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_job_file(root: str | Path, job_id: str) -> dict[str, Any] | None:
    """The raw mapping of one job file, or ``None`` if it is missing or unreadable."""
    return read_json_file(jobs_dir(root) / f"{job_id}.json")


def write_job_file(root: str | Path, data: dict[str, Any]) -> None:
    """Replace one job file atomically (temp file + rename)."""
    from workbench.runs import atomic_write_json  # not at import: the run store brings torch

    atomic_write_json(jobs_dir(root) / f"{data['id']}.json", data)


def update_job_file(root: str | Path, job_id: str, **fields: Any) -> dict[str, Any] | None:
    """Read, update and rewrite one job file (call under :func:`state_lock`); ``None`` when the
    job has no file. A change of ``state`` goes through :func:`set_state` instead."""
    data = read_job_file(root, job_id)
    if data is None:
        return None
    data.update(fields)
    write_job_file(root, data)
    return data


def all_job_files(root: str | Path) -> list[dict[str, Any]]:
    """The raw mappings of every readable job file of the store at ``root`` (any order)."""
    folder = jobs_dir(root)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.json"):
        if _ID_RE.match(path.stem):
            data = read_job_file(root, path.stem)
            if data is not None and data.get("id") == path.stem:
                out.append(data)
    return out


def clear_signals(root: str | Path, job_id: str) -> None:
    """Remove a job's stop request and heartbeat files (when its worker is gone)."""
    for suffix in SIGNAL_SUFFIXES:
        (jobs_dir(root) / f"{job_id}{suffix}").unlink(missing_ok=True)


# ---- transitions ------------------------------------------------------------------------------
def set_state(root: str | Path, job_id: str, state: str, **fields: Any) -> dict[str, Any] | None:
    """Move a job to ``state`` and record ``fields`` with it (call under :func:`state_lock`).

    Returns:
        The updated record, or ``None`` when the job has no file (it was removed).

    Raises:
        JobError: ``state`` is not one the job's current state may change to (:data:`TRANSITIONS`).
    """
    data = read_job_file(root, job_id)
    if data is None:
        return None
    current = data.get("state")
    if state not in TRANSITIONS.get(current, ()):
        raise JobError(f"job {job_id}: cannot go from {current!r} to {state!r}")
    data.update(fields, state=state)
    write_job_file(root, data)
    return data


def claim_job(root: str | Path, job_id: str, token: str) -> dict[str, Any] | None:
    """The record of a job that a scheduler marked running with ``token``, with this process's
    pid and host recorded in it; ``None`` when the job is not (or no longer) that one."""
    with state_lock(root):
        data = read_job_file(root, job_id)
        if data is None or data.get("state") != "running" or data.get("token") != token:
            return None
        return update_job_file(root, job_id, pid=os.getpid(), host=socket.gethostname()) or data


def finish_job(
    root: str | Path,
    job_id: str,
    token: str,
    state: str,
    error: str | None,
    run_id: str | None,
    *,
    then: Callable[[], None] | None = None,
) -> None:
    """Record a worker's outcome: the running job started with ``token`` moves to the final
    ``state`` with ``error`` and ``run_id`` (a job stopped or failed meanwhile keeps its record),
    and its stop request and heartbeat files go. ``then()`` runs under the same lock (a warm
    worker frees its own record there, so no scheduler sees the job final and the worker busy)."""
    with state_lock(root):
        current = read_job_file(root, job_id)
        if current is not None and current.get("token") == token and current.get("state") == "running":
            set_state(root, job_id, state, finished=now(), error=error, run_id=run_id)
        clear_signals(root, job_id)
        if then is not None:
            then()
