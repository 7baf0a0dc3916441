"""The instructor's controls of a job queue, and what a listing derives from the run store.

:class:`QueueControls` is the part of :class:`workbench.jobs.JobQueue` that runs a class's queue:
its settings (a per-workspace cap, a pause; :mod:`workbench.jobs.settings`), how many more jobs a
workspace may queue, and the damaged job files. :func:`move_job` moves a queued job to the front or
the back of the queue.
:func:`resumed_status` says whether a final job's run was resumed after the job ended.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.jobs.settings import QueueSettings, read_settings, room_left, update_settings
from workbench.jobs.state import (
    Damaged,
    Job,
    JobError,
    all_job_files,
    read_job_file,
    read_json_file,
    scan_job_files,
    state_lock,
    update_job_file,
)

#: where :meth:`QueueControls.move` may put a queued job
MOVES = ("first", "last")


def _timestamp(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def resumed_status(root: str | Path, job: Job) -> str | None:
    """The status of ``job``'s run when the run changed after the job ended, else ``None``.

    A final job's run was resumed (``workbench train --resume``) when its ``status.json`` records a
    resume at or after the job's ``finished``, or a ``finished`` later than the job's; then the
    run's status now (``completed``, ``running``, ...) is returned, so a listing can say
    ``failed → run resumed, completed``. The job file itself is not rewritten.
    """
    if not job.done or not job.run_id or not job.finished:
        return None
    ended = _timestamp(job.finished)
    status = read_json_file(Path(root) / job.run_id / "status.json")
    if ended is None or status is None or not isinstance(status.get("status"), str):
        return None
    resumes = status.get("resumed") if isinstance(status.get("resumed"), list) else []
    marks = [_timestamp(r.get("at")) for r in resumes if isinstance(r, dict)]
    finished = _timestamp(status.get("finished"))
    later = any(m is not None and m >= ended for m in marks) or (finished is not None and finished > ended)
    return status["status"] if later else None


def move_job(root: str | Path, job_id: str, where: str) -> int:
    """Move queued job ``job_id`` (a full id) of the store at ``root`` to the front (``"first"``:
    it starts before every other queued job) or the back (``"last"``) of the queue, whatever its
    workspace's turn, by giving it a ``priority`` above (below) every other queued job's; a later
    move to the front goes before an earlier one. Returns the new priority.

    Raises:
        JobError: ``where`` is not ``first`` or ``last``; the job is gone or not queued.
    """
    if where not in MOVES:
        raise JobError(f"where: expected 'first' or 'last', got {where!r}")
    with state_lock(root):
        data = read_job_file(root, job_id)
        if data is None:
            raise JobError(f"job {job_id!r}: not found")
        if data.get("state") != "queued":
            raise JobError(f"job {job_id}: only a queued job can be moved; it is {data.get('state')}")
        queued = [d for d in all_job_files(root) if d["state"] == "queued" and d["id"] != job_id]
        others = [int(d.get("priority", 0)) for d in queued]
        priority = max([0, *others]) + 1 if where == "first" else min([0, *others]) - 1
        update_job_file(root, job_id, priority=priority)
    return priority


class QueueControls:
    """The class's settings of a queue and its damaged files: a base of
    :class:`workbench.jobs.JobQueue`, which gives ``root``."""

    root: Path

    # ---- settings -----------------------------------------------------------------------------
    def settings(self) -> QueueSettings:
        """The queue's settings: ``cap``, ``paused`` and a ``warning`` when the file is damaged."""
        return read_settings(self.root)

    def set_cap(self, cap: int | None) -> QueueSettings:
        """Let each workspace have at most ``cap`` jobs queued or running (``None``: no cap).
        Jobs already queued stay; a submit over the cap is refused. Returns the new settings.

        Raises:
            JobError: ``cap`` is not an integer >= 1 or ``None``.
        """
        return update_settings(self.root, cap=cap)

    def pause(self) -> QueueSettings:
        """Start nothing until :meth:`resume` (running jobs go on; jobs can still be queued)."""
        return update_settings(self.root, paused=True)

    def resume(self) -> QueueSettings:
        """Let the scheduler start queued jobs again after :meth:`pause`."""
        return update_settings(self.root, paused=False)

    def room(self, workspace: str | None) -> int | None:
        """How many more jobs ``workspace`` may queue now: the cap less its queued and running jobs
        (at least 0); ``None`` when there is no cap or no workspace (unlimited)."""
        if workspace is not None and (not isinstance(workspace, str) or not workspace.strip()):
            raise JobError(f"workspace: expected a non-empty string or None, got {workspace!r}")
        return room_left(all_job_files(self.root), workspace, self.settings().cap)

    # ---- damage -------------------------------------------------------------------------------
    def damaged(self) -> list[Damaged]:
        """The job files that cannot be read as jobs (truncated, not a mapping, a field missing or
        of the wrong type), by id: each names its file and the reason in one line. They are left
        out of every listing and skipped by the scheduler; :meth:`remove` removes one."""
        return scan_job_files(self.root)[1]


__all__ = ["MOVES", "QueueControls", "move_job", "resumed_status"]
