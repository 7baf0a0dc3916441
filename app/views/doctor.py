"""Student doctor: the ranked findings of a run (``workbench.diagnosis.diagnose``), each with its
evidence, its explanation, the figure behind it, its suggested experiment as a prefilled New run,
and a link to the page that shows it in full."""

from __future__ import annotations

import streamlit as st

from app.experiments import experiment_text, suggested_config
from app.lib import bindings as bind
from app.lib import layout, loaders, state
from workbench.diagnosis import diagnose
from workbench.run_form import new_run_params
from workbench.runs.labels import fmt_value, run_label
from workbench.runs.related import related_runs
from workbench.viz import finding_figure, findings_bars
from workbench.vocabulary import DOCTOR_N_SAMPLES

#: the page that shows each view of :mod:`workbench.viz` in full, and its URL path
VIEW_PAGES = {
    "training_curves": ("views/training.py", "Training"),
    "loss_terms": ("views/training.py", "Training"),
    "reliability_diagrams": ("views/agreement.py", "Agreement"),
    "rank_correlation_bars": ("views/agreement.py", "Agreement"),
    "per_class_bars": ("views/agreement.py", "Agreement"),
    "confusion_matrices": ("views/agreement.py", "Agreement"),
    "softness_histogram": ("views/agreement.py", "Agreement"),
    "soft_label_plot": ("views/agreement.py", "Agreement"),
    "cka_heatmap": ("views/similarity.py", "Feature similarity"),
    "localization_summary": ("views/cams.py", "Class activation maps"),
    "cam_grid": ("views/cams.py", "Class activation maps"),
    "landscape_comparison": ("views/landscape.py", "Loss landscape"),
    "landscape_lines": ("views/landscape.py", "Loss landscape"),
}


with layout.page(
    "Student doctor", "What looks wrong with a student, the numbers that show it, and what to try."
):
    run = bind.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    if not run.config.teachers:
        st.info("This run has no teacher in its config; the doctor compares a student with its teacher.")
        st.stop()
    c1, c2, c3, c4 = st.columns(4)
    checkpoint = bind.checkpoint_picker(run, container=c1)
    n_samples = bind.bound_number(
        "Samples", "n_samples", DOCTOR_N_SAMPLES, min_value=50, max_value=5000, container=c2
    )
    seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=c3)
    same = related_runs(run, state.list_runs(kind="student", status="completed"), same_model=True)
    labels = {"": "none"} | {r.id: run_label(r) for r in same}
    scratch_id = bind.bound_selectbox(
        "Scratch student",
        "scratch",
        list(labels),
        format_func=labels.get,
        container=c4,
        help="The same student trained without a teacher: enables the sharpness rule.",
    )
    params = {"n_samples": int(n_samples), "seed": int(seed), "scratch": scratch_id or None}
    go = st.button("Examine", type="primary", key="examine") or st.query_params.get("examine") == "1"
    if not go:
        st.caption(
            "The doctor runs several analyses (about a minute on a CPU); results are kept for every session."
        )
        st.stop()
    st.query_params["examine"] = "1"
    scratch = state.get_run(scratch_id) if scratch_id else None
    report = loaders.cached_analysis(
        "doctor",
        run,
        checkpoint,
        params,
        lambda: diagnose(
            run,
            scratch_run=scratch,
            n_samples=int(n_samples),
            seed=int(seed),
            checkpoint=checkpoint,
            store=state.store_root(),
            device=loaders.device(),
            progress=layout.progress_bar("Examining"),
        ),
    )

    if not report.findings:
        st.success("No findings: every rule that could be checked passed.")
    else:
        if report.healthy:
            st.success("No warning: the findings below are notes.")
        layout.show_figure(findings_bars(report), key="bars")
    for rank, finding in enumerate(report.findings, start=1):
        with st.container(border=True):
            level = getattr(finding, "level", "warning")
            st.markdown(f"**{rank}. {finding.title}** — {level}, severity {finding.severity:.2f}")
            st.write(finding.explanation)
            st.markdown(f"*Try:* {experiment_text(finding) or finding.suggestion}")
            left, right = st.columns([1, 2])
            left.dataframe(
                [{"evidence": k, "value": fmt_value(v)} for k, v in finding.evidence.items()],
                hide_index=True,
                width="stretch",
            )
            with right.expander("Figure", expanded=rank == 1):
                with layout.guard():
                    layout.show_figure(finding_figure(report, finding), key=f"finding-{rank}")
            a, b = st.columns(2)
            layout.page_link(
                "views/home.py",
                "Run the suggested experiment",
                icon=":material/science:",
                params=new_run_params(suggested_config(finding, run)),
                container=a,
            )
            target = VIEW_PAGES.get(finding.view)
            if target is not None:
                extra = {"scratch": scratch_id} if target[0].endswith("landscape.py") and scratch_id else {}
                layout.page_link(
                    target[0],
                    f"Open in {target[1]}",
                    icon=":material/open_in_new:",
                    params={"run": run.id, "checkpoint": checkpoint, "seed": int(seed), **extra},
                    container=b,
                )
    if report.skipped:
        with st.expander("Not checked"):
            for rule, reason in report.skipped.items():
                st.markdown(f"- **{rule}**: {reason}")
    passed = report.passed()
    if passed:
        st.caption("Passed: " + ", ".join(passed))
