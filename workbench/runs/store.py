"""The run store: one directory per run under a workspace root, written atomically.

Layout of a run directory::

    <root>/<run_id>/
        config.yaml        the validated RunConfig
        status.json        status (running|completed|failed|stopped|interrupted), timestamps,
                           version, pid and host of the writing process
        model.json         how to rebuild the networks (registry name, kwargs, shapes)
        metrics.json       per-epoch metrics and a summary
        steps.jsonl        step metrics, one JSON line per recorded step (appended, never rewritten)
        annotations.json   tags and a note (workbench.runs.annotations)
        checkpoints/       final / best / epoch_NNN .safetensors

Every file but steps.jsonl (append-only; a torn last line is ignored) is replaced by temp-file +
rename, and a run directory appears by renaming a
complete staging directory, so a process killed at any moment leaves every run loadable. A run
whose status says ``running`` but whose process is gone is reported as ``interrupted``. A write
that fails (permissions, a full disk) raises :class:`RunWriteError` naming the file; a run that
cannot write its failure into status.json records it beside the run
(:mod:`workbench.runs.failures`) and reads ``failed`` with that error.

One bad file never breaks the store: a run whose files cannot be read or have the wrong shape is
listed with status ``damaged`` and the reason (:attr:`Run.damage`); the other runs list normally
and a damaged run can be removed. Run ids are plain names that resolve (exactly, or by a unique
prefix) only inside the store root (:meth:`RunStore.resolve`). Removal renames the run out of the
listing (``.trash-*``) before deleting it, refuses a run whose process is alive, and a writer never
recreates a removed run's directory. :meth:`RunStore.gc` clears what killed processes leave
(``.staging-*``, ``.trash-*``, ``*.tmp``, ``*.part``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench import __version__
from workbench.config import RunConfig, config_to_yaml
from workbench.errors import one_line
from workbench.procs import pid_alive, process_start
from workbench.runs.annotations import read_annotations
from workbench.runs.atomic import (
    WeightsError,
    atomic_save_safetensors,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from workbench.runs.failures import clear_failure, failure_ids, failure_path, read_failure, record_failure
from workbench.runs.files import (
    RECORDED_STATUSES,
    Damage,
    check_metrics,
    check_model_spec,
    check_status,
    os_reason,
    quoted,
    read_config,
    read_json_object,
)
from workbench.runs.steps import STEP_LOG_FILE, StepLog, read_step_log

#: statuses a listing shows: the recorded ones and ``damaged`` (files unreadable or of the wrong shape)
STATUSES = (*RECORDED_STATUSES, "damaged")
#: a ``running`` status without a pid (written by an older version) whose last update is older than
#: this many seconds reads as ``interrupted``
STALE_RUNNING_S = 3600.0
#: :meth:`RunStore.gc` spares temp files and staging folders younger than this (a live writer's)
GC_MIN_AGE_S = 60.0

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_CKPT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_TEMP_SUFFIXES = (".tmp", ".part")


class RunStoreError(ValueError):
    """A run cannot be found or read; the message names the run."""


class RunDeletedError(RunStoreError):
    """A run's directory is gone while something writes to it (the run was removed)."""


class RunWriteError(RunStoreError):
    """A run's file cannot be written (permissions taken away, a full disk): the message names the
    file and the operating system's reason (``cannot write <run>/status.json: Permission denied``)."""


def default_root() -> Path:
    """The workspace root: ``$WORKBENCH_RUNS`` if set and not empty, else ``./runs``."""
    return Path(os.environ.get("WORKBENCH_RUNS") or "runs")


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (seconds), as status files record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "run"


def prefix_matches(text: str, ids: list[str]) -> list[str]:
    """The ids ``text`` names: ``[text]`` when it is one of ``ids``, else every id starting with it
    (in the order of ``ids``). One entry: resolved; none: unknown; more: ambiguous."""
    if text in ids:
        return [text]
    return [i for i in ids if i.startswith(text)]


def _age_s(stamp: Any) -> float | None:
    """Seconds since the ISO time ``stamp``, or None when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - when).total_seconds()


def process_gone(info: dict[str, Any]) -> bool:
    """Whether the process a ``running`` status names has certainly ended.

    Same host and a recorded pid: the pid is not alive, or it now belongs to a process started
    after the run's process (pid reuse, checked through the recorded ``pid_start``). No pid (an
    older store): the last update is older than :data:`STALE_RUNNING_S`. Another host with a pid:
    unknowable here, so not gone.
    """
    pid = info.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        if info.get("host") not in (None, socket.gethostname()):
            return False
        if not pid_alive(pid):
            return True
        recorded = info.get("pid_start")
        now_start = process_start(pid)
        return isinstance(recorded, (int, float)) and now_start is not None and now_start > recorded + 2
    age = _age_s(info.get("updated") or info.get("started") or info.get("created"))
    return age is None or age > STALE_RUNNING_S


def checkpoint_state(
    student: nn.Module, extras: nn.Module | None = None, peers: list[nn.Module] | None = None
) -> dict[str, torch.Tensor]:
    """Flatten the student, the method's trainable extras and peers into one tensor mapping."""
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    if extras is not None:
        state.update({f"extras.{k}": v for k, v in extras.state_dict().items()})
    for i, peer in enumerate(peers or []):
        state.update({f"peer{i}.{k}": v for k, v in peer.state_dict().items()})
    return state


def split_state(state: dict[str, torch.Tensor], prefix: str = "student") -> dict[str, torch.Tensor]:
    """The part of a checkpoint mapping under ``prefix.`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in state.items() if k.startswith(prefix + ".")}


@dataclass
class Run:
    """A run as it is on disk: read-only view with loaders for its models.

    Reading never raises for a damaged run where a listing needs it: :attr:`status` and
    :meth:`summary` report ``damaged`` with :attr:`damage`; the loaders (:attr:`config`,
    :attr:`metrics`, :attr:`model_spec`, :meth:`load_model`) raise a one-line
    :class:`RunStoreError` naming the run and the file.
    """

    id: str
    path: Path

    # ---- checks --------------------------------------------------------------------------------
    def _raw_status(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise Damage("run directory: unreadable or not a directory")
        return check_status(read_json_object(self.path / "status.json"))

    def _metrics_checked(self) -> dict[str, Any]:
        path = self.path / "metrics.json"
        if not os.path.lexists(path):
            return {"epochs": [], "summary": {}}
        return check_metrics(read_json_object(path))

    def _model_spec_checked(self) -> dict[str, Any]:
        return check_model_spec(read_json_object(self.path / "model.json"))

    def _problems(self) -> str | None:
        try:
            self._raw_status()
            read_config(self.path / "config.yaml")
            self._metrics_checked()
            if os.path.lexists(self.path / "model.json"):
                self._model_spec_checked()
            ckpts = self.path / "checkpoints"
            if os.path.lexists(ckpts) and not ckpts.is_dir():
                raise Damage("checkpoints: a file where a directory should be")
        except Damage as err:
            return str(err)
        except OSError as err:  # defensive: e.g. a directory that cannot be listed
            return f"run directory: unreadable ({os_reason(err)})"
        return None

    @property
    def damage(self) -> str | None:
        """Why the run cannot be read (``"status.json: not valid JSON (line 1, column 1)"``), or
        ``None`` for a healthy run. Checks status, config, metrics, the model description and the
        checkpoints folder; a missing metrics.json or model.json (a run just created) is not damage."""
        return self._problems()

    @property
    def status(self) -> dict[str, Any]:
        """The status record; ``status`` is ``failed`` (with its ``error``) for a running status whose
        process recorded a failure beside the run because status.json could not be written
        (:mod:`workbench.runs.failures`), ``interrupted`` for a running status whose process is gone
        (see :func:`process_gone`) and ``damaged`` (with a ``damage`` reason) when any of the run's
        files is damaged. Never raises."""
        try:
            info = self._raw_status()
        except Damage as err:
            return {"id": self.id, "status": "damaged", "damage": str(err)}
        problem = self._problems()
        if problem is not None:
            return {**info, "id": self.id, "status": "damaged", "damage": problem}
        if info.get("status") == "running":
            failed = read_failure(self.path, info)  # it could not write its own end (workbench.runs.failures)
            if failed is not None:
                return {**info, "status": "failed", **failed}
            if process_gone(info):
                info = {**info, "status": "interrupted"}
        return info

    # ---- loaders -------------------------------------------------------------------------------
    def _fail(self, err: Damage) -> RunStoreError:
        return RunStoreError(f"run {self.id}: {err}")

    @property
    def config(self) -> RunConfig:
        """The run's validated config; :class:`RunStoreError` when config.yaml is damaged."""
        try:
            return read_config(self.path / "config.yaml")
        except Damage as err:
            raise self._fail(err) from None

    @property
    def metrics(self) -> dict[str, Any]:
        """``{"epochs": [...], "summary": {...}, ...}`` (empty before the first write)."""
        try:
            return self._metrics_checked()
        except Damage as err:
            raise self._fail(err) from None

    def step_metrics(self) -> StepLog:
        """The run's step records (``steps.jsonl``, see :mod:`workbench.runs.steps`): a
        :class:`StepLog` of records and ``damage`` (one line, or None). Never raises; a run
        without step metrics has an empty log."""
        return read_step_log(self.path / STEP_LOG_FILE)

    @property
    def model_spec(self) -> dict[str, Any]:
        """How to rebuild the run's networks (``{"student": {"name", "kwargs", ...}, ...}``)."""
        try:
            return self._model_spec_checked()
        except Damage as err:
            raise self._fail(err) from None

    def checkpoint_path(self, name: str) -> Path:
        """The file of checkpoint ``name`` (``final``, ``best``, ``epoch_001``, ``resume``): the one
        place that spells a checkpoint's path. The file need not exist; a name that is not a
        checkpoint name (a path, ``..``) raises :class:`RunStoreError`."""
        if not isinstance(name, str) or not _CKPT_RE.fullmatch(name):
            shown = quoted(name) if isinstance(name, str) else type(name).__name__
            raise RunStoreError(f"run {self.id}: {shown} is not a checkpoint name")
        return self.path / "checkpoints" / f"{name}.safetensors"

    def checkpoints(self) -> list[str]:
        """Names of the saved checkpoints (``final``, ``best``, ``epoch_001``, ...); temp files of a
        writer (``.<name>.safetensors.<random>.tmp``) are never listed."""
        folder = self.path / "checkpoints"
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            return []
        return sorted(
            n[: -len(".safetensors")]
            for n in names
            if n.endswith(".safetensors") and _CKPT_RE.fullmatch(n[: -len(".safetensors")])
        )

    def epoch_checkpoints(self) -> list[tuple[int, str]]:
        """``(epoch, name)`` of per-epoch snapshots, in order (epochs counted from 1)."""
        out = []
        for name in self.checkpoints():
            head, _, num = name.partition("_")
            if head == "epoch" and num.isdigit():
                out.append((int(num), name))
        return sorted(out)

    def load_state(self, which: str = "final") -> dict[str, torch.Tensor]:
        """The full tensor mapping of one checkpoint (student, extras, peers).

        Raises:
            RunStoreError: no checkpoint ``which`` (the message names the ones the run has), or
                its file cannot be read.
        """
        have = self.checkpoints()
        if not isinstance(which, str) or which not in have:
            shown = quoted(which) if isinstance(which, str) else type(which).__name__
            raise RunStoreError(f"run {self.id}: no checkpoint {shown} (have: {', '.join(have) or 'none'})")
        try:
            return load_weights(self.checkpoint_path(which))
        except WeightsError as err:
            reason = str(err).split(": ", 1)[-1]
            raise RunStoreError(f"run {self.id}: checkpoint {which!r}: {reason}") from None

    def build_model(self, role: str = "student") -> nn.Module:
        """A freshly initialised network of the run's architecture (``student`` or ``peerN``)."""
        from workbench.models import create_model

        spec = self.model_spec
        net = spec.get(role) or spec["student"]
        try:
            return create_model(
                net["name"],
                num_classes=net["num_classes"],
                in_channels=net["in_channels"],
                image_size=net["image_size"],
                **(net.get("kwargs") or {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            msg = one_line(err)
            raise RunStoreError(f"run {self.id}: model.json cannot build the {role}: {msg}") from None

    def load_model(
        self, which: str = "final", role: str = "student", device: str | torch.device = "cpu"
    ) -> nn.Module:
        """The run's network with the weights of checkpoint ``which``, in eval mode.

        Raises:
            RunStoreError: one line naming the run and checkpoint when it is missing (listing the
                ones that exist), holds no ``role`` weights, or its tensors do not fit the network.
        """
        model = self.build_model("student" if role.startswith("peer") else role)
        state = split_state(self.load_state(which), role)
        if not state:
            raise RunStoreError(f"run {self.id}: checkpoint {which!r} holds no {role!r} weights")
        own = model.state_dict()
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if wrong or missing or unexpected:
            parts = []
            if wrong:
                k = wrong[0]
                parts.append(
                    f"{len(wrong)} tensor(s) of another shape, e.g. {k} is {list(state[k].shape)} "
                    f"in the checkpoint but {list(own[k].shape)} in the model"
                )
            if missing:
                parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
            raise RunStoreError(
                f"run {self.id}: checkpoint {which!r} does not fit the run's {role} network ({'; '.join(parts)})"
            )
        model.load_state_dict(state)
        return model.to(device).eval()

    def summary(self) -> dict[str, Any]:
        """One row for listings: id, kind, status, dataset, model, methods, key metrics, ``tags``
        (:mod:`workbench.runs.annotations`), ``damage`` (the reason, for a damaged run; else None) and
        ``error`` (one line: why a failed or interrupted run ended, when it was recorded; else None).
        Never raises."""
        status = self.status
        damage = status.get("damage") if status.get("status") == "damaged" else None
        error = status.get("error") if status.get("status") in ("failed", "interrupted") else None
        try:
            cfg = read_config(self.path / "config.yaml")
            dataset, model = cfg.data.label, cfg.model.name
            methods = "+".join(m.name for m in cfg.distill.methods)
        except Damage:
            dataset = model = methods = "?"
        try:
            summ = self._metrics_checked()["summary"]
        except Damage:
            summ = {}
        return {
            "id": self.id,
            "name": status.get("name"),
            "kind": status.get("kind"),
            "status": status.get("status"),
            "created": status.get("created"),
            "dataset": dataset,
            "model": model,
            "method": methods,
            "test_acc": summ.get("test_acc"),
            "best_test_acc": summ.get("best_test_acc"),
            "agreement": summ.get("agreement"),
            "epochs": summ.get("epochs_done"),
            "tags": list(read_annotations(self).tags),
            "damage": damage,
            "error": error if isinstance(error, str) and error.strip() else None,
        }


class RunWriter:
    """Writes one run's files; used by the engine's run-store subscriber.

    Every write is atomic and never creates the run directory: once the run was removed, a write
    raises :class:`RunDeletedError` and leaves nothing on disk.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        if not run.path.is_dir():
            raise RunDeletedError(f"run {run.id}: its directory is gone (the run was removed)")
        try:
            self._status = read_json_object(run.path / "status.json")
        except Damage as err:
            raise RunStoreError(f"run {run.id}: {err}") from None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def status(self) -> dict[str, Any]:
        """A copy of the status record as this writer last wrote it."""
        return dict(self._status)

    def _gone(self) -> RunDeletedError:
        return RunDeletedError(
            f"run {self.id}: its directory is gone (the run was removed while it was written); "
            "nothing more is recorded"
        )

    def cannot_write(self, path: Path, err: OSError) -> RunWriteError:
        """The one-line error for ``path`` of this run that could not be written because of ``err``."""
        try:
            shown = f"{self.id}/{path.relative_to(self.path).as_posix()}"
        except ValueError:
            shown = str(path)
        return RunWriteError(f"cannot write {shown}: {os_reason(err)}")

    def _write(self, fn: Any, path: Path, *args: Any) -> None:
        try:
            fn(path, *args, make_parents=False)
        except FileNotFoundError as err:
            if not self.path.is_dir():
                raise self._gone() from None
            raise self.cannot_write(path, err) from None
        except OSError as err:
            raise self.cannot_write(path, err) from None

    def update_status(self, **fields: Any) -> None:
        """Merge ``fields`` into status.json (``updated`` set to now).

        Raises:
            RunDeletedError: the run was removed. RunWriteError: status.json cannot be written
                (``cannot write <run>/status.json: Permission denied``).
        """
        self._status.update(fields, updated=utc_now())
        self._write(atomic_write_json, self.path / "status.json", self._status)

    def fail(self, error: str, **fields: Any) -> Path | None:
        """Record that the run failed with ``error`` (one line), where it can be recorded.

        In status.json (``status`` ``failed``, ``finished``, ``error`` and ``fields``) when it can be
        written; else in the store's failure record beside the run (:mod:`workbench.runs.failures`),
        which :attr:`Run.status` reads, so the run lists as ``failed`` with ``error`` rather than
        ``interrupted``.

        Returns:
            The file that holds the failure, or ``None`` when neither could be written (the store
            is unwritable too) or the run was removed. Never raises for a write that fails.
        """
        finished = utc_now()
        try:
            self.update_status(status="failed", finished=finished, error=error, **fields)
            return self.path / "status.json"
        except RunDeletedError:
            return None
        except RunWriteError:  # the record beside the run says why it failed (``error``), not this
            return record_failure(self.path, self._status, error, finished) if self.path.is_dir() else None

    def write_model_spec(self, spec: dict[str, Any]) -> None:
        """Write model.json."""
        self._write(atomic_write_json, self.path / "model.json", spec)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write metrics.json (``{"epochs": [...], "summary": {...}}``)."""
        self._write(atomic_write_json, self.path / "metrics.json", metrics)

    def save_checkpoint(
        self, name: str, state: dict[str, torch.Tensor], meta: dict[str, str] | None = None
    ) -> None:
        """Write ``checkpoints/<name>.safetensors`` (the folder made inside the run, never the run)."""
        if not _CKPT_RE.fullmatch(name):
            raise RunStoreError(f"run {self.id}: checkpoint name {quoted(name)} is not a plain name")
        folder = self.path / "checkpoints"
        try:
            folder.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise self._gone() from None
        except FileExistsError:
            raise RunStoreError(f"run {self.id}: checkpoints is a file, not a directory") from None
        except OSError as err:
            raise self.cannot_write(folder, err) from None
        self._write(atomic_save_safetensors, folder / f"{name}.safetensors", state, meta)


class RunStore:
    """A workspace of runs under ``root`` (default :func:`default_root`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is not None and not str(root).strip():
            raise RunStoreError("run store root: empty path; give a folder (or leave it unset for the default)")
        self.root = Path(root) if root is not None else default_root()

    def create(self, config: RunConfig, run_id: str | None = None) -> RunWriter:
        """Create a run directory (appears atomically, complete with config and status)."""
        if run_id is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            label = config.name or f"{config.kind}-{config.model.name}"
            run_id = f"{stamp}-{_slug(label)}-{uuid.uuid4().hex[:4]}"
        if not isinstance(run_id, str) or not _ID_RE.fullmatch(run_id):
            raise RunStoreError(f"run id {run_id!r}: use letters, digits, '-', '_' and '.' only")
        final = self.root / run_id
        if os.path.lexists(final):
            raise RunStoreError(f"run {run_id}: already exists in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{run_id}-{uuid.uuid4().hex[:6]}"
        staging.mkdir()
        try:
            atomic_write_text(staging / "config.yaml", config_to_yaml(config))
            now = utc_now()
            atomic_write_json(
                staging / "status.json",
                {
                    "id": run_id,
                    "name": config.name,
                    "kind": config.kind,
                    "status": "running",
                    "created": now,
                    "updated": now,
                    "started": now,
                    "finished": None,
                    "version": __version__,
                    "pid": os.getpid(),
                    "pid_start": process_start(os.getpid()),
                    "host": socket.gethostname(),
                },
            )
            if os.path.lexists(final):
                raise RunStoreError(f"run {run_id}: already exists in {self.root}")
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return RunWriter(Run(run_id, final))

    def ids(self) -> list[str]:
        """Ids of the runs in the store, damaged ones included, sorted.

        A run is a plain-named, non-hidden directory (symbolic links are not followed) holding a
        ``status.json`` or ``config.yaml``, or one that cannot be read (listed as damaged). Other
        folders (``sweeps``) and hidden entries (``.jobs``, ``.staging-*``, ``.trash-*``) are not runs.
        """
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:
            raise RunStoreError(f"run store {self.root}: cannot be read ({os_reason(err)})") from None
        out = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not _ID_RE.fullmatch(name):
                continue
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if _looks_like_run(Path(entry.path)):
                out.append(name)
        return sorted(out)

    def resolve(self, id_or_prefix: str) -> str:
        """The id of the run named by ``id_or_prefix``: an exact id, or a prefix of exactly one id.

        Raises:
            RunStoreError: the id is empty, not a plain name (a path, ``..``, a NUL, a leading
                ``.``), matches no run, or is a prefix of several (the message names them).
        """
        if not isinstance(id_or_prefix, str):
            raise RunStoreError(f"run id: expected text, got {type(id_or_prefix).__name__}")
        text = id_or_prefix
        if not text.strip():
            raise RunStoreError(f"run id {text!r}: empty; give a run id or a unique prefix of one")
        if not _ID_RE.fullmatch(text):
            raise RunStoreError(
                f"run id {quoted(text)}: not a plain run name (letters, digits, '-', '_' and '.', "
                "starting with a letter or digit; no paths)"
            )
        matches = prefix_matches(text, self.ids())
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunStoreError(f"run {text!r}: not found in {self.root}")
        more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
        raise RunStoreError(
            f"run {text!r}: ambiguous, the prefix of {len(matches)} runs: {', '.join(matches[:8])}{more}"
        )

    def load(self, run_id: str) -> Run:
        """The run ``run_id`` (an exact id or a unique prefix, see :meth:`resolve`). A damaged run
        loads too; its loaders raise :class:`RunStoreError` naming the damaged file."""
        full = self.resolve(run_id)
        return Run(full, self.root / full)

    def list(
        self,
        kind: str | None = None,
        status: str | None = None,
        dataset: str | None = None,
        model: str | None = None,
        method: str | None = None,
    ) -> list[Run]:
        """Runs, oldest first (by id), filtered by any of kind, status, dataset, model and method.

        Damaged runs are listed (status ``damaged``, see :attr:`Run.damage`) unless a filter on
        kind, dataset, model or method excludes them; ``status="damaged"`` lists only them.
        """
        if status is not None and status not in STATUSES:
            raise RunStoreError(f"status filter {status!r}: expected one of {', '.join(STATUSES)}")
        runs = []
        for run_id in self.ids():
            run = Run(run_id, self.root / run_id)
            info = run.summary()
            if kind and info["kind"] != kind:
                continue
            if status and info["status"] != status:
                continue
            if dataset and info["dataset"] != dataset:
                continue
            if model and info["model"] != model:
                continue
            if method and method not in str(info["method"]).split("+"):
                continue
            runs.append(run)
        return runs

    def remove(self, run_id: str, *, force: bool = False) -> str:
        """Remove a run (exact id or unique prefix); returns its id.

        The directory is first renamed out of the listing (``.trash-*``), then deleted, so the run
        is either listed whole or not at all. A run whose process is alive (status ``running``) is
        refused unless ``force``; its writer then fails on its next write without recreating it.

        Raises:
            RunStoreError: the id does not resolve, the run is running, or it cannot be renamed.
        """
        full = self.resolve(run_id)
        run = Run(full, self.root / full)
        if not force:
            try:
                info = run._raw_status()  # liveness counts even when another file is damaged
            except Damage:
                info = {}
            if info.get("status") == "running" and not process_gone(info):
                who = f"pid {info.get('pid')} on {info.get('host')}" if info.get("pid") else "its process"
                raise RunStoreError(f"run {full}: still running ({who}); stop it first, or force the removal")
        trash = self.root / f".trash-{full}-{uuid.uuid4().hex[:6]}"
        try:
            os.replace(run.path, trash)
        except FileNotFoundError:
            raise RunStoreError(f"run {full}: not found in {self.root} (removed meanwhile)") from None
        except OSError as err:
            raise RunStoreError(f"run {full}: cannot be removed ({os_reason(err)})") from None
        shutil.rmtree(trash, ignore_errors=True)
        clear_failure(self.root, full)
        return full

    def delete(self, run_id: str, *, force: bool = False) -> str:
        """Alias of :meth:`remove`."""
        return self.remove(run_id, force=force)

    def gc(self, dry_run: bool = False, *, min_age_s: float = GC_MIN_AGE_S) -> list[Path]:
        """Remove what killed processes left behind and return the paths removed (or, with
        ``dry_run``, those that would be).

        Cleans ``.trash-*`` folders (any age), ``.staging-*`` folders and ``*.tmp`` / ``*.part``
        files at the root, in run directories and in their ``checkpoints/`` whose newest
        modification is older than ``min_age_s`` seconds (a younger one may belong to a writer
        running now), and the failure records (:mod:`workbench.runs.failures`) of runs no longer in
        the store. Live runs' files, damaged runs and anything else are left alone.
        """
        if not self.root.is_dir():
            return []
        now = time.time()
        found: list[Path] = []

        def old(path: Path) -> bool:
            newest = _newest_mtime(path)
            return newest is not None and now - newest >= min_age_s

        try:
            top = sorted(self.root.iterdir())
        except OSError as err:
            raise RunStoreError(f"run store {self.root}: cannot be read ({os_reason(err)})") from None
        for path in top:
            name = path.name
            if path.is_symlink():
                continue
            if name.startswith(".trash-") or (name.startswith(".staging-") and old(path)):
                found.append(path)
            elif name.endswith(_TEMP_SUFFIXES) and path.is_file() and old(path):
                found.append(path)
        live = self.ids()
        for run_id in live:
            for folder in (self.root / run_id, self.root / run_id / "checkpoints"):
                try:
                    children = sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
                except OSError:
                    continue
                for path in children:
                    if path.name.endswith(_TEMP_SUFFIXES) and path.is_file() and old(path):
                        found.append(path)
        # a failure record (workbench.runs.failures) of a run no longer here
        found.extend(failure_path(self.root, i) for i in failure_ids(self.root) if i not in live)
        if dry_run:
            return found
        removed = []
        for path in found:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                continue
            removed.append(path)
        return removed


def _looks_like_run(path: Path) -> bool:
    """A directory holding status.json or config.yaml (any kind of entry), or an unreadable one."""
    for name in ("status.json", "config.yaml"):
        try:
            os.lstat(path / name)
            return True
        except FileNotFoundError:
            continue
        except OSError:
            return True  # e.g. permission denied: a run we cannot read, listed as damaged
    return False


def _newest_mtime(path: Path) -> float | None:
    """The newest modification time of ``path`` and, for a folder, of everything in it."""
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return None
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except OSError:
                    continue
    return newest
