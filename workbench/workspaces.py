"""Workspaces: a named group of runs in one store, a student's own list.

A workspace holds the runs of the jobs queued in it (``workbench.jobs.JobQueue.submit(...,
workspace=NAME)``). :data:`ALL_WORKSPACES` (``*``, the teacher view) and no workspace see every run.
Deciding what a workspace may see fails closed: a job list that cannot be read is an error, never
"every run".

    >>> check_workspace("group-3")
    'group-3'
    >>> [run.id for run in workspace_runs(store, "group-3", kind="distill")]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from workbench.runs.store import Run, RunStore

#: the teacher view: every workspace at once
ALL_WORKSPACES = "*"
#: how a workspace name is spelled (it travels in URLs and job files)
WORKSPACE_RULE = "use letters, digits, '-', '_' and '.' only (at most 64, starting with a letter or digit)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class WorkspaceError(ValueError):
    """A workspace name that is not allowed; the message is one line."""


def check_workspace(name: str | None) -> str | None:
    """``name`` when it is a workspace (or :data:`ALL_WORKSPACES`); ``None`` for ``None`` or blank.

    Raises:
        WorkspaceError: the name breaks :data:`WORKSPACE_RULE` (one line, the name shortened).
    """
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    if not isinstance(name, str) or (name != ALL_WORKSPACES and not _NAME_RE.match(name)):
        raise WorkspaceError(f"workspace {str(name)[:40]!r}: {WORKSPACE_RULE}")
    return name


def _as_set(value: str | Sequence[str] | None) -> set[str]:
    return {value} if isinstance(value, str) else set(value or ())


def workspace_runs(
    store: RunStore,
    workspace: str | None = None,
    *,
    queue: Any = None,
    kind: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
) -> list[Run]:
    """The runs of ``store`` that ``workspace`` holds, newest first.

    Args:
        store: the run store. workspace: a workspace name; ``None`` or ``*`` for every run.
        queue: the store's job queue (default: a :class:`workbench.jobs.JobQueue` on ``store.root``).
        kind: only runs of this kind (``teacher``, ``student``, ``distill``) or kinds.
        status: only runs with this status (``completed``, ``running``, ...) or statuses.

    Raises:
        WorkspaceError: the name is not allowed. JobError / OSError: the job list cannot be read.
    """
    name = check_workspace(workspace)
    allowed: set[str] | None = None
    if name not in (None, ALL_WORKSPACES):
        if queue is None:
            from workbench.jobs import JobQueue

            queue = JobQueue(store.root)
        allowed = {job.run_id for job in queue.list(workspace=name) if job.run_id}
    kinds, statuses = _as_set(kind), _as_set(status)
    out = []
    for run in reversed(store.list()):
        if allowed is not None and run.id not in allowed:
            continue
        info = run.status
        if (not kinds or info.get("kind") in kinds) and (not statuses or info.get("status") in statuses):
            out.append(run)
    return out


__all__ = ["ALL_WORKSPACES", "WORKSPACE_RULE", "WorkspaceError", "check_workspace", "workspace_runs"]
