"""Sample-weighting methods: Relative Difficulty Distillation.

RDD adds no new objective: it takes a per-sample logit distillation loss (KD, reverse KD,
Jensen–Shannon or DKD) and weights each sample's term by how difficult the sample is, judged
by the teacher alone or by teacher and student together, relative to the rest of the batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as TF
from pydantic import Field

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import require_teacher
from workbench.distill.logits import mean_teacher_logits


class RDDParams(MethodParams):
    base: Literal["kd", "reverse_kd", "js", "dkd"] = Field(
        "kd", description="the per-sample logit loss that is weighted"
    )
    mode: Literal["tfe", "tse", "staged"] = Field(
        "staged",
        description="tfe: difficulty judged by the teacher; tse: by teacher and student; "
        "staged: tfe first, then tse",
    )
    switch: float = Field(0.5, ge=0.0, le=1.0, description="staged: fraction of training spent in tfe")
    weight_temperature: float = Field(
        1.0, gt=0.0, le=100.0, description="temperature of the softmax that turns difficulties into weights"
    )
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T of the base loss")
    alpha: float = Field(1.0, ge=0.0, le=1000.0, description="dkd base: weight of TCKD")
    beta: float = Field(8.0, ge=0.0, le=1000.0, description="dkd base: weight of NCKD")


def per_sample_ce(logits: torch.Tensor, out: StepOutputs) -> torch.Tensor:
    """``(B,)`` cross-entropy on the labels (mixed with the partner labels under Mixup/CutMix)."""
    ce = TF.cross_entropy(logits, out.y, reduction="none")
    if out.y_mix is not None and out.lam is not None:
        ce = out.lam * ce + (1.0 - out.lam) * TF.cross_entropy(logits, out.y_mix, reduction="none")
    return ce


def relative_weights(difficulty: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Relative difficulty weights ``w = B · softmax(d / τ)``: mean 1 over the batch, larger for
    samples harder than the rest; uniform when every difficulty is the same."""
    return difficulty.shape[0] * torch.softmax(difficulty / temperature, dim=0)


@register_method
class RDD(Method):
    """Relative Difficulty Distillation (Liang et al. 2024, "Relative Difficulty Distillation
    for Semantic Segmentation"), for classification.

    The paper weights the distillation term of every pixel by a difficulty the teacher (TFE) or
    teacher and student together (TSE) assign it; here the unit is the sample, with the measures
    below. Each sample's term is weighted by its difficulty relative to the batch, with no added
    optimisation goal: ``loss = mean_b w_b · ℓ_b`` with ``ℓ`` the per-sample ``base`` loss
    (:func:`~workbench.distill.functional.kd_loss_per_sample` and its reverse-KL, JS and DKD
    counterparts) and ``w = B · softmax(d / weight_temperature)`` (:func:`relative_weights`).

    * TFE (teacher-full evaluation): ``d_b = CE(teacher_b, y_b)`` — the teacher alone judges
      difficulty; samples the teacher finds hard carry its most informative soft labels.
    * TSE (teacher-student evaluation): ``d_b = CE(student_b, y_b) - CE(teacher_b, y_b)`` — the
      gap between student and teacher: samples the student finds much harder than the teacher
      does get the most weight, samples both find hard (or the student already masters) less.
    * staged: TFE for the first ``switch`` fraction of the steps, then TSE, the paper's two
      stages (the teacher's view first, the student's view once it has learnt something).

    Weights are computed without gradient. Difficulties are in nats, so at ``weight_temperature=1``
    one sample can carry almost the whole batch's term (measured in ``docs/methods.md``, "Why `rdd`
    trails `kd`": peak weights near ``B``, and the TSE stage diverges on confounded data); larger
    temperatures flatten the weights toward plain KD.
    """

    name = "rdd"
    description = "Liang et al. 2024: weight each sample's distillation term by its relative difficulty"
    Params = RDDParams

    def __init__(self, params: RDDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def stage(self, step: int, total_steps: int) -> str:
        """``tfe`` or ``tse``: the evaluation in use at ``step``."""
        if self.params.mode != "staged":
            return self.params.mode
        return "tfe" if step < self.params.switch * max(total_steps, 1) else "tse"

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, out: StepOutputs) -> torch.Tensor:
        """``(B,)`` base distillation loss of every sample."""
        p = self.params
        if p.base == "kd":
            return F.kd_loss_per_sample(student, teacher, temperature=p.temperature)
        if p.base == "reverse_kd":
            return F.reverse_kd_loss_per_sample(student, teacher, temperature=p.temperature)
        if p.base == "js":
            return F.js_divergence_per_sample(student, teacher, temperature=p.temperature)
        return F.dkd_loss_per_sample(
            student, teacher, out.y, alpha=p.alpha, beta=p.beta, temperature=p.temperature
        )

    def weights(self, student: torch.Tensor, teacher: torch.Tensor, out: StepOutputs) -> torch.Tensor:
        """``(B,)`` relative difficulty weights (mean 1) of this batch."""
        with torch.no_grad():
            difficulty = per_sample_ce(teacher.to(student.dtype), out)
            if self.stage(out.step, out.total_steps) == "tse":
                difficulty = per_sample_ce(student.detach(), out) - difficulty
            return relative_weights(difficulty, self.params.weight_temperature)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = mean_teacher_logits(out)
        rows = self.per_sample(out.student_logits, teacher, out)
        return {"rdd": (self.weights(out.student_logits, teacher, out) * rows).mean()}
