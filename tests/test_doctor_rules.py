"""The student doctor's rules on constructed evidence: each threshold from both sides, the findings'
experiments, the ranking, the report, config overrides, and the layering of the package."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from workbench.analysis._result import AnalysisResult
from workbench.analysis.doctor import (
    NOTE_RULES,
    RULES,
    DoctorError,
    DoctorReport,
    DoctorThresholds,
    Experiment,
    Finding,
    SoftnessResult,
    apply_overrides,
    apply_rules,
    missing_evidence,
    rank_findings,
    softness_from_logits,
)

TH = DoctorThresholds()

#: a healthy Hinton-KD run: cnn_small from the MNIST teacher, 0.1 CE + 0.9 T² KL at T = 4
HEALTHY = {
    "methods": ["kd"],
    "kd_index": 0,
    "kd_method": "kd",
    "temperature": 4.0,
    "kd_weight": 0.9,
    "ce_weight": 0.1,
    "optimizer": "sgd",
    "lr": 0.05,
    "lr_usual": 0.05,
    "lr_scale": 1.0,
    "epochs": 3,
    "steps": 96,
    "batch_size": 64,
    "train_size": 2000,
    "passes": 3.07,
    "failed": False,
    "teacher_source": "shipped:mnist",
    "student_params": 72666,
    "teacher_params": 288170,
    "param_ratio": 3.97,
    "teacher_acc": 0.994,
    "student_acc": 0.962,
    "gap": 0.032,
    "agreement": 0.962,
    "teacher_ece": 0.008,
    "student_ece": 0.02,
    "student_confidence": 0.95,
    "kd_share": 0.98,
    "teacher_soft_entropy": 0.6,
    "student_soft_entropy": 0.62,
    "teacher_train_label_acc": 0.999,
    "train_acc_last": 0.958,
    "test_acc_last": 0.96,
    "chance": 0.1,
}


def ev(**over):
    out = dict(HEALTHY)
    out.update(over)
    return out


def rules_of(evidence, th=TH):
    return [f.rule for f in apply_rules(evidence, th) if f.level == "warning"]


def test_a_healthy_hinton_run_has_no_warning():
    # the T² factor makes the logged KD term ~60x the CE term here; that is by design, not a fault
    assert rules_of(ev()) == []
    assert rules_of(ev(ce_weight=0.0, kd_weight=1.0, kd_share=1.0)) == []  # pure KD is healthy too


# (rule, evidence name, threshold name, side): "high" fires at or above, "low" at or below
BOUNDARIES = [
    ("temperature_low", "teacher_soft_entropy", "soft_low", "low"),
    ("temperature_high", "teacher_soft_entropy", "soft_high", "high"),
    ("kd_dominates", "kd_weight", "kd_weight_high", "high"),
    ("kd_vanishes", "kd_share", "kd_share_low", "low"),
    ("hint_miswired", "hint_depth_gap", "hint_depth", "high"),
    ("lr_high", "lr_scale", "lr_high", "high"),
    ("lr_low", "lr_scale", "lr_low", "low"),
    ("too_short", "passes", "passes_low", "below"),
    ("capacity_gap", "param_ratio", "param_ratio", "high"),
]


@pytest.mark.parametrize(("rule", "name", "threshold", "side"), BOUNDARIES)
def test_each_threshold_from_both_sides(rule, name, threshold, side):
    t = getattr(TH, threshold)
    eps = 1e-6 * max(1.0, abs(t))
    base = ev(hint_pair=["features.0", "features.2"])
    if rule in ("lr_high", "lr_low", "too_short", "capacity_gap"):
        base.update(gap=0.3, student_acc=0.694)  # these need the student far below the teacher
    fire, quiet = (t + eps, t - eps) if side == "high" else (t - eps, t + eps)
    if side == "low":
        assert rule in rules_of({**base, name: t}), "fires exactly at the threshold"
    if side == "high":
        assert rule in rules_of({**base, name: t})
    assert rule in rules_of({**base, name: fire})
    assert rule not in rules_of({**base, name: quiet})


def test_difference_thresholds_from_both_sides():
    # label noise: teacher test accuracy minus its accuracy on the training labels
    d = TH.label_noise
    assert "label_noise" in rules_of(ev(teacher_acc=0.99, teacher_train_label_acc=0.99 - d - 1e-6))
    assert "label_noise" not in rules_of(ev(teacher_acc=0.99, teacher_train_label_acc=0.99 - d + 1e-6))
    # without the training data: the logged training accuracy far below the test accuracy
    no_data = ev(teacher_train_label_acc=None)
    h = TH.label_noise_history
    assert "label_noise" in rules_of({**no_data, "train_acc_last": 0.9 - h - 1e-6, "test_acc_last": 0.9})
    assert "label_noise" not in rules_of({**no_data, "train_acc_last": 0.9 - h + 1e-6, "test_acc_last": 0.9})
    # ... but not when mixup/cutmix make the logged training accuracy low by construction
    assert "label_noise" not in rules_of(
        {**no_data, "train_acc_last": 0.3, "test_acc_last": 0.9, "mixing": True}
    )
    # shortcut: the student's background-following rate, less what its errors give by chance
    # ((1 - acc) / (K - 1)), minus the teacher's; only when the training data pairs contexts with classes
    s = TH.shortcut
    chance_part = (1 - 0.91) / 9
    base = ev(student_acc=0.91, teacher_context_follow=0.05, context_purity=0.9)
    assert "shortcut" in rules_of({**base, "context_follow": 0.05 + chance_part + s + 1e-6})
    assert "shortcut" not in rules_of({**base, "context_follow": 0.05 + chance_part + s - 1e-6})
    p = TH.context_purity
    strong = {**base, "context_follow": 0.6}
    assert "shortcut" in rules_of({**strong, "context_purity": p})
    assert "shortcut" not in rules_of({**strong, "context_purity": p - 1e-6})
    # the wrong teacher: test accuracy below teacher_acc
    a = TH.teacher_acc
    assert "wrong_teacher" in rules_of(ev(teacher_acc=a - 1e-6))
    assert "wrong_teacher" not in rules_of(ev(teacher_acc=a + 1e-6))
    # the gap condition of the under-training rules, from both sides
    g = TH.gap
    slow = ev(lr_scale=0.01, lr=0.0005)
    assert "lr_low" in rules_of({**slow, "gap": g + 1e-6})
    assert "lr_low" not in rules_of({**slow, "gap": g - 1e-6})


def test_a_failed_run_counts_as_far_below_the_teacher():
    failed = ev(lr=5.0, lr_scale=100.0, failed=True, failed_step=3, gap=None, student_acc=None, kd_share=None)
    found = apply_rules(failed)
    assert found[0].rule == "lr_high" and found[0].severity == 1.0
    assert found[0].experiment.overrides == {"optim.lr": 0.5}


def test_findings_speak_the_users_terms_and_carry_experiments():
    cases = {
        "capacity_gap": ev(
            param_ratio=90.0,
            student_params=3190,
            gap=0.2,
            bigger_student={"overrides": {"model.kwargs.hidden": [64]}, "text": "a student with hidden=[64]"},
        ),
        "temperature_low": ev(temperature=0.1, teacher_soft_entropy=0.0),
        "temperature_high": ev(temperature=100.0, teacher_soft_entropy=0.999),
        "shortcut": ev(context_follow=0.7, teacher_context_follow=0.01, confounding=0.95),
        "label_noise": ev(teacher_train_label_acc=0.6),
        "wrong_teacher": ev(teacher_acc=0.1, suggested_teacher="shipped:mnist"),
    }
    words = {
        "capacity_gap": "student too small for this teacher",
        "temperature_low": "soft labels are nearly one-hot",
        "temperature_high": "soft labels are nearly uniform",
        "shortcut": "learned the background, not the shape",
        "label_noise": "noisy labels",
        "wrong_teacher": "teacher is wrong for this data",
    }
    for rule, evidence in cases.items():
        top = apply_rules(evidence)[0]
        assert top.rule == rule and top.level == "warning"
        assert words[rule] in top.title.lower()
        assert isinstance(top.experiment, Experiment) and top.experiment.overrides and top.experiment.text
        assert top.experiment.goal in ("up", "down") and top.view and top.params
    assert apply_rules(cases["temperature_low"])[0].experiment.overrides == {
        "distill.methods[0].params.temperature": 4.0
    }
    assert apply_rules(cases["wrong_teacher"])[0].experiment.overrides == {
        "teachers": [{"source": "shipped:mnist"}]
    }


def test_notes_never_make_a_run_unhealthy_and_rank_below_warnings():
    sick = ev(student_ece=0.5, teacher_ece=0.01, matched_cka=[0.1], layer_pairs=[["t", "s"]])
    found = apply_rules(sick)
    assert {f.rule for f in found} == {"calibration", "representation"}
    assert all(f.level == "note" for f in found)
    report = DoctorReport(found, sick, {}, TH)
    assert report.healthy and report.warnings == []
    both = apply_rules({**sick, "teacher_soft_entropy": 0.0})
    assert both[0].rule == "temperature_low" and both[0].level == "warning"
    assert set(NOTE_RULES) <= set(RULES)


def test_ranking_warnings_first_then_severity_then_rule_order():
    def make(rule, severity, level="warning"):
        return Finding(rule, rule, severity, {}, "e", "s", "v", "r", level=level)

    ranked = rank_findings(
        [
            make("calibration", 0.99, "note"),
            make("capacity_gap", 0.6),
            make("lr_low", 0.6),
            make("shortcut", 0.9),
        ]
    )
    assert [f.rule for f in ranked] == ["shortcut", "lr_low", "capacity_gap", "calibration"]


def test_thresholds_are_validated():
    assert DoctorThresholds.from_mapping({"ece_gap": 0.1}).ece_gap == 0.1
    with pytest.raises(DoctorError, match="unknown name 'ece'; known: gap"):
        DoctorThresholds.from_mapping({"ece": 0.1})
    with pytest.raises(DoctorError, match="thresholds.gap"):
        DoctorThresholds(gap=-0.1)
    with pytest.raises(DoctorError, match="soft_low"):
        DoctorThresholds(soft_low=0.95)
    with pytest.raises(DoctorError, match="lr_low"):
        DoctorThresholds(lr_low=2.0)
    with pytest.raises(DoctorError, match="min_class_samples"):
        DoctorThresholds(min_class_samples=0)


def test_missing_evidence_is_reported():
    lacking = missing_evidence({"teacher_acc": 0.9, "why_missing": {"context_follow": "no backgrounds"}})
    assert lacking["shortcut"] == "no backgrounds"
    assert "label_noise" in lacking and "wrong_teacher" not in lacking
    # the history stands in for the training labels
    assert "label_noise" not in missing_evidence({"train_acc_last": 0.9})


def test_apply_overrides_paths_lists_and_method_expressions():
    cfg = {
        "distill": {"methods": [{"name": "kd", "weight": 0.9, "params": {}}], "ce_weight": 0.1},
        "optim": {},
    }
    apply_overrides(
        cfg, {"distill.methods[0].params.temperature": 4, "optim.lr": 0.01, "model.kwargs.hidden": [64]}
    )
    assert cfg["distill"]["methods"][0]["params"]["temperature"] == 4
    assert cfg["optim"]["lr"] == 0.01 and cfg["model"] == {"kwargs": {"hidden": [64]}}
    expr = {"distill": {"methods": "0.9*kd + at"}}
    apply_overrides(expr, {"distill.methods[1].weight": 2.0})
    assert expr["distill"]["methods"][1] == {"name": "at", "weight": 2.0}
    with pytest.raises(DoctorError, match="no item 3"):
        apply_overrides(cfg, {"distill.methods[3].weight": 1.0})
    with pytest.raises(DoctorError, match="not a config path"):
        apply_overrides(cfg, {"distill..weight": 1.0})
    exp = Experiment({"distill.ce_weight": 0.0}, "text")
    out = exp.apply(cfg)
    assert out["distill"]["ce_weight"] == 0.0 and cfg["distill"]["ce_weight"] == 0.1  # a copy


def test_softness_entropy():
    # p = (1/4, 3/4): H = -(1/4 ln 1/4 + 3/4 ln 3/4) / ln 2 = 0.811278...
    res = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=1.0)
    assert math.isclose(res.teacher_mean, 0.8112781244591328, rel_tol=1e-12)
    assert math.isclose(res.student_mean, 1.0)
    p = 1 / (1 + math.sqrt(3))
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    hot = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=2.0)
    assert math.isclose(hot.teacher_mean, h, rel_tol=1e-12)
    again = softness_from_logits(
        torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2), 1.0, class_names=["a", "b"]
    )
    assert math.isclose(again.teacher_mean, res.teacher_mean, rel_tol=1e-6)
    with pytest.raises(DoctorError, match="class_names"):
        softness_from_logits(np.zeros((1, 2)), np.zeros((1, 2)), 1.0, class_names=["a"])
    with pytest.raises(DoctorError, match="temperature"):
        softness_from_logits(np.zeros((1, 2)), np.zeros((1, 2)), 0.0)


def test_report_text_and_dict():
    evidence = ev(temperature=0.1, teacher_soft_entropy=0.001)
    found = apply_rules(evidence)
    report = DoctorReport(found, evidence, {"shortcut": "no backgrounds"}, TH, {"run": "r1", "n_samples": 10})
    text = report.to_text()
    assert "1. [" in text and found[0].title in text and "view: softness_histogram(softness)" in text
    assert "overrides: distill.methods[0].params.temperature=4" in text
    assert "shortcut: no backgrounds" in text and "Passed:" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["findings"][0]["rule"] == "temperature_low" and data["healthy"] is False
    assert data["findings"][0]["experiment"]["overrides"] == {"distill.methods[0].params.temperature": 4.0}
    assert data["thresholds"]["soft_low"] == TH.soft_low and data["meta"]["run"] == "r1"
    assert "shortcut" not in data["passed"] and "temperature_low" not in data["passed"]
    assert isinstance(found[0], AnalysisResult)
    soft = softness_from_logits(np.zeros((3, 4)), np.ones((3, 4)), 2.0)
    assert isinstance(soft, SoftnessResult)


def test_every_finding_reports_the_thresholds_it_used():
    fields = set(DoctorThresholds.__dataclass_fields__)
    sick = ev(
        teacher_acc=0.3,
        lr_scale=20.0,
        kd_weight=50.0,
        teacher_train_label_acc=0.1,
        context_follow=0.9,
        teacher_context_follow=0.0,
        hint_depth_gap=0.7,
        hint_pair=["features.0", "features.2"],
        teacher_soft_entropy=0.0,
        kd_share=0.0,
        gap=0.5,
        param_ratio=100.0,
        student_ece=0.6,
        class_rank_correlation=[0.0],
        class_counts=[10],
        matched_cka=[0.1],
        student_eigenvalue=10.0,
        scratch_eigenvalue=1.0,
    )
    found = apply_rules(sick)
    assert {f.rule for f in found} >= set(RULES) - {"temperature_high", "lr_low", "too_short"}
    for f in found:
        assert f.params and set(f.params) <= fields and 0.5 <= f.severity <= 1.0


def test_the_analyses_never_import_training_or_the_run_store():
    code = (
        "import sys, workbench.analysis.doctor, workbench.analysis; "
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in (['workbench', 'train'], "
        "['workbench', 'runs'], ['workbench', 'diagnosis'])); print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "", f"workbench.analysis imported {out.stdout.strip()}"
