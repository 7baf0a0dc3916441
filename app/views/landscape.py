"""Loss landscape: the student's objectives around its weights (lines, contours, a 3-D surface),
along the straight path to another run, and the sharpness of its minimum (Hessian)."""

import streamlit as st

from app import analysis_shared as shared_a
from app import shared
from workbench.analysis import hessian_top_eigenvalue, hessian_trace, interpolate, landscape_1d, landscape_2d
from workbench.analysis.objectives import landscape_objectives
from workbench.runs.inspect import kd_temperature
from workbench.viz import interpolation_curves, landscape_contours, landscape_lines, landscape_surface

VIEWS = {
    "plane": "2-D plane: contours and 3-D surface",
    "line": "1-D line",
    "interpolation": "interpolation to another run",
}
OBJECTIVES = ["cross_entropy", "kd", "agreement"]

with shared.page("Loss landscape", "The student's objectives around its trained weights (Li et al. 2018)."):
    run = shared.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    c1, c2 = st.columns(2)
    ckpt = shared.checkpoint_picker(run, container=c1)
    view = shared.bound_selectbox("View", "view", list(VIEWS), format_func=VIEWS.get, container=c2)
    names = shared.bound_multiselect(
        "Objectives",
        "obj",
        OBJECTIVES,
        default=["cross_entropy"],
        help="cross_entropy: with the labels; kd: the run's distillation objective at its temperature; "
        "agreement: share of top-1 predictions equal to the teacher's",
    )
    if not names:
        st.info("Choose at least one objective.")
        st.stop()
    g1, g2, g3, g4 = st.columns(4)
    n = shared.bound_number("Samples", "n", 256, min_value=16, max_value=5000, container=g1)
    steps = shared.bound_number("Points per axis", "steps", 11, min_value=3, max_value=51, container=g2)
    span = shared.bound_number("Span ±", "span", 1.0, min_value=0.05, max_value=10.0, container=g3)
    seed = shared.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=g4)

    teacher = shared.load_teacher_for(run)
    student = shared.load_run_model(run.id, ckpt)
    batch = shared.eval_batch(run, n, seed)
    objectives = landscape_objectives(names, temperature=kd_temperature(run))
    common = {
        "objectives": objectives,
        "class_names": batch.class_names,
        "device": shared.device(),
    }
    key = (
        "landscape",
        str(shared.store_root()),
        run.id,
        ckpt,
        shared.checkpoint_stamp(run, ckpt),
        view,
        tuple(names),
        n,
        steps,
        span,
        seed,
    )
    if view == "interpolation":
        others = {r.id: r for r in shared_a.related_runs(run, same_model=True)}
        if not others:
            st.info("No other run of this architecture on this dataset to interpolate to.")
            st.stop()
        o1, o2 = st.columns(2)
        other_id = shared.bound_selectbox(
            "Other end",
            "other",
            list(others),
            format_func=lambda i: shared.run_label(others[i]),
            container=o1,
        )
        other_ckpt = shared.checkpoint_picker(
            others[other_id], label="Its checkpoint", param="other_ckpt", container=o2
        )
        other = shared.load_run_model(other_id, other_ckpt)
        key += (other_id, other_ckpt, shared.checkpoint_stamp(others[other_id], other_ckpt))

    def work(job: shared_a.BackgroundJob):
        publish = {"progress": job.progress, "cancel": job.cancel, "on_row": lambda r: job.publish(result=r)}
        if view in ("plane", "line"):
            around = landscape_2d if view == "plane" else landscape_1d
            return around(
                teacher,
                student,
                batch.images,
                batch.labels,
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
            batch.images,
            batch.labels,
            steps=steps,
            names=(f"{ckpt} ({run.id[-4:]})", f"{other_ckpt} ({other_id[-4:]})"),
            **common,
            **publish,
        )

    if st.session_state.pop("landscape_restart", False):
        job = shared_a.background(key, work, restart=True)
    else:
        job = shared_a.background(key, work)
    show = "lines"
    if view == "plane":
        show = shared.bound_selectbox("Show", "show", ["contours", "3-D surface"])
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
            st.caption(f"Computed in {job.elapsed():.1f} s on {len(batch.labels)} samples.")
        if result is not None:
            if show == "3-D surface":
                fig = landscape_surface(result, names[0])
            elif view == "plane":
                fig = landscape_contours(result, list(result.values))
            elif view == "line":
                fig = landscape_lines(result)
            else:
                fig = interpolation_curves(result, names=result.names)
            shared.show_figure(fig, key="landscape")
        if started_running and not job.running:
            st.rerun()

    live()
    if job.cancelled or job.error:
        if st.button("Restart"):
            st.session_state["landscape_restart"] = True
            st.rerun()

    with st.expander("Sharpness: Hessian top eigenvalue and trace"):
        h1, h2 = st.columns(2)
        iters = shared.bound_number(
            "Power iterations", "hiters", 20, min_value=1, max_value=200, container=h1
        )
        probes = shared.bound_number("Trace probes", "hprobes", 10, min_value=2, max_value=500, container=h2)
        if shared.bound_checkbox(f"Compute for {names[0]} (once; then cached)", "hess", False):
            hess_args = (teacher, student, batch.images, batch.labels)
            hess_kw = {"objective": objectives[names[0]], "seed": seed, "device": shared.device()}
            eig, trace = shared.cached_analysis(
                "hessian",
                run.id,
                ckpt,
                {"objective": names[0], "n": n, "seed": seed, "iters": iters, "probes": probes},
                lambda: (
                    hessian_top_eigenvalue(
                        *hess_args, iters=iters, progress=shared.progress_bar("Top eigenvalue"), **hess_kw
                    ),
                    hessian_trace(*hess_args, samples=probes, progress=shared.progress_bar("Trace"), **hess_kw),
                ),
            )
            k1, k2 = st.columns(2)
            k1.metric(
                "Top eigenvalue λ_max",
                f"{eig.eigenvalue:.4g}",
                help=f"{eig.iterations} iterations, {'converged' if eig.converged else 'not converged'}",
            )
            k2.metric("Trace (Hutchinson)", f"{trace.trace:.4g} ± {trace.std_error:.2g}")
