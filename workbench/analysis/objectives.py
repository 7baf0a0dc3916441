"""The objectives a loss landscape or a Hessian estimate evaluates, and how they are chosen by name.

An objective is a scalar read from one batch, ``fn(logits, labels, teacher_logits)`` -> the batch
mean. Built in: :data:`cross_entropy`, :data:`accuracy`, :data:`agreement` (top-1 agreement with
the teacher) and :func:`kd` (Hinton et al. 2015, through the kernel training uses).
:func:`resolve_objectives` turns what an analysis was given (names or callables) into
``{name: callable}``; :func:`landscape_objectives` turns the names a user picked in a face into
:class:`Objective` objects, the ``kd`` objective at a given temperature (a run's own,
:func:`workbench.runs.inspect.kd_temperature`), ready for
``landscape_1d``/``landscape_2d``/``interpolate`` and the Hessian estimates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.analysis._common import AnalysisError, check_positive_float
from workbench.distill.functional import kd_loss

__all__ = [
    "Objective",
    "ObjectiveFn",
    "accuracy",
    "agreement",
    "builtin_objectives",
    "cross_entropy",
    "kd",
    "landscape_objectives",
    "needs_teacher",
    "resolve_objectives",
]

ObjectiveFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A scalar read from a batch: ``fn(logits, labels, teacher_logits)`` -> mean over the batch.

    ``needs_teacher`` says that ``teacher_logits`` must be given (the analyses then require a
    ``teacher`` or precomputed ``teacher_logits``). Plain callables with the same signature are
    accepted wherever an :class:`Objective` is.
    """

    name: str
    fn: ObjectiveFn
    needs_teacher: bool = False

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.needs_teacher and teacher_logits is None:
            raise AnalysisError(
                f"objective {self.name!r}: needs teacher logits; pass the teacher or teacher_logits="
            )
        return self.fn(logits, labels, teacher_logits)


def _ce(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def _accuracy(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    return (logits.argmax(1) == labels).to(logits.dtype).mean()


def _agreement(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    assert teacher_logits is not None
    return (logits.argmax(1) == teacher_logits.argmax(1)).to(logits.dtype).mean()


def _kd(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    assert teacher_logits is not None
    return kd_loss(logits, teacher_logits, temperature=temperature)


#: mean cross-entropy with the labels
cross_entropy = Objective("cross_entropy", _ce)
#: top-1 accuracy against the labels
accuracy = Objective("accuracy", _accuracy)
#: share of samples whose top-1 prediction equals the teacher's
agreement = Objective("agreement", _agreement, needs_teacher=True)


def kd(temperature: float = 4.0) -> Objective:
    """Hinton et al. 2015 distillation objective ``T² · KL(softmax(t/T) || softmax(s/T))`` (batch mean).

    Uses :func:`workbench.distill.functional.kd_loss`, the kernel training uses.

    Args:
        temperature: the softmax temperature ``T`` (a positive number).

    Returns:
        An :class:`Objective` named ``kd(T=...)`` that needs the teacher's logits.
    """
    temp = check_positive_float(temperature, "temperature")
    return Objective(f"kd(T={temp:g})", functools.partial(_kd, temperature=temp), needs_teacher=True)


def builtin_objectives() -> dict[str, Objective]:
    """The objectives reachable by name: ``cross_entropy``, ``accuracy``, ``agreement``, ``kd`` (T=4).

    Returns:
        ``{name: Objective}`` in that order.
    """
    return {"cross_entropy": cross_entropy, "accuracy": accuracy, "agreement": agreement, "kd": kd(4.0)}


def resolve_objectives(
    objectives: Mapping[str, ObjectiveFn] | Sequence[str] | str | None,
) -> dict[str, ObjectiveFn]:
    """The objectives an analysis evaluates, keyed by name.

    Args:
        objectives: ``None`` (cross-entropy alone), a built-in name (:func:`builtin_objectives`), a
            list of names, or ``{name: callable(logits, labels, teacher_logits)}``.

    Returns:
        ``{name: callable}`` in the order given.

    Raises:
        AnalysisError: an unknown name (one line listing the known ones), a value that is not
            callable, or no objective at all.
    """
    if objectives is None:
        return {"cross_entropy": cross_entropy}
    known = builtin_objectives()
    if isinstance(objectives, str):
        objectives = [objectives]
    if isinstance(objectives, Mapping):
        out = {str(k): v for k, v in objectives.items()}
        for name, fn in out.items():
            if not callable(fn):
                raise AnalysisError(
                    f"objectives[{name!r}]: expected a callable(logits, labels, teacher_logits)"
                )
    else:
        out = {}
        for name in objectives:
            if name not in known:
                raise AnalysisError(
                    f"objectives: unknown objective {name!r}; known: {', '.join(sorted(known))}"
                )
            out[name] = known[name]
    if not out:
        raise AnalysisError("objectives: expected at least one objective, got none")
    return out


def needs_teacher(objs: Mapping[str, ObjectiveFn]) -> bool:
    """Whether any of ``objs`` (``{name: callable}``) reads the teacher's logits (``needs_teacher``)."""
    return any(getattr(fn, "needs_teacher", False) for fn in objs.values())


def landscape_objectives(names: Sequence[str], *, temperature: float | None = None) -> dict[str, Objective]:
    """The objectives named ``names``, in that order, keyed by name.

    Args:
        names: names of :func:`builtin_objectives` (a single string is one name).
        temperature: the softmax temperature of ``kd`` (Hinton et al. 2015); ``None`` keeps the
            built-in ``kd`` (T=4).

    Returns:
        ``{name: Objective}``.

    Raises:
        AnalysisError: an unknown name (one line listing the known ones), no name at all, or a
            temperature that is not a positive number.
    """
    known = builtin_objectives()
    chosen = [names] if isinstance(names, str) else list(names)
    if not chosen:
        raise AnalysisError(f"objective: expected at least one of {', '.join(known)}, got none")
    out: dict[str, Objective] = {}
    for name in chosen:
        if name not in known:
            raise AnalysisError(f"objective: unknown {name!r}; known: {', '.join(known)}")
        out[name] = kd(temperature) if name == "kd" and temperature is not None else known[name]
    return out
