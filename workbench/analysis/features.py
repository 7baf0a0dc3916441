"""Intermediate features of a teacher and a student, read for the representation analyses.

Feature similarity (:mod:`.similarity`) and the 2-D embeddings (:mod:`.embedding`) both name a
layer per model (:func:`split_layers`, :func:`check_paths`), read its output on a batch from an
eval-mode working copy through forward hooks (:func:`capture_features`, over
:func:`workbench.models.taps.capture`), and may read it from a copy with BatchNorm folded into the
convolutions (:func:`feature_net`), which gives the same values up to float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from workbench.analysis._common import AnalysisError, model_device
from workbench.models.errors import ModelError
from workbench.models.fusion import fold_batchnorm
from workbench.models.layout import as_channels_last
from workbench.models.taps import capture, get_module, split_path

__all__ = ["ROLES", "capture_features", "check_paths", "feature_net", "split_layers"]

#: the two models of a representation analysis, as keys of a ``layers=`` mapping
ROLES = ("teacher", "student")


def split_layers(layers: object, arg: str = "layers") -> dict[str, Any]:
    """``layers`` as ``{"teacher": ..., "student": ...}``.

    Args:
        layers: a mapping with those keys (a missing key means the default for that model), one
            value used for both models, or ``None`` (the default for both).
        arg: the argument's name in error messages.

    Returns:
        ``{"teacher": value or None, "student": value or None}``.
    """
    if layers is None:
        return {"teacher": None, "student": None}
    if isinstance(layers, Mapping):
        unknown = [k for k in layers if k not in ROLES]
        if unknown:
            raise AnalysisError(f"{arg}: unknown key {unknown[0]!r}; expected 'teacher' and/or 'student'")
        return {role: layers.get(role) for role in ROLES}
    return {"teacher": layers, "student": layers}


def check_paths(model: nn.Module, paths: list[str], arg: str) -> list[str]:
    """``paths`` (module paths, ``path:input`` allowed) if every module exists in ``model``.

    Raises:
        AnalysisError: the first path that names no module, prefixed by ``arg``.
    """
    for path in paths:
        try:
            get_module(model, split_path(path)[0])
        except ModelError as err:
            raise AnalysisError(f"{arg}: {err}") from None
    return paths


def capture_features(
    model: nn.Module, x: torch.Tensor, paths: list[str], cl: bool = False
) -> dict[str, torch.Tensor]:
    """The features at ``paths`` of a working copy on one batch.

    Args:
        model: an eval-mode working copy (its mode is not changed; hooks are removed afterwards).
        x: the batch; moved to the model's device.
        paths: module paths (``path:input`` reads a module's input).
        cl: feed the batch channels-last (the copy's tensors are then channels-last too).

    Returns:
        ``{path: detached tensor (n, ...)}``.
    """
    x = x.to(model_device(model), non_blocking=True)
    _, feats = capture(model, as_channels_last(x) if cl else x, paths, detach=True)
    return feats


def _fold_keep(model: nn.Module, paths: Sequence[str]) -> set[str]:
    """Module paths whose Conv2d -> BatchNorm2d pair must not be folded for the taps at ``paths``
    to see what they see in the unfolded model: each tapped module (a tapped conv keeps its raw
    output, a tapped BN its input) and, for a tapped container, its last leaf module when that is
    a conv (the container's output is then the raw conv output)."""
    keep: set[str] = set()
    for path in paths:
        mod_path = split_path(path)[0]
        keep.add(mod_path)
        leaves = [
            name for name, sub in get_module(model, mod_path).named_modules() if not list(sub.children())
        ]
        if leaves and leaves[-1]:
            last = f"{mod_path}.{leaves[-1]}" if mod_path else leaves[-1]
            if isinstance(get_module(model, last), nn.Conv2d):
                keep.add(last)
    return keep


def feature_net(
    copy: nn.Module, paths: Sequence[str], fold_bn: bool, example: torch.Tensor | None = None
) -> nn.Module:
    """The network features are read from.

    Args:
        copy: an eval-mode working copy.
        paths: the module paths that will be tapped.
        fold_bn: fold the Conv2d -> BatchNorm2d pairs of a copy of ``copy``
            (:func:`workbench.models.fold_batchnorm`), except the pairs whose raw output a tap at
            ``paths`` reads, so every tap sees the same values up to float rounding.
        example: a couple of the inputs, to find the pairs by a probe.

    Returns:
        The folded copy (parameters without gradients), or ``copy`` itself without ``fold_bn``,
        when nothing was folded or the model cannot be copied.
    """
    if not fold_bn:
        return copy
    try:
        folded, n_folded = fold_batchnorm(copy, keep=_fold_keep(copy, paths), example=example)
    except Exception:  # a model that cannot be deep-copied is read as it is
        return copy
    if n_folded == 0:
        return copy
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
