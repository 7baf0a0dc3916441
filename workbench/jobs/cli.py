"""``workbench jobs``: list, submit, stop and remove background jobs, run the scheduler loop, and
the class's queue controls (pause, resume, a per-workspace cap, moving a job to the front or back).

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
from workbench.jobs.state import job_file_name

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
    as_json: bool = typer.Option(
        False, "--json", help="print the jobs, the damaged job files and the settings as JSON"
    ),
) -> None:
    """List jobs: running, then queued (with positions), then finished, stopped and failed; then the
    damaged job files (not with --workspace: a damaged file's workspace is unknown)."""
    queue = _queue(runs)
    jobs = queue.list(workspace=workspace)  # jobs whose worker died are marked failed first
    damaged = [] if workspace is not None else queue.damaged()
    settings = queue.settings()
    if as_json:
        payload = {
            "jobs": [j.to_dict() for j in jobs],
            "damaged": [d.to_dict() for d in damaged],
            "settings": settings.to_dict(),
        }
        _out.print_json(json.dumps(payload))
        return
    _warn_settings(settings)
    if settings.paused:
        _out.print("the queue is paused: nothing starts until `workbench jobs resume`", markup=False)
    if not jobs:
        _out.print("no jobs")
    else:
        _out.print(_jobs_table(jobs))
    for d in damaged:
        _out.print(
            f"damaged: {job_file_name(d.id)}: {d.reason} (remove it with `workbench jobs remove {d.id}`)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _jobs_table(jobs: list[Any]) -> Table:
    table = Table("id", "state", "#", "workspace", "name", "run", "pid", "started", "error")
    for column in table.columns[:2]:
        column.no_wrap = True  # an id and a state are read whole
    for j in jobs:
        table.add_row(
            j.id,
            j.state_text + (" (stop requested)" if j.stop_requested and j.state == "running" else ""),
            str(j.position) if j.position else "",
            j.workspace or "",
            j.name,
            j.run_id or "",
            str(j.pid) if j.pid and j.state == "running" else "",
            j.started or "",
            j.error or "",
        )
    return table


def _warn_settings(settings: Any) -> None:
    if settings.warning:
        _err.print(f"warning: {settings.warning}", markup=False, highlight=False)


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


@jobs_app.command("remove")
@friendly
def jobs_remove(
    job: str = typer.Argument(..., help="job id or a unique prefix (a damaged job file's id too)"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Forget a final job or a damaged job file (its files under .jobs; the run stays in the store)."""
    _out.print(f"job {_queue(runs).remove(job)}: removed")


@jobs_app.command("pause")
@friendly
def jobs_pause(runs: Path | None = _RunsOpt) -> None:
    """Pause the class's queue: nothing starts until `workbench jobs resume` (running jobs go on)."""
    _queue(runs).pause()
    _out.print("queue paused: nothing starts until `workbench jobs resume`; running jobs go on", markup=False)


@jobs_app.command("resume")
@friendly
def jobs_resume(runs: Path | None = _RunsOpt) -> None:
    """Let the queue start jobs again after `workbench jobs pause`."""
    _queue(runs).resume()
    _out.print("queue running: queued jobs start as slots free up")


@jobs_app.command("cap")
@friendly
def jobs_cap(
    cap: str = typer.Argument(..., help="the most jobs one workspace may have queued or running, or 'none'"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Set the per-workspace cap on queued and running jobs ('none': no cap)."""
    from workbench.jobs import JobError

    text = cap.strip().lower()
    if text == "none":
        value = None
    elif text.isdigit() and int(text) >= 1:
        value = int(text)
    else:
        raise JobError(f"cap: expected a whole number >= 1 or 'none', got {cap!r}")
    _out.print(_queue(runs).set_cap(value).line())


@jobs_app.command("move")
@friendly
def jobs_move(
    job: str = typer.Argument(..., help="a queued job's id or a unique prefix"),
    first: bool = typer.Option(
        ..., "--first/--last", help="--first: start it before every other queued job; --last: after them"
    ),
    runs: Path | None = _RunsOpt,
) -> None:
    """Move a queued job to the front or the back of the queue."""
    j = _queue(runs).move(job, "first" if first else "last")
    _out.print(f"job {j.id}: position {j.position}")


@jobs_app.command("settings")
@friendly
def jobs_settings(
    runs: Path | None = _RunsOpt,
    as_json: bool = typer.Option(False, "--json", help="print the settings as JSON"),
) -> None:
    """Print the queue's settings: the per-workspace cap and whether it is paused."""
    settings = _queue(runs).settings()
    if as_json:
        _out.print_json(json.dumps(settings.to_dict()))
        return
    _warn_settings(settings)
    _out.print(settings.line())


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
