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
import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import streamlit as st

from app.lib.state import get_queue, get_store, list_jobs, store_root
from workbench.jobs.state import Job
from workbench.runs import Run, RunStoreError
from workbench.sweep import Trial, estimate_seconds

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


def progress(run: Run, records: Sequence[dict[str, Any]]) -> tuple[int, int, float | None]:
    """``(step, total steps, steps per second)`` of ``run``: the step from its last step record
    (the status says it only at epoch ends), the rate from that record's time since training
    started (``None`` before the first record)."""
    status = run.status
    step = int(status.get("step") or 0)
    rate = None
    if records:
        last = records[-1]
        step = max(step, int(last.get("step") or 0))
        seconds = last.get("time")
        if isinstance(seconds, (int, float)) and seconds > 0 and last.get("step"):
            rate = float(last["step"]) / float(seconds)
    return step, int(status.get("total_steps") or 0), rate


def _elapsed(job: Job) -> float:
    try:
        return max(0.0, time.time() - datetime.fromisoformat(job.started or "").timestamp())
    except ValueError:
        return 0.0


def _remaining(job: Job, estimate: float) -> float:
    """Seconds a running job still needs: its run's steps left at its measured rate, else what is
    left of its estimate."""
    if job.run_id:
        try:
            run = get_store().load(job.run_id)
            step, total, rate = progress(run, run.step_metrics().records)
        except (RunStoreError, ValueError):
            step, total, rate = 0, 0, None
        if rate and total:
            return max(0.0, (total - step) / rate)
    return max(0.0, estimate - _elapsed(job))


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _job_estimates(root: str, jobs: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """Estimated seconds of each job's whole training (by id), from ``(id, config JSON)`` pairs."""
    from workbench.validate import validate_run_config

    trials = []
    for job_id, config in jobs:
        try:
            cfg = validate_run_config(json.loads(config))
        except ValueError:
            continue
        trials.append(Trial(key=job_id, params={}, seed=cfg.seed, config=cfg))
    return dict(estimate_seconds(trials, root).per_trial) if trials else {}


def queue_waits(jobs: Sequence[Job] | None = None) -> dict[str, float]:
    """Estimated seconds until each queued job starts (by job id), over every workspace's jobs.

    The queue's ``max_jobs`` slots free up as the running jobs finish (their remaining steps at
    their measured rates); each queued job, in queue order, takes the first slot to free and holds
    it for its estimated time (:func:`workbench.sweep.estimate_seconds`: measured speeds of the
    store's finished runs of the same dataset and student, else FLOPs).
    """
    jobs = list(list_jobs(all_workspaces=True) if jobs is None else jobs)
    active = [j for j in jobs if j.state in ("queued", "running")]
    if not any(j.state == "queued" for j in active):
        return {}
    pairs = tuple((j.id, json.dumps(j.config, sort_keys=True, default=str)) for j in active)
    estimates = _job_estimates(str(store_root()), pairs)
    default = sum(estimates.values()) / len(estimates) if estimates else 60.0
    slots = sorted(_remaining(j, estimates.get(j.id, default)) for j in active if j.state == "running")
    slots += [0.0] * max(0, get_queue().max_jobs - len(slots))
    waits: dict[str, float] = {}
    for job in sorted((j for j in active if j.state == "queued"), key=lambda j: j.position or math.inf):
        slots.sort()
        start = slots.pop(0)
        waits[job.id] = start
        slots.append(start + estimates.get(job.id, default))
    return waits
