"""Typed, validated run configurations (pydantic v2) with YAML in and out.

A :class:`RunConfig` says everything a run needs: which data, which model, which teachers,
which distillation methods with which hyperparameters, which optimizer and schedule. Every bad
value produces a :class:`ConfigError` whose message is one line naming the field, the value
and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming the field."""


def _known(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown name {name!r}{hint}; known: {', '.join(known)}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentSpec(_Strict):
    """Training-time augmentation; all off means a deterministic input pipeline."""

    crop_padding: int = Field(0, ge=0, le=16)
    hflip: bool = False
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)

    @property
    def deterministic(self) -> bool:
        return not (self.crop_padding or self.hflip or self.mixup_alpha or self.cutmix_alpha)


class DataSpec(_Strict):
    """Which dataset, where it lives, and how it is batched."""

    dataset: str = "mnist"
    root: str | None = None
    download: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(128, ge=1, le=65536)
    eval_batch_size: int = Field(256, ge=1, le=65536)
    train_subset: int | None = Field(None, ge=1, description="use only the first N training samples")
    augment: AugmentSpec = Field(default_factory=AugmentSpec)

    @field_validator("dataset")
    @classmethod
    def _dataset_known(cls, value: str) -> str:
        from workbench.data import list_datasets

        names = [d.name for d in list_datasets()]
        if value not in names:
            raise ValueError(_known(value, names))
        return value


class ModelSpec(_Strict):
    """A zoo model by registry name with its keyword arguments."""

    name: str = "cnn_small"
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _model_known(cls, value: str) -> str:
        from workbench.models import list_models

        names = list_models()
        if value not in names:
            raise ValueError(_known(value, names))
        return value


class TeacherSpec(_Strict):
    """Where a teacher comes from.

    ``source`` is ``shipped:NAME`` (a teacher in ``assets/teachers``), ``run:RUN_ID`` (a run in
    the workspace), or a path to a ``.safetensors`` / ``.pt`` file, which then needs ``model``.
    """

    source: str
    model: ModelSpec | None = None
    checkpoint: Literal["final", "best"] = "best"

    @model_validator(mode="after")
    def _path_needs_model(self) -> TeacherSpec:
        if not self.source.startswith(("shipped:", "run:")) and self.model is None:
            raise ValueError(
                f"source {self.source!r} is a weights file, so 'model' (name and kwargs) is required"
            )
        return self


class MethodSpec(_Strict):
    """One distillation method of the objective, its weight and hyperparameters."""

    name: str = "none"
    weight: float = Field(1.0, ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _method_known(cls, value: str) -> str:
        from workbench.distill import list_methods

        names = list_methods()
        if value not in names:
            raise ValueError(_known(value, names))
        return value


class DistillSpec(_Strict):
    """The objective: ``ce_weight * CE + sum(weight_i * method_i)``."""

    methods: list[MethodSpec] = Field(default_factory=lambda: [MethodSpec(name="none")])
    ce_weight: float = Field(1.0, ge=0.0)
    teacher_cache: bool = True
    cache_budget_mb: int = Field(1024, ge=0)

    @field_validator("methods", mode="before")
    @classmethod
    def _parse_expression(cls, value: Any) -> Any:
        """Accept ``"kd"``, ``"kd + at"`` or ``"0.9*kd + at"`` as well as a list."""
        if isinstance(value, str):
            return parse_method_expression(value)
        return value

    @field_validator("methods")
    @classmethod
    def _not_empty(cls, value: list[MethodSpec]) -> list[MethodSpec]:
        if not value:
            raise ValueError("at least one method is required (use 'none' for cross-entropy only)")
        return value


def parse_method_expression(text: str) -> list[dict[str, Any]]:
    """Parse ``"kd"``, ``"kd + at"`` or ``"0.9*kd + at"`` into method spec dictionaries."""
    specs: list[dict[str, Any]] = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise ValueError(f"empty term in method expression {text!r}")
        weight = 1.0
        if "*" in part:
            left, _, right = part.partition("*")
            try:
                weight = float(left.strip())
            except ValueError:
                raise ValueError(f"weight {left.strip()!r} in {text!r} is not a number") from None
            part = right.strip()
        specs.append({"name": part, "weight": weight})
    return specs


class OptimSpec(_Strict):
    """Optimizer: SGD (momentum, Nesterov) or AdamW."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleSpec(_Strict):
    """Learning-rate schedule per step: linear warm-up, then cosine, step or constant."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    milestones: list[int] = Field(default_factory=list, description="epochs at which step decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    min_lr: float = Field(0.0, ge=0.0)


class TrainSpec(_Strict):
    """Budget and loop options."""

    epochs: int = Field(5, ge=1, le=10000)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps in total")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    device: str = "auto"
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto",
        description="layout of conv activations; auto = channels-last on the CPU for conv nets (faster)",
    )
    snapshot_every_epoch: bool = True
    grad_clip: float | None = Field(None, gt=0.0)
    eval_every: int = Field(1, ge=1)

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if value not in ("auto", "cpu", "mps") and not value.startswith("cuda"):
            raise ValueError(f"unknown device {value!r}; expected auto, cpu, cuda, cuda:N or mps")
        return value


class RunConfig(_Strict):
    """Everything one training run needs; serialised as the run's ``config.yaml``."""

    kind: Literal["teacher", "student", "distill"] = "student"
    name: str | None = None
    seed: int = 0
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    teachers: list[TeacherSpec] = Field(default_factory=list)
    distill: DistillSpec = Field(default_factory=DistillSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    links: dict[str, str] = Field(default_factory=dict, description="related runs, e.g. assistant")

    @model_validator(mode="after")
    def _kind_consistent(self) -> RunConfig:
        names = [m.name for m in self.distill.methods]
        if self.kind in ("teacher", "student") and names != ["none"]:
            raise ValueError(
                f"distill.methods: a {self.kind} run trains with cross-entropy only, got {names}; "
                "use kind 'distill'"
            )
        return self

    def methods_needing_teacher(self) -> list[str]:
        """Names of the configured methods that need a given teacher (none when another method of
        the objective provides its own, e.g. ``ema``'s mean teacher)."""
        from workbench.distill import get_method_class

        classes = [get_method_class(m.name) for m in self.distill.methods]
        if any(c.provides_teacher for c in classes):
            return []
        return [c.name for c in classes if c.needs_teacher]


_ROOTS = {"RunConfig": RunConfig}


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if not loc:  # a whole-model check: its message starts with the field it is about
        return msg
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown field"
    value = first.get("input")
    if first["type"] in ("missing",):
        return f"{loc}: required field is missing"
    shown = repr(value) if not isinstance(value, (dict, list)) else ""
    return f"{loc}: {msg}" + (f" (got {shown})" if shown and shown not in msg else "")


def validate_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`, raising a one-line :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of fields, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), **defaults: Any) -> RunConfig:
    """Read a YAML run config (or start from ``defaults``), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path}: not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path}: not valid YAML{where}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of fields at the top level")
        data.update(loaded)
    apply_overrides(data, overrides)
    return validate_config(data)


def config_to_yaml(config: BaseModel) -> str:
    """Serialise a config to YAML (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
