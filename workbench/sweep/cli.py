"""``workbench experiments``: submit a grid as jobs, list experiments, show one's trials, stop one,
repeat a run over seeds.

Thin: every command calls :mod:`workbench.sweep.experiment` and prints. Bad input exits with
code 2 and one line on stderr (:func:`workbench.console.friendly`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

experiments_app = typer.Typer(
    no_args_is_help=True,
    help="Experiments: a grid of configs and seeds queued as jobs, one per trial; re-submitting trains "
    "only missing or failed trials.",
)
_out = Console(width=None if sys.stdout.isatty() else 160)

_RunsOpt = typer.Option(
    None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)"
)
_WorkspaceOpt = typer.Option(
    None, "--workspace", "-w", help="the experiment's workspace (a named group of runs)"
)
_MaxTrialsOpt = typer.Option(500, "--max-trials", min=1, help="refuse a grid of more trials than this")
_MaxHoursOpt = typer.Option(
    None, "--max-hours", min=0.0, help="refuse a grid estimated to take longer than this (hours)"
)
_MaxJobsOpt = typer.Option(
    None, "--max-jobs", "-j", min=1, help="jobs running at once (default: by CPU cores)"
)
_StartOpt = typer.Option(True, "--start/--no-start", help="start queued jobs now if slots are free")
_JsonOpt = typer.Option(False, "--json", help="print as JSON")


def _queue(runs: Path | None, max_jobs: int | None = None) -> Any:
    from workbench.jobs import JobQueue

    return JobQueue(runs, max_jobs=max_jobs)


def _submit(
    spec: Any,
    runs: Path | None,
    workspace: str | None,
    max_trials: int,
    max_hours: float | None,
    max_jobs: int | None,
    start: bool,
) -> None:
    from workbench.sweep import submit_experiment

    queue = _queue(runs, max_jobs)
    sub = submit_experiment(spec, queue, workspace=workspace, max_trials=max_trials, max_hours=max_hours)
    _out.print(sub.line(), markup=False, highlight=False)
    if start and sub.jobs:
        started = queue.pump()
        _out.print(
            f"started {len(started)} job(s); follow with `workbench experiments show {sub.name}`",
            markup=False,
            highlight=False,
        )


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a part that is not a whole number >= 0 is a one-line ValueError."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--seeds: {part!r} is not a whole number >= 0; give e.g. 0,1,2")
        seeds.append(int(part))
    return seeds


@experiments_app.command("submit")
@friendly
def experiments_submit(
    file: Path = typer.Argument(
        ..., help="sweep YAML: base config, grid of fields, seeds (see configs/sweep_*.yaml)"
    ),
    overrides: list[str] = typer.Option([], "--set", "-s", help="override a field of every trial: key=value"),
    runs: Path | None = _RunsOpt,
    workspace: str | None = _WorkspaceOpt,
    max_trials: int = _MaxTrialsOpt,
    max_hours: float | None = _MaxHoursOpt,
    max_jobs: int | None = _MaxJobsOpt,
    start: bool = _StartOpt,
) -> None:
    """Queue one job per trial of a grid not yet trained; prints the trials, how many were queued
    and the estimated time."""
    from workbench.sweep import load_sweep

    _submit(load_sweep(file, overrides), runs, workspace, max_trials, max_hours, max_jobs, start)


@experiments_app.command("repeat")
@friendly
def experiments_repeat(
    run: str = typer.Argument(..., help="run id (or a unique prefix) to repeat"),
    seeds: str = typer.Option(..., "--seeds", help="the seeds, comma-separated: 0,1,2"),
    name: str | None = typer.Option(None, "--name", help="the experiment's name (default repeat-<run id>)"),
    runs: Path | None = _RunsOpt,
    workspace: str | None = _WorkspaceOpt,
    max_trials: int = _MaxTrialsOpt,
    max_hours: float | None = _MaxHoursOpt,
    max_jobs: int | None = _MaxJobsOpt,
    start: bool = _StartOpt,
) -> None:
    """Repeat a run with several seeds: its config, one trial per seed, queued as an experiment."""
    from workbench.sweep import repeat_with_seeds

    spec = repeat_with_seeds(run, parse_seeds(seeds), store=runs, name=name)
    _submit(spec, runs, workspace, max_trials, max_hours, max_jobs, start)


@experiments_app.command("list")
@friendly
def experiments_list(
    runs: Path | None = _RunsOpt, workspace: str | None = _WorkspaceOpt, as_json: bool = _JsonOpt
) -> None:
    """List the experiments of the store, newest first, with their trials' states."""
    from workbench.sweep import TRIAL_STATES, list_experiments

    found = list_experiments(runs, workspace=workspace)
    if as_json:
        _out.print_json(json.dumps([{k: v for k, v in e.to_dict().items() if k != "spec"} for e in found]))
        return
    if not found:
        _out.print("no experiments")
        return
    table = Table("experiment", "workspace", "trials", *TRIAL_STATES, "created")
    for e in found:
        counts = e.counts
        table.add_row(
            e.name,
            e.workspace or "",
            str(len(e.trials)),
            *(str(counts[s] or "") for s in TRIAL_STATES),
            e.created or "",
        )
    _out.print(table)


@experiments_app.command("show")
@friendly
def experiments_show(
    name: str = typer.Argument(..., help="the experiment's name"),
    runs: Path | None = _RunsOpt,
    as_json: bool = _JsonOpt,
) -> None:
    """Show an experiment's trials: grid point, seed, state, run and job."""
    from workbench.sweep import experiment_status

    status = experiment_status(runs, name)
    if as_json:
        _out.print_json(json.dumps(status.to_dict()))
        return
    _out.print(f"experiment {status.name}: {status.summary()}", markup=False, highlight=False)
    table = Table("trial", "seed", "state", "run", "job", "error")
    for t in status.trials:
        table.add_row(t.group, str(t.seed), t.state, t.run_id or "", t.job_id or "", t.error or "")
    _out.print(table)


@experiments_app.command("tag")
@friendly
def experiments_tag(
    name: str = typer.Argument(..., help="the experiment's name"),
    tags: list[str] = typer.Argument(..., help="tags: letters, digits, '-', '_', '.', ':' (at most 40 characters)"),
    runs: Path | None = _RunsOpt,
    remove: bool = typer.Option(False, "--remove", help="remove these tags instead of adding them"),
) -> None:
    """Add tags to an experiment (or remove them with --remove); prints its tags."""
    from workbench.runs import add_tags, remove_tags
    from workbench.runs.annotations import experiment_target
    from workbench.sweep import experiment_path

    if not experiment_path(_store_root(runs), name).is_file():
        raise ValueError(f"experiment {name!r}: not in the store (see `workbench experiments list`)")
    notes = (remove_tags if remove else add_tags)(experiment_target(_store_root(runs), name), tags)
    _out.print(f"experiment {name}: tags {' '.join(notes.tags) or 'none'}", markup=False, highlight=False)


@experiments_app.command("note")
@friendly
def experiments_note(
    name: str = typer.Argument(..., help="the experiment's name"),
    text: str | None = typer.Argument(None, help="the note ('-' reads it from stdin); none: print the note"),
    runs: Path | None = _RunsOpt,
    clear: bool = typer.Option(False, "--clear", help="remove the experiment's note"),
) -> None:
    """Set an experiment's note (free text), clear it, or print it."""
    from workbench.runs import read_annotations, set_note
    from workbench.runs.annotations import experiment_target
    from workbench.sweep import experiment_path

    if not experiment_path(_store_root(runs), name).is_file():
        raise ValueError(f"experiment {name!r}: not in the store (see `workbench experiments list`)")
    if clear and text is not None:
        raise ValueError("experiments note: give a note or --clear, not both")
    target = experiment_target(_store_root(runs), name)
    if text is None and not clear:
        _out.print(read_annotations(target).note, markup=False, highlight=False)
        return
    written = set_note(target, "" if clear else (sys.stdin.read() if text == "-" else text))
    _out.print(f"experiment {name}: note of {len(written.note):,} characters", markup=False, highlight=False)


def _store_root(runs: Path | None) -> Path:
    from workbench.runs import RunStore

    return RunStore(runs).root


@experiments_app.command("stop")
@friendly
def experiments_stop(
    name: str = typer.Argument(..., help="the experiment's name"), runs: Path | None = _RunsOpt
) -> None:
    """Stop an experiment's queued and running jobs; finished runs are kept."""
    from workbench.sweep import stop_experiment

    stopped = stop_experiment(_queue(runs), name)
    queued = sum(1 for j in stopped if j.state == "stopped")
    asked = sum(1 for j in stopped if j.state == "running")
    _out.print(
        f"experiment {name}: {queued} queued job(s) stopped, {asked} running job(s) asked to stop",
        markup=False,
        highlight=False,
    )
