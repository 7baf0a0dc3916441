"""Experiments: a grid of settings and seeds, queued as one experiment. The base config is the New-run
form; each grid row varies one field of the run config over comma-separated values; the page says
how many runs and how long before Start, lists the experiment's trials and their states, stops it,
and opens Compare on its groups (mean ± std over the seeds)."""

from __future__ import annotations

import time

import streamlit as st

from app.lib import bindings as bind
from app.lib import forms, grid, layout, live, state
from workbench.runs.annotations import experiment_target
from workbench.sweep import grid as grids
from workbench.sweep import submit_experiment

MAX_ROWS = 6

with layout.page("Experiments", "One grid of settings × seeds, queued as jobs; results per group of seeds."):
    queue = state.get_queue()

    with layout.guard():  # a bad value is one line; the experiments list still shows
        st.subheader("Base config")
        base = forms.run_form(train_first=False, max_steps=True, single=False).form

        st.subheader("Grid")
        fields = grids.grid_fields(base)
        first = next((f for f in fields if ".params." in f), "optim.lr")
        n_rows = bind.bound_number("Grid rows", "rows", 1, min_value=0, max_value=MAX_ROWS)
        rows: dict[str, list] = {}
        for i in range(1, int(n_rows) + 1):
            left, right = st.columns([2, 3])
            field = bind.bound_selectbox(
                f"Field {i}", f"field{i}", fields, default=first if i == 1 else "optim.lr", container=left
            )
            text = bind.bound_text(
                f"Values {i}", f"values{i}", "", max_chars=2000, container=right,
                help="Comma-separated, e.g. 0.05, 0.1; each value is read as YAML: numbers, words, true/false, "
                "[lists] or {maps}.",
            )
            if text.strip():
                if field in rows:
                    raise state.AppInputError(f"grid: {field} is chosen in two rows; give all its values in one")
                rows[field] = grids.parse_values(field, text)
        left, right = st.columns(2)
        seeds = grids.parse_seeds(
            bind.bound_text("Seeds", "seeds", "3", max_chars=200, container=left,
                            help="A count (3 = seeds 0, 1, 2) or a list (0, 4, 7).")
        )
        default = f"{base.student}-{base.dataset}-{time.strftime('%m%d-%H%M')}"
        name = bind.bound_text(
            "Experiment name", "experiment_name", default, max_chars=80, container=right,
            help="Letters, digits, '_', '.' and '-'. Start it again to train only the trials that are missing.",
        ).strip() or default
        spec = grids.experiment_spec(name, base, rows, seeds, store=state.get_store())
        grids.check_size(spec)  # a grid too large is refused here, in one line, before Start
        estimate = grid.estimate(spec)
        st.info(f"{grids.size_line(spec)}; {estimate.text()}.", icon=":material/calculate:")
        if st.button("Start", type="primary", key="start"):
            sub = submit_experiment(spec, queue, workspace=state.job_workspace(), max_hours=grids.max_hours())
            state.pump()
            live.follow(sub.jobs)
            st.success(sub.line())
            st.query_params["experiment"] = sub.name

    st.subheader("Experiments")
    found = state.list_experiments()
    if not found:
        st.caption("No experiments in this workspace yet.")
    else:
        summaries = {e.name: f"{e.name} · {e.summary()}" for e in found}
        chosen = bind.bound_selectbox("Experiment", "experiment", list(summaries), format_func=summaries.get)
        grid.show_experiment(chosen)
        layout.notes_editor(experiment_target(state.get_store(), chosen), f"experiment {chosen}")
