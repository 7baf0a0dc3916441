"""``workbench recipes``: the CIFAR-scale teacher-student pairs with the published schedules and
the published CIFAR-100 accuracies (:mod:`workbench.recipes`)."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

recipes_app = typer.Typer(
    no_args_is_help=True, help="CIFAR recipes: the field's teacher-student pairs and published accuracies."
)
_out = Console(width=None if sys.stdout.isatty() else 160)


@recipes_app.command("list")
@friendly
def recipes_list(as_json: bool = typer.Option(False, "--json", help="print the recipes as JSON")) -> None:
    """List the recipes: dataset, teacher, student, learning rate and the published KD / DKD rows."""
    from workbench.recipes import list_recipes

    recipes = list_recipes()
    if as_json:
        _out.print_json(json.dumps([r.to_dict() for r in recipes]))
        return
    table = Table("name", "dataset", "teacher", "student", "lr", "published KD", "published DKD", "note")
    for r in recipes:
        refs = r.references()
        kd = sorted({f"{x.top1:.2f}" for x in refs if x.method == "kd"})
        dkd = sorted({f"{x.top1:.2f}" for x in refs if x.method == "dkd"})
        table.add_row(
            r.name,
            r.dataset,
            r.teacher,
            r.student,
            f"{r.lr:g}",
            ", ".join(kd) or "-",
            ", ".join(dkd) or "-",
            r.note,
        )
    _out.print(table)
    _out.print(
        "schedule of every recipe: SGD momentum 0.9, weight decay 5e-4, batch 64, 240 epochs, lr x0.1 at "
        "150/180/210, random crop 32 (padding 4) + horizontal flip. `workbench recipes show NAME` for details.",
        markup=False,
        highlight=False,
    )


@recipes_app.command("show")
@friendly
def recipes_show(
    name: str = typer.Argument(..., help="recipe name (see `workbench recipes list`)"),
    as_json: bool = typer.Option(False, "--json", help="print the recipe, objectives and references as JSON"),
) -> None:
    """Show a recipe: its pair and schedule, each method's objective, the published accuracies with
    their sources, and the commands that train it."""
    from workbench.recipes import METHOD_OBJECTIVES, SOURCES, get_recipe

    recipe = get_recipe(name)
    refs = recipe.references()
    if as_json:
        data = {
            **recipe.to_dict(),
            "objectives": {
                k: {"ce_weight": o.ce_weight, "weight": o.weight, "params": dict(o.params), "where": o.where}
                for k, o in METHOD_OBJECTIVES.items()
            },
            "references": [r.to_dict() for r in refs],
        }
        _out.print_json(json.dumps(data))
        return
    say = lambda text: _out.print(text, markup=False, highlight=False)  # noqa: E731
    say(f"{recipe.name}: teacher {recipe.teacher} -> student {recipe.student} on {recipe.dataset}")
    if recipe.note:
        say(f"  {recipe.note}")
    say(
        f"  SGD lr {recipe.lr:g} (teacher and scratch student 0.05), momentum 0.9, weight decay 5e-4, batch 64, "
        "240 epochs, lr x0.1 at epochs 150, 180, 210; random crop 32 with 4-pixel padding, horizontal flip"
    )
    objectives = Table("method", "objective", "from")
    for key, o in METHOD_OBJECTIVES.items():
        params = dict(o.params)
        if key == "dkd":
            params["beta"] = recipe.dkd_beta
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        text = (
            "CE"
            if key == "none"
            else f"{o.ce_weight:g}*CE + {o.weight:g}*{key}" + (f" ({shown})" if shown else "")
        )
        objectives.add_row(key, text, o.where)
    _out.print(objectives)
    if refs:
        table = Table("model", "teacher", "method", "top-1 %", "source")
        for r in refs:
            table.add_row(r.model, r.teacher or "-", r.label, f"{r.top1:.2f}", SOURCES[r.source].citation)
        _out.print(table)
        for src in sorted({r.source for r in refs}):
            say(f"  {SOURCES[src].citation}: {SOURCES[src].url}")
    else:
        say("  no published accuracies for this pair and dataset")
    say("train it:")
    say(f"  workbench train teacher --recipe {recipe.name} --root DIR")
    say(f"  workbench train distill --recipe {recipe.name} --root DIR [--teacher run:ID] [--method kd]")
