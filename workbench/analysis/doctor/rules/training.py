"""The rules that read how the student was trained: the learning rate, the length of training
and the student's size, each against how far the student ends below its teacher."""

from __future__ import annotations

import math

from workbench.analysis.doctor.findings import Experiment, Finding
from workbench.analysis.doctor.rules._helpers import (
    Evidence,
    _below,
    _beyond,
    _far_below,
    _num,
    _pct,
    _pick,
    _used,
)
from workbench.analysis.doctor.thresholds import DoctorThresholds

__all__ = ["check_lr_high", "check_lr_low", "check_too_short", "check_capacity_gap"]


def check_lr_high(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Learning rate too high: the rate is ``lr_high`` times the optimizer's usual one or more and
    training diverged (non-finite loss) or left the student far below the teacher."""
    scale = _num(ev, "lr_scale")
    lr = _num(ev, "lr")
    if scale is None or lr is None or not scale >= th.lr_high:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    failed = bool(ev.get("failed"))
    how = (
        f"the loss became non-finite at step {ev.get('failed_step')}"
        if failed
        else f"the student ends {_pct(gap)} below the teacher"
    )
    new_lr = float(f"{lr / 10:.3g}")
    text = f"Train again with optim.lr={new_lr:g} (a tenth) from the same seed."
    return Finding(
        rule="lr_high",
        title=f"Learning rate too high: training is unstable (lr {lr:g})",
        severity=1.0 if failed else _beyond(scale, th.lr_high),
        evidence=_pick(ev, "lr", "lr_scale", "optimizer", "failed", "gap", "loss_rise"),
        explanation=(
            f"The learning rate {lr:g} is {scale:.0f} times the usual rate for {ev.get('optimizer', 'the optimizer')}, "
            f"and {how}: the steps overshoot, so the student cannot settle where the teacher leads it."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "lr_high", "gap"),
        experiment=Experiment({"optim.lr": new_lr}, text, metric="student_acc", goal="up"),
    )


def check_lr_low(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Learning rate too low: the student is far below the teacher (``gap``) and the rate is at or
    below ``lr_low`` times the optimizer's usual one: it is under-trained, not too small."""
    scale = _num(ev, "lr_scale")
    lr = _num(ev, "lr")
    if scale is None or lr is None or not scale <= th.lr_low:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    usual = _num(ev, "lr_usual") or lr * 10
    text = f"Train again with optim.lr={usual:g} (the usual rate for {ev.get('optimizer', 'this optimizer')}), same seed."
    return Finding(
        rule="lr_low",
        title=f"Learning rate too low (lr {lr:g}): the student is under-trained",
        severity=max(_below(math.log10(scale), math.log10(th.lr_low), -3.0), _beyond(gap, th.gap)),
        evidence=_pick(ev, "lr", "lr_scale", "optimizer", "gap", "student_acc", "teacher_acc"),
        explanation=(
            f"The learning rate {lr:g} is {1 / scale:.0f} times below the usual rate, and the student ends "
            f"{_pct(gap)} below the teacher: it has not had the steps to learn what the teacher shows."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "lr_low", "gap"),
        experiment=Experiment({"optim.lr": usual}, text, metric="gap", goal="down"),
    )


def check_too_short(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Too few steps: the student is far below the teacher and saw less than ``passes_low`` passes
    over its training data."""
    passes = _num(ev, "passes")
    if passes is None or not passes < th.passes_low:
        return None
    gap = _far_below(ev, th)
    if gap is None:
        return None
    text = "Train for 3 full epochs (train.epochs=3, no max_steps), same seed."
    return Finding(
        rule="too_short",
        title=f"Too few epochs: the student saw {passes:.2f} passes over its data",
        severity=max(_below(passes, th.passes_low, 0.0), _beyond(gap, th.gap)),
        evidence=_pick(ev, "passes", "steps", "epochs", "gap", "student_acc", "teacher_acc"),
        explanation=(
            f"Training stopped after {ev.get('steps')} steps, {passes:.2f} passes over the training data, with the "
            f"student {_pct(gap)} below the teacher: it stopped before it could learn what the teacher shows."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "passes_low", "gap"),
        experiment=Experiment({"train.epochs": 3, "train.max_steps": None}, text, metric="gap", goal="down"),
    )


def check_capacity_gap(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Student too small for this teacher: far below the teacher (``gap``) with ``param_ratio`` or
    fewer times the teacher's parameters (Cho & Hariharan 2019; Mirzadeh et al. 2020, TAKD)."""
    ratio = _num(ev, "param_ratio")
    gap = _num(ev, "gap")
    if ratio is None or gap is None or ev.get("failed") or not (ratio >= th.param_ratio and gap >= th.gap):
        return None
    bigger = ev.get("bigger_student") or {}
    over = dict(bigger.get("overrides") or {})
    what = bigger.get("text") or "a larger student"
    text = (
        f"Train {what} with the same recipe and seed (or distil through a teacher assistant, method 'takd')."
    )
    return Finding(
        rule="capacity_gap",
        title=f"Student too small for this teacher: {_pct(gap)} below it with 1/{ratio:.0f} of its parameters",
        severity=max(_beyond(gap, th.gap), _beyond(ratio, th.param_ratio)),
        evidence=_pick(
            ev, "teacher_acc", "student_acc", "gap", "student_params", "teacher_params", "param_ratio"
        ),
        explanation=(
            f"The student has {ev.get('student_params')} parameters, 1/{ratio:.0f} of the teacher's "
            f"{ev.get('teacher_params')}, and ends {_pct(gap)} below it: it cannot represent the function it "
            "is asked to imitate, however long it trains."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "gap", "param_ratio"),
        experiment=Experiment(over, text, metric="gap", goal="down"),
    )

