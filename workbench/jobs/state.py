"""The job queue's state on disk: the job record, its files, the lock, the states and the
transitions between them.

State lives in the run store's root, one JSON file per job, each replaced atomically::

    <runs>/.jobs/
        <job-id>.json      the job: state, config, workspace, label, pid, host, run id, error
        <job-id>.stop      a stop request (any process may write it; the worker watches it)
        <job-id>.beat      the worker's heartbeat (touched every few seconds)
        <job-id>.log       the worker's stdout and stderr
        .lock              fcntl lock held around every state change
        settings.json      the class's queue settings: cap, paused (:mod:`workbench.jobs.settings`)
        workers/           the warm workers' records (:mod:`workbench.jobs.pool`)

States: ``queued`` -> ``running`` -> ``finished`` | ``stopped`` | ``failed``; a queued job may go
straight to ``stopped`` (:data:`TRANSITIONS`). Every change of state goes through
:func:`set_state` under :func:`state_lock`. The queue (:mod:`workbench.jobs.queue`) and the worker
(:mod:`workbench.jobs.worker`) both build on this module; it imports neither.

A job file is read through one check (:func:`job_problem`): every required field present, every
field of the right type. A file that fails it (truncated, not a mapping, a field missing or of the
wrong type) is *damaged*: :func:`scan_job_files` returns it as a :class:`Damaged` entry naming the
file and the reason, apart from the healthy records, so that no listing, workspace filter or
scheduler pass ever reads it as a job.
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
#: a run id (the run store's own rule: a plain name, no path)
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
#: the fields every job file must have
REQUIRED_FIELDS = ("id", "state", "config", "seq", "created")


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
    ``priority`` orders the queue before its turns between workspaces: a queued job with a higher
    one starts first (0 unless the instructor moved it: to the front above every other, to the
    back below; :meth:`workbench.jobs.JobQueue.move`). ``run_status`` is derived when listing, not
    stored: the status of the job's run when the run changed after the job ended (it was resumed,
    e.g. ``completed``), else ``None``.
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
    priority: int = 0
    position: int | None = None
    run_status: str | None = None
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
        model = cfg.get("model")
        model_name = model.get("name", "?") if isinstance(model, dict) else "?"
        return cfg.get("name") or f"{cfg.get('kind', 'student')}-{model_name}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (without the internal ``extra``), ``name`` and ``done`` added."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["name"] = self.name
        out["done"] = self.done
        return out

    @property
    def state_text(self) -> str:
        """The state as listings show it: ``failed → run resumed, completed`` for a job whose run
        was resumed after it ended, else the state."""
        return f"{self.state} → run resumed, {self.run_status}" if self.run_status else self.state

    @classmethod
    def from_dict(cls, data: Any, position: int | None = None, *, source: str | None = None) -> Job:
        """Build a job from its state file's mapping; unknown keys go to ``extra`` (the derived
        ``position`` and ``run_status`` are not read from it).

        Args:
            data: the mapping a job file holds.
            position: the job's place in the queue, if known.
            source: what the mapping came from, to name in an error (default ``job record``).

        Raises:
            JobError: a required field is missing or a field has the wrong type
                (:func:`job_problem`), naming ``source`` and the field.
        """
        problem = job_problem(data)
        if problem is not None:
            raise JobError(f"{source or 'job record'}: {problem}")
        derived = {"extra", "position", "run_status"}
        names = {f.name for f in dataclasses.fields(cls)} - derived
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in derived}
        return cls(**known, position=position, extra=extra)


@dataclass(frozen=True)
class Damaged:
    """A job file that cannot be read as a job: ``id`` is the file's stem, ``path`` the file,
    ``reason`` one line (not valid JSON, not a mapping, a field missing or of the wrong type).
    Its job's workspace is unknown, so no workspace's listing shows it; the scheduler skips it;
    :meth:`workbench.jobs.JobQueue.remove` removes it."""

    id: str
    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        """``id``, ``path`` (as text) and ``reason``."""
        return {"id": self.id, "path": str(self.path), "reason": self.reason}


# ---- the check of a job record ----------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


#: each known field of a job file: the test of its value and what it expects, in words
FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "id": (lambda v: isinstance(v, str) and bool(_ID_RE.match(v)), "8 hex digits"),
    "state": (lambda v: isinstance(v, str) and v in JOB_STATES, f"one of {', '.join(JOB_STATES)}"),
    "config": (lambda v: isinstance(v, dict), "a mapping"),
    "seq": (_is_int, "an integer"),
    "created": (_text, "a string"),
    "workspace": (_or_none(lambda v: isinstance(v, str) and bool(v.strip())), "a non-empty string or null"),
    "label": (_or_none(_text), "a string or null"),
    "backend": (lambda v: v in ("local", "ray"), "'local' or 'ray'"),
    "started": (_or_none(_text), "a string or null"),
    "finished": (_or_none(_text), "a string or null"),
    "start_seq": (_or_none(_is_int), "an integer or null"),
    "pid": (_or_none(_is_int), "an integer or null"),
    "host": (_or_none(_text), "a string or null"),
    "run_id": (_or_none(lambda v: isinstance(v, str) and bool(RUN_ID_RE.fullmatch(v))), "a run id or null"),
    "error": (_or_none(_text), "a string or null"),
    "stop_requested": (lambda v: isinstance(v, bool), "true or false"),
    "experiment": (_or_none(_text), "a string or null"),
    "trial": (_or_none(_text), "a string or null"),
    "worker": (_or_none(_text), "a string or null"),
    "priority": (_is_int, "an integer"),
    "started_ts": (_or_none(_is_number), "a number or null"),
    "token": (_or_none(_text), "a string or null"),
    "max_jobs": (_or_none(lambda v: _is_int(v) and v >= 1), "an integer >= 1 or null"),
    "threads": (_or_none(lambda v: _is_int(v) and v >= 1), "an integer >= 1 or null"),
}


def job_problem(data: Any, stem: str | None = None) -> str | None:
    """What makes ``data`` not a job record, in one line, or ``None`` when it is one.

    Every field of :data:`REQUIRED_FIELDS` must be present and every known field
    (:data:`FIELD_RULES`) of its type: ``id`` 8 hex digits (the file's ``stem`` when given),
    ``state`` one of :data:`JOB_STATES`, ``config`` a mapping, ``seq`` an integer, ``created`` a
    string, ``workspace`` a non-empty string or null, ``run_id`` a plain run id or null, ...
    Unknown fields are allowed (they go to :attr:`Job.extra`).
    """
    if not isinstance(data, dict):
        return f"expected a JSON mapping, got {_kind(data)}"
    for name in REQUIRED_FIELDS:
        if name not in data:
            return f"missing field {name!r}"
    for name, (check, expected) in FIELD_RULES.items():
        if name in data and not check(data[name]):
            return f"field {name!r}: expected {expected}, got {_shown(data[name])}"
    if stem is not None and data["id"] != stem:
        return f"field 'id': {data['id']!r} does not match the file's name {stem!r}"
    return None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if _is_number(value) else type(value).__name__
    )


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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


def job_file_name(job_id: str) -> str:
    """A job file's name as messages show it, relative to the run store: ``.jobs/<id>.json``."""
    return f"{JOBS_DIR}/{job_id}.json"


def _read_checked(path: Path) -> dict[str, Any] | Damaged | None:
    """The healthy record job file ``path`` holds, a :class:`Damaged` entry for it, or ``None``
    when it is gone (removed meanwhile)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        return Damaged(path.stem, path, f"unreadable: {type(err).__name__}: {str(err).splitlines()[0]}"[:200])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        what = "empty" if not text.strip() else f"not valid JSON (truncated?): {err.msg} at line {err.lineno}"
        return Damaged(path.stem, path, what)
    problem = job_problem(data, path.stem)
    return Damaged(path.stem, path, problem) if problem is not None else data


def scan_job_files(root: str | Path) -> tuple[list[dict[str, Any]], list[Damaged]]:
    """Every job file of the store at ``root``, read through :func:`job_problem`: the healthy
    records (any order) and the damaged files (by id). A file removed while it is read is in
    neither."""
    folder = jobs_dir(root)
    if not folder.is_dir():
        return [], []
    healthy: list[dict[str, Any]] = []
    damaged: list[Damaged] = []
    for path in folder.glob("*.json"):
        if not _ID_RE.match(path.stem):
            continue
        got = _read_checked(path)
        if isinstance(got, Damaged):
            damaged.append(got)
        elif got is not None:
            healthy.append(got)
    return healthy, sorted(damaged, key=lambda d: d.id)


def all_job_files(root: str | Path) -> list[dict[str, Any]]:
    """The records of every healthy job file of the store at ``root`` (any order); damaged files
    are left out (:func:`scan_job_files` lists them)."""
    return scan_job_files(root)[0]


def load_job(root: str | Path, job_id: str, position: int | None = None) -> Job | None:
    """The job of file ``.jobs/<job_id>.json``, or ``None`` when there is no such file.

    Raises:
        JobError: the file is damaged, naming the file and the reason (e.g. the field).
    """
    got = _read_checked(jobs_dir(root) / f"{job_id}.json")
    if got is None:
        return None
    if isinstance(got, Damaged):
        raise JobError(f"job file {job_file_name(job_id)}: {got.reason}")
    return Job.from_dict(got, position, source=f"job file {job_file_name(job_id)}")


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
