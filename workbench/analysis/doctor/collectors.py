"""The doctor's evidence collectors, registered like the rules: :data:`COLLECTORS` maps a name to a
:class:`~workbench.analysis.doctor.exam.Collector`, each a function from the examination (inputs,
models, options and what the collectors before it found) to named numbers and analysis results.

They run in registry order:

* ``records`` — what the run recorded: its config and history
  (:func:`~workbench.analysis.doctor.recorded.config_evidence`,
  :func:`~workbench.analysis.doctor.recorded.history_evidence`), the evidence the caller knows,
  and the passes over the training data.
* ``agreement`` — teacher-student agreement and calibration at the distillation temperature
  (:func:`~workbench.analysis.agreement.agreement_report`), the KD term's share of the logit
  gradient and, with per-image contexts, how often each model follows the context; the teacher's
  accuracy alone for a run that failed before saving a student.
* ``softness`` — the normalized entropies of the softened outputs (:func:`softness_from_logits`).
* ``train_labels`` — the teacher's (and student's) accuracy against the training labels.
* ``cka`` — minibatch linear CKA of the layer pairs feature distillation trains.
* ``cam`` — class activation maps against the object masks (when the data has masks).
* ``sharpness`` — with a scratch student, the top Hessian eigenvalue of the cross-entropy and 1-D
  loss landscapes of both students.
* ``hint`` — why the hint-wiring evidence is missing, when the run wires no feature hint.

The analyses compute on working copies, so the caller's models are never changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis.agreement import AgreementResult, agreement_report
from workbench.analysis.cam import compare_cams
from workbench.analysis.doctor.exam import Collected, Collector, Exam, Steps
from workbench.analysis.doctor.recorded import config_evidence, distilled_layer_pairs, history_evidence
from workbench.analysis.doctor.softness import softness_from_logits
from workbench.analysis.hessian import hessian_top_eigenvalue
from workbench.analysis.landscape import landscape_1d
from workbench.analysis.similarity import cka_matrix
from workbench.errors import one_line

__all__ = ["COLLECTORS"]


# ---- measurements -------------------------------------------------------------------------------
def _logits(model: nn.Module, images: torch.Tensor, device: Any, batch_size: int) -> torch.Tensor:
    from workbench.analysis._common import working_copy

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    m = working_copy(model, dev)
    out = []
    with torch.inference_mode():
        for i in range(0, int(images.shape[0]), batch_size):
            out.append(m(images[i : i + batch_size].to(dev)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _kd_share(
    t_logits: np.ndarray, s_logits: np.ndarray, labels: np.ndarray, ev: dict[str, Any]
) -> float | None:
    """Share of the temperature-scaled KD term in the gradient on the student's logits.

    ``w_kd T |softmax(z_s/T) - softmax(z_t/T)|`` (the gradient of ``w_kd T² KL``, Hinton et al.
    2015) against ``w_ce |softmax(z_s) - onehot(y)|``, each averaged over the samples.
    """
    t, w = ev.get("temperature"), ev.get("kd_weight")
    if t is None or w is None:
        return None
    zt, zs = torch.as_tensor(t_logits, dtype=torch.float64), torch.as_tensor(s_logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    g_kd = w * t * (torch.softmax(zs / t, 1) - torch.softmax(zt / t, 1)).norm(dim=1).mean()
    onehot = torch.nn.functional.one_hot(y, zs.shape[1]).to(zs.dtype)
    g_ce = float(ev.get("ce_weight", 0.0)) * (torch.softmax(zs, 1) - onehot).norm(dim=1).mean()
    total = float(g_kd + g_ce)
    return float(g_kd) / total if total > 0 else None


def _context_follow(pred: np.ndarray, labels: np.ndarray, context: Any, context_classes: Any) -> float | None:
    """Share of the images whose context belongs to another class on which ``pred`` is that class."""
    ctx = np.asarray(torch.as_tensor(context).cpu().numpy(), dtype=np.int64)
    cls = np.asarray(torch.as_tensor(context_classes).cpu().numpy(), dtype=np.int64)
    ok = (ctx >= 0) & (ctx < len(cls))
    other = np.full(ctx.shape, -1)
    other[ok] = cls[ctx[ok]]
    judged = (other >= 0) & (other != labels)
    if not judged.any():
        return None
    return float((pred[judged] == other[judged]).mean())


# ---- records ------------------------------------------------------------------------------------
def collect_records(exam: Exam, steps: Steps) -> Collected:
    """The run's config and history as evidence, the caller's evidence, and the passes over the data."""
    ev = config_evidence(exam.config, exam.teacher, exam.student, exam.shape, exam.inputs.train_size)
    if exam.options.temperature is not None:
        ev["temperature"] = exam.temperature
    ev.update(history_evidence(exam.history, failure=exam.failure))
    ev.update(dict(exam.given or {}))
    if ev.get("steps") and ev.get("train_size"):
        ev["passes"] = ev["steps"] * ev.get("batch_size", 1) / ev["train_size"]
    found = Collected(evidence=ev)
    if exam.history is not None:
        found.results["history"] = exam.history
    return found


# ---- agreement ----------------------------------------------------------------------------------
def _with_student(exam: Exam, steps: Steps) -> Collected:
    """Agreement, calibration, rank correlation, context following and the KD share."""
    inputs = exam.inputs
    agreement: AgreementResult = agreement_report(
        exam.teacher,
        exam.student,
        inputs.images,
        inputs.labels,
        temperature=exam.temperature or 1.0,
        names=exam.options.names,
        class_names=inputs.class_names,
        progress=steps.part("agreement", "agreement"),
        **exam.common,
    )
    t_logits, s_logits = np.asarray(agreement.teacher_logits), np.asarray(agreement.student_logits)
    found = Collected(
        evidence=dict(
            teacher_acc=agreement.teacher_accuracy,
            student_acc=agreement.student_accuracy,
            gap=agreement.teacher_accuracy - agreement.student_accuracy,
            agreement=agreement.agreement,
            teacher_ece=agreement.teacher_calibration.ece,
            student_ece=agreement.student_calibration.ece,
            student_confidence=float(np.asarray(agreement.student_probs).max(1).mean()),
            class_rank_correlation=np.asarray(agreement.per_class_rank_correlation).tolist(),
            class_counts=np.asarray(agreement.class_counts).tolist(),
        ),
        results={"agreement": agreement},
        memo={"teacher_logits": t_logits, "student_logits": s_logits, "num_classes": int(t_logits.shape[1])},
    )
    labels = exam.labels
    if inputs.context is not None and inputs.context_classes is not None:
        purity = inputs.context_purity
        found.evidence["context_purity"] = None if purity is None else float(purity)
        for key, pred in (
            ("context_follow", agreement.student_pred),
            ("teacher_context_follow", agreement.teacher_pred),
        ):
            found.evidence[key] = _context_follow(
                np.asarray(pred), labels, inputs.context, inputs.context_classes
            )
    else:
        found.why["context_follow"] = "the data records no per-image context (e.g. backgrounds)"
    share = _kd_share(t_logits, s_logits, labels, exam.evidence)
    if share is not None:
        found.evidence["kd_share"] = share
    return found


def _teacher_only(exam: Exam) -> Collected:
    """The teacher's accuracy, for a run that failed before saving a student."""
    t_all = _logits(exam.teacher, exam.inputs.images, exam.options.device, exam.options.batch_size)
    return Collected(
        evidence={"teacher_acc": float((t_all.argmax(1).numpy() == exam.labels).mean())},
        why={"gap": "the run failed before saving a student", "kd_share": "no student to measure"},
        memo={"teacher_logits": t_all.numpy(), "student_logits": None, "num_classes": int(t_all.shape[1])},
    )


def collect_agreement(exam: Exam, steps: Steps) -> Collected:
    """Agreement evidence (or the teacher's accuracy alone), then chance level and the class names."""
    found = _teacher_only(exam) if exam.student is None else _with_student(exam, steps)
    steps.done("agreement", "agreement")
    k = found.memo["num_classes"]
    classes = exam.inputs.class_names
    found.evidence["chance"] = 1.0 / k
    found.evidence["class_names"] = (
        list(classes) if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    )
    return found


# ---- softness -----------------------------------------------------------------------------------
def collect_softness(exam: Exam, steps: Steps) -> Collected:
    """Normalized entropies of both models' softened outputs at the distillation temperature."""
    temp = exam.temperature
    if temp is None:
        return Collected(
            why={
                "teacher_soft_entropy": "no distillation temperature in the run's methods",
                "kd_share": "no temperature-scaled distillation term in the run's methods",
            }
        )
    t_logits, s_logits = exam.memo["teacher_logits"], exam.memo["student_logits"]
    if s_logits is None:
        soft = softness_from_logits(t_logits, t_logits, temp)
        return Collected(evidence={"teacher_soft_entropy": soft.teacher_mean})
    soft = softness_from_logits(t_logits, s_logits, temp, class_names=exam.evidence["class_names"])
    return Collected(
        evidence={"student_soft_entropy": soft.student_mean, "teacher_soft_entropy": soft.teacher_mean},
        results={"softness": soft},
    )


# ---- training labels ----------------------------------------------------------------------------
def collect_train_labels(exam: Exam, steps: Steps) -> Collected:
    """The teacher's (and the student's) accuracy against the labels the run trained on."""
    images, labels = exam.inputs.train_images, exam.inputs.train_labels
    if images is None or labels is None:
        return Collected(why={"teacher_train_label_acc": "the training data was not given (pass dataset=)"})
    device, bs = exam.options.device, exam.options.batch_size
    y = labels.cpu().numpy()
    found = Collected()
    found.evidence["teacher_train_label_acc"] = float(
        (_logits(exam.teacher, images, device, bs).argmax(1).numpy() == y).mean()
    )
    if exam.student is not None:
        sl = _logits(exam.student, images, device, bs)
        found.evidence["student_train_label_acc"] = float((sl.argmax(1).numpy() == y).mean())
    steps.done("train_labels", "training labels")
    return found


def _train_label_steps(exam: Exam) -> list[str]:
    return ["train_labels"] if exam.inputs.train_images is not None else []


# ---- CKA ----------------------------------------------------------------------------------------
def collect_cka(exam: Exam, steps: Steps) -> Collected:
    """Linear CKA of the layer pairs distillation trains (the explicit ``layers`` first, else the
    config's hint layers, else the stages paired by depth), and of the configured hint pair."""
    found = Collected(memo={"layer_pairs": [], "layer_pairs_source": "layers"})
    if exam.student is None:
        found.why["matched_cka"] = "the run failed before saving a student"
        return found
    try:
        if exam.options.layers is not None:
            pairs = list(exam.options.layers)
        else:
            pairs, source = distilled_layer_pairs(exam.teacher, exam.student, exam.shape, exam.config)
            found.memo["layer_pairs_source"] = source
        found.memo["layer_pairs"] = pairs
        cka = cka_matrix(
            exam.teacher,
            exam.student,
            exam.inputs.images,
            exam.inputs.labels,
            layers={
                "teacher": list(dict.fromkeys(t for t, _ in pairs)),
                "student": list(dict.fromkeys(s for _, s in pairs)),
            },
            names=exam.options.names,
            progress=steps.part("cka", "CKA"),
            **exam.common,
        )
    except ValueError as err:  # AnalysisError, ModelError and MethodError are ValueErrors
        found.why["matched_cka"] = f"CKA could not be computed: {one_line(err)}"
    else:
        found.results["cka"] = cka
        t_index = {name: i for i, name in enumerate(cka.teacher_layers)}
        s_index = {name: j for j, name in enumerate(cka.student_layers)}
        found.evidence["matched_cka"] = [float(cka.matrix[t_index[t], s_index[s]]) for t, s in pairs]
        found.evidence["layer_pairs"] = [[t, s] for t, s in pairs]
        hp = exam.evidence.get("hint_pair")
        if hp and hp[1] in t_index and hp[0] in s_index:
            found.evidence["hint_cka"] = float(cka.matrix[t_index[hp[1]], s_index[hp[0]]])
    steps.done("cka", "CKA")
    return found


def _cka_steps(exam: Exam) -> list[str]:
    return ["cka"] if exam.student is not None else []


# ---- class activation maps ----------------------------------------------------------------------
def collect_cam(exam: Exam, steps: Steps) -> Collected:
    """How much of each model's class activation map lies off the object (with object masks)."""
    inputs = exam.inputs
    if exam.student is None:
        return Collected()
    if inputs.masks is None:
        return Collected(why={"student_context": "the dataset has no object masks"})
    n = exam.options.cam_samples
    found = Collected()
    try:
        cam = compare_cams(
            exam.teacher,
            exam.student,
            inputs.images[:n],
            inputs.labels[:n],
            method=exam.options.cam_method,
            masks=inputs.masks[:n],
            boxes=None if inputs.boxes is None else inputs.boxes[:n],
            names=exam.options.names,
            class_names=inputs.class_names,
            progress=steps.part("cam", "class activation maps"),
            **exam.common,
        )
    except ValueError as err:
        found.why["student_context"] = f"class activation maps could not be computed: {one_line(err)}"
    else:
        found.results["cam"] = cam
        assert cam.teacher_localization is not None and cam.student_localization is not None
        found.evidence["teacher_context"] = cam.teacher_localization.mean_context_reliance
        found.evidence["student_context"] = cam.student_localization.mean_context_reliance
    steps.done("cam", "class activation maps")
    return found


def _cam_steps(exam: Exam) -> list[str]:
    return ["cam"] if exam.student is not None and exam.inputs.masks is not None else []


# ---- sharpness ----------------------------------------------------------------------------------
_ROLES = ("student", "scratch")


def collect_sharpness(exam: Exam, steps: Steps) -> Collected:
    """Top Hessian eigenvalue of the cross-entropy and 1-D loss landscapes of the student and the
    scratch student, on the first ``hessian_samples`` images."""
    if exam.student is None:
        return Collected()
    if exam.scratch is None:
        return Collected(why={"scratch_eigenvalue": "no scratch student given (scratch=)"})
    n, opts = exam.options.hessian_samples, exam.options
    images, labels = exam.inputs.images[:n], exam.inputs.labels[:n]
    models = {"student": exam.student, "scratch": exam.scratch}
    eig: dict[str, Any] = {}
    for role in _ROLES:
        eig[role] = hessian_top_eigenvalue(
            None, models[role], images, labels, objective="cross_entropy", iters=opts.hessian_iters,
            seed=opts.seed, progress=steps.part(f"hessian_{role}", f"Hessian ({role})"), **exam.common,
        )
        steps.done(f"hessian_{role}", f"Hessian ({role})")
    landscapes: dict[str, Any] = {}
    for role in _ROLES:
        landscapes[role] = landscape_1d(
            None, models[role], images, labels, objectives=["cross_entropy", "accuracy"], seed=opts.seed,
            progress=steps.part(f"landscape_{role}", f"landscape ({role})"), **exam.common,
        )
        steps.done(f"landscape_{role}", f"landscape ({role})")
    return Collected(
        evidence={
            "student_eigenvalue": eig["student"].eigenvalue,
            "scratch_eigenvalue": eig["scratch"].eigenvalue,
        },
        results={"hessian": eig, "landscapes": landscapes},
    )


def _sharpness_steps(exam: Exam) -> list[str]:
    if exam.student is None or exam.scratch is None:
        return []
    return [f"{what}_{role}" for what in ("hessian", "landscape") for role in _ROLES]


# ---- the feature hint ---------------------------------------------------------------------------
def collect_hint(exam: Exam, steps: Steps) -> Collected:
    """Why there is no hint-wiring evidence, when there is none (``records`` reads the wiring off the
    config; the last collector, so the reason comes after those of the analyses)."""
    if "hint_depth_gap" in exam.evidence:
        return Collected()
    return Collected(why={"hint_depth_gap": "the run's methods wire no feature hint between named layers"})


#: every evidence collector by name, in the order they run (a later one reads what earlier ones found)
COLLECTORS: dict[str, Collector] = {
    "records": Collector(collect_records),
    "agreement": Collector(collect_agreement, lambda exam: ["agreement"]),
    "softness": Collector(collect_softness),
    "train_labels": Collector(collect_train_labels, _train_label_steps),
    "cka": Collector(collect_cka, _cka_steps),
    "cam": Collector(collect_cam, _cam_steps),
    "sharpness": Collector(collect_sharpness, _sharpness_steps),
    "hint": Collector(collect_hint),
}
