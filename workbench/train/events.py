"""Typed events emitted by the training engine, and the subscriber protocol.

Subscribers are plain callables ``fn(event)``; the CLI progress bar, the run-store writer, the
app, the widgets and the job worker all listen the same way. A subscriber that raises fails the
run.

Events are immutable data. Every event has ``to_dict()`` (JSON-serialisable, with a ``type``
key). Epochs are counted from 1 in every event: ``epoch`` is the epoch being run (``StepEnded``,
``RunStopped``, ``RunFailed``) or just finished (``EpochEnded``, ``EvalEnded``), ``1..epochs``.

Weights travel as a :class:`StateSnapshot` (``EpochEnded``, ``RunFinished``, ``RunStopped``): a
CPU copy of the training state taken at most once per event, and only when someone asks for it.
A subscriber may call ``event.snapshot.state()`` while it handles the event; a subscriber that
keeps events to read later (another thread, a queue) declares ``wants_state = True`` and the
engine takes the copy before emitting. A snapshot that was not taken while the event was being
emitted cannot be read afterwards (:class:`SnapshotError`): it never returns later weights.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from workbench.config import RunConfig

StateFn = Callable[[], dict[str, torch.Tensor]]


class SnapshotError(RuntimeError):
    """A snapshot was read after its event was emitted, but nobody took it in time."""


class StateSnapshot:
    """The training state (student, method extras, peers) at one moment, as CPU tensors.

    ``state()`` returns ``{name: tensor}`` with the same keys as a run's checkpoint file
    (``student.*``, ``extras.*``, ``peerN.*``). The copy is made on the first call, while the
    engine is emitting the event (or eagerly when a subscriber declares ``wants_state``), and
    memoised; after emission the live model is released, so a later read either returns that
    memoised copy or raises :class:`SnapshotError`.
    """

    __slots__ = ("_source", "_state", "_lock", "label")

    def __init__(self, source: StateFn | None, label: str = "") -> None:
        self._source = source
        self._state: dict[str, torch.Tensor] | None = None
        self._lock = threading.Lock()
        self.label = label

    @classmethod
    def of(cls, state: dict[str, torch.Tensor], label: str = "") -> StateSnapshot:
        """A snapshot holding a copy of ``state`` already."""
        snap = cls(lambda: state, label)
        snap.take()
        snap.seal()
        return snap

    def take(self) -> None:
        """Copy the live state now (no-op when already taken or sealed)."""
        with self._lock:
            if self._state is None and self._source is not None:
                self._state = {k: v.detach().to("cpu", copy=True) for k, v in self._source().items()}

    def seal(self) -> None:
        """Release the live model: from now on only a copy already taken can be read."""
        with self._lock:
            self._source = None

    @property
    def available(self) -> bool:
        """Whether ``state()`` can still return this moment's weights."""
        return self._state is not None or self._source is not None

    def state(self) -> dict[str, torch.Tensor]:
        """The state as CPU tensors (a new dict each call; do not modify the tensors in place)."""
        self.take()
        if self._state is None:
            raise SnapshotError(
                f"snapshot {self.label or ''}: it was not taken while the event was emitted; "
                "a subscriber that reads weights later must declare `wants_state = True`"
            )
        return dict(self._state)

    def __getstate__(self) -> dict[str, Any]:
        return {"state": self._state if self._state is not None else None, "label": self.label}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self._source = None
        self._state = data["state"]
        self._lock = threading.Lock()
        self.label = data["label"]

    def __repr__(self) -> str:
        taken = "taken" if self._state is not None else ("pending" if self._source else "not taken")
        return f"StateSnapshot({self.label!r}, {taken})"


class ResumeSnapshot:
    """What resuming needs at an epoch end (:class:`workbench.train.resume.ResumePoint`), taken
    on the first :meth:`point` call while the event is emitted (or eagerly for a subscriber that
    declares ``wants_resume = True``); like :class:`StateSnapshot`, unreadable after emission
    unless taken. Nothing is copied for an epoch nobody reads it at."""

    __slots__ = ("_source", "_point", "_lock")

    def __init__(self, source: Callable[[], Any] | None) -> None:
        self._source = source
        self._point: Any = None
        self._lock = threading.Lock()

    def take(self) -> None:
        """Capture now (no-op when already taken or sealed)."""
        with self._lock:
            if self._point is None and self._source is not None:
                self._point = self._source()

    def seal(self) -> None:
        """Release the live trainer: only a point already taken can be read from now on."""
        with self._lock:
            self._source = None

    def point(self) -> Any:
        """The :class:`~workbench.train.resume.ResumePoint` (CPU tensors and JSON metadata)."""
        self.take()
        if self._point is None:
            raise SnapshotError("resume point: it was not taken while the event was emitted")
        return self._point

    def __getstate__(self) -> dict[str, Any]:
        return {"point": self._point}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self._source = None
        self._point = data["point"]
        self._lock = threading.Lock()


def _plain(value: Any) -> Any:
    """JSON-ready copy: non-finite floats become None, tuples lists, configs dicts."""
    if isinstance(value, RunConfig):
        return value.model_dump(mode="json")
    if isinstance(value, (StateSnapshot, ResumeSnapshot)):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _plain(value.item())
    try:
        return _plain(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


class _EventBase:
    """``to_dict()`` for every event: its fields (snapshots left out) and ``type``."""

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: ``{"type": <class name>, <field>: <value>, ...}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in ("snapshot", "resume"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        return out


@dataclass(frozen=True)
class SetupProgress(_EventBase):
    """A set-up phase started or advanced: ``done`` of ``total`` set-up units (monotone).

    ``phase`` is one of ``data``, ``models``, ``teachers``, ``teacher cache``,
    ``teacher test logits``, ``optimizer``, ``ready``.
    """

    run_id: str | None
    phase: str
    done: int
    total: int
    message: str


@dataclass(frozen=True)
class RunStarted(_EventBase):
    """Training starts (after set-up). A resumed run starts after ``start_epoch`` finished epochs,
    whose metrics are ``history``; a new run has ``start_epoch=0`` and no history.
    ``teacher_metrics`` is empty: the teacher's test metrics come with the first evaluation
    (:attr:`EvalEnded.teacher`)."""

    run_id: str | None
    config: RunConfig
    epochs: int
    steps_per_epoch: int
    total_steps: int
    model_spec: dict[str, Any]
    teacher_metrics: dict[str, float]
    start_epoch: int = 0
    history: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class StepEnded(_EventBase):
    """A training step ended: global ``step`` (from 1) of ``epoch``, its total ``loss``, its
    weighted loss ``terms`` and learning rate ``lr``. ``metrics`` is the step's record for the step
    log when ``train.step_log_every`` picks this step (``step``, ``epoch``, ``loss``,
    ``loss/<term>``, ``lr``, ``batch_acc``, ``images_per_s``, ``time``; see
    :mod:`workbench.train.steplog`), else ``None``."""

    run_id: str | None
    step: int
    epoch: int
    loss: float
    terms: dict[str, float]
    lr: float
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class EvalEnded(_EventBase):
    """An evaluation on the test split ended: the student's ``metrics``; ``teacher`` holds the
    (fixed) teachers' test metrics (``teacher_test_acc``) on the evaluation that computed them,
    the run's first, and is empty otherwise."""

    run_id: str | None
    epoch: int
    step: int
    metrics: dict[str, float]
    teacher: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunWarning(_EventBase):
    """Something the user should know that does not stop the run; ``code`` names the kind
    (``teacher_near_chance``: a teacher's test accuracy on this data is near chance), ``message``
    is one line."""

    run_id: str | None
    epoch: int
    step: int
    code: str
    message: str


@dataclass(frozen=True)
class EpochEnded(_EventBase):
    run_id: str | None
    epoch: int
    step: int
    metrics: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    is_best: bool
    snapshot: StateSnapshot = field(repr=False, compare=False)
    resume: ResumeSnapshot | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RunFinished(_EventBase):
    run_id: str | None
    step: int
    epoch: int
    summary: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    snapshot: StateSnapshot = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunStopped(_EventBase):
    run_id: str | None
    step: int
    epoch: int
    summary: dict[str, Any]
    history: tuple[dict[str, Any], ...]
    snapshot: StateSnapshot = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunFailed(_EventBase):
    run_id: str | None
    step: int
    epoch: int
    error: str
    terms: dict[str, float]
    history: tuple[dict[str, Any], ...]


Event = (
    SetupProgress
    | RunStarted
    | StepEnded
    | EvalEnded
    | RunWarning
    | EpochEnded
    | RunFinished
    | RunStopped
    | RunFailed
)
Subscriber = Callable[[Event], None]


def wants_state(subscriber: Any) -> bool:
    """Whether ``subscriber`` declared ``wants_state = True`` (keeps snapshots to read later)."""
    return bool(getattr(subscriber, "wants_state", False))


EVENT_TYPES: tuple[type, ...] = (
    SetupProgress,
    RunStarted,
    StepEnded,
    EvalEnded,
    RunWarning,
    EpochEnded,
    RunFinished,
    RunStopped,
    RunFailed,
)
