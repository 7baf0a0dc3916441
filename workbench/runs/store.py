"""The run store: one directory per run under a workspace root, written atomically.

Layout of a run directory::

    <root>/<run_id>/
        config.yaml        the validated RunConfig
        status.json        status (running|completed|failed|stopped), timestamps, version, pid
        model.json         how to rebuild the networks (registry name, kwargs, shapes)
        metrics.json       per-epoch metrics and a summary
        checkpoints/       final / best / epoch_NNN .safetensors

Every file is replaced by temp-file + rename, and a run directory appears by renaming a
complete staging directory, so a process killed at any moment leaves every run loadable. A run
whose status says ``running`` but whose process is gone is reported as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from workbench import __version__
from workbench.config import ConfigError, RunConfig, config_to_yaml, validate_config
from workbench.runs.atomic import atomic_save_safetensors, atomic_write_json, atomic_write_text, load_weights

STATUSES = ("running", "completed", "failed", "stopped", "interrupted")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class RunStoreError(ValueError):
    """A run cannot be found or read; the message names the run."""


def default_root() -> Path:
    """The workspace root: ``$WORKBENCH_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("WORKBENCH_RUNS", "runs"))


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (seconds), as status files record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "run"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    """A run as it is on disk: read-only view with loaders for its models."""

    id: str
    path: Path

    @property
    def status(self) -> dict[str, Any]:
        info = _read_json(self.path / "status.json", self.id)
        if info.get("status") == "running" and info.get("host") == socket.gethostname():
            pid = info.get("pid")
            if isinstance(pid, int) and not _pid_alive(pid):
                info = {**info, "status": "interrupted"}
        return info

    @property
    def config(self) -> RunConfig:
        path = self.path / "config.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise RunStoreError(f"run {self.id}: config.yaml unreadable ({err})") from None
        try:
            return validate_config(data)
        except ConfigError as err:
            raise RunStoreError(f"run {self.id}: config.yaml invalid: {err}") from None

    @property
    def metrics(self) -> dict[str, Any]:
        path = self.path / "metrics.json"
        if not path.exists():
            return {"epochs": [], "summary": {}}
        return _read_json(path, self.id)

    @property
    def model_spec(self) -> dict[str, Any]:
        return _read_json(self.path / "model.json", self.id)

    def checkpoints(self) -> list[str]:
        """Names of the saved checkpoints (``final``, ``best``, ``epoch_001``, ...)."""
        folder = self.path / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.safetensors"))

    def epoch_checkpoints(self) -> list[tuple[int, str]]:
        """``(epoch, name)`` of per-epoch snapshots, in order (epochs counted from 1)."""
        out = []
        for name in self.checkpoints():
            if name.startswith("epoch_"):
                out.append((int(name.split("_", 1)[1]), name))
        return sorted(out)

    def load_state(self, which: str = "final") -> dict[str, torch.Tensor]:
        """The full tensor mapping of one checkpoint (student, extras, peers)."""
        path = self.path / "checkpoints" / f"{which}.safetensors"
        if not path.exists():
            have = ", ".join(self.checkpoints()) or "none"
            raise RunStoreError(f"run {self.id}: no checkpoint {which!r} (have: {have})")
        return load_weights(path)

    def build_model(self, role: str = "student") -> nn.Module:
        """A freshly initialised network of the run's architecture (``student`` or ``peerN``)."""
        from workbench.models import create_model

        spec = self.model_spec
        net = spec.get(role) or spec["student"]
        return create_model(
            net["name"],
            num_classes=net["num_classes"],
            in_channels=net["in_channels"],
            image_size=net["image_size"],
            **net.get("kwargs", {}),
        )

    def load_model(
        self, which: str = "final", role: str = "student", device: str | torch.device = "cpu"
    ) -> nn.Module:
        """The run's network with the weights of checkpoint ``which``, in eval mode."""
        model = self.build_model("student" if role.startswith("peer") else role)
        state = split_state(self.load_state(which), role)
        if not state:
            raise RunStoreError(f"run {self.id}: checkpoint {which!r} holds no {role!r} weights")
        model.load_state_dict(state)
        return model.to(device).eval()

    def summary(self) -> dict[str, Any]:
        """One row for listings: id, kind, status, dataset, model, methods, key metrics."""
        status = self.status
        try:
            cfg = self.config
            dataset, model = cfg.data.dataset, cfg.model.name
            methods = "+".join(m.name for m in cfg.distill.methods)
        except RunStoreError:
            dataset = model = methods = "?"
        summ = self.metrics.get("summary", {})
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
        }


class RunWriter:
    """Writes one run's files; used by the engine's run-store subscriber."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._status = _read_json(run.path / "status.json", run.id)

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def path(self) -> Path:
        return self.run.path

    def update_status(self, **fields: Any) -> None:
        self._status.update(fields, updated=utc_now())
        atomic_write_json(self.path / "status.json", self._status)

    def write_model_spec(self, spec: dict[str, Any]) -> None:
        atomic_write_json(self.path / "model.json", spec)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.path / "metrics.json", metrics)

    def save_checkpoint(
        self, name: str, state: dict[str, torch.Tensor], meta: dict[str, str] | None = None
    ) -> None:
        atomic_save_safetensors(self.path / "checkpoints" / f"{name}.safetensors", state, meta)


class RunStore:
    """A workspace of runs under ``root`` (default :func:`default_root`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def create(self, config: RunConfig, run_id: str | None = None) -> RunWriter:
        """Create a run directory (appears atomically, complete with config and status)."""
        if run_id is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            label = config.name or f"{config.kind}-{config.model.name}"
            run_id = f"{stamp}-{_slug(label)}-{uuid.uuid4().hex[:4]}"
        if not _ID_RE.match(run_id):
            raise RunStoreError(f"run id {run_id!r}: use letters, digits, '-', '_' and '.' only")
        final = self.root / run_id
        if final.exists():
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
                    "host": socket.gethostname(),
                },
            )
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return RunWriter(Run(run_id, final))

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "status.json").exists()
        )

    def load(self, run_id: str) -> Run:
        """The run ``run_id``; a unique prefix of an id is accepted."""
        path = self.root / run_id
        if path.is_dir() and (path / "status.json").exists() and not run_id.startswith("."):
            return Run(run_id, path)
        matches = [i for i in self.ids() if i.startswith(run_id) or run_id in i]
        if len(matches) == 1:
            return Run(matches[0], self.root / matches[0])
        if not matches:
            raise RunStoreError(f"run {run_id!r}: not found in {self.root}")
        raise RunStoreError(f"run {run_id!r}: ambiguous, matches {', '.join(matches[:5])}")

    def list(
        self,
        kind: str | None = None,
        status: str | None = None,
        dataset: str | None = None,
        model: str | None = None,
        method: str | None = None,
    ) -> list[Run]:
        """Runs, oldest first, filtered by any of kind, status, dataset, model and method."""
        if status is not None and status not in STATUSES:
            raise RunStoreError(f"status filter {status!r}: expected one of {', '.join(STATUSES)}")
        runs = []
        for run_id in self.ids():
            run = Run(run_id, self.root / run_id)
            try:
                info = run.summary()
            except RunStoreError:
                continue
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

    def delete(self, run_id: str) -> str:
        """Remove a run: renamed out of the listing first, then deleted. Returns its id."""
        run = self.load(run_id)
        trash = self.root / f".trash-{run.id}-{uuid.uuid4().hex[:6]}"
        os.replace(run.path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return run.id


def _read_json(path: Path, run_id: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"run {run_id}: {path.name} is missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunStoreError(f"run {run_id}: {path.name} unreadable ({err})") from None
