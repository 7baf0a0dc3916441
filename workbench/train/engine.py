"""The training engine: one loop for teachers, scratch students and distilled students.

``Trainer(config).run()`` loads the data and models, sets up the method stack, trains with the
configured optimiser and schedule, evaluates after every epoch, and emits typed events to its
subscribers (the run-store writer among them). It never special-cases a method by name: the
objective is ``ce_weight * CE + sum_i weight_i * method_i`` (see :mod:`workbench.distill.base`).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ConfigError, RunConfig
from workbench.data import Augment, BatchLoader, Dataset, load_dataset
from workbench.distill import MethodContext, MethodStack, StepOutputs, create_method
from workbench.models import (
    channels_last,
    create_model,
    input_layout,
    model_info,
    wants_channels_last,
)
from workbench.models.taps import FeatureTaps
from workbench.runs import RunStore, checkpoint_state
from workbench.train.cache import TeacherCache, build_teacher_cache, teacher_forward
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    StepEnded,
    Subscriber,
)
from workbench.train.metrics import logit_metrics
from workbench.train.store_writer import StoreWriter
from workbench.train.teachers import load_teacher


class TrainingFailed(RuntimeError):
    """The loss became NaN or infinite; the message names the step and every term's value."""

    def __init__(self, step: int, epoch: int, terms: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at step {step} (epoch {epoch + 1}): {shown}")
        self.step, self.epoch, self.terms = step, epoch, terms


@dataclass
class TrainResult:
    """What a finished (or stopped) run returns to its caller."""

    run_id: str | None
    status: str
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    student: nn.Module
    method: MethodStack


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present (then MPS), else CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(spec)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


class Trainer:
    """Train one run from a :class:`RunConfig`.

    ``dataset``, ``student`` and ``teachers`` may be passed in (any ``nn.Module`` is accepted);
    otherwise they are built from the config. ``store=None`` keeps the run in memory only.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        store: RunStore | None = None,
        subscribers: Iterable[Subscriber] = (),
        dataset: Dataset | None = None,
        student: nn.Module | None = None,
        teachers: list[nn.Module] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.subscribers: list[Subscriber] = list(subscribers)
        self._dataset = dataset
        self._student = student
        self._teachers = teachers
        self._run_id = run_id
        self._stop = threading.Event()
        self.device = resolve_device(config.train.device)
        #: hook for tests and diagnostics: called with the term dict before the NaN check
        self.term_hook: Callable[[dict[str, torch.Tensor], int], None] | None = None

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step; the run is left loadable (``stopped``)."""
        self._stop.set()

    def _emit(self, event: Event) -> None:
        for fn in self.subscribers:
            fn(event)

    # ---- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        data = self._dataset or load_dataset(
            cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
        )
        if cfg.data.train_subset is not None and cfg.data.train_subset < len(data.train):
            data = _with_train(data, data.train.subset(torch.arange(cfg.data.train_subset)))
        self.data = data
        shape = tuple(data.image_shape)
        if self._student is None:
            torch.manual_seed(cfg.seed)
            self._student = create_model(
                cfg.model.name,
                num_classes=data.num_classes,
                in_channels=shape[0],
                image_size=shape[1],
                **cfg.model.kwargs,
            )
        self.student = self._student.to(self.device)
        if self._teachers is None:
            self._teachers = [
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
        self.teachers = [t.to(self.device).eval() for t in self._teachers]
        needing = cfg.methods_needing_teacher()
        if needing and not self.teachers:
            raise ConfigError(f"teachers: methods {needing} need at least one teacher, none given")
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
        self.cache: TeacherCache | None = None
        if (
            self.teachers
            and self.method.needs_teacher
            and cfg.distill.teacher_cache
            and augment.deterministic
            and self.method.teacher_cacheable
        ):
            self.cache = build_teacher_cache(
                self.teachers,
                data.train.images.to(self.device),
                self.inputs,
                self.teacher_paths,
                cfg.data.eval_batch_size,
                cfg.distill.cache_budget_mb,
            )
        self.test_images = data.test.images.to(self.device)
        self.test_labels = data.test.labels.to(self.device)
        self.teacher_test_logits = (
            self._teacher_test_logits() if self.teachers and self.method.teacher_cacheable else None
        )
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

    @property
    def _student_from_config(self) -> bool:
        return self._student is None or hasattr(self._student, "stages")

    def _teacher_test_logits(self) -> torch.Tensor:
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(self.test_images), self.config.data.eval_batch_size):
                x = self.inputs(self.test_images[start : start + self.config.data.eval_batch_size])
                logits, _ = teacher_forward(self.teachers, x, [])
                chunks.append(torch.stack(logits).mean(0))
        return torch.cat(chunks).clone()

    def _evaluate(self) -> dict[str, float]:
        was = self.student.training
        self.student.eval()
        chunks = []
        bs = self.config.data.eval_batch_size
        with torch.inference_mode():
            for start in range(0, len(self.test_images), bs):
                chunks.append(self.student(self.inputs(self.test_images[start : start + bs])).float())
        self.student.train(was)
        logits = torch.cat(chunks)
        teacher = self.teacher_test_logits
        if teacher is None and self.teachers:
            teacher = self._teacher_test_logits()
        return logit_metrics(logits, self.test_labels, teacher)

    def _state(self) -> dict[str, torch.Tensor]:
        return training_state(self.student, self.method)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to the budget (or a stop request) and return the result."""
        cfg = self.config
        self._setup()  # bad input fails here, before any run directory exists
        writer = None
        if self.store is not None:
            writer = self.store.create(cfg, run_id=self._run_id)
            self.subscribers.insert(0, StoreWriter(writer))
        run_id = writer.id if writer else self._run_id
        self.run_id = run_id
        history: list[dict[str, Any]] = []
        step, epoch = 0, 0
        try:
            teacher_metrics = {}
            if self.teacher_test_logits is not None:
                teacher_metrics = {
                    "teacher_test_acc": float(
                        (self.teacher_test_logits.argmax(1) == self.test_labels).float().mean()
                    )
                }
            self._emit(
                RunStarted(
                    run_id,
                    cfg,
                    self.epochs,
                    self.steps_per_epoch,
                    self.total_steps,
                    self.model_spec,
                    teacher_metrics,
                )
            )
            ce_weight = cfg.distill.ce_weight
            smoothing = cfg.train.label_smoothing
            best = -1.0
            stopped = False
            self.student.train()
            self.method.train()
            for m in self.method.peers():
                m.train()
            with (
                channels_last(self.student, self.method, enabled=self.channels_last),
                FeatureTaps(self.student, self.student_paths) as taps,
            ):
                for epoch in range(self.epochs):
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
                            if self.cache is not None:
                                t_logits, t_feats = self.cache.lookup(batch.index.to(self.device))
                            else:
                                t_logits, t_feats = teacher_forward(self.teachers, x, self.teacher_paths)
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
                            raise TrainingFailed(step, epoch, {k: v.item() for k, v in terms.items()})
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
                                    epoch,
                                    loss_value,
                                    {k: v.item() for k, v in terms.items()},
                                    self.optimizer.param_groups[0]["lr"],
                                )
                            )
                        if self._stop.is_set():
                            stopped = True
                            break
                    seconds = time.perf_counter() - t0
                    metrics: dict[str, Any] = {
                        "epoch": epoch + 1,
                        "step": step,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "seconds": seconds,
                        "train_loss": float(sum(sums.values()) / max(n_steps, 1)) if sums else 0.0,
                        "train_acc": float(correct) / max(seen, 1),
                    }
                    metrics.update({f"loss/{k}": float(v) / max(n_steps, 1) for k, v in sums.items()})
                    if stopped and n_steps < self.steps_per_epoch:
                        break
                    if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == self.epochs:
                        ev = self._evaluate()
                        metrics.update(ev)
                        self._emit(EvalEnded(run_id, epoch + 1, step, ev))
                    history.append(metrics)
                    is_best = metrics.get("test_acc", -1.0) > best
                    best = max(best, metrics.get("test_acc", -1.0))
                    self._emit(
                        EpochEnded(run_id, epoch + 1, step, metrics, list(history), is_best, self._state)
                    )
                    if stopped:
                        break
            summary = self._summary(history, teacher_metrics, step)
            if stopped:
                self._emit(RunStopped(run_id, step, epoch, summary, list(history), self._state))
                status = "stopped"
            else:
                self._emit(RunFinished(run_id, step, summary, list(history), self._state))
                status = "completed"
        except TrainingFailed as err:
            self._emit(RunFailed(run_id, err.step, err.epoch, str(err), err.terms, list(history)))
            raise
        except BaseException as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            self._emit(RunFailed(run_id, step, epoch, f"{type(err).__name__}: {msg}", {}, list(history)))
            raise
        self.student.eval()
        return TrainResult(run_id, status, summary, history, self.student, self.method)

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
            "teacher_cache": self.cache is not None,
            **teacher_metrics,
        }
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


def _with_train(data: Dataset, train: Any) -> Dataset:
    import dataclasses

    return dataclasses.replace(data, train=train)


def train(
    config: RunConfig, *, store: RunStore | None = None, subscribers: Iterable[Subscriber] = (), **kwargs: Any
) -> TrainResult:
    """Convenience wrapper: ``Trainer(config, ...).run()``."""
    return Trainer(config, store=store, subscribers=subscribers, **kwargs).run()
