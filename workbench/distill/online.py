"""Online and self-distillation: deep mutual learning (peers teach each other) and a momentum
(mean) teacher that is an exponential moving average of the student.

Neither needs a fixed teacher. DML's peers are submodules of the method, so they are optimised
with the student and saved with the run; the engine puts them in train mode. The mean teacher
is a frozen copy of the student updated after every optimiser step; it is offered to the engine
through :meth:`~workbench.distill.base.Method.teacher_models` and always stays in eval mode.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as TF
from pydantic import Field
from torch import nn

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import method_error


def _cross_entropy(logits: torch.Tensor, out: StepOutputs) -> torch.Tensor:
    """Batch-mean cross-entropy, mixed with the partner labels under Mixup/CutMix."""
    ce = TF.cross_entropy(logits, out.y)
    if out.y_mix is not None and out.lam is not None:
        ce = out.lam * ce + (1.0 - out.lam) * TF.cross_entropy(logits, out.y_mix)
    return ce


# ---- deep mutual learning ----------------------------------------------------------------------


class DMLParams(MethodParams):
    peers: int = Field(1, ge=1, le=8, description="networks trained beside the student (cohort size - 1)")
    temperature: float = Field(
        1.0, gt=0.0, le=100.0, description="softmax temperature of the mutual KL (paper: 1)"
    )
    peer_ce_weight: float = Field(1.0, ge=0.0, description="weight of each peer's own cross-entropy")


@register_method
class DML(Method):
    """Deep mutual learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018).

    A cohort of the student and ``peers`` networks of the student's architecture (built with
    ``ctx.make_student()`` from their own seeds) learn together, no fixed teacher: each network
    minimises its cross-entropy plus the mean over the other members ``j`` of
    ``T² · KL(p_j || p_self)`` (the paper's ``1/(K-1) Σ_j KL``, ``T = 1``), the other members'
    outputs taken as fixed targets of the same batch (the simultaneous-update variant). Terms:
    ``kl`` — the student's mutual term (its cross-entropy is the engine's); ``peers`` — the sum
    over peers of ``peer_ce_weight · CE + mutual KL``.
    """

    name = "dml"
    description = "Zhang et al. 2018: a cohort of students teaching each other (mutual KL), no fixed teacher"
    Params = DMLParams
    needs_teacher = False

    def __init__(self, params: DMLParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        if ctx.make_student is None:
            raise method_error(
                self.name, "peers", "needs a way to build peers of the student's architecture (make_student)"
            )
        nets = []
        for i in range(params.peers):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(ctx.seed) + 1000 * (i + 1))
                nets.append(ctx.make_student())
        self.peer_nets = nn.ModuleList(nets)

    def peers(self) -> list[nn.Module]:
        return list(self.peer_nets)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        temp = self.params.temperature
        logits = [out.student_logits] + [net(out.x) for net in self.peer_nets]
        fixed = [z.detach() for z in logits]
        cohort = len(logits)

        def mutual(i: int) -> torch.Tensor:
            terms = [F.kd_loss(logits[i], fixed[j], temperature=temp) for j in range(cohort) if j != i]
            return torch.stack(terms).mean()

        peers = sum(
            self.params.peer_ce_weight * _cross_entropy(logits[i], out) + mutual(i) for i in range(1, cohort)
        )
        return {"kl": mutual(0), "peers": peers}


# ---- momentum (mean) teacher -------------------------------------------------------------------


class EMAParams(MethodParams):
    momentum: float = Field(0.999, ge=0.0, lt=1.0, description="EMA decay of the teacher weights")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature T")
    consistency: Literal["kl", "mse"] = Field(
        "kl",
        description="kl: T² KL(teacher || student); mse: Mean Teacher's squared error of softened outputs",
    )
    rampup_epochs: float = Field(
        0.0, ge=0.0, le=10000.0, description="epochs of Mean Teacher's sigmoid ramp-up of the loss (0 = off)"
    )


@register_method
class EMATeacher(Method):
    """Momentum (mean) teacher self-distillation (Tarvainen & Valpola, "Mean teachers are better
    role models", NeurIPS 2017).

    The teacher is a frozen copy of the student whose weights follow the student's by an
    exponential moving average after every optimiser step, with the reference's warm-up of the
    decay: ``θ_t ← a θ_t + (1 - a) θ_s``, ``a = min(1 - 1/(n + 1), momentum)`` at the ``n``-th
    update (``n`` from 1). Floating-point buffers (BatchNorm statistics) are averaged the same way
    because the teacher always runs in eval mode; integer buffers are copied. The student matches
    the teacher's softened outputs — ``T² · KL`` or the reference's softmax MSE consistency —
    scaled by the sigmoid ramp-up ``exp(-5 (1 - t)²)``, ``t = epoch / rampup_epochs``.
    """

    name = "ema"
    description = (
        "Tarvainen & Valpola 2017: self-distillation from an exponential moving average of the student"
    )
    Params = EMAParams
    needs_teacher = False
    provides_teacher = True

    def __init__(self, params: EMAParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        teacher = copy.deepcopy(ctx.student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher.eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EMATeacher:
        """Set train mode on the method's other parts; the mean teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_models(self) -> list[nn.Module]:
        return [self.teacher]

    def rampup(self, step: int) -> float:
        """Mean Teacher's sigmoid ramp-up ``exp(-5 (1 - t)²)`` at ``t = epoch / rampup_epochs``."""
        if self.params.rampup_epochs <= 0:
            return 1.0
        epoch = step / max(self.ctx.steps_per_epoch, 1)
        t = min(max(epoch / self.params.rampup_epochs, 0.0), 1.0)
        return math.exp(-5.0 * (1.0 - t) ** 2)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        temp = self.params.temperature
        self.teacher.eval()
        with torch.no_grad():
            teacher = self.teacher(out.x)
        if self.params.consistency == "kl":
            value = F.kd_loss(out.student_logits, teacher, temperature=temp)
        else:
            p_s = torch.softmax(out.student_logits / temp, dim=1)
            p_t = torch.softmax(teacher.to(p_s.dtype) / temp, dim=1)
            value = TF.mse_loss(p_s, p_t)
        return {"ema": self.rampup(out.step) * value}

    @torch.no_grad()
    def update_teacher(self, student: nn.Module) -> float:
        """One EMA update of the teacher from ``student``; returns the decay ``a`` used."""
        self.updates += 1
        n = int(self.updates)
        decay = min(1.0 - 1.0 / (n + 1), self.params.momentum)
        for t, s in zip(self.teacher.parameters(), student.parameters(), strict=True):
            t.lerp_(s.detach().to(t.dtype), 1.0 - decay)
        for t, s in zip(self.teacher.buffers(), student.buffers(), strict=True):
            if t.is_floating_point():
                t.lerp_(s.to(t.dtype), 1.0 - decay)
            else:
                t.copy_(s)
        return decay

    def after_step(self, out: StepOutputs) -> None:
        self.update_teacher(self.ctx.student)
