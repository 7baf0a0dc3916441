"""Methods leaderboard: every distillation method that fits a dataset, student and teacher, trained with
N seeds as one experiment; then mean ± std per method, its gain over scratch and over KD with 95 %
intervals, best first, each row opening Compare with its runs."""

from __future__ import annotations

import streamlit as st

from app.lib import bindings as bind
from app.lib import forms, grid, layout, live, methods, state
from workbench.experiments import group_runs, metric_unit
from workbench.experiments.leaderboard import leaderboard_spec
from workbench.models import list_models
from workbench.sweep import experiment_path, experiment_status, submit_experiment
from workbench.sweep import grid as grids
from workbench.viz import leaderboard

with layout.page("Methods leaderboard", "Every method on one student and teacher, over seeds: which ones help?"):
    queue = state.get_queue()

    with layout.guard():  # a bad choice is one line; the results below still show
        left, right = st.columns(2)
        dataset = forms.dataset_choice(container=left)
        teacher = forms.teacher_choice(dataset, train_first=False, scratch=False, container=right)
        student = bind.bound_selectbox("Student", "student", list_models(), default="cnn_small", container=left)
        fit = methods.fitting_methods(dataset, student, teacher)
        chosen = bind.bound_multiselect(
            "Methods", "methods", fit, default=fit, container=right,
            help="Every method that fits (a valid config at its default parameters); scratch is always trained.",
        )
        c1, c2, c3, c4 = st.columns(4)
        epochs = bind.bound_number("Epochs", "epochs", 1, min_value=1, max_value=200, container=c1)
        seeds = grids.parse_seeds(bind.bound_text("Seeds", "seeds", "3", container=c2, help="A count or a list."))
        max_steps = bind.bound_number("Max steps", "max_steps", 0, min_value=0, max_value=10**7, container=c3,
                                      help="Stop each run after this many steps (0: no limit).")
        objective = bind.bound_selectbox(
            "Objective", "objective", ["own", "same"], container=c4,
            format_func={"own": "each method's own", "same": "the same for every method"}.get,
            help="Each method's own: the weights of the methods table (KD-family 0.1·CE + 0.9·method, feature "
                 "and relation methods 1·CE + 1·method). The same: one ce_weight and method weight for all.",
        )
        ce = weight = None
        if objective == "same":
            c5, c6 = st.columns(2)
            ce = float(bind.bound_number("ce_weight", "ce", 0.1, min_value=0.0, max_value=100.0, container=c5))
            weight = float(bind.bound_number("Method weight", "weight", 0.9, min_value=0.0, max_value=1000.0,
                                             container=c6))
        ws = state.job_workspace()  # a workspace's leaderboard is its own
        name = f"leaderboard-{dataset}-{student}-{epochs}ep" + (f"-{max_steps}steps" if max_steps else "") + (
            f"-ce{ce:g}-w{weight:g}" if objective == "same" else "") + (f"-{ws}" if ws else "")
        name = name[:80].rstrip("-.")  # an experiment's name is at most 80 characters
        spec = leaderboard_spec(
            name, dataset=dataset, student=student, teacher=teacher, epochs=int(epochs), methods=chosen,
            seeds=seeds, ce_weight=ce, weight=weight, max_steps=int(max_steps),
        )
        grids.check_size(spec)
        st.info(f"Experiment `{name}`: {grids.size_line(spec)}; {grid.estimate(spec).text()}. Starting it again "
                "trains only what is missing (more seeds, more methods).", icon=":material/calculate:")
        if st.button("Start", type="primary", key="start"):
            sub = submit_experiment(spec, queue, workspace=ws, max_hours=grids.max_hours())
            state.pump()
            live.follow(sub.jobs)
            st.success(sub.line())

        # ---- results, as soon as runs of it exist ---------------------------------------------------
        if experiment_path(state.get_store(), name).is_file():
            st.subheader("Results")
            status = experiment_status(state.get_store(), name)
            st.caption(status.summary())
            runs = [state.get_store().load(i) for i in status.run_ids("completed")]
            groups = group_runs(runs)
            if not groups:
                st.info("No run of this leaderboard has finished yet; results appear as they do.")
            else:
                metric = "test_acc"
                unit = metric_unit(metric)[0] or metric
                rows = methods.leaderboard_rows(groups, metric)
                layout.show_figure(leaderboard(
                    [{"group": r["method"], "mean": r["mean"], "std": r["std"], "n": r["n"],
                      "measure": f"{metric} ({unit}), last epoch"} for r in rows]), key="board")
                st.dataframe(
                    rows, hide_index=True, width="stretch",
                    column_config={
                        "mean": st.column_config.NumberColumn(f"mean ({unit})", format="%.2f"),
                        "std": st.column_config.NumberColumn(f"std ({unit})", format="%.2f"),
                        "vs scratch": st.column_config.TextColumn(f"vs scratch ({unit}, 95 % interval)"),
                        "vs KD": st.column_config.TextColumn(f"vs KD ({unit}, 95 % interval)"),
                        "runs": st.column_config.LinkColumn("compare", display_text="open"),
                    },
                )
            grid.show_experiment(name)
