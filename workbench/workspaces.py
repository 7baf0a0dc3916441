"""Workspaces: a named group of runs in one store, a student's own list, and who may open it.

A workspace holds the runs of the jobs queued in it (``workbench.jobs.JobQueue.submit(...,
workspace=NAME)``). :data:`ALL_WORKSPACES` (``*``, the instructor's view) and no workspace see every run.
Deciding what a workspace may see fails closed: a job list that cannot be read is an error, never
"every run".

**Class mode.** A server started with an instructor token (``workbench app --instructor-token T`` or
``$WORKBENCH_INSTRUCTOR_TOKEN``) binds every other session to one workspace: :func:`decide_access`
says which, or refuses in one line. A workspace is *claimed* by the first session that uses its name
(:func:`claim_workspace`): that session gets a key (kept in its link) and only the key opens the
workspace again; the store keeps only the key's hash (``<runs>/.workspaces/NAME.json``). The token
opens every workspace. Without a token there is no class mode: a workspace is a view, as before.

    >>> check_workspace("group-3")
    'group-3'
    >>> [run.id for run in workspace_runs(store, "group-3", kind="distill")]
    >>> access = decide_access(store.root, "alice", key=None, token=None, instructor_token="s3cret-token")
    >>> access.workspace, access.new_key is not None
    ('alice', True)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.runs.store import Run, RunStore

#: the instructor's view: every workspace at once
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


# ---- class mode: claims, keys and the instructor token ---------------------------------------------
#: the environment variable holding the instructor token of a server in class mode
TOKEN_ENV = "WORKBENCH_INSTRUCTOR_TOKEN"
#: the folder of the run store holding the claimed workspaces (one file each: the key's hash)
CLAIMS_DIR = ".workspaces"
#: the shortest instructor token accepted
MIN_TOKEN_LENGTH = 8
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.~\-]+$")


def check_token(token: str | None) -> str | None:
    """An instructor token as given (``None`` or blank: no class mode).

    Raises:
        WorkspaceError: shorter than :data:`MIN_TOKEN_LENGTH` or with characters a link would mangle.
    """
    if token is None or not str(token).strip():
        return None
    token = str(token).strip()
    if len(token) < MIN_TOKEN_LENGTH or not _TOKEN_RE.match(token):
        raise WorkspaceError(
            f"instructor token: expected at least {MIN_TOKEN_LENGTH} characters of letters, digits, "
            "'-', '_', '.' or '~'"
        )
    return token


def instructor_token() -> str | None:
    """The server's instructor token: ``$WORKBENCH_INSTRUCTOR_TOKEN`` (``None`` when unset: no class mode).

    Raises:
        WorkspaceError: the variable holds a token :func:`check_token` refuses.
    """
    return check_token(os.environ.get(TOKEN_ENV))


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def claims_dir(root: str | Path) -> Path:
    """``<root>/.workspaces``: one file per claimed workspace."""
    return Path(root) / CLAIMS_DIR


def claimed(root: str | Path, name: str) -> bool:
    """Whether workspace ``name`` of the store at ``root`` was claimed (an unreadable claim counts as
    claimed: it opens for no key, which fails closed)."""
    return (claims_dir(root) / f"{check_workspace(name)}.json").exists()


def claim_workspace(root: str | Path, name: str) -> str:
    """Claim workspace ``name`` for the calling session and return its new key (only its SHA-256 is
    stored). The first caller wins: the claim file is created exclusively.

    Raises:
        WorkspaceError: the name is not a workspace name, is ``*``, or is claimed already.
    """
    name = check_workspace(name) or ""
    if not name or name == ALL_WORKSPACES:
        raise WorkspaceError("workspace: give your own workspace name to claim")
    folder = claims_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(12)
    record = json.dumps({"name": name, "key_sha256": _hash(key)}) + "\n"
    try:
        fd = os.open(folder / f"{name}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WorkspaceError(f"workspace {name!r}: taken by another session; choose another name") from None
    try:  # a crash here leaves an unreadable claim, which opens for nobody (fails closed)
        os.write(fd, record.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def key_opens(root: str | Path, name: str, key: str | None) -> bool:
    """Whether ``key`` opens the claimed workspace ``name`` (compared in constant time; ``False`` for
    a missing key, an unclaimed name or an unreadable claim)."""
    if not key:
        return False
    try:
        data = json.loads((claims_dir(root) / f"{check_workspace(name)}.json").read_text(encoding="utf-8"))
        stored = str(data["key_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(stored, _hash(str(key)))


def release_workspace(root: str | Path, name: str) -> bool:
    """Forget the claim on ``name`` (the instructor's way to hand a lost link's workspace out again);
    the workspace's runs and jobs stay. Returns whether there was a claim."""
    path = claims_dir(root) / f"{check_workspace(name)}.json"
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


@dataclass(frozen=True)
class Access:
    """What one session may see and do, as :func:`decide_access` decided.

    ``workspace``: the workspace it sees (``None`` or ``*``: every run; only outside class mode or for
    the instructor). ``instructor``: the session holds the instructor token. ``class_mode``: the server
    has a token. ``new_key``: a key just issued by claiming ``workspace`` (the caller keeps it in the
    session's link). ``error``: one line when the session may see nothing; ``workspace`` is then ``None``
    and :attr:`sees_nothing` is true, which every listing must honour.
    """

    workspace: str | None
    instructor: bool = False
    class_mode: bool = False
    new_key: str | None = None
    error: str | None = None

    @property
    def sees_nothing(self) -> bool:
        """Whether the session is refused (it lists no run and no job, and may start nothing)."""
        return self.error is not None

    @property
    def sees_all(self) -> bool:
        """Whether the session sees every workspace (outside class mode or as the instructor)."""
        return not self.sees_nothing and self.workspace in (None, ALL_WORKSPACES)

    @property
    def may_change_store(self) -> bool:
        """Whether store-wide actions (datasets, teachers, other workspaces) are allowed."""
        return not self.sees_nothing and (self.instructor or not self.class_mode)


def decide_access(
    root: str | Path,
    workspace: str | None,
    *,
    key: str | None,
    token: str | None,
    instructor_token: str | None,
) -> Access:
    """Decide what a session may see, failing closed: any doubt gives :attr:`Access.sees_nothing`.

    Args:
        root: the run store's root (the claims live in ``<root>/.workspaces``).
        workspace: the workspace the session asks for (from its link; ``None`` for none).
        key: the workspace key the session's link holds (``None`` for none).
        token: the instructor token the session's link holds (``None`` for none).
        instructor_token: the server's token (``None``: no class mode).

    Returns:
        Outside class mode: the asked workspace (a malformed name sees nothing). With the right token:
        the asked workspace, any or all. Otherwise a student: a claimed workspace with its key, or an
        unclaimed one, claimed now (:attr:`Access.new_key`); ``*``, no workspace, a wrong key or a wrong
        token see nothing, with one line that names no other workspace.
    """
    try:
        name = check_workspace(workspace)
    except WorkspaceError as err:
        return Access(None, class_mode=instructor_token is not None, error=f"{err}; nothing is shown")
    if instructor_token is None:
        return Access(name)
    if token:
        if hmac.compare_digest(str(token).encode("utf-8"), instructor_token.encode("utf-8")):
            return Access(name, instructor=True, class_mode=True)
        return Access(None, class_mode=True, error="instructor token: not accepted; nothing is shown")
    if name is None:
        return Access(None, class_mode=True, error="class mode: type your workspace name in the sidebar to start")
    if name == ALL_WORKSPACES:
        return Access(None, class_mode=True, error="workspace '*': only the instructor sees every workspace")
    try:
        if key_opens(root, name, key):
            return Access(name, class_mode=True)
        if claimed(root, name):
            return Access(
                None, class_mode=True,
                error=f"workspace {name!r}: taken by another session; open it with its own link or choose another name",
            )
        return Access(name, class_mode=True, new_key=claim_workspace(root, name))
    except WorkspaceError as err:  # claimed by another session a moment ago
        return Access(None, class_mode=True, error=str(err))
    except OSError as err:
        return Access(None, class_mode=True, error=f"workspace {name!r}: cannot be claimed ({err.strerror}); nothing is shown")


__all__ = [
    "ALL_WORKSPACES",
    "CLAIMS_DIR",
    "TOKEN_ENV",
    "WORKSPACE_RULE",
    "Access",
    "WorkspaceError",
    "check_token",
    "check_workspace",
    "claim_workspace",
    "claimed",
    "claims_dir",
    "decide_access",
    "instructor_token",
    "key_opens",
    "release_workspace",
    "workspace_runs",
]
