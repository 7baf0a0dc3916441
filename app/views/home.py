"""Home / New run: start a training job (or the demo pair), and the table of runs (searchable) with
open, stop, delete, and the chosen run's tags and note. Training runs in background jobs
(``workbench.jobs``), never in this script."""

from __future__ import annotations

import streamlit as st

from app.lib import bindings as bind
from app.lib import forms, layout, live, state
from app.lib.forms import TRAIN_FIRST
from workbench.recipes import METHOD_OBJECTIVES, list_recipes
from workbench.run_form import config_from_form, data_section
from workbench.runs.datasets import list_store_datasets
from workbench.runs.labels import age, run_label, teacher_label
from workbench.runs.recipe_runs import recipe_config
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
            live.follow(jobs)  # the Training page opens them
            st.success(f"Queued {len(jobs)} demo runs; follow them on the Training page.")
            layout.page_link("views/training.py", "Open Training", params=live.watch_params(jobs))

    # ---- new run ---------------------------------------------------------------------------------------
    with layout.guard():  # a bad form value is one line; the runs table still shows
        st.subheader("New run")
        new = forms.run_form()
        form = new.form

        if st.button("Start", type="primary", key="start"):
            if new.choice == TRAIN_FIRST:
                tcfg = validate_run_config(
                    {
                        "kind": "teacher",
                        "name": f"{form.dataset}-teacher",
                        "seed": form.seed,
                        "data": data_section(form.dataset, state.get_store()),
                        "model": {"name": new.teacher_model},
                        "train": {"epochs": form.epochs},
                    }
                )
                job = queue.submit(tcfg, workspace=state.job_workspace(), label=tcfg.name)
                state.pump()
                st.success(
                    f"Queued teacher job {job.id}. When it has finished, pick it as the teacher here and start the student."
                )
            else:
                job = queue.submit(config_from_form(form, store=state.get_store()), workspace=state.job_workspace(), label=form.name)
                state.pump()
                st.success(f"Queued job {job.id} (position {job.position or 'now'}).")
            live.follow([job])
            layout.page_link("views/training.py", "Watch it on the Training page", params=live.watch_params([job]))

    # ---- the field's CIFAR pairs, with their published schedules ----------------------------------------
    with st.expander("Start from a recipe (the field's CIFAR pairs, published schedules)"), layout.guard():
        recipes = {r.name: r for r in list_recipes()}
        name = st.selectbox("Recipe", list(recipes), key="recipe",
                            format_func=lambda n: f"{n} · {recipes[n].note}")
        recipe = recipes[name]
        files = {e.name: e for e in list_store_datasets(state.get_store())
                 if e.loader == recipe.dataset and e.damage is None}
        c1, c2, c3 = st.columns(3)
        where = c1.selectbox(f"{recipe.dataset} files", [*files, "a folder on the server"], key="recipe_files",
                             help=f"A {recipe.dataset} dataset added on the Data page, or the folder of its python files.")
        root = None if where in files else c1.text_input("Folder", key="recipe_root").strip()
        kind = c2.selectbox("Run", ["teacher", "student", "distill"], key="recipe_kind",
                            format_func={"teacher": f"teacher ({recipe.teacher})", "student": "student from labels",
                                         "distill": "distilled student"}.get)
        method = c2.selectbox("Method", sorted(METHOD_OBJECTIVES), index=sorted(METHOD_OBJECTIVES).index("kd"),
                              key="recipe_method", disabled=kind != "distill")
        epochs = c3.number_input("Epochs", 1, 240, 240, key="recipe_epochs",
                                 help="240 as published; fewer scale the learning-rate milestones.")
        st.caption(f"{len(recipe.references())} published rows for this pair; a distilled student takes the latest "
                   f"{recipe.teacher} teacher run of the store. A 240-epoch CIFAR run is hours on a CPU.")
        if st.button("Queue it", key="recipe_start"):
            if where not in files and not root:
                raise state.AppInputError(f"files: choose a {recipe.dataset} dataset or type its folder")
            cfg = recipe_config(kind, name, store=state.get_store(), root=root, epochs=int(epochs), method=method,
                                dataset=where if where in files else None)
            job = queue.submit(validate_run_config(cfg), workspace=state.job_workspace(), label=f"{name} {kind}")
            state.pump()
            st.success(f"Queued job {job.id} (position {job.position or 'now'}).")
            live.follow([job])

    # ---- runs ------------------------------------------------------------------------------------------
    st.subheader("Runs")
    runs = state.list_runs()
    found = bind.search_runs(runs) if runs else []
    if not runs:
        st.caption("No runs in this workspace yet.")
    elif not found:
        st.caption("No run matches the search.")
    else:
        runs = found
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
                    "tags": s["tags"],
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
                "tags": st.column_config.ListColumn(),
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

        # ---- the chosen run's tags and note (workbench.runs.annotations; the CLI's `runs tag` / `runs note`)
        layout.notes_editor(run, f"run {run.id}")
