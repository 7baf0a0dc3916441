"""Directions in parameter space and the points of the line or plane they span (Li et al. 2018).

:func:`random_direction` is the filter-normalized Gaussian direction of Li, Xu, Taylor, Studer &
Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets" (each filter of the direction gets
the norm of the matching filter of the weights; biases and normalization-layer parameters left
out, "ignore biasbn"). :class:`PlaneWriter` writes a point ``θ0 + Σ_i c_i d_i`` into a model's
parameters, or stacks the parameters of many points for one vmapped evaluation, and
:func:`stacked_tensors` adds the BatchNorm folding of each stacked point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from workbench.analysis._common import AnalysisError

__all__ = ["PlaneWriter", "check_direction", "random_direction", "stacked_tensors"]

_NORM_LAYERS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def random_direction(model: nn.Module, seed: int = 0, ignore_bias_bn: bool = True) -> dict[str, torch.Tensor]:
    """A filter-normalized Gaussian direction in parameter space (Li et al. 2018, section 4).

    For every parameter with more than one dimension, each filter of the direction (slice along
    dim 0: a conv output channel, a linear output row) is rescaled to the Frobenius norm of the
    matching filter of the weights. One-dimensional parameters (biases) and parameters of
    normalization layers are zeroed when ``ignore_bias_bn`` (the paper's "ignore biasbn"), else set
    equal to the weights, as in the paper's code.

    Args:
        model: the network; its parameters are read, not changed.
        seed: the Gaussian is drawn on the CPU from this seed in ``named_parameters`` order, so the
            same seed gives the same direction on any device (two objectives share one plane).
        ignore_bias_bn: zero biases and normalization parameters.

    Returns:
        ``{parameter name: tensor}`` shaped, typed and placed like the parameters.
    """
    gen = torch.Generator().manual_seed(int(seed))
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters(False)}
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            d = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(device=p.device, dtype=p.dtype)
            w = p.detach()
            if p.ndim <= 1 or id(p) in norm_params:
                d = torch.zeros_like(w) if ignore_bias_bn else w.clone()
            else:
                d_norm = d.reshape(d.shape[0], -1).norm(dim=1)
                w_norm = w.reshape(w.shape[0], -1).norm(dim=1)
                d = d * (w_norm / (d_norm + 1e-10)).reshape(-1, *([1] * (d.ndim - 1)))
            out[name] = d
    return out


def check_direction(
    model: nn.Module, direction: Mapping[str, torch.Tensor], arg: str
) -> dict[str, torch.Tensor]:
    """``direction`` checked against ``model``'s parameters and placed like them.

    Args:
        model: the network. direction: ``{parameter name: tensor}`` covering every parameter.
        arg: the argument's name in error messages.

    Returns:
        ``{parameter name: detached tensor}`` on the parameters' devices and dtypes.

    Raises:
        AnalysisError: an unknown or missing parameter, or a shape that differs.
    """
    params = dict(model.named_parameters())
    unknown = [k for k in direction if k not in params]
    if unknown:
        raise AnalysisError(f"{arg}: {unknown[0]!r} is not a parameter of the model")
    out = {}
    for name, p in params.items():
        d = direction.get(name)
        if d is None:
            raise AnalysisError(f"{arg}: missing parameter {name!r}")
        if tuple(d.shape) != tuple(p.shape):
            raise AnalysisError(f"{arg}[{name!r}]: expected shape {tuple(p.shape)}, got {tuple(d.shape)}")
        out[name] = d.detach().to(device=p.device, dtype=p.dtype)
    return out


class PlaneWriter:
    """Writes ``θ0 + Σ_i c_i d_i`` into the parameters in place (parameters with a zero direction
    skipped), or builds the stacked tensors of many points for a vmapped evaluation.

    Args:
        model: the network (a working copy: :meth:`set` changes its parameters); ``θ0`` is a copy
            of its parameters when the writer is made.
        directions: ``{parameter name: tensor}`` per direction, as :func:`check_direction` returns.
    """

    def __init__(self, model: nn.Module, directions: Sequence[Mapping[str, torch.Tensor]]) -> None:
        self.entries = []
        self.names: list[str] = []
        for name, p in model.named_parameters():
            ds = [d[name] for d in directions]
            if any(bool(d.any()) for d in ds):
                self.entries.append((p, p.detach().clone(), ds))
                self.names.append(name)

    def stacked(self, coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (P, ...) tensor}`` of the perturbed parameters at the ``P`` points ``coeffs``
        ``(P, n_directions)`` (float64 coefficients, as :meth:`set` uses them)."""
        out = {}
        for name, (_, base, ds) in zip(self.names, self.entries, strict=True):
            shape = (-1,) + (1,) * base.ndim
            value = base.unsqueeze(0)
            for i, d in enumerate(ds):
                c = coeffs[:, i].to(device=base.device, dtype=base.dtype).reshape(shape)
                value = value + c * d.unsqueeze(0)
            out[name] = value.expand(coeffs.shape[0], *base.shape)
        return out

    def set(self, coeffs: Sequence[float]) -> None:
        """Write the point with coefficients ``coeffs`` (one per direction) into the parameters."""
        with torch.no_grad():
            for p, base, ds in self.entries:
                p.copy_(base)
                for c, d in zip(coeffs, ds, strict=True):
                    if c != 0.0:
                        p.add_(d, alpha=float(c))


def _folded_pair(
    model: nn.Module, conv_path: str, bn_path: str, perturbed: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded weight and bias of one ``(conv, bn)`` pair, batched over the points where a
    tensor of ``perturbed`` takes part (``s = γ / sqrt(var + eps)``, ``W' = W·s``, ``b' = (b - μ)·s + β``)."""

    def get(path: str, attr: str) -> torch.Tensor | None:
        name = f"{path}.{attr}" if path else attr
        if name in perturbed:
            return perturbed[name]
        t = getattr(model.get_submodule(path), attr, None)
        return t.detach() if isinstance(t, torch.Tensor) else None

    conv = model.get_submodule(conv_path)
    bn = model.get_submodule(bn_path)
    w, b = get(conv_path, "weight"), get(conv_path, "bias")
    mean, var = get(bn_path, "running_mean"), get(bn_path, "running_var")
    gamma, beta = get(bn_path, "weight"), get(bn_path, "bias")
    assert w is not None and mean is not None and var is not None
    dev, dt = w.device, torch.promote_types(w.dtype, var.dtype)
    mean, var = mean.to(dev, dt), var.to(dev, dt)
    gamma = gamma.to(dev, dt) if gamma is not None else torch.ones_like(var)
    beta = beta.to(dev, dt) if beta is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = b.to(dev, dt) if b is not None else torch.zeros_like(mean)
    ndim = conv.weight.ndim
    new_w = (w.to(dt) * scale.reshape(*scale.shape, *([1] * (ndim - 1)))).to(conv.weight.dtype)
    bias_dtype = conv.bias.dtype if conv.bias is not None else conv.weight.dtype
    new_b = ((bias - mean) * scale + beta).to(bias_dtype)
    return new_w, new_b


def stacked_tensors(
    model: nn.Module, pairs: Sequence[tuple[str, str]], writer: PlaneWriter, coeffs: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tensors of the evaluated network at the points ``coeffs`` ``(P, n_directions)``.

    The perturbed parameters come from ``writer``; each folded ``(conv, bn)`` pair of ``pairs``
    is folded again per point with the formula of :mod:`workbench.models.fusion`, batched over the
    points. Tensors the evaluated network holds unchanged at every point are not listed (it keeps
    its own).

    Returns:
        ``(stacked, shared)``: tensors that differ per point (``(P, ...)``) and tensors that are the
        same at every point, for :func:`workbench.analysis.evaluation.evaluate_stacked`.
    """
    perturbed = writer.stacked(coeffs)
    stacked: dict[str, torch.Tensor] = {}
    shared: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for conv_path, bn_path in pairs:
        new_w, new_b = _folded_pair(model, conv_path, bn_path, perturbed)
        ndim = model.get_submodule(conv_path).weight.ndim
        for name, value, plain_ndim in (
            (f"{conv_path}.weight", new_w, ndim),
            (f"{conv_path}.bias", new_b, 1),
        ):
            (stacked if value.ndim > plain_ndim else shared)[name] = value
        used.update(f"{path}.{attr}" for path in (conv_path, bn_path) for attr in ("weight", "bias"))
    for name, value in perturbed.items():
        if name not in used:
            stacked[name] = value
    return stacked, shared
