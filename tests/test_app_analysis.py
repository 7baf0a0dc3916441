"""The analysis pages of the Streamlit app (CAMs, similarity, landscape, agreement) on a tiny run store.

Each page is run with ``streamlit.testing.v1.AppTest``: it renders without an exception, its
controls exist, changing a control changes what is drawn, and a bad value shows one message.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages `import app`, however pytest is started
    sys.path.insert(0, str(ROOT))
PAGES = ROOT / "app" / "views"
TIMEOUT = 90

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def app_store(tmp_path_factory):
    """A run store with a digits teacher, a KD student and a scratch student (cnn_small, two epochs,
    per-epoch snapshots), an MLP KD student, and a KD student on confounded ``shapes`` from the
    shipped shapes teacher. Returns ``{"root": path, name: run id}``."""
    from workbench.config import validate_config
    from workbench.runs import RunStore
    from workbench.train import Trainer

    root = tmp_path_factory.mktemp("app_runs")
    store = RunStore(root)
    ids: dict[str, str] = {"root": str(root)}
    digits = {"dataset": "digits", "batch_size": 64}
    budget = {"epochs": 2, "max_steps": 30, "device": "cpu"}
    optim = {"name": "adamw", "lr": 0.003}

    def train(name: str, **cfg: object) -> str:
        config = validate_config({"name": name, "optim": optim, **cfg})
        result = Trainer(config, store=store).run()
        assert result.status == "completed"
        ids[name] = result.run_id
        return result.run_id

    teacher = train("teacher", kind="teacher", data=digits, model={"name": "cnn_small"}, train=budget)
    from_teacher = [{"source": f"run:{teacher}"}]
    train(
        "kd",
        kind="distill",
        data=digits,
        model={"name": "cnn_small"},
        teachers=from_teacher,
        distill={"methods": "0.9*kd", "ce_weight": 0.1},
        train=budget,
    )
    train(
        "scratch",
        kind="student",
        data=digits,
        model={"name": "cnn_small"},
        teachers=from_teacher,
        train=budget,
    )
    train(
        "mlp",
        kind="distill",
        data=digits,
        model={"name": "mlp"},
        teachers=from_teacher,
        distill={"methods": "kd"},
        train=budget,
    )
    train(
        "shapes",
        kind="distill",
        data={
            "dataset": "shapes",
            "batch_size": 64,
            "options": {"n_train": 256, "n_test": 64, "confounding": 0.9},
        },
        model={"name": "cnn_small"},
        teachers=[{"source": "shipped:shapes"}],
        distill={"methods": "kd"},
        train={"epochs": 1, "max_steps": 4, "device": "cpu"},
    )
    return ids


@pytest.fixture()
def store(app_store, monkeypatch):
    """The session store as the app's ``WORKBENCH_RUNS``; background work ends before the next test."""
    monkeypatch.setenv("WORKBENCH_RUNS", app_store["root"])
    yield app_store
    from app.lib import loaders

    loaders.join_background(120)


def page(name: str, **params: object) -> AppTest:
    """An AppTest of one page file with the URL parameters ``params``, run once."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not errors(at), errors(at)


def _decode(value: object) -> object:
    """Plotly's typed arrays (``{"dtype", "bdata", "shape"}``) as numpy arrays, recursively."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def figures(at: AppTest) -> list[dict]:
    """The plotly figures drawn, as dicts whose typed arrays are numpy arrays."""
    return [_decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def same(a: object, b: object) -> bool:
    """Whether two decoded figure parts are equal (arrays compared elementwise, NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def param(at: AppTest, key: str) -> str:
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value


def widget(at: AppTest, kind: str, label: str):
    found = [w for w in getattr(at, kind) if w.label.startswith(label)]
    assert found, f"no {kind} labelled {label!r}: {[w.label for w in getattr(at, kind)]}"
    return found[0]


# ---- agreement ----------------------------------------------------------------------------------------
def test_agreement_page_renders_and_reacts(store):
    at = page("agreement", run=store["kd"], n_samples=200)
    assert_clean(at)
    for label in ("Run", "Checkpoint"):
        widget(at, "selectbox", label)
    for label in ("Samples", "Seed", "Images shown", "Sample"):
        widget(at, "number_input", label)
    slider = widget(at, "slider", "Temperature")
    assert slider.value == 4.0  # the run's kd temperature
    figs = figures(at)
    assert len(figs) == 7
    kd_before = [m.value for m in at.metric if m.label.startswith("KD loss of the student")]
    slider.set_value(1.0).run()
    assert_clean(at)
    kd_after = [m.value for m in at.metric if m.label.startswith("KD loss of the student")]
    assert kd_before != kd_after
    assert param(at, "temperature") == "1.0"  # the URL holds the view


def test_agreement_page_unknown_run_shows_one_message(store):
    at = page("agreement", run="no-such-run")
    assert not at.exception
    assert any("not found" in w.value for w in at.warning)


def test_agreement_page_run_without_teacher_says_so(store):
    at = page("agreement", run=store["teacher"])
    # a teacher run is not offered: the picker falls back to a run with a teacher
    assert not at.exception
    assert at.selectbox[0].value != store["teacher"]


# ---- class activation maps ------------------------------------------------------------------------------
def heatmaps(fig: dict) -> list:
    return [t["z"] for t in fig["data"] if t.get("type") == "heatmap"]


def png_bytes(size: tuple[int, int], mode: str = "RGB", noise: bool = True) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8) if noise else np.zeros(shape, dtype=np.uint8)
    img = Image.fromarray(pixels, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_cam_page_renders_and_method_switch_changes_the_maps(store):
    at = page("cams", run=store["kd"], count=3)
    assert_clean(at)
    for key in ("run", "checkpoint", "scratch", "method", "target", "pick", "teacher_layer", "layer"):
        assert at.selectbox(key=f"qp:{key}") is not None
    assert list(at.selectbox(key="qp:pick").options) == ["by class", "where they disagree", "at random",
                                                          "upload an image"]  # vocabulary.IMAGE_CHOICES
    assert param(at, "teacher_layer") == "" and param(at, "layer") == ""  # blank: the default layer
    assert at.selectbox(key="qp:method").value == "gradcam"
    grid = figures(at)[0]
    assert len(heatmaps(grid)) == 6  # 3 images x (teacher, student)
    at.selectbox(key="qp:method").set_value("eigencam").run()
    assert_clean(at)
    assert param(at, "method") == "eigencam"
    assert not same(heatmaps(figures(at)[0]), heatmaps(grid))
    # a layer method's parameters appear in the form; switching to a pixel method drops the layer pickers
    at.selectbox(key="qp:method").set_value("smoothgrad").run()
    assert_clean(at)
    assert any(w.key == "qp:cp.smoothgrad.samples" for w in at.number_input)
    assert not [w for w in at.selectbox if w.key == "qp:teacher_layer"]


def test_cam_page_disagreement_pick_with_scratch_run(store):
    at = page("cams", run=store["kd"], pick="disagreement", scratch=store["scratch"], count=2, target="predicted")
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) >= 1 and set(table.columns) >= {"pearson", "spearman", "top-k IoU"}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_cam_page_upload_png_and_bad_files(store):
    at = page("cams", run=store["kd"], pick="upload")
    assert_clean(at)
    assert at.info  # asks for a file
    at.file_uploader[0].set_value(("digit.png", png_bytes((20, 30)), "image/png")).run()
    assert_clean(at)
    assert len(heatmaps(figures(at)[0])) == 2  # one image, converted to 1x8x8
    at.file_uploader[0].set_value(("bad.png", b"this is not an image", "image/png")).run()
    assert not at.exception
    assert errors(at) == ["upload: not a readable PNG or JPEG image"]
    at.file_uploader[0].set_value(("huge.png", png_bytes((5000, 5000), "L", noise=False), "image/png")).run()
    assert not at.exception
    assert len(errors(at)) == 1 and "5000x5000 pixels" in errors(at)[0]


def test_cam_page_shapes_preset_shows_context_reliance(store):
    at = page("cams", run=store["kd"])
    preset = [b for b in at.button if b.label.startswith("Shapes preset")]
    assert preset
    preset[0].click().run()
    assert_clean(at)
    assert at.selectbox(key="qp:run").value == store["shapes"]
    loc = figures(at)[-1]
    names = {t["name"] for t in loc["data"]}
    assert {"teacher", "student"} <= names
    assert "context reliance" in loc["data"][0]["x"]


def test_cam_page_unknown_run_and_bad_method_say_so(store):
    at = page("cams", run="../../etc", method="nonsense")
    assert not at.exception
    assert any("not found" in w.value for w in at.warning)
    assert at.selectbox(key="qp:method").value == "gradcam"
    assert any(w.value.startswith("Method: 'nonsense' from the link is not an allowed value") for w in at.warning)


def test_cam_page_bad_link_values_warn_one_line_each(store):
    at = page("cams", run=store["kd"], method="gradcam++x", pick="best", teacher_layer="no.such.layer")
    assert_clean(at)
    shown = sorted(w.value.split(":")[0] for w in at.warning)
    assert shown == ["Images", "Method", "Teacher layer"]
    assert param(at, "method") == "gradcam" and param(at, "pick") == "class" and param(at, "teacher_layer") == ""


def test_cam_page_layers_from_the_link_reach_the_maps(store):
    at = page("cams", run=store["kd"], count=2)
    layers = at.selectbox(key="qp:layer").options
    assert layers[0] == "last conv (default)" and len(layers) > 1
    default_maps = heatmaps(figures(at)[0])
    at = page("cams", run=store["kd"], count=2, layer=layers[1])
    assert_clean(at)
    assert at.selectbox(key="qp:layer").value == layers[1]
    assert not same(heatmaps(figures(at)[0]), default_maps)


def test_teacher_of_a_shapes_run_is_shaped_from_its_dataset(store):
    """The shipped shapes teacher takes the shapes dataset's 3-channel images (the old loader guessed an
    MNIST-shaped 1x28x28 input where a run's model spec said nothing)."""

    def script(run_id: str):
        import streamlit as st
        import torch

        from app.lib import loaders, state

        run = state.get_run(run_id)
        data = loaders.dataset(run)
        with torch.no_grad():
            out = loaders.require_teacher(run)(torch.zeros(2, *data.image_shape))
        st.write(f"{tuple(data.image_shape)} {tuple(out.shape)} {len(data.class_names)}")

    at = AppTest.from_function(script, args=(store["shapes"],), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    shape, out, classes = at.markdown[0].value.split(") ")
    assert shape.startswith("(3, ") and out == f"(2, {classes}"


# ---- feature similarity ---------------------------------------------------------------------------------
def test_similarity_page_epoch_slider_changes_the_heatmap(store):
    at = page("similarity", run=store["kd"], n_samples=64)
    assert_clean(at)
    slider = at.select_slider(key="qp:checkpoint")
    assert list(slider.options) == ["epoch_001", "epoch_002", "final"]
    assert slider.value == "final"
    for key in ("qp:kernel", "qp:proj"):
        assert at.selectbox(key=key) is not None
    cka, emb = figures(at)
    assert emb["data"] and all(t["type"] == "scattergl" for t in emb["data"])
    slider.set_value("epoch_001").run()
    assert_clean(at)
    assert param(at, "checkpoint") == "epoch_001"
    assert not same(heatmaps(figures(at)[0]), heatmaps(cka))


def test_similarity_page_over_training_lines(store):
    at = page("similarity", run=store["kd"], n_samples=64, over=1)
    assert_clean(at)
    lines = figures(at)[1]
    assert all(list(t["x"]) == [1, 2] for t in lines["data"])  # one point per saved epoch


def test_similarity_page_bad_sample_count_from_link_warns(store):
    at = page("similarity", run=store["kd"], n_samples="lots")
    assert not at.exception
    assert any("Samples" in w.value for w in at.warning)


# ---- loss landscape -------------------------------------------------------------------------------------
def settle(at: AppTest, seconds: float = 180.0) -> AppTest:
    """Rerun until the background landscape has finished (no progress bar left, a figure drawn)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if at.exception or at.error or (not at.get("progress") and figures(at)):
            return at
        time.sleep(0.5)
        at.run()
    shown = [p.proto.text for p in at.get("progress")] + [c.value for c in at.caption]
    raise AssertionError(f"the landscape did not finish: {shown}")


def test_landscape_page_plane_fills_in_and_switches(store):
    at = settle(page("landscape", run=store["kd"], n_samples=64, steps=5))
    assert_clean(at)
    for key in ("qp:run", "qp:checkpoint", "qp:view", "qp:show"):
        assert at.selectbox(key=key) is not None
    assert at.multiselect(key="qp:metric").value == ["cross_entropy"]
    contours = figures(at)[0]
    z = [t["z"] for t in contours["data"] if t["type"] == "contour"]
    assert len(z) == 1 and np.isfinite(np.asarray(z[0], dtype=float)).all()
    assert np.asarray(z[0]).shape == (5, 5)
    at.selectbox(key="qp:show").set_value("3-D surface").run()
    assert_clean(at)
    assert [t["type"] for t in figures(at)[0]["data"]][0] == "surface"
    at.multiselect(key="qp:metric").set_value(["cross_entropy", "kd", "agreement"]).run()
    settle(at)
    assert_clean(at)
    at.selectbox(key="qp:show").set_value("contours").run()
    assert len([t for t in figures(at)[0]["data"] if t["type"] == "contour"]) == 3


def test_landscape_page_returning_does_not_recompute(store):
    first = settle(page("landscape", run=store["kd"], n_samples=64, steps=5, seed=3))
    second = page("landscape", run=store["kd"], n_samples=64, steps=5, seed=3)
    assert not second.get("progress")  # served from the finished job, no new computation
    assert same(figures(second), figures(first))


def test_landscape_page_hessian_from_the_link(store):
    at = settle(page("landscape", run=store["kd"], n_samples=64, steps=5, hess=1, hiters=3, n_probes=2))
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    assert "Top eigenvalue λ_max" in shown and "Trace (Hutchinson)" in shown
    assert np.isfinite(float(shown["Top eigenvalue λ_max"]))
    assert np.isfinite(float(shown["Trace (Hutchinson)"].split(" ± ")[0]))


def test_landscape_page_stop_keeps_the_partial_grid(store):
    at = page("landscape", run=store["kd"], n_samples=300, steps=41, seed=7)
    assert_clean(at)
    stop = [b for b in at.button if b.label == "Stop"]
    assert stop, "the landscape finished before it could be stopped"
    stop[0].click().run()
    for _ in range(40):
        if any(w.value.startswith("Stopped after") for w in at.warning):
            break
        import time

        time.sleep(0.5)
        at.run()
    assert any(w.value.startswith("Stopped after") for w in at.warning)
    assert [b for b in at.button if b.label == "Restart"]
    # let the stopped thread end before the next test traces a model (torch.fx patches
    # nn.Module.__call__ process-wide while it traces, so concurrent forwards interfere)
    from app.lib import loaders

    assert loaders.join_background(60)


def test_landscape_page_line_interpolation_and_hessian(store):
    at = settle(page("landscape", run=store["kd"], n_samples=64, steps=5, view="line", metric="cross_entropy,kd"))
    assert_clean(at)
    assert len([t for t in figures(at)[0]["data"] if t.get("mode") == "lines+markers"]) == 2
    at = settle(page("landscape", run=store["kd"], n_samples=64, steps=5, view="interpolation", other=store["scratch"]))
    assert_clean(at)
    assert at.selectbox(key="qp:other").value == store["scratch"]
    at = settle(page("landscape", run=store["kd"], n_samples=64, steps=3, hess=1, hiters=3, n_probes=2))
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "Top eigenvalue λ_max" in labels and "Trace (Hutchinson)" in labels


def test_landscape_page_interpolation_to_other_architecture_is_not_offered(store):
    at = page("landscape", run=store["mlp"], view="interpolation")
    assert not at.exception
    assert any("No other run of this architecture" in i.value for i in at.info)
