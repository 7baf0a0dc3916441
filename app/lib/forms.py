"""Forms generated from parameter schemas, the New-run form, and the New-run form's link format.

:func:`schema_form` draws one URL-bound control per field of a JSON parameter schema (read by
:func:`workbench.distill.forms.schema_fields`; free text read by
:func:`workbench.distill.forms.parse_field_text`, as the widgets read it): a distillation method's form
(:func:`method_form`) and a CAM method's. :func:`run_form` draws the New-run form (Home, and the base
config of an experiment); its values become a :class:`workbench.run_form.RunForm` and a config through
:func:`workbench.run_form.config_from_form`; :func:`workbench.run_form.new_run_params` is the other way: the URL that
opens the form prefilled with a config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app.lib.bindings import bound_checkbox, bound_multiselect, bound_number, bound_selectbox, bound_text
from app.lib.state import AppInputError, get_store, list_runs
from workbench.config import TEACHER_PRECISIONS
from workbench.distill import get_method_class, list_methods, method_schema, parse_params
from workbench.distill.base import MethodError
from workbench.distill.forms import parse_field_text, schema_fields, text_hint
from workbench.models import list_models
from workbench.run_form import NO_TEACHER, RunForm
from workbench.runs.datasets import dataset_choices
from workbench.runs.teacher_store import teacher_choices

#: the New-run form's teacher choices besides a teacher source: queue a teacher run first, or none
TRAIN_FIRST = "train one first"


def schema_form(
    schema: Mapping[str, Any], prefix: str, *, name: str, container: Any = None
) -> dict[str, Any]:
    """One control per property of a JSON parameter schema, bound to the URL parameters
    ``<prefix>.<field>``; returns the values given (a blank free-text field keeps the default).

    Numbers and integers with a default become number inputs, booleans checkboxes, enums select boxes;
    anything else (optional numbers, text, lists, structured values) a text field.

    Raises:
        AppInputError: free text that cannot be read; one line naming ``name`` and the field.
    """
    where = container if container is not None else st
    out: dict[str, Any] = {}
    for f in schema_fields(dict(schema)):
        param = f"{prefix}.{f.name}"
        bounds = (
            ""
            if f.minimum is None and f.maximum is None
            else (f" [{'' if f.minimum is None else f.minimum} … {'' if f.maximum is None else f.maximum}]")
        )
        tip = f"{f.help}{bounds}" or None
        if f.kind in ("number", "integer") and not f.optional and f.default is not None:
            default = int(f.default) if f.kind == "integer" else float(f.default)
            out[f.name] = bound_number(
                f.name,
                param,
                default,
                min_value=f.minimum,
                max_value=f.maximum,
                integer=f.kind == "integer",
                help=tip,
                container=where,
            )
        elif f.kind == "boolean":
            out[f.name] = bound_checkbox(f.name, param, bool(f.default), help=tip, container=where)
        elif f.kind == "choice":
            out[f.name] = bound_selectbox(
                f.name, param, list(f.choices), default=f.default, help=tip, container=where
            )
        else:
            shown = "default" if f.default is None else json.dumps(f.default)
            raw = bound_text(
                f"{f.name} ({text_hint(f)}; blank = {shown})", param, "", help=tip, container=where
            )
            try:
                given, value = parse_field_text(f, raw)
            except ValueError as err:
                raise AppInputError(f"method {name!r}: {err}") from None
            if given:
                out[f.name] = value
    return out


def method_form(method: str, *, weight_default: float = 1.0, container: Any = None) -> dict[str, Any]:
    """The form of one distillation method: its weight (URL ``w.<method>``) and every hyperparameter
    of its schema (URL ``p.<method>.<name>``).

    Returns:
        ``{"name", "weight", "params"}``, the parameters validated by the method's schema.

    Raises:
        AppInputError: a value is not accepted (one line naming the method and the field).
    """
    where = container if container is not None else st
    cls = get_method_class(method)
    if cls.description:
        where.caption(cls.description)
    weight = 1.0
    if method != "none":
        weight = bound_number(
            "weight",
            f"w.{method}",
            float(weight_default),
            min_value=0.0,
            max_value=1000.0,
            help="weight of this method's terms in the objective",
            container=where,
        )
    params = schema_form(method_schema(method), f"p.{method}", name=method, container=where)
    try:
        parse_params(method, params)
    except MethodError as err:
        raise AppInputError(str(err)) from None
    return {"name": method, "weight": float(weight), "params": params}


def methods_form(methods: Sequence[str], *, container: Any = None) -> list[dict[str, Any]]:
    """One :func:`method_form` per method, in an expander each: a config's ``distill.methods``."""
    where = container if container is not None else st
    out = []
    for name in methods:
        with where.expander(f"{name} hyperparameters", expanded=len(methods) == 1):
            out.append(method_form(name))
    return out


# ---- the New-run form -----------------------------------------------------------------------------


def dataset_choice(*, container: Any = None) -> str:
    """The dataset select box (URL ``dataset``): the built-in datasets that need no files of your own,
    then the datasets added to the store (the Data page, ``workbench data add``)."""
    where = container if container is not None else st
    by_name = {c.name: c for c in dataset_choices(get_store()) if c.loads_alone}
    dataset = bound_selectbox(
        "Dataset", "dataset", list(by_name), default="mnist",
        format_func=lambda n: f"{n} (yours)" if by_name[n].where == "store" else n,
        help="The built-in datasets, then yours: add a folder or a zip of images on the Data page.",
        container=where,
    )
    where.caption(by_name[dataset].description)
    return dataset


def teacher_choice(dataset: str, *, train_first: bool = True, scratch: bool = True, container: Any = None) -> str:
    """The teacher select box (URL ``teacher``): the shipped teachers of ``dataset``, the store's teachers
    and the completed teacher runs on it (:func:`workbench.runs.teacher_store.teacher_choices`), then (``train_first``) :data:`TRAIN_FIRST` and (``scratch``) :data:`NO_TEACHER`.

    Raises:
        AppInputError: nothing to choose (no teacher for ``dataset`` and neither extra choice).
    """
    pairs = teacher_choices(get_store(), dataset, runs=list_runs(kind="teacher", status="completed"))
    labels = {source: label for source, label in pairs if not source.startswith("shipped:")}
    options = [source for source, _ in pairs] + [TRAIN_FIRST] * train_first + [NO_TEACHER] * scratch
    if not options:
        raise AppInputError(f"teacher: dataset {dataset!r} has no shipped teacher and no teacher run yet")
    return bound_selectbox(
        "Teacher", "teacher", options, format_func=lambda o: labels.get(o, o),
        help="A shipped teacher, a teacher added to the store from a checkpoint (`workbench teachers add`), a "
        "teacher run of the store, or queue a teacher run first.", container=container,
    )


@dataclass
class NewRun:
    """What :func:`run_form` collected: the ``form``, the teacher ``choice`` as shown (a source,
    :data:`TRAIN_FIRST` or :data:`NO_TEACHER`) and, for :data:`TRAIN_FIRST`, the ``teacher_model``."""

    form: RunForm
    choice: str
    teacher_model: str | None = None


def run_form(*, train_first: bool = True, max_steps: bool = False, single: bool = True) -> NewRun:
    """The New-run form, every control bound to the URL (:func:`workbench.run_form.new_run_params` spells a link to it):
    dataset, teacher, student, methods with each one's hyperparameters, teacher precision, ce_weight,
    epochs, (``single``) the run's seed and name, and (``max_steps``) a step limit; ``train_first``
    offers to queue a teacher run first. Without ``single`` the form is an experiment's base config:
    the experiment names its runs and gives their seeds.

    Raises:
        AppInputError: a hyperparameter that cannot be read (one line naming the method and field).
    """
    left, right = st.columns(2)
    dataset = dataset_choice(container=left)
    teacher = teacher_choice(dataset, train_first=train_first, container=right)
    models = list_models()
    student = bound_selectbox("Student", "student", models, default="cnn_small", container=left)
    teacher_model = None
    if teacher == TRAIN_FIRST:
        teacher_model = bound_selectbox("Teacher model", "tmodel", models, default="cnn_large", container=right)
    has_teacher = teacher != NO_TEACHER
    choices = [m for m in list_methods() if has_teacher or not get_method_class(m).needs_teacher]
    methods = bound_multiselect(
        "Methods", "methods", choices, default=["kd"] if has_teacher else ["none"],
        help="The objective is ce_weight * CE + the weighted sum of these methods.", container=right,
    ) or ["none"]
    specs = methods_form(methods)
    precision = "float32"
    if has_teacher:
        precision = bound_selectbox(
            "Teacher precision", "tprec", list(TEACHER_PRECISIONS), default="float32",
            help="float32 is exact. bfloat16 runs the teacher's forwards about 1.8x faster on hardware "
            "with bf16 units (the first epoch is shorter); its soft targets move by a mean KL of about 5e-6. "
            "auto picks bfloat16 only where this machine computes it natively.",
            container=right,
        )
    cols = list(st.columns(2 + 2 * single + max_steps))
    ce = bound_number(
        "ce_weight", "ce", 1.0 if methods == ["none"] else 0.1, min_value=0.0, max_value=100.0, container=cols[0]
    )
    epochs = bound_number("Epochs", "epochs", 2, min_value=1, max_value=200, container=cols[1])
    seed, name = 0, None
    if single:
        seed = bound_number("Seed", "seed", 0, min_value=0, max_value=2**31 - 1, container=cols[2])
        name = bound_text("Name (optional)", "name", "", max_chars=40, container=cols[3]).strip() or None
    limit = 0
    if max_steps:
        limit = bound_number(
            "Max steps", "max_steps", 0, min_value=0, max_value=10**7, container=cols[-1],
            help="Stop each run after this many steps (0: no limit); a quick look before the real budget.",
        )
    form = RunForm(
        dataset=dataset,
        teacher=teacher if has_teacher and teacher != TRAIN_FIRST else None,
        student=student,
        methods=specs,
        ce_weight=float(ce),
        teacher_precision=precision,
        epochs=int(epochs),
        seed=int(seed),
        name=name,
        max_steps=int(limit),
    )
    return NewRun(form, teacher, teacher_model)
