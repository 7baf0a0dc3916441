"""One examination of a student, as the evidence collectors see it.

* :class:`DoctorOptions` — how to examine (layer pairs, temperature, display names, device, batch
  size, how many images the CAMs and the Hessian take, seed), checked by :func:`check_options`.
* :class:`Exam` — the models, the checked :class:`~workbench.analysis.doctor.inputs.DoctorInputs`
  and options, the run's records (config, history, failure) and what the collectors found so far.
* :class:`Collected` — what one collector found: named numbers, analysis results, the reasons
  some evidence is missing, and values later collectors read (``memo``).
* :class:`Collector` — a registered collector: a function ``(exam, steps) -> Collected`` and the
  progress steps it reports on; :class:`Steps` maps each step to its share of one progress bar.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import check_positive_int
from workbench.analysis.doctor.findings import DoctorError
from workbench.analysis.doctor.inputs import DoctorInputs
from workbench.analysis.doctor.recorded import config_temperature
from workbench.runtime import CancelToken, ProgressFn, Tracker

__all__ = [
    "OPTION_FIELDS",
    "Collected",
    "Collector",
    "DoctorOptions",
    "Exam",
    "LayerPairs",
    "Steps",
    "check_options",
    "resolve_temperature",
]

LayerPairs = Sequence[tuple[str, str]] | Mapping[str, str]

#: progress units per analysis step, so each analysis's own progress shows within its share of the bar
_UNITS = 100


@dataclass(frozen=True)
class DoctorOptions:
    """How to examine a student.

    Attributes:
        layers: the CKA layer pairs, ``(teacher path, student path)`` pairs or a mapping; ``None``:
            the pairs the run's config trains, else the stages paired by depth.
        temperature: the distillation temperature ``T`` (``None``: the config's).
        names: display names of the teacher and the student.
        device: where the analyses run (``None``: where the models are).
        batch_size: images per forward pass.
        cam_samples, cam_method: how many images, and which method, the class activation maps use.
        hessian_samples, hessian_iters: images and power iterations of the Hessian eigenvalue.
        seed: seed of the Hessian start vector and the landscape direction.
    """

    layers: LayerPairs | None = None
    temperature: float | None = None
    names: tuple[str, str] = ("teacher", "student")
    device: str | torch.device | None = None
    batch_size: int = 256
    cam_samples: int = 128
    cam_method: str = "gradcam"
    hessian_samples: int = 256
    hessian_iters: int = 20
    seed: int = 0


#: the names of :class:`DoctorOptions`' fields
OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DoctorOptions))


def _layer_pairs(layers: LayerPairs) -> list[tuple[str, str]]:
    """Explicit ``layers=``: ``(teacher path, student path)`` pairs or ``{teacher path: student path}``."""
    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    if not items:
        raise DoctorError("layers: expected at least one (teacher path, student path) pair, got none")
    out = []
    for i, pair in enumerate(items):
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(p, str) and p for p in pair)
        ):
            raise DoctorError(f"layers[{i}]: expected a (teacher path, student path) pair, got {pair!r}")
        out.append((pair[0], pair[1]))
    return out


def check_options(options: DoctorOptions) -> DoctorOptions:
    """``options`` checked: whole numbers >= 1 for the sizes, two display names, the layer pairs
    as a list of ``(teacher path, student path)``.

    Raises:
        AnalysisError: a size is not a whole number >= 1. DoctorError: the names or layer pairs.
    """
    sizes = {
        name: check_positive_int(getattr(options, name), name)
        for name in ("cam_samples", "hessian_samples", "hessian_iters", "batch_size")
    }
    names = options.names
    if len(names) != 2 or not all(isinstance(x, str) for x in names):
        raise DoctorError(f"names: expected two display names, got {names!r}")
    layers = None if options.layers is None else _layer_pairs(options.layers)
    return dataclasses.replace(options, names=(str(names[0]), str(names[1])), layers=layers, **sizes)


def resolve_temperature(temperature: Any, config: Any) -> float | None:
    """The temperature to examine at: ``temperature`` when given, else the config's
    (:func:`~workbench.analysis.doctor.recorded.config_temperature`); a positive float or ``None``."""
    temp = config_temperature(config) if temperature is None else temperature
    if temp is None:
        return None
    try:
        temp = float(temp)
    except (TypeError, ValueError):
        raise DoctorError(f"temperature: expected a positive number, got {temp!r}") from None
    if not (math.isfinite(temp) and temp > 0):
        raise DoctorError(f"temperature: expected a positive number, got {temp!r}")
    return temp


@dataclass
class Collected:
    """What one collector found: ``evidence`` (named numbers, merged into the report's evidence in
    collector order), ``results`` (analysis results the views draw, by key), ``why`` (evidence
    name -> why it is missing) and ``memo`` (values later collectors and the report read, e.g. the
    models' logits and the layer pairs compared)."""

    evidence: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass
class Exam:
    """One examination: what goes in, and what the collectors found so far.

    ``teacher``, ``student`` (``None`` for a run that failed before saving one), ``scratch``: the
    networks; ``inputs``, ``options``: checked; ``temperature``: resolved from the options and the
    config; ``config``, ``history``, ``failure``, ``given``: the run's records and the evidence the
    caller knows; ``cancel``: the cancel token; ``evidence``, ``results``, ``why``, ``memo``: the
    collectors' findings merged so far (:meth:`take`).
    """

    teacher: nn.Module
    student: nn.Module | None
    scratch: nn.Module | None
    inputs: DoctorInputs
    options: DoctorOptions
    temperature: float | None
    config: Any = None
    history: Any = None
    failure: Mapping[str, Any] | None = None
    given: Mapping[str, Any] | None = None
    cancel: CancelToken | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """The number of test images."""
        return int(self.inputs.images.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one image."""
        return tuple(int(d) for d in self.inputs.images.shape[1:])

    @property
    def labels(self) -> np.ndarray:
        """The test labels as a numpy array."""
        return self.inputs.labels.cpu().numpy()

    @property
    def common(self) -> dict[str, Any]:
        """The keywords every analysis takes: ``device``, ``batch_size``, ``cancel``."""
        return {"device": self.options.device, "batch_size": self.options.batch_size, "cancel": self.cancel}

    def take(self, found: Collected) -> None:
        """Merge what a collector found (later values replace earlier ones under the same name)."""
        self.evidence.update(found.evidence)
        self.results.update(found.results)
        self.why.update(found.why)
        self.memo.update(found.memo)


class Steps:
    """One monotone progress bar over the analysis steps of an examination: each step a share of
    ``_UNITS``, its analysis's own progress mapped into it (:meth:`part`); :meth:`done` reports a
    step's end and honours the cancel token."""

    def __init__(
        self,
        names: Sequence[str],
        progress: ProgressFn | Callable[[int, int, str], None] | None,
        cancel: CancelToken | None,
    ) -> None:
        self.names = list(names)
        self.tracker = Tracker(progress, cancel, total=_UNITS * len(self.names), label="doctor")

    def start(self) -> None:
        """Report the start (and check the cancel token)."""
        self.tracker.start("doctor")

    def part(self, step: str, label: str) -> Callable[[int, int, str], None]:
        """A ``progress(done, total, message)`` for an analysis, mapped into ``step``'s share."""
        i = self.names.index(step) * _UNITS
        return self.tracker.part(i, i + _UNITS, label)

    def done(self, step: str, label: str) -> None:
        """Report ``step`` finished, then stop here when the cancel token is set."""
        self.tracker.report((self.names.index(step) + 1) * _UNITS, label)
        self.tracker.check()

    def finish(self) -> None:
        """Report the whole bar done."""
        self.tracker.report(self.tracker.total, "doctor")


def _no_steps(exam: Exam) -> list[str]:
    return []


@dataclass(frozen=True)
class Collector:
    """A registered evidence collector: ``collect(exam, steps)`` returns what it found
    (:class:`Collected`); ``steps(exam)`` names the progress steps it reports on for this exam
    (each a share of the bar; none for a collector that only reads numbers)."""

    collect: Callable[[Exam, Steps], Collected]
    steps: Callable[[Exam], list[str]] = _no_steps
