"""The notes: observations that accompany a fault (calibration, dark knowledge, representations,
sharpness) and never make a run unhealthy."""

from __future__ import annotations

import math

import numpy as np

from workbench.analysis.doctor.findings import DoctorError, Finding
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

__all__ = ["check_calibration", "check_dark_knowledge", "check_representation", "check_sharpness"]


def check_calibration(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Calibration (a note): student ECE minus teacher ECE (15 bins, Guo et al. 2017) at or above ``ece_gap``."""
    s, t = _num(ev, "student_ece"), _num(ev, "teacher_ece")
    if s is None or t is None or not s - t >= th.ece_gap:
        return None
    conf, acc = _num(ev, "student_confidence"), _num(ev, "student_acc")
    word = "overconfident" if conf is not None and acc is not None and conf >= acc else "underconfident"
    return Finding(
        rule="calibration",
        title=f"Student is {word}: ECE {s:.3f} vs teacher {t:.3f}",
        severity=_beyond(s - t, th.ece_gap),
        evidence=_pick(ev, "student_ece", "teacher_ece", "student_confidence", "student_acc"),
        explanation=(
            f"Mean confidence {_pct(conf)} for an accuracy of {_pct(acc)}: the student's probabilities cannot be "
            "trusted the way the teacher's can. Fit a temperature on held-out data before using them."
        ),
        suggestion="Fit a temperature on held-out data before deployment (Guo et al. 2017).",
        view="reliability_diagrams",
        result="agreement",
        params=_used(th, "ece_gap"),
        level="note",
    )


def check_dark_knowledge(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Dark knowledge (a note): classes with at least ``min_class_samples`` samples whose non-target
    Spearman correlation of teacher and student logits is below ``dark_knowledge_min``."""
    values = ev.get("class_rank_correlation")
    counts = ev.get("class_counts")
    if values is None or counts is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    if v.shape != c.shape:
        raise DoctorError(
            f"class_counts: expected {v.size} counts to match the per-class values, got {c.size}"
        )
    names = list(ev.get("class_names") or [str(i) for i in range(v.size)])
    judged = np.isfinite(v) & (c >= th.min_class_samples)
    low = np.flatnonzero(judged & (v < th.dark_knowledge_min))
    if low.size == 0:
        return None
    low = low[np.argsort(v[low], kind="stable")]
    shown = ", ".join(f"{names[i]} ({v[i]:.2f})" for i in low[:5]) + (", …" if low.size > 5 else "")
    return Finding(
        rule="dark_knowledge",
        title=f"Dark knowledge lost for {low.size} class{'es' if low.size > 1 else ''}: {shown}",
        severity=_below(float(v[low[0]]), th.dark_knowledge_min, -1.0),
        evidence={"classes": [names[i] for i in low], "rank_correlation": [float(v[i]) for i in low]},
        explanation=(
            "For these classes the student orders the wrong answers differently from the teacher: it does not "
            "share the teacher's sense of which classes look alike."
        ),
        suggestion="Look at those classes in the confusion matrices; a temperature of 2-8 passes more of it on.",
        view="rank_correlation_bars",
        result="agreement",
        params=_used(th, "dark_knowledge_min", "min_class_samples"),
        level="note",
    )


def check_representation(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Representations (a note): the lowest linear CKA (Kornblith et al. 2019) over the layer pairs
    distillation trains is below ``min_matched_cka``."""
    values = ev.get("matched_cka")
    pairs = ev.get("layer_pairs")
    if not values:
        return None
    finite = [(float(x), i) for i, x in enumerate(values) if x is not None and math.isfinite(float(x))]
    if not finite:
        return None
    worst, at = min(finite)
    if not worst < th.min_matched_cka:
        return None
    t, s = pairs[at] if pairs else (str(at), str(at))
    return Finding(
        rule="representation",
        title=f"Representations differ: CKA {worst:.2f} between student {s} and teacher {t}",
        severity=_below(worst, th.min_matched_cka, 0.0),
        evidence={"min_cka": worst, "teacher_layer": t, "student_layer": s, "matched_cka": list(values)},
        explanation=(
            f"The student's {s} and the teacher's {t} encode the test images differently (linear CKA {worst:.2f}); "
            "logit matching alone does not pass on the teacher's intermediate structure."
        ),
        suggestion="A feature term at that depth (fitnet) or a relational one (rkd, crd) transfers it.",
        view="cka_heatmap",
        result="cka",
        params=_used(th, "min_matched_cka"),
        level="note",
    )


def check_sharpness(ev: Evidence, th: DoctorThresholds) -> Finding | None:
    """Sharpness (a note): student / scratch-student top Hessian eigenvalue of the cross-entropy
    (power iteration, Pearlmutter 1994) at or above ``sharpness_ratio``."""
    s, r = _num(ev, "student_eigenvalue"), _num(ev, "scratch_eigenvalue")
    if s is None or r is None or r <= 0 or not s / r >= th.sharpness_ratio:
        return None
    return Finding(
        rule="sharpness",
        title=f"Sharper minimum than the scratch student ({s / r:.1f}x top eigenvalue)",
        severity=_beyond(s / r, th.sharpness_ratio),
        evidence={"student_eigenvalue": s, "scratch_eigenvalue": r, "ratio": s / r},
        explanation="Distillation usually finds flatter minima than training from the labels; this one is sharper.",
        suggestion="Compare the 1-D landscapes; a lower learning rate with a longer schedule often flattens it.",
        view="landscape_comparison",
        result="landscapes",
        params=_used(th, "sharpness_ratio"),
        level="note",
    )

