"""The CAM package's contract: method registry and schemas, one-line errors, progress, cancellation,
untouched caller models, per-image targets, extra models and JSON-ready results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis._common import AnalysisError
from workbench.analysis.cam import (
    CAM_METHODS,
    CAMComparison,
    cam_method_schema,
    compare_cams,
    compute_cams,
    cross_faithfulness,
    faithfulness,
    list_cam_methods,
    localization_metrics,
)
from workbench.runtime import Cancelled, CancelToken

ELEVEN = [
    "gradcam",
    "gradcam++",
    "hirescam",
    "layercam",
    "eigencam",
    "scorecam",
    "cam",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "occlusion",
]
SMALL = {
    "integrated_gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "occlusion": {"window": 4, "stride": 4},
}


class GapNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 5, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))


def _net(seed: int) -> GapNet:
    torch.manual_seed(seed)
    model = GapNet()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "device": {str(p.device) for p in model.parameters()},
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def _assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert after.keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after[key], value), key
        assert after[key].dtype == value.dtype, key
    assert {str(p.device) for p in model.parameters()} == before["device"]
    assert {name: m.training for name, m in model.named_modules()} == before["training"]
    assert [p.requires_grad for p in model.parameters()] == before["requires_grad"]
    assert all(p.grad is None for p in model.parameters())
    for name, m in model.named_modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(m, hooks, {}), f"{name}.{hooks}"


def _train_mode_model(seed: int) -> GapNet:
    model = _net(seed).train()
    model.features[1].eval()  # a per-module flag that must survive
    return model


# ---- registry ----------------------------------------------------------------------------------------
def test_registry_lists_the_eleven_methods_with_schemas():
    assert list_cam_methods() == ELEVEN and list(CAM_METHODS) == ELEVEN
    for name in ELEVEN:
        schema = cam_method_schema(name)
        assert (
            schema["title"] == name and schema["description"] and schema["x-kind"] == CAM_METHODS[name].kind
        )
        for prop in schema["properties"].values():
            assert "default" in prop and prop["description"]
        json.dumps(schema)
    props = cam_method_schema("smoothgrad")["properties"]
    assert set(props) == {"samples", "noise", "seed"}
    assert props["samples"]["default"] == 16 and props["samples"]["minimum"] == 1
    assert props["noise"]["exclusiveMinimum"] == 0.0
    assert set(cam_method_schema("occlusion")["properties"]) == {"window", "stride"}
    assert cam_method_schema("integrated_gradients")["properties"]["steps"]["default"] == 32
    assert cam_method_schema("gradcam")["properties"] == {}
    kinds = {CAM_METHODS[m].kind for m in ELEVEN}
    assert kinds == {"gradient", "activation", "score", "cam", "pixel"}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"method": "gradkam"}, ["method", "did you mean 'gradcam'"]),
        ({"method": "smoothgrad", "smoothgrad_samples": 3}, ["smoothgrad_samples", "did you mean 'samples'"]),
        ({"method": "integrated_gradients", "step": 3}, ["step", "did you mean 'steps'"]),
        ({"method": "saliency", "samples": 3}, ["samples", "belongs to 'smoothgrad'"]),
        ({"method": "integrated_gradients", "steps": 0}, ["steps", "greater than or equal to 1"]),
        ({"method": "occlusion", "window": 99}, ["window", "image side 8"]),
        ({"target": "predictd"}, ["target", "did you mean 'predicted'"]),
        ({"device": "tpu"}, ["device"]),
    ],
)
def test_bad_method_and_params_are_one_line_analysis_errors(kwargs, words):
    model = _net(0)
    before = _snapshot(model)
    with pytest.raises(AnalysisError) as info:
        compute_cams(model, torch.randn(2, 2, 8, 8), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    _assert_untouched(model, before)


def test_compare_cams_validates_params_before_any_work():
    calls: list[int] = []
    with pytest.raises(AnalysisError, match="did you mean 'samples'"):
        compare_cams(
            _net(0), _net(1), torch.randn(2, 2, 8, 8), torch.tensor([0, 1]), method="smoothgrad",
            smoothgrad_samples=2, progress=lambda d, t, m: calls.append(d),
        )  # fmt: skip
    assert calls == []
    with pytest.raises(AnalysisError, match="layers: no model named 'studnet'; did you mean 'student'"):
        compare_cams(
            _net(0), _net(1), torch.randn(2, 2, 8, 8), torch.tensor([0, 1]), layers={"studnet": "fc"}
        )
    with pytest.raises(AnalysisError, match="labels: target='label' needs labels"):
        compare_cams(_net(0), _net(1), torch.randn(2, 2, 8, 8))


# ---- progress --------------------------------------------------------------------------------------
def _record() -> tuple[list[tuple[int, int, str]], object]:
    seen: list[tuple[int, int, str]] = []
    return seen, lambda done, total, message: seen.append((done, total, message))


def _assert_monotone_to_total(seen: list[tuple[int, int, str]]) -> int:
    assert seen, "no progress reported"
    totals = {t for _, t, _ in seen}
    assert len(totals) == 1
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and dones[0] == 0 and dones[-1] == totals.pop()
    return len(seen)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "occlusion", "saliency", "eigencam"])
def test_progress_is_monotone_and_reaches_the_total(method):
    seen, progress = _record()
    compute_cams(
        _net(2),
        torch.randn(5, 2, 8, 8),
        method=method,
        batch_size=2,
        progress=progress,
        **SMALL.get(method, {}),
    )
    reports = _assert_monotone_to_total(seen)
    assert reports >= 3 + 1  # a start and at least one report per batch (3 batches)
    if method in ("scorecam", "occlusion"):  # finer units: mask chunks / occlusion windows
        assert seen[0][1] > 6


def test_compare_and_faithfulness_progress_over_all_models():
    x, labels = torch.randn(5, 2, 8, 8), torch.tensor([0, 1, 2, 3, 0])
    seen, progress = _record()
    compare_cams(_net(3), _net(4), x, labels, extra={"scratch": _net(5)}, batch_size=2, progress=progress)
    _assert_monotone_to_total(seen)
    assert seen[-1][1] == 9  # 3 models x 3 batches
    assert {m.split(":")[0] for _, _, m in seen[1:]} >= {"teacher", "student", "scratch"}
    seen, progress = _record()
    faithfulness(_net(3), x, torch.rand(5, 8, 8), labels, steps=3, batch_size=4, progress=progress)
    assert _assert_monotone_to_total(seen) == 1 + 5  # 20 perturbed images in chunks of 4
    seen, progress = _record()
    cross_faithfulness(_net(3), _net(4), x, torch.rand(5, 8, 8), torch.rand(5, 8, 8), labels, steps=3,
                       batch_size=8, progress=progress)  # fmt: skip
    _assert_monotone_to_total(seen)


# ---- cancellation and the caller's model -------------------------------------------------------------
def _cancel_after_first(token: CancelToken):
    def progress(done: int, total: int, message: str) -> None:
        if done >= 1:
            token.cancel()

    return progress


def _one_model_calls():
    x, labels, maps = torch.randn(6, 2, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1]), torch.rand(6, 8, 8)
    calls = [
        (f"compute_cams[{m}]", lambda model, m=m, **kw: compute_cams(
            model, x, method=m, target="label", labels=labels, batch_size=2, **SMALL.get(m, {}), **kw))
        for m in ELEVEN
    ]  # fmt: skip
    calls += [
        ("faithfulness", lambda model, **kw: faithfulness(model, x, maps, labels, steps=2, batch_size=4, **kw)),
        ("compare_cams", lambda model, **kw: compare_cams(model, _net(9), x, labels, batch_size=2, **kw)),
        ("compare_cams[extra]", lambda model, **kw: compare_cams(
            _net(9), _net(8), x, labels, extra={"scratch": model}, target="teacher", batch_size=2, **kw)),
        ("cross_faithfulness", lambda model, **kw: cross_faithfulness(
            model, _net(9), x, maps, maps, labels, steps=2, batch_size=4, **kw)),
    ]  # fmt: skip
    return calls


@pytest.mark.parametrize(("name", "call"), _one_model_calls(), ids=[c[0] for c in _one_model_calls()])
def test_cancel_after_the_first_batch_raises_and_leaves_the_model_untouched(name, call):
    model = _train_mode_model(7)
    handle = model.fc.register_forward_hook(lambda *_: None)  # the caller's own hook stays, alone
    model.fc.weight.requires_grad_(False)
    before = _snapshot(model)
    token = CancelToken()
    with pytest.raises(Cancelled):
        call(model, progress=_cancel_after_first(token), cancel=token)
    assert len(model.fc._forward_hooks) == 1
    handle.remove()
    _assert_untouched(model, before)


@pytest.mark.parametrize(("name", "call"), _one_model_calls(), ids=[c[0] for c in _one_model_calls()])
def test_a_successful_call_leaves_the_model_untouched(name, call):
    model = _train_mode_model(7)
    before = _snapshot(model)
    call(model)
    _assert_untouched(model, before)


def test_a_cancelled_token_stops_before_any_work():
    token = CancelToken()
    token.cancel()
    seen, progress = _record()
    with pytest.raises(Cancelled):
        compute_cams(_net(0), torch.randn(2, 2, 8, 8), progress=progress, cancel=token)
    assert seen == []


def test_train_mode_model_gives_its_eval_mode_maps():
    x = torch.randn(4, 2, 8, 8)
    train = _train_mode_model(6)
    in_train = compute_cams(train, x, method="gradcam", target=1)
    in_eval = compute_cams(_net(6), x, method="gradcam", target=1)
    np.testing.assert_allclose(in_train.raw, in_eval.raw, rtol=1e-5, atol=1e-6)
    assert train.training


# ---- targets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_array", [False, True])
def test_target_as_a_per_image_tensor_or_array(as_array):
    model = _net(10)
    x = torch.randn(4, 2, 8, 8)
    per_image = torch.tensor([3, 0, 2, 1])
    given = per_image.numpy() if as_array else per_image
    res = compute_cams(model, x, method="gradcam", target=given, batch_size=3)
    np.testing.assert_array_equal(res.targets, per_image.numpy())
    assert res.target_mode == "explicit"
    for i in range(4):  # each image's map is the one for its own class
        single = compute_cams(model, x[i : i + 1], method="gradcam", target=int(per_image[i]))
        np.testing.assert_allclose(res.raw[i], single.raw[0], rtol=1e-5, atol=1e-6)
    out = compare_cams(model, _net(11), x, target=given)
    np.testing.assert_array_equal(out.student.targets, per_image.numpy())
    assert out.labels is None and out.params["classes_by"] == "teacher prediction"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_targets_and_labels():
    model = _net(10)
    x = torch.randn(4, 2, 8, 8, device="cuda")
    target = torch.tensor([3, 0, 2, 1], device="cuda")
    res = compute_cams(model, x, target=target, device="cuda")
    np.testing.assert_array_equal(res.targets, [3, 0, 2, 1])
    out = compare_cams(
        model, _net(11), x, target.clone(), device="cuda", masks=torch.ones(4, 8, 8, dtype=torch.bool)
    )
    assert out.teacher_localization is not None
    assert next(model.parameters()).device.type == "cpu"


def test_predicted_and_teacher_targets_with_extra_models():
    teacher, student, scratch = _net(12), _net(13), _net(14)
    x = torch.randn(5, 2, 8, 8)
    out = compare_cams(teacher, student, x, extra={"scratch": scratch}, target="teacher", method="layercam",
                       layers={"student": "features.3"})  # fmt: skip
    with torch.no_grad():
        t_pred = teacher(x).argmax(1).numpy()
    for res in out.results.values():
        np.testing.assert_array_equal(res.targets, t_pred)
    assert list(out.results) == ["teacher", "student", "scratch"]
    assert out.params["layers"] == {"teacher": "features", "student": "features.3", "scratch": "features"}
    assert [(p.a, p.b) for p in out.pairwise] == [
        ("teacher", "student"),
        ("teacher", "scratch"),
        ("student", "scratch"),
    ]
    np.testing.assert_array_equal(out.agreement("student", "teacher").pearson, out.pearson)
    alone = compute_cams(scratch, x, method="layercam", target=torch.from_numpy(t_pred))
    np.testing.assert_allclose(out.extra["scratch"].raw, alone.raw, rtol=1e-6)
    own = compare_cams(teacher, teacher, x, target="predicted", extra={"copy": teacher}, names=("a", "b"))
    np.testing.assert_allclose(own.agreement("b", "copy").topk_iou, 1.0)
    assert own.names == ("a", "b") and own.target_mode == "predicted"


# ---- results -------------------------------------------------------------------------------------------
def test_every_result_round_trips_through_json_with_class_names_and_params():
    classes = ["w", "x", "y", "z"]
    x, labels = torch.randn(3, 2, 8, 8), torch.tensor([0, 1, 3])
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    cmp = compare_cams(_net(15), _net(16), x, labels, method="integrated_gradients", steps=3, class_names=classes,
                       extra={"scratch": _net(17)}, masks=masks)  # fmt: skip
    assert isinstance(cmp, CAMComparison)
    loc = localization_metrics(cmp.teacher.maps, masks, threshold=0.3)
    faith = faithfulness(_net(15), x, cmp.teacher.maps, labels, steps=2, class_names=classes)
    cross = cross_faithfulness(_net(15), _net(16), x, cmp.teacher.maps, cmp.student.maps, labels, steps=2)
    results = [cmp, cmp.teacher, cmp.pairwise[0], loc, faith, cross]
    for res in results:
        data = res.to_dict()
        assert "class_names" in data and "params" in data and data["kind"] == type(res).__name__
        assert json.loads(json.dumps(data)) == data
    data = cmp.to_dict()
    assert data["class_names"] == classes and data["teacher"]["class_names"] == classes
    assert data["params"]["method"] == "integrated_gradients"
    assert data["params"]["method_params"] == {"steps": 3}
    assert data["teacher"]["params"]["layer"] == "input" and data["params"]["models"] == [
        "teacher",
        "student",
        "scratch",
    ]
    assert np.allclose(data["extra"]["scratch"]["maps"], cmp.extra["scratch"].maps)
    assert set(data["extra_localization"]) == {"scratch"} and len(data["pairwise"]) == 3
    assert loc.to_dict()["params"]["threshold"] == pytest.approx(0.3)
    assert faith.to_dict()["params"]["steps"] == 2 and faith.class_names == classes
    assert cross.to_dict()["teacher_map_on_student"]["mode"] == "deletion"
    with pytest.raises(AnalysisError, match="class_names: expected 4 names"):
        compute_cams(_net(15), x, class_names=["a", "b"])
