"""Compare runs: pick runs (a sweep, a method against scratch), overlay one metric over epochs, read
their summaries side by side and download them as CSV."""

from __future__ import annotations

import csv
import io

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, state
from workbench.runs import logged_metrics
from workbench.runs.labels import run_label, teacher_label
from workbench.viz import compare_runs

with layout.page("Compare runs", "Several runs on one metric, and their summaries as a table."):
    runs = state.list_runs()
    if not runs:
        st.info("No runs yet. Start one on the Home page.")
        st.stop()
    by_id = {r.id: r for r in runs}
    name_filter = (
        bind.bound_text(
            "Filter by name",
            "filter",
            "",
            max_chars=60,
            help="Keep runs whose name or id contains this text.",
        )
        .strip()
        .lower()
    )
    ids = [i for i in by_id if not name_filter or name_filter in run_label(by_id[i]).lower()]
    default = [r.id for r in runs if r.status.get("status") == "completed" and r.id in ids][:4]
    chosen = bind.bound_multiselect(
        "Runs", "runs", ids, default=default, format_func=lambda i: run_label(by_id[i]), max_selections=20
    )
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    picked = [by_id[i] for i in chosen]

    metrics = logged_metrics(picked)  # what the chosen runs logged per epoch
    if not metrics:
        st.info("None of these runs has finished an epoch yet.")
        st.stop()
    metric = bind.bound_selectbox("Metric", "metric", metrics, default="test_acc")

    names: dict[str, object] = {}
    for r in picked:
        label = r.status.get("name") or r.id
        if label in names:
            label = f"{label} ({r.id[-4:]})"
        names[label] = r.metrics
    layout.show_figure(compare_runs(names, metric), key="compare")

    rows = []
    for r in picked:
        s = r.summary()
        cfg = r.config
        rows.append(
            {
                "id": r.id,
                "name": s["name"],
                "status": s["status"],
                "kind": s["kind"],
                "dataset": s["dataset"],
                "model": s["model"],
                "teacher": teacher_label(r),
                "method": s["method"],
                "method params": "; ".join(
                    f"{m.name}: {m.weight:g}" + "".join(f", {k}={v}" for k, v in m.params.items())
                    for m in cfg.distill.methods
                ),
                "ce_weight": cfg.distill.ce_weight,
                "seed": cfg.seed,
                "epochs": s["epochs"],
                "test_acc": s["test_acc"],
                "best_test_acc": s["best_test_acc"],
                "agreement": s["agreement"],
                "kl_teacher_student": r.metrics.get("summary", {}).get("kl_teacher_student"),
                "ece": r.metrics.get("summary", {}).get("ece"),
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "test_acc": st.column_config.NumberColumn(format="percent"),
            "best_test_acc": st.column_config.NumberColumn(format="percent"),
            "agreement": st.column_config.NumberColumn(format="percent"),
        },
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    st.download_button(
        "Download CSV", buffer.getvalue(), file_name="runs.csv", mime="text/csv", key="csv", on_click="ignore"
    )
