"""Teachers added to the run store from a checkpoint: ``teacher:NAME`` in a config.

:func:`add_teacher` takes a ``.safetensors`` state dict (a path, bytes or a binary file; a pickle is
never opened), the architecture it belongs to (a zoo or registered model, built with
:func:`workbench.models.create_model`) and the dataset it was trained on. It checks every parameter's
name and shape against the model built for that dataset's classes and image shape, measures the
teacher's accuracy on the dataset's test split, refuses a teacher near chance, and stores

```
<store>/teachers/NAME/card.json            name, model, dataset (+ data section), test_acc, params, sha256, added
<store>/teachers/NAME/weights.safetensors  the file as given, byte for byte
```

written into a hidden staging folder that is renamed into place, so a failure or a kill leaves no
half-written teacher. :func:`list_store_teachers` and :func:`remove_teacher` manage them;
:func:`teacher_choices` is the one list of teachers (shipped, the store's, teacher runs) a face
offers for a dataset. :func:`workbench.runs.teachers.load_teacher` resolves ``teacher:NAME``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from workbench.config import DataSpec, ModelSpec, printable
from workbench.data import Dataset, list_datasets, load_dataset
from workbench.devices import inference_chunk, resolve_device
from workbench.errors import one_line
from workbench.models import create_model, model_info
from workbench.runs.atomic import atomic_write_bytes, atomic_write_json
from workbench.runs.datasets import get_store_dataset
from workbench.runs.labels import fmt_pct, run_label
from workbench.runs.session import as_store
from workbench.runs.store import GC_MIN_AGE_S, Run, RunStore, RunStoreError, utc_now
from workbench.runs.teachers import (
    STORE_TEACHERS,
    TeacherError,
    check_teacher_name,
    list_shipped_teachers,
    store_teacher_card,
    store_teacher_dir,
    store_teacher_names,
)
from workbench.runtime import Cancelled, ProgressFn, Tracker

#: the largest weights file :func:`add_teacher` reads (checked before reading)
MAX_TEACHER_BYTES = 512 * 2**20
#: a teacher is refused when its test accuracy is below this many times chance (``CHANCE_FACTOR / K``)
CHANCE_FACTOR = 1.5
#: images per forward when measuring a teacher's accuracy (at most :data:`~workbench.devices.CPU_INFERENCE_CHUNK`
#: on the CPU)
EVAL_BATCH = 256

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
_SHAPE_KWARGS = ("num_classes", "in_channels", "image_size")

Weights = str | Path | bytes | bytearray | memoryview | IO[bytes]


@dataclasses.dataclass(frozen=True)
class TeacherCard:
    """What the store knows of a teacher added from a checkpoint (``card.json``).

    ``model``: ``{"name", "kwargs"}``; ``dataset``: the registry name it was trained on and ``data``
    its section (``dataset``, ``root``, ``options``); ``num_classes``, ``in_channels``,
    ``image_size``: the shape it was built for; ``test_acc``: its accuracy on the dataset's test
    split of ``n_test`` images, measured when it was added; ``params``, ``flops`` (per image);
    ``sha256`` of ``weights.safetensors``; ``added``: UTC ISO time; ``file``: the name of the file
    it came from (``None`` for bytes).
    """

    name: str
    model: dict[str, Any]
    dataset: str
    data: dict[str, Any]
    num_classes: int
    in_channels: int
    image_size: int
    test_acc: float
    n_test: int
    params: int
    flops: int
    sha256: str
    added: str
    file: str | None = None

    @property
    def source(self) -> str:
        """The config source that names this teacher: ``teacher:NAME``."""
        return f"teacher:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, card: Mapping[str, Any]) -> TeacherCard:
        """A card from its JSON mapping; a missing or mistyped field is a one-line :class:`TeacherError`."""
        name = str(card.get("name", "?"))
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in card:
                if f.name == "file":
                    continue
                raise TeacherError(f"store teacher {name!r}: card.json has no {f.name!r}")
            out[f.name] = card[f.name]
        for key in ("dataset", "sha256", "added"):
            if not isinstance(out[key], str):
                raise TeacherError(f"store teacher {name!r}: card.json {key} should be text")
        if not isinstance(out["data"], dict):
            raise TeacherError(f"store teacher {name!r}: card.json data should be an object")
        for key in ("test_acc", "n_test", "params", "flops"):
            if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
                raise TeacherError(f"store teacher {name!r}: card.json {key} should be a number")
        return cls(**out)


# ---- reading the weights ----------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"


def _too_big(size: int, label: str) -> TeacherError:
    return TeacherError(
        f"weights {label}: {_size(size)}, more than a teacher may be ({_size(MAX_TEACHER_BYTES)}, MAX_TEACHER_BYTES)"
    )


def _refuse_pickle_name(name: str, label: str) -> None:
    """Refuse a file named like a pickle checkpoint, before anything of it is read."""
    suffix = Path(name).suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise TeacherError(
            f"weights {label}: a pickle checkpoint ({suffix}), refused: only .safetensors is "
            "accepted (unpickling can run code); save it with "
            "safetensors.torch.save_file(model.state_dict(), 'teacher.safetensors')"
        )


def _read_limited(fh: IO[bytes], label: str) -> bytes:
    """At most :data:`MAX_TEACHER_BYTES` of a binary file, its size checked first where it can be."""
    try:
        if fh.seekable():
            here = fh.tell()
            size = fh.seek(0, io.SEEK_END) - here
            fh.seek(here)
            if size > MAX_TEACHER_BYTES:
                raise _too_big(size, label)
        data = fh.read(MAX_TEACHER_BYTES + 1)
    except (OSError, ValueError) as err:
        raise TeacherError(f"weights {label}: cannot be read ({one_line(err)})") from None
    if not isinstance(data, (bytes, bytearray)):
        raise TeacherError(f"weights {label}: expected a binary file, read {type(data).__name__}")
    if len(data) > MAX_TEACHER_BYTES:
        raise _too_big(len(data), label)
    return bytes(data)


def read_weights_bytes(weights: Weights) -> tuple[bytes, str | None]:
    """The bytes of a weights file given as a path, bytes or a binary file, and the file's name
    (``None`` for bytes). The size is checked against :data:`MAX_TEACHER_BYTES` before reading; a
    pickle checkpoint (``.pt``, ``.pth``, ...) is refused by its name without being opened."""
    if isinstance(weights, (bytes, bytearray, memoryview)):
        if len(weights) > MAX_TEACHER_BYTES:
            raise _too_big(len(weights), "(uploaded)")
        return bytes(weights), None
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        label = printable(path.name, 80)
        _refuse_pickle_name(path.name, label)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise TeacherError(f"weights {label}: not a file")
        except OSError as err:
            raise TeacherError(f"weights {label}: cannot be read ({err.strerror or err})") from None
        if size > MAX_TEACHER_BYTES:
            raise _too_big(size, label)
        with open(path, "rb") as fh:
            return _read_limited(fh, label), path.name
    if callable(getattr(weights, "read", None)):
        name = getattr(weights, "name", None)
        name = Path(name).name if isinstance(name, str) and name else None
        label = printable(name, 80) if name else "(uploaded)"
        if name:
            _refuse_pickle_name(name, label)
        return _read_limited(weights, label), name
    raise TeacherError(f"weights: expected a path, bytes or a binary file, got {type(weights).__name__}")


def parse_safetensors(data: bytes, label: str) -> dict[str, torch.Tensor]:
    """The tensors of safetensors ``data``; anything else (a pickle, a zip, text) is refused in
    one line naming ``label``, without being interpreted."""
    if data[:4] == b"PK\x03\x04" or (
        data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    ):
        raise TeacherError(
            f"weights {label}: a PyTorch pickle checkpoint, refused: only safetensors is accepted "
            "(unpickling can run code)"
        )
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, OverflowError) as err:
        raise TeacherError(f"weights {label}: not a safetensors file ({one_line(err, limit=120)})") from None
    if not state:
        raise TeacherError(f"weights {label}: the safetensors file holds no tensors")
    return state


# ---- checking them against the model and the data ---------------------------------------------------


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def fit_problem(model: nn.Module, state: Mapping[str, torch.Tensor], data: Dataset) -> str | None:
    """The first way ``state`` does not fit ``model`` (built for ``data``), in words, or ``None``:
    a parameter or buffer the model has and the file lacks (``missing``), one whose shape differs,
    then one the file has and the model lacks (``unexpected``); with how many more there are."""
    want = model.state_dict()
    problems: list[str] = []
    have = list(state)
    head = getattr(model, "fc", None)
    for key, tensor in want.items():
        if key not in state:
            first = f" (the file's first is {have[0]!r})" if have and not problems else ""
            problems.append(f"missing parameter {key!r}{first}")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            text = f"parameter {key!r} has shape {_shape(state[key])} in the file, the model wants {_shape(tensor)}"
            if isinstance(head, nn.Linear) and key in ("fc.weight", "fc.bias") and state[key].dim() >= 1:
                outputs = int(state[key].shape[0])
                if outputs != data.num_classes:
                    text += f": the file's classifier has {outputs} outputs, {data.name} has {data.num_classes} classes"
            problems.append(text)
    problems += [f"unexpected parameter {key!r}" for key in have if key not in want]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def measure_accuracy(
    model: nn.Module,
    data: Dataset,
    *,
    device: str | torch.device | None = None,
    batch_size: int = EVAL_BATCH,
    progress: ProgressFn | None = None,
) -> tuple[int, int]:
    """``(correct, n)``: how many of ``data``'s ``n`` test images ``model`` classifies right (top-1),
    batched under ``torch.inference_mode()`` on ``device`` (``None``: CUDA when present). The model is
    moved to ``device``; its mode is the caller's to set. ``progress`` hears one unit per batch."""
    dev = resolve_device(device)
    images, labels = data.test.images, data.test.labels
    chunk = inference_chunk(dev, batch_size)
    tracker = Tracker(progress, total=max(1, -(-len(images) // chunk)), label="test accuracy")
    tracker.start()
    model.to(dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            x = data.normalize(images[start : start + chunk].to(dev, non_blocking=True))
            y = labels[start : start + chunk].to(dev, non_blocking=True)
            correct += (model(x).argmax(dim=-1) == y).sum()
            tracker.advance()
    return int(correct.item()), len(images)


def chance_floor(num_classes: int) -> float:
    """The least test accuracy a teacher may have: :data:`CHANCE_FACTOR` times chance, ``1.5/K``."""
    return CHANCE_FACTOR / max(int(num_classes), 1)


# ---- the data section -------------------------------------------------------------------------------


def _data_spec(
    dataset: str | Mapping[str, Any] | DataSpec, data_options: Mapping[str, Any] | None
) -> DataSpec:
    """The data section of a teacher: a registry name with ``data_options``, or a section mapping
    (``dataset``, ``root``, ``options``) or :class:`~workbench.config.DataSpec`."""
    if isinstance(dataset, DataSpec):
        spec = dataset
    elif isinstance(dataset, Mapping):
        try:
            spec = DataSpec(**dict(dataset))
        except (ValueError, TypeError) as err:
            raise TeacherError(f"dataset: not a valid data section ({one_line(err, limit=160)})") from None
    elif isinstance(dataset, str):
        spec = DataSpec(dataset=dataset)
    else:
        raise TeacherError(
            f"dataset: expected a dataset name or a data section, got {type(dataset).__name__}"
        )
    if data_options:
        if not isinstance(dataset, str):
            raise TeacherError("data_options: give the options inside the data section (its 'options')")
        spec = spec.model_copy(update={"options": dict(data_options)})
    return spec


def _model_spec(model: str, kwargs: Mapping[str, Any] | None) -> ModelSpec:
    try:
        spec = ModelSpec(name=model, kwargs=dict(kwargs or {}))
        json.dumps(spec.kwargs)
    except (ValueError, TypeError) as err:
        raise TeacherError(
            f"model: expected a model name and JSON kwargs ({one_line(err, limit=160)})"
        ) from None
    clash = [k for k in _SHAPE_KWARGS if k in spec.kwargs]
    if clash:
        raise TeacherError(f"kwargs: {clash[0]!r} comes from the dataset; leave it out")
    return spec


# ---- the store --------------------------------------------------------------------------------------


def _teachers_root(store: RunStore | str | Path | None) -> Path:
    return as_store(store).root / STORE_TEACHERS


def _clean_leftovers(folder: Path) -> None:
    """Remove ``.trash-*`` folders and ``.staging-*`` folders older than ``GC_MIN_AGE_S`` (a kill's leftovers)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    now = time.time()
    for path in entries:
        try:
            stale = path.name.startswith(".trash-") or (
                path.name.startswith(".staging-") and now - path.lstat().st_mtime >= GC_MIN_AGE_S
            )
        except OSError:
            continue
        if stale and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _refuse_taken(root: Path, name: str) -> None:
    if os.path.lexists(root / name):
        raise TeacherError(
            f"teacher {name!r}: the name is taken in {root}; pick another or remove it first "
            f"(workbench teachers remove {name})"
        )


def _checked_teacher(
    state: dict[str, torch.Tensor], model_spec: ModelSpec, data: Dataset, label: str
) -> nn.Module:
    """The model of ``model_spec`` built for ``data`` with ``state`` loaded, or a one-line error."""
    c, h, _ = data.image_shape
    model = create_model(
        model_spec.name, num_classes=data.num_classes, in_channels=c, image_size=h, **model_spec.kwargs
    )
    problem = fit_problem(model, state, data)
    if problem:
        raise TeacherError(
            f"weights {label}: do not fit model {model_spec.name!r} built for {data.name} "
            f"({data.num_classes} classes, {c}x{h}x{data.image_shape[2]} images): {problem}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise TeacherError(
            f"weights {label}: cannot be loaded into {model_spec.name!r} ({one_line(err)})"
        ) from None
    return model.eval()


def add_teacher(
    store: RunStore | str | Path | None,
    name: str,
    weights: Weights,
    *,
    model: str,
    kwargs: Mapping[str, Any] | None = None,
    dataset: str | Mapping[str, Any] | DataSpec,
    data_options: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
) -> TeacherCard:
    """Add a teacher from a safetensors checkpoint to the run store, as ``teacher:NAME``.

    Args:
        store: the run store (a :class:`RunStore`, its folder, or ``None`` for the default).
        name: the teacher's name (:data:`~workbench.runs.teachers.TEACHER_NAME`), not yet taken.
        weights: a ``.safetensors`` state dict: a path, bytes or a binary file, at most
            :data:`MAX_TEACHER_BYTES`; a pickle (``.pt``, ...) is refused and never opened.
        model: a zoo or registered model name; ``kwargs`` its keyword arguments (not the shape ones).
        dataset: the registry name of the data it was trained on (``data_options`` its options), or a
            data section mapping (``dataset``, ``root``, ``options``) for a dataset with files.
        device: where its accuracy is measured (``None``: CUDA when present, else the CPU).
        progress: ``progress(done, total, message)``, one unit per test batch and per step around them.

    Returns:
        The stored :class:`TeacherCard`, its ``test_acc`` measured on the dataset's test split.

    Raises:
        TeacherError: (or the registries' one-line errors for an unknown model or dataset) a bad or
            taken name, a file over the cap or not safetensors, weights that do not fit the model
            built for the dataset (the first missing, shape-mismatched or unexpected parameter), or
            a test accuracy below :func:`chance_floor`. Nothing is left in the store.
    """
    check_teacher_name(name)
    root = _teachers_root(store)
    _refuse_taken(root, name)
    model_spec = _model_spec(model, kwargs)
    if isinstance(dataset, str) and dataset not in {d.name for d in list_datasets()}:
        dataset = get_store_dataset(store, dataset).data_section()  # a dataset added to the store
    data_spec = _data_spec(dataset, data_options)
    tracker = Tracker(progress, total=10, label=f"teacher {name}")
    tracker.start("reading the weights")
    raw, file_name = read_weights_bytes(weights)
    label = printable(file_name, 80) if file_name else "(uploaded)"
    state = parse_safetensors(raw, label)
    tracker.report(1, f"loading {data_spec.dataset}")
    data_root = str(Path(data_spec.root).expanduser().resolve()) if data_spec.root else None
    data = load_dataset(data_spec.dataset, root=data_root, download=False, **data_spec.options)
    if not len(data.test):
        raise TeacherError(f"dataset {data.name}: its test split is empty, so the teacher cannot be measured")
    teacher = _checked_teacher(state, model_spec, data, label)
    try:
        correct, n = measure_accuracy(
            teacher, data, device=device, progress=tracker.part(2, 9, "test accuracy")
        )
    except Cancelled:
        raise
    except RuntimeError as err:
        raise TeacherError(
            f"weights {label}: model {model_spec.name!r} does not run on {data.name}'s images ({one_line(err)})"
        ) from None
    acc = correct / n
    floor = chance_floor(data.num_classes)
    if acc < floor:
        raise TeacherError(
            f"teacher {name!r}: test accuracy {acc:.2%} on {data.name} ({n} test images) is near chance; "
            f"a teacher needs at least {CHANCE_FACTOR} x chance = {CHANCE_FACTOR}/{data.num_classes} = {floor:.2%}"
        )
    c, h, w = data.image_shape
    info = model_info(teacher.to("cpu"), (c, h, w))
    card = TeacherCard(
        name=name,
        model={"name": model_spec.name, "kwargs": model_spec.kwargs},
        dataset=data_spec.label,
        data={
            "dataset": data_spec.dataset,
            **({"name": data_spec.name} if data_spec.name else {}),  # a store dataset's name
            "root": data_root,
            "options": dict(data_spec.options),
        },
        num_classes=data.num_classes,
        in_channels=c,
        image_size=h,
        test_acc=acc,
        n_test=n,
        params=info.params,
        flops=info.flops,
        sha256=hashlib.sha256(raw).hexdigest(),
        added=utc_now(),
        file=file_name,
    )
    tracker.report(9, "writing")
    _write_teacher(root, card, raw)
    tracker.report(10, "added")
    return card


def _write_teacher(root: Path, card: TeacherCard, raw: bytes) -> None:
    """Write the card and weights into a hidden staging folder of ``root``, then rename it to the
    teacher's name; on any failure the staging folder is removed and nothing is listed."""
    root.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)
    staging = root / f".staging-{card.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        atomic_write_bytes(staging / "weights.safetensors", raw)
        atomic_write_json(staging / "card.json", card.to_dict())
        _refuse_taken(root, card.name)
        os.rename(staging, root / card.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def list_store_teachers(store: RunStore | str | Path | None = None) -> list[TeacherCard]:
    """The cards of the teachers added to ``store``, by name. A teacher whose card cannot be read
    is left out of the listing (naming it as ``teacher:NAME`` says what is wrong)."""
    runs = as_store(store)
    cards = []
    for name in store_teacher_names(runs.root):
        try:
            cards.append(TeacherCard.from_dict(store_teacher_card(runs.root, name)))
        except TeacherError:
            continue
    return cards


def get_store_teacher(store: RunStore | str | Path | None, name: str) -> TeacherCard:
    """The card of store teacher ``name``; a one-line :class:`TeacherError` when there is none."""
    runs = as_store(store)
    return TeacherCard.from_dict(store_teacher_card(runs.root, name))


def runs_naming_teacher(store: RunStore | str | Path | None, name: str) -> list[str]:
    """The ids of the runs of ``store`` whose config names ``teacher:NAME`` (damaged runs skipped)."""
    runs = as_store(store)
    source = f"teacher:{check_teacher_name(name)}"
    out = []
    for run in runs.list():
        try:
            if any(t.source == source for t in run.config.teachers):
                out.append(run.id)
        except RunStoreError:
            continue
    return out


def remove_teacher(store: RunStore | str | Path | None, name: str, *, force: bool = False) -> str:
    """Remove store teacher ``name`` (renamed out of the listing, then deleted); returns the name.

    Refused while runs of the store name ``teacher:NAME`` (they could no longer open their teacher)
    unless ``force``. Raises a one-line :class:`TeacherError` for an unknown name."""
    runs = as_store(store)
    folder = store_teacher_dir(runs.root, name)
    if not (folder / "card.json").is_file() or folder.is_symlink():
        known = ", ".join(store_teacher_names(runs.root)) or "none"
        raise TeacherError(f"store teacher {name!r}: not found in {folder.parent}; there: {known}")
    users = [] if force else runs_naming_teacher(runs, name)
    if users:
        more = f" and {len(users) - 3} more" if len(users) > 3 else ""
        raise TeacherError(
            f"store teacher {name!r}: named by {len(users)} run(s) ({', '.join(users[:3])}{more}); "
            "remove those runs first, or force the removal"
        )
    trash = folder.parent / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, trash)
    except OSError as err:
        raise TeacherError(f"store teacher {name!r}: cannot be removed ({err.strerror or err})") from None
    shutil.rmtree(trash, ignore_errors=True)
    return name


def teacher_choices(
    store: RunStore | str | Path | None, dataset: str, *, runs: Iterable[Run] | None = None
) -> list[tuple[str, str]]:
    """The teachers a face offers for ``dataset``, as ``(source, label)`` pairs: the shipped teachers
    trained on it, then the store's teachers added for it, then its completed teacher runs.

    ``runs``: the teacher runs to offer instead of every completed teacher run of the store (a face
    that shows one workspace passes that workspace's); they are filtered by kind, status and dataset
    here as well. Labels name the teacher, where it comes from, its model and test accuracy.
    """
    store_ = as_store(store)
    out: list[tuple[str, str]] = []
    for card in list_shipped_teachers():
        if card.get("dataset") == dataset:
            acc = fmt_pct(card.get("test_acc"))
            out.append(
                (f"shipped:{card['name']}", f"{card['name']} · shipped · {card['model']['name']} · {acc}")
            )
    for teacher in list_store_teachers(store_):
        if teacher.dataset == dataset:
            out.append(
                (
                    teacher.source,
                    f"{teacher.name} · store teacher · {teacher.model['name']} · {fmt_pct(teacher.test_acc)}",
                )
            )
    candidates = store_.list(kind="teacher", status="completed", dataset=dataset) if runs is None else runs
    for run in candidates:
        info = run.summary()
        if info["kind"] == "teacher" and info["status"] == "completed" and info["dataset"] == dataset:
            out.append((f"run:{run.id}", run_label(run)))
    return out


__all__ = [
    "CHANCE_FACTOR",
    "EVAL_BATCH",
    "MAX_TEACHER_BYTES",
    "TeacherCard",
    "add_teacher",
    "chance_floor",
    "fit_problem",
    "get_store_teacher",
    "list_store_teachers",
    "measure_accuracy",
    "parse_safetensors",
    "read_weights_bytes",
    "remove_teacher",
    "runs_naming_teacher",
    "teacher_choices",
]
