"""What resuming a run needs, saved at every epoch end and restored before the next epoch.

A resume point is one safetensors file, ``checkpoints/resume.safetensors``, written atomically
over the previous one (only the latest is kept). Its tensors are:

* ``student.*``, ``extras.*``, ``peerN.*`` — the training state (as in every checkpoint);
* ``buffer.<path>`` — every buffer of the method stack, non-persistent ones included (memory
  banks, normalisation constants), so the method's own state comes back as it was;
* ``optim.<i>.<key>`` — the optimizer's per-parameter state (momentum, Adam moments), ``i`` the
  parameter's position in the optimizer;
* ``rng.torch``, ``rng.cuda<k>``, ``rng.gen.<path>`` — torch's CPU and CUDA generator states and
  any ``torch.Generator`` a method holds.

Its safetensors metadata ``resume`` holds JSON: the epoch and step reached, the training seconds
so far, the best test accuracy, the metrics history, Python's and NumPy's RNG states, the
optimizer's hyperparameters and scalar state, the batch loader's epoch, each method's plain
attributes (flags, counters) and the run's config. Tensors and metadata live in one file, so they
can never disagree.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.config import ConfigError, RunConfig

RESUME_CHECKPOINT = "resume"
FORMAT = 1


class ResumeError(ValueError):
    """A run cannot be resumed; one line naming the run and the reason."""


@dataclass
class ResumePoint:
    """A resume point in memory: tensors (CPU) and JSON-ready metadata."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def elapsed(self) -> float:
        """Seconds of training before this point (0 for a point written without them)."""
        return float(self.meta.get("elapsed", 0.0))

    @property
    def history(self) -> list[dict[str, Any]]:
        return [dict(h) for h in self.meta["history"]]

    def file_metadata(self) -> dict[str, str]:
        """The safetensors metadata to store with :attr:`tensors`."""
        return {"resume": json.dumps(self.meta, allow_nan=True)}

    @classmethod
    def from_file(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> ResumePoint:
        """Rebuild from a loaded file; :class:`ResumeError` when its metadata is missing or wrong."""
        try:
            meta = json.loads((metadata or {})["resume"])
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
        except (KeyError, ValueError, TypeError) as err:
            raise ResumeError(f"resume checkpoint: unreadable metadata ({err})") from None
        return cls(tensors, meta)


# ---- RNG states ------------------------------------------------------------------------------
def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list[Any]) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---- method attributes -----------------------------------------------------------------------
_PLAIN = (bool, int, float, str, type(None))


def _method_attrs(method: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Plain attributes (flags, counters, devices) of every module of the method stack and the
    states of the generators they hold."""
    attrs: dict[str, Any] = {}
    gens: dict[str, torch.Tensor] = {}
    for path, module in method.named_modules():
        for name, value in vars(module).items():
            if name.startswith("__") or name == "training":
                continue
            key = f"{path}:{name}" if path else f":{name}"
            if isinstance(value, torch.Generator):
                gens[f"rng.gen.{key}"] = value.get_state()
                attrs[key] = {"generator": str(value.device)}
            elif isinstance(value, torch.device):
                attrs[key] = {"device": str(value)}
            elif isinstance(value, _PLAIN):
                attrs[key] = value
    return attrs, gens


def _set_method_attrs(method: nn.Module, attrs: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    modules = dict(method.named_modules())
    for key, value in attrs.items():
        path, _, name = key.partition(":")
        module = modules.get(path)
        if module is None:
            continue
        if isinstance(value, dict) and "generator" in value:
            gen = torch.Generator(device=value["generator"])
            gen.set_state(tensors[f"rng.gen.{key}"])
            object.__setattr__(module, name, gen)
        elif isinstance(value, dict) and "device" in value:
            object.__setattr__(module, name, torch.device(value["device"]))
        elif name in vars(module) and isinstance(vars(module)[name], _PLAIN):
            object.__setattr__(module, name, value)


# ---- capture and restore ---------------------------------------------------------------------
def capture(
    *,
    state: dict[str, torch.Tensor],
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    best: float,
    history: list[dict[str, Any]],
    loader_epoch: int,
    config: RunConfig,
    elapsed: float = 0.0,
) -> ResumePoint:
    """Everything needed to continue training after ``epoch`` (counted from 1), as CPU tensors and
    JSON; ``state`` is the training state (:func:`workbench.train.training_state`), ``elapsed`` the
    seconds since training started (the step log's clock continues from there)."""
    tensors = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
    for name, buf in method.named_buffers():
        tensors[f"buffer.{name}"] = buf.detach().to("cpu", copy=True)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    scalar_state: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{i}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalar_state.setdefault(str(i), {})[key] = value
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for k, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{k}"] = s
    attrs, gens = _method_attrs(method)
    tensors.update(gens)
    meta = {
        "format": FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "best": float(best),
        "history": history,
        "loader_epoch": int(loader_epoch),
        "elapsed": float(elapsed),
        "python_rng": _python_state(),
        "numpy_rng": _numpy_state(),
        "optimizer": {
            "groups": _jsonable(groups),
            "scalars": _jsonable(scalar_state),
            "n_params": len(params),
        },
        "method_attrs": attrs,
        "config": config.model_dump(mode="json"),
    }
    return ResumePoint(tensors, meta)


def restore(point: ResumePoint, *, method: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Put the optimizer state, the method's buffers and attributes and every RNG back as
    ``point`` recorded them (the training state is loaded by the caller)."""
    t = point.tensors
    meta = point.meta
    buffers = dict(method.named_buffers())
    with torch.no_grad():
        for name, buf in buffers.items():
            saved = t.get(f"buffer.{name}")
            if saved is not None and saved.shape == buf.shape:
                buf.copy_(saved.to(buf.device, buf.dtype))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if meta["optimizer"]["n_params"] != len(params):
        raise ResumeError(
            f"resume checkpoint: the optimizer had {meta['optimizer']['n_params']} parameters, now {len(params)}"
        )
    for group, saved in zip(optimizer.param_groups, meta["optimizer"]["groups"], strict=True):
        for k, v in saved.items():
            group[k] = tuple(v) if isinstance(group.get(k), tuple) else v
    scalars = meta["optimizer"]["scalars"]
    prefix_len = len("optim.")
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in t.items():
        if key.startswith("optim."):
            i, _, name = key[prefix_len:].partition(".")
            per_param.setdefault(int(i), {})[name] = value
    for i, value in scalars.items():
        per_param.setdefault(int(i), {}).update(value)
    for i, entries in per_param.items():
        p = params[i]
        state = optimizer.state[p]
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                # step counters stay on the CPU as torch keeps them; moments follow their parameter
                on_cpu = name == "step" or value.ndim == 0 and not p.is_cuda
                state[name] = value.clone() if on_cpu else value.to(p.device, copy=True)
            else:
                state[name] = value
    _set_method_attrs(method, meta.get("method_attrs", {}), t)
    version, internal, gauss = meta["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    _set_numpy_state(meta["numpy_rng"])
    torch.set_rng_state(t["rng.torch"])
    cuda = sorted((k for k in t if k.startswith("rng.cuda")), key=lambda k: int(k[len("rng.cuda") :]))
    if cuda and torch.cuda.is_available():
        states = [t[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return obj


def config_difference(recorded: RunConfig, given: RunConfig) -> str | None:
    """The first dotted field (other than ``train.epochs``) where ``given`` differs from
    ``recorded``, with both values; None when they agree."""

    def walk(a: Any, b: Any, path: str) -> str | None:
        if path == "train.epochs":
            return None
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(dict.fromkeys([*a, *b])):
                found = walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
                if found:
                    return found
            return None
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                found = walk(x, y, f"{path}[{i}]")
                if found:
                    return found
            return None
        if a != b:
            return f"{path}: {json.dumps(b)[:60]} differs from the run's recorded {json.dumps(a)[:60]}"
        return None

    return walk(recorded.model_dump(mode="json"), given.model_dump(mode="json"), "")


def check_resumable_config(run_id: str, recorded: RunConfig, given: RunConfig) -> None:
    """Raise a one-line :class:`ConfigError` naming the first field (other than ``train.epochs``)
    in which ``given`` differs from the config ``run_id`` was started with."""
    diff = config_difference(recorded, given)
    if diff is not None:
        raise ConfigError(f"{diff} (resume {run_id}: only train.epochs may change)")


__all__ = [
    "RESUME_CHECKPOINT",
    "ResumeError",
    "ResumePoint",
    "capture",
    "check_resumable_config",
    "config_difference",
    "restore",
]
