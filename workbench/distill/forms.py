"""A method's parameter schema as form fields: what every face (app, widgets) renders as a form.

:func:`schema_fields` reads the JSON schema of a method's parameters
(:func:`workbench.distill.method_schema`) into a flat list of :class:`Field`: name, kind, default,
range, choices, whether ``None`` is allowed and the one-line help. A face draws one control per
field and hands the values back to :func:`workbench.distill.parse_params`, which validates them.
:func:`parse_field_text` is the one reading of a free-text control that every face shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the kinds a field can have
FIELD_KINDS = ("number", "integer", "boolean", "choice", "text", "list", "json")


@dataclass(frozen=True)
class Field:
    """One hyperparameter as a form renders it (read from a method's JSON schema).

    ``kind`` is one of :data:`FIELD_KINDS`; ``minimum``/``maximum`` bound numbers (``None``:
    unbounded); ``choices`` lists an enum's values; ``optional`` says ``None`` is allowed.
    """

    name: str
    kind: str
    default: Any
    minimum: float | None
    maximum: float | None
    choices: tuple[Any, ...]
    optional: bool
    help: str


def schema_fields(schema: dict[str, Any]) -> list[Field]:
    """The fields of a method's parameter schema, in the schema's order.

    Args:
        schema: a JSON schema with ``properties`` (``workbench.distill.method_schema(name)``).

    Returns:
        One :class:`Field` per property: numbers, integers and booleans as such, enums as
        ``choice``, strings as ``text``, arrays of scalars as ``list``, anything else as ``json``.
    """
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        variants = prop.get("anyOf") or [prop]
        optional = any(v.get("type") == "null" for v in variants)
        main = next((v for v in variants if v.get("type") != "null"), prop)
        typ = main.get("type")
        if "enum" in main:
            kind = "choice"
        elif typ in ("number", "integer", "boolean"):
            kind = typ
        elif typ == "string":
            kind = "text"
        elif typ == "array" and (main.get("items") or {}).get("type") in ("string", "number", "integer"):
            kind = "list"
        else:
            kind = "json"
        lo = main.get("minimum", main.get("exclusiveMinimum"))
        hi = main.get("maximum", main.get("exclusiveMaximum"))
        out.append(
            Field(
                name=name,
                kind=kind,
                default=prop.get("default"),
                minimum=lo,
                maximum=hi,
                choices=tuple(main.get("enum", ())),
                optional=optional,
                help=(prop.get("description") or main.get("description") or "").strip(),
            )
        )
    return out


def text_hint(field: Field) -> str:
    """How to type ``field`` into a free-text control: ``comma-separated``, ``YAML or JSON``,
    ``text`` or ``number`` (the reading of :func:`parse_field_text`)."""
    return {"list": "comma-separated", "json": "YAML or JSON", "text": "text"}.get(field.kind, "number")


def parse_field_text(field: Field, raw: str) -> tuple[bool, Any]:
    """What a free-text control of ``field`` means, the same in every face.

    Args:
        field: the field the control edits.
        raw: the text typed.

    Returns:
        ``(False, None)`` for blank text (keep the method's default), else ``(True, value)``:
        a ``list`` field reads comma-separated items (``"a, b"`` -> ``["a", "b"]``; a YAML list
        in brackets, ``"[1, 2]"``, is read as YAML), a ``text`` field is the text itself, and every
        other kind is parsed as YAML (JSON is YAML too). The method's schema validates the
        value afterwards (:func:`workbench.distill.parse_params`), coercing ``"3"`` to ``3`` where
        a number is expected.

    Raises:
        ValueError: text that is not valid YAML; one line naming the field.
    """
    text = raw.strip()
    if not text:
        return False, None
    if field.kind == "text":
        return True, text
    if field.kind == "list" and not text.startswith("["):
        return True, [item.strip() for item in text.split(",") if item.strip()]
    import yaml

    try:
        return True, yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"{field.name}: {text[:40]!r} is not valid YAML/JSON") from None


__all__ = ["FIELD_KINDS", "Field", "parse_field_text", "schema_fields", "text_hint"]
