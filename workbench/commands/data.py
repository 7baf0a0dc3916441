"""``workbench data``: the dataset registry (list) and preparing a full set (prepare)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

data_app = typer.Typer(no_args_is_help=True, help="Datasets: list the registry, prepare a full set.")
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)


def _options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as a dataset's options (one-line error naming ``--option``)."""
    from workbench.config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, pairs)
    except ConfigError as e:
        raise ValueError(str(e).replace("--set", "--option")) from None


@data_app.command("list")
@friendly
def data_list() -> None:
    """List the registered datasets."""
    from workbench.data import list_datasets

    table = Table("name", "shape", "classes", "masks", "needs --root", "description")
    for d in list_datasets():
        table.add_row(
            d.name,
            "x".join(map(str, d.image_shape)) if d.shape_known else "from files",
            str(d.num_classes) if d.shape_known else "from files",
            "yes" if d.has_masks else "",
            "yes" if d.needs_root else "",
            d.description,
        )
    _out.print(table)


@data_app.command("prepare")
@friendly
def data_prepare(
    name: str = typer.Argument(..., help="dataset name (see `workbench data list`)"),
    root: Path | None = typer.Option(None, "--root", help="folder holding (or receiving) the standard files"),
    download: bool = typer.Option(False, "--download", help="fetch the standard files and verify checksums"),
    option: list[str] = typer.Option([], "--option", "-o", help="dataset option key=value"),
) -> None:
    """Download (if asked) and check a dataset, then print its sizes."""
    from workbench.data import prepare_dataset

    with _err.status(f"preparing {name} ..."):
        ds = prepare_dataset(name, root=root, download=download, **_options(option))
    _out.print(
        f"{ds.name}: {len(ds.train)} train / {len(ds.test)} test, shape {tuple(ds.image_shape)}, {ds.num_classes} classes"
    )
