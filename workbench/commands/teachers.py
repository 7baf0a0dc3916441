"""``workbench teachers``: the teachers a config can name — shipped ones, your own added from a
checkpoint (``teacher:NAME``), teacher runs (``run:ID``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import fmt, friendly

teachers_app = typer.Typer(
    no_args_is_help=True,
    help="Teachers: shipped, your own from a safetensors checkpoint (add, list, remove), teacher runs.",
)
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)

_RunsOpt = typer.Option(
    None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)"
)


def _pairs(pairs: list[str], option: str) -> dict[str, Any]:
    """``key=value`` pairs (values read as YAML) as a mapping; a one-line error naming ``option``."""
    from workbench.config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, pairs)
    except ConfigError as e:
        raise ValueError(str(e).replace("--set", option)) from None


def _kwargs(text: str | None, pairs: list[str]) -> dict[str, Any]:
    """The model's keyword arguments from ``--kwargs JSON`` and ``-k key=value`` (the pairs win)."""
    out: dict[str, Any] = {}
    if text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"--kwargs: not valid JSON ({e.msg} at column {e.colno}); e.g. '{{\"hidden\": [64]}}'"
            ) from None
        if not isinstance(value, dict):
            raise ValueError(f"--kwargs: expected a JSON object, got {type(value).__name__}")
        out.update(value)
    out.update(_pairs(pairs, "--kwarg"))
    return out


@teachers_app.command("list")
@friendly
def teachers_list(runs: Path | None = _RunsOpt) -> None:
    """List the shipped teachers and the store's own (the source column goes in a config)."""
    from workbench.runs.teacher_store import list_store_teachers
    from workbench.runs.teachers import list_shipped_teachers

    table = Table("source", "model", "dataset", "test acc", "params", "added")
    for c in list_shipped_teachers():
        table.add_row(
            f"shipped:{c['name']}",
            c["model"]["name"],
            c["dataset"],
            fmt(c.get("test_acc"), pct=True),
            f"{c.get('params', 0):,}",
            "shipped",
        )
    for card in list_store_teachers(runs):
        table.add_row(
            card.source,
            card.model["name"],
            card.dataset,
            fmt(float(card.test_acc), pct=True),
            f"{card.params:,}",
            card.added,
        )
    _out.print(table)


@teachers_app.command("add")
@friendly
def teachers_add(
    name: str = typer.Argument(..., help="the teacher's name; a config names it as teacher:NAME"),
    weights: Path = typer.Argument(
        ..., help="the state dict as a .safetensors file (a pickle .pt is refused)"
    ),
    model: str = typer.Option(..., "--model", "-m", help="its architecture (see `workbench models list`)"),
    kwargs: str | None = typer.Option(
        None, "--kwargs", help="the model's keyword arguments as JSON, e.g. '{\"hidden\": [64]}'"
    ),
    kwarg: list[str] = typer.Option(
        [], "--kwarg", "-k", help="one model keyword argument key=value (repeatable)"
    ),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="the dataset it was trained on (see `workbench data list`)"
    ),
    root: Path | None = typer.Option(None, "--root", help="the dataset's folder, for a dataset with files"),
    option: list[str] = typer.Option([], "--option", "-o", help="dataset option key=value (repeatable)"),
    device: str = typer.Option("auto", "--device", help="where its test accuracy is measured"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Add a teacher from a safetensors checkpoint: checked against the model built for the dataset,
    its test accuracy measured, then stored as teacher:NAME."""
    from workbench.runs.teacher_store import add_teacher

    data: dict[str, Any] = {"dataset": dataset, "options": _pairs(option, "--option")}
    if root is not None:
        data["root"] = str(root)
    with _err.status(f"checking {weights.name} on {dataset} ..."):
        card = add_teacher(
            runs, name, weights, model=model, kwargs=_kwargs(kwargs, kwarg), dataset=data, device=device
        )
    _out.print(
        f"added {card.source}: {card.model['name']} on {card.dataset}, test accuracy "
        f"{fmt(float(card.test_acc), pct=True)} ({card.n_test} test images), {card.params:,} parameters",
        markup=False,
        highlight=False,
    )


@teachers_app.command("remove")
@friendly
def teachers_remove(
    name: str = typer.Argument(..., help="the store teacher's name (teacher:NAME)"),
    force: bool = typer.Option(False, "--force", help="remove it even while runs of the store name it"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Remove a teacher added from a checkpoint (refused while runs name it, unless --force)."""
    from workbench.runs.teacher_store import remove_teacher

    _out.print(f"removed teacher:{remove_teacher(runs, name, force=force)}", markup=False, highlight=False)
