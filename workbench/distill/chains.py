"""Chain methods: born-again networks and teacher-assistant KD.

Both are sequences of runs: each link is an ordinary KD run whose teacher is the previous link.
As methods they are the per-run objective (Hinton KD from the run's teacher) plus the plan of
the chain in their hyperparameters (how many generations; which assistant models);
:func:`workbench.train.chains.run_chain` reads that plan and trains the linked runs.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import require_teacher
from workbench.distill.logits import mean_teacher_logits

#: names of the methods whose hyperparameters describe a chain of runs
CHAIN_METHODS = ("ban", "takd")


class BANParams(MethodParams):
    generations: int = Field(3, ge=1, le=20, description="students trained in turn, each taught by the last")
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="softmax temperature T (paper: 1)")


@register_method
class BornAgain(Method):
    """Born-again networks (Furlanello et al., ICML 2018).

    A chain of ``generations`` students of the same architecture: generation 1 is taught by the
    given teacher (normally a network of that architecture trained from labels), generation
    ``k + 1`` by generation ``k``. Within one run the objective is ``T² · KL(p_teacher || p_student)``
    (the paper matches the teacher's output distribution at ``T = 1``) beside the engine's
    cross-entropy; the chain itself is trained by :func:`workbench.train.chains.run_chain`.
    """

    name = "ban"
    description = (
        "Furlanello et al. 2018: born-again generations of one architecture, each taught by the last"
    )
    Params = BANParams

    def __init__(self, params: BANParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = mean_teacher_logits(out)
        return {"ban": F.kd_loss(out.student_logits, teacher, temperature=self.params.temperature)}


class AssistantSpec(MethodParams):
    """One teacher assistant: a zoo model by registry name and its keyword arguments."""

    model: str = Field(description="registry name of the assistant's architecture")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model")

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        from workbench.models import list_models

        names = list_models()
        if value not in names:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(names)}")
        return value


class TAKDParams(MethodParams):
    assistants: list[AssistantSpec] = Field(
        min_length=1,
        max_length=8,
        description="assistant models, from the teacher's size down to the student's",
    )
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T")


@register_method
class TAKD(Method):
    """Teacher-assistant knowledge distillation (Mirzadeh et al., AAAI 2020).

    A large teacher-student gap is bridged by intermediate-size assistants: teacher -> assistant
    1 -> ... -> assistant n -> student, each link a KD run (``T² · KL``, beside the engine's
    cross-entropy) taught by the previous one. Within one run this is Hinton KD from the run's
    teacher; :func:`workbench.train.chains.run_chain` trains the assistants and the student as
    linked runs.
    """

    name = "takd"
    description = "Mirzadeh et al. 2020: teacher -> assistant(s) -> student, each link a KD run"
    Params = TAKDParams

    def __init__(self, params: TAKDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        require_teacher(self.name, ctx)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = mean_teacher_logits(out)
        return {"takd": F.kd_loss(out.student_logits, teacher, temperature=self.params.temperature)}
