"""Why a run failed, kept beside the run when its own status.json cannot be written.

A run whose directory became unwritable (permissions taken away, a full disk) cannot record its
end in ``status.json``; it would read ``running`` and then ``interrupted``, with no reason. Its
writer then records the failure in the store, outside the run's directory::

    <root>/.run-failures/<run_id>.json   {"id", "status": "failed", "error", "finished",
                                          "pid", "pid_start", "host", "started"}

written atomically like every store file. :attr:`workbench.runs.Run.status` reads it for a run
whose ``status.json`` still says ``running`` and names the same process (pid, its start time, host
and start of the run): the run then reads ``failed`` with the recorded ``error``. A record of an
earlier attempt never applies to a resumed run (another process, or a new start), and resuming or
removing the run deletes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.runs.atomic import atomic_write_json

#: the folder of the store (hidden: not a run) that holds the failure records
FAILURES_DIR = ".run-failures"
#: the status fields that tie a record to the process that wrote the run's last status
_IDENTITY = ("pid", "pid_start", "host", "started")
#: the largest record read (anything bigger is not one of ours)
_MAX_BYTES = 64 * 1024


def failure_path(root: str | Path, run_id: str) -> Path:
    """The failure record of run ``run_id`` in the store at ``root``."""
    return Path(root) / FAILURES_DIR / f"{run_id}.json"


def record_failure(run_path: str | Path, status: dict[str, Any], error: str, finished: str) -> Path | None:
    """Record in the store that the run at ``run_path`` failed with ``error``.

    Args:
        run_path: the run's directory (``<root>/<run_id>``).
        status: the run's status as its writer last wrote it (its ``pid``, ``pid_start``, ``host``
            and ``started`` tie the record to that process).
        error: one line saying why (``"cannot write <run>/status.json: Permission denied"``).
        finished: when it failed (ISO-8601).

    Returns:
        The record's path, or ``None`` when it cannot be written either (the store is unwritable
        too); never raises for that.
    """
    run_path = Path(run_path)
    record = {
        "id": run_path.name,
        "status": "failed",
        "error": str(error),
        "finished": finished,
        **{k: status.get(k) for k in _IDENTITY},
    }
    path = failure_path(run_path.parent, run_path.name)
    try:
        atomic_write_json(path, record)
    except OSError:
        return None
    return path


def read_failure(run_path: str | Path, status: dict[str, Any]) -> dict[str, Any] | None:
    """The failure recorded for the run at ``run_path`` (:func:`record_failure`) when it names the
    process ``status`` (the run's status.json) names; else ``None``. Never raises: a missing,
    unreadable or malformed record is no record."""
    run_path = Path(run_path)
    path = failure_path(run_path.parent, run_path.name)
    try:
        if path.stat().st_size > _MAX_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("error"), str):
        return None
    if any(record.get(k) != status.get(k) for k in _IDENTITY):
        return None
    return {"error": record["error"], "finished": record.get("finished")}


def clear_failure(root: str | Path, run_id: str) -> None:
    """Delete run ``run_id``'s failure record, if any (a resumed or removed run)."""
    try:
        failure_path(root, run_id).unlink(missing_ok=True)
    except OSError:
        pass


def failure_ids(root: str | Path) -> list[str]:
    """The run ids that have a failure record in the store at ``root``, sorted."""
    try:
        names = [p.name for p in (Path(root) / FAILURES_DIR).iterdir()]
    except OSError:
        return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith("."))


__all__ = ["FAILURES_DIR", "clear_failure", "failure_ids", "failure_path", "read_failure", "record_failure"]
