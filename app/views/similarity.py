"""Feature similarity: CKA between every teacher and student layer, at any saved epoch, and the
penultimate features of both models in 2-D."""

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, loaders
from workbench.analysis import cka_matrix, cka_over_training, embedding_2d
from workbench.viz import cka_heatmap, cka_training_lines, embedding_scatter
from workbench.vocabulary import DEFAULT_N_SAMPLES

with layout.page("Feature similarity", "Do the student's layers represent the data as the teacher's do?"):
    run = bind.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    teacher = loaders.require_teacher(run)
    c1, c2, c3 = st.columns(3)
    n_samples = bind.bound_number(
        "Samples", "n_samples", DEFAULT_N_SAMPLES, min_value=64, max_value=10000, container=c1
    )
    seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=c2)
    kernel = bind.bound_selectbox("CKA kernel", "kernel", ["linear", "rbf"], container=c3)
    epochs = [name for _, name in run.epoch_checkpoints()]
    checkpoint = bind.bound_select_slider(
        "Checkpoint (saved epochs)", "checkpoint", epochs + [c for c in ("final",) if c in run.checkpoints()]
    )

    student = loaders.student(run, checkpoint)
    drawn = loaders.sample(run, n_samples, seed)
    settings = {"n_samples": n_samples, "seed": seed, "kernel": kernel}
    common = {"class_names": drawn.class_names, "device": loaders.device()}

    cka = loaders.cached_analysis(
        "cka",
        run,
        checkpoint,
        settings,
        lambda: cka_matrix(
            teacher,
            student,
            drawn.images,
            drawn.labels,
            kernel=kernel,
            progress=layout.progress_bar("CKA"),
            **common,
        ),
    )
    layout.show_figure(cka_heatmap(cka, title=f"{kernel.capitalize()} CKA at {checkpoint}"), key="cka")

    if epochs and bind.bound_checkbox("Show CKA over training (every saved epoch)", "over", False):
        over = loaders.cached_analysis(
            "cka_over_training",
            run,
            epochs[-1],
            settings,
            lambda: cka_over_training(
                teacher,
                {
                    epoch: (lambda name=name: loaders.student(run, name))
                    for epoch, name in run.epoch_checkpoints()
                },
                drawn.images,
                drawn.labels,
                kernel=kernel,
                progress=layout.progress_bar("CKA over training"),
                **common,
            ),
        )
        layout.show_figure(cka_training_lines(over), key="cka_over")

    st.subheader("Embedding")
    e1, e2 = st.columns(2)
    method = bind.bound_selectbox("Projection", "proj", ["pca", "tsne"], format_func=str.upper, container=e1)
    align = bind.bound_checkbox("Align the student's map onto the teacher's", "align", True, container=e2)
    perplexity = 30.0
    if method == "tsne":
        perplexity = bind.bound_number("t-SNE perplexity", "perp", 30.0, min_value=2.0, max_value=100.0)
    emb = loaders.cached_analysis(
        "embedding",
        run,
        checkpoint,
        {**settings, "method": method, "align": align, "perplexity": perplexity},
        lambda: embedding_2d(
            teacher,
            student,
            drawn.images,
            drawn.labels,
            method=method,
            align=align,
            seed=seed,
            perplexity=perplexity,
            progress=layout.progress_bar("Embedding"),
            **common,
        ),
    )
    layout.show_figure(embedding_scatter(emb, drawn.class_names), key="embedding")
