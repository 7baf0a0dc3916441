"""The student doctor on real networks: the evidence it gathers, its progress and cancellation, the
layer pairs it compares, and a stored run diagnosed through :mod:`workbench.diagnosis`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from workbench import viz
from workbench.analysis.doctor import (
    RULES,
    DoctorError,
    DoctorInputs,
    DoctorThresholds,
    config_temperature,
    dataset_inputs,
    diagnose_models,
    distilled_layer_pairs,
)
from workbench.analysis.similarity import cka_matrix
from workbench.config import validate_config
from workbench.diagnosis import diagnose
from workbench.models import create_model
from workbench.models.taps import match_stages
from workbench.runs import RunStore
from workbench.runtime import Cancelled, CancelToken
from workbench.train import Trainer

TH = DoctorThresholds()


def _cfg(**over):
    base = {
        "kind": "student",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 512},
        "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2},
    }
    base.update(over)
    return validate_config(base)


@pytest.fixture(scope="module")
def trained(digits):
    teacher = Trainer(
        _cfg(kind="teacher", model={"name": "mlp", "kwargs": {"hidden": [64, 32]}}), dataset=digits
    ).run()
    # a deliberately mis-weighted student: the KD term is scaled by 0.001, so it vanishes next to CE
    sick = Trainer(
        _cfg(kind="distill", distill={"methods": "0.001*kd"}, train={"epochs": 2, "max_steps": 30}),
        dataset=digits,
        teachers=[teacher.student],
    ).run()
    scratch = Trainer(_cfg(train={"epochs": 1}), dataset=digits).run()
    return teacher.student, sick, scratch.student


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def _state(model: torch.nn.Module) -> dict:
    """Everything an analysis must leave as it was: weights, flags, gradients, hooks, device."""
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "hooks": _hooks(model),
        "device": {p.device for p in model.parameters()},
    }


def _same(model: torch.nn.Module, before: dict) -> None:
    after = _state(model)
    assert after["training"] == before["training"] and after["requires_grad"] == before["requires_grad"]
    assert after["grads"] == before["grads"] and after["hooks"] == before["hooks"] == 0
    assert after["device"] == before["device"]
    assert after["weights"].keys() == before["weights"].keys()
    for k, v in before["weights"].items():
        assert torch.equal(after["weights"][k], v), k


# ---- end to end ---------------------------------------------------------------------------------------
def test_diagnose_models_end_to_end_on_digits(digits, trained):
    teacher, sick, scratch = trained
    student = sick.student
    student.train()
    before = {"teacher": _state(teacher), "student": _state(student), "scratch": _state(scratch)}
    sick_cfg = _cfg(kind="distill", teachers=[{"source": "run:t"}], distill={"methods": "0.001*kd"})
    report = diagnose_models(
        teacher,
        student,
        inputs=dataset_inputs(digits, n_samples=300),
        history=sick.history,
        config=sick_cfg,
        scratch=scratch,
        temperature=4.0,
        hessian_samples=128,
        hessian_iters=10,
        meta={"dataset": digits.name},
    )
    assert student.training and not teacher.training  # modes as they were
    for name, model in (("teacher", teacher), ("student", student), ("scratch", scratch)):
        _same(model, before[name])
    assert report.meta["n_samples"] == 300 and report.meta["dataset"] == "digits"
    # digits records no per-image context and the run wired no hint: those rules are not checked
    assert report.skipped["shortcut"] == "the data records no per-image context (e.g. backgrounds)"
    assert "hint_miswired" in report.skipped and "kd_vanishes" not in report.skipped
    rules = [f.rule for f in report.findings]
    assert rules[0] == "kd_vanishes"  # weight 0.001 against ce 1: the teacher hardly shapes the gradient
    assert report.evidence["kd_share"] <= TH.kd_share_low
    top = report.findings[0]
    assert top.experiment.overrides == {"distill.methods[0].weight": 0.9, "distill.ce_weight": 0.1}
    warn = [f.severity for f in report.warnings]
    assert warn == sorted(warn, reverse=True)
    for f in report.findings:
        assert f.rule in RULES and f.title and f.explanation and f.suggestion and f.evidence
        assert 0.5 <= f.severity <= 1.0
        assert hasattr(viz, f.view) and f.result in report.results
        assert len(viz.finding_figure(report, f).data) >= 1
    # the evidence is one flat mapping of named numbers, also for rules that did not fire
    ev = report.evidence
    assert 0.0 <= ev["student_soft_entropy"] <= 1.0 and 0.0 <= ev["teacher_soft_entropy"] <= 1.0
    assert math.isclose(ev["gap"], ev["teacher_acc"] - ev["student_acc"])
    assert ev["scratch_eigenvalue"] > 0 and ev["kd_weight"] == 0.001 and ev["ce_weight"] == 1.0
    assert 0.0 <= ev["teacher_train_label_acc"] <= 1.0 and ev["param_ratio"] > 1
    assert set(report.results["landscapes"]) == {"student", "scratch"}
    # every view a finding can name draws the result the doctor keeps for it, fired or not
    for view, key in (
        ("landscape_comparison", "landscapes"),
        ("cka_heatmap", "cka"),
        ("softness_histogram", "softness"),
        ("reliability_diagrams", "agreement"),
        ("rank_correlation_bars", "agreement"),
        ("training_curves", "history"),
        ("loss_terms", "history"),
    ):
        assert len(getattr(viz, view)(report.results[key]).data) >= 1, view
    # without a run config the CKA pairs are the stages feature distillation pairs by default
    shape = tuple(digits.image_shape)
    expected = [(t, s) for s, t in match_stages(student, teacher, shape, shape)]
    assert report.evidence["layer_pairs"] == [list(p) for p in expected]
    assert report.params["layer_pairs_source"] == "match_stages" and report.params["temperature"] == 4.0
    assert report.class_names == [str(c) for c in digits.class_names]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["params"]["layer_pairs"] == [list(p) for p in expected] and data["class_names"][0] == "0"
    assert report.to_text().startswith("Student doctor")


def test_progress_is_one_monotone_bar_over_the_analyses(digits, trained):
    teacher, sick, scratch = trained
    calls: list[tuple[int, int, str]] = []
    diagnose_models(
        teacher,
        sick.student,
        inputs=dataset_inputs(digits, n_samples=120),
        scratch=scratch,
        hessian_samples=64,
        hessian_iters=3,
        progress=lambda done, total, message: calls.append((done, total, message)),
    )
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[0] == 0
    totals = {c[1] for c in calls}
    assert len(totals) == 1 and done[-1] == totals.pop()
    assert len(set(done)) > 8  # each analysis's own steps show within its share, not only its end
    text = " | ".join(c[2] for c in calls)
    for label in ("agreement", "CKA", "Hessian (student)", "Hessian (scratch)", "landscape (student)"):
        assert label in text, label


@pytest.mark.parametrize("stop_at", ["CKA", "Hessian (student)", "landscape (scratch)"])
def test_cancel_midway_raises_and_leaves_the_models_unchanged(digits, trained, stop_at):
    teacher, sick, scratch = trained
    student = sick.student
    student.train()
    before = {"teacher": _state(teacher), "student": _state(student), "scratch": _state(scratch)}
    token = CancelToken()
    seen: list[str] = []

    def progress(done: int, total: int, message: str) -> None:
        seen.append(message)
        if stop_at in message:
            token.cancel()

    with pytest.raises(Cancelled):
        diagnose_models(
            teacher,
            student,
            inputs=dataset_inputs(digits, n_samples=120),
            scratch=scratch,
            hessian_samples=64,
            hessian_iters=3,
            progress=progress,
            cancel=token,
        )
    assert any(stop_at in m for m in seen)
    # nothing after the stop ran: no later analysis reported
    later = {"CKA": "Hessian", "Hessian (student)": "landscape", "landscape (scratch)": "never"}[stop_at]
    assert not any(later in m for m in seen)
    for name, model in (("teacher", teacher), ("student", student), ("scratch", scratch)):
        _same(model, before[name])


def test_cka_pairs_follow_the_runs_hint_layers(digits, trained):
    teacher, sick, _ = trained  # teacher: mlp [64, 32] (stages layers.0, layers.1); student: mlp [16]
    student = sick.student
    shape = tuple(digits.image_shape)
    fitnet = _cfg(
        kind="distill",
        teachers=[{"source": "run:t"}],
        distill={
            "methods": [
                {"name": "kd", "params": {"temperature": 2.0}},
                {
                    "name": "fitnet",
                    "params": {"student_layers": ["layers.0"], "teacher_layers": ["layers.0"]},
                },
                {"name": "vkd", "params": {"student_layer": "layers.0", "teacher_layer": "layers.1"}},
                {"name": "rkd", "params": {"student_layer": "layers.0"}},  # one side only: no pair
            ]
        },
    )
    pairs, source = distilled_layer_pairs(teacher, student, shape, fitnet)
    assert source == "config" and pairs == [("layers.0", "layers.0"), ("layers.1", "layers.0")]
    assert config_temperature(fitnet) == 2.0
    # a run without hint layers: the stages the feature methods pair by default
    plain_kd = _cfg(kind="distill", teachers=[{"source": "run:t"}], distill={"methods": "kd"})
    default, source = distilled_layer_pairs(teacher, student, shape, plain_kd)
    assert source == "match_stages"
    assert default == [(t, s) for s, t in match_stages(student, teacher, shape, shape)]
    assert default != pairs  # the hint layers really change the pairs (layers.1 is the last teacher stage)

    inputs = dataset_inputs(digits, n_samples=100)
    report = diagnose_models(teacher, student, inputs=inputs, config=fitnet)
    ev = report.evidence
    assert ev["layer_pairs"] == [list(p) for p in pairs] and report.params["layer_pairs_source"] == "config"
    assert report.meta["temperature"] == 2.0 and "teacher_soft_entropy" in ev  # T from the config
    # the student's one stage is its last (depth 1); fitnet wires it to the teacher's layers.0 (depth 1/2,
    # a gap of 0.5) while vkd's pair (layers.0 ~ layers.1) has the same depth: the worst pair is reported
    assert ev["hint_pair"] == ["layers.0", "layers.0"] and ev["hint_depth_gap"] == pytest.approx(0.5)
    assert ev["hint_fix"]["student_layer"] == "layers.0"  # the student has no stage at depth 1/2
    direct = cka_matrix(
        teacher,
        student,
        inputs.images,
        layers={"teacher": ["layers.0", "layers.1"], "student": ["layers.0"]},
    )
    assert ev["matched_cka"] == pytest.approx([float(direct.matrix[0, 0]), float(direct.matrix[1, 0])])
    # explicit layers= override the config
    over = diagnose_models(teacher, student, inputs=inputs, config=fitnet, layers={"layers.1": "layers.0"})
    assert over.evidence["layer_pairs"] == [["layers.1", "layers.0"]]
    assert over.params["layer_pairs_source"] == "layers"


def test_diagnose_models_checks_context_on_masked_data():
    from workbench.data import load_dataset

    shapes = load_dataset("shapes")
    torch.manual_seed(0)
    teacher = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    student = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    inputs = dataset_inputs(shapes, n_samples=24)
    assert inputs.masks is not None and len(inputs.masks) == 24
    assert inputs.context is not None and inputs.context_classes is not None
    report = diagnose_models(teacher, student, inputs=inputs, cam_samples=12)
    ev = report.evidence
    assert 0.0 <= ev["teacher_context"] <= 1.0 and 0.0 <= ev["student_context"] <= 1.0
    assert 0.0 <= ev["context_follow"] <= 1.0 and "shortcut" not in report.skipped
    cam = report.results["cam"]
    assert cam.teacher.num_images == 12
    assert math.isclose(ev["student_context"], cam.student_localization.mean_context_reliance)
    assert "temperature_low" in report.skipped and "kd_vanishes" in report.skipped


def test_diagnose_models_input_errors(digits, trained):
    teacher, sick, _ = trained
    inputs = dataset_inputs(digits, n_samples=50)
    x, y = inputs.images, inputs.labels
    with pytest.raises(DoctorError, match="dataset"):
        dataset_inputs(object())
    with pytest.raises(DoctorError, match="images"):
        diagnose_models(teacher, sick.student, object(), y)
    with pytest.raises(DoctorError, match="labels"):
        diagnose_models(teacher, sick.student, x, y[:10])
    with pytest.raises(DoctorError, match="temperature"):
        diagnose_models(teacher, sick.student, x, y, temperature=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        dataset_inputs(digits, n_samples=0)
    with pytest.raises(DoctorError, match="history"):
        diagnose_models(teacher, sick.student, x, y, history={"summary": {}})
    with pytest.raises(DoctorError, match="thresholds: unknown name"):
        diagnose_models(teacher, sick.student, x, y, thresholds={"nope": 1.0})
    with pytest.raises(DoctorError, match=r"layers\[0\]"):
        diagnose_models(teacher, sick.student, x, y, layers=["layers.0"])
    with pytest.raises(DoctorError, match="masks"):
        diagnose_models(teacher, sick.student, x, y, masks=torch.zeros(3, 8, 8))
    with pytest.raises(DoctorError, match="config"):
        diagnose_models(teacher, sick.student, x, y, config={"distill": {}})
    # the data goes in once: as inputs=, or as images, labels and the data keywords
    assert isinstance(inputs, DoctorInputs) and len(inputs) == 50
    with pytest.raises(DoctorError, match="images: pass the data either as inputs="):
        diagnose_models(teacher, sick.student, x, y, inputs=inputs)
    with pytest.raises(DoctorError, match="masks: pass the data either as inputs="):
        diagnose_models(teacher, sick.student, inputs=inputs, masks=torch.zeros(50, 8, 8))
    with pytest.raises(DoctorError, match="inputs: expected DoctorInputs"):
        diagnose_models(teacher, sick.student, inputs={"images": x, "labels": y})
    with pytest.raises(TypeError, match="'hessian_iter'"):
        diagnose_models(teacher, sick.student, inputs=inputs, hessian_iter=3)


def test_diagnose_honours_a_cancel_before_loading(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        diagnose("no-such-run", store=tmp_path, cancel=token)


@pytest.mark.slow
def test_diagnose_a_stored_run(digits, tmp_path):
    store = RunStore(tmp_path / "runs")
    t_cfg = _cfg(kind="teacher", model={"name": "mlp", "kwargs": {"hidden": [64]}})
    t_id = Trainer(t_cfg, dataset=digits, store=store, run_id="teacher-run").run().run_id
    kd = _cfg(
        kind="distill",
        teachers=[{"source": f"run:{t_id}"}],
        distill={"methods": [{"name": "kd", "params": {"temperature": 3.0}}]},
    )
    s_id = Trainer(kd, dataset=digits, store=store, run_id="kd-run").run().run_id
    scratch_id = (
        Trainer(_cfg(train={"epochs": 1}), dataset=digits, store=store, run_id="scratch-run").run().run_id
    )

    calls: list[tuple[int, int]] = []
    report = diagnose(
        s_id,
        store=store.root,
        scratch_run=scratch_id,
        n_samples=200,
        hessian_iters=5,
        hessian_samples=64,
        progress=lambda d, t, m: calls.append((d, t)),
    )
    assert report.meta["run"] == "kd-run" and report.meta["teacher_source"] == "run:teacher-run"
    assert report.meta["temperature"] == 3.0 and report.meta["methods"] == "kd"
    assert report.meta["dataset"] == "digits" and report.meta["n_samples"] == 200
    assert "scratch_eigenvalue" in report.evidence and report.evidence["kd_share"] > TH.kd_share_low
    assert len(report.evidence["test_acc_history"]) == 2 and report.evidence["steps"] > 0
    assert report.healthy, report.to_text()
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == calls[-1][1]
    # the same run from its directory, with the teacher given explicitly
    again = diagnose(store.root / s_id, teacher=f"run:{t_id}", n_samples=200)
    assert again.evidence["teacher_acc"] == report.evidence["teacher_acc"]
    assert again.evidence["student_acc"] == report.evidence["student_acc"]
    with pytest.raises(DoctorError, match="no teacher"):
        diagnose(scratch_id, store=store.root, n_samples=50)
