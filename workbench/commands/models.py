"""``workbench models`` and ``workbench methods``: the model zoo and the distillation methods."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

models_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
methods_app = typer.Typer(no_args_is_help=True, help="Distillation methods.")
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)


@models_app.command("list")
@friendly
def models_list(
    dataset: str = typer.Option(
        "mnist", "--dataset", "-d", help="input shape and classes to size the models for"
    ),
    source: str | None = typer.Option(
        None, "--source", help="only the models of this source: 'zoo', a plugin's name, or a module"
    ),
) -> None:
    """List the zoo and the models of your code and plugins (with where each came from), their
    parameter counts and FLOPs per sample for a dataset's input shape, then any broken plugin."""
    from workbench.data import list_datasets
    from workbench.errors import one_line
    from workbench.models import ModelError, broken_plugins, create_model, describe_models, model_info

    infos = {d.name: d for d in list_datasets()}
    if dataset not in infos:
        raise ValueError(f"--dataset: unknown name {dataset!r}; known: {', '.join(infos)}")
    if not infos[dataset].shape_known:
        raise ValueError(
            f"--dataset: {dataset!r} takes its image shape from your files; pick another to size the models"
        )
    shape = tuple(infos[dataset].image_shape)
    specs = describe_models()
    sources = list(dict.fromkeys(spec.source for spec in specs))
    if source is not None and source not in sources:
        raise ValueError(f"--source: no model comes from {source!r}; sources: {', '.join(sources)}")
    table = Table("name", "family", "source", "params", "MFLOPs", "description")
    for spec in specs:
        if source is not None and spec.source != source:
            continue
        try:
            model = create_model(
                spec.name, num_classes=infos[dataset].num_classes, in_channels=shape[0], image_size=shape[1]
            )
            info = model_info(model, shape)
        except ModelError as err:  # a model of your own that does not fit this dataset's shape
            table.add_row(
                spec.name, spec.family, spec.source, "-", "-", f"not for {dataset}: {one_line(err)}"
            )
            continue
        table.add_row(
            spec.name,
            spec.family,
            spec.source,
            f"{info.params:,}",
            f"{info.flops / 1e6:.2f}",
            spec.description,
        )
    _out.print(table)
    broken = broken_plugins()
    if broken:
        failed = Table("broken plugin", "error (its models are missing)")
        for name, error in broken:
            failed.add_row(name, error)
        _out.print(failed)


@methods_app.command("list")
@friendly
def methods_list() -> None:
    """List the distillation methods with a one-line description each."""
    from workbench.distill import describe_methods, method_schema

    table = Table("name", "hyperparameters", "description")
    for name, desc in describe_methods():
        props = method_schema(name).get("properties", {})
        hp = ", ".join(f"{k}={v.get('default')}" for k, v in props.items())
        table.add_row(name, hp, desc)
    _out.print(table)
