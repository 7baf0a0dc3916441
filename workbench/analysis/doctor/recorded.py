"""What a run recorded, as evidence: its config (the plan: methods, weights, temperature,
optimizer, schedule, data options, the hint layers a feature method was wired to) and its
per-epoch history (:func:`config_evidence`, :func:`history_evidence`), the temperature it
distilled at (:func:`config_temperature`) and the layer pairs feature distillation trains
(:func:`distilled_layer_pairs`).

Nothing here runs the models on data (a shape probe of the networks aside) and nothing reads the
run store: the config and the history are handed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from workbench.analysis.doctor.findings import DoctorError

__all__ = [
    "USUAL_LR",
    "check_history",
    "config_evidence",
    "config_temperature",
    "distilled_layer_pairs",
    "history_evidence",
]

#: the usual learning rate of each optimizer (SGD with momentum on these datasets; AdamW's default)
USUAL_LR = {"sgd": 0.05, "adamw": 1e-3, "adam": 1e-3}


def _weighted_methods(config: Any) -> list[tuple[str, Any]]:
    """``(name, validated params)`` of every method of a run config with a positive weight."""
    if config is None:
        return []
    distill = getattr(config, "distill", None)
    methods = getattr(distill, "methods", None)
    if methods is None:
        raise DoctorError(
            f"config: expected a run config (with distill.methods), got {type(config).__name__}"
        )
    from workbench.distill.base import parse_params

    return [(spec.name, parse_params(spec.name, spec.params)) for spec in methods if spec.weight > 0]


def config_temperature(config: Any) -> float | None:
    """The temperature of a run config's first weighted method that has one (``None`` if none has):
    :func:`workbench.distill.distillation_temperature`, after checking ``config`` is a run config."""
    from workbench.distill import distillation_temperature

    if config is None:
        return None
    _weighted_methods(config)  # a one-line DoctorError for something that is not a run config
    return distillation_temperature(config)


def distilled_layer_pairs(
    teacher: nn.Module,
    student: nn.Module,
    input_shape: Sequence[int],
    config: Any = None,
) -> tuple[list[tuple[str, str]], str]:
    """The ``(teacher path, student path)`` layer pairs feature distillation trains.

    The pairs a run set in its method config (``teacher_layers``/``student_layers`` zipped in order,
    ``teacher_layer``/``student_layer`` as one pair; a method naming only one side contributes no
    pair), in the order of the methods and without repeats; when it set none, the stages paired by
    :func:`workbench.models.taps.match_stages` (relative depth and resolution), the pairing the
    feature methods use by default.

    Args:
        teacher, student: the two networks (only inspected; a shape probe runs on copies of them).
        input_shape: ``(C, H, W)`` of one input.
        config: the run's :class:`workbench.config.RunConfig`, or ``None``.

    Returns:
        ``(pairs, source)`` with ``source`` ``"config"`` or ``"match_stages"``.
    """
    pairs: list[tuple[str, str]] = []
    for _, params in _weighted_methods(config):
        s_many, t_many = getattr(params, "student_layers", None), getattr(params, "teacher_layers", None)
        if s_many and t_many:
            pairs.extend((str(t), str(s)) for s, t in zip(s_many, t_many, strict=False))
        s_one, t_one = getattr(params, "student_layer", None), getattr(params, "teacher_layer", None)
        if s_one and t_one:
            pairs.append((str(t_one), str(s_one)))
    if pairs:
        return list(dict.fromkeys(pairs)), "config"
    from workbench.models.taps import match_stages

    shape = tuple(int(d) for d in input_shape)
    found = match_stages(student, teacher, shape, shape)  # type: ignore[arg-type]
    return [(t, s) for s, t in found], "match_stages"


def check_history(history: Any) -> list[Mapping[str, Any]]:
    """A run's per-epoch metrics (a list of dicts, or the run's metrics mapping with an ``epochs``
    list) as a list of epoch mappings; ``None`` gives ``[]``.

    Raises:
        DoctorError: one line naming what is wrong.
    """
    if history is None:
        return []
    if isinstance(history, Mapping):
        if "epochs" not in history:
            raise DoctorError(
                f"history: expected a run's metrics with an 'epochs' list, got keys {', '.join(history)}"
            )
        history = history["epochs"]
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise DoctorError(f"history: expected a list of per-epoch metric dicts, got {type(history).__name__}")
    if not all(isinstance(e, Mapping) for e in history):
        raise DoctorError("history: every epoch entry must be a mapping of metric names to numbers")
    return list(history)


def _params(model: nn.Module | None) -> int | None:
    return None if model is None else int(sum(p.numel() for p in model.parameters()))


def _depths(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Relative depth ``(i + 1) / n`` of each stage path of ``model``."""
    from workbench.models.taps import stage_layers

    stages = stage_layers(model, tuple(int(d) for d in input_shape))  # type: ignore[arg-type]
    return {p: (i + 1) / len(stages) for i, p in enumerate(stages)}


def _depth_of(path: str, depths: Mapping[str, float]) -> float | None:
    if path in depths:
        return depths[path]
    for stage, d in depths.items():
        if path.startswith(stage + "."):
            return d
    return None


def _bigger_student(config: Any) -> dict[str, Any]:
    """Overrides that give a clearly larger student of the same family (and a phrase naming it)."""
    name, kwargs = config.model.name, dict(config.model.kwargs)
    if isinstance(kwargs.get("hidden"), (list, tuple)):
        hidden = [max(64, 8 * int(h)) for h in kwargs["hidden"]]
        return {"overrides": {"model.kwargs.hidden": hidden}, "text": f"a student with hidden={hidden}"}
    if isinstance(kwargs.get("channels"), (list, tuple)):
        ch = [4 * int(c) for c in kwargs["channels"]]
        return {"overrides": {"model.kwargs.channels": ch}, "text": f"a student with channels={ch}"}
    if name == "mlp":
        return {"overrides": {"model.kwargs.hidden": [512, 256]}, "text": "an MLP with hidden=[512, 256]"}
    from workbench.models import describe_models

    specs = describe_models()
    family = next((s.family for s in specs if s.name == name), None)
    same = [s.name for s in specs if s.family == family and s.name != family]
    if name in same and same.index(name) < len(same) - 1:
        nxt = same[same.index(name) + 1]
        return {"overrides": {"model.name": nxt}, "text": f"the larger {nxt}"}
    return {}


def config_evidence(
    config: Any,
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
    input_shape: Sequence[int] | None = None,
    train_size: int | None = None,
) -> dict[str, Any]:
    """What a run recorded as its plan, as evidence: methods, the first temperature-scaled method's
    index, weight and temperature, ``ce_weight``, optimizer and learning rate (and its ratio to
    the optimizer's usual rate, :data:`USUAL_LR`), epochs and step limit, batch size, training-set
    size, data options (``confounding``), mixing augmentations, the hint layers a feature method
    was wired to (and how far apart in relative depth), parameter counts, and the experiments
    that a fix would need (a larger student, a matching shipped teacher)."""
    ev: dict[str, Any] = {}
    if config is None:
        return ev
    methods = [(i, spec) for i, spec in enumerate(config.distill.methods)]
    ev["methods"] = [spec.name for _, spec in methods]
    ev["ce_weight"] = float(config.distill.ce_weight)
    from workbench.distill.base import parse_params

    for i, spec in methods:
        if spec.weight <= 0 or spec.name == "none":
            continue
        params = parse_params(spec.name, spec.params)
        t = getattr(params, "temperature", None)
        if t is not None and "kd_index" not in ev:
            ev.update(kd_index=i, temperature=float(t), kd_weight=float(spec.weight), kd_method=spec.name)
    opt = config.optim.name
    ev["optimizer"] = opt
    ev["lr"] = float(config.optim.lr)
    usual = USUAL_LR.get(opt)
    if usual:
        ev["lr_usual"] = usual
        ev["lr_scale"] = float(config.optim.lr) / usual
    ev["epochs"] = int(config.train.epochs)
    ev["max_steps"] = config.train.max_steps
    ev["batch_size"] = int(config.data.batch_size)
    subset = config.data.train_subset
    if train_size is not None:
        ev["train_size"] = int(min(train_size, subset)) if subset else int(train_size)
    ev["confounding"] = config.data.options.get("confounding")
    aug = config.data.augment
    ev["mixing"] = bool(aug.mixup_alpha > 0 or aug.cutmix_alpha > 0)
    ev["teacher_source"] = config.teachers[0].source if config.teachers else None
    ev["student_params"] = _params(student)
    ev["teacher_params"] = _params(teacher)
    if ev["student_params"] and ev["teacher_params"]:
        ev["param_ratio"] = ev["teacher_params"] / ev["student_params"]
    ev["bigger_student"] = _bigger_student(config)
    if teacher is not None and student is not None and input_shape is not None:
        ev.update(_hint_evidence(config, teacher, student, input_shape))
    return ev


def _hint_evidence(
    config: Any, teacher: nn.Module, student: nn.Module, input_shape: Sequence[int]
) -> dict[str, Any]:
    """The configured hint pair that lies furthest apart in relative depth, and the fix."""
    from workbench.distill.base import parse_params

    try:
        s_depth, t_depth = _depths(student, input_shape), _depths(teacher, input_shape)
    except ValueError:
        return {}
    worst: tuple[float, int, str, str, str] | None = None
    for i, spec in enumerate(config.distill.methods):
        if spec.weight <= 0 or spec.name == "none":
            continue
        params = parse_params(spec.name, spec.params)
        pairs: list[tuple[str, str, str]] = []
        s_many, t_many = getattr(params, "student_layers", None), getattr(params, "teacher_layers", None)
        if s_many and t_many:
            pairs += [(str(s), str(t), "student_layers") for s, t in zip(s_many, t_many, strict=False)]
        s_one, t_one = getattr(params, "student_layer", None), getattr(params, "teacher_layer", None)
        if s_one and t_one:
            pairs.append((str(s_one), str(t_one), "student_layer"))
        for s, t, key in pairs:
            ds, dt = _depth_of(s, s_depth), _depth_of(t, t_depth)
            if ds is None or dt is None:
                continue
            if worst is None or abs(ds - dt) > worst[0]:
                worst = (abs(ds - dt), i, s, t, key)
    if worst is None:
        return (
            {"hint_depth_gap": 0.0}
            if any(
                getattr(parse_params(m.name, m.params), "student_layers", None) is not None
                or getattr(parse_params(m.name, m.params), "student_layer", None) is not None
                for m in config.distill.methods
                if m.name != "none"
            )
            else {}
        )
    gap, i, s, t, key = worst
    dt = _depth_of(t, t_depth) or 1.0
    good = min(s_depth, key=lambda p: abs(s_depth[p] - dt))
    params = dict(config.distill.methods[i].params)
    if key == "student_layers":
        s_list = list(params.get("student_layers") or [])
        t_list = list(params.get("teacher_layers") or [])
        fixed = [
            min(s_depth, key=lambda p, tt=tt: abs(s_depth[p] - (_depth_of(tt, t_depth) or 1.0)))
            for tt in t_list
        ]
        over: dict[str, Any] = {f"distill.methods[{i}].params.student_layers": fixed or s_list}
    else:
        over = {f"distill.methods[{i}].params.student_layer": good}
    return {
        "hint_depth_gap": float(gap),
        "hint_pair": [s, t],
        "hint_fix": {"student_layer": good, "overrides": over},
    }


def history_evidence(history: Any, *, failure: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the run's per-epoch history says: steps taken, last-epoch training and test accuracy,
    the test accuracy per epoch, whether the training loss rose from the first to the last epoch,
    and (from ``failure``, a failed run's status entry) where the loss became non-finite."""
    epochs = check_history(history)
    ev: dict[str, Any] = {"failed": bool(failure)}
    if failure:
        ev["failed_step"] = failure.get("step")
        ev["failed_terms"] = dict(failure.get("terms") or {})
    if not epochs:
        return ev
    last = epochs[-1]
    ev["steps"] = int(last.get("step") or 0)
    if last.get("train_acc") is not None:
        ev["train_acc_last"] = float(last["train_acc"])
    tests = [float(e["test_acc"]) for e in epochs if e.get("test_acc") is not None]
    if tests:
        ev["test_acc_last"] = tests[-1]
        ev["test_acc_history"] = tests
    losses = [float(e["train_loss"]) for e in epochs if e.get("train_loss") is not None]
    if len(losses) >= 2:
        ev["loss_rise"] = losses[-1] - losses[0]
    return ev

