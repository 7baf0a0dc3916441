"""Config-time checks that need the registries: everything about a run config that can be known
before any data or teacher is loaded.

:mod:`workbench.config` is the schema (types, ranges, YAML limits) and imports nothing else from
the workbench; this module sits one layer above it and above :mod:`workbench.data`,
:mod:`workbench.models` and :mod:`workbench.distill`, below :mod:`workbench.train` and the faces.
It checks

* the dataset name (with a did-you-mean), the options its loader accepts, and that a dataset
  that needs files has a ``data.root``;
* the model name (plugins loaded first; a name not found lists the broken plugins), the keyword
  arguments its builder accepts (names, the ones the name pins, and values: the model is built on
  PyTorch's ``meta`` device, which allocates nothing); a model outside the zoo must also get
  through a forward pass of one input of the dataset's shape and return its logits
  (:func:`workbench.models.check_model`), else ``model.name`` names it;
* every teacher's source syntax (``shipped:NAME`` of a shipped teacher, ``run:RUN_ID``, or a
  weights file with its model);
* every method name and each method's hyperparameters against its JSON schema
  (:func:`workbench.distill.method_schema`): unknown keys with a did-you-mean, wrong types,
  out-of-range or non-finite numbers, then the method's own validators;
* that methods needing a teacher get one.

Every failure is a one-line :class:`~workbench.config.ConfigError` naming the field, e.g.
``distill.methods[0].params.temprature: unknown parameter of method 'kd' (did you mean
'temperature'?); accepted: temperature``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from workbench.config import (
    TEACHER_NAME,
    ConfigError,
    ModelSpec,
    RunConfig,
    parse_config,
    printable,
    shown,
    validate_config,
)
from workbench.data import DataError, check_dataset, dataset_options, list_datasets
from workbench.distill import MethodError, get_method_class, list_methods, method_schema, parse_params
from workbench.errors import one_line as first_line
from workbench.models import ModelError, check_model, create_model, describe_models, estimate_model
from workbench.models.meta import SkipInitOnMeta
from workbench.models.plugins import broken_summary
from workbench.models.registry import ZOO
from workbench.paths import teachers_dir

__all__ = [
    "check_config",
    "check_method_params",
    "load_config",
    "methods_needing_teacher",
    "validate_run_config",
]

#: kwargs with a number above this (or a list longer than _META_MAX_LEN) are not built on the meta
#: device at config time (a depth of thousands takes seconds even there); the factory checks them
#: when the run builds the model.
_META_MAX_NUMBER = 1024
_META_MAX_LEN = 64
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# ---- public API ----------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), **defaults: Any) -> RunConfig:
    """Read a YAML run config (or start from ``defaults``), apply ``key=value`` overrides, validate
    against the schema and check it against the registries (:func:`check_config`).

    Every problem is a one-line :class:`~workbench.config.ConfigError` naming the field; nothing is
    loaded (no data, no teacher, no weights).
    """
    return check_config(parse_config(path, overrides, **defaults))


def validate_run_config(data: Mapping[str, Any], *, require_teacher: bool = True) -> RunConfig:
    """:func:`workbench.config.validate_config` (schema) followed by :func:`check_config` (registries)."""
    return check_config(validate_config(data), require_teacher=require_teacher)


def check_config(cfg: RunConfig, *, require_teacher: bool = True) -> RunConfig:
    """Check ``cfg`` against the dataset, model and method registries; return it unchanged.

    ``require_teacher=False`` skips the check that methods needing a teacher have one in
    ``cfg.teachers`` (for callers that hand the teachers to the trainer in code).
    Raises a one-line :class:`~workbench.config.ConfigError` naming the first wrong field.
    """
    shape, num_classes = _check_data(cfg)
    _check_model(cfg.model, "model", shape, num_classes)
    for i, teacher in enumerate(cfg.teachers):
        _check_teacher_source(teacher.source, f"teachers[{i}].source")
        if teacher.model is not None:
            _check_model(teacher.model, f"teachers[{i}].model", shape, num_classes)
    for i, method in enumerate(cfg.distill.methods):
        field = f"distill.methods[{i}]"
        if method.name not in list_methods():
            raise ConfigError(f"{field}.name: {_unknown(method.name, list_methods())}")
        check_method_params(method.name, method.params, field=f"{field}.params")
    if require_teacher and not cfg.teachers:
        needing = methods_needing_teacher(cfg)
        if needing:
            which = f"method {needing[0]!r} needs" if len(needing) == 1 else f"methods {shown(needing)} need"
            raise ConfigError(
                f"teachers: {which} a teacher, none given (e.g. teachers: [{{source: 'shipped:mnist'}}])"
            )
    return cfg


def methods_needing_teacher(cfg: RunConfig) -> list[str]:
    """Names of the configured methods that need a given teacher; none when another method of
    the objective provides its own (e.g. ``ema``'s mean teacher). Unknown names are skipped
    (:func:`check_config` reports them)."""
    classes = [get_method_class(m.name) for m in cfg.distill.methods if m.name in list_methods()]
    if any(c.provides_teacher for c in classes):
        return []
    return [c.name for c in classes if c.needs_teacher]


def check_method_params(name: str, params: Mapping[str, Any], *, field: str = "params") -> None:
    """Check the hyperparameters ``params`` of method ``name`` against its JSON schema
    (:func:`workbench.distill.method_schema`), then against the method's own pydantic
    validators. Raises a one-line :class:`~workbench.config.ConfigError` naming ``field.key``."""
    schema = method_schema(name)
    _check_value(params, schema, schema.get("$defs", {}), field, name)
    try:
        parse_params(name, params)
    except MethodError as err:
        msg = str(err).removeprefix(f"method {name!r}: ")
        where = f"{field}.{msg}" if msg and not msg.startswith("params") else f"{field}: {msg}"
        raise ConfigError(printable(where)) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(printable(f"{field}: {err}")) from None


# ---- helpers -------------------------------------------------------------------------------------


def _unknown(name: str, known: Iterable[str], what: str = "name") -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(known) or "none"
    return printable(f"unknown {what} {shown(name)}{hint}; known: {listed}", 300)


def _check_data(cfg: RunConfig) -> tuple[tuple[int, int, int] | None, int]:
    """Dataset name, options and root; returns the input shape (None where it depends on the
    files) and the number of classes (0 when unknown)."""
    infos = {d.name: d for d in list_datasets()}
    spec = cfg.data
    if spec.dataset not in infos:
        raise ConfigError(f"data.dataset: {_unknown(spec.dataset, infos)}")
    info = infos[spec.dataset]
    accepted = dataset_options(spec.dataset)
    for key in spec.options:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                printable(
                    f"data.options.{key}: unknown option of dataset {spec.dataset!r}{hint}; "
                    f"accepted: {', '.join(sorted(accepted)) or 'none'}"
                )
            )
    if info.needs_root and not (spec.root and spec.root.strip()):
        raise ConfigError(
            f"data.root: dataset {spec.dataset!r} is read from files, so data.root (the folder "
            "holding them) is required"
        )
    try:  # option values, file headers (images, IDX), decompression bombs, size vs memory budget
        check_dataset(spec.dataset, root=spec.root, download=spec.download, **spec.options)
    except DataError as err:
        msg = str(err)
        key = msg.split(":", 1)[0].removeprefix("option ") if msg.startswith("option ") else ""
        if key:  # "option n_train: ..." -> "data.options.n_train: ..."
            where = f"data.options.{key}" if key in spec.options else "data.options"
            msg = msg.split(": ", 1)[1]
        else:  # "root ...: ...", "file ...: ...", "folder ...: ..."
            where = "data.root"
        raise ConfigError(printable(f"{where}: {msg}", 400)) from None
    if info.shape_known:
        return tuple(info.image_shape), info.num_classes  # type: ignore[return-value]
    size, channels = spec.options.get("image_size"), spec.options.get("channels")
    if _small_int(size) and _small_int(channels):
        return (int(channels), int(size), int(size)), 0
    return None, 0


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096


def _plausible(value: Any) -> bool:
    """Whether kwargs are small enough to build the model on the meta device quickly."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, (int, float)):
            if not math.isfinite(item) or abs(item) > _META_MAX_NUMBER:
                return False
        elif isinstance(item, (list, tuple)):
            if len(item) > _META_MAX_LEN:
                return False
            stack.extend(item)
        elif isinstance(item, Mapping):
            if len(item) > _META_MAX_LEN:
                return False
            stack.extend(item.values())
        else:
            return False
    return True


def _check_model(spec: ModelSpec, field: str, shape: tuple[int, int, int] | None, num_classes: int) -> None:
    """Model name, kwargs names and pinned values, then a build on the meta device (and, for a
    model outside the zoo, a forward pass of one input: :func:`workbench.models.check_model`)."""
    specs = {s.name: s for s in describe_models()}
    if spec.name not in specs:
        raise ConfigError(f"{field}.name: {_unknown(spec.name, specs)}{_broken_note()}")
    entry = specs[spec.name]
    free = [k for k in entry.defaults if k not in entry.fixed]
    for key, value in spec.kwargs.items():
        if key not in entry.defaults:
            close = difflib.get_close_matches(str(key), free, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                printable(
                    f"{field}.kwargs.{key}: unknown argument of model {spec.name!r}{hint}; "
                    f"accepted: {', '.join(free) or 'none'}"
                )
            )
        if key in entry.fixed and not _same(value, entry.defaults[key]):
            raise ConfigError(
                printable(
                    f"{field}.kwargs.{key}: model {spec.name!r} fixes {key}={entry.defaults[key]!r}, "
                    f"got {shown(value)}; use {entry.family!r} to choose it"
                )
            )
    if shape is None:
        return
    dims = {"num_classes": max(num_classes, 2), "in_channels": shape[0], "image_size": shape[1]}
    try:
        estimate_model(spec.name, **dims, **spec.kwargs)  # arithmetic only: refuses sizes over the budget
        if not _plausible(spec.kwargs):
            return
        if entry.source == ZOO:  # the zoo's forwards are tested on every shape its builders accept
            with torch.device("meta"), SkipInitOnMeta():
                create_model(spec.name, **dims, **spec.kwargs)
        else:
            check_model(spec.name, **dims, **spec.kwargs)
    except ModelError as err:
        raise ConfigError(_model_error(err, spec, field)) from None
    except (RuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError, AttributeError) as err:
        first = first_line(err)
        raise ConfigError(
            printable(f"{field}.kwargs: model {spec.name!r} cannot be built with these arguments ({first})")
        ) from None


def _model_error(err: ModelError, spec: ModelSpec, field: str) -> str:
    """The one line of a model the registry refused: at ``field.kwargs.KEY`` when the message is
    about a given argument, else ``field.kwargs`` when arguments were given, else ``field.name``
    (the model as named does not fit the dataset's shape)."""
    msg = str(err).removeprefix(f"model {spec.name!r}: ")
    key = msg.split("=", 1)[0] if "=" in msg else ""
    if key in spec.kwargs:
        return printable(f"{field}.kwargs.{key}: {msg} (model {spec.name!r})", 400)
    if spec.kwargs:
        return printable(f"{field}.kwargs: {msg} (model {spec.name!r})", 400)
    return printable(f"{field}.name: model {spec.name!r} {msg}", 400)


def _broken_note() -> str:
    note = broken_summary()
    return f"; {note}" if note else ""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a comparison that cannot be made is a mismatch
        return False


def _check_teacher_source(source: str, field: str) -> None:
    """``shipped:NAME`` of a shipped teacher, ``teacher:NAME`` of the store's teachers, ``run:RUN_ID``,
    or a weights file path (whether a store teacher or run exists is checked when the run starts)."""
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        shipped = sorted(p.stem for p in teachers_dir().glob("*.json")) if teachers_dir().is_dir() else []
        if not name:
            raise ConfigError(f"{field}: 'shipped:' needs a teacher name, e.g. 'shipped:mnist'")
        if name not in shipped:
            raise ConfigError(f"{field}: {_unknown(name, shipped, 'shipped teacher')}")
    elif source.startswith("run:"):
        run_id = source.split(":", 1)[1]
        if not _RUN_ID.match(run_id):
            raise ConfigError(
                f"{field}: 'run:' needs a run id of letters, digits, '-', '_' and '.', got {shown(run_id)}"
            )
    elif source.startswith("teacher:"):
        name = source.split(":", 1)[1]
        if not TEACHER_NAME.fullmatch(name):
            raise ConfigError(
                f"{field}: 'teacher:' needs the name of a teacher of the run store (letters, digits, '-', '_' "
                f"and '.', at most 64), got {shown(name)}"
            )
    elif not source.strip() or not source.lower().endswith(_WEIGHT_SUFFIXES):
        raise ConfigError(
            f"{field}: expected 'shipped:NAME', 'teacher:NAME', 'run:RUN_ID' or a weights file "
            f"({', '.join(_WEIGHT_SUFFIXES)}), got {shown(source)}"
        )


# ---- a JSON-schema checker for method hyperparameters -----------------------------------------------

_BOOL_WORDS = frozenset("0 1 true false yes no on off t f y n".split())
_TYPE_WORDS = {
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _describe(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    schema = _resolve(schema, defs)
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_describe(s, defs) for s in schema["anyOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_TYPE_WORDS.get(k, str(k)) for k in kind)
    return _TYPE_WORDS.get(kind, "a value") if kind else "a value"


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref.rsplit("/", 1)[1], {})
    return schema


def _as_number(value: Any, integer: bool) -> float | int | None:
    """``value`` as a finite number (numeric strings such as YAML's ``1e-3`` accepted), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 100:
            return None
        try:
            value = int(text) if integer and re.fullmatch(r"[-+]?\d+", text) else float(text)
        except ValueError:
            return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if integer:
            return int(value) if value.is_integer() else None
        return value
    return None


def _range_error(value: float, schema: Mapping[str, Any], integer: bool) -> str | None:
    word = "integer" if integer else "number"
    noun = f"an {word}" if integer else f"a {word}"
    lo, lo_x = schema.get("minimum"), schema.get("exclusiveMinimum")
    hi, hi_x = schema.get("maximum"), schema.get("exclusiveMaximum")
    if lo_x is not None and not value > lo_x:
        return f"expected a positive {word}" if lo_x == 0 else f"expected {noun} > {lo_x:g}"
    if lo is not None and not value >= lo:
        return f"expected a non-negative {word}" if lo == 0 else f"expected {noun} >= {lo:g}"
    if hi_x is not None and not value < hi_x:
        return f"expected {noun} < {hi_x:g}"
    if hi is not None and not value <= hi:
        return f"expected {noun} <= {hi:g}"
    return None


def _check_value(
    value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any], field: str, method: str
) -> None:
    """Raise a one-line ConfigError at ``field`` when ``value`` does not fit ``schema``."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        options = [_resolve(s, defs) for s in schema["anyOf"]]
        errors: list[ConfigError] = []
        for option in options:
            try:
                _check_value(value, option, defs, field, method)
                return
            except ConfigError as err:
                errors.append(err)
        typed = [e for o, e in zip(options, errors, strict=True) if _fits_type(value, o)]
        if typed:
            raise typed[0]
        raise ConfigError(printable(f"{field}: expected {_describe(schema, defs)}, got {shown(value)}"))
    if "enum" in schema:
        if not any(value == v and type(value) is type(v) for v in schema["enum"]):
            raise ConfigError(printable(f"{field}: expected {_describe(schema, defs)}, got {shown(value)}"))
        return
    kind = schema.get("type")
    if kind is None:
        return
    if not _fits_type(value, schema):
        raise ConfigError(printable(f"{field}: expected {_describe(schema, defs)}, got {shown(value)}"))
    if kind in ("number", "integer"):
        number = _as_number(value, kind == "integer")
        assert number is not None  # _fits_type checked it
        problem = _range_error(number, schema, kind == "integer")
        if problem:
            raise ConfigError(printable(f"{field}: {problem}, got {shown(value)}"))
    elif kind == "string":
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise ConfigError(
                printable(f"{field}: expected at least {schema['minLength']} characters, got {shown(value)}")
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ConfigError(
                printable(f"{field}: expected at most {schema['maxLength']} characters, got {shown(value)}")
            )
    elif kind == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise ConfigError(
                printable(f"{field}: expected at least {schema['minItems']} entries, got {len(value)}")
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ConfigError(
                printable(f"{field}: expected at most {schema['maxItems']} entries, got {len(value)}")
            )
        prefix = schema.get("prefixItems") or []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, Mapping):
                _check_value(item, sub, defs, f"{field}[{i}]", method)
    elif kind == "object":
        _check_object(value, schema, defs, field, method)


def _fits_type(value: Any, schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind in ("number", "integer"):
        return _as_number(value, kind == "integer") is not None
    if kind == "boolean":  # what the method's own (pydantic) schema reads as a boolean
        if isinstance(value, str):
            return value.strip().lower() in _BOOL_WORDS
        return isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1))
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "null":
        return value is None
    return True


def _check_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], defs: Mapping[str, Any], field: str, method: str
) -> None:
    props: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{field}.{printable(str(key), 40)}"
        if key in props:
            _check_value(item, props[key], defs, where, method)
        elif extra is False:
            accepted = list(props)
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                printable(
                    f"{where}: unknown parameter of method {method!r}{hint}; "
                    f"accepted: {', '.join(accepted) or 'none'}"
                )
            )
        elif isinstance(extra, Mapping):
            _check_value(item, extra, defs, where, method)
    for key in schema.get("required", []):
        if key not in value:
            raise ConfigError(f"{field}.{key}: required parameter of method {method!r} is missing")
