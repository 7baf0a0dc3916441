"""Resolve teacher specifications to frozen networks: shipped teachers, runs, weight files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.config import TeacherSpec
from workbench.errors import one_line
from workbench.models import create_model
from workbench.paths import teachers_dir
from workbench.runs.atomic import WeightsError, load_weights
from workbench.runs.store import RunStore, RunStoreError


class TeacherError(ValueError):
    """A teacher cannot be loaded; the message names the teacher and what was wrong."""


_CARD_MAX_BYTES = 1 << 20


def _read_card(path: Path) -> dict[str, Any]:
    """A shipped teacher's JSON card, checked: one-line :class:`TeacherError` naming the file."""
    try:
        size = path.stat().st_size
        if size > _CARD_MAX_BYTES:
            raise TeacherError(f"teacher card {path.name}: {size} bytes, more than a card can be ({_CARD_MAX_BYTES})")
        raw = path.read_bytes()
    except OSError as err:
        raise TeacherError(f"teacher card {path.name}: cannot be read ({err.strerror or err})") from None
    try:
        card = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise TeacherError(f"teacher card {path.name}: not UTF-8 text (bad byte at offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise TeacherError(
            f"teacher card {path.name}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except RecursionError:
        raise TeacherError(f"teacher card {path.name}: not valid JSON (nested too deeply)") from None
    model = card.get("model") if isinstance(card, dict) else None
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("name"), str)
        or not isinstance(model.get("kwargs", {}), dict)
    ):
        raise TeacherError(
            f"teacher card {path.name}: expected a JSON object with model.name (a string) "
            "and optional model.kwargs (an object)"
        )
    for key in ("num_classes", "in_channels", "image_size"):
        value = card.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise TeacherError(f"teacher card {path.name}: {key} should be a positive integer, got {str(value)[:40]!r}")
    return card


def list_shipped_teachers() -> list[dict[str, Any]]:
    """The cards of the teachers shipped in ``assets/teachers`` (name, model, data, accuracy)."""
    folder = teachers_dir()
    cards = []
    for path in sorted(folder.glob("*.json")):
        card = _read_card(path)
        card.setdefault("name", path.stem)
        cards.append(card)
    return cards


def shipped_teacher_card(name: str) -> dict[str, Any]:
    """The JSON card of shipped teacher ``name``."""
    path = teachers_dir() / f"{name}.json"
    if not path.exists():
        known = ", ".join(c["name"] for c in list_shipped_teachers()) or "none"
        raise TeacherError(f"shipped teacher {name!r}: not found; shipped: {known}")
    return _read_card(path)


def load_shipped_teacher(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """A shipped teacher by name (e.g. ``mnist``), in eval mode with gradients off."""
    card = shipped_teacher_card(name)
    model = create_model(
        card["model"]["name"],
        num_classes=card["num_classes"],
        in_channels=card["in_channels"],
        image_size=card["image_size"],
        **card["model"].get("kwargs", {}),
    )
    try:
        model.load_state_dict(load_weights(teachers_dir() / f"{name}.safetensors"))
    except (WeightsError, RuntimeError) as err:
        raise TeacherError(f"shipped teacher {name!r}: {one_line(err)}") from None
    return freeze(model.to(device))


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter: a teacher never learns."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(
    spec: TeacherSpec,
    num_classes: int,
    input_shape: tuple[int, int, int],
    device: str | torch.device = "cpu",
    runs_root: str | None = None,
    field: str = "teachers[0]",
) -> nn.Module:
    """Resolve one :class:`TeacherSpec` to a frozen network and check it fits the data."""
    source = spec.source
    try:
        if source.startswith("shipped:"):
            model = load_shipped_teacher(source.split(":", 1)[1], device)
        elif source.startswith("run:"):
            run = RunStore(runs_root).load(source.split(":", 1)[1])
            which = spec.checkpoint if spec.checkpoint in run.checkpoints() else "final"
            model = freeze(run.load_model(which, device=device))
        else:
            assert spec.model is not None  # enforced by TeacherSpec
            model = create_model(
                spec.model.name,
                num_classes=num_classes,
                in_channels=input_shape[0],
                image_size=input_shape[1],
                **spec.model.kwargs,
            )
            state = load_weights(source)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise TeacherError(
                    f"{field}: {source} does not fit model {spec.model.name!r} "
                    f"(missing {len(missing)} keys e.g. {missing[:2]}, unexpected {len(unexpected)} e.g. {unexpected[:2]})"
                )
            model = freeze(model.to(device))
    except (RunStoreError, WeightsError, TeacherError) as err:
        msg = str(err)
        raise TeacherError(msg if msg.startswith(field) else f"{field}: {msg}") from None
    with torch.inference_mode():
        try:
            out = model(torch.zeros(2, *input_shape, device=device))
        except RuntimeError as err:
            raise TeacherError(
                f"{field}: {source} does not accept inputs of shape {input_shape}: {one_line(err)}"
            ) from None
    if out.shape[-1] != num_classes:
        raise TeacherError(
            f"{field}: {source} predicts {out.shape[-1]} classes, the dataset has {num_classes}"
        )
    return model
