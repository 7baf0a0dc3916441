"""``workbench data``: the built-in datasets and the store's own (list), adding one to the store (add),
a first look at one (preview), removing one (remove), and preparing a full built-in set (prepare)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

data_app = typer.Typer(
    no_args_is_help=True,
    help="Datasets: list the built-in and the store's, add your own, preview, remove, prepare a full set.",
)
_RunsOpt = typer.Option(
    None, "--runs", "-r", help="the run store's folder (default $WORKBENCH_RUNS or ./runs)"
)
_LoaderOpt = typer.Option(
    None, "--loader", "-l",
    help="the loader that reads the files: imagefolder, cifar10, cifar100, mnist, fashion-mnist "
    "(default: told from the files)",
)
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
def data_list(runs: Path | None = _RunsOpt) -> None:
    """List the built-in datasets and the store's own, with a column saying which."""
    from workbench.data import list_datasets
    from workbench.runs.datasets import list_store_datasets

    table = Table("name", "where", "shape", "classes", "masks", "needs --root", "description")
    for d in list_datasets():
        table.add_row(
            d.name,
            "built-in",
            "x".join(map(str, d.image_shape)) if d.shape_known else "from files",
            str(d.num_classes) if d.shape_known else "from files",
            "yes" if d.has_masks else "",
            "yes" if d.needs_root else "",
            d.description,
        )
    for e in list_store_datasets(runs):
        if e.damage is not None:
            table.add_row(e.name, "store", "-", "-", "", "", f"damaged: {e.damage}")
            continue
        table.add_row(
            e.name,
            "store",
            "x".join(map(str, e.image_shape)),
            str(e.num_classes),
            "",
            "",
            f"{e.loader}, {e.train_size} train / {e.test_size} test, from {e.source}, added {e.added}",
        )
    _out.print(table)


@data_app.command("add")
@friendly
def data_add(
    name: str = typer.Argument(..., help="the store's name for it: lower-case letters, digits, '-' and '_'"),
    source: str = typer.Argument(..., help="a folder, a .zip or tar archive, or the URL of a CIFAR archive"),
    loader: str | None = _LoaderOpt,
    option: list[str] = typer.Option(
        [], "--option", "-o", help="loader option key=value (e.g. image_size=32)"
    ),
    runs: Path | None = _RunsOpt,
) -> None:
    """Add a dataset to the store (a folder is registered where it is; an archive is unpacked into the
    store), loading it once to check it, then print what it holds."""
    from rich.progress import Progress

    from workbench.runs.datasets import add_dataset

    with Progress(console=_err, transient=True) as bar:
        task = bar.add_task(f"adding {name}", total=100)

        def progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message)

        entry = add_dataset(runs, name, source, loader=loader, options=_options(option), progress=progress)
    c, h, w = entry.image_shape
    _out.print(
        f"added {entry.name}: {entry.loader}, {entry.train_size} train / {entry.test_size} test, "
        f"shape {c}x{h}x{w}, {entry.num_classes} classes, from {entry.source}"
    )
    for note in entry.notes:
        _out.print(f"note: {note}")


@data_app.command("preview")
@friendly
def data_preview(
    name: str = typer.Argument(..., help="a built-in dataset that needs no --root, or one of the store's"),
    per_class: int = typer.Option(8, "--per-class", min=1, max=64, help="sample images drawn per class"),
    seed: int = typer.Option(0, "--seed", help="the seed of the samples drawn"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Print a dataset's counts per class and split, image shape, train mean/std and warnings."""
    from workbench.data import preview_dataset
    from workbench.runs.datasets import list_store_datasets, open_dataset

    stored = {e.name: e for e in list_store_datasets(runs)}
    with _err.status(f"loading {name} ..."):
        dataset = open_dataset(runs, name)
        preview = preview_dataset(dataset, per_class=per_class, seed=seed)
    c, h, w = preview.image_shape
    train, test = preview.counts["train"], preview.counts["test"]
    _out.print(
        f"{preview.name}: {c}x{h}x{w} images, {preview.num_classes} classes, "
        f"{int(train.sum())} train / {int(test.sum())} test"
    )
    stats = ", ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(preview.mean, preview.std, strict=True))
    _out.print(f"train mean ± std per channel: {stats}")
    table = Table("class", "train", "test")
    for k, cls in enumerate(preview.class_names):
        table.add_row(cls, str(int(train[k])), str(int(test[k])))
    _out.print(table)
    for note in stored[name].notes if name in stored else []:
        _out.print(f"note: {note}")
    for warning in preview.warnings:
        _out.print(f"warning: {warning}")
    if not preview.warnings:
        _out.print("no warnings")


@data_app.command("remove")
@friendly
def data_remove(
    name: str = typer.Argument(..., help="one of the store's datasets"),
    runs: Path | None = _RunsOpt,
) -> None:
    """Remove a dataset from the store (files unpacked into the store go with it; a folder added where
    it was is left as it is)."""
    from workbench.runs.datasets import remove_dataset

    entry = remove_dataset(runs, name)
    kept = "" if entry.in_store or entry.damage else f"; its files in {entry.root} were left as they are"
    _out.print(f"removed {entry.name}{kept}")


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
