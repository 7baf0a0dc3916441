"""Typed run configurations (pydantic v2) with YAML in and out: the schema only.

A :class:`RunConfig` says everything a run needs: which data, which model, which teachers,
which distillation methods with which hyperparameters, which optimizer and schedule. This module
checks what the schema alone can decide (types, ranges, finite numbers, consistency between
fields) and reads YAML defensively (size, nesting, alias and encoding limits). Every bad value
produces a :class:`ConfigError` whose message is one line naming the field, the (shortened) value
and what is allowed.

Checks that need the registries (dataset, model and method names, their options and
hyperparameters, shipped teachers) live one layer up in :mod:`workbench.validate`, whose
``load_config`` every face uses; this module imports nothing else from the workbench.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

#: YAML and mapping limits: a run config is a few hundred bytes; these bounds only stop hostile input.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_SCALAR_CHARS = 4_000_000
MAX_SEED = 2**63 - 1
_SHOWN = 60  # characters of a value shown in an error message
_MESSAGE = 360  # an error message never exceeds this many characters


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming the field."""


# ---- short, one-line rendering of values ---------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxstring = _SHOWN
_REPR.maxother = _SHOWN
_REPR.maxlong = 40
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def printable(text: str, limit: int = _MESSAGE) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters (``...`` marks a cut)."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any, limit: int = _SHOWN) -> str:
    """A short ``repr`` of ``value`` for an error message: at most ``limit`` characters, one line,
    safe for huge, deeply nested or self-referencing values."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an int beyond Python's str-conversion limit
        text = f"<{type(value).__name__}>"
    except Exception:  # noqa: BLE001 - a foreign object's __repr__ may raise anything
        text = f"<{type(value).__name__}>"
    return printable(text, limit)


# ---- field types ---------------------------------------------------------------------------------


def _not_bool(value: Any) -> Any:
    """Numbers are numbers: YAML's ``true`` is not 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,4})?)$")


class AugmentSpec(_Strict):
    """Training-time augmentation; all off means a deterministic input pipeline."""

    crop_padding: Int = Field(0, ge=0, le=16)
    hflip: bool = False
    mixup_alpha: Float = Field(0.0, ge=0.0, le=1000.0)
    cutmix_alpha: Float = Field(0.0, ge=0.0, le=1000.0)

    @property
    def deterministic(self) -> bool:
        """True when no augmentation is on (then teacher outputs may be cached)."""
        return not (self.crop_padding or self.hflip or self.mixup_alpha or self.cutmix_alpha)


class DataSpec(_Strict):
    """Which dataset, where it lives, and how it is batched (names are checked by
    :func:`workbench.validate.check_config`). A dataset added to the run store keeps its ``name``
    beside the loader (``dataset``), ``root`` and ``options`` it stands for, so the config stays
    self-contained and every listing shows the name (:attr:`label`)."""

    dataset: str = Field("mnist", min_length=1, max_length=200)
    name: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="the store dataset these files are (`workbench data add NAME`); `dataset` is its loader",
    )
    root: str | None = None
    download: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: Int = Field(128, ge=1, le=65536)
    eval_batch_size: Int = Field(256, ge=1, le=65536)
    train_subset: Int | None = Field(
        None, ge=1, le=10**9, description="use only the first N training samples"
    )
    augment: AugmentSpec = Field(default_factory=AugmentSpec)

    @property
    def label(self) -> str:
        """The dataset as people call it: a store dataset's name, else the registry name."""
        return self.name or self.dataset


class ModelSpec(_Strict):
    """A zoo model by registry name with its keyword arguments."""

    name: str = Field("cnn_small", min_length=1, max_length=200)
    kwargs: dict[str, Any] = Field(default_factory=dict)


#: the prefixes of a teacher source that names a teacher (the rest are weights files)
TEACHER_PREFIXES: tuple[str, ...] = ("shipped:", "teacher:", "run:")
#: the name of a teacher added to the run store (``teacher:NAME``)
TEACHER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class TeacherSpec(_Strict):
    """Where a teacher comes from.

    ``source`` is ``shipped:NAME`` (a teacher in ``assets/teachers``), ``teacher:NAME`` (a teacher
    added to the run store from a checkpoint, ``workbench teachers add``), ``run:RUN_ID`` (a run in
    the workspace), or a path to a ``.safetensors`` / ``.pt`` file, which then needs ``model``.
    """

    source: str = Field(min_length=1, max_length=4096)
    model: ModelSpec | None = None
    checkpoint: Literal["final", "best"] = "best"

    @model_validator(mode="after")
    def _path_needs_model(self) -> TeacherSpec:
        if not self.source.startswith(TEACHER_PREFIXES) and self.model is None:
            raise ValueError(
                f"source {shown(self.source)} is a weights file, so 'model' (name and kwargs) is required"
            )
        return self


class MethodSpec(_Strict):
    """One distillation method of the objective, its weight and hyperparameters (the name and
    the hyperparameters are checked against the method registry by :mod:`workbench.validate`)."""

    name: str = Field("none", min_length=1, max_length=200)
    weight: Float = Field(1.0, ge=0.0, le=1e6)
    params: dict[str, Any] = Field(default_factory=dict)


#: precisions of the fixed teachers' forwards (``distill.teacher_precision``)
TeacherPrecision = Literal["float32", "bfloat16", "auto"]
TEACHER_PRECISIONS: tuple[str, ...] = get_args(TeacherPrecision)


class DistillSpec(_Strict):
    """The objective: ``ce_weight * CE + sum(weight_i * method_i)``."""

    methods: list[MethodSpec] = Field(default_factory=lambda: [MethodSpec(name="none")], max_length=32)
    ce_weight: Float = Field(1.0, ge=0.0, le=1e6)
    teacher_cache: bool = True
    cache_budget_mb: Int = Field(1024, ge=0, le=10**7)
    teacher_precision: TeacherPrecision = Field(
        "float32",
        description=(
            "precision of the fixed teachers' forwards (cache, per-step logits, test logits): "
            "float32 is exact; bfloat16 autocasts them (about 1.8x faster where the hardware "
            "has bf16 units; soft targets move by a mean KL of about 5e-6); auto = bfloat16 where the "
            "device computes bf16 natively, float32 elsewhere"
        ),
    )

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
    """Parse ``"kd"``, ``"kd + at"`` or ``"0.9*kd + at"`` into method spec dictionaries.

    Raises ``ValueError`` (one line) on an empty term or a weight that is not a finite number.
    """
    if len(text) > 10_000:
        raise ValueError(f"method expression of {len(text)} characters is too long")
    specs: list[dict[str, Any]] = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise ValueError(f"empty term in method expression {shown(text)}")
        weight = 1.0
        if "*" in part:
            left, _, right = part.partition("*")
            try:
                weight = float(left.strip())
            except ValueError:
                raise ValueError(f"weight {shown(left.strip())} in {shown(text)} is not a number") from None
            if not math.isfinite(weight):
                raise ValueError(f"weight {shown(left.strip())} in {shown(text)} is not a finite number")
            part = right.strip()
        specs.append({"name": part, "weight": weight})
    return specs


Beta = Annotated[float, BeforeValidator(_not_bool), Field(ge=0.0, lt=1.0)]


class OptimSpec(_Strict):
    """Optimizer: SGD (momentum, Nesterov) or AdamW."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: Float = Field(0.05, gt=0.0, le=1e3)
    momentum: Float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: Float = Field(5e-4, ge=0.0, le=1e3)
    betas: tuple[Beta, Beta] = (0.9, 0.999)


class ScheduleSpec(_Strict):
    """Learning-rate schedule per step: linear warm-up, then cosine, step or constant."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: Float = Field(0.0, ge=0.0, le=10000.0)
    milestones: list[Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10000)]] = Field(
        default_factory=list, max_length=1000, description="epochs at which step decays"
    )
    gamma: Float = Field(0.1, gt=0.0, le=1.0)
    min_lr: Float = Field(0.0, ge=0.0, le=1e3)


class TrainSpec(_Strict):
    """Budget and loop options."""

    epochs: Int = Field(5, ge=1, le=10000)
    max_steps: Int | None = Field(None, ge=1, le=10**9, description="stop after this many steps in total")
    label_smoothing: Float = Field(0.0, ge=0.0, lt=1.0)
    device: str = "auto"
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto",
        description="layout of conv activations; auto = channels-last on the CPU for conv nets (faster)",
    )
    snapshot_every_epoch: bool = True
    grad_clip: Float | None = Field(None, gt=0.0, le=1e6)
    eval_every: Int = Field(1, ge=1, le=10000)
    step_log_every: Int | None = Field(
        None,
        ge=0,
        le=10**9,
        description="record step metrics every N steps (and at each epoch's last step); "
        "None = about 50 points per epoch, 0 = off",
    )

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device {shown(value)}; expected auto, cpu, cuda, cuda:N or mps")
        return value


class RunConfig(_Strict):
    """Everything one training run needs; serialised as the run's ``config.yaml``.

    ``kind`` says what the run is (``teacher``, ``student`` or ``distill``); a config that does not
    name it gets it from its methods (:meth:`infer_kind`), so no face derives it on its own.
    """

    kind: Literal["teacher", "student", "distill"] = "student"
    name: str | None = Field(None, max_length=200)
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    teachers: list[TeacherSpec] = Field(default_factory=list, max_length=16)
    distill: DistillSpec = Field(default_factory=DistillSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    links: dict[str, str] = Field(default_factory=dict, description="related runs, e.g. assistant")

    @staticmethod
    def infer_kind(methods: Any) -> str:
        """The kind of a run that does not name one: ``student`` when its ``distill.methods`` are
        absent or only ``none`` (cross-entropy alone), else ``distill``. ``methods``: the list of
        method entries (mappings or :class:`MethodSpec`) or method names."""
        names = []
        for m in methods or []:
            name = m.get("name") if isinstance(m, Mapping) else getattr(m, "name", m)
            names.append(name)
        return "student" if names in ([], ["none"]) else "distill"

    @model_validator(mode="before")
    @classmethod
    def _fill_kind(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "kind" not in data:
            distill = data.get("distill")
            methods = distill.get("methods") if isinstance(distill, Mapping) else None
            if isinstance(methods, str):  # "0.9*kd + dkd" or "none"
                methods = [part.split("*")[-1].strip() for part in methods.split("+")]
            methods = methods if isinstance(methods, (list, tuple)) else None
            data = {**data, "kind": cls.infer_kind(methods)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        names = [m.name for m in self.distill.methods]
        if self.kind in ("teacher", "student") and names != ["none"]:
            raise ValueError(
                f"distill.methods: a {self.kind} run trains with cross-entropy only, got {shown(names)}; "
                "use kind 'distill'"
            )
        if self.schedule.min_lr > self.optim.lr:
            raise ValueError(
                f"schedule.min_lr: {self.schedule.min_lr:g} exceeds optim.lr {self.optim.lr:g}; "
                "the schedule decays from lr down to min_lr"
            )
        return self


# ---- errors --------------------------------------------------------------------------------------


def _loc(parts: Sequence[Any]) -> str:
    """``("distill", "methods", 0, "weight")`` -> ``distill.methods[0].weight``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(str(part), 40)
    return out


def _format_error(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    loc = _loc(first["loc"])
    msg = str(first["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    msg = printable(msg, 240)
    if not loc:  # a whole-model check: its message starts with the field it is about
        return printable(msg)
    if first["type"] == "extra_forbidden":
        return printable(f"{loc}: unknown field")
    if first["type"] == "missing":
        return printable(f"{loc}: required field is missing")
    value = first.get("input")
    got = shown(value) if not isinstance(value, (dict, list)) else ""
    return printable(f"{loc}: {msg}" + (f" (got {got})" if got and got not in msg else ""))


def check_structure(data: Any, where: str = "config") -> None:
    """Refuse structures no config has: nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_NODES` values, or a container holding itself. Raises a one-line :class:`ConfigError`."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 0, ())]
    open_ids: set[int] = set()
    exits: list[int] = []
    nodes = 0
    while stack:
        item, depth, path = stack.pop()
        if item is None and depth < 0:  # a sentinel closing a container
            open_ids.discard(exits.pop())
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{where}: more than {MAX_NODES} values; a run config is much smaller")
        if not isinstance(item, (Mapping, list, tuple, set, frozenset)):
            continue
        field = _loc(path) or where
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{printable(field, 120)}: nested deeper than {MAX_DEPTH} levels")
        if id(item) in open_ids:
            raise ConfigError(f"{printable(field, 120)}: contains itself")
        open_ids.add(id(item))
        exits.append(id(item))
        stack.append((None, -1, ()))
        children = item.items() if isinstance(item, Mapping) else enumerate(item)
        for key, child in children:
            stack.append((child, depth + 1, path + (key,) if len(path) < 8 else path))


def validate_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate a mapping into a :class:`RunConfig` against the schema only (types, ranges,
    consistency), raising a one-line :class:`ConfigError`. Registry checks (names, options,
    method hyperparameters) are :func:`workbench.validate.validate_run_config`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of fields, got {type(data).__name__}")
    check_structure(data)
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None
    except (RecursionError, OverflowError, TypeError) as err:  # defensive: never a traceback
        raise ConfigError(f"config: cannot be read ({type(err).__name__})") from None


# ---- YAML ----------------------------------------------------------------------------------------


class _YamlLimit(Exception):
    """A YAML document exceeds a limit (aliases, nesting, expanded size)."""


class LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with bounds: at most :data:`MAX_ALIASES` alias uses and
    :data:`MAX_DEPTH` levels of nesting (so neither a "billion laughs" alias bomb nor a deeply
    nested document can exhaust memory or the stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _YamlLimit(f"uses more than {MAX_ALIASES} aliases")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlLimit(f"is nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Size and depth of the document with every alias expanded (memoised over the node graph,
    so this costs one pass over the nodes as written); refuses cycles."""
    done: dict[int, tuple[int, int, int]] = {}  # id -> (nodes, chars, depth)
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            active.discard(key)
            kids = _children(node)
            n = 1 + sum(done[id(k)][0] for k in kids)
            c = sum(done[id(k)][1] for k in kids)
            d = 1 + max((done[id(k)][2] for k in kids), default=0)
            if n > MAX_NODES or c > MAX_SCALAR_CHARS:
                raise _YamlLimit("expands beyond the size limit (an alias bomb?)")
            if d > MAX_DEPTH:
                raise _YamlLimit(f"is nested deeper than {MAX_DEPTH} levels once aliases are expanded")
            done[key] = (n, c, d)
            continue
        if key in done:
            continue
        if key in active:
            raise _YamlLimit("holds an alias to itself")
        if isinstance(node, yaml.ScalarNode):
            done[key] = (1, len(node.value), 1)
            continue
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise _YamlLimit("holds an alias to itself")
            if id(child) not in done:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def safe_yaml_load(text: str, what: str = "config") -> Any:
    """Parse one YAML document with :class:`LimitedLoader`; every failure (syntax, limits, bad
    tags or scalars) is a one-line :class:`ConfigError` starting with ``what``."""
    loader = None
    try:
        loader = LimitedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _YamlLimit as err:
        raise ConfigError(f"{what}: refused, the YAML {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(err, yaml.reader.ReaderError):
            where = f" (a control character at position {err.position})"
        raise ConfigError(f"{what}: not valid YAML{where}") from None
    except (ValueError, TypeError, OverflowError, RecursionError):  # e.g. a date like 2001-13-45
        raise ConfigError(f"{what}: not valid YAML (a value cannot be read)") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML file holding one mapping, with the limits of :func:`safe_yaml_load`, a size
    bound of :data:`MAX_FILE_BYTES` and UTF-8 text required; one-line :class:`ConfigError` otherwise.
    An empty file is an empty mapping."""
    path = Path(path)
    what = f"config file {printable(str(path), 120)}"
    try:
        if not path.is_file():
            raise ConfigError(f"{what}: not found")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{what}: {size:,} bytes is larger than the {MAX_FILE_BYTES:,}-byte limit")
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot be read ({printable(err.strerror or type(err).__name__, 80)})"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: not UTF-8 text") from None
    loaded = safe_yaml_load(text, what)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{what}: expected a mapping of fields at the top level, got {type(loaded).__name__}"
        )
    return loaded


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML, with the loader's limits) to a
    nested mapping, in place; returns ``data``."""
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"--set {shown(item)}: expected a 'key=value' string")
        key, sep, raw = item.partition("=")
        label = f"--set {shown(item)}"
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise ConfigError(f"{label}: expected key=value, e.g. train.epochs=3")
        if len(parts) > MAX_DEPTH:
            raise ConfigError(f"{label}: key nested deeper than {MAX_DEPTH} levels")
        if not raw.strip():
            value: Any = ""
        else:
            try:
                value = safe_yaml_load(raw, label)
            except ConfigError as err:
                if "refused" in str(err):
                    raise
                value = raw
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{label}: {shown(part)} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def parse_config(path: str | Path | None = None, overrides: Sequence[str] = (), **defaults: Any) -> RunConfig:
    """Read a YAML run config (or start from ``defaults``), apply ``--set`` overrides and
    validate against the schema only. Faces use :func:`workbench.validate.load_config`, which
    adds the registry checks."""
    data: dict[str, Any] = dict(defaults)
    if path is not None:
        data.update(read_yaml_file(path))
    apply_overrides(data, overrides)
    return validate_config(data)


def config_to_yaml(config: BaseModel) -> str:
    """Serialise a config to YAML (round-trips through :func:`parse_config`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
