"""The Method interface every distillation method implements, and the method registry.

A method declares

* its hyperparameters as a pydantic model (``Params``) that the CLI, the app and the widgets
  render as a form (:func:`method_schema`);
* which intermediate features it needs from the student and from each teacher (module paths,
  captured by forward hooks, see :mod:`workbench.models.taps`);
* which trainable extras it adds (connectors, projection heads, memory banks) and which extra
  networks train beside the student (peers for online distillation);
* whether its teacher outputs depend only on the input (then the engine may cache them);

and returns named loss terms for a batch. The engine adds ``ce_weight * CE`` and the weighted
sum of every method's terms; it never special-cases a method by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn


class MethodError(ValueError):
    """A method cannot be set up; the message is one line naming the method and the field."""


class MethodParams(BaseModel):
    """Base class of every method's hyperparameter schema."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class MethodContext:
    """What a method sees when it is set up.

    ``sample`` is a small normalized batch (on ``device``) used to probe feature shapes.
    """

    student: nn.Module
    teachers: list[nn.Module]
    num_classes: int
    input_shape: tuple[int, int, int]
    device: torch.device
    sample: torch.Tensor
    train_size: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1
    seed: int = 0
    make_student: Callable[[], nn.Module] | None = None


@dataclass
class StepOutputs:
    """Everything a method may need to compute its loss terms for one batch.

    ``teacher_logits[i]`` and ``teacher_features[i]`` belong to ``ctx.teachers[i]``; both are
    detached (teachers never receive gradients). ``lam``/``y_mix`` are set under Mixup/CutMix.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    student_logits: torch.Tensor
    student_features: dict[str, torch.Tensor]
    teacher_logits: list[torch.Tensor]
    teacher_features: list[dict[str, torch.Tensor]]
    epoch: int
    step: int
    total_steps: int
    y_mix: torch.Tensor | None = None
    lam: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Method(nn.Module, abc.ABC):
    """Base class of a distillation method.

    Subclasses set ``name``, ``description``, ``Params`` and implement :meth:`loss`. Trainable
    extras are ordinary submodules (so they are saved with the student and optimised with it);
    networks that train beside the student (peers) are returned by :meth:`peers`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    needs_teacher: ClassVar[bool] = True
    #: the method computes its own teacher (e.g. a mean teacher) instead of using the given ones
    provides_teacher: ClassVar[bool] = False

    def __init__(self, params: MethodParams, ctx: MethodContext) -> None:
        super().__init__()
        self.params = params
        self.ctx = ctx

    # ---- declarations -------------------------------------------------------------------
    def student_features(self) -> list[str]:
        """Module paths of the student whose outputs :meth:`loss` reads."""
        return []

    def teacher_features(self) -> list[str]:
        """Module paths captured on every teacher (same paths for each teacher)."""
        return []

    @property
    def teacher_cacheable(self) -> bool:
        """True when teacher outputs depend on the input only (fixed teachers in eval mode)."""
        return not self.provides_teacher

    def peers(self) -> list[nn.Module]:
        """Networks that train beside the student (online distillation); saved with the run."""
        return []

    def teacher_models(self) -> list[nn.Module] | None:
        """Teachers this method maintains itself (e.g. an EMA of the student), else None."""
        return None

    # ---- per-batch ----------------------------------------------------------------------
    @abc.abstractmethod
    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        """Return named loss terms (0-d tensors, unweighted by the method's weight)."""

    def sample_weights(self, out: StepOutputs) -> torch.Tensor | None:
        """Optional per-sample weights for the cross-entropy term; None means uniform."""
        return None

    # ---- schedule hooks -------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""

    def after_step(self, out: StepOutputs) -> None:
        """Called after the optimiser step (e.g. to update memory banks or a mean teacher)."""


_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a registered method needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of every registered method, in registration order."""
    return list(_REGISTRY)


def describe_methods() -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every registered method."""
    return [(name, cls.description) for name, cls in _REGISTRY.items()]


def get_method_class(name: str) -> type[Method]:
    """The method class registered under ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; known: {', '.join(_REGISTRY)}") from None


def method_schema(name: str) -> dict[str, Any]:
    """JSON schema of a method's hyperparameters (what a form renders)."""
    return get_method_class(name).Params.model_json_schema()


def parse_params(name: str, params: Mapping[str, Any]) -> MethodParams:
    """Validate ``params`` against the method's schema; one-line :class:`MethodError` otherwise."""
    cls = get_method_class(name)
    try:
        return cls.Params.model_validate(dict(params))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "params"
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(cls.Params.model_fields) or "none"
            msg = f"unknown hyperparameter (allowed: {allowed})"
        got = first.get("input")
        shown = f" (got {got!r})" if first["type"] != "extra_forbidden" and not isinstance(got, dict) else ""
        raise MethodError(f"method {name!r}: {loc}: {msg}{shown}") from None


def create_method(name: str, params: Mapping[str, Any], ctx: MethodContext) -> Method:
    """Validate the hyperparameters and set the method up for ``ctx``."""
    cls = get_method_class(name)
    method = cls(parse_params(name, params), ctx)
    return method.to(ctx.device)


class MethodStack(nn.Module):
    """A weighted sum of methods, seen by the engine as one method.

    Terms are reported as ``"<method>.<term>"`` (or ``"<method>"`` for a single-term method),
    already multiplied by the method's weight; the total objective is their sum.
    """

    def __init__(self, methods: list[tuple[float, Method]]) -> None:
        super().__init__()
        self.weights = [float(w) for w, _ in methods]
        self.methods = nn.ModuleList([m for _, m in methods])

    @property
    def needs_teacher(self) -> bool:
        return any(m.needs_teacher for m in self.methods)

    @property
    def teacher_cacheable(self) -> bool:
        return all(m.teacher_cacheable for m in self.methods)

    def student_features(self) -> list[str]:
        return _union(m.student_features() for m in self.methods)

    def teacher_features(self) -> list[str]:
        return _union(m.teacher_features() for m in self.methods)

    def peers(self) -> list[nn.Module]:
        return [p for m in self.methods for p in m.peers()]

    def teacher_models(self) -> list[nn.Module] | None:
        for m in self.methods:
            own = m.teacher_models()
            if own is not None:
                return own
        return None

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for weight, method in zip(self.weights, self.methods, strict=True):
            if weight == 0.0:
                continue
            for key, value in method.loss(out).items():
                name = method.name if key == method.name else f"{method.name}.{key}"
                terms[name] = weight * value
        return terms

    def sample_weights(self, out: StepOutputs) -> torch.Tensor | None:
        weights = None
        for method in self.methods:
            w = method.sample_weights(out)
            if w is not None:
                weights = w if weights is None else weights * w
        return weights

    def on_epoch_start(self, epoch: int) -> None:
        for m in self.methods:
            m.on_epoch_start(epoch)

    def after_step(self, out: StepOutputs) -> None:
        for m in self.methods:
            m.after_step(out)


def _union(groups: Any) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for path in group:
            seen.setdefault(path, None)
    return list(seen)
