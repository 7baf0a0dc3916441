"""The New-run form as data: what the app's New-run form and the ``TrainPanel`` widget collect, and the
run config it stands for, both ways.

A face draws its own controls (Streamlit widgets bound to the URL, ipywidgets), fills a
:class:`RunForm` from them and calls :func:`config_from_form`; a link or a panel prefilled from a run
(the doctor's suggested experiment, "repeat this run") goes the other way with :func:`form_from_config`.
The method entries' parameters are validated by each method's schema
(:func:`workbench.distill.parse_params`); the whole config by :func:`workbench.validate.validate_run_config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.config import RunConfig
from workbench.distill import method_schema
from workbench.distill.forms import schema_fields

#: how the New-run form (the app's Home) spells "no teacher" in its URL
NO_TEACHER = "none (train from scratch)"


@dataclass
class RunForm:
    """The choices of a New-run form.

    ``dataset``: a registered dataset name; ``teacher``: a teacher source (``shipped:NAME``,
    ``teacher:NAME``, ``run:ID`` or a weights file; a face offers
    :func:`workbench.runs.teacher_store.teacher_choices`) or ``None`` for a student trained from
    labels alone; ``student``: a model of the zoo; ``methods``: ``[{"name", "weight", "params"}]``
    (``[]`` or ``none`` alone: cross-entropy only); ``ce_weight``: the weight of the cross-entropy
    term; ``teacher_precision``: ``float32``, ``bfloat16`` or ``auto``; ``epochs``, ``seed``; ``name``: optional run name;
    ``max_steps``: stop after this many steps (0: no limit).
    """

    dataset: str = "mnist"
    teacher: str | None = "shipped:mnist"
    student: str = "cnn_small"
    methods: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "kd", "weight": 1.0, "params": {}}])
    ce_weight: float = 1.0
    teacher_precision: str = "float32"
    epochs: int = 2
    seed: int = 0
    name: str | None = None
    max_steps: int = 0

    @property
    def method_names(self) -> list[str]:
        """The methods' names, ``["none"]`` when there is none."""
        return [m["name"] for m in self.methods] or ["none"]


def data_section(dataset: str, store: Any = None) -> dict[str, Any]:
    """The ``data`` section of a config on ``dataset``: ``{"dataset": name}`` for a built-in dataset;
    a dataset of the run store ``store`` stands for its loader, name, root and options
    (:meth:`workbench.runs.datasets.DatasetEntry.data_section`).

    Raises:
        DataError: not built in and not a dataset of the store (one line naming both lists).
    """
    from workbench.data import list_datasets

    if dataset in {d.name for d in list_datasets()}:
        return {"dataset": dataset}
    from workbench.runs.datasets import get_store_dataset

    return get_store_dataset(store, dataset).data_section()


def form_mapping(form: RunForm, *, store: Any = None) -> dict[str, Any]:
    """The run config a form stands for, as a mapping not yet validated (a face may merge further
    fields into it before :func:`workbench.validate.validate_run_config`). A ``dataset`` that is not
    built in is looked up among the datasets of ``store`` (a RunStore or its folder; default the
    default store).

    The run's kind follows from its methods (:meth:`RunConfig.infer_kind`); a student trained from
    labels alone keeps its teacher (when one is chosen) as a reference for agreement and for the
    analyses, and uses ``ce_weight`` 1.
    """
    methods = [
        {"name": m["name"], "weight": float(m.get("weight", 1.0)), "params": dict(m.get("params") or {})}
        for m in form.methods
    ] or [{"name": "none", "weight": 1.0, "params": {}}]
    kind = RunConfig.infer_kind(methods)
    train: dict[str, Any] = {"epochs": int(form.epochs)}
    if int(form.max_steps) > 0:
        train["max_steps"] = int(form.max_steps)
    data: dict[str, Any] = {
        "kind": kind,
        "name": (form.name or "").strip() or None,
        "seed": int(form.seed),
        "data": data_section(form.dataset, store),
        "model": {"name": form.student},
        "distill": {
            "methods": methods,
            "ce_weight": 1.0 if kind == "student" else float(form.ce_weight),
            "teacher_precision": form.teacher_precision,
        },
        "train": train,
    }
    if form.teacher:
        data["teachers"] = [{"source": form.teacher}]
    return data


def config_from_form(form: RunForm, *, store: Any = None) -> RunConfig:
    """The validated run config a form stands for (:func:`form_mapping`, then
    :func:`workbench.validate.validate_run_config`).

    Raises:
        ConfigError: one line naming the field that is wrong (an unknown dataset, student or method,
            a parameter out of its range, ...).
    """
    from workbench.validate import validate_run_config

    return validate_run_config(form_mapping(form, store=store))


def form_from_config(config: RunConfig | Mapping[str, Any]) -> RunForm:
    """The form that stands for ``config`` (a RunConfig or its mapping): what a prefilled New-run form
    shows for a run to repeat or a suggested experiment. Only the first teacher is a form choice."""
    data = config.model_dump(mode="json") if isinstance(config, RunConfig) else dict(config)
    distill = data.get("distill") or {}
    methods = [
        {"name": m["name"], "weight": float(m.get("weight", 1.0)), "params": dict(m.get("params") or {})}
        for m in (distill.get("methods") or [])
        if m.get("name") != "none"
    ]
    teachers = data.get("teachers") or []
    train = data.get("train") or {}
    return RunForm(
        dataset=str((data.get("data") or {}).get("name") or (data.get("data") or {}).get("dataset", "mnist")),
        teacher=str(teachers[0]["source"]) if teachers else None,
        student=str((data.get("model") or {}).get("name", "cnn_small")),
        methods=methods,
        ce_weight=float(distill.get("ce_weight", 1.0)),
        teacher_precision=str(distill.get("teacher_precision", "float32")),
        epochs=int(train.get("epochs", 2)),
        seed=int(data.get("seed", 0)),
        name=(str(data["name"]) if data.get("name") else None),
        max_steps=int(train.get("max_steps") or 0),
    )


def _param_text(kind: str, value: Any) -> str:
    if kind == "list" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if kind == "boolean":
        return "1" if value else "0"
    return json.dumps(value) if kind == "json" else str(value)


def new_run_params(config: RunConfig | Mapping[str, Any]) -> dict[str, str]:
    """The Home page's URL parameters that open its New-run form prefilled with ``config`` (a RunConfig
    or its mapping, read by :func:`workbench.run_form.form_from_config`): ``dataset``, ``teacher``,
    ``student``, ``methods``, ``w.<method>``, ``p.<method>.<name>``, ``ce``, ``tprec`` (with a
    teacher), ``epochs``, ``seed``, ``name`` and ``max_steps`` (when the config has a step limit; the
    Experiments page reads it)."""
    form = form_from_config(config)
    out = {
        "dataset": form.dataset,
        "student": form.student,
        "epochs": str(form.epochs),
        "seed": str(form.seed),
        "teacher": form.teacher or NO_TEACHER,
        "methods": ",".join(form.method_names),
        "ce": repr(form.ce_weight),
    }
    if form.name:
        out["name"] = form.name[:40]
    if form.max_steps:
        out["max_steps"] = str(form.max_steps)
    if form.teacher:
        out["tprec"] = form.teacher_precision
    for m in form.methods:
        out[f"w.{m['name']}"] = repr(float(m["weight"]))
        kinds = {f.name: f.kind for f in schema_fields(method_schema(m["name"]))}
        for key, value in m["params"].items():
            if value is not None:
                out[f"p.{m['name']}.{key}"] = _param_text(kinds.get(key, "json"), value)
    return out


__all__ = [
    "NO_TEACHER",
    "RunForm",
    "config_from_form",
    "data_section",
    "form_from_config",
    "form_mapping",
    "new_run_params",
]
