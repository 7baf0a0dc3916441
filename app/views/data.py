"""Data and teachers of your own: add a folder or a zip of images to the store and look at what is in a
dataset before training on it (images per class, counts, mean/std, imbalance and duplicate warnings);
add a teacher from a ``.safetensors`` checkpoint, checked and measured on its dataset; see every model,
the zoo's and the plugins' (and a plugin that failed to load, with its error). Everything added here is
listed by every face (the New-run form, the panels, ``workbench data list``)."""

from __future__ import annotations

import json

import streamlit as st

from app.lib import bindings as bind
from app.lib import layout, loaders, state
from workbench.models import broken_plugins, describe_models, list_models
from workbench.runs.datasets import LOADERS, add_dataset, dataset_choices, get_store_dataset, remove_dataset
from workbench.runs.teacher_store import add_teacher, list_store_teachers, remove_teacher
from workbench.viz.datasets import dataset_preview_figure

with layout.page("Data and teachers", "Your own images and teachers, checked before anything trains on them."):
    store = state.get_store()
    datasets, teachers, models = st.tabs(["Datasets", "Teachers", "Models"])

    with datasets, layout.guard():
        choices = {c.name: c for c in dataset_choices(store) if c.loads_alone}
        name = bind.bound_selectbox(
            "Dataset", "dataset", list(choices), default="mnist",
            format_func=lambda n: f"{n} (yours)" if choices[n].where == "store" else n,
            help="The built-in datasets, then the ones added to this store.",
        )
        st.caption(choices[name].description)
        preview = loaders.dataset_preview(name)
        left, right, third = st.columns(3)
        left.metric("Images (train / test)", f"{preview.counts['train'].sum():,} / {preview.counts['test'].sum():,}")
        right.metric("Image shape", "×".join(map(str, preview.image_shape)))
        third.metric("Classes", len(preview.class_names))
        st.caption("Per-channel mean / std of the train split (0–1 scale): "
                   + ", ".join(f"{m:.3f} / {s:.3f}" for m, s in zip(preview.mean, preview.std, strict=True)))
        for warning in preview.warnings:
            st.warning(warning, icon=":material/warning:")
        layout.show_figure(dataset_preview_figure(preview), key="preview")
        if choices[name].where == "store":
            entry = get_store_dataset(store, name)
            st.caption(f"From {entry.source}; read by the `{entry.loader}` loader from `{entry.root}`."
                       + ("".join(f" {n}" for n in entry.notes) if entry.notes else ""))
            if st.button("Remove this dataset", key="remove_dataset",
                         help="Runs trained on it keep their results but can no longer load its images."):
                state.require_store_change("removing a dataset")
                remove_dataset(store, name)
                st.query_params.pop("dataset", None)
                st.rerun()

        st.subheader("Add a dataset")
        with st.form("add_dataset", clear_on_submit=False):
            new_name = st.text_input("Dataset name", max_chars=63, key="new_dataset", help="Lower-case letters, digits, '-' and '_'.")
            how = st.radio("From", ["a zip of class folders", "a folder on the server", "a CIFAR download"],
                           horizontal=True, key="from")
            upload = st.file_uploader("Zip", type=["zip"], help="One folder per class (train/ and test/ "
                                      "inside are used as the split when present).")
            folder = st.text_input("Folder on the server", max_chars=4096, key="folder",
                                   help="A folder of class folders, CIFAR python batches or MNIST IDX files.")
            url = st.text_input("CIFAR archive URL", max_chars=2048, key="url",
                                help="The published cifar-10-python.tar.gz or cifar-100-python.tar.gz (or a mirror "
                                "of it); checked against its published checksum. Needs internet on the server.")
            loader = st.selectbox("Read as", ["detect", *LOADERS], key="loader",
                                  help="Which loader reads the files; detect looks at what is there.")
            if st.form_submit_button("Add", type="primary", key="add"):
                state.require_store_change("adding a dataset")
                source = {"a zip": upload, "a folder": folder.strip(), "a CIFAR": url.strip()}[how[: how.index(" ", 2)]]
                if not source:
                    raise state.AppInputError("source: choose a zip or type a folder")
                entry = add_dataset(store, new_name.strip(), source, loader=None if loader == "detect" else loader,
                                    progress=layout.progress_bar("Reading and checking the images"))
                st.success(f"Added {entry.name}: {entry.train_size:,} train / {entry.test_size:,} test images, "
                           f"{entry.num_classes} classes. It is now in every dataset list.")
                st.query_params["dataset"] = entry.name

    with teachers, layout.guard():
        cards = list_store_teachers(store)
        if cards:
            st.dataframe(
                [{"teacher": c.source, "model": c.model["name"], "dataset": c.dataset,
                  "test acc": c.test_acc, "params": c.params, "added": c.added} for c in cards],
                hide_index=True, width="stretch",
                column_config={"test acc": st.column_config.NumberColumn(format="percent")},
            )
            gone = st.selectbox("Remove a teacher", ["—", *[c.name for c in cards]], key="remove_teacher")
            if gone != "—" and st.button(f"Remove {gone}", key="remove_teacher_button"):
                state.require_store_change("removing a teacher")
                remove_teacher(store, gone)
                st.rerun()
        else:
            st.info("No teacher of your own yet. Upload one below; shipped teachers and teacher runs are "
                    "offered on Home already.")
        st.subheader("Add a teacher from a checkpoint")
        with st.form("add_teacher"):
            t_name = st.text_input("Teacher name", max_chars=64, key="new_teacher", help="Letters, digits, '-', '_' and '.'.")
            weights = st.file_uploader("Weights (.safetensors)", type=["safetensors"],
                                       help="A state dict saved with safetensors; pickles are never opened.")
            model = st.selectbox("Architecture", list_models())
            kwargs = st.text_input("Model arguments (JSON)", "{}", max_chars=2000,
                                   help='The keyword arguments it was built with, e.g. {"width": 2}.')
            on = st.selectbox("Trained on", list(choices), index=list(choices).index(name))
            if st.form_submit_button("Check and add", type="primary"):
                state.require_store_change("adding a teacher")
                if weights is None:
                    raise state.AppInputError("weights: choose a .safetensors file")
                try:
                    parsed = json.loads(kwargs or "{}")
                except json.JSONDecodeError as err:
                    raise state.AppInputError(f"model arguments: not JSON ({err.msg})") from None
                data = get_store_dataset(store, on).data_section() if choices[on].where == "store" else on
                with st.spinner("Checking the weights and measuring the teacher on the test split…"):
                    card = add_teacher(store, t_name.strip(), weights.getvalue(), model=model, kwargs=parsed,
                                       dataset=data)
                st.success(f"Added {card.source}: test accuracy {card.test_acc:.2%} on {card.dataset}. Pick it as "
                           "the teacher on Home.")

    with models, layout.guard():
        st.dataframe(
            [{"model": m.name, "from": m.source, "family": m.family, "arguments": json.dumps(m.defaults),
              "description": m.description} for m in describe_models()],
            hide_index=True, width="stretch",
        )
        for plugin, error in broken_plugins():
            st.warning(f"Plugin {plugin} did not load: {error}", icon=":material/extension_off:")
        st.caption("Your own architecture: decorate its class or builder with `workbench.models.register_model` in "
                   "a module named by the `workbench.models` entry point of your package or by "
                   "`WORKBENCH_PLUGINS=module` before starting the app; it then appears in every model list.")
