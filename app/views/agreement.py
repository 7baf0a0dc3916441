"""Agreement: where the student follows its teacher, where it departs, and how soft the teacher's labels are."""

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, loaders
from workbench.analysis import soft_labels_across_temperatures, soft_labels_from_logits
from workbench.runs.inspect import kd_temperature
from workbench.runs.labels import fmt_pct
from workbench.viz import (
    confusion_matrices,
    disagreement_gallery,
    per_class_bars,
    rank_correlation_bars,
    reliability_diagrams,
    soft_label_bars,
    soft_label_plot,
)
from workbench.vocabulary import DEFAULT_N_SAMPLES

TEMPERATURES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0)

with layout.page("Agreement", "How a student's outputs relate to its teacher's on the test split."):
    run = bind.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    c1, c2, c3 = st.columns(3)
    checkpoint = bind.checkpoint_picker(run, container=c1)
    n_samples = bind.bound_number(
        "Samples", "n_samples", DEFAULT_N_SAMPLES, min_value=16, max_value=20000, container=c2
    )
    seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=c3)

    result = loaders.agreement(run, checkpoint, n_samples, seed)
    drawn = loaders.sample(run, n_samples, seed)
    names = drawn.class_names

    m = st.columns(5)
    m[0].metric("Agreement", fmt_pct(result.agreement))
    m[1].metric("Teacher accuracy", fmt_pct(result.teacher_accuracy))
    m[2].metric("Student accuracy", fmt_pct(result.student_accuracy))
    m[3].metric("KL(teacher ‖ student)", f"{result.kl:.4f}")
    m[4].metric("Student ECE", f"{result.student_calibration.ece:.4f}")

    tabs = st.tabs(
        ["Confusion", "Per class", "Calibration", "Dark knowledge", "Disagreements", "Soft labels"]
    )
    with tabs[0]:
        layout.show_figure(confusion_matrices(result, names), key="confusion")
    with tabs[1]:
        layout.show_figure(per_class_bars(result, names), key="per_class")
    with tabs[2]:
        layout.show_figure(reliability_diagrams(result), key="reliability")
    with tabs[3]:
        layout.show_figure(rank_correlation_bars(result, names), key="rank")
    with tabs[4]:
        shown = bind.bound_number("Images shown", "gallery", 12, min_value=1, max_value=60)
        layout.show_figure(
            disagreement_gallery(result, drawn.raw, max_images=shown, class_names=names), key="gallery"
        )
    with tabs[5]:
        s1, s2 = st.columns(2)
        sample = bind.bound_number("Sample", "sample", 0, min_value=0, max_value=len(drawn) - 1, container=s1)
        temperature = bind.bound_slider(
            "Temperature T",
            "temperature",
            kd_temperature(run),
            min_value=0.5,
            max_value=20.0,
            step=0.5,
            container=s2,
        )
        soft = soft_labels_from_logits(
            result.teacher_logits,
            result.student_logits,
            result.labels,
            temperature=temperature,
            class_names=names,
        )
        k1, k2 = st.columns(2)
        k1.metric(
            f"KD loss of the student at T={temperature:g} (mean of {len(drawn)})", f"{soft.kd_loss:.4f}"
        )
        k2.metric(f"KD loss of sample {sample}", f"{float(soft.kd_per_sample[sample]):.4f}")
        layout.show_figure(soft_label_bars(soft, sample), key="soft_label_bars")
        temps = sorted({*TEMPERATURES, float(temperature)})
        fig = soft_label_plot(
            soft_labels_across_temperatures(result.teacher_logits[sample], temps),
            temps,
            names,
            title=f"Teacher's soft labels of sample {sample} across temperatures",
        )
        fig.add_vline(x=float(temperature), line_dash="dot")
        layout.show_figure(fig, key="soft_labels_across")
