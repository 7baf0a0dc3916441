"""``workbench teachers``: the teachers a config can name."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import fmt, friendly

teachers_app = typer.Typer(no_args_is_help=True, help="Shipped teachers.")
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)


@teachers_app.command("list")
@friendly
def teachers_list() -> None:
    """List the shipped teachers (use as `shipped:NAME` in a config)."""
    from workbench.runs.teachers import list_shipped_teachers

    table = Table("source", "model", "dataset", "test acc", "params")
    for c in list_shipped_teachers():
        table.add_row(
            f"shipped:{c['name']}",
            c["model"]["name"],
            c["dataset"],
            fmt(c.get("test_acc"), pct=True),
            f"{c.get('params', 0):,}",
        )
    _out.print(table)
