"""Class activation maps: where teacher and student (and a scratch student) look, image by image."""

import hashlib

import streamlit as st

from app import analysis_shared as shared_a
from app import shared
from workbench.analysis.cam import (
    TARGET_MODES,
    cam_layers,
    cam_method_schema,
    check_cam_layer,
    compare_cams,
    get_cam_method,
    list_cam_methods,
)
from workbench.viz import cam_class_agreement, cam_grid, localization_summary

PICK_LABELS = {
    "class": "by class",
    "disagreement": "where they disagree",
    "random": "at random",
    "upload": "upload an image",
}

with shared.page("Class activation maps", "Where do the teacher and the student look when they decide?"):
    if st.button(
        "Shapes preset: context reliance in a confounded run",
        help="A student trained on shapes whose background gives the class away",
    ):
        preset = shared_a.shapes_preset_run()
        if preset is None:
            st.info(
                "No confounded shapes run yet: train a distill run on `shapes` with option "
                "`confounding: 0.9` and teacher `shipped:shapes` (Home page)."
            )
        else:
            shared_a.apply_preset(
                {
                    "run": preset.id,
                    "ckpt": "final",
                    "method": "gradcam",
                    "target": "label",
                    "pick": "random",
                    "count": 6,
                }
            )

    run = shared.run_picker(kind=("distill", "student"))
    if run is None:
        st.stop()
    teacher = shared_a.require_teacher(run)
    c1, c2 = st.columns(2)
    ckpt = shared.checkpoint_picker(run, container=c1)
    others = {r.id: r for r in shared_a.related_runs(run)}
    scratch_id = shared.bound_selectbox(
        "Also show (e.g. the scratch student)",
        "scratch",
        ["none", *others],
        format_func=lambda i: "none" if i == "none" else shared.run_label(others[i]),
        container=c2,
    )
    student = shared.load_run_model(run.id, ckpt)
    scratch = None if scratch_id == "none" else shared.load_run_model(scratch_id, "final")

    m1, m2, m3 = st.columns(3)
    method = shared.bound_selectbox("Method", "method", list_cam_methods(), container=m1)
    st.caption(cam_method_schema(method)["description"])
    target = shared.bound_selectbox("Target class", "target", list(TARGET_MODES), container=m2)
    pick = shared.bound_selectbox(
        "Images", "pick", list(shared_a.PICKS), format_func=PICK_LABELS.get, container=m3
    )
    with st.expander(f"{method} parameters and layers"):
        method_params = shared_a.schema_form(cam_method_schema(method), f"cp.{method}")
        data = shared.run_data(run)
        layers = {}
        if get_cam_method(method).kind != "pixel":  # pixel methods explain the input, not a layer
            l1, l2 = st.columns(2)
            shape = tuple(data.image_shape)
            layers["teacher"] = shared.bound_selectbox(
                "Teacher layer",
                "tlayer",
                cam_layers(teacher, shape),
                format_func=lambda p: p or "last conv (default)",
                container=l1,
            )
            layers["student"] = shared.bound_selectbox(
                "Student layer",
                "slayer",
                cam_layers(student, shape),
                format_func=lambda p: p or "last conv (default)",
                container=l2,
            )

    p1, p2, p3 = st.columns(3)
    count = shared.bound_number("Images shown", "count", 6, min_value=1, max_value=24, container=p1)
    seed = shared.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6, container=p2)
    klass, upload = 0, None
    if pick == "class":
        klass = shared.bound_selectbox(
            "Class",
            "class",
            list(range(len(data.class_names))),
            format_func=lambda k: data.class_names[k],
            container=p3,
        )
    elif pick == "upload":
        file = p3.file_uploader("PNG or JPEG", type=["png", "jpg", "jpeg"])
        if file is None:
            st.info(f"Upload an image; it is converted to the dataset's shape {tuple(data.image_shape)}.")
            st.stop()
        upload = file.getvalue()
        if target == "label":
            st.caption("An uploaded image has no label: its maps explain the teacher's prediction.")
            target = "teacher"
    chosen = shared_a.cam_images(run, ckpt, pick, count=count, seed=seed, klass=klass, upload=upload)
    for role, layer in layers.items():  # a model without feature maps says so before any map is drawn
        model = teacher if role == "teacher" else student
        check_cam_layer(model, layer or None, tuple(data.image_shape), name=role)

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
        else [scratch_id, shared.checkpoint_stamp(others[scratch_id], "final")],
    }
    comparison = shared.cached_analysis(
        "cams",
        run.id,
        ckpt,
        settings,
        lambda: compare_cams(
            teacher,
            student,
            chosen.images,
            chosen.labels,
            method=method,
            layers={k: v or None for k, v in layers.items()},
            target=target,
            extra=None if scratch is None else {"scratch": scratch},
            class_names=data.class_names,
            masks=chosen.masks,
            device=shared.device(),
            progress=shared.progress_bar(method),
            **method_params,
        ),
    )

    s1, s2, s3 = st.columns(3)
    s1.metric("Mean Pearson r (teacher vs student maps)", f"{comparison.mean_pearson:.3f}")
    s2.metric("Mean Spearman ρ", f"{comparison.mean_spearman:.3f}")
    s3.metric(f"Mean top-{round(100 * comparison.top_k)}% IoU", f"{comparison.mean_topk_iou:.3f}")
    shared.show_figure(
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
        shared.show_figure(cam_class_agreement(comparison, data.class_names), key="cam_classes")
    if comparison.localization:
        shared.show_figure(localization_summary(comparison.localization), key="localization")
        st.caption(
            "Context reliance: the share of a map's energy outside the object. A student that learned "
            "the background confounder looks at the background, not the shape."
        )
