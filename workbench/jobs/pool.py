"""The warm workers' records on disk: which worker processes wait for jobs, and which job each holds.

A warm worker (:mod:`workbench.jobs.warm`) is a worker process that stays alive between jobs, with
its imports done and the shipped teachers loaded, so a job dispatched to it starts training at
once. Its record is one JSON file in the run store, replaced atomically, beside the job files::

    <runs>/.jobs/workers/
        <worker-id>.json   the worker: pid, host, state, the job it was given (id and token),
                           jobs done, thread budget, when it retires
        <worker-id>.log    the worker's own output between jobs (a job's output goes to its log)
        .lease             the pid and host of the face's scheduler that last kept the warm workers
                           (rewritten by each of its passes); an idle worker retires once it is
                           older than its idle timeout, or soon after that process ended

The scheduler (:meth:`workbench.jobs.JobQueue.pump`) hands a job to an idle worker by writing the
job's id and token into the worker's record, under the queue's lock
(:func:`~workbench.jobs.state.state_lock`);
the worker polls its record, trains the job through the same claim with the token that a cold
worker uses, and frees the record in the same locked step that records the job's outcome. A worker
retires only under the lock and only without a job, so no job is handed to a worker that is leaving.
Like :mod:`workbench.jobs.state`, this module imports neither the queue nor the worker.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from workbench.jobs.state import JobError, jobs_dir, now, read_json_file
from workbench.procs import pid_alive

WORKERS_DIR = "workers"
#: a warm worker retires after this many jobs (a fresh process frees whatever a run left behind)
RECYCLE_AFTER = 25
#: ... or once its resident memory is above this many MiB after a job
MEMORY_MARK_MB = 3072
#: an idle warm worker retires once no scheduler pass renewed the lease for this many seconds
IDLE_TIMEOUT = 600.0
#: ... or once the process that renewed it last has ended and this many seconds have passed since
OWNER_GRACE = 10.0
#: seconds between two looks of an idle warm worker at its record
POLL_EVERY = 0.05
#: the states of a warm worker: warming up (imports, teachers), waiting for a job, training one
WORKER_STATES = ("starting", "idle", "busy")

_ID_RE = re.compile(r"^w[0-9a-f]{8}$")


def workers_dir(root: str | Path) -> Path:
    """The folder holding the warm workers' records of the run store at ``root``."""
    return jobs_dir(root) / WORKERS_DIR


def new_worker_id() -> str:
    """A fresh worker id: ``w`` and 8 hex digits."""
    return "w" + uuid.uuid4().hex[:8]


def check_worker_id(worker_id: object) -> str:
    """``worker_id`` when it is a worker id (``w`` and 8 hex digits).

    Raises:
        JobError: anything else, naming the value.
    """
    if not isinstance(worker_id, str) or not _ID_RE.match(worker_id):
        raise JobError(f"worker id: expected 'w' and 8 hex digits, got {worker_id!r}")
    return worker_id


def worker_path(root: str | Path, worker_id: str) -> Path:
    """The record file of worker ``worker_id``."""
    return workers_dir(root) / f"{check_worker_id(worker_id)}.json"


def read_worker(root: str | Path, worker_id: str) -> dict[str, Any] | None:
    """The record of worker ``worker_id``, or ``None`` when it has none (retired or removed)."""
    return read_json_file(worker_path(root, worker_id))


def write_worker(root: str | Path, data: dict[str, Any]) -> None:
    """Replace one worker's record atomically (temp file + rename); call under the queue's lock."""
    from workbench.runs import atomic_write_json  # not at import: the run store brings torch

    atomic_write_json(worker_path(root, data["id"]), data)


def remove_worker(root: str | Path, worker_id: str) -> None:
    """Remove a worker's record and its log (call under the queue's lock)."""
    for suffix in (".json", ".log"):
        (workers_dir(root) / f"{check_worker_id(worker_id)}{suffix}").unlink(missing_ok=True)


def all_workers(root: str | Path) -> list[dict[str, Any]]:
    """The records of every warm worker of the store at ``root``, oldest first."""
    folder = workers_dir(root)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.json"):
        if _ID_RE.match(path.stem):
            data = read_json_file(path)
            if data is not None and data.get("id") == path.stem:
                out.append(data)
    return sorted(out, key=lambda d: (float(d.get("started_ts") or 0), d["id"]))


def new_worker_record(
    worker_id: str,
    pid: int,
    host: str,
    *,
    threads: int,
    max_jobs: int,
    recycle_after: int,
    memory_mark_mb: float,
    idle_timeout: float,
) -> dict[str, Any]:
    """The record of a worker just started (state ``starting``, no job)."""
    return {
        "id": check_worker_id(worker_id),
        "pid": int(pid),
        "host": host,
        "state": "starting",
        "job": None,
        "token": None,
        "jobs_done": 0,
        "threads": int(threads),
        "max_jobs": int(max_jobs),
        "recycle_after": int(recycle_after),
        "memory_mark_mb": float(memory_mark_mb),
        "idle_timeout": float(idle_timeout),
        "started": now(),
        "started_ts": time.time(),
        "retire": False,
    }


def renew_lease(root: str | Path) -> None:
    """Record that this process's scheduler, which keeps the warm workers, ran just now."""
    folder = workers_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lease"
    tmp = folder / f".lease.{os.getpid()}.tmp"
    try:
        tmp.write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def lease_expired(root: str | Path, idle_timeout: float) -> str | None:
    """Why an idle warm worker should leave: the lease is older than ``idle_timeout`` seconds, or
    the process that renewed it last ended (on this host) over :data:`OWNER_GRACE` seconds ago;
    ``None`` while the lease holds."""
    path = workers_dir(root) / ".lease"
    try:
        age = time.time() - path.stat().st_mtime
        pid, host = path.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return "no scheduler keeps warm workers"
    if age > idle_timeout:
        return f"no scheduler pass for {age:.0f} s"
    if age > OWNER_GRACE and host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
        return f"the scheduler (pid {pid}) ended"
    return None


def resident_mb() -> float:
    """This process's resident memory in MiB (``/proc/self/statm``; the peak from ``getrusage``
    where there is no ``/proc``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


__all__ = [
    "IDLE_TIMEOUT",
    "MEMORY_MARK_MB",
    "OWNER_GRACE",
    "POLL_EVERY",
    "RECYCLE_AFTER",
    "WORKER_STATES",
    "all_workers",
    "check_worker_id",
    "lease_expired",
    "new_worker_id",
    "new_worker_record",
    "read_worker",
    "remove_worker",
    "renew_lease",
    "resident_mb",
    "worker_path",
    "workers_dir",
    "write_worker",
]
