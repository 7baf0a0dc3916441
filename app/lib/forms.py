"""Forms generated from parameter schemas, and the New-run form's link format.

:func:`schema_form` draws one URL-bound control per field of a JSON parameter schema (read by
:func:`workbench.distill.forms.schema_fields`; free text read by
:func:`workbench.distill.forms.parse_field_text`, as the widgets read it): a distillation method's form
(:func:`method_form`) and a CAM method's. The New-run form's values become a
:class:`workbench.run_form.RunForm` and a config through :func:`workbench.run_form.config_from_form`;
:func:`new_run_params` is the other way: the URL that opens the form prefilled with a config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from app.lib.bindings import bound_checkbox, bound_number, bound_selectbox, bound_text
from app.lib.state import AppInputError
from workbench.config import RunConfig
from workbench.distill import get_method_class, method_schema, parse_params
from workbench.distill.base import MethodError
from workbench.distill.forms import parse_field_text, schema_fields, text_hint
from workbench.run_form import form_from_config

#: the New-run form's teacher choices besides a teacher source: queue a teacher run first, or none
TRAIN_FIRST = "train one first"
NO_TEACHER = "none (train from scratch)"


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
    teacher), ``epochs``, ``seed`` and ``name``."""
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
    if form.teacher:
        out["tprec"] = form.teacher_precision
    for m in form.methods:
        out[f"w.{m['name']}"] = repr(float(m["weight"]))
        kinds = {f.name: f.kind for f in schema_fields(method_schema(m["name"]))}
        for key, value in m["params"].items():
            if value is not None:
                out[f"p.{m['name']}.{key}"] = _param_text(kinds.get(key, "json"), value)
    return out
