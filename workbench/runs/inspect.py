"""Facts read from stored runs that more than one face shows.

:func:`kd_temperature` is the temperature a run distilled at: the agreement page's and the dark
knowledge panel's slider start there, and the loss landscape's ``kd`` objective is evaluated at it.
:func:`logged_metrics` is what a compare view offers: the epoch metrics some of the runs logged;
:func:`readable_runs` reads each chosen run on its own and leaves out a damaged one with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _config(run_or_config: Any) -> Any:
    """The :class:`workbench.config.RunConfig` of a :class:`~workbench.runs.Run`, a RunConfig or its
    mapping."""
    from workbench.config import RunConfig, validate_config

    if isinstance(run_or_config, RunConfig):
        return run_or_config
    if isinstance(run_or_config, Mapping):
        return validate_config(run_or_config)
    config = getattr(run_or_config, "config", None)
    if isinstance(config, RunConfig):
        return config
    raise TypeError(
        f"run_or_config: expected a Run, a RunConfig or a config mapping, got {type(run_or_config).__name__}"
    )


def kd_temperature(run_or_config: Any) -> float:
    """The softmax temperature a run distilled at, for the views that start there (the agreement
    page's and the dark-knowledge panel's slider, the loss landscape's ``kd`` objective).

    Args:
        run_or_config: a :class:`~workbench.runs.Run`, a :class:`~workbench.config.RunConfig` or a run
            config mapping.

    Returns:
        :func:`workbench.distill.distillation_temperature` of its config (the first weighted method's
        temperature), else the ``kd`` method's default temperature (a scratch student, ``fitnet``).

    Raises:
        TypeError: ``run_or_config`` is none of those. ConfigError / RunStoreError: the config cannot
            be read or validated (one line naming the field).
    """
    from workbench.distill import distillation_temperature, parse_params

    temperature = distillation_temperature(_config(run_or_config))
    return float(parse_params("kd", {}).temperature) if temperature is None else temperature


def logged_metrics(runs: Iterable[Any]) -> list[str]:
    """The per-epoch metrics at least one of ``runs`` logged, in the order views offer them: the
    engine's :data:`workbench.vocabulary.EPOCH_METRICS` first, then the runs' ``loss/<term>`` entries
    in the order they first appear. A run whose metrics cannot be read adds nothing.

    Args:
        runs: :class:`~workbench.runs.Run` objects, or their ``metrics`` mappings.

    Returns:
        Metric names (empty when no run logged an epoch).
    """
    from workbench.runs.steps import metric_names
    from workbench.runs.store import RunStoreError
    from workbench.vocabulary import EPOCH_METRICS

    rows: list[Any] = []
    for run in runs:
        try:
            metrics = run if isinstance(run, Mapping) else run.metrics
        except RunStoreError:
            continue
        rows.extend(e for e in metrics.get("epochs") or [] if isinstance(e, Mapping))
    return metric_names([dict(r) for r in rows], EPOCH_METRICS)


def readable_runs(runs: Iterable[Any]) -> tuple[list[Any], list[tuple[str, str]]]:
    """Read each of ``runs`` on its own, so one damaged run never stops a view of the others.

    A run is readable when its status, config and metrics read whole and have their shapes
    (:attr:`workbench.runs.Run.damage`: status.json, config.yaml, metrics.json with whole epoch
    numbers, model.json, the checkpoints folder). A compare view shows the readable ones and one
    line for each of the rest.

    Args:
        runs: :class:`~workbench.runs.Run` objects.

    Returns:
        ``(readable, left_out)``: the readable runs in their order, and ``(run id, reason)`` for each
        other one (``"damaged: metrics.json: not valid JSON (line 1, column 2)"``).
    """
    from workbench.errors import one_line

    readable: list[Any] = []
    left_out: list[tuple[str, str]] = []
    for run in runs:
        try:
            damage = run.damage
        except (OSError, ValueError, TypeError, KeyError, RecursionError, OverflowError) as err:
            damage = one_line(err, typed=True)  # a reader's bug: this run is left out, not the view
        if damage is None:
            readable.append(run)
        else:
            left_out.append((str(run.id), f"damaged: {damage}"))
    return readable, left_out


__all__ = ["kd_temperature", "logged_metrics", "readable_runs"]
