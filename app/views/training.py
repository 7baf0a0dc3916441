"""Training: the jobs you just started, followed from the queue to their last epoch. A queued job shows
its place and an estimated wait; a running one its step curves (raw and smoothed, epoch points on
them) growing while you watch, beside any other runs you pick; then the epoch curves, a stop button,
"Repeat with N seeds" and the job queue. Everything is read from the run store and refreshes by
itself (a reload or a second tab sees the same)."""

from __future__ import annotations

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, live, state
from workbench.errors import one_line
from workbench.runs.labels import age, fmt_pct, run_label
from workbench.runs.recipe_runs import published_beside
from workbench.runs.steps import logged_step_metrics
from workbench.sweep import format_seconds, repeat_with_seeds, submit_experiment
from workbench.sweep.waits import run_progress
from workbench.viz import VizError, loss_terms, training_curves

#: seconds between two looks at the runs watched (and at the jobs followed) while they are live
REFRESH_S = 1.0
#: seconds between two looks at the queue table while a job of the workspace is queued or running
QUEUE_REFRESH_S = 3.0
FINAL = ("completed", "failed", "stopped", "interrupted", "damaged")

with layout.page("Training", "Live metrics of runs, read from the run store: per step, and per epoch."):
    queue = state.get_queue()
    runs = state.list_runs()
    known = {r.id for r in runs}
    followed = live.followed_jobs()
    fresh = live.runs_to_open(followed, known)
    if fresh:  # a job this session started has its run now: open it, or watch it beside the one open
        shown = st.query_params.get("run")
        if shown not in {j.run_id for j in followed} or shown in fresh:
            shown = st.query_params["run"] = fresh[0]
        watched = [i for i in (st.query_params.get("runs") or "").split(",") if i]
        st.query_params["runs"] = ",".join(dict.fromkeys(watched + [i for i in fresh if i != shown]))
    elif "run" not in st.query_params and not followed:  # else the newest running run
        running = {j.run_id for j in state.list_jobs() if j.state == "running"}
        newest = next((r.id for r in runs if r.id in running), None)
        if newest:
            st.query_params["run"] = newest

    pending_now = [j for j in (followed if runs else state.list_jobs()) if not j.done and j.run_id not in known]

    @st.fragment(run_every=REFRESH_S if pending_now else None)
    def waiting() -> None:
        """The jobs followed (or, with no run yet, all of the workspace's) that have no run to show:
        queued with place and wait, or setting up; the page reruns once one of them has its run."""
        with layout.guard():
            jobs = live.followed_jobs() if runs else state.list_jobs()
            appeared = sorted({j.run_id for j in jobs if j.run_id and j.run_id not in known} & set(state.get_store().ids()))
            if appeared and st.session_state.get("_appeared") != appeared:
                st.session_state["_appeared"] = appeared  # once per run: never a loop of reruns
                st.rerun()  # a job's run appeared: the whole page opens it
            pending = [j for j in jobs if not j.done and j.run_id not in known]
            if not pending and not runs:
                st.info("No runs yet. Start one on the Home page.")
            times = live.queue_times() if any(j.state == "queued" for j in pending) else {}
            for job in pending:
                if job.state == "queued":
                    start, end = times.get(job.id, (None, None))
                    if job.id in times and start is None:
                        when = "waits: the instructor paused the queue"
                    elif start is None:
                        when = "starts soon"
                    else:
                        when = f"starts in about {format_seconds(start)}, ends in about {format_seconds(end or start)}"
                    st.info(f"**{job.name}** is queued, position {job.position} · {when}.", icon=":material/schedule:")
                else:
                    st.info(f"**{job.name}** is starting: worker, data and teacher…", icon=":material/hourglass_top:")

    if pending_now or not runs:
        waiting()
    run = bind.run_picker(analysable_first=False) if runs else None  # the newest run, training or not

    if run is not None:
        others = [r for r in runs if r.id != run.id][:40]
        names = {r.id: run_label(r) for r in others}
        beside = bind.bound_multiselect(
            "Watch side by side", "runs", list(names), format_func=names.get, max_selections=6,
            help="Other runs whose step curves are drawn with this one's.",
        )
        shown = [run, *(r for r in others if r.id in beside)]
        live_now = any(r.status.get("status") not in FINAL for r in shown)

        @st.fragment(run_every=REFRESH_S if live_now else None)
        def watch() -> None:
            """Everything that changes while the runs train; reruns on its own every REFRESH_S."""
            with layout.guard("job queue"):
                state.pump()  # a finished job frees its slot: start the next queued one
            with layout.guard():
                if live_now and all(r.status.get("status") in FINAL for r in shown):
                    st.rerun()  # they all ended: show the final state, then stop refreshing
                status, metrics = run.status, run.metrics
                labelled = live.run_names(shown)
                logs = {label: r.step_metrics() for label, r in labelled.items()}
                records = logs[next(iter(logs))].records
                step, total, rate = run_progress(run, records)
                run_state = status.get("status")
                epoch = status.get("epoch") or 0
                if run_state == "running" and records:
                    epoch = max(epoch, int(records[-1].get("epoch") or 0))
                c1, c2, c3, c4 = st.columns(4)
                c1.metric("Status", run_state or "?")
                c2.metric("Epoch", f"{epoch} / {status.get('epochs') or run.config.train.epochs}")
                c3.metric("Test accuracy", fmt_pct(metrics.get("summary", {}).get("test_acc")))
                c4.metric("Agreement", fmt_pct(metrics.get("summary", {}).get("agreement")))
                if run_state == "completed" and (published := published_beside(run, state.get_store())):
                    st.caption("Published top-1 accuracy of this pair, dataset and method (the run: its best "
                               "epoch, as the authors report):")
                    st.dataframe([{k: r[k] for k in ("label", "top1", "run", "difference", "citation")}
                                  for r in published], hide_index=True, width="stretch")
                if total and run_state == "running":
                    left = f" · about {format_seconds((total - step) / rate)} left" if rate else ""
                    st.progress(min(step / total, 1.0), text=f"step {step} of {total}{left}")
                if status.get("error"):
                    st.error(f"run failed: {one_line(str(status['error']))}")
                job_ids = [j.id for j in state.list_jobs(all_workspaces=True) if j.run_id == run.id and not j.done]
                if job_ids and st.button("Stop this run", key="stop_run", type="secondary"):
                    for jid in job_ids:
                        queue.stop(jid)
                    st.toast("Stop requested; the run ends at its next step and stays loadable.")
                for label, log in logs.items():
                    if log.damage:
                        st.caption(f"{label}: step log damaged ({log.damage}); its epoch metrics still load.")
                logged = logged_step_metrics([rec for log in logs.values() for rec in log.records])
                if logged:
                    left, right = st.columns([1, 2])
                    metric = bind.bound_selectbox("Step metric", "metric", logged, default="loss", container=left)
                    smoothing = bind.bound_slider(
                        "Smoothing", "smoothing", 0.6, min_value=0.0, max_value=0.99, step=0.01, container=right,
                        help="Bias-corrected exponential moving average drawn over the raw curve (0: none).",
                    )
                    layout.show_figure(live.step_figure(logs, labelled, metric, smoothing), key="steps")
                elif run_state == "running":
                    st.info("Setting up; the first step point appears within seconds.")
                if metrics.get("epochs"):
                    layout.show_figure(training_curves(metrics, title=f"Training curves · {run.id}"), key="curves")
                    try:
                        layout.show_figure(loss_terms(metrics), key="loss_terms")
                    except VizError as err:
                        st.caption(one_line(err))
                    with st.expander("Per-epoch numbers"):
                        st.dataframe(metrics["epochs"], width="stretch")

        watch()

        with st.expander("Repeat with N seeds"), layout.guard():
            n = st.number_input("Seeds", min_value=2, max_value=20, value=3, step=1, key="repeat_n")
            if st.button(f"Repeat with {n} seeds", key="repeat"):
                spec = repeat_with_seeds(run, list(range(int(n))), store=state.get_store())
                sub = submit_experiment(spec, queue, workspace=state.job_workspace())
                state.pump()
                live.follow(sub.jobs)
                st.success(sub.line())
                layout.page_link("views/experiments.py", "Open the experiment", params={"experiment": sub.name})

    def _in(seconds: float | None) -> str | None:
        return None if seconds is None else format_seconds(seconds)

    @st.fragment(run_every=QUEUE_REFRESH_S if any(not j.done for j in state.list_jobs()) else None)
    def job_queue() -> None:
        """The workspace's jobs with their place and estimated wait, and a stop button."""
        st.subheader("Queue")
        with layout.guard():
            jobs = state.list_jobs()
            if not jobs:
                st.caption("No jobs in this workspace.")
                return
            times = live.queue_times(jobs=None)
            if state.get_queue().settings().paused:
                st.info("The instructor paused the queue: queued jobs start once it resumes.", icon=":material/pause:")
            rows = [
                {
                    "position": j.position,
                    "state": j.state_text,
                    "name": j.name,
                    "starts in": _in(times.get(j.id, (None, None))[0]) if j.state == "queued" else None,
                    "ends in": _in(times.get(j.id, (None, None))[1]),
                    "workspace": j.workspace,
                    "run": j.run_id,
                    "created": age(j.created),
                    "error": j.error,
                    "job": j.id,
                }
                for j in jobs
            ]
            st.dataframe(rows, hide_index=True, width="stretch")
            active = {j.id: f"{j.name} · {j.state}" + (f" · position {j.position}" if j.position else "")
                      for j in jobs if not j.done}
            if active:
                target = st.selectbox("Job", list(active), format_func=active.get, key="job_pick")
                if st.button("Stop job", key="stop_job"):
                    queue.stop(target)
                    st.toast(f"Stop requested for job {target}.")

    job_queue()
