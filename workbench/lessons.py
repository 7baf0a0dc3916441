"""Small helpers the lesson notebooks share: fast mode and exercise checks.

``WORKBENCH_FAST=1`` (set by the test suite) shrinks epochs and sample counts so every lesson runs
in seconds; a person running a lesson gets the full sizes. Exercise check cells call
:func:`check`, which prints a clear right/wrong line and returns whether the answer was right (and
raises :class:`WrongAnswer` when ``strict``, which is how the suite makes a wrong reference answer
fail).
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


class WrongAnswer(AssertionError):
    """An exercise's check failed (raised by :func:`check` with ``strict=True``)."""


def fast() -> bool:
    """Whether lessons should run at their small CI size (``WORKBENCH_FAST=1``)."""
    return os.environ.get("WORKBENCH_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def size(full: T, quick: T) -> T:
    """``quick`` under ``WORKBENCH_FAST=1``, else ``full`` (epochs, sample counts, grid sizes)."""
    return quick if fast() else full


def check(correct: bool, right: str, wrong: str, *, strict: bool | None = None) -> bool:
    """Print ``Right: ...`` or ``Not yet: ...`` for an exercise and return ``correct``.

    ``strict`` (default: on when ``WORKBENCH_STRICT_CHECKS=1``) raises :class:`WrongAnswer` on a wrong
    answer, so a test can tell a passing check cell from a failing one.
    """
    if strict is None:
        strict = os.environ.get("WORKBENCH_STRICT_CHECKS", "").strip() in {"1", "true", "yes", "on"}
    if correct:
        print(f"Right: {right}")
        return True
    print(f"Not yet: {wrong}")
    if strict:
        raise WrongAnswer(wrong)
    return False


__all__ = ["WrongAnswer", "check", "fast", "size"]
