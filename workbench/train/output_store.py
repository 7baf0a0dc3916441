"""Fixed teachers' outputs kept in the run store across runs: computed by one run, read by the next.

A run with a deterministic input pipeline fills its teacher cache (:mod:`workbench.train.cache`) with
the teachers' logits and the features its method reads; this module keeps that cache, and the
teachers' test logits, under ``<store>/.cache/teacher-outputs/<key>.safetensors`` (with
``<key>.json`` naming the key's parts), so that a later run with the same key loads them and runs no
teacher forward over the train or the test split.

The key is a hash of everything that decides the values (:func:`output_key_parts`):

* the teachers' weights: :func:`teacher_weights_hash` (SHA-256 of each network's structure and
  state-dict tensors in name order);
* the data: :func:`workbench.data.fingerprint.dataset_fingerprint` of the split (every pixel and
  label, in order, so another ``train_subset`` or ordering is another key);
* the input transform: normalisation constants, the channels-last layout, ``train_subset``, the
  teachers' precision (``distill.teacher_precision`` as resolved) and the device type;
* the outputs: logits and the feature paths the method taps.

An augmented training pipeline keeps nothing of the train split (the engine caches nothing then; the
test split is never augmented). Entries are written whole (temp file + rename) once complete and
carry a BLAKE2b digest of their tensors; one that cannot be read, fails its digest or has the wrong
shapes is ignored, removed and recomputed. An entry larger than the run's
``distill.cache_budget_mb`` is not written; the folder is capped at :data:`STORE_CAP_MB`, evicting
the least recently used entries (by modification time, which a read refreshes).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from workbench.config import RunConfig
from workbench.data import Dataset
from workbench.data.fingerprint import dataset_fingerprint, tensor_bytes
from workbench.runs import RunStore
from workbench.runs.atomic import atomic_save_safetensors, atomic_write_json
from workbench.train.cache import TeacherCache, precision_name

#: where the entries live, relative to the run store's folder
STORE_FOLDER = Path(".cache") / "teacher-outputs"
#: the folder's size cap in MiB; beyond it the least recently used entries are evicted
STORE_CAP_MB = 2048
#: the layout of an entry's key parts and tensors; a change makes every older entry a miss
FORMAT = 1
#: temp files left by a killed writer are removed by eviction once this old (seconds)
STALE_TEMP_S = 3600.0

_HASHES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], str]] = weakref.WeakKeyDictionary()
_HASH_LOCK = threading.Lock()


def teacher_weights_hash(module: nn.Module) -> str:
    """SHA-256 (hex) of ``module``'s weights: its structure (``repr``) and every state-dict tensor
    (name, dtype, shape, bytes) in name order. Equal weights in an equal network give an equal hash
    wherever they were loaded from (a shipped file, a run's checkpoint, a module passed in) and on
    whatever device. Memoised per module object while none of its tensors is replaced or edited in
    place."""
    state = module.state_dict(keep_vars=True)
    stamp = tuple(x for t in state.values() for x in (id(t), t._version))
    with _HASH_LOCK:
        memo = _HASHES.get(module)
        if memo is not None and memo[0] == stamp:
            return memo[1]
    h = hashlib.sha256(repr(module).encode("utf-8"))
    for name in sorted(state):
        t = state[name]
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(tensor_bytes(t))
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASHES[module] = (stamp, digest)
    return digest


def output_key_parts(
    teachers: Sequence[nn.Module],
    data: Dataset,
    split: str,
    paths: Sequence[str],
    *,
    precision: str,
    channels_last: bool,
    device: torch.device | str,
    train_subset: int | None = None,
) -> dict[str, Any]:
    """The parts of a teacher-output key, as a JSON-ready dict: the teachers' weight hashes (in
    order), ``split``'s fingerprint and size, the transform (``data``'s mean and std, the
    channels-last layout, ``train_subset``, ``precision`` such as ``"float32"`` or ``"bfloat16"``,
    the device type) and the outputs (logits and the feature ``paths``)."""
    return {
        "format": FORMAT,
        "teachers": [teacher_weights_hash(t) for t in teachers],
        "data": {"name": data.name, "split": split, "fingerprint": dataset_fingerprint(data, split)},
        "rows": len(getattr(data, split)),
        "transform": {
            "mean": list(data.mean),
            "std": list(data.std),
            "channels_last": bool(channels_last),
            "train_subset": train_subset,
            "precision": precision,
            "device": torch.device(device).type,
        },
        "outputs": {"logits": True, "features": sorted(set(paths))},
    }


def output_key(parts: Mapping[str, Any]) -> str:
    """The key (32 hex digits of SHA-256) of :func:`output_key_parts`' ``parts``."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _flatten(cache: TeacherCache) -> dict[str, torch.Tensor]:
    out = {f"logits/{i}": t for i, t in enumerate(cache.logits)}
    for i, feats in enumerate(cache.features):
        out.update({f"features/{i}/{p}": v for p, v in feats.items()})
    return out


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


class TeacherOutputStore:
    """The folder of stored teacher outputs of one run store (``<root>/.cache/teacher-outputs``).

    :meth:`load` returns a stored :class:`~workbench.train.cache.TeacherCache` for a key's parts or
    None (missing, unreadable, corrupt or of other shapes: never an error); :meth:`save` writes one
    atomically and evicts the least recently used entries beyond ``cap_mb``."""

    def __init__(self, root: str | Path, *, cap_mb: float = STORE_CAP_MB) -> None:
        self.folder = Path(root) / STORE_FOLDER
        self.cap_bytes = int(cap_mb * 2**20)

    def path(self, key: str) -> Path:
        """The tensors file of ``key``."""
        return self.folder / f"{key}.safetensors"

    def load(self, parts: Mapping[str, Any], device: torch.device | str = "cpu") -> TeacherCache | None:
        """The outputs stored for ``parts`` on ``device``, or None when there are none usable.
        A file that cannot be read, whose key or digest does not match, or whose tensors do not
        have the rows, teachers and feature paths ``parts`` asks for is removed (a later run
        writes it anew)."""
        key = output_key(parts)
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                meta = fh.metadata() or {}
                tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError, RuntimeError):
            self._discard(key)
            return None
        cache = _unflatten(tensors, parts)
        if cache is None or meta.get("key") != key or meta.get("digest") != _digest(tensors):
            self._discard(key)
            return None
        try:
            os.utime(path)  # a read counts as a use for eviction
        except OSError:
            pass
        return TeacherCache(
            logits=[t.to(device) for t in cache.logits],
            features=[{p: v.to(device) for p, v in f.items()} for f in cache.features],
        )

    def save(self, parts: Mapping[str, Any], cache: TeacherCache, *, budget_mb: float) -> bool:
        """Write ``cache`` as the entry of ``parts`` (tensors, then the JSON of the parts), then
        evict beyond the cap; False, writing nothing, when the entry is larger than ``budget_mb``
        or the cap, or when the folder cannot be written (a full or read-only disk is not an
        error for the run)."""
        size = cache.nbytes
        if size > budget_mb * 2**20 or size > self.cap_bytes:
            return False
        key = output_key(parts)
        tensors = {k: v.detach().float().to("cpu").contiguous() for k, v in _flatten(cache).items()}
        meta = {"key": key, "digest": _digest(tensors), "parts": json.dumps(parts, sort_keys=True)}
        try:
            atomic_save_safetensors(self.path(key), tensors, meta)
            atomic_write_json(self.folder / f"{key}.json", {"key": key, "bytes": size, **parts})
        except OSError:
            return False
        self.evict(keep=key)
        return True

    def entries(self) -> list[tuple[str, int, float]]:
        """``(key, bytes, mtime)`` of every entry, least recently used first."""
        out = []
        try:
            found = list(os.scandir(self.folder))
        except OSError:
            return []
        for entry in found:
            if not entry.name.endswith(".safetensors") or entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            out.append((entry.name.removesuffix(".safetensors"), st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: (e[2], e[0]))

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove the least recently used entries until the folder is within the cap (never
        ``keep``), and temp files older than :data:`STALE_TEMP_S`; returns the keys removed."""
        self._clear_stale_temps()
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for key, size, _ in entries:
            if total <= self.cap_bytes:
                break
            if key == keep:
                continue
            self._discard(key)
            total -= size
            removed.append(key)
        return removed

    def _discard(self, key: str) -> None:
        for path in (self.path(key), self.folder / f"{key}.json"):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    def _clear_stale_temps(self) -> None:
        now = time.time()
        try:
            found = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in found:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S:
                        os.unlink(entry.path)
                except OSError:
                    continue


def _unflatten(tensors: Mapping[str, torch.Tensor], parts: Mapping[str, Any]) -> TeacherCache | None:
    """The cache held by ``tensors`` when it has exactly the rows, teachers and paths of ``parts``."""
    n, k = int(parts["rows"]), len(parts["teachers"])
    paths = list(parts["outputs"]["features"])
    expected = {f"logits/{i}" for i in range(k)} | {f"features/{i}/{p}" for i in range(k) for p in paths}
    if set(tensors) != expected:
        return None
    if any(t.dtype != torch.float32 or t.ndim < 1 or t.shape[0] != n for t in tensors.values()):
        return None
    if any(tensors[f"logits/{i}"].ndim != 2 for i in range(k)):
        return None
    return TeacherCache(
        logits=[tensors[f"logits/{i}"] for i in range(k)],
        features=[{p: tensors[f"features/{i}/{p}"] for p in paths} for i in range(k)],
    )


class StoredTeacherOutputs:
    """One run's view of the store: its fixed teachers' outputs on the train split (the teacher
    cache) and on the test split (the test logits), each under its own key. With ``store=None``
    (a run that keeps nothing) every load misses and every save is skipped.

    The keys' parts are computed on first use (fingerprinting the split, hashing the teachers
    once). Nothing here ever fails a run: a miss or an unwritable store means the outputs are
    computed as without a store."""

    def __init__(
        self,
        store: TeacherOutputStore | None,
        parts: Callable[[str], dict[str, Any]],
        budget_mb: float,
    ) -> None:
        self.store = store
        self._parts_of = parts
        self._parts: dict[str, dict[str, Any]] = {}
        self.budget_mb = float(budget_mb)
        #: what this run did with the store, per split: "loaded", "saved" or "computed"
        self.used: dict[str, str] = {}

    def parts(self, split: str) -> dict[str, Any]:
        """The key parts of ``split``'s entry (computed once)."""
        if split not in self._parts:
            self._parts[split] = self._parts_of(split)
        return self._parts[split]

    def _load(self, split: str, device: torch.device | str) -> TeacherCache | None:
        cache = self.store.load(self.parts(split), device) if self.store is not None else None
        self.used[split] = "loaded" if cache is not None else "computed"
        return cache

    def _save(self, split: str, cache: TeacherCache) -> None:
        if self.store is not None and self.store.save(self.parts(split), cache, budget_mb=self.budget_mb):
            self.used[split] = "saved"

    def load_train(self, device: torch.device | str) -> TeacherCache | None:
        """The stored train-split cache on ``device``, or None."""
        return self._load("train", device)

    def save_train(self, cache: TeacherCache) -> None:
        """Store a complete train-split cache (when within the run's budget)."""
        self._save("train", cache)

    def test_logits(
        self,
        compute: Callable[[], tuple[torch.Tensor, list[torch.Tensor]]],
        device: torch.device | str,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teachers' mean test logits and each teacher's own: read from the store, else
        ``compute()``-d and stored."""
        cache = self._load("test", device)
        if cache is not None:
            each = list(cache.logits)
            return torch.stack(each).mean(0), each
        mean, each = compute()
        self._save("test", TeacherCache(logits=list(each), features=[{} for _ in each]))
        return mean, each


def stored_teacher_outputs(
    store: RunStore | None,
    config: RunConfig,
    data: Dataset,
    teachers: Sequence[nn.Module],
    paths: Sequence[str],
    *,
    fixed: bool,
    dtype: torch.dtype | None,
    channels_last: bool,
    device: torch.device | str,
) -> StoredTeacherOutputs:
    """The run store's outputs of a run's ``teachers`` on ``data``; one that keeps nothing (no
    :class:`TeacherOutputStore`) without a store, without teachers, for teachers that are not
    ``fixed`` (a method trains or moves them) or with ``distill.teacher_cache`` off.

    Train-split entries hold the logits and the features at ``paths``, test-split entries the
    logits; the key's transform parts are ``data``'s normalisation, ``channels_last``, the
    config's ``data.train_subset``, ``dtype`` (the teachers' autocast dtype, None for float32) and
    ``device``; entries larger than ``distill.cache_budget_mb`` are not written."""
    keeps = store is not None and bool(teachers) and fixed and config.distill.teacher_cache

    def parts(split: str) -> dict[str, Any]:
        return output_key_parts(
            teachers,
            data,
            split,
            paths if split == "train" else (),
            precision=precision_name(dtype),
            channels_last=channels_last,
            device=device,
            train_subset=config.data.train_subset if split == "train" else None,
        )

    folder = TeacherOutputStore(store.root) if keeps and store is not None else None
    return StoredTeacherOutputs(folder, parts, config.distill.cache_budget_mb)
