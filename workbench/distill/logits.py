"""Logit-based methods: the scratch baseline, Hinton's KD, Decoupled KD, DIST, balanced
forward/reverse KD and multi-teacher KD.

Each method reads only the logits of the student and the teachers, so its teacher outputs can
be cached. Where a method takes one teacher distribution and several teachers are given, it
uses the mean of their logits (as ``kd``); ``multi_teacher`` combines them explicitly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as TF
from pydantic import Field

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import require_teacher


def mean_teacher_logits(out: StepOutputs) -> torch.Tensor:
    """The teachers' logits of this batch, averaged when there are several."""
    if len(out.teacher_logits) > 1:
        return torch.stack(out.teacher_logits).mean(0)
    return out.teacher_logits[0]


class NoneParams(MethodParams):
    """The scratch baseline has no hyperparameters."""


@register_method
class NoDistillation(Method):
    """Scratch baseline: cross-entropy only (the engine's CE term); no teacher needed."""

    name = "none"
    description = "scratch baseline: cross-entropy on the labels only, no teacher"
    Params = NoneParams
    needs_teacher = False

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        return {}


class KDParams(MethodParams):
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T")


@register_method
class KD(Method):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    ``T² · KL(softmax(t/T) || softmax(s/T))`` against the mean of the teachers' logits; mix it
    with cross-entropy through ``distill.ce_weight`` and the method weight (the paper's
    ``alpha`` is the method weight, ``1 - alpha`` the CE weight).
    """

    name = "kd"
    description = "Hinton et al. 2015: KL between temperature-softened teacher and student outputs, x T^2"
    Params = KDParams

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = (
            torch.stack(out.teacher_logits).mean(0) if len(out.teacher_logits) > 1 else out.teacher_logits[0]
        )
        return {"kd": F.kd_loss(out.student_logits, teacher, temperature=self.params.temperature)}


# ---- Decoupled KD ------------------------------------------------------------------------------


class DKDParams(MethodParams):
    alpha: float = Field(1.0, ge=0.0, le=1000.0, description="weight of the target-class term TCKD")
    beta: float = Field(8.0, ge=0.0, le=1000.0, description="weight of the non-target-class term NCKD")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T")
    warmup: float = Field(
        20.0,
        ge=0.0,
        le=10000.0,
        description="epochs over which the loss weight grows linearly to 1 (mdistiller: 20; 0 = off)",
    )


@register_method
class DKD(Method):
    """Decoupled Knowledge Distillation (Zhao et al., CVPR 2022).

    ``min((epoch + 1) / warmup, 1) · (alpha · TCKD + beta · NCKD)``: KD split into the KL of the
    binary target/non-target distributions (TCKD) and the KL among the non-target classes
    (NCKD), each ``× T²`` (:func:`workbench.distill.functional.dkd_loss`). The warm-up is
    mdistiller's ``DKD.forward_train``: ``min(epoch / warmup, 1)`` with epochs counted from 1.
    Defaults are mdistiller's CIFAR-100 settings (alpha 1, beta 8, T 4, warm-up 20 epochs); for
    runs of a few epochs lower ``warmup`` or the loss stays damped.
    """

    name = "dkd"
    description = "Zhao et al. 2022: decoupled target-class and non-target-class KD with linear warm-up"
    Params = DKDParams

    def __init__(self, params: DKDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def warmup_factor(self, epoch: int) -> float:
        """``min((epoch + 1) / warmup, 1)`` for 0-based ``epoch`` (1 when ``warmup`` is 0)."""
        if self.params.warmup <= 0:
            return 1.0
        return min((epoch + 1) / self.params.warmup, 1.0)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        p = self.params
        value = F.dkd_loss(
            out.student_logits,
            mean_teacher_logits(out),
            out.y,
            alpha=p.alpha,
            beta=p.beta,
            temperature=p.temperature,
        )
        return {"dkd": self.warmup_factor(out.epoch) * value}


# ---- DIST --------------------------------------------------------------------------------------


class DISTParams(MethodParams):
    beta: float = Field(1.0, ge=0.0, le=1000.0, description="weight of the inter-class relation term")
    gamma: float = Field(1.0, ge=0.0, le=1000.0, description="weight of the intra-class relation term")
    temperature: float = Field(
        1.0, gt=0.0, le=100.0, description="softmax temperature tau (the authors' default: 1)"
    )


@register_method
class DIST(Method):
    """DIST, "Knowledge Distillation from A Stronger Teacher" (Huang et al., NeurIPS 2022).

    ``T² · (beta · (1 - mean Pearson over samples) + gamma · (1 - mean Pearson over classes))`` of
    the softened outputs, as the authors' ``DIST`` loss
    (:func:`workbench.distill.functional.dist_loss`); defaults are the code's
    ``beta = gamma = tau = 1``. A larger ``temperature`` softens both distributions first.
    """

    name = "dist"
    description = "Huang et al. 2022: match inter- and intra-class Pearson correlations of softened outputs"
    Params = DISTParams

    def __init__(self, params: DISTParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        p = self.params
        value = F.dist_loss(
            out.student_logits,
            mean_teacher_logits(out),
            beta=p.beta,
            gamma=p.gamma,
            temperature=p.temperature,
        )
        return {"dist": value}


# ---- balanced forward / reverse KD -------------------------------------------------------------


class BDKDParams(MethodParams):
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T of both divergences")
    adaptive: bool = Field(
        True,
        description="weight each direction by its share of the summed divergence (False: 1/2 each)",
    )


@register_method
class BDKD(Method):
    """Balanced forward and reverse KL distillation.

    The forward KL ``KL(p_t || p_s)`` (Hinton's KD, mass-covering) under-weights the classes the
    teacher gives little probability; the reverse KL ``KL(p_s || p_t)`` (mode-seeking) corrects
    exactly those (Qi et al., "Balance Divergence for Knowledge Distillation", EAAI 2026, compensate
    KD with the reverse KL; Wu et al. 2024, "Rethinking KL Divergence in Knowledge Distillation
    for LLMs", weight the two directions by the size of the gaps they measure). Here, per batch,

    ``w_f = KL_f / (KL_f + KL_r)``, ``w_r = KL_r / (KL_f + KL_r)`` (detached, so they act as
    coefficients), loss ``w_f · KL_f + w_r · KL_r``,

    with both KLs ``× T²`` and batch-averaged (:func:`~workbench.distill.functional.kd_loss`,
    :func:`~workbench.distill.functional.reverse_kd_loss`): the direction that is further from
    agreement gets more of the gradient; when both are equal the loss is either of them. With
    ``adaptive=False`` the weights are 1/2 each.
    """

    name = "bdkd"
    description = "forward + reverse KL, weighted per batch by the two divergences' sizes"
    Params = BDKDParams

    def __init__(self, params: BDKDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        temp = self.params.temperature
        teacher = mean_teacher_logits(out)
        forward = F.kd_loss(out.student_logits, teacher, temperature=temp)
        reverse = F.reverse_kd_loss(out.student_logits, teacher, temperature=temp)
        if self.params.adaptive:
            with torch.no_grad():
                total = (forward + reverse).clamp_min(1e-12)
                w_f, w_r = forward / total, reverse / total
        else:
            w_f = w_r = torch.tensor(0.5, dtype=forward.dtype, device=forward.device)
        return {"bdkd": w_f * forward + w_r * reverse}


# ---- multi-teacher -----------------------------------------------------------------------------


class MultiTeacherParams(MethodParams):
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T")
    weighting: Literal["mean", "confidence"] = Field(
        "mean",
        description="mean: average the teachers' soft labels; confidence: weight each teacher per sample "
        "by how well it predicts the label (CA-MKD)",
    )


def confidence_weights(teacher_logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """CA-MKD teacher weights ``(K, B)``: ``w_kb = (1 - softmax_k(CE_kb)) / (K - 1)``.

    Zhang, Chen & Wang, "Confidence-Aware Multi-Teacher Knowledge Distillation" (ICASSP 2022):
    ``CE_kb`` is teacher ``k``'s cross-entropy on sample ``b``'s label; a teacher that predicts
    the label better gets more weight; the weights of a sample sum to 1. One teacher gets 1.
    """
    k = len(teacher_logits)
    if k == 1:
        return torch.ones(1, target.shape[0], dtype=teacher_logits[0].dtype, device=teacher_logits[0].device)
    ce = torch.stack([TF.cross_entropy(t, target, reduction="none") for t in teacher_logits])
    return (1.0 - torch.softmax(ce, dim=0)) / (k - 1)


@register_method
class MultiTeacher(Method):
    """Distillation from several teachers through one combined soft label per sample.

    ``p_b = Σ_k w_kb · softmax(t_kb / T)``, loss ``T² · KL(p || softmax(s / T))`` (batch mean).
    ``mean``: ``w_kb = 1/K``, the averaged soft labels of multi-teacher KD (You et al., KDD 2017,
    "Learning from Multiple Teacher Networks"; Fukuda et al. 2017). ``confidence``: the CA-MKD
    weights of :func:`confidence_weights` (Zhang et al., ICASSP 2022); CA-MKD applies them to the
    per-teacher KL terms, here they mix the soft labels, which keeps one target distribution.
    """

    name = "multi_teacher"
    description = "several teachers: KD from their averaged or confidence-weighted soft labels"
    Params = MultiTeacherParams

    def __init__(self, params: MultiTeacherParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def soft_label_logits(self, out: StepOutputs) -> torch.Tensor:
        """``T · log p`` of the combined soft label (so that ``softmax(· / T) = p``)."""
        temp = self.params.temperature
        logits = [t.to(out.student_logits.dtype) for t in out.teacher_logits]
        if self.params.weighting == "confidence":
            weights = confidence_weights(logits, out.y)
        else:
            weights = torch.full(
                (len(logits), logits[0].shape[0]),
                1.0 / len(logits),
                dtype=logits[0].dtype,
                device=logits[0].device,
            )
        log_p = torch.stack([TF.log_softmax(t / temp, dim=1) for t in logits])  # (K, B, C)
        mixed = torch.logsumexp(log_p + weights.clamp_min(1e-30).log().unsqueeze(-1), dim=0)
        return temp * mixed

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        temp = self.params.temperature
        return {
            "multi_teacher": F.kd_loss(
                out.student_logits, self.soft_label_logits(out).detach(), temperature=temp
            )
        }
