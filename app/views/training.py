"""Training: a run's loss terms, accuracies and agreement as the run store records them per epoch,
refreshed every two seconds while it runs (a reload or a second tab sees the same), a stop button,
and the job queue with positions."""

from __future__ import annotations

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, state
from workbench.errors import one_line
from workbench.runs.labels import age, fmt_pct
from workbench.viz import VizError, loss_terms, training_curves

REFRESH_S = 2.0

with layout.page("Training", "Live metrics of a run, read from the run store."):
    queue = state.get_queue()
    jobs = state.list_jobs()
    running = {j.run_id for j in jobs if j.state == "running" and j.run_id}
    if "run" not in st.query_params:  # open the newest running run by default
        for r in state.list_runs():
            if r.id in running:
                st.query_params["run"] = r.id
                break
    run = bind.run_picker(analysable_first=False)  # the newest run, training or not

    if run is not None:

        @st.fragment(run_every=REFRESH_S)
        def live() -> None:
            """Everything that changes while the run trains; reruns on its own every few seconds."""
            with layout.guard("job queue"):
                state.pump()  # a finished job frees its slot: start the next queued one
            with layout.guard():
                status = run.status
                metrics = run.metrics
                run_state = status.get("status")
                total = status.get("total_steps") or 0
                step = status.get("step") or 0
                epochs_total = status.get("epochs") or run.config.train.epochs
                epoch = status.get("epoch") or 0
                c1, c2, c3, c4 = st.columns(4)
                c1.metric("Status", run_state or "?")
                c2.metric("Epoch", f"{epoch} / {epochs_total}")
                summary = metrics.get("summary", {})
                c3.metric("Test accuracy", fmt_pct(summary.get("test_acc")))
                c4.metric("Agreement", fmt_pct(summary.get("agreement")))
                if total:
                    st.progress(min(step / total, 1.0), text=f"step {step} of {total}")
                if status.get("error"):
                    st.error(f"run failed: {one_line(str(status['error']))}")
                job_ids = [
                    j.id for j in state.list_jobs(all_workspaces=True) if j.run_id == run.id and not j.done
                ]
                if job_ids and st.button("Stop this run", key="stop_run", type="secondary"):
                    for jid in job_ids:
                        queue.stop(jid)
                    st.toast("Stop requested; the run ends at its next step and stays loadable.")
                if not metrics.get("epochs"):
                    st.info("No epoch has finished yet; the curves appear after the first one.")
                    return
                layout.show_figure(
                    training_curves(metrics, title=f"Training curves · {run.id}"), key="curves"
                )
                try:
                    layout.show_figure(loss_terms(metrics), key="loss_terms")
                except VizError as err:
                    st.caption(one_line(err))
                with st.expander("Per-epoch numbers"):
                    st.dataframe(metrics["epochs"], width="stretch")

        live()

    st.subheader("Queue")
    jobs = state.list_jobs()
    if not jobs:
        st.caption("No jobs in this workspace.")
    else:
        st.dataframe(
            [
                {
                    "position": j.position,
                    "state": j.state,
                    "name": j.name,
                    "workspace": j.workspace,
                    "run": j.run_id,
                    "created": age(j.created),
                    "error": j.error,
                    "job": j.id,
                }
                for j in jobs
            ],
            hide_index=True,
            width="stretch",
        )
        waiting = [j for j in jobs if not j.done]
        if waiting:
            labels = {
                j.id: f"{j.name} · {j.state}" + (f" · position {j.position}" if j.position else "")
                for j in waiting
            }
            target = st.selectbox("Job", list(labels), format_func=labels.get, key="job_pick")
            if st.button("Stop job", key="stop_job"):
                queue.stop(target)
                st.toast(f"Stop requested for job {target}.")
