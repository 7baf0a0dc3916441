"""How long a grid will take before it is queued: seconds per trial, and the wall time with
``max_jobs`` trials at once.

Each trial is costed from what the store and the zoo know, best first:

1. **measured**: completed runs of the store with the same dataset and student (name and
   kwargs) give their training seconds per image (the same methods preferred, else any); the
   trial's images (steps x batch size) times that;
2. **FLOPs**: otherwise the student's FLOPs per image (the zoo's count, :func:`workbench.models.count_flops`;
   for a model that cannot be built here, 2 x its parameter count from
   :func:`workbench.models.estimate_model`) times 3 (forward and backward), plus the teachers'
   forward per image when a method needs their outputs (once over the train split when those are
   cached), at a FLOP rate measured on the store's completed runs without teacher outputs (their
   median) or :data:`DEFAULT_FLOP_RATE`.

Both add the evaluation passes (the teachers' test outputs once), a per-step overhead and the
fixed cost of a worker (:data:`TRIAL_SECONDS`: process start, imports, data); a chain (``ban``,
``takd``) counts once per link. The total is the sum over trials divided by ``max_jobs``. It is an estimate to refuse a
grid that cannot finish in time and to tell a person what they are starting, not a promise.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workbench.config import RunConfig
from workbench.runs import RunStore
from workbench.sweep.spec import SweepSpec, Trial, expand_trials
from workbench.validate import methods_needing_teacher

#: training FLOP/s assumed when the store has no completed run to measure it on (a small CPU;
#: measured about 5e10 for ``cnn_small`` on embedded MNIST on 2 cores)
DEFAULT_FLOP_RATE = 3e10
#: seconds of overhead per optimizer step besides the arithmetic (Python, the optimizer, batching)
STEP_SECONDS = 0.003
#: the fixed seconds of one trial in a worker: process start, imports, data, set-up
TRIAL_SECONDS = 6.0
#: train / test images of the registered datasets (embedded subsets; the full sets with ``root``)
_SPLITS: dict[str, tuple[int, int]] = {
    "mnist": (12_000, 2_000),
    "fashion-mnist": (12_000, 2_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
}
_FULL = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000)}
#: images assumed for a dataset whose size is known only once loaded (``imagefolder``)
_UNKNOWN_SPLIT = (10_000, 2_000)


@dataclass(frozen=True)
class TimeEstimate:
    """``per_trial``: estimated seconds of each trial (by trial key); ``total``: the wall seconds
    of all of them with ``max_jobs`` at once (sum / max_jobs); ``measured``: how many trials were
    costed from measured runs of the same dataset and student, the rest from FLOPs."""

    per_trial: dict[str, float]
    total: float
    max_jobs: int
    measured: int = 0
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def text(self) -> str:
        """One line: ``about 4 min for 12 trials, 2 at a time (8 from measured runs)``."""
        n = len(self.per_trial)
        if not n:
            return "nothing to train"
        at = f", {self.max_jobs} at a time" if self.max_jobs > 1 else ", one at a time"
        how = f" ({self.measured} from measured runs)" if self.measured else ""
        return f"about {format_seconds(self.total)} for {n} trial{'s' * (n != 1)}{at}{how}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, with ``text``."""
        return {
            "per_trial": dict(self.per_trial),
            "total": self.total,
            "max_jobs": self.max_jobs,
            "measured": self.measured,
            "text": self.text(),
        }


def format_seconds(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def split_sizes(config: RunConfig) -> tuple[int, int]:
    """Train and test images of ``config``'s data as its dataset's options make them (an
    estimate for a dataset whose size is known only once it is loaded)."""
    data = config.data
    opts = data.options
    if data.dataset == "digits":
        n = 1797
        test = math.ceil(n * float(opts.get("test_fraction", 0.2)))
        train, test = n - test, test
    elif data.dataset == "shapes":
        train, test = int(opts.get("n_train", 10_000)), int(opts.get("n_test", 2_000))
    elif data.root and data.dataset in _FULL:
        train, test = _FULL[data.dataset]
    else:
        train, test = _SPLITS.get(data.dataset, _UNKNOWN_SPLIT)
    if data.train_subset:
        train = min(train, data.train_subset)
    return max(train, 1), max(test, 1)


class _Costs:
    """FLOPs per image of students and teachers, and the store's measured speeds (read once)."""

    def __init__(self, store: RunStore | None) -> None:
        self.store = store
        self._flops: dict[str, int] = {}
        self.per_image: dict[tuple[str, ...], list[float]] = {}
        rates: list[float] = []
        for run in _completed(store):
            try:
                cfg, summary = run.config, run.metrics.get("summary", {})
                seconds, steps, flops = summary.get("seconds"), summary.get("steps"), summary.get("flops")
            except ValueError:
                continue
            if not seconds or not steps or seconds <= 0:
                continue
            images = float(steps) * cfg.data.batch_size
            for key in (_student_key(cfg), (*_student_key(cfg), _methods(cfg))):
                self.per_image.setdefault(key, []).append(seconds / images)
            if flops and not summary.get("teacher_cache"):  # the student's arithmetic alone
                rates.append(3.0 * float(flops) * images / seconds)
        self.rate = statistics.median(rates) if rates else DEFAULT_FLOP_RATE

    def measured(self, cfg: RunConfig) -> float | None:
        """Measured training seconds per image of ``cfg``'s student on its dataset, or ``None``."""
        found = self.per_image.get((*_student_key(cfg), _methods(cfg))) or self.per_image.get(
            _student_key(cfg)
        )
        return statistics.median(found) if found else None

    def model_flops(
        self, name: str, kwargs: dict[str, Any], shape: tuple[int, int, int], classes: int
    ) -> int:
        """FLOPs per image of zoo model ``name`` (cached by its arguments)."""
        from workbench.models import ModelError, count_flops, create_model, estimate_model

        key = json.dumps([name, kwargs, shape, classes], sort_keys=True, default=str)
        if key not in self._flops:
            try:
                model = create_model(name, classes, shape[0], shape[1], **kwargs)
                self._flops[key] = count_flops(model, shape)
            except (ModelError, ValueError, RuntimeError, TypeError):
                try:
                    est = estimate_model(name, classes, shape[0], shape[1], **kwargs)
                except (ModelError, ValueError, TypeError):
                    est = None
                self._flops[key] = 2 * est.params if est is not None else 0
        return self._flops[key]

    def teacher_flops(self, cfg: RunConfig, shape: tuple[int, int, int], classes: int) -> int:
        """FLOPs per image of ``cfg``'s teachers' forwards together (0 without teachers)."""
        from workbench.runs import TeacherError, shipped_teacher_card

        total = 0
        for spec in cfg.teachers:
            try:
                if spec.source.startswith("shipped:"):
                    total += int(shipped_teacher_card(spec.source.split(":", 1)[1]).get("flops") or 0)
                elif spec.source.startswith("run:") and self.store is not None:
                    run = self.store.load(spec.source.split(":", 1)[1])
                    total += int(run.model_spec["student"].get("flops") or 0)
                elif spec.model is not None:
                    total += self.model_flops(spec.model.name, spec.model.kwargs, shape, classes)
            except (TeacherError, ValueError, KeyError, TypeError):
                continue
        return total


def _completed(store: RunStore | None) -> Iterable[Any]:
    if store is None:
        return []
    return store.list(status="completed")


def _student_key(cfg: RunConfig) -> tuple[str, ...]:
    return (cfg.data.dataset, cfg.model.name, json.dumps(cfg.model.kwargs, sort_keys=True, default=str))


def _methods(cfg: RunConfig) -> str:
    return "+".join(sorted(m.name for m in cfg.distill.methods))


def _shape(cfg: RunConfig) -> tuple[tuple[int, int, int], int]:
    from workbench.data import list_datasets

    info = next((d for d in list_datasets() if d.name == cfg.data.dataset), None)
    if info is None or not info.shape_known:
        return (3, 32, 32), 10
    return tuple(info.image_shape), info.num_classes  # type: ignore[return-value]


def trial_seconds(config: RunConfig, costs: _Costs) -> tuple[float, str]:
    """Estimated seconds of one trial and how it was costed (``measured`` or ``flops``)."""
    from workbench.train import chain_length

    train_n, test_n = split_sizes(config)
    bs = config.data.batch_size
    per_epoch = math.ceil(train_n / bs)
    steps = config.train.epochs * per_epoch
    if config.train.max_steps:
        steps = min(steps, config.train.max_steps)
    epochs = math.ceil(steps / per_epoch)
    images = steps * bs
    shape, classes = _shape(config)
    student = costs.model_flops(config.model.name, config.model.kwargs, shape, classes)
    teacher = costs.teacher_flops(config, shape, classes) if config.teachers else 0
    needed = teacher if methods_needing_teacher(config) else 0  # a teacher's outputs in training
    cached = config.distill.teacher_cache and config.data.augment.deterministic
    rate = costs.rate
    measured = costs.measured(config)
    if measured is not None:  # the measured seconds hold the teacher's share of training already
        train_s, once, source = measured * images, 0.0, "measured"
    else:
        train_s = images * (3 * student + (0 if cached else needed)) / rate + steps * STEP_SECONDS
        once, source = (train_n * needed / rate if cached else 0.0), "flops"
    once += test_n * teacher / rate  # the teachers' test outputs (agreement), once
    evals = math.ceil(epochs / config.train.eval_every)
    eval_s = evals * test_n * student / rate
    try:
        links = chain_length(config)
    except ValueError:
        links = 1
    return links * (train_s + once + eval_s + TRIAL_SECONDS), source


def estimate_seconds(
    spec: SweepSpec | Iterable[Trial],
    store: RunStore | str | None = None,
    *,
    max_jobs: int = 1,
) -> TimeEstimate:
    """Estimate how long the trials of ``spec`` take (see the module's notes on how).

    Args:
        spec: a sweep spec (every trial of it) or the trials to cost.
        store: a run store (or its folder) whose completed runs give measured speeds; ``None``
            costs from FLOPs alone.
        max_jobs: trials trained at once (the queue's ``max_jobs``).

    Returns:
        The :class:`TimeEstimate`: seconds per trial and the wall total (sum / ``max_jobs``).
    """
    if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
        raise ValueError(f"max_jobs: expected an integer >= 1, got {max_jobs!r}")
    trials = expand_trials(spec) if isinstance(spec, SweepSpec) else list(spec)
    if store is not None and not isinstance(store, RunStore):
        store = RunStore(store)
    costs = _Costs(store)
    per_trial: dict[str, float] = {}
    sources: dict[str, str] = {}
    for trial in trials:
        if trial.key not in per_trial:
            per_trial[trial.key], sources[trial.key] = trial_seconds(trial.config, costs)
    return TimeEstimate(
        per_trial=per_trial,
        total=sum(per_trial.values()) / max_jobs,
        max_jobs=max_jobs,
        measured=sum(1 for s in sources.values() if s == "measured"),
        sources=sources,
    )
