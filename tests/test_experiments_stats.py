"""Seed statistics, paired differences, their sentences and the EMA, against hand-computed values.

The arithmetic is written next to each expected number; Student-t quantiles are from tables:
t_{0.975, 4} = 2.776445, t_{0.975, 2} = 4.302653, t_{0.95, 4} = 2.131847.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.experiments import (
    ResultsError,
    ema,
    metric_direction,
    metric_unit,
    paired_difference,
    seed_stats,
)

T_975_4 = 2.776445
T_975_2 = 4.302653
T_95_4 = 2.131847


# ---- seed_stats ------------------------------------------------------------------------------------
def test_seed_stats_hand_values():
    s = seed_stats([0.80, 0.82, 0.81, 0.83, 0.79])
    # mean = 4.05 / 5 = 0.81; deviations -0.01 0.01 0 0.02 -0.02, squares sum 1e-4+1e-4+0+4e-4+4e-4 = 1e-3
    # sample variance = 1e-3 / (5 - 1) = 2.5e-4, std = sqrt(2.5e-4) = 0.0158114
    assert s.mean == pytest.approx(0.81)
    assert s.std == pytest.approx(0.0158114, rel=1e-5)
    assert (s.min, s.max, s.n, s.dropped) == (pytest.approx(0.79), pytest.approx(0.83), 5, 0)


def test_seed_stats_ignores_non_finite_and_counts_them():
    s = seed_stats([1.0, float("nan"), 3.0, None, float("inf")])
    # kept 1 and 3: mean 2, std sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt(2)
    assert (s.mean, s.n, s.dropped) == (2.0, 2, 3)
    assert s.std == pytest.approx(math.sqrt(2))


def test_seed_stats_one_and_no_value():
    one = seed_stats([0.5])
    assert (one.mean, one.min, one.max, one.n) == (0.5, 0.5, 0.5, 1) and math.isnan(one.std)
    none = seed_stats([])
    assert none.n == 0 and all(math.isnan(v) for v in (none.mean, none.std, none.min, none.max))
    assert seed_stats(np.array([2, 4])).to_dict()["mean"] == 3.0


def test_seed_stats_rejects_non_numbers():
    with pytest.raises(ResultsError, match=r"values\[1\]: expected a number, got str"):
        seed_stats([1.0, "x"])
    with pytest.raises(ResultsError, match="boolean"):
        seed_stats([True])
    with pytest.raises(ResultsError, match="sequence of numbers"):
        seed_stats("123")


# ---- paired_difference -----------------------------------------------------------------------------
def _unclear() -> tuple[dict[int, float], dict[int, float]]:
    # differences a - b: 0.01 -0.01 0.00 0.02 0.005 (in points: 1, -1, 0, 2, 0.5)
    b = {s: 0.80 for s in range(5)}
    a = {0: 0.81, 1: 0.79, 2: 0.80, 3: 0.82, 4: 0.805}
    return a, b


def test_paired_difference_hand_values_five_seeds():
    a, b = _unclear()
    d = paired_difference(a, b)
    # mean = (1 - 1 + 0 + 2 + 0.5) / 5 = 0.5 points = 0.005
    # deviations 0.5 -1.5 -0.5 1.5 0 -> squares 0.25 2.25 0.25 2.25 0 = 5; variance 5 / 4 = 1.25 points^2
    # std = sqrt(1.25) = 1.118034 points; standard error = sqrt(1.25 / 5) = 0.5 points
    # half-width = t_{0.975, 4} * 0.5 = 2.776445 * 0.5 = 1.388223 points
    assert d.n == 5 and d.seeds == (0, 1, 2, 3, 4)
    assert d.mean == pytest.approx(0.005, abs=1e-12)
    assert d.std == pytest.approx(0.01118034, rel=1e-6)
    assert d.low == pytest.approx(0.005 - 0.01388223, rel=1e-5)
    assert d.high == pytest.approx(0.005 + 0.01388223, rel=1e-5)
    assert d.includes_zero and d.verdict("test_acc") == "even"
    assert d.differences == pytest.approx((0.01, -0.01, 0.0, 0.02, 0.005))


def test_paired_difference_other_confidence():
    a, b = _unclear()
    d = paired_difference(a, b, confidence=0.9)
    # half-width = t_{0.95, 4} * 0.5 points = 1.065924 points
    assert d.high - d.mean == pytest.approx(T_95_4 * 0.005, rel=1e-5)
    assert d.confidence == 0.9


def test_paired_difference_only_common_finite_seeds():
    d = paired_difference({0: 0.9, 1: 0.8, 2: float("nan"), 7: 0.5}, {0: 0.7, 1: 0.7, 2: 0.7, 9: 0.1})
    # common seeds 0, 1, 2; seed 2 dropped (nan); differences 0.2, 0.1 -> mean 0.15
    # std = sqrt(((0.05)^2 + (0.05)^2) / 1) = 0.0707107; half = t_{0.975, 1} * 0.0707107 / sqrt(2) = 12.7062 * 0.05
    assert d.seeds == (0, 1) and d.dropped == (2,) and d.only_a == (7,) and d.only_b == (9,)
    assert d.mean == pytest.approx(0.15)
    assert d.high - d.mean == pytest.approx(12.706205 * 0.05, rel=1e-5)


def test_paired_difference_under_two_seeds_has_no_interval():
    one = paired_difference({0: 0.9, 1: 0.8}, {0: 0.7})
    assert one.n == 1 and math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.std)
    assert "no interval" in one.note and not one.has_interval and one.includes_zero is None
    assert one.verdict("test_acc") == "unknown"
    none = paired_difference({0: 0.9}, {1: 0.7})
    assert none.n == 0 and math.isnan(none.mean) and "no seed" in none.note


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ResultsError, match="confidence"):
        paired_difference({0: 1.0}, {0: 1.0}, confidence=1.5)
    with pytest.raises(ResultsError, match="a: expected a mapping"):
        paired_difference([1.0], {0: 1.0})
    with pytest.raises(ResultsError, match=r"b\[0\]: expected a number"):
        paired_difference({0: 1.0}, {0: "x"})


# ---- sentences -------------------------------------------------------------------------------------
def _clear() -> tuple[dict[int, float], dict[int, float]]:
    # differences a - b: 0.05 0.04 0.03 -> mean 0.04 (4.0 points), std 0.01 (1.0 point)
    # half-width = t_{0.975, 2} * 1.0 / sqrt(3) = 4.302653 * 0.577350 = 2.484138 points -> 1.5 to 6.5
    return {0: 0.85, 1: 0.86, 2: 0.84}, {0: 0.80, 1: 0.82, 2: 0.81}


def test_sentence_not_distinguishable():
    a, b = _unclear()
    text = paired_difference(a, b).sentence("DKD", "KD", "test_acc")
    # 0.5 ± 1.118 points, interval 0.5 ± 1.388 = -0.888 to 1.888
    assert text == (
        "DKD beats KD by 0.5 ± 1.1 points over 5 seeds (95 % interval \u22120.9 to 1.9); "
        "the interval includes 0: not distinguishable at this budget."
    )


def test_sentence_clear_win_and_clear_loss():
    a, b = _clear()
    win = paired_difference(a, b)
    assert win.low == pytest.approx(0.04 - T_975_2 * 0.01 / math.sqrt(3), rel=1e-5)
    assert win.verdict("test_acc") == "win"
    assert win.sentence("DKD", "KD", "test_acc") == (
        "DKD beats KD by 4.0 ± 1.0 points over 3 seeds (95 % interval 1.5 to 6.5); "
        "the interval excludes 0: a clear win at this budget."
    )
    loss = paired_difference(b, a)  # the same numbers the other way round: a shortfall of 4 points
    assert loss.verdict("test_acc") == "loss"
    assert loss.sentence("KD", "DKD", "test_acc") == (
        "KD trails DKD by 4.0 ± 1.0 points over 3 seeds (95 % interval 1.5 to 6.5); "
        "the interval excludes 0: a clear loss at this budget."
    )


def test_sentence_lower_is_better_metric():
    # test loss: DKD's is lower by 0.04 ± 0.01 (interval 0.0152 to 0.0648) -> DKD beats KD; a loss is
    # not in points, and the numbers get as many decimals as the std's first digit needs
    a, b = _clear()
    lower = paired_difference(b, a)  # b - a = -0.04: a lower loss
    assert lower.verdict("test_loss") == "win"
    assert lower.sentence("DKD", "KD", "test_loss") == (
        "DKD beats KD by 0.04 ± 0.01 in test_loss over 3 seeds (95 % interval 0.02 to 0.06); "
        "the interval excludes 0: a clear win at this budget."
    )


def test_sentence_explicit_unit_and_few_seeds():
    a, b = _clear()
    assert " 4.0 ± 1.0 points " in paired_difference(a, b).sentence("A", "B", "mystery", unit="points")
    assert "by 0.04 ± 0.01 % " in paired_difference(a, b).sentence("A", "B", "test_acc", unit="%")
    one = paired_difference({3: 0.9}, {3: 0.8}).sentence("DKD", "KD", "test_acc")
    assert one == (
        "DKD beats KD by 10.0 points on 1 seed (seed 3); one seed gives no interval: run more seeds "
        "before calling it."
    )
    none = paired_difference({3: 0.9}, {4: 0.8}).sentence("DKD", "KD", "test_acc")
    assert none == "DKD and KD share no seed with a finite test_acc: nothing to compare."
    even = paired_difference({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}).sentence("A", "B", "test_acc")
    assert even.startswith("A and B are even: 0.0 ± 0.0 points over 2 seeds")


def test_metric_direction_and_unit():
    assert [metric_direction(m) for m in ("test_acc", "agreement", "batch_acc")] == [1, 1, 1]
    assert [metric_direction(m) for m in ("test_loss", "loss/kd", "ece", "kl_teacher_student")] == [-1] * 4
    assert [metric_direction(m) for m in ("lr", "step", "epoch")] == [0, 0, 0]
    assert metric_unit("test_acc") == ("points", 100.0) and metric_unit("ece") == ("", 1.0)


# ---- ema -------------------------------------------------------------------------------------------
def test_ema_hand_values():
    # weight 0.5: s1 = 0.5*1 = 0.5 -> / (1 - 0.5) = 1
    # s2 = 0.5*0.5 + 0.5*2 = 1.25 -> / 0.75 = 1.666667
    # s3 = 0.5*1.25 + 0.5*3 = 2.125 -> / 0.875 = 2.428571
    # nan passes through without moving the average; then s4 = 0.5*2.125 + 0.5*4 = 3.0625 -> / 0.9375
    out = ema([1, 2, 3, float("nan"), 4], 0.5)
    assert out[:3] == pytest.approx([1.0, 5 / 3, 2.125 / 0.875])
    assert math.isnan(out[3])
    assert out[4] == pytest.approx(3.0625 / 0.9375)


def test_ema_weights():
    values = [3.0, 1.0, 2.0]
    assert ema(values, 0.0).tolist() == values  # no smoothing
    # weight 0.9: the debiased first value is the value itself: 0.1*3 / (1 - 0.9) = 3
    # s2 = 0.9*0.3 + 0.1*1 = 0.37 -> / (1 - 0.81) = 1.947368
    out = ema(values, 0.9)
    assert out[0] == pytest.approx(3.0) and out[1] == pytest.approx(0.37 / 0.19)
    assert ema([], 0.6).size == 0
    with pytest.raises(ResultsError, match="weight"):
        ema(values, 1.0)
    with pytest.raises(ResultsError, match="weight"):
        ema(values, -0.1)
    with pytest.raises(ResultsError, match="values"):
        ema(["a"], 0.5)
