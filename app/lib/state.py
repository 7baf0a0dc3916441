"""What the server shares between sessions, as a page sees it: the run store, the job queue, the
session's workspace (URL parameter ``workspace``) and the runs it may see, and the server's thread budget.

Run ids from a URL or a widget are looked up among the store's ids exactly (:func:`get_run`), so no
control reaches a path outside the store. A workspace is a student's own list: it holds the runs of
that workspace's jobs; ``*`` (the teacher view) and no workspace show every run.

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
from workbench.workspaces import ALL_WORKSPACES, WorkspaceError, check_workspace, workspace_runs

WORKSPACE_PARAM = term("workspace").url or "workspace"


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
    """The jobs (``workbench.jobs.Job``) of the session's workspace, or of every workspace."""
    ws = workspace()
    if all_workspaces or ws in (None, ALL_WORKSPACES):
        return list(get_queue().list())
    return list(get_queue().list(workspace=ws))


def workspace() -> str | None:
    """The session's workspace: URL parameter ``workspace`` (kept across pages), ``None`` for none,
    ``*`` for every workspace. A malformed name shows a warning and counts as none."""
    raw = st.query_params.get(WORKSPACE_PARAM)
    try:
        raw = check_workspace(raw if raw is not None else st.session_state.get("_ws"))
    except WorkspaceError as err:
        st.warning(f"{err}; showing all runs")
        st.query_params.pop(WORKSPACE_PARAM, None)
        st.session_state.pop("_ws", None)
        return None
    if raw is None:
        return None
    st.session_state["_ws"] = raw
    if st.query_params.get(WORKSPACE_PARAM) != raw:
        st.query_params[WORKSPACE_PARAM] = raw
    return raw


def job_workspace() -> str | None:
    """The workspace a job started in this session belongs to (``None`` in the teacher view)."""
    ws = workspace()
    return None if ws == ALL_WORKSPACES else ws


def carry_params(**params: Any) -> dict[str, str]:
    """Query parameters for a link to another page: ``params`` (``None`` dropped) and the workspace."""
    out = {k: str(v) for k, v in params.items() if v is not None}
    ws = workspace()
    if ws:
        out[WORKSPACE_PARAM] = ws
    return out


def sidebar() -> None:
    """The sidebar of every page: the workspace field and the store's folder."""
    with st.sidebar:
        ws = workspace() or ""
        if st.session_state.get("_ws_synced") != ws:  # a pasted link changed the workspace: follow it
            st.session_state["_ws_input"] = st.session_state["_ws_synced"] = ws
        new = st.text_input(
            "Workspace",
            key="_ws_input",
            help="Optional name grouping your runs (kept in the URL); '*' shows every workspace.",
        ).strip()
        if new != ws:
            try:
                check_workspace(new)
            except WorkspaceError as err:
                st.warning(str(err))
            else:
                st.session_state["_ws"] = new or None
                st.session_state["_ws_synced"] = new
                if new:
                    st.query_params[WORKSPACE_PARAM] = new
                else:
                    st.query_params.pop(WORKSPACE_PARAM, None)
                st.rerun()
        st.caption(f"Runs: `{store_root().name or store_root()}`")


def get_run(run_id: str) -> Run:
    """The run ``run_id`` of the store, matched exactly among its ids (no prefix, no path).

    Raises:
        AppInputError: the id is not a run of this store.
    """
    store = get_store()
    if not isinstance(run_id, str) or run_id not in set(store.ids()):
        raise AppInputError(f"run {str(run_id)[:60]!r}: not found in the run store")
    # the store, not resolve_run: resolve_run would take a folder of that name in the working directory
    return store.load(run_id)


def list_runs(
    kind: str | Sequence[str] | None = None, status: str | Sequence[str] | None = None
) -> list[Run]:
    """The store's runs the session's workspace holds (:func:`workbench.workspaces.workspace_runs`),
    newest first, of the given kind(s) and status(es)."""
    return workspace_runs(get_store(), workspace(), queue=get_queue(), kind=kind, status=status)
