"""Home / New run: start a training job (or the demo pair), and the table of runs with open, stop and
delete. Training runs in background jobs (``workbench.jobs``), never in this script."""

from __future__ import annotations

import streamlit as st

from app.lib import bindings as bind
from app.lib import forms, layout, state
from app.lib.forms import NO_TEACHER, TRAIN_FIRST
from workbench.config import TEACHER_PRECISIONS
from workbench.data import list_datasets
from workbench.distill import get_method_class, list_methods
from workbench.models import list_models
from workbench.run_form import RunForm, config_from_form
from workbench.runs.labels import age, run_label, teacher_label
from workbench.runs.teachers import list_shipped_teachers
from workbench.validate import validate_run_config

with layout.page("Distillation Workbench", "Train a student from a teacher, then see what it learned."):
    queue = state.get_queue()

    # ---- a newcomer's first click -------------------------------------------------------------------
    if not state.list_runs() and not state.list_jobs():
        st.info(
            "No runs yet. The demo trains a small student from scratch and the same student distilled "
            "from the shipped MNIST teacher (two short runs, in the background)."
        )
        if st.button("Run the demo", type="primary", key="demo"):
            from workbench.jobs import submit_demo

            jobs = submit_demo(queue, workspace=state.job_workspace())
            state.pump()  # start them now, not at the next rerun
            st.success(f"Queued {len(jobs)} demo runs; follow them on the Training page.")
            layout.page_link("views/training.py", "Open Training")

    # ---- new run ---------------------------------------------------------------------------------------
    with layout.guard():  # a bad form value is one line; the runs table still shows
        st.subheader("New run")
        left, right = st.columns(2)
        datasets = [d for d in list_datasets() if not d.needs_root]
        by_name = {d.name: d for d in datasets}
        dataset = bind.bound_selectbox(
            "Dataset",
            "dataset",
            list(by_name),
            default="mnist",
            help="Datasets that need no files of your own.",
            container=left,
        )
        left.caption(by_name[dataset].description)

        teachers = [f"shipped:{c['name']}" for c in list_shipped_teachers() if c.get("dataset") == dataset]
        teacher_runs = [
            r
            for r in state.list_runs(kind="teacher", status="completed")
            if r.summary()["dataset"] == dataset
        ]
        teacher_labels = {f"run:{r.id}": run_label(r) for r in teacher_runs}
        options = teachers + list(teacher_labels) + [TRAIN_FIRST, NO_TEACHER]
        teacher = bind.bound_selectbox(
            "Teacher",
            "teacher",
            options,
            format_func=lambda o: teacher_labels.get(o, o),
            help="A shipped teacher, a teacher run of the store, or queue a teacher run first.",
            container=right,
        )
        models = list_models()
        student = bind.bound_selectbox("Student", "student", models, default="cnn_small", container=left)
        teacher_model = None
        if teacher == TRAIN_FIRST:
            teacher_model = bind.bound_selectbox(
                "Teacher model", "tmodel", models, default="cnn_large", container=right
            )

        has_teacher = teacher != NO_TEACHER
        method_choices = [m for m in list_methods() if has_teacher or not get_method_class(m).needs_teacher]
        methods = bind.bound_multiselect(
            "Methods",
            "methods",
            method_choices,
            default=["kd"] if has_teacher else ["none"],
            help="The objective is ce_weight * CE + the weighted sum of these methods.",
            container=right,
        )
        if not methods:
            methods = ["none"]
        method_specs = forms.methods_form(methods)
        precision = "float32"
        if has_teacher:
            precision = bind.bound_selectbox(
                "Teacher precision",
                "tprec",
                list(TEACHER_PRECISIONS),
                default="float32",
                help="float32 is exact. bfloat16 runs the teacher's forwards about 1.8x faster on hardware "
                "with bf16 units (the first epoch is shorter); its soft targets move by a mean KL of about 5e-6. "
                "auto picks bfloat16 only where this machine computes it natively.",
                container=right,
            )
        c1, c2, c3, c4 = st.columns(4)
        ce_weight = bind.bound_number(
            "ce_weight",
            "ce",
            1.0 if methods == ["none"] else 0.1,
            min_value=0.0,
            max_value=100.0,
            container=c1,
        )
        epochs = bind.bound_number("Epochs", "epochs", 2, min_value=1, max_value=200, container=c2)
        seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=2**31 - 1, container=c3)
        name = bind.bound_text("Name (optional)", "name", "", max_chars=40, container=c4).strip() or None
        form = RunForm(
            dataset=dataset,
            teacher=teacher if has_teacher and teacher != TRAIN_FIRST else None,
            student=student,
            methods=method_specs,
            ce_weight=float(ce_weight),
            teacher_precision=precision,
            epochs=int(epochs),
            seed=int(seed),
            name=name,
        )

        if st.button("Start", type="primary", key="start"):
            if teacher == TRAIN_FIRST:
                tcfg = validate_run_config(
                    {
                        "kind": "teacher",
                        "name": f"{dataset}-teacher",
                        "seed": int(seed),
                        "data": {"dataset": dataset},
                        "model": {"name": teacher_model},
                        "train": {"epochs": int(epochs)},
                    }
                )
                job = queue.submit(tcfg, workspace=state.job_workspace(), label=tcfg.name)
                state.pump()
                st.success(
                    f"Queued teacher job {job.id}. When it has finished, pick it as the teacher here and start the student."
                )
            else:
                job = queue.submit(config_from_form(form), workspace=state.job_workspace(), label=name)
                state.pump()
                st.success(f"Queued job {job.id} (position {job.position or 'now'}).")
            layout.page_link("views/training.py", "Watch it on the Training page")

    # ---- runs ------------------------------------------------------------------------------------------
    st.subheader("Runs")
    runs = state.list_runs()
    if not runs:
        st.caption("No runs in this workspace yet.")
    else:
        rows = []
        for r in runs:
            s = r.summary()
            rows.append(
                {
                    "run": s["name"] or r.id,
                    "status": s["status"],
                    "kind": s["kind"],
                    "dataset": s["dataset"],
                    "model": s["model"],
                    "method": s["method"],
                    "teacher": teacher_label(r),
                    "test acc": s["test_acc"],
                    "agreement": s["agreement"],
                    "epochs": s["epochs"],
                    "age": age(s["created"]),
                    "id": r.id,
                }
            )
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            column_config={
                "test acc": st.column_config.NumberColumn(format="percent"),
                "agreement": st.column_config.NumberColumn(format="percent"),
            },
        )
        by_id = {r.id: r for r in runs}
        pick = bind.bound_selectbox("Run", "run", list(by_id), format_func=lambda i: run_label(by_id[i]))
        run = by_id[pick]
        status = run.status.get("status")
        a, b, c, d = st.columns(4)
        layout.page_link(
            "views/training.py", "Open", icon=":material/monitoring:", params={"run": run.id}, container=a
        )
        jobs = [j for j in state.list_jobs(all_workspaces=True) if j.run_id == run.id and not j.done]
        if b.button("Stop", key="stop", disabled=not jobs):
            for j in jobs:
                queue.stop(j.id)
            st.toast(f"Asked run {run.id} to stop.")
        sure = c.checkbox("I am sure", key="sure", help="Deleting a run removes its files.")
        if d.button("Delete", key="delete", disabled=not sure):
            if status == "running" or jobs:
                st.error(f"run {run.id}: is running; stop it first")
            else:
                state.get_store().delete(run.id)
                st.query_params.pop("run", None)
                st.toast(f"Deleted run {run.id}.")
                st.rerun()
