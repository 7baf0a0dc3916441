"""What a grid builder needs, for every face: the config fields a grid may vary, values and seeds
typed as text, the experiment of a base form, its size in one line, and the rows of its trials.

The app's Experiments page and the ``ExperimentPanel`` read a person's typing through these
functions, so the same text means the same grid in both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from workbench.config import ConfigError, RunConfig, safe_yaml_load
from workbench.distill import method_schema
from workbench.experiments.groups import BOOKKEEPING
from workbench.run_form import RunForm, form_mapping
from workbench.sweep.experiment import MAX_TRIALS, ExperimentStatus
from workbench.sweep.spec import SweepError, SweepSpec, check_name, trial_count

#: config fields a grid never varies: identity, links, the teachers list (its entries are offered),
#: the methods list (offered as one expression and by entry), and how a run is recorded
_NOT_GRID = {"kind", "name", "seed", "links", "teachers", "distill.methods", "train.device", *BOOKKEEPING}
#: the most seeds a count may ask for
MAX_SEEDS = 100


def max_hours() -> float:
    """The longest estimated wall time an experiment may have: ``$WORKBENCH_EXPERIMENT_HOURS`` (24)."""
    try:
        hours = float(os.environ.get("WORKBENCH_EXPERIMENT_HOURS", "24"))
    except ValueError:
        hours = 24.0
    return hours if hours > 0 else 24.0


def _leaves(model: type[BaseModel], prefix: str) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += _leaves(kind, f"{path}.")
        elif path not in _NOT_GRID:
            out.append(path)
    return out


def grid_fields(form: RunForm) -> list[str]:
    """Every config field a grid over ``form``'s config may vary, as dotted paths: the methods (an
    expression, ``0.9*kd + dist``), each chosen method's weight and parameters
    (``distill.methods[0].params.temperature``), the teacher, then every other field of the run config
    schema (``optim.lr``, ``model.kwargs``, ``train.epochs``, ...)."""
    fields = ["distill.methods"]
    for i, method in enumerate(form.methods):
        fields.append(f"distill.methods[{i}].weight")
        props = method_schema(method["name"]).get("properties", {})
        fields += [f"distill.methods[{i}].params.{p}" for p in props]
    if form.teacher:
        fields.append("teachers[0].source")
    return fields + [f for f in _leaves(RunConfig, "") if f not in fields]


def parse_values(field: str, text: str) -> list[Any]:
    """The comma-separated values typed for ``field``, each read as a YAML scalar (a flow list).

    Raises:
        SweepError: no value, or text that is not YAML (one line naming the field).
    """
    try:
        values = safe_yaml_load(f"[{text}]", f"grid field {field!r}")
    except ConfigError as err:
        raise SweepError(f"{err}; separate values with commas, e.g. 0.05, 0.1") from None
    if not isinstance(values, list) or not values:
        raise SweepError(f"grid field {field!r}: give at least one value, e.g. 0.05, 0.1")
    return values


def parse_seeds(text: str) -> list[int]:
    """Seeds from a count (``3`` -> 0, 1, 2) or a comma-separated list (``0, 4, 7``).

    Raises:
        SweepError: not whole numbers >= 0, a repeated seed, or a count above :data:`MAX_SEEDS`.
    """
    raw = text.strip()
    try:
        values = safe_yaml_load(f"[{raw}]", "seeds") if raw else []
    except ConfigError:
        values = None
    if not isinstance(values, list) or not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                          for v in values):
        raise SweepError(f"seeds: {raw[:40]!r} is not a count (3) or a list of whole numbers (0, 4, 7)")
    if len(values) == 1 and "," not in raw:
        if not 1 <= values[0] <= MAX_SEEDS:
            raise SweepError(f"seeds: a count from 1 to {MAX_SEEDS}, got {values[0]}")
        return list(range(values[0]))
    if len(set(values)) != len(values):
        raise SweepError(f"seeds: {next(v for v in values if values.count(v) > 1)} appears more than once")
    return values


def experiment_spec(
    name: str, form: RunForm, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int], *, store: Any = None
) -> SweepSpec:
    """The experiment of a base ``form``, a ``grid`` (dotted field -> values) and ``seeds`` (a dataset
    of the run store ``store`` stands for its files, :func:`workbench.run_form.form_mapping`).

    Raises:
        SweepError: a name that is not a plain slug (one line).
    """
    check_name(name, "experiment name")
    config = form_mapping(form, store=store)
    for key in ("name", "seed"):
        config.pop(key, None)
    return SweepSpec(name=name, config=config, grid={k: list(v) for k, v in grid.items()}, seeds=list(seeds))


def size_line(spec: SweepSpec) -> str:
    """``"8 runs: 2 optim.lr × 2 data.batch_size × 2 seeds"``."""
    sizes = [f"{len(v)} {k}" for k, v in spec.grid.items()] + [f"{len(spec.seeds)} seeds"]
    count = trial_count(spec)
    return f"{count} run{'s' * (count != 1)}: {' × '.join(sizes)}"


def check_size(spec: SweepSpec) -> None:
    """Refuse a grid above :data:`workbench.sweep.MAX_TRIALS` runs, in one line with the count.

    Raises:
        SweepError: the grid is too large.
    """
    count = trial_count(spec)
    if count > MAX_TRIALS:
        raise SweepError(
            f"experiment {spec.name}: {size_line(spec)} is above the limit of {MAX_TRIALS}; narrow the grid"
        )


def trial_rows(status: ExperimentStatus) -> list[dict[str, Any]]:
    """One table row per trial: its grid point, seed, state, run and error."""
    return [
        {
            "group": t.group,
            "seed": t.seed,
            "state": t.state,
            "run": t.run_id,
            "error": t.error,
            "params": json.dumps(t.params, sort_keys=True, default=str),
        }
        for t in status.trials
    ]



__all__ = [
    "MAX_SEEDS",
    "check_size",
    "experiment_spec",
    "grid_fields",
    "max_hours",
    "parse_seeds",
    "parse_values",
    "size_line",
    "trial_rows",
]
