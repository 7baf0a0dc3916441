"""Atomic file writes (temp file in the same folder + fsync + rename) and safe weight loading."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from workbench.errors import one_line


class WeightsError(ValueError):
    """A weights file cannot be read safely; the message names the file."""


@contextlib.contextmanager
def _replacing(path: Path, make_parents: bool) -> Iterator[str]:
    """A temp file beside ``path`` for the caller to write; once written it is fsynced and
    renamed over ``path``. On any error the temp file is removed and ``path`` is untouched."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    With ``make_parents=False`` a missing folder is not created: the write raises
    :class:`FileNotFoundError` instead (a run writer must never recreate a deleted run).
    """
    with _replacing(Path(path), make_parents) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, *, make_parents: bool = True) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes` for ``make_parents``)."""
    atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def atomic_write_json(path: str | Path, obj: Any, *, make_parents: bool = True) -> None:
    """Atomically write ``obj`` as indented JSON (NaN and infinities written as null)."""
    text = json.dumps(_finite(obj), indent=1, sort_keys=False) + "\n"
    atomic_write_text(path, text, make_parents=make_parents)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_save_safetensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    make_parents: bool = True,
) -> None:
    """Atomically save a flat mapping of tensors as safetensors (tensors made contiguous on CPU);
    ``make_parents`` as in :func:`atomic_write_bytes`."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with _replacing(Path(path), make_parents) as tmp:
        save_file(clean, tmp, metadata=dict(metadata) if metadata else None)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a flat state dict from ``.safetensors``, or from ``.pt``/``.pth`` with ``weights_only``.

    A pickle that would build anything other than tensors and plain containers (and so could run
    code) is refused with :class:`WeightsError`; nothing in it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path}: not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"weights file {path}: not a valid safetensors file ({err})") from None
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as err:
            raise WeightsError(
                f"weights file {path}: refused, it is not a plain tensor checkpoint "
                f"(only tensors and containers are loaded, nothing is executed): {one_line(err, limit=160)}"
            ) from None
        if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise WeightsError(f"weights file {path}: expected a mapping of parameter names to tensors")
        return dict(obj)
    raise WeightsError(f"weights file {path}: unknown format {suffix!r}; expected .safetensors, .pt or .pth")
