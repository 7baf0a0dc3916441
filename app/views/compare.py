"""Compare runs: the runs of an experiment (or picked by hand) grouped by their setting, everything but
the seed; per group mean ± std curves over epochs and steps, a table of mean, std, min, max and n of
each run's last or best epoch, paired differences against a baseline group with their 95 % interval
in words, the parameters against the metric, and the groups as CSV or JSON. Each chosen run is read
on its own: a damaged one is left out with one line naming it and why, the rest compared as usual."""

from __future__ import annotations

import json

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, state
from workbench.experiments import (
    baseline_comparison,
    epoch_bands,
    group_runs,
    group_table,
    groups_csv,
    groups_json,
    metric_direction,
    run_table,
    step_bands,
)
from workbench.runs import logged_metrics, readable_runs
from workbench.runs.labels import run_label
from workbench.runs.steps import logged_step_metrics
from workbench.sweep import experiment_status
from workbench.viz import group_curves, parallel_coordinates, parameter_scatter

BY_HAND = "(pick runs)"
WHICH = {"last": "last epoch", "best": "best epoch"}

with layout.page("Compare runs", "Runs grouped by setting over their seeds: mean ± std, and differences you can trust."):
    runs = state.list_runs()
    if not runs:
        st.info("No runs yet. Start one on the Home page.")
        st.stop()
    by_id = {r.id: r for r in runs}

    # ---- which runs: an experiment's, or picked by hand ------------------------------------------
    experiments = [e.name for e in state.list_experiments()]
    experiment = bind.bound_selectbox("Experiment", "experiment", [BY_HAND, *experiments]) if experiments else BY_HAND
    if experiment != BY_HAND:
        trial_runs = [t.run_id for t in experiment_status(state.get_store(), experiment).trials if t.run_id]
        picked = [by_id[i] for i in dict.fromkeys(trial_runs) if i in by_id]
    else:
        found = [r.id for r in bind.search_runs(runs, param="runs", label="Filter runs")]
        current = [i for i in (st.query_params.get("runs") or "").split(",") if i in by_id]  # kept by a search
        default = [i for i in found if by_id[i].status.get("status") == "completed"][:4]
        chosen = bind.bound_multiselect(
            "Runs", "runs", list(dict.fromkeys(found + current)), default=default,
            format_func=lambda i: run_label(by_id[i]), max_selections=60,
        )
        picked = [by_id[i] for i in chosen]
    if not picked:
        st.info("Pick at least one run." if experiment == BY_HAND else "No run of this experiment has started yet.")
        st.stop()
    picked, damaged = readable_runs(picked)  # each run read on its own: a damaged one is left out, the rest shown
    for run_id, why in damaged:
        st.caption(f"run {run_id}: skipped ({why}).")
    if not picked:
        st.info("None of these runs can be read; pick others.")
        st.stop()

    groups = group_runs(picked)  # finished runs, by everything but the seed
    unfinished = [why.split(":")[0] for _, why in groups.skipped if why.endswith(": not finished")]
    if unfinished:
        counts = ", ".join(f"{unfinished.count(s)} {s}" for s in dict.fromkeys(unfinished))
        st.caption(f"Left out, not finished: {counts}.")
    for run_id, why in groups.skipped:
        if not why.endswith(": not finished"):  # damaged, unreadable, or a repeat of a seed: one line each
            st.caption(f"run {run_id}: skipped ({why}).")
    if not groups:
        st.info("None of these runs has finished yet.")
        st.stop()
    grouped = [r for g in groups for r in g.runs]
    metric = bind.bound_selectbox("Metric", "metric", logged_metrics(grouped), default="test_acc")
    left, right = st.columns(2)
    which = bind.bound_selectbox(
        "Each run's value", "measure", list(WHICH) if metric_direction(metric) else ["last"],
        format_func=WHICH.get, container=left, help="Its last epoch, or its best one (highest accuracy, lowest loss).",
    )
    smoothing = bind.bound_slider(
        "Smoothing", "smoothing", 0.0, min_value=0.0, max_value=0.99, step=0.01, container=right,
        help="Bias-corrected exponential moving average of each group's mean curve (0: none).",
    )
    n_seeds = sorted({len(g.runs) for g in groups})
    st.caption(f"{len(groups)} group(s) of {', '.join(map(str, n_seeds))} seed(s); they differ in "
               f"{', '.join(groups.varied) or 'nothing (one setting)'}.")

    # ---- curves and the table ---------------------------------------------------------------------
    bands = [epoch_bands(g, metric, smoothing=smoothing) for g in groups]
    layout.show_figure(group_curves(bands, title=f"{metric} by epoch, mean ± std over seeds"), key="epochs")
    table = group_table(groups, metric, which=which)
    shown = ["group", *groups.varied, "measure", "mean", "std", "min", "max", "n", "seeds"]
    st.dataframe([{k: row.get(k) for k in shown} for row in table], hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.4f") for k in ("mean", "std", "min", "max")})

    # ---- against a baseline -------------------------------------------------------------------------
    if len(groups) > 1:
        labels = [g.label for g in groups]
        scratch = next((g.label for g in groups if g.params.get("distill.methods") == "none"), labels[0])
        baseline = bind.bound_selectbox("Baseline group", "baseline", labels, default=scratch)
        for label, diff in baseline_comparison(groups, baseline, metric, which).items():
            st.markdown(f"- {diff.sentence(label, baseline, metric)}")

    # ---- over steps ---------------------------------------------------------------------------------
    logs = {r.id: r.step_metrics() for r in grouped}
    for run_id, log in logs.items():  # a damaged step log keeps the records before the damage
        if log.damage:
            st.caption(f"run {run_id}: step metrics cut short ({log.damage}).")
    step_names = logged_step_metrics([rec for log in logs.values() for rec in log.records])
    if step_names:
        step_metric = bind.bound_selectbox("Step metric", "step_metric", step_names, default="loss")
        steps = [step_bands(g, step_metric, logs, smoothing=smoothing) for g in groups]
        layout.show_figure(group_curves(steps, title=f"{step_metric} by step, mean ± std over seeds"), key="steps")

    # ---- parameters against the metric -------------------------------------------------------------
    if groups.varied:
        per_run = run_table(groups, metric, which=which)
        layout.show_figure(parallel_coordinates(per_run, groups.varied, metric), key="parcoords")
        param = bind.bound_selectbox("Parameter", "param", groups.varied)
        layout.show_figure(parameter_scatter(per_run, param, metric), key="scatter")

    # ---- the groups as files ------------------------------------------------------------------------
    left, right = st.columns(2)
    left.download_button("Download CSV", groups_csv(table), file_name="groups.csv", mime="text/csv",
                         key="csv", on_click="ignore")
    right.download_button("Download JSON", json.dumps(groups_json(groups, metric), indent=1),
                          file_name="groups.json", mime="application/json", key="json", on_click="ignore")
