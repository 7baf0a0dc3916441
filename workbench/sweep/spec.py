"""Sweep specifications: a base run config, a grid of field values, several seeds.

A sweep file (YAML)::

    name: fashion-methods
    base: configs/fashion_kd.yaml      # a run config file (relative to the sweep file), or
    config: {...}                      # an inline run config (merged over `base` if both)
    grid:                              # dotted config fields -> list of values (any YAML)
      distill.methods: ["none", "0.9*kd", "0.9*kd + 1*dist"]
      optim.lr: [0.05, 0.1]
      # a list entry by index: distill.methods[0].params.temperature: [2, 4]
    seeds: [0, 1, 2]
    backend: local                     # local | ray
    workers: 1                         # local: 1 = in this process, >1 = a process pool
    set: ["train.epochs=3"]            # overrides applied to every trial

Each trial is the base config with one combination of grid values and one seed (grid fields are
set in the grid's order, so ``distill.methods`` before ``distill.methods[0].params.temperature``
sets the method, then its parameter). Its identity
(``trial key``) is a hash of the resolved config, so a resumed sweep recognises trials that are
already completed in the run store.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.config import ConfigError, RunConfig, apply_overrides, parse_method_expression
from workbench.validate import validate_run_config


class SweepError(ValueError):
    """A sweep file or option is wrong; one line naming the field."""


#: a sweep name: it names files (``<store>/sweeps/<name>.csv``, claims), so a plain slug only
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def check_name(name: Any, field: str = "name") -> str:
    """``name`` when it is a plain slug (letters, digits, ``_ . -``, starting with a letter or
    digit, at most 80 characters, no ``..``); else a one-line :class:`SweepError`. A sweep's
    name becomes file names, so a path (``../x``, ``/tmp/x``) is refused."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        shown = repr(name)[:60]
        raise SweepError(
            f"{field}: {shown} is not a plain name; use letters, digits, '_', '.' and '-' "
            "(it names files in the run store)"
        )
    return name


class SweepSpec(BaseModel):
    """The validated contents of a sweep file."""

    model_config = ConfigDict(extra="forbid")

    name: str = "sweep"
    base: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1, le=256)
    address: str | None = None
    set: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        try:
            return check_name(value, "name")
        except SweepError as err:
            raise ValueError(str(err).removeprefix("name: ")) from None

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"grid field {key!r} has no values")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one seed is required")
        return value


@dataclass
class Trial:
    """One point of the grid with one seed."""

    key: str
    params: dict[str, Any]
    seed: int
    config: RunConfig
    group: str = field(default="")


def _label(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def trial_key(config: RunConfig) -> str:
    """A stable identity of a trial: hash of the resolved config without name and links."""
    data = config.model_dump(mode="json", exclude={"name", "links"})
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read and validate a sweep file; ``overrides`` are extra ``key=value`` trial overrides."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise SweepError(f"sweep file {path}: not valid YAML") from None
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {path}: expected a mapping at the top level")
    if data.get("base"):
        base = Path(data["base"])
        if not base.is_absolute():
            candidates = [path.parent / base, Path.cwd() / base]
            base = next((c for c in candidates if c.exists()), candidates[0])
        data["base"] = str(base)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = f"unknown field (allowed: {', '.join(SweepSpec.model_fields)})"
        raise SweepError(f"sweep {path.name}: {loc}: {msg}") from None
    if overrides:
        spec.set = [*spec.set, *overrides]
    return spec


def base_config(spec: SweepSpec) -> dict[str, Any]:
    """The mapping every trial of ``spec`` starts from: its ``base`` file (if any) with its
    inline ``config`` merged over it (before the ``set`` overrides, the grid and the seed)."""
    base: dict[str, Any] = {}
    if spec.base:
        path = Path(spec.base)
        if not path.is_file():
            raise SweepError(f"sweep {spec.name}: base config {path} not found")
        base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(base, dict):
            raise SweepError(f"sweep {spec.name}: base config {path}: expected a mapping of fields")
    return _merge(base, spec.config)


def expand_trials(spec: SweepSpec) -> list[Trial]:
    """Every (grid point, seed) as a validated run config, tagged with its sweep and trial key."""
    base = base_config(spec)
    keys = list(spec.grid)
    trials: list[Trial] = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        for seed in spec.seeds:
            data = copy.deepcopy(base)
            try:
                apply_overrides(data, spec.set)
                for k, v in params.items():
                    _set(data, k, v)
                data["seed"] = seed
                config = validate_run_config(data)
            except ConfigError as err:
                shown = ", ".join(f"{k}={_label(v)}" for k, v in params.items())
                raise SweepError(f"sweep {spec.name}: trial [{shown}] seed {seed}: {err}") from None
            key = trial_key(config)
            group = ", ".join(f"{k}={_label(v)}" for k, v in params.items()) or "base"
            config = config.model_copy(
                update={"name": f"{spec.name}-{key[:8]}", "links": {"sweep": spec.name, "trial": key}}
            )
            trials.append(Trial(key=key, params=params, seed=seed, config=config, group=group))
    return trials


#: one part of a grid field: a name with optional list indexes, ``methods[0]``
_PART_RE = re.compile(r"([^.\[\]]+)((?:\[\d{1,6}\])*)")


def field_path(dotted: str) -> list[str | int]:
    """The parts of a grid field: ``"distill.methods[0].params.temperature"`` ->
    ``["distill", "methods", 0, "params", "temperature"]`` (a part of digits alone, as in
    ``methods.0``, is an index too). A malformed field is a one-line :class:`SweepError`."""
    if not isinstance(dotted, str) or not dotted:
        raise SweepError(f"grid field {dotted!r}: expected a dotted field name, e.g. optim.lr")
    parts: list[str | int] = []
    for piece in dotted.split("."):
        match = _PART_RE.fullmatch(piece)
        if match is None:
            raise SweepError(
                f"grid field {dotted!r}: {piece!r} is not a field name or name[index], "
                "e.g. distill.methods[0].params.temperature"
            )
        name = match.group(1)
        parts.append(int(name) if name.isdigit() else name)
        parts += [int(i) for i in re.findall(r"\d+", match.group(2))]
    return parts


def _as_list(value: Any, dotted: str, where: str) -> list[Any]:
    """``value`` as a list to index into: a method expression (``"0.9*kd + at"``) is parsed."""
    if isinstance(value, str):
        try:
            return parse_method_expression(value)
        except ValueError as err:
            raise SweepError(f"grid field {dotted!r}: {where}: {err}") from None
    if not isinstance(value, list):
        raise SweepError(f"grid field {dotted!r}: {where} is not a list")
    return value


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set the grid field ``dotted`` (see :func:`field_path`) of a config mapping in place. Missing
    sections are created; an index must name an existing entry of a list (a method expression
    string is parsed into its list first)."""
    parts = field_path(dotted)
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(str(p) for p in parts[:i]) or "the config"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise SweepError(f"grid field {dotted!r}: {where} is not a list")
            if part >= len(node):
                raise SweepError(f"grid field {dotted!r}: {where} has {len(node)} entries, no index {part}")
        elif not isinstance(node, dict):
            raise SweepError(f"grid field {dotted!r}: {where} is not a section")
        if last:
            node[part] = copy.deepcopy(value)
            return
        child = node[part] if isinstance(part, int) else node.get(part)
        if isinstance(parts[i + 1], int):
            child = _as_list(child if child is not None else [], dotted, ".".join(map(str, parts[: i + 1])))
        elif child is None:
            child = {}
        node[part] = child
        node = child


def trial_count(spec: SweepSpec) -> int:
    """How many trials ``spec`` expands to (grid points x seeds), computed without expanding."""
    return math.prod(len(values) for values in spec.grid.values()) * len(spec.seeds)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = (
            _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
        )
    return out
