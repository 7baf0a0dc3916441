"""Typed events emitted by the training engine, and the subscriber protocol.

Subscribers are plain callables ``fn(event)``; the CLI progress bar, the run-store writer, the
app and the widgets all listen the same way. A subscriber that raises fails the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

StateFn = Callable[[], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class RunStarted:
    run_id: str | None
    config: Any
    epochs: int
    steps_per_epoch: int
    total_steps: int
    model_spec: dict[str, Any]
    teacher_metrics: dict[str, float]


@dataclass(frozen=True)
class StepEnded:
    run_id: str | None
    step: int
    epoch: int
    loss: float
    terms: dict[str, float]
    lr: float


@dataclass(frozen=True)
class EvalEnded:
    run_id: str | None
    epoch: int
    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class EpochEnded:
    run_id: str | None
    epoch: int
    step: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    is_best: bool
    state: StateFn = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunFinished:
    run_id: str | None
    step: int
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    state: StateFn = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunStopped:
    run_id: str | None
    step: int
    epoch: int
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    state: StateFn = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunFailed:
    run_id: str | None
    step: int
    epoch: int
    error: str
    terms: dict[str, float]
    history: list[dict[str, Any]]


Event = RunStarted | StepEnded | EvalEnded | EpochEnded | RunFinished | RunStopped | RunFailed
Subscriber = Callable[[Event], None]
