"""Class overview (the instructor's): one row per workspace — runs, jobs, last activity, best result and
the doctor's top finding on the newest student (:func:`workbench.class_overview.class_overview`) — with a
link to each workspace's Training page, then the class's queue (pause and resume it, the per-workspace
cap, stop a job, move a job to the front) and the damaged job files."""

from __future__ import annotations

import streamlit as st

from app.lib import layout, state
from workbench.class_overview import NO_WORKSPACE, class_overview, overview_table
from workbench.runs.labels import age

state.require_instructor()  # before anything of the class is drawn

#: seconds between two looks at the class while a job is queued or running
REFRESH_S = 5.0
#: the cap a cap field starts at when the queue has none
CAP_START = 4
#: workspace links per line
LINKS_PER_LINE = 6
#: session key of what the last control did, said once the page has rerun and shows it
SAID = "_class_said"

COLUMNS = {
    "test_acc (%)": st.column_config.NumberColumn("test_acc (%)", format="%.2f", help="The best run's final test accuracy."),
    "doctor": st.column_config.TextColumn(
        "doctor",
        help="The doctor's top finding on the workspace's newest completed student, from what the run recorded "
        "(no analyses); the Student doctor page examines it in full.",
    ),
}

with layout.page(
    "Class overview",
    "Every workspace of the class: what it ran, when, its best result and what the doctor sees in its newest student.",
):
    store, queue = state.get_store(), state.get_queue()
    active = any(not job.done for job in queue.list())
    if said := st.session_state.pop(SAID, None):
        st.toast(said)

    def done(text: str) -> None:
        """Rerun the page so that it shows what a control changed, then say ``text``."""
        st.session_state[SAID] = text
        st.rerun()

    @st.fragment(run_every=REFRESH_S if active else None)
    def overview() -> None:
        """The table of workspaces and the links to their Training pages."""
        with layout.guard():
            rows = class_overview(store, queue)
            if not rows:
                st.info("No workspace has queued a job yet: the class's runs appear here as they are trained.")
                return
            st.dataframe(overview_table(rows), hide_index=True, width="stretch", column_config=COLUMNS)
            named = [row.workspace for row in rows if row.workspace != NO_WORKSPACE]
            if named:
                st.caption("Open a workspace's Training page:")
            for start in range(0, len(named), LINKS_PER_LINE):
                cells = st.columns(LINKS_PER_LINE)
                for cell, name in zip(cells, named[start : start + LINKS_PER_LINE], strict=False):
                    layout.page_link(
                        "views/training.py",
                        name,
                        icon=":material/person:",
                        params={state.WORKSPACE_PARAM: name},
                        container=cell,
                    )

    @st.fragment(run_every=REFRESH_S if active else None)
    def class_queue() -> None:
        """Every workspace's jobs, the queue's pause and cap, and stop / move-first per job."""
        st.subheader("The class's queue")
        with layout.guard():
            settings = queue.settings()
            if settings.warning:
                st.warning(settings.warning)
            st.caption(f"Queue: {settings.line()}.")
            pause, cap_field, no_cap, set_cap = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
            if settings.paused:
                if pause.button("Resume the queue", key="queue_resume", icon=":material/play_arrow:"):
                    done(f"Queue: {queue.resume().line()}.")
            elif pause.button("Pause the queue", key="queue_pause", icon=":material/pause:",
                              help="Nothing new starts until you resume; running jobs go on."):
                done(f"Queue: {queue.pause().line()}.")
            cap = cap_field.number_input(
                "Jobs per workspace", min_value=1, max_value=1000, step=1, value=settings.cap or CAP_START,
                key="queue_cap", help="The most jobs one workspace may have queued or running at once.",
            )
            uncapped = no_cap.checkbox("No cap", value=settings.cap is None, key="queue_no_cap")
            if set_cap.button("Set the cap", key="queue_set_cap"):
                done(f"Queue: {queue.set_cap(None if uncapped else int(cap)).line()}.")
            jobs = queue.list()
            if not jobs:
                st.caption("No jobs in the queue.")
                return
            st.dataframe(
                [
                    {
                        "position": j.position,
                        "state": j.state_text,
                        "workspace": j.workspace or NO_WORKSPACE,
                        "name": j.name,
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
            job_controls([j for j in jobs if not j.done])

    def job_controls(jobs: list) -> None:
        """Stop a queued or running job, or move a queued one to the front of the queue."""
        if not jobs:
            return
        labels = {
            j.id: f"{j.workspace or NO_WORKSPACE} · {j.name} · {j.state}"
            + (f" · position {j.position}" if j.position else "")
            for j in jobs
        }
        pick, stop, first = st.columns([3, 1, 1], vertical_alignment="bottom")
        target = pick.selectbox("Job", list(labels), format_func=labels.get, key="class_job_pick")
        if stop.button("Stop job", key="class_stop_job", icon=":material/stop:"):
            stopped = queue.stop(target)
            done(f"Job {target} stopped." if stopped.state == "stopped" else f"Stop requested for job {target}.")
        queued = next(j.state == "queued" for j in jobs if j.id == target)
        if first.button("Move first", key="class_move_first", icon=":material/vertical_align_top:",
                        disabled=not queued, help="Start this queued job next, before every workspace's turn."):
            queue.move(target, "first")
            done(f"Job {target} starts next.")

    def damaged_files() -> None:
        """The job files that cannot be read as jobs, each with its reason, and a way to remove one."""
        with layout.guard():
            damaged = queue.damaged()
            if not damaged:
                return
            st.subheader("Damaged job files")
            st.caption("Skipped by the scheduler and shown in no workspace; remove one once you have read it.")
            st.dataframe([d.to_dict() for d in damaged], hide_index=True, width="stretch")
            ids = [d.id for d in damaged]
            pick, remove = st.columns([3, 1], vertical_alignment="bottom")
            target = pick.selectbox("Damaged file", ids, key="class_damaged_pick")
            if remove.button("Remove the file", key="class_remove_damaged", icon=":material/delete:"):
                queue.remove(target)
                done(f"Removed the damaged job file {target}.")

    overview()
    class_queue()
    damaged_files()
