"""Frozen copies of a model for work that must leave the caller's model alone."""

from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(model: nn.Module, device: torch.device | str) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device`` whose parameters need no gradient.

    The analyses and the training engine's caller-given teachers compute on such a copy, so the
    caller's model (its device, ``training`` flags, parameters, ``requires_grad`` and hooks) is
    never touched: one model can be shared by several sessions and threads. Hooks registered on
    the caller's modules are not carried over.
    """
    clone = copy.deepcopy(model)
    for m in clone.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
        m._backward_hooks.clear()
    clone = clone.to(device).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone
