"""Inference-time folding of BatchNorm into the convolution before it.

:func:`fold_batchnorm` takes any ``nn.Module`` and returns an eval-mode deep copy in which each
``Conv2d -> BatchNorm2d`` pair whose BN uses running statistics has been merged into the
convolution: the BN is replaced by ``nn.Identity()`` at the same dotted path, and the conv's
weight and bias absorb the BN's affine map. In eval mode the BN is the per-channel affine map
``y = (z - mu) * gamma / sqrt(var + eps) + beta`` of the conv output ``z = W * x + b``, so with
``s = gamma / sqrt(var + eps)`` the pair equals one conv with ``W' = W * s`` (scaled per output
channel) and ``b' = (b - mu) * s + beta``. The copy computes the same function with one layer
less per pair; the original model is never touched.

Pairs are found on the :mod:`torch.fx` graph of the copy, so a pair is folded only when the BN
really consumes the conv output and nothing else does (a residual or second consumer of the
raw conv output keeps the pair as it is). Models that fx cannot trace are copied unfolded.
"""

from __future__ import annotations

import copy as copy_module
import warnings
from collections import Counter
from collections.abc import Iterable
from typing import cast

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

__all__ = ["BatchNormFolder", "fold_batchnorm"]


class _PairTracer(fx.Tracer):
    """fx tracer that also keeps as leaves the modules holding no ``Conv2d`` or ``BatchNorm2d``.

    Such a module can neither be nor hide one side of a pair; treating it as a single call keeps
    its data-dependent code (such as the zoo's input-shape checks in ``GlobalAvgPool``) out of the
    trace while every use it makes of its inputs still appears as a user in the graph.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if super().is_leaf_module(m, module_qualified_name):
            return True
        return not any(isinstance(sub, (nn.Conv2d, nn.BatchNorm2d)) for sub in m.modules())


def _trace(model: nn.Module) -> fx.Graph:
    """The fx graph of ``model`` (warnings from tracing suppressed); raises what tracing raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _PairTracer().trace(model)


def _has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` carries hooks or parametrizations that folding would change the meaning of."""
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(module, name, None) for name in hook_dicts) or parametrize.is_parametrized(module)


def _plain_conv(module: nn.Module) -> bool:
    """An ``nn.Conv2d`` whose forward is the stock one (no fake-quant or weight-transform subclass)."""
    return isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward


def _plain_bn(module: nn.Module) -> bool:
    """An ``nn.BatchNorm2d`` with the stock forward and running statistics to fold."""
    return (
        isinstance(module, nn.BatchNorm2d)
        and type(module).forward is nn.BatchNorm2d.forward
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


def _find_pairs(model: nn.Module, graph: fx.Graph, keep: set[str]) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs of ``model`` that meet every folding condition."""
    # modules and parameters/buffers reachable under more than one path are shared: never fold them
    paths_of: Counter[int] = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    tensor_owners: Counter[int] = Counter()
    for _, m in model.named_modules(remove_duplicate=False):
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None:
                tensor_owners[id(t)] += 1
    calls: Counter[str] = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    attr_reads = [str(n.target) for n in graph.nodes if n.op == "get_attr"]

    def usable(path: str, module: nn.Module) -> bool:
        own = [t for t in list(module._parameters.values()) + list(module._buffers.values()) if t is not None]
        return (
            path not in keep
            and paths_of[id(module)] == 1
            and calls[path] == 1
            and all(tensor_owners[id(t)] == 1 for t in own)
            and not any(a.startswith(path + ".") for a in attr_reads)
            and not _has_hooks(module)
        )

    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        conv_path = str(node.target)
        conv = model.get_submodule(conv_path)
        (user,) = node.users
        if not _plain_conv(conv) or user.op != "call_module" or node.kwargs:
            continue
        bn_path = str(user.target)
        bn = model.get_submodule(bn_path)
        if not _plain_bn(bn) or user.args != (node,) or user.kwargs:
            continue
        if bn.num_features != conv.out_channels:
            continue
        if usable(conv_path, conv) and usable(bn_path, bn):
            pairs.append((conv_path, bn_path))
    return pairs


def _bn(model: nn.Module, path: str) -> nn.BatchNorm2d:
    return cast(nn.BatchNorm2d, model.get_submodule(path))


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of the conv that equals eval-mode ``bn`` after ``conv``, in the conv's dtypes."""
    w = conv.weight
    dev = w.device
    dt = torch.promote_types(w.dtype, bn.running_var.dtype)
    mean = bn.running_mean.to(dev, dt)
    var = bn.running_var.to(dev, dt)
    gamma = bn.weight.to(dev, dt) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.to(dev, dt) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.to(dev, dt) if conv.bias is not None else torch.zeros_like(mean)
    new_w = w.to(dt) * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (bias - mean) * scale + beta
    bias_dtype = conv.bias.dtype if conv.bias is not None else w.dtype
    return new_w.to(w.dtype), new_b.to(bias_dtype)


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Merge eval-mode ``bn`` into ``conv`` in place (new Parameters, in the conv's dtype and device)."""
    new_w, new_b = _folded(conv, bn)
    requires_grad = conv.weight.requires_grad
    conv.weight = nn.Parameter(new_w, requires_grad=requires_grad)
    conv.bias = nn.Parameter(new_b, requires_grad=requires_grad)


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` of ``model`` (its parent's attribute is reassigned)."""
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path), name, module)


def fold_batchnorm(model: nn.Module, keep: Iterable[str] = ()) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with each ``Conv2d -> BatchNorm2d`` pair folded into the conv.

    Args:
        model: any module; it is deep-copied and never modified (parameters, buffers, training
            flags and hooks stay as they are).
        keep: dotted module paths (of a conv or of a BN) whose pair must not be folded.

    Returns:
        ``(copy, n_folded)``: ``copy.deepcopy(model)`` put in eval mode, with every qualifying pair
        folded, and the number of pairs folded. ``isinstance(copy, type(model))`` holds: the copy
        keeps its own ``forward``; each folded BN is ``nn.Identity()`` at the same path, so module
        paths still resolve and a forward hook there sees the BN output (the folded conv's output).

    Folding, per output channel, with BN running mean ``mu``, running variance ``var``, ``eps``,
    weight ``gamma`` (1 without affine) and bias ``beta`` (0 without affine)::

        s  = gamma / sqrt(var + eps)
        W' = W * s                  (W: (C_out, C_in / groups, k, k), so depthwise convs fold too)
        b' = (b - mu) * s + beta    (b = 0, and a new bias Parameter, if the conv had none)

    computed under ``torch.no_grad()`` on the conv weight's device, in the wider of the weight's
    and the running statistics' dtypes, and stored in the conv's own dtype.

    A pair is folded only when all of these hold:

    1. on the fx graph of the copy, a ``call_module`` node of a (stock) ``nn.Conv2d`` has exactly
       one user, a ``call_module`` node of a (stock) ``nn.BatchNorm2d`` whose only argument is that
       conv node (a conv output also used elsewhere, e.g. by a residual, is left alone);
    2. the BN has ``track_running_stats=True``, running statistics, and ``num_features`` equal to
       the conv's ``out_channels``;
    3. neither path is in ``keep``; neither module is shared (reachable at more than one path,
       called more than once in the graph, or owning a parameter/buffer another module also
       holds), read by attribute in ``forward`` (``self.conv.weight``), or carrying hooks or
       parametrizations (whose meaning folding would change).

    Tracing uses :class:`torch.fx.Tracer` with one addition: modules holding no ``Conv2d`` or
    ``BatchNorm2d`` are traced as single calls, so their own data-dependent checks (the zoo's
    ``GlobalAvgPool`` tests the input rank) do not stop the trace. If tracing still raises (data
    dependent control flow around the convs, unsupported ops, anything), the result is a fresh
    eval-mode deep copy and 0. An exception from ``copy.deepcopy(model)`` itself propagates.
    """
    folder = BatchNormFolder(model, keep)
    return folder.model, len(folder.pairs)


class BatchNormFolder:
    """A folded eval-mode copy of ``source`` (as :func:`fold_batchnorm` makes it) that follows the
    source's later changes: :meth:`sync` copies every parameter and buffer of the source into the
    copy and folds the folded pairs again from the source's current conv weights and BN state.

    For analyses that change a model's weights in place many times and evaluate it after each
    change (loss landscapes, interpolation): the weights are written into ``source``, ``sync()``
    refreshes ``model``, and ``model`` is evaluated, one layer less per folded pair.

    Attributes:
        source: the model given (never modified here).
        model: the folded copy (eval mode).
        pairs: the folded ``(conv path, bn path)`` pairs.
    """

    def __init__(self, source: nn.Module, keep: Iterable[str] = ()) -> None:
        keep_paths = {keep} if isinstance(keep, str) else set(keep)
        self.source = source
        work = copy_module.deepcopy(source)
        work.eval()
        try:
            graph = _trace(work)
        except Exception:
            # tracing may have left partial state on the copy: hand back an untouched one
            work = copy_module.deepcopy(source)
            work.eval()
            self.model, self.pairs = work, []
        else:
            self.pairs = _find_pairs(work, graph, keep_paths)
            del graph
            with torch.no_grad():
                for conv_path, bn_path in self.pairs:
                    _fold_pair(cast(nn.Conv2d, work.get_submodule(conv_path)), _bn(work, bn_path))
                    _replace(work, bn_path, nn.Identity().eval())
            self.model = work
        folded = {c for c, _ in self.pairs} | {b for _, b in self.pairs}
        mine = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        self._plain: list[tuple[torch.Tensor, torch.Tensor]] = []
        for name, t in [*source.named_parameters(), *source.named_buffers()]:
            owner = name.rpartition(".")[0]
            if owner not in folded:
                self._plain.append((t, mine[name]))

    def sync(self) -> None:
        """Make ``model`` compute what ``source`` computes now (in eval mode): plain tensors are
        copied, folded convs are folded again from the source's conv and BN (layouts of the
        copy's tensors are kept)."""
        with torch.no_grad():
            for src, dst in self._plain:
                dst.copy_(src)
            for conv_path, bn_path in self.pairs:
                conv = cast(nn.Conv2d, self.source.get_submodule(conv_path))
                weight, bias = _folded(conv, _bn(self.source, bn_path))
                target = cast(nn.Conv2d, self.model.get_submodule(conv_path))
                target.weight.copy_(weight)
                assert target.bias is not None
                target.bias.copy_(bias)
