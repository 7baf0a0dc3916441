"""The training engine: one loop for teachers, scratch students and distilled students.

``Trainer(config).run()`` loads the data and models, sets up the method stack, trains with the
configured optimiser and schedule, evaluates after every epoch, and emits typed events to its
subscribers (the run-store writer among them). It never special-cases a method by name: the
objective is ``ce_weight * CE + sum_i weight_i * method_i`` (see :mod:`workbench.distill.base`).

The builders of set-up live in :mod:`workbench.train.setup`, the test-split evaluation in
:mod:`workbench.train.evaluation`, resuming a stored run in :mod:`workbench.train.resuming`, and
what a run returns in :mod:`workbench.train.results`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.config import ConfigError, RunConfig
from workbench.data import Augment, BatchLoader, Dataset
from workbench.devices import inference_chunk, resolve_device
from workbench.distill import MethodStack, StepOutputs, create_method
from workbench.errors import one_line
from workbench.models import channels_last, input_layout, wants_channels_last
from workbench.models.taps import FeatureTaps
from workbench.runs import RunStore, RunStoreError
from workbench.runtime import Cancelled, CancelToken
from workbench.train.cache import (
    LazyTeacherCache,
    TeacherCache,
    build_teacher_cache,
    inference_teachers,
    precision_name,
    teacher_dtype,
    teacher_forward,
)
from workbench.train.evaluation import (
    near_chance_warnings,
    predict_logits,
    teacher_test_logits,
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
from workbench.train.objective import cross_entropy, lr_factor
from workbench.train.output_store import stored_teacher_outputs
from workbench.train.results import TrainingFailed, TrainResult, frozen_history, run_summary, training_state
from workbench.train.resume import ResumeError, ResumePoint, capture
from workbench.train.resuming import read_resume_point, reopen_run, restore_point
from workbench.train.setup import (
    CACHE_MODES,
    CACHE_UNITS,
    SETUP_UNITS,
    build_optimizer,
    build_student,
    build_teachers,
    describe_models,
    load_run_data,
    method_context,
    module_device,
    new_run_id,
    seed_everything,
)
from workbench.train.steplog import StepRecorder, step_log_interval
from workbench.train.store_writer import StoreWriter
from workbench.validate import methods_needing_teacher


@dataclass
class _Position:
    """Where the loop stands: steps done, the epoch being run (from 1), the first epoch of this
    call (a resumed run's finished epochs), the best test accuracy, the history, a stop."""

    step: int = 0
    epoch_no: int = 1
    start_epoch: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False


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

    Step metrics: on the steps ``train.step_log_every`` picks (about 50 per epoch by default, and
    each epoch's last), :class:`StepEnded` carries the step's record (``metrics``, see
    :mod:`workbench.train.steplog`), which the run-store writer appends to the run's step log; other
    steps build nothing.
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

    # ---- stop requests and events ---------------------------------------------------------
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

    def _state(self) -> dict[str, torch.Tensor]:
        return training_state(self.student, self.method)

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
        """Build everything a run needs, phase by phase (the order fixes the RNG draws)."""
        self._units_done, self._units_total = 0, SETUP_UNITS
        self._setup_data()
        self._setup_models()
        self._setup_method()
        self._setup_teacher_outputs()
        hi = CACHE_UNITS[1]
        self._phase(hi, "teacher test logits", "teacher test logits")
        self.test_images = self.data.test.images.to(self.device)
        self.test_labels = self.data.test.labels.to(self.device)
        self.teacher_test_logits: torch.Tensor | None = None  # computed at the first evaluation
        self._phase(hi + 1, "optimizer", "optimizer")
        self.optimizer = build_optimizer(self.config.optim, self.student, self.method)
        self.model_spec = describe_models(
            self.config, self.data, self.student, self.method, from_config=self._student_from_config
        )
        self._phase(SETUP_UNITS, "ready", "ready")

    def _setup_data(self) -> None:
        """Seed, load the data, make the train loader and size the budget (steps and epochs)."""
        cfg = self.config
        self._phase(0, "data", f"loading {cfg.data.dataset}")
        seed_everything(cfg.seed)
        self.data = data = load_run_data(cfg, self._dataset)
        self.augment = Augment(**cfg.data.augment.model_dump())
        self.train_loader = BatchLoader(
            data,
            "train",
            batch_size=cfg.data.batch_size,
            shuffle=True,
            augment=self.augment,
            seed=cfg.seed,
            device=self.device,
        )
        self.steps_per_epoch = len(self.train_loader)
        total = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self._units_total = SETUP_UNITS + self.total_steps

    def _setup_models(self) -> None:
        """The student (built from the config with the run's seed, or the one given) on the
        training device, and the teachers; methods that need a teacher must have one."""
        cfg = self.config
        self._phase(1, "models", f"building {cfg.model.name}")
        if self._student is None:
            torch.manual_seed(cfg.seed)
            self._student = build_student(cfg, self.data)
        self._student_home = module_device(self._student)
        self.student = self._student.to(self.device)
        self._phase(2, "teachers", f"loading {len(cfg.teachers)} teacher(s)")
        self.teachers = build_teachers(cfg, self.data, self.device, self.store, self._teachers)
        needing = methods_needing_teacher(cfg)
        if needing and not self.teachers:
            raise ConfigError(f"teachers: methods {needing} need at least one teacher, none given")

    def _setup_method(self) -> None:
        """The method stack and its extras, the features it taps, and the inputs' memory layout."""
        cfg, data = self.config, self.data
        ctx = method_context(
            cfg,
            data,
            self.student,
            self.teachers,
            self.device,
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
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

    def _setup_teacher_outputs(self) -> None:
        """The teachers that run (inference copies of fixed teachers), their precision, and the
        teacher cache: read from the run store (:mod:`workbench.train.output_store`), else lazy or eager,
        or none (augmented inputs, or a method that moves teachers)."""
        cfg, data = self.config, self.data
        self._phase(CACHE_UNITS[0], "teacher cache", "teacher cache")
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
        self.lazy_cache: LazyTeacherCache | None = None
        # fixed teachers' outputs that an earlier run computed are read from the run store
        stored = self.stored_outputs = stored_teacher_outputs(
            self.store, cfg, data, self.teachers, self.teacher_paths, fixed=self.fixed_teachers,
            dtype=dtype, channels_last=self.channels_last, device=self.device,
        )  # fmt: skip
        cached = self.fixed_teachers and self.method.needs_teacher and cfg.distill.teacher_cache
        self.cache: TeacherCache | None = None
        if not (cached and self.augment.deterministic):
            return
        self.cache = stored.load_train(self.device)
        if self.cache is None and self.cache_mode == "lazy":
            self.lazy_cache = LazyTeacherCache(
                self.run_teachers,
                self.teacher_paths,
                len(data.train),
                cfg.distill.cache_budget_mb,
                dtype=self.teacher_dtype,
                on_complete=stored.save_train,
            )
        elif self.cache is None:
            self.cache = self._eager_cache()
            if self.cache is not None:
                stored.save_train(self.cache)

    def _eager_cache(self) -> TeacherCache | None:
        """The teacher cache filled by one pass over the train split, reported as set-up units."""
        cfg = self.config
        lo, hi = CACHE_UNITS

        def cache_progress(done: int, total: int, message: str) -> None:
            frac = done / max(total, 1)
            self._setup_report(lo + int(frac * (hi - lo)), "teacher cache", f"teacher cache {done}/{total}")

        return build_teacher_cache(
            self.run_teachers,
            self.data.train.images.to(self.device),
            self.inputs,
            self.teacher_paths,
            inference_chunk(self.device, cfg.data.eval_batch_size),
            cfg.distill.cache_budget_mb,
            progress=cache_progress,
            cancel=_StopView(self),
            dtype=self.teacher_dtype,
        )

    @property
    def _student_from_config(self) -> bool:
        return self._student is None or hasattr(self._student, "stages")

    # ---- evaluation -------------------------------------------------------------------------
    def _teacher_test_logits(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teachers' mean test logits and each teacher's own."""
        chunk = inference_chunk(self.device, self.config.data.eval_batch_size)
        args = (self.run_teachers, self.test_images, self.inputs, chunk, self.teacher_dtype)
        return self.stored_outputs.test_logits(lambda: teacher_test_logits(*args), self.device)

    def _check_teachers(self, each: list[torch.Tensor], run_id: str | None, epoch: int, step: int) -> None:
        """Warn (not fail) when a teacher's test accuracy on this data is near chance."""
        data = self.data
        for msg in near_chance_warnings(
            each, self.test_labels, data.num_classes, data.name, self.config.teachers
        ):
            self.warnings.append(msg)
            self._emit(RunWarning(run_id, epoch, step, "teacher_near_chance", msg))

    def _evaluate(
        self, run_id: str | None = None, epoch: int = 0, step: int = 0
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Student test metrics, and the teacher's metrics when they were computed by this call."""
        was = self.student.training
        self.student.eval()
        chunk = inference_chunk(self.device, self.config.data.eval_batch_size)
        logits = predict_logits(self.student, self.test_images, self.inputs, chunk)
        self.student.train(was)
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

    # ---- the run ----------------------------------------------------------------------------
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
                    reopen_run(self._resume_run, cfg, self._resume_point)
                    if self.resume is not None
                    else self.store.create(cfg, run_id=self.run_id)
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
        self._resume_point = read_resume_point(run, self.config)
        self._resume_run = run

    def _resume_source(
        self, epoch: int, step: int, best: float, history: list[dict[str, Any]]
    ) -> ResumeSnapshot:
        snap = ResumeSnapshot(
            lambda: capture(
                state=self._state(),
                method=self.method,
                optimizer=self.optimizer,
                epoch=epoch,
                step=step,
                best=best,
                history=[dict(h) for h in history],
                loader_epoch=self.train_loader.epoch,
                config=self.config,
                elapsed=self._steps.elapsed(),
            )
        )
        if any(getattr(s, "wants_resume", False) for s in self.subscribers):
            snap.take()  # a subscriber that keeps the event to read the point later
        return snap

    # ---- the loop -------------------------------------------------------------------------
    def _train(self, run_id: str | None) -> TrainResult:
        """Train from the start (or the resume point) to the budget or a stop; every failure is
        announced as :class:`RunFailed` before it propagates."""
        pos = self._start_position()
        point = self._resume_point
        self._steps = StepRecorder(
            step_log_interval(self.config.train.step_log_every, self.steps_per_epoch),
            self.steps_per_epoch,
            self.total_steps,
            elapsed=point.elapsed if point is not None else 0.0,
        )
        try:
            self._emit(
                RunStarted(
                    run_id,
                    self.config,
                    self.epochs,
                    self.steps_per_epoch,
                    self.total_steps,
                    self.model_spec,
                    {},
                    pos.start_epoch,
                    frozen_history(pos.history),
                )
            )
            if self._resume_point is not None:
                restore_point(self._resume_point, self.student, self.method, self.optimizer, self.device)
            self._train_epochs(run_id, pos)
            status, summary = self._finish(run_id, pos)
        except TrainingFailed as err:
            self._emit(
                RunFailed(run_id, err.step, err.epoch, str(err), dict(err.terms), frozen_history(pos.history))
            )
            raise
        except BaseException as err:
            line = one_line(err, typed=not isinstance(err, RunStoreError))  # a store error says it in one line
            self._emit(RunFailed(run_id, pos.step, pos.epoch_no, line, {}, frozen_history(pos.history)))
            raise
        self.student.eval()
        ids = [run_id] if run_id is not None else []
        return TrainResult(
            run_id, status, summary, pos.history, self.student, self.method, ids, list(self.warnings)
        )

    def _start_position(self) -> _Position:
        """Step 0 of epoch 1, or where the resume point left off."""
        point = self._resume_point
        if point is None:
            return _Position()
        start = point.epoch
        return _Position(point.step, start + 1, start, float(point.meta["best"]), point.history)

    def _train_epochs(self, run_id: str | None, pos: _Position) -> None:
        """The epochs from ``pos.start_epoch`` on, in training mode, with the student's feature
        taps and the inputs' memory layout in place; a stop ends the loop."""
        self.student.train()
        self.method.train()
        for m in self.method.peers():
            m.train()
        with (
            channels_last(self.student, self.method, enabled=self.channels_last),
            FeatureTaps(self.student, self.student_paths) as taps,
        ):
            for epoch in range(pos.start_epoch, self.epochs):
                pos.epoch_no = epoch + 1
                metrics, n_steps = self._train_epoch(run_id, epoch, pos, taps)
                if pos.stopped and n_steps < self.steps_per_epoch:
                    break  # a partial epoch is neither evaluated nor recorded
                self._end_epoch(run_id, pos, metrics)
                if pos.stopped:
                    break

    def _train_epoch(
        self, run_id: str | None, epoch: int, pos: _Position, taps: FeatureTaps
    ) -> tuple[dict[str, Any], int]:
        """One epoch's steps (to the budget or a stop); returns its training metrics and the number
        of steps it ran. Each step is announced (:class:`StepEnded`, with its step-log record on the
        steps ``train.step_log_every`` picks) and counted in ``progress``."""
        message = f"epoch {pos.epoch_no}/{self.epochs}"
        stop_flag, cancel, progress = self._stop, self.cancel, self.progress
        base, units_total, recorder = SETUP_UNITS, self._units_total, self._steps
        self.train_loader.set_epoch(epoch)
        self.method.on_epoch_start(epoch)
        t0 = time.perf_counter()
        recorder.start_epoch()
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device)
        seen = 0
        n_steps = 0
        for batch in self.train_loader:
            if pos.step >= self.total_steps:
                break
            terms, logits, loss_value = self._step(batch, epoch, pos.step, taps)
            with torch.no_grad():
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()
                hits = (logits.argmax(1) == batch.y).sum()
                correct += hits
            size = batch.y.shape[0]
            seen += size
            n_steps += 1
            pos.step += 1
            if self.subscribers:
                lr = self.optimizer.param_groups[0]["lr"]
                # one device-to-host copy for every term (the NaN guard's ``item()`` already waited)
                shown = (
                    dict(zip(terms, torch.stack([v.detach() for v in terms.values()]).tolist(), strict=True))
                    if terms
                    else {}
                )
                record = None
                if recorder.due(pos.step, n_steps):
                    record = recorder.record(
                        step=pos.step,
                        epoch=pos.epoch_no,
                        loss=loss_value,
                        terms=shown,
                        lr=lr,
                        hits=hits,
                        batch_size=size,
                        seen=seen,
                    )
                self._emit(StepEnded(run_id, pos.step, pos.epoch_no, loss_value, shown, lr, record))
            if progress is not None:
                progress(base + pos.step, units_total, message)
            if stop_flag.is_set() or (cancel is not None and cancel.cancelled):
                pos.stopped = True
                break
        metrics: dict[str, Any] = {
            "epoch": pos.epoch_no,
            "step": pos.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "train_loss": float(sum(sums.values()) / max(n_steps, 1)) if sums else 0.0,
            "train_acc": float(correct) / max(seen, 1),
        }
        metrics.update({f"loss/{k}": float(v) / max(n_steps, 1) for k, v in sums.items()})
        return metrics, n_steps

    def _step(
        self, batch: Any, epoch: int, step: int, taps: FeatureTaps
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
        """One optimisation step on ``batch``: learning rate, forwards, loss terms, the NaN guard,
        backward, clipping, the optimizer's and the method's updates. Returns the terms, the
        student's logits and the loss.

        Raises:
            TrainingFailed: the loss is NaN or infinite (nothing was updated).
        """
        cfg = self.config
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
        ce_weight = cfg.distill.ce_weight
        if ce_weight > 0:
            weights = self.method.sample_weights(out)
            terms = {
                "ce": ce_weight * cross_entropy(logits, batch, cfg.train.label_smoothing, weights),
                **terms,
            }
        if self.term_hook is not None:
            self.term_hook(terms, step)
        loss = torch.stack(list(terms.values())).sum() if terms else logits.sum() * 0.0
        loss_value = loss.item()
        if not math.isfinite(loss_value):  # the NaN guard
            raise TrainingFailed(step, epoch + 1, {k: v.item() for k, v in terms.items()})
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], cfg.train.grad_clip
            )
        self.optimizer.step()
        self.method.after_step(out)
        return terms, logits, loss_value

    def _end_epoch(self, run_id: str | None, pos: _Position, metrics: dict[str, Any]) -> None:
        """Evaluate when due, record the epoch's metrics and announce the epoch's end with its
        weights and its resume point (which the store writer checkpoints)."""
        epoch_no, step = pos.epoch_no, pos.step
        if epoch_no % self.config.train.eval_every == 0 or epoch_no == self.epochs:
            ev, t_metrics = self._evaluate(run_id, epoch_no, step)
            metrics.update(ev)
            self._emit(EvalEnded(run_id, epoch_no, step, dict(ev), dict(t_metrics)))
        pos.history.append(metrics)
        is_best = metrics.get("test_acc", -1.0) > pos.best
        pos.best = max(pos.best, metrics.get("test_acc", -1.0))
        resume_snap = self._resume_source(epoch_no, step, pos.best, pos.history)
        try:
            self._emit_with_snapshot(
                EpochEnded(
                    run_id,
                    epoch_no,
                    step,
                    dict(metrics),
                    frozen_history(pos.history),
                    is_best,
                    self._snapshot(f"epoch {epoch_no}"),
                    resume_snap,
                )
            )
        finally:
            resume_snap.seal()

    def _finish(self, run_id: str | None, pos: _Position) -> tuple[str, dict[str, Any]]:
        """Announce the run's end (stopped or finished) with its summary and final weights."""
        summary = self._summary(pos.history, pos.step)
        history = frozen_history(pos.history)
        if pos.stopped:
            self._emit_with_snapshot(
                RunStopped(run_id, pos.step, pos.epoch_no, dict(summary), history, self._snapshot("stopped"))
            )
            return "stopped", summary
        self._emit_with_snapshot(
            RunFinished(run_id, pos.step, pos.epoch_no, dict(summary), history, self._snapshot("final"))
        )
        return "completed", summary

    def _summary(self, history: list[dict[str, Any]], step: int) -> dict[str, Any]:
        cached = self.cache is not None or (self.lazy_cache is not None and not self.lazy_cache.disabled)
        return run_summary(
            history,
            step,
            model_spec=self.model_spec,
            teacher_metrics=self.teacher_metrics,
            cached=cached,
            teacher_precision=precision_name(self.teacher_dtype) if self.teachers else None,
        )


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


def train(
    config: RunConfig, *, store: RunStore | None = None, subscribers: Iterable[Subscriber] = (), **kwargs: Any
) -> TrainResult:
    """``Trainer(config, ...).run()`` for one run (no chains); :func:`workbench.train.run` is the
    entry point that also trains chains."""
    return Trainer(config, store=store, subscribers=subscribers, **kwargs).run()
