"""``workbench jobs``: list, submit and stop background jobs, or run the scheduler loop.

Thin: every command calls :class:`workbench.jobs.JobQueue` and prints. Bad input exits with
code 2 and one line on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

jobs_app = typer.Typer(
    no_args_is_help=True,
    help="Background jobs: training queued in the run store, run by worker processes.",
)
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

_RunsOpt = typer.Option(None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)")
_WorkspaceOpt = typer.Option(
    None, "--workspace", "-w", help="the job's workspace (a named group of runs); the queue takes turns between these"
)
_MaxOpt = typer.Option(None, "--max-jobs", "-j", min=1, help="jobs running at once (default: by CPU cores)")


def _queue(
    root: Path | None, max_jobs: int | None = None, ray_address: str | None = None, warm: bool | None = None
) -> Any:
    from workbench.jobs import JobQueue

    return JobQueue(root, max_jobs=max_jobs, ray_address=ray_address, warm=warm)


@jobs_app.command("list")
@friendly
def jobs_list(
    runs: Path | None = _RunsOpt,
    workspace: str | None = _WorkspaceOpt,
    as_json: bool = typer.Option(False, "--json", help="print the jobs as JSON"),
) -> None:
    """List jobs: running, then queued (with positions), then finished, stopped and failed."""
    jobs = _queue(runs).list(workspace=workspace)
    if as_json:
        _out.print_json(json.dumps([j.to_dict() for j in jobs]))
        return
    if not jobs:
        _out.print("no jobs")
        return
    table = Table("id", "state", "#", "workspace", "name", "run", "pid", "started", "error")
    for j in jobs:
        table.add_row(
            j.id,
            j.state + (" (stop requested)" if j.stop_requested and j.state == "running" else ""),
            str(j.position) if j.position else "",
            j.workspace or "",
            j.name,
            j.run_id or "",
            str(j.pid) if j.pid and j.state == "running" else "",
            j.started or "",
            j.error or "",
        )
    _out.print(table)


@jobs_app.command("stop")
@friendly
def jobs_stop(
    job: str = typer.Argument(..., help="job id or a unique prefix"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Stop a job: a queued one at once, a running one at its next step (the run stays loadable)."""
    j = _queue(runs).stop(job)
    what = "stop requested" if j.state == "running" else j.state
    _out.print(f"job {j.id}: {what}")


@jobs_app.command("submit")
@friendly
def jobs_submit(
    config: Path = typer.Option(..., "--config", "-c", help="run config YAML"),
    overrides: list[str] = typer.Option([], "--set", "-s", help="override a field: key=value"),
    runs: Path | None = _RunsOpt,
    workspace: str | None = _WorkspaceOpt,
    label: str | None = typer.Option(None, "--label", help="a short name shown in listings"),
    start: bool = typer.Option(True, "--start/--no-start", help="start it now if a slot is free"),
    max_jobs: int | None = _MaxOpt,
) -> None:
    """Queue a training run from a config file; prints the job id."""
    from workbench.validate import load_config

    cfg = load_config(config, overrides)
    queue = _queue(runs, max_jobs)
    job = queue.submit(cfg, workspace=workspace, label=label)
    if start:
        queue.pump()
        job = queue.get(job.id)
    where = f"position {job.position}" if job.position else job.state
    _out.print(f"job {job.id}: {where}")


@jobs_app.command("worker")
@friendly
def jobs_worker(
    runs: Path | None = _RunsOpt,
    max_jobs: int | None = _MaxOpt,
    interval: float = typer.Option(2.0, "--interval", min=0.05, help="seconds between scheduler passes"),
    until_idle: bool = typer.Option(False, "--until-idle", help="exit once nothing is queued or running"),
    ray_address: str | None = typer.Option(
        None, "--ray", help="dispatch jobs as Ray tasks ('local' or a cluster address)"
    ),
    warm: bool = typer.Option(
        True,
        "--warm/--cold",
        help="--warm: keep one worker process per slot alive between jobs (imports and shipped teachers "
        "loaded once), so a job starts training at once; --cold: a new process for every job",
    ),
) -> None:
    """Run the scheduler in the foreground: start queued jobs as slots free up, reap dead workers.

    Ctrl-C ends the loop; jobs already running keep running in their own processes (warm workers
    leave once their job is final).
    """
    queue = _queue(runs, max_jobs, ray_address, warm)
    kind = "warm workers" if queue.warm else "a process per job"
    _out.print(
        f"scheduler on {queue.dir} (max {queue.max_jobs} at once, {queue.threads} thread(s) each, {kind})"
    )
    seen: dict[str, str] = {j.id: j.state for j in queue.list()}
    try:
        while True:
            queue.pump()
            jobs = queue.list()
            for j in jobs:
                if seen.get(j.id) != j.state:
                    extra = f" run {j.run_id}" if j.run_id and j.state != "queued" else ""
                    err = f": {j.error}" if j.error else ""
                    _out.print(f"job {j.id} ({j.name}): {j.state}{extra}{err}", markup=False, highlight=False)
                    seen[j.id] = j.state
            if until_idle and not any(j.state in ("queued", "running") for j in jobs):
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        _out.print("scheduler stopped; running jobs continue")
    finally:
        if queue.warm:
            queue.retire_workers()


@jobs_app.command("log")
@friendly
def jobs_log(
    job: str = typer.Argument(..., help="job id or a unique prefix"),
    runs: Path | None = _RunsOpt,
    tail: int = typer.Option(4000, "--tail", min=1, help="characters from the end"),
) -> None:
    """Print the end of a job's worker output (a failed job's traceback is here)."""
    text = _queue(runs).log(job, tail=tail)
    _out.print(text or "(no output)", markup=False, highlight=False, end="" if text else "\n")
