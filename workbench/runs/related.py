"""Which other runs and which metrics a view offers for a run or a set of runs.

* :func:`related_runs` — runs on the same data as a run (and, on request, the same architecture): the
  scratch student a CAM view adds, the other end of a weight interpolation, the doctor's scratch run.
* :func:`confounded_shapes_run` — the newest student trained on ``shapes`` with a background
  confounder and a teacher: what a "context reliance" preset opens.
* :func:`view_checkpoints` — the checkpoints of a run a view offers, in a picker's order.

Candidates are a :class:`~workbench.runs.RunStore` (every run, newest first) or the runs a face
already shows (a workspace's list), in the order the caller gives.
"""

from __future__ import annotations

from collections.abc import Iterable

from workbench.runs.store import Run, RunStore, RunStoreError


def _candidates(candidates: RunStore | Iterable[Run]) -> list[Run]:
    if isinstance(candidates, RunStore):
        return list(reversed(candidates.list()))
    return list(candidates)


def view_checkpoints(run: Run) -> list[str]:
    """The checkpoints of ``run`` a view offers, in the order a picker lists them: ``final``, ``best``,
    then the rest (the epochs); never ``resume`` (a training state, not a view)."""
    names = [n for n in run.checkpoints() if n != "resume"]
    return [n for n in ("final", "best") if n in names] + [n for n in names if n not in ("final", "best")]


def has_checkpoint(run: Run) -> bool:
    """Whether ``run`` has a checkpoint to view (:func:`view_checkpoints`); ``False`` when unreadable."""
    try:
        return bool(view_checkpoints(run))
    except (OSError, RunStoreError):
        return False


def related_runs(run: Run, candidates: RunStore | Iterable[Run], *, same_model: bool = False) -> list[Run]:
    """The candidates, other than ``run``, trained on ``run``'s dataset with the same dataset options
    (with ``same_model``, also the same model name and arguments) that have a checkpoint to view.

    Runs whose config cannot be read are left out. Raises :class:`RunStoreError` when ``run``'s own
    config cannot be read.
    """
    cfg = run.config
    out = []
    for other in _candidates(candidates):
        if other.id == run.id:
            continue
        try:
            ocfg = other.config
        except RunStoreError:
            continue
        if (ocfg.data.dataset, ocfg.data.options) != (cfg.data.dataset, cfg.data.options):
            continue
        if same_model and (ocfg.model.name, ocfg.model.kwargs) != (cfg.model.name, cfg.model.kwargs):
            continue
        if has_checkpoint(other):
            out.append(other)
    return out


def confounded_shapes_run(candidates: RunStore | Iterable[Run]) -> Run | None:
    """The first completed ``student`` or ``distill`` run among the candidates that trained on
    ``shapes`` with ``confounding > 0`` (the background gives the class away) from a teacher; ``None``
    when there is none."""
    for run in _candidates(candidates):
        info = run.status
        if info.get("status") != "completed" or info.get("kind") not in ("student", "distill"):
            continue
        try:
            cfg = run.config
            confounding = float(cfg.data.options.get("confounding", 0) or 0)
        except (RunStoreError, TypeError, ValueError):
            continue
        if cfg.data.dataset == "shapes" and confounding > 0 and cfg.teachers:
            return run
    return None


__all__ = ["confounded_shapes_run", "has_checkpoint", "related_runs", "view_checkpoints"]
