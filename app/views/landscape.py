"""Loss landscape: the student's objectives around its weights (lines, contours, a 3-D surface),
along the straight path to another run, and the sharpness of its minimum (Hessian)."""

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, loaders, state
from workbench.analysis import hessian_top_eigenvalue, hessian_trace, interpolate, landscape_1d, landscape_2d
from workbench.analysis.objectives import landscape_objectives
from workbench.background import BackgroundJob
from workbench.runs.inspect import kd_temperature
from workbench.runs.labels import run_label
from workbench.runs.related import related_runs
from workbench.viz import interpolation_curves, landscape_contours, landscape_lines, landscape_surface
from workbench.vocabulary import DEFAULT_N_SAMPLES

VIEWS = {
    "plane": "2-D plane: contours and 3-D surface",
    "line": "1-D line",
    "interpolation": "interpolation to another run",
}
OBJECTIVES = ["cross_entropy", "kd", "agreement"]

with layout.page("Loss landscape", "The student's objectives around its trained weights (Li et al. 2018)."):
    run = bind.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    c1, c2 = st.columns(2)
    checkpoint = bind.checkpoint_picker(run, container=c1)
    view = bind.bound_selectbox("View", "view", list(VIEWS), format_func=VIEWS.get, container=c2)
    names = bind.bound_multiselect(
        "Objectives",
        "metric",
        OBJECTIVES,
        default=["cross_entropy"],
        help="cross_entropy: with the labels; kd: the run's distillation objective at its temperature; "
        "agreement: share of top-1 predictions equal to the teacher's",
    )
    if not names:
        st.info("Choose at least one objective.")
        st.stop()
    g1, g2, g3, g4 = st.columns(4)
    n_samples = bind.bound_number(
        "Samples", "n_samples", DEFAULT_N_SAMPLES, min_value=16, max_value=5000, container=g1
    )
    steps = bind.bound_number("Points per axis", "steps", 11, min_value=3, max_value=51, container=g2)
    span = bind.bound_number("Span ±", "span", 1.0, min_value=0.05, max_value=10.0, container=g3)
    seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=g4)

    teacher = loaders.teacher(run)
    student = loaders.student(run, checkpoint)
    drawn = loaders.sample(run, n_samples, seed)
    objectives = landscape_objectives(names, temperature=kd_temperature(run))
    common = {"objectives": objectives, "class_names": drawn.class_names, "device": loaders.device()}
    key = (
        "landscape",
        str(run.path.parent),
        run.id,
        checkpoint,
        loaders.checkpoint_stamp(run, checkpoint),
        view,
        tuple(names),
        n_samples,
        steps,
        span,
        seed,
    )
    if view == "interpolation":
        others = {r.id: r for r in related_runs(run, state.list_runs(), same_model=True)}
        if not others:
            st.info("No other run of this architecture on this dataset to interpolate to.")
            st.stop()
        o1, o2 = st.columns(2)
        other_id = bind.bound_selectbox(
            "Other end", "other", list(others), format_func=lambda i: run_label(others[i]), container=o1
        )
        other_checkpoint = bind.checkpoint_picker(
            others[other_id], label="Its checkpoint", param="other_checkpoint", container=o2
        )
        other = loaders.student(others[other_id], other_checkpoint)
        key += (other_id, other_checkpoint, loaders.checkpoint_stamp(others[other_id], other_checkpoint))

    def work(job: BackgroundJob):
        publish = {"progress": job.progress, "cancel": job.cancel, "on_row": lambda r: job.publish(result=r)}
        if view in ("plane", "line"):
            around = landscape_2d if view == "plane" else landscape_1d
            return around(
                teacher,
                student,
                drawn.images,
                drawn.labels,
                span=(-span, span),
                steps=steps,
                seed=seed,
                **common,
                **publish,
            )
        return interpolate(
            teacher,
            student,
            other,
            drawn.images,
            drawn.labels,
            steps=steps,
            names=(f"{checkpoint} ({run.id[-4:]})", f"{other_checkpoint} ({other_id[-4:]})"),
            **common,
            **publish,
        )

    job = loaders.background(key, work, restart=st.session_state.pop("landscape_restart", False))
    show = "lines"
    if view == "plane":
        show = bind.bound_selectbox("Show", "show", ["contours", "3-D surface"])
    started_running = job.running

    @st.fragment(run_every=1.0 if job.running else None)
    def live() -> None:
        snap = job.snapshot()
        result = job.result if job.result is not None else snap.get("result")
        if job.running:
            st.progress(
                snap["done"] / snap["total"], text=f"{snap['message'] or 'starting'} · {job.elapsed():.0f} s"
            )
            if st.button("Stop", key="landscape_stop"):
                job.cancel.cancel()
        elif job.cancelled:
            st.warning(f"Stopped after {snap['done']} of {snap['total']} rows.")
        elif job.error:
            st.error(job.error)
        else:
            st.caption(f"Computed in {job.elapsed():.1f} s on {len(drawn)} samples.")
        if result is not None:
            if show == "3-D surface":
                fig = landscape_surface(result, names[0])
            elif view == "plane":
                fig = landscape_contours(result, list(result.values))
            elif view == "line":
                fig = landscape_lines(result)
            else:
                fig = interpolation_curves(result, names=result.names)
            layout.show_figure(fig, key="landscape")
        if started_running and not job.running:
            st.rerun()

    live()
    if job.cancelled or job.error:
        if st.button("Restart"):
            st.session_state["landscape_restart"] = True
            st.rerun()

    with st.expander("Sharpness: Hessian top eigenvalue and trace"):
        h1, h2 = st.columns(2)
        iters = bind.bound_number("Power iterations", "hiters", 20, min_value=1, max_value=200, container=h1)
        n_probes = bind.bound_number(
            "Trace probes",
            "n_probes",
            10,
            min_value=2,
            max_value=500,
            container=h2,
            help="random probe vectors of the Hutchinson estimate (not images)",
        )
        if bind.bound_checkbox(f"Compute for {names[0]} (once; then cached)", "hess", False):
            hess_args = (teacher, student, drawn.images, drawn.labels)
            hess_kw = {"objective": objectives[names[0]], "seed": seed, "device": loaders.device()}
            eig, trace = loaders.cached_analysis(
                "hessian",
                run,
                checkpoint,
                {
                    "objective": names[0],
                    "n_samples": n_samples,
                    "seed": seed,
                    "iters": iters,
                    "n_probes": n_probes,
                },
                lambda: (
                    hessian_top_eigenvalue(
                        *hess_args, iters=iters, progress=layout.progress_bar("Top eigenvalue"), **hess_kw
                    ),
                    hessian_trace(
                        *hess_args, n_probes=n_probes, progress=layout.progress_bar("Trace"), **hess_kw
                    ),
                ),
            )
            k1, k2 = st.columns(2)
            k1.metric(
                "Top eigenvalue λ_max",
                f"{eig.eigenvalue:.4g}",
                help=f"{eig.iterations} iterations, {'converged' if eig.converged else 'not converged'}",
            )
            k2.metric("Trace (Hutchinson)", f"{trace.trace:.4g} ± {trace.std_error:.2g}")
