"""The student doctor: each rule on hand-chosen evidence, the ranking, the report, and end-to-end runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from workbench import viz
from workbench.analysis.doctor import (
    RULES,
    DoctorError,
    DoctorReport,
    DoctorThresholds,
    Finding,
    check_calibration,
    check_capacity_gap,
    check_context_reliance,
    check_dark_knowledge,
    check_loss_balance,
    check_representation,
    check_sharpness,
    check_softness,
    diagnose,
    diagnose_models,
    matched_depth_pairs,
    rank_findings,
    softness_from_logits,
)
from workbench.config import validate_config
from workbench.models import create_model
from workbench.runs import RunStore
from workbench.train import Trainer

TH = DoctorThresholds()


# ---- rules on constructed evidence ------------------------------------------------------------------
def test_capacity_gap_needs_a_gap_and_a_plateau():
    plateau = [0.5, 0.7, 0.80, 0.805, 0.806, 0.809]  # w = 2: gain 0.809 - 0.805 = 0.004 < 0.01
    f = check_capacity_gap(0.95, 0.80, plateau)
    assert f is not None and f.rule == "capacity_gap"
    assert math.isclose(f.evidence["gap"], 0.15) and math.isclose(f.evidence["agreement_gain"], 0.004)
    assert math.isclose(f.severity, 1 - 0.05 / (2 * 0.15))  # 5/6
    assert "takd" in f.suggestion and f.view == "training_curves" and f.result == "history"
    assert check_capacity_gap(0.95, 0.92, plateau) is None  # gap 0.03 below 0.05
    assert check_capacity_gap(0.95, 0.80, [0.5, 0.6, 0.7]) is None  # still rising: w = 1, gain 0.1
    no_history = check_capacity_gap(0.95, 0.80, None)
    assert no_history is not None and "could not be checked" in no_history.explanation
    # exactly at the threshold it fires with severity 0.5
    at = check_capacity_gap(0.75, 0.5, None, DoctorThresholds(capacity_gap=0.25))
    assert at is not None and at.severity == 0.5


def test_loss_balance_dominates_vanishes_or_passes():
    dom = check_loss_balance(0.1, 4.0)  # ratio 40 >= 20
    assert dom is not None and "dominates" in dom.title and math.isclose(dom.evidence["ratio"], 40.0)
    assert math.isclose(dom.severity, 0.75)  # 1 - 20 / 80
    van = check_loss_balance(1.0, 0.01)  # ratio 0.01 <= 0.05
    assert van is not None and "vanishes" in van.title
    assert math.isclose(van.severity, 0.9)  # 1 - 0.01 / (2 * 0.05)
    assert check_loss_balance(1.0, 0.0).severity == 1.0
    assert check_loss_balance(1.0, 5.0) is None  # ratio 5: balanced
    assert check_loss_balance(1.0, 0.06) is None and check_loss_balance(0.1, 1.9) is None
    assert check_loss_balance(0.0, 1.0) is None  # no CE term to compare with


def test_softness_flatter_sharper_and_close():
    flat = check_softness(0.3, 0.6, 4.0)
    assert flat is not None and "flatter" in flat.title and math.isclose(flat.evidence["difference"], 0.3)
    sharp = check_softness(0.6, 0.4, 4.0)
    assert sharp is not None and "sharper" in sharp.title and "Raise the temperature" in sharp.suggestion
    assert check_softness(0.5, 0.6, 4.0) is None  # 0.1 < 0.15
    assert flat.view == "softness_histogram" and flat.result == "softness"


def test_calibration_direction_and_threshold():
    over = check_calibration(0.02, 0.12, student_confidence=0.95, student_accuracy=0.85)
    assert over is not None and "overconfident" in over.title
    under = check_calibration(0.02, 0.12, student_confidence=0.6, student_accuracy=0.85)
    assert under is not None and "underconfident" in under.title
    assert check_calibration(0.02, 0.06, 0.95, 0.85) is None  # gap 0.04 < 0.05
    assert over.view == "reliability_diagrams"


def test_context_reliance():
    f = check_context_reliance(0.3, 0.7)
    assert f is not None and math.isclose(f.evidence["gap"], 0.4) and f.view == "localization_summary"
    assert check_context_reliance(0.3, 0.4) is None


def test_representation_reports_the_weakest_matched_pair():
    pairs = [("t0", "s0"), ("t2", "s1"), ("t4", "s2")]
    f = check_representation([0.9, 0.3, 0.6], pairs)
    assert f is not None and f.evidence["student_layer"] == "s1" and f.evidence["teacher_layer"] == "t2"
    assert math.isclose(f.severity, 0.5 + 0.5 * 0.2 / 0.5)  # 0.7
    assert check_representation([0.9, 0.55, 0.6], pairs) is None
    assert check_representation([float("nan")], [("a", "b")]) is None
    with pytest.raises(DoctorError, match="layer_pairs"):
        check_representation([0.1, 0.2], pairs)


def test_sharpness_ratio():
    f = check_sharpness(30.0, 10.0)
    assert f is not None and math.isclose(f.evidence["ratio"], 3.0) and math.isclose(f.severity, 0.75)
    assert check_sharpness(12.0, 10.0) is None  # 1.2 < 1.5
    assert check_sharpness(12.0, -1.0) is None  # a non-positive scratch eigenvalue is not judged


def test_dark_knowledge_only_judges_populated_classes():
    values = [0.9, 0.1, -0.5, 0.2, float("nan")]
    counts = [10, 10, 2, 10, 0]  # class 2 has too few samples to judge
    f = check_dark_knowledge(values, counts, ["a", "b", "c", "d", "e"])
    assert f is not None
    assert f.evidence["classes"] == ["b", "d"] and f.evidence["rank_correlation"] == [0.1, 0.2]
    assert math.isclose(f.severity, 0.5 + 0.5 * 0.2 / 1.3)
    assert check_dark_knowledge([0.9, 0.5], [10, 10]) is None
    assert check_dark_knowledge(values, counts, thresholds=DoctorThresholds(min_class_samples=1)).evidence[
        "classes"
    ] == ["2", "1", "3"]
    with pytest.raises(DoctorError, match="class_counts"):
        check_dark_knowledge([0.1], [1, 2])


def test_ranking_by_severity_then_rule_order():
    def make(rule: str, severity: float) -> Finding:
        return Finding(rule, rule, severity, {"x": 1.0}, "e", "s", "v", "r")

    ranked = rank_findings([make("dark_knowledge", 0.6), make("calibration", 0.9), make("capacity_gap", 0.6)])
    assert [f.rule for f in ranked] == ["calibration", "capacity_gap", "dark_knowledge"]


def test_thresholds_are_validated():
    assert DoctorThresholds.from_mapping({"ece_gap": 0.1}).ece_gap == 0.1
    with pytest.raises(DoctorError, match="unknown name 'ece'; known: capacity_gap"):
        DoctorThresholds.from_mapping({"ece": 0.1})
    with pytest.raises(DoctorError, match="thresholds.capacity_gap"):
        DoctorThresholds(capacity_gap=-0.1)
    with pytest.raises(DoctorError, match="kd_vanishes"):
        DoctorThresholds(kd_vanishes=30.0)
    with pytest.raises(DoctorError, match="min_class_samples"):
        DoctorThresholds(min_class_samples=0)


def test_softness_entropy_and_matched_depth():
    # p = (1/4, 3/4): H = -(1/4 ln 1/4 + 3/4 ln 3/4) / ln 2 = 0.811278...
    res = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=1.0)
    assert math.isclose(res.teacher_mean, 0.8112781244591328, rel_tol=1e-12)
    assert math.isclose(res.student_mean, 1.0)
    # T = 2 halves the logits: (0, ln 3 / 2) -> p = (1 / (1 + sqrt 3), sqrt 3 / (1 + sqrt 3))
    p = 1 / (1 + math.sqrt(3))
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    hot = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=2.0)
    assert math.isclose(hot.teacher_mean, h, rel_tol=1e-12)
    assert matched_depth_pairs(5, 3) == [(0, 0), (2, 1), (4, 2)]
    assert matched_depth_pairs(3, 1) == [(2, 0)]
    assert matched_depth_pairs(2, 4) == [(0, 0), (0, 1), (1, 2), (1, 3)]


def test_report_text_and_dict():
    f = check_calibration(0.02, 0.12, 0.95, 0.85)
    assert f is not None
    report = DoctorReport(
        [f],
        {"calibration": {}, "capacity_gap": {}},
        {"sharpness": "no scratch"},
        TH,
        {"run": "r1", "n_samples": 10},
    )
    text = report.to_text()
    assert "1. [" in text and f.title in text and "view: reliability_diagrams(agreement)" in text
    assert "Passed: capacity_gap" in text and "sharpness: no scratch" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["findings"][0]["rule"] == "calibration" and data["passed"] == ["capacity_gap"]
    assert data["thresholds"]["ece_gap"] == 0.05 and data["meta"]["run"] == "r1"
    assert not report.healthy


# ---- end to end ---------------------------------------------------------------------------------------
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
        _cfg(kind="teacher", model={"name": "mlp", "kwargs": {"hidden": [64]}}), dataset=digits
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


def test_diagnose_models_end_to_end_on_digits(digits, trained):
    teacher, sick, scratch = trained
    student = sick.student
    student.train()
    report = diagnose_models(
        teacher,
        student,
        digits,
        history=sick.history,
        scratch=scratch,
        temperature=4.0,
        n_samples=300,
        hessian_samples=128,
        hessian_iters=10,
    )
    assert student.training and not teacher.training  # modes restored
    assert _hooks(student) == 0 and _hooks(teacher) == 0
    assert report.meta["n_samples"] == 300 and report.meta["dataset"] == "digits"
    assert report.skipped == {"context_reliance": "the dataset has no object masks"}
    assert set(report.evidence) == set(RULES) - {"context_reliance"}
    rules = [f.rule for f in report.findings]
    assert "loss_balance" in rules  # weight 0.001 makes the KD term vanish
    ratio = report.evidence["loss_balance"]["distill_loss"] / report.evidence["loss_balance"]["ce_loss"]
    assert ratio <= TH.kd_vanishes
    sev = [f.severity for f in report.findings]
    assert sev == sorted(sev, reverse=True)
    for f in report.findings:
        assert f.rule in RULES and f.title and f.explanation and f.suggestion and f.evidence
        assert 0.5 <= f.severity <= 1.0
        assert hasattr(viz, f.view) and f.result in report.results
        assert len(viz.finding_figure(report, f).data) >= 1
    # every rule's own numbers are in the evidence, also for rules that passed
    assert 0.0 <= report.evidence["softness"]["student_entropy"] <= 1.0
    assert report.evidence["sharpness"]["scratch_eigenvalue"] > 0
    assert set(report.results["landscapes"]) == {"student", "scratch"}
    json.dumps(report.to_dict())
    assert report.to_text().startswith("Student doctor")


def test_diagnose_models_checks_context_on_masked_data():
    from workbench.data import load_dataset

    shapes = load_dataset("shapes")
    torch.manual_seed(0)
    teacher = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    student = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    report = diagnose_models(teacher, student, shapes, n_samples=24, cam_samples=12)
    ev = report.evidence["context_reliance"]
    assert 0.0 <= ev["teacher_context"] <= 1.0 and 0.0 <= ev["student_context"] <= 1.0
    cam = report.results["cam"]
    assert cam.teacher.num_images == 12
    assert math.isclose(ev["student_context"], cam.student_localization.mean_context_reliance)
    assert "softness" in report.skipped and "loss_balance" in report.skipped


def test_diagnose_models_input_errors(digits, trained):
    teacher, sick, _ = trained
    with pytest.raises(DoctorError, match="dataset"):
        diagnose_models(teacher, sick.student, object())
    with pytest.raises(DoctorError, match="temperature"):
        diagnose_models(teacher, sick.student, digits, temperature=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        diagnose_models(teacher, sick.student, digits, n_samples=0)
    with pytest.raises(DoctorError, match="history"):
        diagnose_models(teacher, sick.student, digits, history={"summary": {}})
    with pytest.raises(DoctorError, match="thresholds: unknown name"):
        diagnose_models(teacher, sick.student, digits, thresholds={"nope": 1.0})


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

    report = diagnose(
        s_id, runs_root=store.root, scratch_run=scratch_id, n_samples=200, hessian_iters=5, hessian_samples=64
    )
    assert report.meta["run"] == "kd-run" and report.meta["teacher_source"] == "run:teacher-run"
    assert report.meta["temperature"] == 3.0 and report.meta["methods"] == "kd"
    assert "sharpness" in report.evidence and "loss_balance" in report.evidence
    assert len(report.evidence["capacity_gap"]["agreement_history"]) == 2
    # the same run from its directory, with the teacher given explicitly
    again = diagnose(store.root / s_id, teacher=f"run:{t_id}", n_samples=200)
    assert again.evidence["capacity_gap"] == report.evidence["capacity_gap"]
    with pytest.raises(DoctorError, match="no teacher"):
        diagnose(scratch_id, runs_root=store.root, n_samples=50)
