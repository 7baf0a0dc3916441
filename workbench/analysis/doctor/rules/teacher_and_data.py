"""The rules that read the teacher and the data: a teacher wrong for the data, noisy training
labels, a shortcut through the images' context (background)."""

from __future__ import annotations

from typing import Any

from workbench.analysis.doctor.findings import Experiment, Finding
from workbench.analysis.doctor.rules._helpers import (
    Evidence,
    _below,
    _beyond,
    _num,
    _pct,
    _pick,
    _used,
)
from workbench.analysis.doctor.thresholds import DoctorThresholds

__all__ = ["check_wrong_teacher", "check_label_noise", "check_shortcut"]


def check_wrong_teacher(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """The teacher is wrong for this data: its test accuracy is below ``teacher_acc`` (it was
    trained on other classes, on other data, or barely trained). Distillation then copies its
    mistakes (Hinton et al. 2015 assume a teacher that is right)."""
    acc = _num(ev, "teacher_acc")
    if acc is None or not acc < th.teacher_acc:
        return None
    chance = _num(ev, "chance") or 0.0
    shipped = ev.get("suggested_teacher")
    if shipped:
        over: dict[str, Any] = {"teachers": [{"source": shipped}]}
        text = f"Distil from a teacher trained on this data ({shipped}) and compare the student's accuracy."
    else:
        over = {"distill.methods": "none"}
        text = "Train the student from the labels alone (methods 'none') until a teacher fits this data."
    return Finding(
        rule="wrong_teacher",
        title=f"The teacher is wrong for this data: it gets {_pct(acc)} of the test images right",
        severity=_below(acc, th.teacher_acc, chance),
        evidence=_pick(ev, "teacher_acc", "student_acc", "chance", "teacher_source"),
        explanation=(
            f"The teacher ({ev.get('teacher_source', 'the first teacher')}) classifies {_pct(acc)} of this "
            f"dataset's test images correctly (chance is {_pct(chance)}): it was trained on other classes or "
            "other data, or barely trained. The student is taught its mistakes."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "teacher_acc"),
        experiment=Experiment(over, text, metric="student_acc", goal="up"),
    )


def check_label_noise(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Noisy training labels: the teacher, right on ``teacher_acc`` of the test images, agrees with
    far fewer of the training labels (``label_noise``); without the training data, the run's own
    last-epoch training accuracy far below its test accuracy (``label_noise_history``)."""
    t_test = _num(ev, "teacher_acc")
    t_train = _num(ev, "teacher_train_label_acc")
    text = "Trust the teacher over the labels: distill.ce_weight=0 (soft labels only), same seed and data."
    exp = Experiment({"distill.ce_weight": 0.0}, text, metric="student_acc", goal="up")
    if t_test is not None and t_train is not None:
        d = t_test - t_train
        if not d >= th.label_noise:
            return None
        return Finding(
            rule="label_noise",
            title=f"Noisy labels: the teacher contradicts {_pct(1 - t_train)} of the training labels",
            severity=_beyond(d, th.label_noise),
            evidence=_pick(
                ev, "teacher_acc", "teacher_train_label_acc", "student_train_label_acc", "train_acc_last"
            ),
            explanation=(
                f"The teacher is right on {_pct(t_test)} of the test images but agrees with only {_pct(t_train)} "
                "of the training labels: about that share of the labels the student is trained on look wrong. "
                "Cross-entropy on them teaches the student the noise."
            ),
            suggestion=text,
            view="training_curves",
            result="history",
            params=_used(th, "label_noise"),
            experiment=exp,
        )
    tr, te = _num(ev, "train_acc_last"), _num(ev, "test_acc_last")
    if tr is None or te is None or ev.get("mixing"):
        return None
    d = te - tr
    if not d >= th.label_noise_history:
        return None
    return Finding(
        rule="label_noise",
        title=f"Noisy labels: training accuracy {_pct(tr)} stays far below test accuracy {_pct(te)}",
        severity=_beyond(d, th.label_noise_history),
        evidence=_pick(ev, "train_acc_last", "test_acc_last", "teacher_acc"),
        explanation=(
            "The student agrees with far fewer of its training labels than it gets right on the test split: "
            "many training labels are likely wrong (pass the training data to the doctor to measure it)."
        ),
        suggestion=text,
        view="training_curves",
        result="history",
        params=_used(th, "label_noise_history"),
        experiment=exp,
    )


def check_shortcut(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Shortcut learning (Geirhos et al. 2020): the training data pairs classes with contexts
    (``context_purity``, the share of training images whose context is their class's most frequent
    one, at least ``context_purity``) and, on test images whose context belongs to another class,
    the student answers that class more often than its errors would by chance and than the
    teacher does: ``context_follow - (1 - student_acc) / (K - 1) - teacher_context_follow >= shortcut``.
    """
    s = _num(ev, "context_follow")
    t = _num(ev, "teacher_context_follow")
    purity = _num(ev, "context_purity")
    if s is None or t is None or (purity is not None and purity < th.context_purity):
        return None
    acc, chance = _num(ev, "student_acc"), _num(ev, "chance")
    by_chance = (1.0 - acc) * chance / (1.0 - chance) if acc is not None and chance and chance < 1 else 0.0
    excess = s - by_chance - t
    if not excess >= th.shortcut:
        return None
    conf = ev.get("confounding")
    text = (
        "Follow the teacher's soft labels more and where it looks: distill.methods='1.0*kd + at', "
        "distill.ce_weight=0, same seed."
    )
    return Finding(
        rule="shortcut",
        title="The student learned the background, not the shape",
        severity=_beyond(excess, th.shortcut),
        evidence=_pick(
            ev,
            "context_follow",
            "teacher_context_follow",
            "student_context",
            "teacher_context",
            "context_purity",
            "confounding",
            "gap",
        ),
        explanation=(
            f"On test images whose background goes with another class, the student answers that class "
            f"{_pct(s)} of the time, the teacher {_pct(t)}"
            + (f"; the training data pairs each class with a background (confounding {conf})" if conf else "")
            + ". The student reads the context, which fails as soon as it changes."
        ),
        suggestion=text,
        view="localization_summary",
        result="cam",
        params=_used(th, "shortcut", "context_purity"),
        experiment=Experiment(
            {"distill.methods": "1.0*kd + at", "distill.ce_weight": 0.0},
            text,
            metric="context_follow",
            goal="down",
        ),
    )

