"""Smoothing of noisy curves (step losses, batch accuracy): the bias-corrected exponential moving
average that TensorBoard and Weights & Biases draw over the raw curve."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.signal import lfilter

from workbench.experiments.stats import ResultsError

__all__ = ["ema"]


def ema(values: Iterable[Any], weight: float) -> np.ndarray:
    """The debiased exponential moving average of ``values``.

    ``s_t = weight · s_{t-1} + (1 - weight) · x_t`` from ``s_0 = 0``, reported as
    ``s_t / (1 - weight^k)`` where ``k`` counts the finite values seen so far: TensorBoard's
    "debiased" smoothing (and Weights & Biases' default), which starts at the first value instead of
    rising from 0. A non-finite value is passed through unchanged and does not move the average (as
    TensorBoard does), so one ``nan`` loss leaves a gap, not a ruined curve.

    Args:
        values: the raw curve (numbers, in order).
        weight: the smoothing weight in ``[0, 1)``; 0 returns the values unchanged, 0.99 is very smooth.

    Returns:
        A float64 array of the same length.

    Raises:
        ResultsError: ``weight`` is not in ``[0, 1)`` or ``values`` holds a non-number.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= float(weight) < 1.0:
        raise ResultsError(f"weight: expected a smoothing weight in [0, 1), got {weight!r}")
    try:
        raw = np.asarray(list(values), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ResultsError("values: expected a sequence of numbers") from None
    w = float(weight)
    out = raw.copy()
    finite = np.isfinite(raw)
    x = raw[finite]
    if x.size:
        # s_t = w s_{t-1} + (1 - w) x_t over the finite values (a first-order recursive filter)
        state = lfilter([1.0 - w], [1.0, -w], x)
        out[finite] = state / (1.0 - w ** np.arange(1, x.size + 1, dtype=np.float64))
    return out
