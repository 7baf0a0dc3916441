"""Resolve teacher specifications to frozen networks: shipped teachers, the store's teachers, runs,
weight files.

A source is ``shipped:NAME`` (a card and weights in ``assets/teachers``), ``teacher:NAME`` (a teacher
added to the run store from a checkpoint, ``<store>/teachers/NAME/``; see
:mod:`workbench.runs.teacher_store`), ``run:RUN_ID`` (a teacher run of the store) or a weights file
with its ``model``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.config import TEACHER_NAME, TeacherSpec
from workbench.errors import one_line
from workbench.models import create_model
from workbench.paths import teachers_dir
from workbench.runs.atomic import WeightsError, load_weights
from workbench.runs.store import RunStore, RunStoreError


class TeacherError(ValueError):
    """A teacher cannot be loaded; the message names the teacher and what was wrong."""


_CARD_MAX_BYTES = 1 << 20
#: the folder of a run store holding the teachers added from checkpoints (``teacher:NAME``)
STORE_TEACHERS = "teachers"
#: a store teacher's name: a letter or digit, then up to 63 letters, digits, ``-``, ``_`` and ``.``


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


def check_teacher_name(name: object) -> str:
    """``name`` when it can name a store teacher (:data:`TEACHER_NAME`: a letter or digit, then
    letters, digits, ``-``, ``_``, ``.``; at most 64 characters, so never a path); else a one-line
    :class:`TeacherError`."""
    if not isinstance(name, str) or not TEACHER_NAME.fullmatch(name):
        shown = repr(name)[:60] if isinstance(name, str) else type(name).__name__
        raise TeacherError(
            f"teacher name {shown}: expected a letter or digit, then letters, digits, '-', '_' or '.' "
            "(at most 64 characters)"
        )
    return name


def store_teacher_dir(runs_root: str | Path | None, name: str) -> Path:
    """The folder of store teacher ``name`` (``<store>/teachers/NAME``; it need not exist).
    ``runs_root`` ``None`` is the default store (``$WORKBENCH_RUNS`` or ``./runs``)."""
    return RunStore(runs_root).root / STORE_TEACHERS / check_teacher_name(name)


def store_teacher_names(runs_root: str | Path | None) -> list[str]:
    """The names of the teachers of a store that have a card, sorted (hidden staging and trash
    folders and anything not named like a teacher are left out)."""
    folder = RunStore(runs_root).root / STORE_TEACHERS
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise TeacherError(f"store teachers {folder}: cannot be read ({err.strerror or err})") from None
    return [
        p.name
        for p in entries
        if TEACHER_NAME.fullmatch(p.name) and not p.is_symlink() and (p / "card.json").is_file()
    ]


def store_teacher_card(runs_root: str | Path | None, name: str) -> dict[str, Any]:
    """The JSON card of store teacher ``name`` (model, dataset, shape, accuracy, sha256, ...),
    checked as a shipped card is; a missing teacher is a :class:`TeacherError` naming those there are."""
    folder = store_teacher_dir(runs_root, name)
    if not (folder / "card.json").is_file():
        known = ", ".join(store_teacher_names(runs_root)) or "none"
        raise TeacherError(f"store teacher {name!r}: not found in {folder.parent}; there: {known}")
    try:
        card = _read_card(folder / "card.json")
    except TeacherError as err:
        raise TeacherError(f"store teacher {name!r}: {err}") from None
    card["name"] = name
    return card


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in ``chunk``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_store_teacher(
    name: str, device: str | torch.device = "cpu", runs_root: str | Path | None = None
) -> nn.Module:
    """Store teacher ``name`` (``teacher:NAME``), built from its card, its weights checked against
    the card's SHA-256 and loaded strictly, in eval mode with gradients off."""
    card = store_teacher_card(runs_root, name)
    path = store_teacher_dir(runs_root, name) / "weights.safetensors"
    try:
        digest = file_sha256(path)
    except OSError as err:
        raise TeacherError(
            f"store teacher {name!r}: weights cannot be read ({err.strerror or err})"
        ) from None
    if card.get("sha256") and digest != card["sha256"]:
        raise TeacherError(
            f"store teacher {name!r}: weights.safetensors does not match its card's sha256 "
            "(the file changed after the teacher was added)"
        )
    try:
        model = create_model(
            card["model"]["name"],
            num_classes=card["num_classes"],
            in_channels=card["in_channels"],
            image_size=card["image_size"],
            **card["model"].get("kwargs", {}),
        )
        model.load_state_dict(load_weights(path))
    except (ValueError, RuntimeError) as err:  # ModelError (e.g. a plugin not registered), WeightsError
        raise TeacherError(f"store teacher {name!r}: {one_line(err)}") from None
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
    """Resolve one :class:`TeacherSpec` to a frozen network on ``device`` and check it fits the data
    (accepts ``(2, *input_shape)`` inputs and predicts ``num_classes`` classes).

    ``shipped:NAME`` comes from ``assets/teachers``; ``teacher:NAME`` and ``run:RUN_ID`` from the run
    store at ``runs_root`` (``None``: the default store); anything else is a weights file built as
    ``spec.model``. Every failure is a one-line :class:`TeacherError` starting with ``field``.
    """
    source = spec.source
    try:
        if source.startswith("shipped:"):
            model = load_shipped_teacher(source.split(":", 1)[1], device)
        elif source.startswith("teacher:"):
            model = load_store_teacher(source.split(":", 1)[1], device, runs_root)
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
