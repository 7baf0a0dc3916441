"""The student doctor's rules on hand-chosen evidence, the ranking, the report, and the layering of
the package (no training or run store below the analyses)."""

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
    RULES,
    DoctorError,
    DoctorReport,
    DoctorThresholds,
    Finding,
    SoftnessResult,
    check_calibration,
    check_capacity_gap,
    check_context_reliance,
    check_dark_knowledge,
    check_loss_balance,
    check_representation,
    check_sharpness,
    check_softness,
    rank_findings,
    softness_from_logits,
)

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


def test_softness_entropy():
    # p = (1/4, 3/4): H = -(1/4 ln 1/4 + 3/4 ln 3/4) / ln 2 = 0.811278...
    res = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=1.0)
    assert math.isclose(res.teacher_mean, 0.8112781244591328, rel_tol=1e-12)
    assert math.isclose(res.student_mean, 1.0)
    # T = 2 halves the logits: (0, ln 3 / 2) -> p = (1 / (1 + sqrt 3), sqrt 3 / (1 + sqrt 3))
    p = 1 / (1 + math.sqrt(3))
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    hot = softness_from_logits(np.array([[0.0, math.log(3.0)]]), np.zeros((1, 2)), temperature=2.0)
    assert math.isclose(hot.teacher_mean, h, rel_tol=1e-12)
    assert hot.params == {"temperature": 2.0, "num_classes": 2} and hot.num_classes == 2
    # the same logits as tensors (any device) give the same entropies
    again = softness_from_logits(
        torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2), 1.0, class_names=["a", "b"]
    )
    assert math.isclose(again.teacher_mean, res.teacher_mean, rel_tol=1e-6) and again.class_names == [
        "a",
        "b",
    ]
    with pytest.raises(DoctorError, match="class_names"):
        softness_from_logits(np.zeros((1, 2)), np.zeros((1, 2)), 1.0, class_names=["a"])
    with pytest.raises(DoctorError, match="temperature"):
        softness_from_logits(np.zeros((1, 2)), np.zeros((1, 2)), 0.0)


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


def test_findings_and_reports_are_analysis_results():
    f = check_capacity_gap(0.95, 0.80, None)
    assert isinstance(f, Finding) and isinstance(f, AnalysisResult)
    assert f.params == {"capacity_gap": 0.05, "plateau_gain": 0.01}  # the thresholds it compared with
    d = json.loads(json.dumps(f.to_dict()))
    assert d["kind"] == "Finding" and d["rule"] == "capacity_gap" and d["evidence"]["agreement_gain"] is None
    assert d["params"]["capacity_gap"] == 0.05
    soft = softness_from_logits(np.zeros((3, 4)), np.ones((3, 4)), 2.0)
    assert isinstance(soft, SoftnessResult) and isinstance(soft, AnalysisResult)
    sd = json.loads(json.dumps(soft.to_dict()))
    assert sd["kind"] == "SoftnessResult" and sd["student_entropy"] == [1.0, 1.0, 1.0]
    th = DoctorThresholds(ece_gap=0.1)
    calib = check_calibration(0.0, 0.2, 0.9, 0.8, th)
    assert calib is not None and calib.params == {"ece_gap": 0.1}
    # every rule that fires reports the thresholds it used, each one a field of DoctorThresholds
    fired = [
        check_loss_balance(0.1, 4.0),
        check_softness(0.3, 0.6, 4.0),
        check_context_reliance(0.3, 0.7),
        check_representation([0.1], [("t", "s")]),
        check_sharpness(30.0, 10.0),
        check_dark_knowledge([0.0], [10]),
    ]
    fields = set(DoctorThresholds.__dataclass_fields__)
    for found in fired:
        assert found is not None and found.rule in RULES and found.params and set(found.params) <= fields


def test_report_to_dict_json_dumps_with_class_names_and_params():
    f = check_dark_knowledge([0.1, 0.9], [10, 10], ["cat", "dog"])
    assert f is not None
    report = DoctorReport(
        [f],
        {"dark_knowledge": {"per_class_rank_correlation": np.array([0.1, np.nan])}},
        {},
        TH,
        {"run": "r1", "shape": (1, 8, 8)},
        {"agreement": object()},  # results are not part of the summary
        class_names=["cat", "dog"],
        params={"n_samples": np.int64(10), "layer_pairs": [("t.0", "s.0")], "temperature": np.float32(4.0)},
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["kind"] == "DoctorReport" and data["class_names"] == ["cat", "dog"]
    assert data["params"] == {"n_samples": 10, "layer_pairs": [["t.0", "s.0"]], "temperature": 4.0}
    assert data["evidence"]["dark_knowledge"]["per_class_rank_correlation"] == [0.1, None]
    assert data["findings"][0]["evidence"]["classes"] == ["cat"] and "results" not in data
    assert data["passed"] == [] and data["meta"]["shape"] == [1, 8, 8]


def test_the_analyses_never_import_training_or_the_run_store():
    code = (
        "import sys, workbench.analysis.doctor, workbench.analysis; "
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in (['workbench', 'train'], "
        "['workbench', 'runs'])); print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "", f"workbench.analysis imported {out.stdout.strip()}"
