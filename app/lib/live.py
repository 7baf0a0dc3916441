"""What the Training page follows: the jobs this session submitted, how long a queued one will wait,
and how far a running one has come between two epochs (its step log).

A page that queues jobs calls :func:`follow` and links to Training with :func:`watch_params`; the
Training page reads them back with :func:`followed_jobs` (the URL's ``job`` first, then the session's),
opens each job's run once it exists (:func:`runs_to_open`), and says a queued job's place and wait
(:func:`queue_waits`: the running jobs' remaining steps at their measured rates, then the queued ones
ahead, each costed by :func:`workbench.sweep.estimate_seconds` from the store's finished runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import streamlit as st

from app.lib.state import get_queue, get_store, list_jobs, store_root
from workbench.jobs.state import Job
from workbench.runs import Run, RunStoreError
from workbench.sweep import waits
from workbench.sweep.waits import job_estimates

#: the URL parameter naming the jobs a link asks the Training page to follow (comma-separated ids)
JOB_PARAM = "job"
_FOLLOWED = "_followed_jobs"
_OPENED = "_opened_jobs"
#: how many followed job ids a session keeps
_KEEP = 20


def follow(jobs: Iterable[Job]) -> None:
    """Remember ``jobs`` (just submitted) as the ones the Training page opens next, newest first."""
    ids = [j.id for j in jobs]
    kept = [i for i in st.session_state.get(_FOLLOWED, []) if i not in ids]
    st.session_state[_FOLLOWED] = (ids + kept)[:_KEEP]


def watch_params(jobs: Iterable[Job]) -> dict[str, str]:
    """The Training page's URL parameters that follow ``jobs`` (``job=<id>,<id>``)."""
    return {JOB_PARAM: ",".join(j.id for j in jobs)}


def followed_jobs() -> list[Job]:
    """The jobs the page follows: those of the URL's ``job`` when it names any of this workspace's
    jobs, else those this session submitted (:func:`follow`); unknown ids are left out."""
    by_id = {j.id: j for j in list_jobs()}
    raw = st.query_params.get(JOB_PARAM)
    wanted = [i for i in (raw or "").split(",") if i in by_id]
    if not wanted:
        wanted = [i for i in st.session_state.get(_FOLLOWED, []) if i in by_id]
    return [by_id[i] for i in wanted]


def runs_to_open(jobs: Sequence[Job], known: Iterable[str]) -> list[str]:
    """The run ids of followed ``jobs`` whose run is in ``known`` (the runs the page can show) since
    the page last looked: each one is opened once, so the person's own choice of run is never
    overridden later."""
    opened = st.session_state.setdefault(_OPENED, [])
    known = set(known)
    fresh = [j.run_id for j in jobs if j.run_id in known and j.run_id not in opened]
    opened.extend(fresh)
    return fresh


def run_names(runs: Iterable[Run]) -> dict[str, Run]:
    """``{short label: run}``: each run's name (else its id), with the id's last four characters
    added where two runs share a name."""
    out: dict[str, Run] = {}
    for run in runs:
        label = str(run.status.get("name") or run.id)
        if label in out:
            label = f"{label} ({run.id[-4:]})"
        out[label] = run
    return out


# ---- how far a run has come ---------------------------------------------------------------------


def step_figure(
    logs: dict[str, Any], runs: dict[str, Run], metric: str, smoothing: float
) -> Any:
    """The step curves of ``metric`` (:func:`workbench.viz.training.step_curves`): each run's raw
    curve, its bias-corrected EMA (:func:`workbench.experiments.ema`, weight ``smoothing``; none at 0)
    and its epoch values as points. ``logs`` and ``runs`` are keyed by the same labels."""
    from workbench.experiments import ema
    from workbench.viz.training import step_curves, step_series

    smoothed = {}
    if smoothing > 0:
        for label, log in logs.items():
            smoothed[label] = ema(step_series(log, metric)[1], smoothing)
    epochs = {}
    for label, run in runs.items():
        try:
            epochs[label] = list(run.metrics.get("epochs") or [])
        except RunStoreError:  # a damaged metrics file: the step curve alone
            continue
    return step_curves(logs, metric, smoothed=smoothed, epochs=epochs, title=f"{metric} by step")


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _job_estimates(root: str, jobs: tuple[tuple[str, str], ...]) -> dict[str, float]:
    return job_estimates([(job_id, json.loads(config)) for job_id, config in jobs], root)


def queue_times(jobs: Sequence[Job] | None = None) -> dict[str, tuple[float | None, float | None]]:
    """Estimated ``(start, finish)`` in seconds from now of each queued and running job (by job id), over
    every workspace's jobs (:func:`workbench.sweep.waits.queue_times`: ``(None, None)`` for a queued job
    while the queue is paused; the estimates cached half a minute)."""
    jobs = list(list_jobs(all_workspaces=True) if jobs is None else jobs)
    active = [j for j in jobs if j.state in ("queued", "running")]
    if not active:
        return {}
    pairs = tuple((j.id, json.dumps(j.config, sort_keys=True, default=str)) for j in active)
    estimates = _job_estimates(str(store_root()), pairs)
    return waits.queue_times(jobs, get_store(), get_queue().max_jobs, estimates=estimates)


def queue_waits(jobs: Sequence[Job] | None = None) -> dict[str, float]:
    """Estimated seconds until each queued job starts (by job id), from :func:`queue_times` (a job of a
    paused queue has none)."""
    jobs = list(list_jobs(all_workspaces=True) if jobs is None else jobs)
    queued = {j.id for j in jobs if j.state == "queued"}
    return {i: start for i, (start, _) in queue_times(jobs).items() if i in queued and start is not None}
