"""Class activation maps: where teacher and student (and a scratch student) look, image by image."""

import hashlib

import streamlit as st

from app.lib import bindings as bind
from app.lib import forms, layout, loaders, state
from workbench.analysis.cam import (
    TARGET_MODES,
    cam_layers,
    cam_method_schema,
    check_cam_layer,
    compare_cams,
    get_cam_method,
    list_cam_methods,
)
from workbench.runs.labels import run_label
from workbench.runs.related import confounded_shapes_run, related_runs
from workbench.runs.session import pick_checkpoint
from workbench.viz import cam_class_agreement, cam_grid, localization_summary
from workbench.vocabulary import IMAGE_CHOICES

IMAGE_LABELS = {
    "class": "by class",
    "disagreement": "where they disagree",
    "random": "at random",
    "upload": "upload an image",
}

with layout.page("Class activation maps", "Where do the teacher and the student look when they decide?"):
    if st.button(
        "Shapes preset: context reliance in a confounded run",
        help="A student trained on shapes whose background gives the class away",
    ):
        preset = confounded_shapes_run(state.list_runs(kind=("distill", "student"), status="completed"))
        if preset is None:
            st.info(
                "No confounded shapes run yet: train a distill run on `shapes` with option "
                "`confounding: 0.9` and teacher `shipped:shapes` (Home page)."
            )
        else:
            bind.apply_preset(
                {
                    "run": preset.id,
                    "checkpoint": "final",
                    "method": "gradcam",
                    "target": "label",
                    "pick": "random",
                    "count": 6,
                }
            )

    run = bind.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    teacher = loaders.require_teacher(run)
    c1, c2 = st.columns(2)
    checkpoint = bind.checkpoint_picker(run, container=c1)
    others = {r.id: r for r in related_runs(run, state.list_runs(kind=("student", "distill", "teacher")))}
    scratch_id = bind.bound_selectbox(
        "Also show (e.g. the scratch student)",
        "scratch",
        ["none", *others],
        format_func=lambda i: "none" if i == "none" else run_label(others[i]),
        container=c2,
    )
    student = loaders.student(run, checkpoint)
    scratch_checkpoint = None if scratch_id == "none" else pick_checkpoint(others[scratch_id], fallback=True)
    scratch = None if scratch_checkpoint is None else loaders.student(others[scratch_id], scratch_checkpoint)

    m1, m2, m3 = st.columns(3)
    method = bind.bound_selectbox("Method", "method", list_cam_methods(), container=m1)
    st.caption(cam_method_schema(method)["description"])
    target = bind.bound_selectbox("Target class", "target", list(TARGET_MODES), container=m2)
    pick = bind.bound_selectbox("Images", "pick", IMAGE_CHOICES, format_func=IMAGE_LABELS.get, container=m3)
    data = loaders.dataset(run)
    shape = tuple(data.image_shape)
    with st.expander(f"{method} parameters and layers"):
        method_params = forms.schema_form(cam_method_schema(method), f"cp.{method}", name=method)
        layers = {}
        if get_cam_method(method).kind != "pixel":  # pixel methods explain the input, not a layer
            l1, l2 = st.columns(2)
            default_layer = "last conv (default)"
            layers["teacher"] = bind.bound_selectbox(
                "Teacher layer",
                "teacher_layer",
                cam_layers(teacher, shape),
                format_func=lambda p: p or default_layer,
                container=l1,
            )
            layers["student"] = bind.bound_selectbox(
                "Student layer",
                "layer",
                cam_layers(student, shape),
                format_func=lambda p: p or default_layer,
                container=l2,
            )
    layers = {role: path or None for role, path in layers.items()}  # blank: the method's default layer

    p1, p2, p3 = st.columns(3)
    count = bind.bound_number("Images shown", "count", 6, min_value=1, max_value=24, container=p1)
    seed = bind.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=p2)
    klass, upload = 0, None
    if pick == "class":
        klass = bind.bound_selectbox(
            "Class",
            "class",
            list(range(len(data.class_names))),
            format_func=lambda k: data.class_names[k],
            container=p3,
        )
    elif pick == "upload":
        file = p3.file_uploader("PNG or JPEG", type=["png", "jpg", "jpeg"])
        if file is None:
            st.info(f"Upload an image; it is converted to the dataset's shape {shape}.")
            st.stop()
        upload = file.getvalue()
        if target == "label":
            st.caption("An uploaded image has no label: its maps explain the teacher's prediction.")
            target = "teacher"
    chosen = loaders.cam_images(run, checkpoint, pick, count=count, seed=seed, klass=klass, upload=upload)
    for role, layer in layers.items():  # a model without feature maps says so before any map is drawn
        check_cam_layer(teacher if role == "teacher" else student, layer, shape, name=role)

    settings = {
        "method": method,
        "params": method_params,
        "layers": layers,
        "target": target,
        "pick": pick,
        "count": count,
        "seed": seed,
        "class": klass,
        "upload": None if upload is None else hashlib.sha256(upload).hexdigest(),
        "scratch": None
        if scratch is None
        else [
            scratch_id,
            scratch_checkpoint,
            loaders.checkpoint_stamp(others[scratch_id], scratch_checkpoint),
        ],
    }
    comparison = loaders.cached_analysis(
        "cams",
        run,
        checkpoint,
        settings,
        lambda: compare_cams(
            teacher,
            student,
            chosen.images,
            chosen.labels,
            method=method,
            layers=layers,
            target=target,
            extra=None if scratch is None else {"scratch": scratch},
            class_names=data.class_names,
            masks=chosen.masks,
            device=loaders.device(),
            progress=layout.progress_bar(method),
            **method_params,
        ),
    )

    s1, s2, s3 = st.columns(3)
    s1.metric("Mean Pearson r (teacher vs student maps)", f"{comparison.mean_pearson:.3f}")
    s2.metric("Mean Spearman ρ", f"{comparison.mean_spearman:.3f}")
    s3.metric(f"Mean top-{round(100 * comparison.top_k)}% IoU", f"{comparison.mean_topk_iou:.3f}")
    layout.show_figure(
        cam_grid(comparison, chosen.raw, max_images=count, class_names=data.class_names), key="cam_grid"
    )
    st.dataframe(
        {
            "test index": ["upload"] if chosen.index is None else chosen.index.tolist(),
            "pearson": comparison.pearson,
            "spearman": comparison.spearman,
            "top-k IoU": comparison.topk_iou,
            "same prediction": comparison.same_prediction,
        },
        width="stretch",
    )
    if pick != "upload":
        layout.show_figure(cam_class_agreement(comparison, data.class_names), key="cam_classes")
    if comparison.localization:
        layout.show_figure(localization_summary(comparison.localization), key="localization")
        st.caption(
            "Context reliance: the share of a map's energy outside the object. A student that learned "
            "the background confounder looks at the background, not the shape."
        )
