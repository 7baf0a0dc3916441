"""Resolve teacher specifications to frozen networks: shipped teachers, runs, weight files."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from workbench.config import TeacherSpec
from workbench.models import create_model
from workbench.paths import teachers_dir
from workbench.runs import RunStore, RunStoreError, WeightsError, load_weights


class TeacherError(ValueError):
    """A teacher cannot be loaded; the message names the teacher and what was wrong."""


def list_shipped_teachers() -> list[dict[str, Any]]:
    """The cards of the teachers shipped in ``assets/teachers`` (name, model, data, accuracy)."""
    folder = teachers_dir()
    cards = []
    for path in sorted(folder.glob("*.json")):
        card = json.loads(path.read_text(encoding="utf-8"))
        card.setdefault("name", path.stem)
        cards.append(card)
    return cards


def shipped_teacher_card(name: str) -> dict[str, Any]:
    """The JSON card of shipped teacher ``name``."""
    path = teachers_dir() / f"{name}.json"
    if not path.exists():
        known = ", ".join(c["name"] for c in list_shipped_teachers()) or "none"
        raise TeacherError(f"shipped teacher {name!r}: not found; shipped: {known}")
    return json.loads(path.read_text(encoding="utf-8"))


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
        raise TeacherError(f"shipped teacher {name!r}: {str(err).splitlines()[0]}") from None
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
                f"{field}: {source} does not accept inputs of shape {input_shape}: {str(err).splitlines()[0]}"
            ) from None
    if out.shape[-1] != num_classes:
        raise TeacherError(
            f"{field}: {source} predicts {out.shape[-1]} classes, the dataset has {num_classes}"
        )
    return model
