"""The one result shape every analysis returns: a dataclass of arrays plus its metadata.

Each result dataclass derives from :class:`AnalysisResult` and carries ``class_names`` (or
``None``) and ``params`` (the parameters that produced it), so a cached or saved result says what
it is. ``to_dict()`` turns any result into plain JSON-serialisable values (arrays become nested
lists, tensors are moved to the host first, nested results recurse).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch


def plain(value: Any) -> Any:
    """``value`` as JSON-serialisable Python: numbers, strings, lists and dicts only."""
    if isinstance(value, AnalysisResult):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu").numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [plain(v) for v in value] if value.ndim else plain(float(value))
        return value.tolist()
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, torch.device):
        return str(value)
    return repr(value)


class AnalysisResult:
    """Mixin for result dataclasses: ``to_dict()`` over every field (``class_names`` and
    ``params`` included), non-finite floats as ``None``."""

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        out = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        out["kind"] = type(self).__name__
        return out


__all__ = ["AnalysisResult", "plain"]
