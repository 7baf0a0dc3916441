"""Tags and notes on runs and experiments, and the one search every run picker uses.

A run's tags and note live in its own file, ``<run>/annotations.json``; an experiment's in
``<store>/experiments/<name>.annotations.json``::

    {"tags": ["baseline", "lr:0.1"], "note": "free text"}

The file is separate from the run's config, status and metrics, and written atomically
(:mod:`workbench.runs.atomic`), so tags and a note can be edited at any time, a running run's
included: the training process never reads or writes it. Two people editing the same run at once:
the last write wins (a read-modify-write such as :func:`add_tags` does not merge with a write that
happened in between). A file that cannot be read, or has the wrong shape, reads as no tags and no
note with a one-line :attr:`Annotations.damage` reason; it never breaks a listing, and the next
write replaces it.

A **tag** is a short slug: letters, digits and ``- _ . :``, 1 to :data:`MAX_TAG_CHARS` characters,
at most :data:`MAX_TAGS` per run or experiment; tags that differ only in case are the same tag. A
**note** is free text of at most :data:`MAX_NOTE_CHARS` characters.

:func:`matches` is the search of every picker: ``"kd mnist"`` keeps the runs where both words
appear (case ignored) in the id, name, kind, model, method, dataset, a tag or the note;
``"tag:baseline"`` keeps those tagged exactly ``baseline``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.runs.atomic import atomic_write_json
from workbench.runs.files import Damage, os_reason, quoted, read_json_object

if TYPE_CHECKING:
    from workbench.runs.store import Run, RunStore

#: the most tags a run or an experiment carries
MAX_TAGS = 32
#: the longest tag
MAX_TAG_CHARS = 40
#: the longest note
MAX_NOTE_CHARS = 10_000
#: a run's annotations file, inside its directory
RUN_FILE = "annotations.json"

_TAG_RE = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_TAG_CHARS}}}")
#: an experiment's name: a plain slug, as a sweep's name (it names a file of the store)
_EXPERIMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


class AnnotationError(ValueError):
    """A bad tag, note, experiment name or search, or annotations that cannot be written; one line
    naming the value."""


@dataclass(frozen=True)
class Annotations:
    """The tags and note of a run or an experiment.

    ``damage`` is ``None`` for a readable (or absent) file, else why it could not be read
    (``"annotations.json: not valid JSON (line 1, column 1)"``); the tags and note are then empty.
    """

    tags: tuple[str, ...] = ()
    note: str = ""
    damage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"tags": [...], "note": ..., "damage": ...}``."""
        return {"tags": list(self.tags), "note": self.note, "damage": self.damage}


@dataclass(frozen=True)
class ExperimentTarget:
    """An experiment of a store, as something to annotate: ``root`` (the store's folder) and
    ``name`` (a plain slug). Build it with :func:`experiment_target`."""

    root: Path
    name: str

    @property
    def file(self) -> Path:
        """``<root>/experiments/<name>.annotations.json``."""
        return self.root / "experiments" / f"{self.name}.annotations.json"


def check_experiment_name(name: Any) -> str:
    """``name`` when it is a plain slug (letters, digits, ``_ . -``, starting with a letter or digit,
    at most 80 characters, no ``..``: the rule of a sweep's name); else a one-line
    :class:`AnnotationError`."""
    if not isinstance(name, str) or not _EXPERIMENT_RE.fullmatch(name) or ".." in name:
        raise AnnotationError(
            f"experiment {repr(name)[:60]}: not a plain name; use letters, digits, '_', '.' and '-'"
        )
    return name


def experiment_target(store: RunStore | str | Path, name: str) -> ExperimentTarget:
    """The experiment ``name`` of ``store`` (a :class:`~workbench.runs.RunStore` or its folder), to
    pass to :func:`annotations`, :func:`set_tags`, ... in place of a run.

    Raises:
        AnnotationError: the name is not a plain slug, or ``store`` is not a store or a folder.
    """
    root = store if isinstance(store, (str, Path)) else getattr(store, "root", store)  # a Path's .root is "/"
    if not isinstance(root, (str, Path)) or not str(root).strip():
        raise AnnotationError(f"store: expected a RunStore or a folder, got {type(store).__name__}")
    return ExperimentTarget(Path(root), check_experiment_name(name))


def check_tag(tag: Any) -> str:
    """``tag`` when it is a plain tag (letters, digits, ``- _ . :``, 1 to 40 characters); else a
    one-line :class:`AnnotationError` naming it."""
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        shown = quoted(tag, 50) if isinstance(tag, str) else type(tag).__name__
        raise AnnotationError(
            f"tag {shown}: not a plain tag; use letters, digits, '-', '_', '.' and ':' "
            f"(1 to {MAX_TAG_CHARS} characters)"
        )
    return tag


def parse_tags(tags: str | Iterable[str]) -> tuple[str, ...]:
    """Tags from text (``"baseline, lr:0.1 kd"``: split at commas and spaces) or from a list, each
    checked (:func:`check_tag`), duplicates (case ignored) dropped, order kept."""
    if isinstance(tags, str):
        items = [t for t in re.split(r"[,\s]+", tags) if t]
    elif isinstance(tags, Iterable):
        items = list(tags)
    else:
        raise AnnotationError(f"tags: expected text or a list of tags, got {type(tags).__name__}")
    out: dict[str, str] = {}
    for tag in items:
        out.setdefault(check_tag(tag).lower(), tag)
    return tuple(out.values())


def _check_note(text: Any) -> str:
    if not isinstance(text, str):
        raise AnnotationError(f"note: expected text, got {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_NOTE_CHARS:
        raise AnnotationError(f"note: {len(text):,} characters; at most {MAX_NOTE_CHARS:,}")
    return text


def _where(target: Run | ExperimentTarget) -> tuple[Path, str, bool]:
    """The annotations file of ``target``, how a message names it, and whether it is a run's."""
    if isinstance(target, ExperimentTarget):
        return target.file, f"experiment {target.name}", False
    path = getattr(target, "path", None)
    if not isinstance(path, Path):
        raise AnnotationError(f"expected a run or an experiment, got {type(target).__name__}")
    return path / RUN_FILE, f"run {getattr(target, 'id', path.name)}", True


def _checked(obj: dict[str, Any], name: str) -> Annotations:
    tags, note = obj.get("tags", []), obj.get("note", "")
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG_RE.fullmatch(t) for t in tags):
        raise Damage(f"{name}: 'tags' is not a list of plain tags")
    if len(tags) > MAX_TAGS:
        raise Damage(f"{name}: {len(tags)} tags; at most {MAX_TAGS}")
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise Damage(f"{name}: 'note' is not text of at most {MAX_NOTE_CHARS:,} characters")
    return Annotations(parse_tags(tags), note)


def read_annotations(target: Run | ExperimentTarget) -> Annotations:
    """The tags and note of a run (a :class:`~workbench.runs.Run`) or an experiment
    (:func:`experiment_target`). Never raises for a missing or damaged file: no file is no tags and
    no note; a damaged one is the same with :attr:`Annotations.damage` set."""
    path, _, _ = _where(target)
    if not os.path.lexists(path):
        return Annotations()
    try:
        return _checked(read_json_object(path), path.name)
    except Damage as err:
        return Annotations(damage=str(err))


def _write(target: Run | ExperimentTarget, tags: tuple[str, ...], note: str) -> Annotations:
    if len(tags) > MAX_TAGS:
        raise AnnotationError(f"tags: {len(tags)} given; at most {MAX_TAGS} per run or experiment")
    path, label, is_run = _where(target)
    try:
        # a run's file is never written into a folder that is gone (the run was removed)
        atomic_write_json(path, {"tags": list(tags), "note": note}, make_parents=not is_run)
    except FileNotFoundError:
        raise AnnotationError(f"{label}: its directory is gone (the run was removed)") from None
    except OSError as err:
        raise AnnotationError(f"{label}: {path.name} cannot be written ({os_reason(err)})") from None
    return Annotations(tags, note)


def annotate(
    target: Run | ExperimentTarget, *, tags: str | Iterable[str] | None = None, note: str | None = None
) -> Annotations:
    """Set the tags and/or the note of a run or an experiment in one write (``None`` keeps what is
    there; text tags are split as in :func:`parse_tags`; ``[]`` or ``""`` clears). Returns the
    annotations written.

    Raises:
        AnnotationError: a bad tag (named), more than :data:`MAX_TAGS` tags, a note that is not text
            or longer than :data:`MAX_NOTE_CHARS`, or the file cannot be written.
    """
    new_tags = None if tags is None else parse_tags(tags)
    new_note = None if note is None else _check_note(note)
    current = read_annotations(target) if new_tags is None or new_note is None else Annotations()
    return _write(
        target,
        current.tags if new_tags is None else new_tags,
        current.note if new_note is None else new_note,
    )


def set_tags(target: Run | ExperimentTarget, tags: str | Iterable[str]) -> Annotations:
    """Replace the tags of a run or an experiment (text is split as in :func:`parse_tags`; an empty
    list clears them); the note is kept. Returns the annotations written. Raises as :func:`annotate`."""
    return annotate(target, tags=parse_tags(tags))


def add_tags(target: Run | ExperimentTarget, tags: str | Iterable[str]) -> Annotations:
    """Add tags (those already there, case ignored, are kept as they are); returns the annotations
    written. Raises as :func:`annotate`."""
    added = parse_tags(tags)
    current = read_annotations(target)
    return _write(target, parse_tags([*current.tags, *added]), current.note)


def remove_tags(target: Run | ExperimentTarget, tags: str | Iterable[str]) -> Annotations:
    """Remove tags (case ignored; a tag that is not there is no error); returns the annotations
    written. Raises as :func:`annotate`."""
    gone = {t.lower() for t in parse_tags(tags)}
    current = read_annotations(target)
    return _write(target, tuple(t for t in current.tags if t.lower() not in gone), current.note)


def set_note(target: Run | ExperimentTarget, text: str) -> Annotations:
    """Replace the note (surrounding blank space removed; ``""`` clears it); the tags are kept.
    Returns the annotations written. Raises as :func:`annotate`."""
    return annotate(target, note=_check_note(text))


def matches(run: Run, search: str, *, summary: dict[str, Any] | None = None) -> bool:
    """Whether ``run`` is found by ``search``: each word (split at spaces) must match, case ignored.
    ``tag:x`` matches a run tagged exactly ``x`` (``tag:`` alone, a run with any tag); any other word
    matches when it is part of the run's id, name, kind, model, method, dataset, one of its tags or
    its note. An empty search matches every run.

    ``summary``: the run's :meth:`~workbench.runs.Run.summary` when the caller already has it.
    """
    if not isinstance(search, str):
        raise AnnotationError(f"search: expected text, got {type(search).__name__}")
    words = search.lower().split()
    if not words:
        return True
    info = summary if summary is not None else run.summary()
    notes = read_annotations(run)
    tags = [t.lower() for t in notes.tags]
    fields = [run.id, *(info.get(k) for k in ("name", "kind", "model", "method", "dataset")), notes.note]
    hay = [str(f).lower() for f in fields if f] + tags
    for word in words:
        if word.startswith("tag:"):
            wanted = word[4:]
            if (wanted and wanted not in tags) or (not wanted and not tags):
                return False
        elif not any(word in h for h in hay):
            return False
    return True


__all__ = [
    "MAX_NOTE_CHARS",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "RUN_FILE",
    "AnnotationError",
    "Annotations",
    "ExperimentTarget",
    "add_tags",
    "annotate",
    "read_annotations",
    "check_experiment_name",
    "check_tag",
    "experiment_target",
    "matches",
    "parse_tags",
    "remove_tags",
    "set_note",
    "set_tags",
]
