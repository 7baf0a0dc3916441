"""The error type of :mod:`workbench.models` and the argument checks every family shares.

Every check raises :class:`ModelError` with one line naming the argument, the value it got and
what was expected; :func:`workbench.models.create_model` prefixes the model name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


class ModelError(ValueError):
    """A model name, keyword argument, module path or input shape is wrong (one-line message)."""


def nearest(name: str, known: Iterable[str], n: int = 3, cutoff: float = 0.4) -> list[str]:
    """Up to ``n`` names of ``known`` closest to ``name`` (difflib ratio >= ``cutoff``), best first."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)


def _integral(value: Any) -> bool:
    """An ``int`` (not a bool) or a finite float with an integral value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``; integral floats (from YAML) are accepted."""
    if not _integral(value):
        raise ModelError(f"{name}={value!r}: expected an integer >= {minimum}")
    if value < minimum:
        raise ModelError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float, high_inclusive: bool = True) -> float:
    """``value`` as a ``float`` in ``[low, high]`` (``[low, high)`` when not ``high_inclusive``)."""
    bracket = "]" if high_inclusive else ")"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{name}={value!r}: expected a number in [{low}, {high}{bracket}")
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not ok:
        raise ModelError(f"{name}={value!r}: expected a number in [{low}, {high}{bracket}")
    return float(value)


def check_positive_float(name: str, value: Any) -> float:
    """``value`` as a ``float`` greater than zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ModelError(f"{name}={value!r}: expected a finite number > 0")
    return float(value)


def check_int_tuple(name: str, value: Any, min_len: int = 1, length: int | None = None) -> tuple[int, ...]:
    """``value`` (a list or tuple of positive integers) as a tuple of ``int``.

    ``length`` demands an exact number of entries; otherwise at least ``min_len``.
    """
    want = f"exactly {length}" if length is not None else f"at least {min_len}"
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ModelError(f"{name}={value!r}: expected a list of {want} positive integers")
    if (length is not None and len(value) != length) or len(value) < min_len:
        raise ModelError(f"{name}={value!r}: expected a list of {want} positive integers")
    out = []
    for v in value:
        if not _integral(v) or v < 1:
            raise ModelError(f"{name}={value!r}: expected a list of {want} positive integers")
        out.append(int(v))
    return tuple(out)
