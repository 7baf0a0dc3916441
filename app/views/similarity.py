"""Feature similarity: CKA between every teacher and student layer, at any saved epoch, and the
penultimate features of both models in 2-D."""

import streamlit as st

from app import analysis_shared as shared_a
from app import shared
from workbench.analysis import cka_matrix, cka_over_training, embedding_2d
from workbench.viz import cka_heatmap, cka_training_lines, embedding_scatter

with shared.page("Feature similarity", "Do the student's layers represent the data as the teacher's do?"):
    run = shared.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    teacher = shared_a.require_teacher(run)
    c1, c2, c3 = st.columns(3)
    n = shared.bound_number("Samples", "n", 512, min_value=64, max_value=10000, container=c1)
    seed = shared.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=c2)
    kernel = shared.bound_selectbox("CKA kernel", "kernel", ["linear", "rbf"], container=c3)
    epochs = [name for _, name in run.epoch_checkpoints()]
    ckpt = shared_a.bound_select_slider(
        "Checkpoint (saved epochs)", "ckpt", epochs + [c for c in ("final",) if c in run.checkpoints()]
    )

    student = shared.load_run_model(run.id, ckpt)
    batch = shared.eval_batch(run, n, seed)
    settings = {"n": n, "seed": seed, "kernel": kernel}

    cka = shared.cached_analysis(
        "cka",
        run.id,
        ckpt,
        settings,
        lambda: cka_matrix(
            teacher,
            student,
            batch.images,
            batch.labels,
            kernel=kernel,
            class_names=batch.class_names,
            device=shared.device(),
            progress=shared.progress_bar("CKA"),
        ),
    )
    shared.show_figure(cka_heatmap(cka, title=f"{kernel.capitalize()} CKA at {ckpt}"), key="cka")

    if epochs and shared.bound_checkbox("Show CKA over training (every saved epoch)", "over", False):
        over = shared.cached_analysis(
            "cka_over_training",
            run.id,
            epochs[-1],
            settings,
            lambda: cka_over_training(
                teacher,
                {
                    epoch: (lambda name=name: shared.load_run_model(run.id, name))
                    for epoch, name in run.epoch_checkpoints()
                },
                batch.images,
                batch.labels,
                kernel=kernel,
                class_names=batch.class_names,
                device=shared.device(),
                progress=shared.progress_bar("CKA over training"),
            ),
        )
        shared.show_figure(cka_training_lines(over), key="cka_over")

    st.subheader("Embedding")
    e1, e2 = st.columns(2)
    method = shared.bound_selectbox(
        "Projection", "proj", ["pca", "tsne"], format_func=str.upper, container=e1
    )
    align = shared.bound_checkbox("Align the student's map onto the teacher's", "align", True, container=e2)
    perplexity = 30.0
    if method == "tsne":
        perplexity = shared.bound_number("t-SNE perplexity", "perp", 30.0, min_value=2.0, max_value=100.0)
    emb = shared.cached_analysis(
        "embedding",
        run.id,
        ckpt,
        {**settings, "method": method, "align": align, "perplexity": perplexity},
        lambda: embedding_2d(
            teacher,
            student,
            batch.images,
            batch.labels,
            method=method,
            align=align,
            seed=seed,
            perplexity=perplexity,
            class_names=batch.class_names,
            device=shared.device(),
            progress=shared.progress_bar("Embedding"),
        ),
    )
    shared.show_figure(embedding_scatter(emb, batch.class_names), key="embedding")
