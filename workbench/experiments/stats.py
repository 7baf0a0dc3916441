"""Statistics over seeds: the spread of one setting, and a paired difference between two settings.

Pure functions of numbers (numpy and scipy only), so every face reports the same figures:

* :func:`seed_stats` — mean, sample standard deviation (``ddof=1``), min, max and n of one setting's
  values over its seeds, ignoring non-finite values and counting them.
* :func:`paired_difference` — the per-seed differences ``a[seed] - b[seed]`` over the seeds both
  settings ran, their mean and a Student-t interval; :meth:`PairedDifference.sentence` says it in
  words ("DKD beats KD by 0.4 ± 0.3 points over 5 seeds (95 % interval −0.1 to 0.9); the interval
  includes 0: not distinguishable at this budget.").
* :func:`metric_direction` — whether a metric is better higher (accuracy, agreement) or lower
  (losses, ECE, KL), which "best epoch" and the sentence's "beats" / "trails" read.

Accuracy-like metrics (fractions in [0, 1]) are said in points (× 100) in sentences; the numbers
of :class:`SeedStats` and :class:`PairedDifference` stay in the metric's own unit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "ResultsError",
    "PairedDifference",
    "SeedStats",
    "metric_direction",
    "metric_unit",
    "paired_difference",
    "seed_stats",
]

#: metrics that are better higher / lower (other names: see :func:`metric_direction`)
HIGHER_IS_BETTER = frozenset(
    {"test_acc", "best_test_acc", "train_acc", "batch_acc", "agreement", "images_per_s"}
)
LOWER_IS_BETTER = frozenset(
    {"test_loss", "train_loss", "loss", "ece", "kl_teacher_student", "seconds", "time"}
)
#: fractions in [0, 1] that sentences say in points (× 100)
POINT_METRICS = frozenset({"test_acc", "best_test_acc", "train_acc", "batch_acc", "agreement"})
_MINUS = "\u2212"


class ResultsError(ValueError):
    """Experiment input that cannot be used; the message is one line naming the argument."""


def metric_direction(metric: str) -> int:
    """``+1`` when a higher ``metric`` is better, ``-1`` when lower is better, ``0`` when neither
    (``lr``, ``epoch``, ``step``).

    Known names first (:data:`HIGHER_IS_BETTER`, :data:`LOWER_IS_BETTER`); ``loss/<term>`` and names
    holding ``loss``, ``ece``, ``kl`` or ``error`` are lower-is-better; names holding ``acc`` or
    ``agreement`` higher-is-better.
    """
    name = str(metric)
    if name in HIGHER_IS_BETTER:
        return 1
    if name in LOWER_IS_BETTER or name.startswith("loss/"):
        return -1
    low = name.lower()
    if any(word in low for word in ("loss", "ece", "kl", "error")):
        return -1
    if "acc" in low or "agreement" in low:
        return 1
    return 0


def metric_unit(metric: str) -> tuple[str, float]:
    """``(unit, scale)`` a sentence uses for ``metric``: ``("points", 100.0)`` for the accuracy-like
    fractions of :data:`POINT_METRICS` (and names ending in ``acc``), else ``("", 1.0)``."""
    name = str(metric)
    if name in POINT_METRICS or name.endswith("acc"):
        return "points", 100.0
    return "", 1.0


def _finite_floats(values: Iterable[Any], name: str) -> tuple[list[float], int]:
    """``(finite values, count of non-finite ones)``; :class:`ResultsError` on a non-number."""
    if isinstance(values, (str, bytes, Mapping)):
        raise ResultsError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    kept: list[float] = []
    dropped = 0
    for i, value in enumerate(values):
        if isinstance(value, bool) or value is None:
            if value is None:
                dropped += 1
                continue
            raise ResultsError(f"{name}[{i}]: expected a number, got a boolean")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ResultsError(f"{name}[{i}]: expected a number, got {type(value).__name__}") from None
        if math.isfinite(x):
            kept.append(x)
        else:
            dropped += 1
    return kept, dropped


@dataclass(frozen=True)
class SeedStats:
    """The spread of one setting over its seeds.

    ``std`` is the sample standard deviation (``ddof=1``): ``nan`` for ``n == 1``; every figure is
    ``nan`` for ``n == 0``. ``dropped`` counts the values left out because they were not finite
    (a diverged run's ``nan`` loss), or ``None``.
    """

    mean: float
    std: float
    min: float
    max: float
    n: int
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (``nan`` kept as float ``nan``)."""
        return asdict(self)


def seed_stats(values: Iterable[Any]) -> SeedStats:
    """Mean, sample std (``ddof=1``), min, max and n of ``values``, one per seed.

    Args:
        values: numbers (``None``, ``nan`` and infinities are left out and counted in ``dropped``).

    Returns:
        :class:`SeedStats`; ``std`` is ``nan`` for a single value, everything ``nan`` (``n == 0``)
        for none.

    Raises:
        ResultsError: an entry is not a number (a string, a boolean).
    """
    kept, dropped = _finite_floats(values, "values")
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return SeedStats(nan, nan, nan, nan, 0, dropped)
    arr = np.asarray(kept, dtype=np.float64)
    std = float(arr.std(ddof=1)) if n > 1 else float("nan")
    return SeedStats(float(arr.mean()), std, float(arr.min()), float(arr.max()), n, dropped)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` seed by seed, over the seeds both sides have with a finite value.

    ``mean`` and ``std`` (``ddof=1``) are those of the per-seed ``differences``; ``[low, high]`` is
    the Student-t interval ``mean ± t_{(1+confidence)/2, n-1} · std / √n``, ``nan`` for ``n < 2``
    (``note`` then says why). ``seeds`` are the paired seeds (sorted), ``only_a`` / ``only_b`` the
    seeds one side lacks, ``dropped`` the common seeds left out for a non-finite value.
    """

    mean: float
    std: float
    n: int
    low: float
    high: float
    seeds: tuple[Hashable, ...]
    differences: tuple[float, ...]
    confidence: float = 0.95
    only_a: tuple[Hashable, ...] = ()
    only_b: tuple[Hashable, ...] = ()
    dropped: tuple[Hashable, ...] = ()
    note: str = ""

    @property
    def has_interval(self) -> bool:
        """Whether the interval exists (two paired seeds or more)."""
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def includes_zero(self) -> bool | None:
        """Whether the interval holds 0 (the two settings are not distinguishable); ``None`` without
        an interval."""
        if not self.has_interval:
            return None
        return self.low <= 0.0 <= self.high

    def verdict(self, metric: str = "") -> str:
        """``"win"`` (the interval lies on ``a``'s better side of 0, by :func:`metric_direction`;
        above 0 for a metric without one), ``"loss"`` (on its worse side), ``"even"`` (it holds 0)
        or ``"unknown"`` (no interval)."""
        if not self.has_interval:
            return "unknown"
        if self.includes_zero:
            return "even"
        above = self.low > 0  # the interval excludes 0: wholly above or wholly below it
        better = above if (metric_direction(metric) or 1) > 0 else not above
        return "win" if better else "loss"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (tuples as lists, ``nan`` kept)."""
        out = asdict(self)
        for key in ("seeds", "differences", "only_a", "only_b", "dropped"):
            out[key] = list(out[key])
        return out

    def sentence(self, a_label: str, b_label: str, metric: str, unit: str | None = None) -> str:
        """The difference in words, for a table's caption or a leaderboard's row.

        Args:
            a_label, b_label: the two settings' names (``a`` minus ``b``), e.g. ``"DKD"``, ``"KD"``.
            metric: the metric compared; it decides the better side (:func:`metric_direction`: a
                lower loss "beats") and, with ``unit=None``, the unit (:func:`metric_unit`).
            unit: ``"points"`` says the numbers × 100 (accuracy fractions); any other text is put
                after the numbers as it is (scale 1); ``None`` (default) picks by ``metric``.

        Returns:
            e.g. ``"DKD beats KD by 0.4 ± 0.3 points over 5 seeds (95 % interval −0.1 to 0.9); the
            interval includes 0: not distinguishable at this budget."``, ``"... excludes 0: a clear
            win at this budget."``, ``"... a clear loss ..."``; with one paired seed, the difference
            and that there is no interval; with none, that the two share no seed.
        """
        if unit is None:
            unit, scale = metric_unit(metric)
        else:
            scale = 100.0 if unit == "points" else 1.0
        direction = metric_direction(metric)
        a, b = str(a_label), str(b_label)
        if self.n == 0:
            return f"{a} and {b} share no seed with a finite {metric}: nothing to compare."
        sign = direction or 1
        gain = sign * self.mean * scale
        lo, hi = sorted((sign * self.low * scale, sign * self.high * scale))
        if gain < 0:  # say the shortfall as a positive number with its own interval
            lo, hi = -hi, -lo
        verb = _verb(gain, direction)
        ref = self.std * scale if self.n > 1 and self.std > 0 else abs(gain)
        unit_text = f" {unit}" if unit else f" in {metric}"
        size = _number(abs(gain), ref)
        if self.n == 1:
            said = f"{a} and {b} are even" if gain == 0 else f"{a} {verb} {b} by {size}{unit_text}"
            return (
                f"{said} on 1 seed (seed {self.seeds[0]}); one seed gives no interval: run more seeds "
                "before calling it."
            )
        spread = _number(self.std * scale, ref)
        head = f"{a} {verb} {b} by {size} ± {spread}{unit_text} over {self.n} seeds"
        if gain == 0:
            head = f"{a} and {b} are even: {_number(0.0, ref)} ± {spread}{unit_text} over {self.n} seeds"
        interval = f"{_percent(self.confidence)} % interval {_number(lo, ref)} to {_number(hi, ref)}"
        return f"{head} ({interval}); {_conclusion(self.verdict(metric), direction)}"


def _verb(gain: float, direction: int) -> str:
    if direction == 0:
        return "is above" if gain > 0 else "is below"
    return "beats" if gain > 0 else "trails"


def _conclusion(verdict: str, direction: int) -> str:
    if verdict == "even":
        return "the interval includes 0: not distinguishable at this budget."
    if direction == 0:
        return "the interval excludes 0: a clear difference at this budget."
    return f"the interval excludes 0: a clear {verdict} at this budget."


def _percent(confidence: float) -> str:
    return f"{confidence * 100:.6g}"


def _number(x: float, ref: float) -> str:
    """``x`` with as many decimals as the size of ``ref`` asks (one at least; more while a nonzero
    ``x`` would read as zero), a true minus sign for negatives."""
    if not math.isfinite(x):
        return "nan"
    decimals = 1
    if math.isfinite(ref) and ref > 0:
        decimals = min(6, max(1, -math.floor(math.log10(ref))))
    text = f"{abs(x):.{decimals}f}"
    while x != 0 and float(text) == 0 and decimals < 6:
        decimals += 1
        text = f"{abs(x):.{decimals}f}"
    return (_MINUS if x < 0 and float(text) != 0 else "") + text


def _seed_values(values: Mapping[Hashable, Any], name: str) -> dict[Hashable, float]:
    if not isinstance(values, Mapping):
        raise ResultsError(f"{name}: expected a mapping of seed -> value, got {type(values).__name__}")
    out: dict[Hashable, float] = {}
    for seed, value in values.items():
        if isinstance(value, bool):
            raise ResultsError(f"{name}[{seed!r}]: expected a number, got a boolean")
        if value is None:
            out[seed] = float("nan")
            continue
        try:
            out[seed] = float(value)
        except (TypeError, ValueError):
            raise ResultsError(
                f"{name}[{seed!r}]: expected a number, got {type(value).__name__}"
            ) from None
    return out


def _sorted_seeds(seeds: Iterable[Hashable]) -> tuple[Hashable, ...]:
    items = list(seeds)
    try:
        return tuple(sorted(items))  # type: ignore[type-var]
    except TypeError:
        return tuple(sorted(items, key=repr))


def paired_difference(
    a: Mapping[Hashable, Any], b: Mapping[Hashable, Any], *, confidence: float = 0.95
) -> PairedDifference:
    """The per-seed difference ``a[seed] - b[seed]`` over the seeds both have, with its interval.

    Args:
        a, b: ``{seed: value}`` of two settings (e.g. DKD's and KD's test accuracy by seed).
        confidence: the interval's coverage, in (0, 1).

    Returns:
        :class:`PairedDifference`: mean and sample std of the differences, ``n`` paired seeds and
        the Student-t interval ``mean ± t.ppf((1 + confidence) / 2, n - 1) · std / √n``
        (``nan`` with a ``note`` for ``n < 2``). Seeds where either value is not finite are left out
        (``dropped``); seeds only one side has are listed (``only_a``, ``only_b``).

    Raises:
        ResultsError: ``a`` or ``b`` is not a mapping of numbers, or ``confidence`` is not in (0, 1).
    """
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ResultsError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    va, vb = _seed_values(a, "a"), _seed_values(b, "b")
    common = _sorted_seeds(set(va) & set(vb))
    dropped = tuple(s for s in common if not (math.isfinite(va[s]) and math.isfinite(vb[s])))
    seeds = tuple(s for s in common if s not in dropped)
    diffs = np.asarray([va[s] - vb[s] for s in seeds], dtype=np.float64)
    n = int(diffs.size)
    nan = float("nan")
    mean = float(diffs.mean()) if n else nan
    std = float(diffs.std(ddof=1)) if n > 1 else nan
    low = high = nan
    note = ""
    if n == 0:
        note = "no seed with a finite value on both sides: no difference"
    elif n == 1:
        note = "one paired seed: no interval (it needs two seeds or more)"
    else:
        half = float(_scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return PairedDifference(
        mean=mean,
        std=std,
        n=n,
        low=low,
        high=high,
        seeds=seeds,
        differences=tuple(float(d) for d in diffs),
        confidence=float(confidence),
        only_a=_sorted_seeds(set(va) - set(vb)),
        only_b=_sorted_seeds(set(vb) - set(va)),
        dropped=dropped,
        note=note,
    )
