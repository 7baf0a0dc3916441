"""``workbench class``: the instructor's view of a class served from one run store
(:mod:`workbench.class_overview`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import fmt, friendly

class_app = typer.Typer(
    no_args_is_help=True,
    help="The class: one row per workspace (runs, jobs, last activity, best result, doctor finding).",
)
_out = Console(width=None if sys.stdout.isatty() else 200)
_RunsOpt = typer.Option(None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)")


@class_app.callback()
def class_group() -> None:
    """The instructor's view of the class served from one run store."""


@class_app.command("overview")
@friendly
def class_overview_command(
    runs: Path | None = _RunsOpt,
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
) -> None:
    """One row per workspace that has jobs: runs (damaged ones counted apart), queued / running / failed
    jobs, last activity, the best completed run and the doctor's top finding on the newest student,
    read from what the run recorded (`workbench doctor RUN` examines it in full)."""
    from workbench.class_overview import class_overview, overview_table
    from workbench.jobs import JobQueue
    from workbench.runs import RunStore

    store = RunStore(runs)
    if not store.root.is_dir():
        raise ValueError(f"--runs {store.root}: no such folder; give the run store the class trains into")
    rows = class_overview(store, JobQueue(store.root))
    if as_json:
        _out.print_json(json.dumps([row.to_dict() for row in rows]))
        return
    if not rows:
        _out.print(f"no jobs and no runs in {store.root}", markup=False, highlight=False)
        return
    table_rows = overview_table(rows)
    table = Table(*table_rows[0], title=f"class of {store.root}")
    for row in table_rows:
        table.add_row(
            *(
                f"{value:.2f}" if key == "test_acc (%)" and value is not None else fmt(value)
                for key, value in row.items()
            )
        )
    _out.print(table)


@class_app.command("release")
@friendly
def class_release_command(
    workspace: str = typer.Argument(..., help="the workspace whose claim to forget"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Forget the claim on a workspace (a student lost their link): its runs and jobs stay, and the next
    session that types the name claims it again, with a new key."""
    from workbench.runs import default_root
    from workbench.workspaces import ALL_WORKSPACES, check_workspace, release_workspace

    root = runs if runs is not None else default_root()
    name = check_workspace(workspace)
    if name in (None, ALL_WORKSPACES):
        raise ValueError(f"workspace {workspace!r}: give one workspace's name")
    if release_workspace(root, name):
        _out.print(f"workspace {name}: released; the next session that types its name claims it", markup=False)
    else:
        _out.print(f"workspace {name}: was not claimed", markup=False)
