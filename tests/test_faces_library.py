"""What the app and the widgets share from the library: uploaded images (workbench.data.uploads), a
run's distillation temperature (workbench.runs.inspect), landscape objectives by name
(workbench.analysis.objectives) and the CAM layer helpers (workbench.analysis.cam.layers)."""

from __future__ import annotations

import io
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis._common import AnalysisError
from workbench.data import DataError

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

PIXEL_MESSAGE = "expected a 4-D feature map; this model has none — use a pixel method"


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR chunk declaring ``width x height``, followed by no pixel data."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def _jpeg_header_only(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, then a baseline SOF0 segment declaring ``width x height``; no scan."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof


# ---- uploads ----------------------------------------------------------------------------------------
def test_upload_png_becomes_the_datasets_shape_with_its_values():
    from workbench.data.uploads import decode_upload

    flat = Image.new("L", (30, 20), color=200)  # a uniform image stays uniform after any resize
    out = decode_upload(_encode(flat), (1, 8, 8))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (1, 1, 8, 8)
    assert torch.all(out == 200)
    red = Image.new("RGB", (16, 16), color=(255, 0, 0))
    gray = decode_upload(_encode(red), (1, 16, 16))
    assert torch.all(gray == 76)  # ITU-R 601 luma: 0.299 * 255 = 76.2
    rgb = decode_upload(_encode(red), (3, 4, 5))
    assert tuple(rgb.shape) == (1, 3, 4, 5)
    assert torch.all(rgb[0, 0] == 255) and torch.all(rgb[0, 1:] == 0)


def test_upload_jpeg_decodes_and_its_header_size_is_read():
    from workbench.data.uploads import decode_upload, image_header_size

    data = _encode(Image.new("RGB", (37, 23), color=(10, 120, 240)), "JPEG")
    assert image_header_size(data) == (37, 23)
    out = decode_upload(data, (3, 6, 6))
    assert tuple(out.shape) == (1, 3, 6, 6)
    means = out[0].float().mean(dim=(1, 2))
    assert torch.allclose(means, torch.tensor([10.0, 120.0, 240.0]), atol=6)  # lossy, but close


def test_upload_too_many_pixels_refused_from_the_header_before_decoding():
    from workbench.data.uploads import MAX_UPLOAD_PIXELS, decode_upload, image_header_size

    before = Image.MAX_IMAGE_PIXELS
    # headers only: decoding would fail, so the size check must come first to give this message
    for data in (_png_header_only(5000, 5000), _jpeg_header_only(5000, 5000)):
        assert image_header_size(data) == (5000, 5000)
        with pytest.raises(DataError, match=r"^upload: the image has 5000x5000 pixels; at most 16,000,000"):
            decode_upload(data, (1, 8, 8))
    side = int(MAX_UPLOAD_PIXELS**0.5)
    assert side * side <= MAX_UPLOAD_PIXELS
    with pytest.raises(DataError, match="not a readable"):  # within the bound: decoding is tried
        decode_upload(_png_header_only(side, side), (1, 8, 8))
    assert Image.MAX_IMAGE_PIXELS == before  # the process-wide Pillow limit is left alone


def test_upload_bad_files_and_shapes_say_so_in_one_line():
    from workbench.data.uploads import MAX_UPLOAD_BYTES, decode_upload

    good = _encode(Image.new("L", (4, 4)))
    cases = [
        (b"", (1, 8, 8), "upload: the file is empty"),
        (b"this is not an image", (1, 8, 8), "upload: not a readable PNG or JPEG image"),
        (good[:30], (1, 8, 8), "upload: not a readable PNG or JPEG image"),  # truncated after IHDR
        (_encode(Image.new("L", (4, 4)), "GIF"), (1, 8, 8), "upload: not a readable PNG or JPEG image"),
        (b"\x00" * (MAX_UPLOAD_BYTES + 1), (1, 8, 8), "bytes; at most"),
        (good, (2, 8, 8), "upload: image_shape"),
        (good, (1, 0, 8), "upload: image_shape"),
    ]
    for data, shape, message in cases:
        with pytest.raises(DataError) as info:
            decode_upload(data, shape)
        text = str(info.value)
        assert message in text and "\n" not in text and text.startswith("upload")


# ---- a run's temperature ---------------------------------------------------------------------------
def test_kd_temperature_of_a_config_a_mapping_and_a_run():
    from workbench.config import validate_config
    from workbench.runs.inspect import kd_temperature

    teacher = [{"source": "shipped:digits"}]
    hot = {"kind": "distill", "teachers": teacher,
           "distill": {"methods": [{"name": "dkd", "params": {"temperature": 7.0}},
                                   {"name": "kd", "params": {"temperature": 2.5}}]}}
    assert kd_temperature(hot) == 2.5
    assert kd_temperature(validate_config(hot)) == 2.5
    assert kd_temperature(SimpleNamespace(config=validate_config(hot))) == 2.5  # a Run reads .config
    plain_kd = {"kind": "distill", "teachers": teacher, "distill": {"methods": [{"name": "kd"}]}}
    assert kd_temperature(plain_kd) == 4.0  # the kd method's default
    assert kd_temperature({"kind": "student"}) == 4.0  # no kd term: the method's default
    with pytest.raises(TypeError, match="run_or_config"):
        kd_temperature(3.0)


def test_kd_temperature_of_a_stored_run(tmp_path):
    from workbench.config import validate_config
    from workbench.runs import RunStore
    from workbench.runs.inspect import kd_temperature

    store = RunStore(tmp_path / "runs")
    cfg = validate_config({"kind": "distill", "teachers": [{"source": "shipped:digits"}],
                           "distill": {"methods": [{"name": "kd", "params": {"temperature": 3.0}}]}})
    writer = store.create(cfg)
    run = store.load(writer.id)
    assert kd_temperature(run) == 3.0


# ---- landscape objectives --------------------------------------------------------------------------
def test_landscape_objectives_by_name_with_kd_at_the_given_temperature():
    from workbench.analysis.objectives import landscape_objectives

    student = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    teacher = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2])
    objs = landscape_objectives(["kd", "cross_entropy"], temperature=2.0)
    assert list(objs) == ["kd", "cross_entropy"]
    t = 2.0  # T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean (Hinton et al. 2015)
    p = torch.softmax(teacher / t, 1)
    expected = t * t * (p * (p.log() - torch.log_softmax(student / t, 1))).sum(1).mean()
    assert torch.allclose(objs["kd"](student, labels, teacher), expected, atol=1e-6)
    ce = -torch.log_softmax(student, 1)[torch.arange(2), labels].mean()
    assert torch.allclose(objs["cross_entropy"](student, labels, None), ce, atol=1e-6)
    default = landscape_objectives("kd")["kd"](student, labels, teacher)
    p4 = torch.softmax(teacher / 4.0, 1)
    at4 = 16.0 * (p4 * (p4.log() - torch.log_softmax(student / 4.0, 1))).sum(1).mean()
    assert torch.allclose(default, at4, atol=1e-6) and not torch.allclose(default, expected)


def test_landscape_objectives_bad_names_and_temperature():
    from workbench.analysis.objectives import landscape_objectives

    with pytest.raises(AnalysisError, match=r"^objective: unknown 'ce'; known: cross_entropy"):
        landscape_objectives(["ce"])
    with pytest.raises(AnalysisError, match="objective: expected at least one"):
        landscape_objectives([])
    with pytest.raises(AnalysisError, match="temperature"):
        landscape_objectives(["kd"], temperature=-1.0)


# ---- CAM layers ------------------------------------------------------------------------------------
def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def _mlp() -> nn.Module:
    from workbench.models import create_model

    return create_model("mlp", num_classes=3, in_channels=1, image_size=8)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_cam_layers_lists_feature_maps_only():
    from workbench.analysis.cam import cam_layers

    cnn = _tiny_cnn()
    layers = cam_layers(cnn, (1, 8, 8))
    assert layers[0] == ""  # the default first, then the stages (here the relu), then other maps
    assert layers[1] == "1"
    assert {"0", "1"} <= set(layers[1:])  # conv and relu give (B, 4, 8, 8)
    assert "4" not in layers and "3" not in layers  # flatten and linear outputs are not maps
    assert "2" in layers  # the pooled (B, 4, 1, 1) output is still 4-D
    mlp = _mlp()
    mlp.train()
    assert cam_layers(mlp, (1, 8, 8)) == [""]  # no map anywhere: only the default
    assert mlp.training and _hooks(mlp) == 0  # the dummy forward left the model as it was


def test_cam_layer_helpers_probe_their_own_copy():
    from workbench.analysis.cam import cam_layers, check_cam_layer

    cnn = _tiny_cnn()
    cnn.train()
    calls: list[int] = []
    handle = cnn[0].register_forward_hook(lambda *_: calls.append(1))
    cam_layers(cnn, (1, 8, 8))
    check_cam_layer(cnn, "0", (1, 8, 8))
    assert calls == []  # the caller's modules never ran: the dummy forward was on a copy
    assert cnn.training and all(p.requires_grad for p in cnn.parameters())
    assert len(cnn[0]._forward_hooks) == 1  # the caller's own hook is still there, nothing added
    handle.remove()


def test_check_cam_layer_resolves_and_explains_what_is_wrong():
    from workbench.analysis.cam import check_cam_layer

    cnn = _tiny_cnn()
    assert check_cam_layer(cnn, None, (1, 8, 8)) == "1"  # last 4-D map before pooling
    assert check_cam_layer(cnn, "", (1, 8, 8)) == "1"
    assert check_cam_layer(cnn, "0", (1, 8, 8)) == "0"
    with pytest.raises(AnalysisError, match=r"^layer '4': expected a 4-D feature map, got a 2-D output"):
        check_cam_layer(cnn, "4", (1, 8, 8))
    with pytest.raises(AnalysisError, match=r"^layer 'nope': no such module; feature maps: 1, 0, 2$"):
        check_cam_layer(cnn, "nope", (1, 8, 8))
    mlp = _mlp()
    mlp.eval()
    with pytest.raises(AnalysisError) as info:
        check_cam_layer(mlp, None, (1, 8, 8), name="student")
    text = str(info.value)
    assert text == (
        "student: layer 'layers.1': expected a 4-D feature map; this model has none — "
        "use a pixel method (saliency, integrated_gradients, occlusion)"
    )
    with pytest.raises(AnalysisError, match=r"^layer 'fc': " + PIXEL_MESSAGE):
        check_cam_layer(mlp, "fc", (1, 8, 8))
    assert _hooks(mlp) == 0 and not mlp.training


def test_a_pixel_method_works_on_the_model_the_layer_check_refuses():
    from workbench.analysis.cam import compute_cams

    mlp = _mlp()
    result = compute_cams(mlp, torch.randn(2, 1, 8, 8), method="saliency")
    assert np.asarray(result.maps).shape[-2:] == (8, 8)


# ---- the faces use them ------------------------------------------------------------------------------
def test_cam_explorer_offers_the_library_layers_and_says_why_an_mlp_has_none():
    pytest.importorskip("ipywidgets")
    from workbench.analysis.cam import cam_layers
    from workbench.widgets import CamExplorer

    cnn, mlp = _tiny_cnn(), _mlp()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    panel = CamExplorer(cnn, mlp, x, y, n_images=2)
    assert list(panel.controls["teacher_layer"].options) == ["default", *cam_layers(cnn, (1, 8, 8))[1:]]
    assert list(panel.controls["layer"].options) == ["default"]
    assert panel.error is not None and panel.error.startswith("student: layer 'layers.1'")
    assert PIXEL_MESSAGE in panel.error
    panel.set(method="saliency")
    assert panel.error is None and panel.figure is not None


def test_app_method_forms_read_fields_from_the_library():
    pytest.importorskip("streamlit")
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from app.lib import forms as app_forms
    from workbench.distill import forms

    assert app_forms.schema_fields is forms.schema_fields and app_forms.parse_field_text is forms.parse_field_text


# ---- free-text method fields, read once for both faces (workbench.distill.forms) -----------------
def _field(method: str, name: str):
    from workbench.distill import method_schema
    from workbench.distill.forms import schema_fields

    return next(f for f in schema_fields(method_schema(method)) if f.name == name)


def test_free_text_fields_are_read_by_kind():
    from workbench.distill.forms import parse_field_text, text_hint

    layers, layer = _field("fitnet", "student_layers"), _field("cat_kd", "student_layer")
    assistants, nce_k = _field("takd", "assistants"), _field("crd", "nce_k")
    assert [text_hint(f) for f in (layers, layer, assistants, nce_k)] == [
        "comma-separated", "text", "YAML or JSON", "number"]
    assert parse_field_text(layers, "   ") == (False, None)  # blank keeps the default
    assert parse_field_text(layers, "stages.0, stages.1 ,") == (True, ["stages.0", "stages.1"])
    assert parse_field_text(layers, "[a, b]") == (True, ["a", "b"])
    assert parse_field_text(layer, "3") == (True, "3")  # a layer path stays text, never an int
    assert parse_field_text(layer, "yes") == (True, "yes")  # ... nor a YAML boolean
    assert parse_field_text(nce_k, "256") == (True, 256)
    assert parse_field_text(assistants, "[{model: cnn_small}]") == (True, [{"model": "cnn_small"}])
    with pytest.raises(ValueError) as err:
        parse_field_text(assistants, "[{model: x")
    assert str(err.value).startswith("assistants: ") and "\n" not in str(err.value)


def test_app_and_widgets_read_the_same_text_the_same_way(tmp_path):
    pytest.importorskip("ipywidgets")
    from workbench.widgets import TrainPanel

    panel = TrainPanel(store=tmp_path / "runs", dataset="mnist", teacher="shipped:mnist", methods="fitnet")
    panel.set(**{"fitnet.student_layers": "stages.1, stages.2", "fitnet.teacher_layers": "stages.1,stages.2"})
    assert panel.error is None, panel.error
    (fitnet,) = panel.config.distill.methods
    assert fitnet.params["student_layers"] == ["stages.1", "stages.2"]
    assert fitnet.params["teacher_layers"] == ["stages.1", "stages.2"]
    panel.set(methods=["takd"], **{"takd.assistants": "[{model: x"})
    assert panel.error is not None and panel.error.startswith("takd.assistants: ") and "\n" not in panel.error


def test_one_temperature_reader_for_the_views_and_the_doctor():
    from workbench.analysis.doctor import config_temperature
    from workbench.config import validate_config
    from workbench.distill import distillation_temperature
    from workbench.runs.inspect import kd_temperature

    teacher = [{"source": "shipped:digits"}]
    dkd_only = validate_config({"teachers": teacher, "distill": {"methods": [
        {"name": "fitnet"}, {"name": "dkd", "params": {"temperature": 7.0}}]}})
    assert distillation_temperature(dkd_only) == 7.0  # fitnet has none; dkd's is the run's
    assert config_temperature(dkd_only) == kd_temperature(dkd_only) == 7.0
    unweighted_kd = validate_config({"teachers": teacher, "distill": {"methods": [
        {"name": "kd", "weight": 0.0, "params": {"temperature": 2.0}}, {"name": "dist"}]}})
    assert distillation_temperature(unweighted_kd) == 1.0  # a kd term of weight 0 does not count: dist's default T=1
    scratch = validate_config({})
    assert distillation_temperature(scratch) is None and config_temperature(scratch) is None
    assert kd_temperature(scratch) == 4.0
