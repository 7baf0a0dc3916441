"""What the job tests share: the smallest real training configs and a wait for a condition.

``QUICK`` trains an MLP on digits for 3 steps (seconds); ``LONG`` runs many short epochs, long enough
to be stopped or killed in the middle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

QUICK: dict[str, Any] = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "optim": {"name": "adamw", "lr": 0.003},
    "train": {"epochs": 1, "max_steps": 3, "snapshot_every_epoch": False, "device": "cpu"},
}
LONG: dict[str, Any] = {**QUICK, "train": {"epochs": 10000, "snapshot_every_epoch": True, "device": "cpu"}}


def until(fn: Callable[[], Any], timeout: float = 120.0, what: str = "condition", poll: float = 0.1) -> Any:
    """``fn()``'s first true value, polled every ``poll`` seconds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
