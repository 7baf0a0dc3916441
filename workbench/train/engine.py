"""The training engine: one loop for teachers, scratch students and distilled students.

``Trainer(config).run()`` loads the data and models, sets up the method stack, trains with the
configured optimiser and schedule, evaluates after every epoch, and emits typed events to its
subscribers (the run-store writer among them). It never special-cases a method by name: the
objective is ``ce_weight * CE + sum_i weight_i * method_i`` (see :mod:`workbench.distill.base`).
"""

from __future__ import annotations

import math
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ConfigError, RunConfig
from workbench.data import Augment, BatchLoader, Dataset, load_dataset
from workbench.devices import inference_chunk, resolve_device
from workbench.distill import MethodContext, MethodStack, StepOutputs, create_method
from workbench.models import (
    channels_last,
    create_model,
    input_layout,
    model_info,
    wants_channels_last,
)
from workbench.models.copies import frozen_copy
from workbench.models.taps import FeatureTaps
from workbench.runs import RunStore, RunStoreError, RunWriter, checkpoint_state, load_weights, split_state
from workbench.runs.store import process_gone, process_start
from workbench.runtime import Cancelled, CancelToken
from workbench.train import resume as resume_mod
from workbench.train.cache import (
    LazyTeacherCache,
    TeacherCache,
    build_teacher_cache,
    inference_teachers,
    precision_name,
    teacher_dtype,
    teacher_forward,
)
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    ResumeSnapshot,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    SetupProgress,
    StateSnapshot,
    StepEnded,
    Subscriber,
    wants_state,
)
from workbench.train.metrics import logit_metrics
from workbench.train.resume import RESUME_CHECKPOINT, ResumeError, ResumePoint
from workbench.train.store_writer import StoreWriter
from workbench.train.teachers import load_teacher
from workbench.validate import methods_needing_teacher


class TrainingFailed(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the epoch (from 1) and every
    term's value."""

    def __init__(self, step: int, epoch: int, terms: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): {shown}")
        self.step, self.epoch, self.terms = step, epoch, terms


@dataclass
class TrainResult:
    """What a finished (or stopped) run returns to its caller.

    ``link_ids`` lists every run the call trained, in order: ``[run_id]`` for one run, each
    link's id for a chain (``ban``, ``takd``), whose result is the last link's. ``student`` is the
    trained network on the device it was given on (a student built from the config: the CPU).
    ``warnings`` holds the run's warnings (e.g. a teacher near chance on this data).
    """

    run_id: str | None
    status: str
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    student: nn.Module
    method: MethodStack
    link_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def new_run_id(label: str) -> str:
    """A fresh run id in the run store's format: ``<YYYYmmdd-HHMMSS>-<label slug>-<4 hex>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40] or "run"
    return f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, schedule: Any, base_lr: float) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    warm = int(round(schedule.warmup_epochs * steps_per_epoch))
    if warm and step < warm:
        return (step + 1) / warm
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        epoch = step // max(steps_per_epoch, 1)
        return schedule.gamma ** sum(1 for m in schedule.milestones if epoch >= m)
    span = max(total_steps - warm, 1)
    progress = min(max(step - warm, 0) / span, 1.0)
    floor = schedule.min_lr / base_lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


#: set-up progress units: data, models, teachers, teacher cache (10), teacher test logits, optimizer
SETUP_UNITS = 15
_CACHE_UNITS = (3, 13)
#: how the teacher cache is filled: during the first epoch (lazy) or by a pass before it (eager)
CACHE_MODES = ("lazy", "eager")


def teacher_warning_threshold(num_classes: int) -> float:
    """Test accuracy under which a teacher is reported as near chance on the student's data:
    ``max(2/K, 1/K + 0.1)``, capped at halfway between chance and 1 (so two classes give 0.75)."""
    k = max(int(num_classes), 1)
    return min(max(2 / k, 1 / k + 0.1), (1 / k + 1) / 2)


class Trainer:
    """Train one run from a :class:`RunConfig`.

    ``dataset``, ``student`` and ``teachers`` may be passed in (any ``nn.Module`` is accepted);
    otherwise they are built from the config. ``store=None`` keeps the run in memory only.

    Progress and cancellation (see :mod:`workbench.runtime`): ``progress(done, total, message)``
    hears one monotone count, ``SETUP_UNITS`` set-up units then one per training step (``total``
    is ``SETUP_UNITS + total_steps`` once the data is loaded); set-up also emits
    :class:`SetupProgress` events. ``cancel`` (a :class:`CancelToken`, never reset here) and
    :meth:`request_stop` are checked between set-up phases, per batch of the teacher cache and
    after every training step. A stop during set-up raises :class:`Cancelled` before any run
    directory exists; a stop during training ends the run as ``stopped`` (loadable, with the
    completed epochs).

    Devices: modules passed in are trained on ``train.device`` and the student is moved back to
    the device it came on when the run ends (however it ends); teachers passed in are never
    moved or changed (the engine works on copies).

    Teacher outputs: fixed teachers run on an inference copy (BatchNorm folded, channels-last
    weights when the inputs are). With ``teacher_cache="lazy"`` (default) the first epoch's
    forwards fill the cache; ``"eager"`` fills it in set-up, as one pass over the train split.
    The teacher's test logits are computed once, at the first evaluation.

    Resume: ``resume=RUN_ID`` (with ``store``) continues a stopped, interrupted or failed run
    from its last epoch's resume point (``checkpoints/resume.safetensors``): weights, optimizer,
    learning-rate position, RNG states and the method's own state come back, so the result is
    the one an uninterrupted run gives. The config must equal the run's recorded one except for
    ``train.epochs``.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        store: RunStore | None = None,
        subscribers: Iterable[Subscriber] = (),
        progress: Callable[[int, int, str], None] | None = None,
        cancel: CancelToken | None = None,
        dataset: Dataset | None = None,
        student: nn.Module | None = None,
        teachers: list[nn.Module] | None = None,
        run_id: str | None = None,
        resume: str | None = None,
        teacher_cache: str = "lazy",
    ) -> None:
        if teacher_cache not in CACHE_MODES:
            raise ValueError(
                f"teacher_cache: expected one of {', '.join(CACHE_MODES)}, got {teacher_cache!r}"
            )
        if resume is not None and run_id is not None:
            raise ValueError("run_id: a resumed run keeps its own id; pass resume=RUN_ID only")
        if resume is not None and store is None:
            raise ResumeError(f"resume {resume}: a run store is needed to resume a run")
        if progress is not None and not callable(progress):
            raise TypeError(
                f"progress: expected a callable progress(done, total, message), got {type(progress).__name__}"
            )
        if cancel is not None and not isinstance(cancel, CancelToken):
            raise TypeError(f"cancel: expected a workbench.runtime.CancelToken, got {type(cancel).__name__}")
        self.config = config
        self.store = store
        self.subscribers: list[Subscriber] = list(subscribers)
        self.progress = progress
        self.cancel = cancel
        self._dataset = dataset
        self._student = student
        self._teachers = teachers
        self._run_id = run_id
        self.run_id: str | None = run_id
        self.resume = resume
        self.cache_mode = teacher_cache
        self._resume_point: ResumePoint | None = None
        self._resume_run: Any = None
        self.warnings: list[str] = []
        self._stop = threading.Event()
        self._units_total = 1
        self._units_done = 0
        self.device = resolve_device(config.train.device, field="train.device")
        #: hook for tests and diagnostics: called with the term dict before the NaN check
        self.term_hook: Callable[[dict[str, torch.Tensor], int], None] | None = None

    def request_stop(self) -> None:
        """Ask the run to stop: during set-up it raises :class:`Cancelled` (nothing is written);
        during training it stops after the current step and the run is left loadable
        (``stopped``). The request is cleared when :meth:`run` starts again."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called or the ``cancel`` token is set."""
        return self._stop.is_set() or (self.cancel is not None and self.cancel.cancelled)

    def _emit(self, event: Event) -> None:
        for fn in self.subscribers:
            fn(event)

    def _emit_with_snapshot(self, event: EpochEnded | RunFinished | RunStopped) -> None:
        try:
            self._emit(event)
        finally:
            event.snapshot.seal()  # from here on only a copy taken during emission is readable

    def _snapshot(self, label: str) -> StateSnapshot:
        snap = StateSnapshot(self._state, label)
        if any(wants_state(s) for s in self.subscribers):
            snap.take()
        return snap

    # ---- progress and cancellation during set-up -----------------------------------------
    def _check_setup(self, phase: str) -> None:
        if self._stop.is_set():
            raise Cancelled(f"training set-up ({phase}): stop requested")
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(f"training set-up ({phase}): {self.cancel.reason}")

    def _setup_report(self, done: int, phase: str, message: str) -> None:
        self._units_done = max(self._units_done, min(done, SETUP_UNITS))
        if self.progress is not None:
            self.progress(self._units_done, self._units_total, f"set-up: {message}")
        if self.subscribers:
            self._emit(SetupProgress(self.run_id, phase, self._units_done, SETUP_UNITS, message))

    def _phase(self, done: int, phase: str, message: str) -> None:
        """Check for a stop, then report that set-up reached ``done`` units, entering ``phase``."""
        self._check_setup(phase)
        self._setup_report(done, phase, message)

    # ---- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        self._units_done, self._units_total = 0, SETUP_UNITS
        self._phase(0, "data", f"loading {cfg.data.dataset}")
        seed_everything(cfg.seed)
        data = self._dataset or load_dataset(
            cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
        )
        if cfg.data.train_subset is not None and cfg.data.train_subset < len(data.train):
            data = _with_train(data, data.train.subset(torch.arange(cfg.data.train_subset)))
        self.data = data
        shape = tuple(data.image_shape)
        augment = Augment(**cfg.data.augment.model_dump())
        self.train_loader = BatchLoader(
            data,
            "train",
            batch_size=cfg.data.batch_size,
            shuffle=True,
            augment=augment,
            seed=cfg.seed,
            device=self.device,
        )
        self.steps_per_epoch = len(self.train_loader)
        total = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self._units_total = SETUP_UNITS + self.total_steps

        self._phase(1, "models", f"building {cfg.model.name}")
        if self._student is None:
            torch.manual_seed(cfg.seed)
            self._student = create_model(
                cfg.model.name,
                num_classes=data.num_classes,
                in_channels=shape[0],
                image_size=shape[1],
                **cfg.model.kwargs,
            )
        self._student_home = _module_device(self._student)
        self.student = self._student.to(self.device)

        self._phase(2, "teachers", f"loading {len(cfg.teachers)} teacher(s)")
        if self._teachers is None:
            self.teachers = [
                load_teacher(
                    t,
                    data.num_classes,
                    shape,
                    self.device,
                    runs_root=self.store and str(self.store.root),
                    field=f"teachers[{i}]",
                )
                for i, t in enumerate(cfg.teachers)
            ]
        else:  # the caller's teachers stay as they are (device, flags, hooks): work on copies
            self.teachers = [frozen_copy(t, self.device) for t in self._teachers]
        needing = methods_needing_teacher(cfg)
        if needing and not self.teachers:
            raise ConfigError(f"teachers: methods {needing} need at least one teacher, none given")
        sample = data.normalize(data.train.images[:8].to(self.device))
        ctx = MethodContext(
            student=self.student,
            teachers=self.teachers,
            num_classes=data.num_classes,
            input_shape=shape,  # type: ignore[arg-type]
            device=self.device,
            sample=sample,
            train_size=len(data.train),
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
            seed=cfg.seed,
            make_student=lambda: create_model(
                cfg.model.name,
                num_classes=data.num_classes,
                in_channels=shape[0],
                image_size=shape[1],
                **cfg.model.kwargs,
            ),
        )
        methods = [(m.weight, create_method(m.name, m.params, ctx)) for m in cfg.distill.methods]
        self.method = MethodStack(methods).to(self.device)
        own = self.method.teacher_models()
        if own is not None:
            self.teachers = own
        self.student_paths = self.method.student_features()
        self.teacher_paths = self.method.teacher_features()
        self.channels_last = wants_channels_last(
            cfg.train.memory_format, self.device, self.student, *self.teachers
        )
        self.layout = input_layout(self.channels_last)
        self.inputs = lambda images: self.layout(data.normalize(images))

        lo, hi = _CACHE_UNITS
        self._phase(lo, "teacher cache", "teacher cache")
        # fixed teachers run on inference copies: BatchNorm folded, weights in the inputs' layout
        self.fixed_teachers = bool(self.teachers) and self.method.teacher_cacheable
        self.run_teachers = (
            inference_teachers(
                self.teachers,
                self.teacher_paths,
                channels_last=self.channels_last,
                example=data.normalize(data.train.images[:2].to(self.device)),
            )
            if self.fixed_teachers
            else self.teachers
        )
        try:
            dtype = teacher_dtype(cfg.distill.teacher_precision, self.device) if self.fixed_teachers else None
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.teacher_dtype: torch.dtype | None = dtype
        self.cache: TeacherCache | None = None
        self.lazy_cache: LazyTeacherCache | None = None
        if (
            self.teachers
            and self.method.needs_teacher
            and cfg.distill.teacher_cache
            and augment.deterministic
            and self.method.teacher_cacheable
        ):
            if self.cache_mode == "lazy":
                self.lazy_cache = LazyTeacherCache(
                    self.run_teachers,
                    self.teacher_paths,
                    len(data.train),
                    cfg.distill.cache_budget_mb,
                    dtype=self.teacher_dtype,
                )
            else:

                def cache_progress(done: int, total: int, message: str) -> None:
                    frac = done / max(total, 1)
                    self._setup_report(
                        lo + int(frac * (hi - lo)), "teacher cache", f"teacher cache {done}/{total}"
                    )

                self.cache = build_teacher_cache(
                    self.run_teachers,
                    data.train.images.to(self.device),
                    self.inputs,
                    self.teacher_paths,
                    inference_chunk(self.device, cfg.data.eval_batch_size),
                    cfg.distill.cache_budget_mb,
                    progress=cache_progress,
                    cancel=_StopView(self),
                    dtype=self.teacher_dtype,
                )

        self._phase(hi, "teacher test logits", "teacher test logits")
        self.test_images = data.test.images.to(self.device)
        self.test_labels = data.test.labels.to(self.device)
        self.teacher_test_logits: torch.Tensor | None = None  # computed at the first evaluation

        self._phase(hi + 1, "optimizer", "optimizer")
        params = [p for p in self.student.parameters() if p.requires_grad]
        params += [p for p in self.method.parameters() if p.requires_grad]
        params = list({id(p): p for p in params}.values())
        o = cfg.optim
        if o.name == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=o.lr,
                momentum=o.momentum,
                nesterov=o.nesterov and o.momentum > 0,
                weight_decay=o.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        info = model_info(self.student, shape)  # type: ignore[arg-type]
        self.model_spec = {
            "student": {
                "name": cfg.model.name if self._student_from_config else type(self.student).__name__,
                "kwargs": cfg.model.kwargs,
                "num_classes": data.num_classes,
                "in_channels": shape[0],
                "image_size": shape[1],
                "params": info.params,
                "flops": info.flops,
            },
            "dataset": data.name,
            "class_names": list(data.class_names),
            "peers": len(self.method.peers()),
        }
        self._phase(SETUP_UNITS, "ready", "ready")

    @property
    def _student_from_config(self) -> bool:
        return self._student is None or hasattr(self._student, "stages")

    def _teacher_test_logits(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teachers' mean test logits and each teacher's own."""
        per: list[list[torch.Tensor]] = [[] for _ in self.run_teachers]
        bs = inference_chunk(self.device, self.config.data.eval_batch_size)
        with torch.inference_mode():
            for start in range(0, len(self.test_images), bs):
                logits, _ = teacher_forward(
                    self.run_teachers,
                    self.inputs(self.test_images[start : start + bs]),
                    [],
                    dtype=self.teacher_dtype,
                )
                for i, t in enumerate(logits):
                    per[i].append(t.float())
        each = [torch.cat(chunks).clone() for chunks in per]
        return torch.stack(each).mean(0), each

    def _check_teachers(self, each: list[torch.Tensor], run_id: str | None, epoch: int, step: int) -> None:
        """Warn (not fail) when a teacher's test accuracy on this data is near chance."""
        k = self.data.num_classes
        limit = teacher_warning_threshold(k)
        for i, logits in enumerate(each):
            acc = float((logits.argmax(1) == self.test_labels).float().mean())
            if acc < limit:
                name = f"teachers[{i}]"
                if i < len(self.config.teachers):
                    name += f" ({self.config.teachers[i].source})"
                msg = (
                    f"{name}: test accuracy {100 * acc:.1f}% on {self.data.name} is near chance "
                    f"({100 / k:.1f}%, warning below {100 * limit:.1f}%); was it trained on other data?"
                )
                self.warnings.append(msg)
                self._emit(RunWarning(run_id, epoch, step, "teacher_near_chance", msg))

    def _evaluate(
        self, run_id: str | None = None, epoch: int = 0, step: int = 0
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Student test metrics, and the teacher's metrics when they were computed by this call."""
        was = self.student.training
        self.student.eval()
        chunks = []
        bs = inference_chunk(self.device, self.config.data.eval_batch_size)
        with torch.inference_mode():
            for start in range(0, len(self.test_images), bs):
                chunks.append(self.student(self.inputs(self.test_images[start : start + bs])).float())
        self.student.train(was)
        logits = torch.cat(chunks)
        teacher_metrics: dict[str, float] = {}
        teacher = self.teacher_test_logits
        if teacher is None and self.teachers:
            teacher, each = self._teacher_test_logits()
            if self.fixed_teachers:  # fixed teachers: once per run, at the first evaluation
                self.teacher_test_logits = teacher
                teacher_metrics = {
                    "teacher_test_acc": float((teacher.argmax(1) == self.test_labels).float().mean())
                }
                self.teacher_metrics.update(teacher_metrics)
                self._check_teachers(each, run_id, epoch, step)
        return logit_metrics(logits, self.test_labels, teacher), teacher_metrics

    def _state(self) -> dict[str, torch.Tensor]:
        return training_state(self.student, self.method)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Set up, train to the budget (or a stop request) and return the result.

        Raises:
            Cancelled: a stop was requested during set-up (no run directory was created).
            TrainingFailed: the loss became non-finite (the run is recorded as ``failed``).
            ResumeError: ``resume`` names a completed or still-running run, or one without a
                resume point; a config that differs in more than ``train.epochs`` is a
                :class:`~workbench.config.ConfigError` naming the field.
        """
        cfg = self.config
        self._stop.clear()
        self.run_id = self._run_id
        self.warnings = []
        self.teacher_metrics: dict[str, float] = {}
        if self.resume is not None:
            self._prepare_resume()
        elif self.store is not None:
            if self.run_id is None:
                self.run_id = new_run_id(cfg.name or f"{cfg.kind}-{cfg.model.name}")
            elif (self.store.root / self.run_id).exists():
                raise RunStoreError(f"run {self.run_id}: already exists in {self.store.root}")
        try:
            self._setup()  # bad input and set-up cancellation fail here, before any run directory exists
            writer = None
            subscribers = list(self.subscribers)
            if self.store is not None:
                writer = (
                    self._reopen() if self.resume is not None else self.store.create(cfg, run_id=self.run_id)
                )
                self.subscribers.insert(0, StoreWriter(writer))
            try:
                return self._train(writer.id if writer else self.run_id)
            finally:
                self.subscribers = subscribers
        finally:
            self._send_student_home()

    def _send_student_home(self) -> None:
        """Put a student module back on the device it came on (also after a failure)."""
        home = getattr(self, "_student_home", None)
        if home is not None and self._student is not None:
            self._student.to(home)

    # ---- resume -----------------------------------------------------------------------------
    def _prepare_resume(self) -> None:
        """Check that the run can be resumed with this config and read its resume point."""
        assert self.store is not None and self.resume is not None
        run = self.store.load(self.resume)
        self.run_id = run.id
        info = run.status
        state = info.get("status")
        if state == "completed":
            raise ResumeError(f"resume {run.id}: the run completed; there is nothing to resume")
        if state == "damaged":
            raise ResumeError(f"resume {run.id}: the run is damaged ({info.get('damage')})")
        if state == "running" and not process_gone(info):
            raise ResumeError(f"resume {run.id}: the run is still running (pid {info.get('pid')})")
        resume_mod.check_resumable_config(run.id, run.config, self.config)
        from workbench.distill.chains import CHAIN_METHODS

        if any(m.name in CHAIN_METHODS for m in self.config.distill.methods):
            raise ResumeError(f"resume {run.id}: a link of a chain (ban, takd) cannot be resumed on its own")
        point = None
        if RESUME_CHECKPOINT in run.checkpoints():
            path = run.path / "checkpoints" / f"{RESUME_CHECKPOINT}.safetensors"
            from safetensors import safe_open

            try:
                with safe_open(str(path), "pt") as fh:
                    metadata = fh.metadata()
            except Exception as err:  # noqa: BLE001 - any unreadable file is the same one-line error
                raise ResumeError(f"resume {run.id}: resume checkpoint unreadable ({err})") from None
            point = ResumePoint.from_file(load_weights(path), metadata)
        elif run.metrics.get("epochs"):
            raise ResumeError(f"resume {run.id}: it has finished epochs but no resume checkpoint")
        if point is not None:
            total_epochs = self.config.train.epochs
            if point.epoch >= total_epochs:
                raise ResumeError(
                    f"resume {run.id}: it already trained {point.epoch} epoch(s) of train.epochs={total_epochs}; "
                    "raise train.epochs to train further"
                )
        self._resume_point = point
        self._resume_run = run

    def _reopen(self) -> RunWriter:
        """The resumed run's writer: status back to running (this process), config updated."""
        from workbench.config import config_to_yaml
        from workbench.runs import atomic_write_text

        run = self._resume_run
        writer = RunWriter(run)
        if run.config.train.epochs != self.config.train.epochs:
            atomic_write_text(run.path / "config.yaml", config_to_yaml(self.config), make_parents=False)
        resumed = list(writer._status.get("resumed") or [])
        from workbench.runs import utc_now

        resumed.append({"at": utc_now(), "epoch": self._resume_point.epoch if self._resume_point else 0})
        writer.update_status(
            status="running",
            finished=None,
            error=None,
            failure=None,
            warnings=[],
            pid=os.getpid(),
            pid_start=process_start(os.getpid()),
            host=socket.gethostname(),
            resumed=resumed,
        )
        return writer

    def _restore(self, point: ResumePoint) -> None:
        """Load the resume point's weights, optimizer, method state and RNG states."""
        state = point.tensors
        self.student.load_state_dict({k: v.to(self.device) for k, v in split_state(state, "student").items()})
        extras = split_state(state, "extras")
        if extras:
            self.method.load_state_dict({k: v.to(self.device) for k, v in extras.items()}, strict=False)
        for i, peer in enumerate(self.method.peers()):
            own = split_state(state, f"peer{i}")
            if own:
                peer.load_state_dict({k: v.to(self.device) for k, v in own.items()})
        resume_mod.restore(point, method=self.method, optimizer=self.optimizer)

    def _resume_source(
        self, epoch: int, step: int, best: float, history: list[dict[str, Any]]
    ) -> ResumeSnapshot:
        snap = ResumeSnapshot(
            lambda: resume_mod.capture(
                state=self._state(),
                method=self.method,
                optimizer=self.optimizer,
                epoch=epoch,
                step=step,
                best=best,
                history=[dict(h) for h in history],
                loader_epoch=self.train_loader.epoch,
                config=self.config,
            )
        )
        if any(getattr(s, "wants_resume", False) for s in self.subscribers):
            snap.take()  # a subscriber that keeps the event to read the point later
        return snap

    def _train(self, run_id: str | None) -> TrainResult:
        cfg = self.config
        history: list[dict[str, Any]] = []
        step, epoch_no, start_epoch = 0, 1, 0
        best = -1.0
        point = self._resume_point
        if point is not None:
            history = point.history
            step, start_epoch, best = point.step, point.epoch, float(point.meta["best"])
            epoch_no = start_epoch + 1
        stop_flag, cancel, progress = self._stop, self.cancel, self.progress
        base, units_total = SETUP_UNITS, self._units_total
        teacher_metrics = self.teacher_metrics
        try:
            self._emit(
                RunStarted(
                    run_id,
                    cfg,
                    self.epochs,
                    self.steps_per_epoch,
                    self.total_steps,
                    self.model_spec,
                    {},
                    start_epoch,
                    _frozen(history),
                )
            )
            if point is not None:
                self._restore(point)
            ce_weight = cfg.distill.ce_weight
            smoothing = cfg.train.label_smoothing
            stopped = False
            self.student.train()
            self.method.train()
            for m in self.method.peers():
                m.train()
            with (
                channels_last(self.student, self.method, enabled=self.channels_last),
                FeatureTaps(self.student, self.student_paths) as taps,
            ):
                for epoch in range(start_epoch, self.epochs):
                    epoch_no = epoch + 1
                    message = f"epoch {epoch_no}/{self.epochs}"
                    self.train_loader.set_epoch(epoch)
                    self.method.on_epoch_start(epoch)
                    t0 = time.perf_counter()
                    sums: dict[str, torch.Tensor] = {}
                    correct = torch.zeros((), device=self.device)
                    seen = 0
                    n_steps = 0
                    for batch in self.train_loader:
                        if step >= self.total_steps:
                            break
                        for g in self.optimizer.param_groups:
                            g["lr"] = cfg.optim.lr * lr_factor(
                                step, self.total_steps, self.steps_per_epoch, cfg.schedule, cfg.optim.lr
                            )
                        x = self.layout(batch.x)
                        logits = self.student(x)
                        if self.teachers and self.method.needs_teacher:
                            if self.lazy_cache is not None:
                                t_logits, t_feats = self.lazy_cache.get(x, batch.index)
                            elif self.cache is not None:
                                t_logits, t_feats = self.cache.lookup(batch.index.to(self.device))
                            else:
                                t_logits, t_feats = teacher_forward(
                                    self.run_teachers, x, self.teacher_paths, dtype=self.teacher_dtype
                                )
                        else:
                            t_logits, t_feats = [], []
                        out = StepOutputs(
                            x=x,
                            y=batch.y,
                            index=batch.index,
                            student_logits=logits,
                            student_features=dict(taps.features),
                            teacher_logits=t_logits,
                            teacher_features=t_feats,
                            epoch=epoch,
                            step=step,
                            total_steps=self.total_steps,
                            y_mix=batch.y_mix,
                            lam=batch.lam,
                        )
                        terms = self.method.loss(out)
                        if ce_weight > 0:
                            weights = self.method.sample_weights(out)
                            terms = {
                                "ce": ce_weight * _cross_entropy(logits, batch, smoothing, weights),
                                **terms,
                            }
                        if self.term_hook is not None:
                            self.term_hook(terms, step)
                        loss = torch.stack(list(terms.values())).sum() if terms else logits.sum() * 0.0
                        loss_value = loss.item()
                        if not math.isfinite(loss_value):
                            raise TrainingFailed(step, epoch_no, {k: v.item() for k, v in terms.items()})
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        if cfg.train.grad_clip:
                            torch.nn.utils.clip_grad_norm_(
                                [p for g in self.optimizer.param_groups for p in g["params"]],
                                cfg.train.grad_clip,
                            )
                        self.optimizer.step()
                        self.method.after_step(out)
                        with torch.no_grad():
                            for k, v in terms.items():
                                sums[k] = sums.get(k, 0.0) + v.detach()
                            correct += (logits.argmax(1) == batch.y).sum()
                        seen += batch.y.shape[0]
                        n_steps += 1
                        step += 1
                        if self.subscribers:
                            self._emit(
                                StepEnded(
                                    run_id,
                                    step,
                                    epoch_no,
                                    loss_value,
                                    {k: v.item() for k, v in terms.items()},
                                    self.optimizer.param_groups[0]["lr"],
                                )
                            )
                        if progress is not None:
                            progress(base + step, units_total, message)
                        if stop_flag.is_set() or (cancel is not None and cancel.cancelled):
                            stopped = True
                            break
                    seconds = time.perf_counter() - t0
                    metrics: dict[str, Any] = {
                        "epoch": epoch_no,
                        "step": step,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "seconds": seconds,
                        "train_loss": float(sum(sums.values()) / max(n_steps, 1)) if sums else 0.0,
                        "train_acc": float(correct) / max(seen, 1),
                    }
                    metrics.update({f"loss/{k}": float(v) / max(n_steps, 1) for k, v in sums.items()})
                    if stopped and n_steps < self.steps_per_epoch:
                        break
                    if epoch_no % cfg.train.eval_every == 0 or epoch_no == self.epochs:
                        ev, t_metrics = self._evaluate(run_id, epoch_no, step)
                        metrics.update(ev)
                        self._emit(EvalEnded(run_id, epoch_no, step, dict(ev), dict(t_metrics)))
                    history.append(metrics)
                    is_best = metrics.get("test_acc", -1.0) > best
                    best = max(best, metrics.get("test_acc", -1.0))
                    resume_snap = self._resume_source(epoch_no, step, best, history)
                    try:
                        self._emit_with_snapshot(
                            EpochEnded(
                                run_id,
                                epoch_no,
                                step,
                                dict(metrics),
                                _frozen(history),
                                is_best,
                                self._snapshot(f"epoch {epoch_no}"),
                                resume_snap,
                            )
                        )
                    finally:
                        resume_snap.seal()
                    if stopped:
                        break
            summary = self._summary(history, teacher_metrics, step)
            if stopped:
                self._emit_with_snapshot(
                    RunStopped(
                        run_id, step, epoch_no, dict(summary), _frozen(history), self._snapshot("stopped")
                    )
                )
                status = "stopped"
            else:
                self._emit_with_snapshot(
                    RunFinished(
                        run_id, step, epoch_no, dict(summary), _frozen(history), self._snapshot("final")
                    )
                )
                status = "completed"
        except TrainingFailed as err:
            self._emit(RunFailed(run_id, err.step, err.epoch, str(err), dict(err.terms), _frozen(history)))
            raise
        except BaseException as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            self._emit(
                RunFailed(run_id, step, epoch_no, f"{type(err).__name__}: {msg}", {}, _frozen(history))
            )
            raise
        self.student.eval()
        ids = [run_id] if run_id is not None else []
        return TrainResult(
            run_id, status, summary, history, self.student, self.method, ids, list(self.warnings)
        )

    def _summary(
        self, history: list[dict[str, Any]], teacher_metrics: dict[str, float], step: int
    ) -> dict[str, Any]:
        last = next((h for h in reversed(history) if "test_acc" in h), {})
        accs = [h["test_acc"] for h in history if "test_acc" in h]
        out: dict[str, Any] = {
            "epochs_done": len(history),
            "steps": step,
            "seconds": sum(h["seconds"] for h in history),
            "params": self.model_spec["student"]["params"],
            "flops": self.model_spec["student"]["flops"],
            "teacher_cache": self.cache is not None
            or (self.lazy_cache is not None and not self.lazy_cache.disabled),
            **teacher_metrics,
        }
        if self.teachers:
            out["teacher_precision"] = precision_name(self.teacher_dtype)
        for key in ("test_acc", "test_loss", "ece", "agreement", "kl_teacher_student", "train_acc"):
            if key in last:
                out[key] = last[key]
        if accs:
            out["best_test_acc"] = max(accs)
        return out


def training_state(student: nn.Module, method: MethodStack) -> dict[str, torch.Tensor]:
    """Everything a checkpoint holds: the student, the method's trainable extras (connectors,
    heads; ``extras.*``) and each peer of an online method on its own (``peerN.*``)."""
    extras = method if len(method.state_dict()) else None
    return checkpoint_state(student, extras, method.peers())


def _cross_entropy(
    logits: torch.Tensor, batch: Any, smoothing: float, weights: torch.Tensor | None
) -> torch.Tensor:
    """CE with label smoothing, Mixup/CutMix partners and optional per-sample weights."""
    ce = F.cross_entropy(logits, batch.y, label_smoothing=smoothing, reduction="none")
    if batch.y_mix is not None and batch.lam is not None:
        ce = batch.lam * ce + (1 - batch.lam) * F.cross_entropy(
            logits, batch.y_mix, label_smoothing=smoothing, reduction="none"
        )
    if weights is not None:
        return (ce * weights).sum() / weights.sum().clamp_min(1e-12)
    return ce.mean()


def _frozen(history: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """A copy of the history for an event: later epochs do not change what an event holds."""
    return tuple(dict(h) for h in history)


class _StopView(CancelToken):
    """A cancel token that reads a trainer's stop request and its caller's token, for sub-calls."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self._trainer = trainer

    @property
    def cancelled(self) -> bool:
        return self._trainer.stop_requested

    @property
    def reason(self) -> str:
        token = self._trainer.cancel
        return token.reason if token is not None and token.cancelled else "stop requested"

    def raise_if_cancelled(self, where: str = "") -> None:
        if self.cancelled:
            raise Cancelled(f"training set-up ({where}): {self.reason}" if where else self.reason)


def _module_device(module: nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (None for a module without tensors)."""
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return None


def _with_train(data: Dataset, train: Any) -> Dataset:
    import dataclasses

    return dataclasses.replace(data, train=train)


def train(
    config: RunConfig, *, store: RunStore | None = None, subscribers: Iterable[Subscriber] = (), **kwargs: Any
) -> TrainResult:
    """``Trainer(config, ...).run()`` for one run (no chains); :func:`workbench.train.run` is the
    entry point that also trains chains."""
    return Trainer(config, store=store, subscribers=subscribers, **kwargs).run()
