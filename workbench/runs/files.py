"""Reading a run's files: every failure is a :class:`Damage` naming the file and what is wrong.

The run store (:mod:`workbench.runs.store`) lists a run whose files cannot be read, or have the
wrong shape, as ``damaged`` with that reason; these readers and checks are where the reasons come
from (``"status.json: not valid JSON (line 1, column 1)"``, ``"config.yaml: missing"``, ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from workbench.config import ConfigError, RunConfig, safe_yaml_load, validate_config
from workbench.errors import one_line

#: statuses a run's ``status.json`` records
RECORDED_STATUSES = ("running", "completed", "failed", "stopped", "interrupted")
#: the largest run file read (a bigger one is damage, not something to load)
MAX_FILE_BYTES = 64 * 1024 * 1024

_CONFIG_CACHE: dict[tuple[str, int, int, int], RunConfig] = {}


class Damage(Exception):
    """A run file that cannot be read or has the wrong shape; the message is the reason."""


def os_reason(err: OSError) -> str:
    """The short reason of an OS error (``Permission denied``), or its type's name."""
    return err.strerror or type(err).__name__


def quoted(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters (then ending with ``...``)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def read_text(path: Path) -> str:
    """The UTF-8 text of a run file of at most :data:`MAX_FILE_BYTES`; :class:`Damage` when it is
    missing, a directory, unreadable, too large or not UTF-8."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Damage(f"{path.name}: larger than {MAX_FILE_BYTES:,} bytes")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Damage(f"{path.name}: missing") from None
    except IsADirectoryError:
        raise Damage(f"{path.name}: a directory where a file should be") from None
    except OSError as err:
        raise Damage(f"{path.name}: unreadable ({os_reason(err)})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Damage(f"{path.name}: not UTF-8 text") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object a run file holds; :class:`Damage` when it cannot be read (see
    :func:`read_text`), is not valid JSON (naming line and column) or is not an object."""
    text = read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise Damage(f"{path.name}: not valid JSON (line {err.lineno}, column {err.colno})") from None
    except (ValueError, RecursionError):
        raise Damage(f"{path.name}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise Damage(f"{path.name}: expected a JSON object, got {_json_type(obj)}")
    return obj


def _json_type(obj: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if obj is None else names.get(type(obj), type(obj).__name__)


def check_status(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` (status.json's object) when its ``status`` is one of :data:`RECORDED_STATUSES`;
    else :class:`Damage`."""
    status = info.get("status")
    if not isinstance(status, str):
        raise Damage("status.json: no 'status' text field")
    if status not in RECORDED_STATUSES:
        raise Damage(f"status.json: unknown status {quoted(status, 30)}")
    return info


def check_metrics(obj: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's object with ``epochs`` (a list of objects) and ``summary`` (an object)
    defaulted to empty; :class:`Damage` when either has another shape, when an epoch record's
    ``epoch`` is not a whole number >= 0, or when a number in an epoch record or the summary is too
    large for a float (views read every value as one)."""
    epochs = obj.get("epochs", [])
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise Damage("metrics.json: 'epochs' is not a list of objects")
    summary = obj.get("summary", {})
    if not isinstance(summary, dict):
        raise Damage(f"metrics.json: 'summary' is {_json_type(summary)}, not an object")
    for pos, entry in enumerate(epochs, start=1):
        if "epoch" in entry and not _whole(entry["epoch"]):
            shown = _shown_value(entry["epoch"])
            raise Damage(f"metrics.json: epoch record {pos}: 'epoch' is {shown}, not a whole number >= 0")
        _check_numbers(entry, f"epoch record {pos}")
    _check_numbers(summary, "summary")
    return {**obj, "epochs": epochs, "summary": summary}


def _whole(value: Any) -> bool:
    """Whether ``value`` is a whole number >= 0 (an int, or a float with no fraction), not a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return value >= 0
    return math.isfinite(value) and value >= 0 and value.is_integer()


def _check_numbers(record: dict[str, Any], where: str) -> None:
    """:class:`Damage` when an integer of ``record`` (an epoch record or the summary) does not fit a
    float; other values (text, lists, null, ``NaN``) are left to the views, which skip them."""
    for key, value in record.items():
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                raise Damage(f"metrics.json: {where}: {quoted(str(key), 30)} is too large a number") from None


def _shown_value(value: Any) -> str:
    """A JSON value for a message: numbers as written (``inf``, ``nan``), text quoted, else its type."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 20 else text[:17] + "..."
    if isinstance(value, str):
        return quoted(value, 20)
    return _json_type(value)


def check_model_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (model.json's object) when it describes a ``student`` network by name; else
    :class:`Damage`."""
    net = obj.get("student")
    if net is None:
        raise Damage("model.json: no 'student' network")
    if not isinstance(net, dict) or not isinstance(net.get("name"), str):
        raise Damage("model.json: 'student' is not a network description")
    return obj


def read_config(path: Path) -> RunConfig:
    """The validated config of a run's config.yaml (cached by file identity: a run's config is
    written once; each call returns its own copy); :class:`Damage` naming the field when it is
    missing, unreadable or invalid."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise Damage("config.yaml: missing") from None
    except OSError as err:
        raise Damage(f"config.yaml: unreadable ({os_reason(err)})") from None
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    if key in _CONFIG_CACHE:
        return _CONFIG_CACHE[key].model_copy(deep=True)  # callers may change their copy
    text = read_text(path)
    try:
        data = safe_yaml_load(text, "config.yaml")
        if not isinstance(data, dict):
            raise ConfigError(f"config.yaml: expected a mapping of fields, got {type(data).__name__}")
        cfg = validate_config(data)
    except ConfigError as err:
        msg = one_line(err)
        raise Damage(msg if msg.startswith("config.yaml") else f"config.yaml: invalid: {msg}") from None
    if len(_CONFIG_CACHE) > 512:
        _CONFIG_CACHE.clear()
    _CONFIG_CACHE[key] = cfg.model_copy(deep=True)
    return cfg
