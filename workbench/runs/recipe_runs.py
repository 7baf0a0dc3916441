"""Recipes against the run store: a recipe's run config with its teacher found among the store's
teacher runs, and a stored run's result beside the published accuracies of its pair
(:mod:`workbench.recipes`). Every face (the CLI's ``--recipe``, ``runs show``, the app, the panels)
calls these."""

from __future__ import annotations

from typing import Any

from workbench.recipes import compare_with_references, get_recipe
from workbench.runs.datasets import get_store_dataset
from workbench.runs.session import as_store
from workbench.runs.store import Run, RunStore, RunStoreError


def recipe_teacher(name: str, teacher: str | None, store: RunStore | str | None) -> str:
    """The teacher source of recipe ``name``'s distillation: a weights file or ``teacher:NAME`` as given;
    ``run:ID`` checked to be the recipe's teacher model on its dataset; none given, the store's latest
    completed such teacher run.

    Raises:
        ValueError: a teacher run of another model or dataset, or no teacher run to take (one line
            saying how to train one).
    """
    recipe, runs = get_recipe(name), as_store(store)
    if teacher is not None and not teacher.startswith("run:"):
        return teacher
    if teacher is not None:
        found = runs.load(teacher.split(":", 1)[1])
        cfg = found.config
        if cfg.model.name != recipe.teacher or cfg.data.dataset != recipe.dataset:
            raise ValueError(
                f"teacher: run {found.id} trained {cfg.model.name} on {cfg.data.dataset}; "
                f"recipe {recipe.name} needs a {recipe.teacher} on {recipe.dataset}"
            )
        return f"run:{found.id}"
    done = [  # by loader: a teacher trained on a store dataset of the recipe's files counts too
        r for r in runs.list(kind="teacher", status="completed", model=recipe.teacher)
        if r.config.data.dataset == recipe.dataset
    ]
    if not done:
        raise ValueError(
            f"teacher: the store has no completed {recipe.teacher} teacher on {recipe.dataset}; train one "
            f"(`workbench train teacher --recipe {recipe.name} --root DIR`) or give run:ID or a weights file"
        )
    return f"run:{done[-1].id}"


def recipe_config(
    kind: str,
    name: str,
    *,
    store: RunStore | str | None = None,
    root: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    method: str = "kd",
    teacher: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The run config of recipe ``name`` for a run of ``kind`` (``teacher``: the recipe's teacher;
    ``student``: its student from labels alone; ``distill``: its student taught with ``method`` by
    :func:`recipe_teacher`), ``epochs`` long (the milestones scale), on the dataset's files: the
    folder ``root``, or ``dataset``, a dataset of the store holding them (its name is kept).

    Raises:
        ValueError: a store dataset read by another loader than the recipe's, or no teacher to take.
    """
    recipe = get_recipe(name)
    label = None
    if dataset is not None:
        entry = get_store_dataset(store, dataset)
        if entry.loader != recipe.dataset:
            raise ValueError(f"dataset: {dataset} holds {entry.loader} files; recipe {name} trains on {recipe.dataset}")
        root, label = str(entry.root), entry.name
    if kind == "teacher":
        cfg = recipe.teacher_config(root=root, epochs=epochs, seed=seed)
    elif kind == "student":
        cfg = recipe.config(root=root, epochs=epochs, method="none", seed=seed)
    else:
        source = recipe_teacher(name, teacher, store)
        cfg = recipe.config(root=root, epochs=epochs, method=method, teacher=source, seed=seed)
    if label is not None:
        cfg["data"]["name"] = label
    return cfg


def published_beside(run: Run, store: RunStore | str | None = None) -> list[dict[str, Any]]:
    """The published accuracies of ``run``'s pair, dataset and method (:data:`workbench.recipes.REFERENCES`)
    beside its best epoch's test accuracy (the authors' scripts report the best epoch), as rows of
    :func:`workbench.recipes.compare_with_references`; ``[]`` where nothing published matches. The
    teacher's model is read from the teacher run when the run names one."""
    try:
        cfg = run.config
        summary = run.metrics.get("summary", {})
    except RunStoreError:
        return []
    teacher_model = None
    if len(cfg.teachers) == 1 and cfg.teachers[0].source.startswith("run:"):
        try:
            tcfg = as_store(store).load(cfg.teachers[0].source.split(":", 1)[1]).config
        except RunStoreError:  # removed since: the config's own teachers[0].model decides
            tcfg = None
        if tcfg is not None:
            if tcfg.model.kwargs or tcfg.data.dataset != cfg.data.dataset:
                return []
            teacher_model = tcfg.model.name
    acc = summary.get("best_test_acc", summary.get("test_acc"))
    return compare_with_references(cfg, acc, teacher_model=teacher_model)


__all__ = ["published_beside", "recipe_config", "recipe_teacher"]
