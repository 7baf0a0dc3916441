"""Curvature of a student's objective: the top Hessian eigenvalue and the Hessian trace.

* Power iteration (von Mises) on Hessian-vector products computed by double backprop
  (Pearlmutter 1994) for the eigenvalue of largest magnitude, with its sign.
* Hutchinson's 1989 trace estimator with Rademacher probes.

Both need gradients with respect to the parameters, so they run on a deep copy of the student with
``requires_grad`` switched on (BatchNorm in eval mode); the caller's model is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    check_class_names,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis._result import AnalysisResult
from workbench.analysis.evaluation import EvalSet, eval_set
from workbench.analysis.objectives import ObjectiveFn, resolve_objectives
from workbench.runtime import CancelToken, ProgressFn

__all__ = ["HessianEigenResult", "HessianTraceResult", "hessian_top_eigenvalue", "hessian_trace"]


@dataclass
class HessianEigenResult(AnalysisResult):
    """The Hessian eigenvalue of largest magnitude (with its sign) from power iteration.

    ``history`` holds the Rayleigh quotient after each iteration.
    """

    eigenvalue: float
    iterations: int
    converged: bool
    history: np.ndarray
    n_samples: int
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class HessianTraceResult(AnalysisResult):
    """Hutchinson's estimate of the Hessian trace: the mean of ``zᵀHz`` over Rademacher probes ``z``.

    ``std_error`` is the standard error of that mean; ``estimates`` the per-probe values;
    ``n_probes`` the number of probes; ``n_samples`` the number of images the Hessian is taken over.
    """

    trace: float
    std_error: float
    n_probes: int
    estimates: np.ndarray
    n_samples: int
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


class _HessianVectorProduct:
    """``v -> H v`` for the mean objective over a fixed data set (double backprop, batched)."""

    def __init__(
        self, model: nn.Module, loss_fn: ObjectiveFn, data: EvalSet, params: list[torch.Tensor]
    ) -> None:
        self.model, self.loss_fn, self.data, self.params = model, loss_fn, data, params
        self.n = len(data.images)

    def __call__(self, vs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in self.params]
        for sl in self.data.slices:
            with torch.enable_grad():
                logits = self.model(self.data.images[sl])
                t = self.data.teacher_logits[sl] if self.data.teacher_logits is not None else None
                loss = torch.as_tensor(self.loss_fn(logits, self.data.labels[sl], t)).reshape(())
                loss = loss * ((sl.stop - sl.start) / self.n)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                dot = sum(
                    ((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None),
                    start=torch.zeros((), device=loss.device, dtype=loss.dtype),
                )
                if not dot.requires_grad:
                    continue
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            for acc, h in zip(out, hv, strict=True):
                if h is not None:
                    acc.add_(h.detach())
        return out


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def _objective(objective: object) -> ObjectiveFn:
    """One objective: a built-in name or a ``callable(logits, labels, teacher_logits)``."""
    if isinstance(objective, str):
        return next(iter(resolve_objectives([objective]).values()))
    if not callable(objective):
        raise AnalysisError(
            "objective: expected a built-in name or a callable(logits, labels, teacher_logits) -> mean loss"
        )
    return objective  # type: ignore[return-value]


def _setup(
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    objective: object,
    teacher_logits: torch.Tensor | None,
    batch_size: int,
    device: str | torch.device | None,
) -> tuple[_HessianVectorProduct, list[torch.Tensor], EvalSet]:
    """The Hessian-vector product of the objective on a gradient-enabled deep copy of the student."""
    check_model(student, "student")
    loss_fn = _objective(objective)
    dev = resolve_device(student, device)
    data = eval_set(images, labels, {"loss": loss_fn}, teacher, teacher_logits, batch_size, device, dev)
    model = working_copy(student, dev)  # eval mode: BatchNorm uses its running statistics
    params = list(model.parameters())
    if not params:
        raise AnalysisError("student: has no parameters; its Hessian is empty")
    for p in params:
        p.requires_grad_(True)
    return _HessianVectorProduct(model, loss_fn, data, params), params, data


def _objective_name(objective: object) -> str:
    return objective if isinstance(objective, str) else str(getattr(objective, "name", repr(objective)))


def hessian_top_eigenvalue(
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    objective: str | ObjectiveFn = "cross_entropy",
    iters: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    teacher_logits: torch.Tensor | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> HessianEigenResult:
    """Largest-magnitude eigenvalue of the Hessian of the student's mean objective, with its sign.

    Power iteration (von Mises) on Hessian-vector products computed by double backprop
    (Pearlmutter 1994) over all parameters, BatchNorm in eval mode: ``v <- Hv / ‖Hv‖``; the
    estimate is the Rayleigh quotient ``vᵀHv`` (so a dominant negative eigenvalue keeps its sign).
    Stops when the estimate changes by at most ``tol · |estimate|`` between two iterations.

    Args:
        teacher: needed only by a distillation objective (``"kd"``, ``kd(T)``, ``"agreement"``);
            may be ``None``.
        student: the network (never changed: the products run on a deep copy).
        images, labels: the data set the objective is averaged over.
        objective: a built-in name of :func:`workbench.analysis.objectives.builtin_objectives` or a
            ``callable(logits, labels, teacher_logits)`` -> batch mean, e.g. ``kd(4.0)``.
        iters: maximum number of iterations. tol: relative tolerance. seed: start vector seed.
        teacher_logits: precomputed teacher logits instead of ``teacher``.
        names, class_names: display names kept in the result.
        device, batch_size: placement and batching.
        progress: once per iteration (ends at ``iters``, also on early convergence).
        cancel: checked before every iteration.

    Returns:
        :class:`HessianEigenResult`.
    """
    n_iter = check_positive_int(iters, "iters")
    tol_f = check_positive_float(tol, "tol")
    pair = check_names(names)
    classes = check_class_names(class_names)
    track = new_tracker(progress, cancel, n_iter, "Hessian eigenvalue")
    track.start()
    hvp, params, data = _setup(
        teacher, student, images, labels, objective, teacher_logits, batch_size, device
    )
    gen = torch.Generator().manual_seed(int(seed))
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    norm = np.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    history: list[float] = []
    converged = False
    for _ in range(n_iter):
        track.check()
        hv = hvp(v)
        lam = _dot(v, hv)
        history.append(lam)
        track.report(len(history), f"Hessian eigenvalue: iteration {len(history)}")
        hv_norm = np.sqrt(_dot(hv, hv))
        if hv_norm == 0.0:
            converged = True
            break
        v = [h / hv_norm for h in hv]
        if len(history) > 1 and abs(history[-1] - history[-2]) <= tol_f * abs(history[-1]):
            converged = True
            break
    track.report(n_iter, "Hessian eigenvalue")
    return HessianEigenResult(
        eigenvalue=history[-1],
        iterations=len(history),
        converged=converged,
        history=np.asarray(history),
        n_samples=len(data.images),
        names=pair,
        class_names=classes,
        params={
            "objective": _objective_name(objective),
            "iters": n_iter,
            "tol": tol_f,
            "seed": int(seed),
            "batch_size": data.batch_size,
        },
    )


def hessian_trace(
    teacher: nn.Module | None,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    objective: str | ObjectiveFn = "cross_entropy",
    n_probes: int = 100,
    seed: int = 0,
    teacher_logits: torch.Tensor | None = None,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> HessianTraceResult:
    """Hutchinson's estimator of the Hessian trace: ``tr(H) ≈ mean_i z_iᵀ H z_i``, ``z_i`` Rademacher.

    Hutchinson 1989 (unbiased; variance ``2 Σ_{i≠j} H_ij²`` per probe). Probes are drawn on the CPU
    from ``seed``; Hessian-vector products as in :func:`hessian_top_eigenvalue`.

    Args:
        n_probes: number of probe vectors, not images (progress is reported once per probe; cancel checked before
            each). Others as in :func:`hessian_top_eigenvalue`.

    Returns:
        :class:`HessianTraceResult`.
    """
    n_probe = check_positive_int(n_probes, "n_probes")
    pair = check_names(names)
    classes = check_class_names(class_names)
    track = new_tracker(progress, cancel, n_probe, "Hessian trace")
    track.start()
    hvp, params, data = _setup(
        teacher, student, images, labels, objective, teacher_logits, batch_size, device
    )
    gen = torch.Generator().manual_seed(int(seed))
    estimates = np.empty(n_probe)
    for i in range(n_probe):
        track.check()
        z = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params]
        estimates[i] = _dot(z, hvp(z))
        track.report(i + 1, f"Hessian trace: probe {i + 1}")
    err = float(estimates.std(ddof=1) / np.sqrt(n_probe)) if n_probe > 1 else float("nan")
    return HessianTraceResult(
        trace=float(estimates.mean()),
        std_error=err,
        n_probes=n_probe,
        estimates=estimates,
        n_samples=len(data.images),
        names=pair,
        class_names=classes,
        params={
            "objective": _objective_name(objective),
            "n_probes": n_probe,
            "seed": int(seed),
            "batch_size": data.batch_size,
        },
    )
