"""What the server shares between sessions, as a page sees it: the run store, the job queue, the
session's workspace (URL parameter ``workspace``) and the runs it may see, and the server's thread budget.

In class mode (``$WORKBENCH_INSTRUCTOR_TOKEN``, :mod:`workbench.workspaces`) a session is bound to the
workspace its link names and opens (``wskey``), or is the instructor (``token``); a refused session
lists nothing and may start nothing. Links to other pages carry all three (:func:`carry_params`).

Run ids from a URL or a widget are looked up among the store's ids exactly (:func:`get_run`), so no
control reaches a path outside the store. A workspace is a student's own list: it holds the runs of
that workspace's jobs; ``*`` (the instructor's view) and no workspace show every run outside class mode.

Environment: ``WORKBENCH_RUNS`` (store root, default ``./runs``), ``WORKBENCH_MAX_JOBS`` (training jobs
at once), ``WORKBENCH_RAY_ADDRESS`` (optional), ``WORKBENCH_APP_THREADS`` (torch threads of the server
process, default 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from workbench.jobs import JobQueue
from workbench.runs import Run, RunStore, default_root
from workbench.vocabulary import term
from workbench.workspaces import (
    ALL_WORKSPACES,
    Access,
    WorkspaceError,
    check_workspace,
    decide_access,
    instructor_token,
    workspace_runs,
)

WORKSPACE_PARAM = term("workspace").url or "workspace"
#: the link parameter holding a claimed workspace's key (class mode)
KEY_PARAM = "wskey"
#: the link parameter holding the instructor token (class mode)
TOKEN_PARAM = "token"


class AppInputError(ValueError):
    """A value from the URL or a widget is not acceptable; the message is one line."""


def _env_int(name: str) -> int | None:
    try:
        return max(1, int(os.environ.get(name, "").strip()))
    except ValueError:
        return None


@st.cache_resource(show_spinner=False)
def configure_threads() -> int:
    """Set torch's intra-op threads of the server process once (``$WORKBENCH_APP_THREADS``, default 2)
    and return the number; ``app/main.py`` sets the OpenMP variables before torch is imported."""
    n = _env_int("WORKBENCH_APP_THREADS") or 2
    torch.set_num_threads(n)
    return n


def store_root() -> Path:
    """The run store's root folder: ``$WORKBENCH_RUNS``, else ``./runs``."""
    return default_root()


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(root)


def get_store() -> RunStore:
    """The run store of this server (one object per root, shared by all sessions)."""
    return _store(str(store_root()))


@st.cache_resource(show_spinner=False)
def _queue(root: str, max_jobs: int | None, ray_address: str | None) -> JobQueue:
    return JobQueue(root, max_jobs=max_jobs, ray_address=ray_address)


def get_queue() -> JobQueue:
    """The job queue of this store, one per process (``$WORKBENCH_MAX_JOBS``, ``$WORKBENCH_RAY_ADDRESS``)."""
    ray_address = os.environ.get("WORKBENCH_RAY_ADDRESS", "").strip() or None
    return _queue(str(store_root()), _env_int("WORKBENCH_MAX_JOBS"), ray_address)


def pump() -> None:
    """Let the queue start waiting jobs and reap finished ones (every page calls it on each run)."""
    get_queue().pump()


def list_jobs(all_workspaces: bool = False) -> list[Any]:
    """The jobs (``workbench.jobs.Job``) of the session's workspace (none for a refused session), or of
    every workspace: for the queue's order and estimates only; a student's page shows its own."""
    acc = access()
    if all_workspaces or acc.sees_all:
        return list(get_queue().list())
    if acc.sees_nothing:
        return []
    return list(get_queue().list(workspace=acc.workspace))


def _param(name: str, kept: str) -> str | None:
    """A link parameter, else what this session kept of it (a page change may drop the query)."""
    value = st.query_params.get(name)
    return value if value is not None else st.session_state.get(kept)


def access() -> Access:
    """What this session may see and do (:func:`workbench.workspaces.decide_access`), from its link's
    ``workspace``, ``wskey`` and ``token`` and the server's instructor token. Decided once per link;
    a workspace claimed now gets its key written into the link (the student keeps that link)."""
    ws, token = _param(WORKSPACE_PARAM, "_ws"), _param(TOKEN_PARAM, "_token")
    keys = st.session_state.setdefault("_wskeys", {})
    key = st.query_params.get(KEY_PARAM) or keys.get(ws)
    try:
        server_token = instructor_token()
    except WorkspaceError as err:  # a bad token in the environment: nobody is the instructor
        return Access(None, class_mode=True, error=str(err))
    memo = (ws, key, token, server_token)
    cached = st.session_state.get("_access")
    if cached is not None and cached[0] == memo:
        return cached[1]
    acc = decide_access(store_root(), ws, key=key, token=token, instructor_token=server_token)
    if acc.new_key is not None:
        keys[acc.workspace] = key = acc.new_key
    if acc.sees_nothing:
        st.session_state.pop("_ws", None)
    else:
        for param, value, kept in ((WORKSPACE_PARAM, acc.workspace, "_ws"), (TOKEN_PARAM, token, "_token")):
            if value:
                st.session_state[kept] = value
                if st.query_params.get(param) != value:
                    st.query_params[param] = value
        if acc.class_mode and not acc.instructor and key and st.query_params.get(KEY_PARAM) != key:
            st.query_params[KEY_PARAM] = key
    st.session_state["_access"] = ((ws, key, token, server_token), acc)
    return acc


def workspace() -> str | None:
    """The session's workspace: URL parameter ``workspace`` (kept across pages), ``None`` for none,
    ``*`` for every workspace. A session refused by :func:`access` has ``None`` here and sees nothing
    (its listings are empty): the refusal is shown once per page, by :func:`app.lib.layout.page`."""
    return access().workspace


def require_instructor() -> None:
    """Stop the page with one line unless this session is the instructor (a server without a token has
    no instructor: every session may open the page)."""
    acc = access()
    if acc.class_mode and not acc.instructor:
        st.error("This page is the instructor's: open it with the instructor link.")
        st.stop()


def require_store_change(what: str) -> None:
    """Raise :class:`AppInputError` (one line) unless this session may change the whole store (``what``:
    the action, e.g. "adding a dataset"): in class mode only the instructor may."""
    if not access().may_change_store:
        raise AppInputError(f"{what}: only the instructor can change what the whole class shares")


def job_workspace() -> str | None:
    """The workspace a job started in this session belongs to (``None`` for every-workspace views).

    Raises:
        AppInputError: the session is refused (:func:`access`) and may start nothing.
    """
    acc = access()
    if acc.sees_nothing:
        raise AppInputError(acc.error or "this session may start nothing")
    return None if acc.workspace == ALL_WORKSPACES else acc.workspace


def carry_params(**params: Any) -> dict[str, str]:
    """Query parameters for a link to another page: ``params`` (``None`` dropped), the session's workspace
    (unless ``params`` names one), its key and the instructor token (each where the session has one)."""
    out = {k: str(v) for k, v in params.items() if v is not None}
    acc = access()
    if acc.workspace and WORKSPACE_PARAM not in out:  # the instructor's link into a workspace keeps it
        out[WORKSPACE_PARAM] = acc.workspace
    for param in (KEY_PARAM, TOKEN_PARAM):
        if value := st.query_params.get(param):
            out[param] = value
    return out


def sidebar() -> None:
    """The sidebar of every page: the workspace field, who this session is in class mode, and the store's
    folder (a refused session's one line is on the page, :func:`app.lib.layout.page`)."""
    with st.sidebar:
        acc = access()
        ws = acc.workspace or ""
        if st.session_state.get("_ws_synced") != ws:  # a pasted link changed the workspace: follow it
            st.session_state["_ws_input"] = st.session_state["_ws_synced"] = ws
        tip = ("Your workspace: the first session to use a name keeps it; keep this page's link to come back."
               if acc.class_mode and not acc.instructor else
               "Optional name grouping your runs (kept in the URL); '*' shows every workspace.")
        new = st.text_input("Workspace", key="_ws_input", help=tip).strip()
        if new != ws:
            try:
                check_workspace(new)
            except WorkspaceError as err:
                st.warning(str(err))
            else:
                st.session_state["_ws"] = new or None
                st.session_state["_ws_synced"] = new
                st.query_params.pop(KEY_PARAM, None)
                if new:
                    st.query_params[WORKSPACE_PARAM] = new
                else:
                    st.query_params.pop(WORKSPACE_PARAM, None)
                st.rerun()
        if acc.instructor:
            st.caption("Instructor: every workspace is open to you ('*' shows them all).")
        elif acc.class_mode:
            st.caption("Keep this page's link: it holds your workspace's key.")
        st.caption(f"Runs: `{store_root().name or store_root()}`")


def get_run(run_id: str) -> Run:
    """The run ``run_id`` of the store, matched exactly among its ids (no prefix, no path).

    Raises:
        AppInputError: the id is not a run of this store.
    """
    store = get_store()
    if not isinstance(run_id, str) or run_id not in set(store.ids()):
        raise AppInputError(f"run {str(run_id)[:60]!r}: not found in the run store")
    if not access().sees_all and run_id not in {r.id for r in list_runs()}:  # the same words: no hint
        raise AppInputError(f"run {run_id[:60]!r}: not found in the run store")
    # the store, not resolve_run: resolve_run would take a folder of that name in the working directory
    return store.load(run_id)


def list_runs(
    kind: str | Sequence[str] | None = None, status: str | Sequence[str] | None = None
) -> list[Run]:
    """The store's runs the session's workspace holds (:func:`workbench.workspaces.workspace_runs`),
    newest first, of the given kind(s) and status(es); none for a session :func:`access` refuses."""
    acc = access()
    if acc.sees_nothing:
        return []
    return workspace_runs(get_store(), acc.workspace, queue=get_queue(), kind=kind, status=status)


def list_experiments() -> list[Any]:
    """The experiments (:func:`workbench.sweep.list_experiments`) of the session's workspace, every one
    for a session that sees all, none for a refused session."""
    from workbench.sweep import list_experiments as store_experiments

    acc = access()
    if acc.sees_nothing:
        return []
    return list(store_experiments(get_store(), None if acc.sees_all else acc.workspace))
