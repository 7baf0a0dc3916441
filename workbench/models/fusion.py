"""Inference-time folding of BatchNorm into the convolution before it.

:func:`fold_batchnorm` takes any ``nn.Module`` and returns an eval-mode deep copy in which each
``Conv2d -> BatchNorm2d`` pair whose BN uses running statistics has been merged into the
convolution: the BN is replaced by ``nn.Identity()`` at the same dotted path, and the conv's
weight and bias absorb the BN's affine map. In eval mode the BN is the per-channel affine map
``y = (z - mu) * gamma / sqrt(var + eps) + beta`` of the conv output ``z = W * x + b``, so with
``s = gamma / sqrt(var + eps)`` the pair equals one conv with ``W' = W * s`` (scaled per output
channel) and ``b' = (b - mu) * s + beta``. The copy computes the same function with one layer
less per pair; the original model is never touched.

A pair is folded only when the BN really consumes the conv output and nothing else does (a
residual or second consumer of the raw conv output keeps the pair as it is). Pairs are found in
one of two ways:

- with an ``example`` input (every call in this library passes one): the copy is run once on it
  with forward hooks on its convs and BNs, and the pairs are read off the autograd graph of that
  run plus a thread-local record of which calls read which tensors. Nothing outside the copy is
  changed, so this is safe while other threads run forwards of any model;
- without one: on the :mod:`torch.fx` graph of the copy. Tracing patches ``nn.Module.__call__``
  and ``__getattr__`` for the whole process while it runs, so a forward pass in another thread at
  that moment fails; traces are serialised by a module-level lock, but other threads' plain
  forwards cannot be protected. Do not use this path while other threads run forwards.

A model whose probe or trace fails is copied unfolded.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import threading
import warnings
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import torch
from torch import fx, nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode, resolve_name

__all__ = ["BatchNormFolder", "fold_batchnorm"]

# torch.fx tracing patches nn.Module for the whole process: at least never run two traces at once
_FX_LOCK = threading.Lock()


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
    with _FX_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _PairTracer().trace(model)


# the per-module hook registries of nn.Module (not all exist in every torch version)
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


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


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers ``module`` holds itself (not those of its submodules)."""
    return [t for t in [*module._parameters.values(), *module._buffers.values()] if t is not None]


def _unshared(model: nn.Module, keep: set[str]) -> Callable[[str, nn.Module], bool]:
    """A test of the static folding conditions of a module at a path: not in ``keep``, reachable at
    that one path only, owning no parameter/buffer another module also holds, and carrying no hooks
    or parametrizations."""
    paths_of: Counter[int] = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    tensor_owners: Counter[int] = Counter()
    for _, m in model.named_modules(remove_duplicate=False):
        for t in _own_tensors(m):
            tensor_owners[id(t)] += 1

    def ok(path: str, module: nn.Module) -> bool:
        return (
            path not in keep
            and paths_of[id(module)] == 1
            and all(tensor_owners[id(t)] == 1 for t in _own_tensors(module))
            and not _has_hooks(module)
        )

    return ok


def _find_pairs(model: nn.Module, graph: fx.Graph, keep: set[str]) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs of ``model`` that meet every folding condition (fx graph)."""
    unshared = _unshared(model, keep)
    calls: Counter[str] = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    attr_reads = [str(n.target) for n in graph.nodes if n.op == "get_attr"]

    def usable(path: str, module: nn.Module) -> bool:
        return (
            unshared(path, module)
            and calls[path] == 1
            and not any(a.startswith(path + ".") for a in attr_reads)
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


# Tensor methods and properties that read only metadata: calling them is not a use of the values.
_METADATA = frozenset(
    "dim ndimension size numel nelement stride storage_offset element_size is_contiguous"
    " is_floating_point is_complex get_device data_ptr __len__".split()
)
# properties that return the values themselves (an alias or a view), so reading them is a use
_VALUE_PROPERTIES = frozenset({"data", "T", "mT", "H", "mH", "real", "imag", "grad"})
# calls that turn tensor values into Python values, on which the forward's control flow may depend
_CONVERSIONS = frozenset(
    "__bool__ __int__ __float__ __complex__ __index__ item tolist numpy __array__".split()
)


def _is_metadata(func: Callable[..., Any]) -> bool:
    """Whether the torch function ``func`` only reads tensor metadata (shape, dtype, grad_fn, ...)."""
    name = resolve_name(func) or getattr(func, "__name__", "")
    if not name.startswith("torch.Tensor."):
        return False
    parts = name.split(".")
    if parts[-1] == "__get__":
        return len(parts) == 4 and parts[2] not in _VALUE_PROPERTIES
    return len(parts) == 3 and parts[2] in _METADATA


def _tensors_in(obj: object, deep: bool = False, seen: set[int] | None = None) -> Iterator[torch.Tensor]:
    """Every tensor inside ``obj``: nested tuples, lists, sets and dicts, and with ``deep`` also
    dataclasses and the attributes of plain objects (a model output of any structure)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v, deep, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _tensors_in(v, deep, seen)
    elif not deep or isinstance(obj, (type, nn.Module)) or callable(obj):
        return
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _tensors_in(getattr(obj, f.name, None), deep, seen)
    elif hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            yield from _tensors_in(v, deep, seen)


class _ReadRecorder(TorchFunctionMode):
    """Records, for each watched tensor, the candidate module running at each torch call reading it.

    A torch-function mode lives on the calling thread only (unlike fx tracing), and every call on
    tensors, differentiable or not (``detach``, comparisons, ``argmax``, in-place ops), passes it.
    """

    def __init__(self, watched: set[int]) -> None:
        super().__init__()
        self.watched = watched
        self.active: list[str] = []
        self.reads: defaultdict[int, list[str | None]] = defaultdict(list)
        self.opaque = 0  # > 0 while a module holding no Conv2d / BatchNorm2d runs
        self.converted = False  # a tensor's values became a Python value outside such modules

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if not self.opaque and (resolve_name(func) or "").rpartition(".")[2] in _CONVERSIONS:
            self.converted = True
        if not _is_metadata(func):
            where = self.active[-1] if self.active else None
            for t in {id(t): t for t in _tensors_in((args, kwargs))}.values():
                if id(t) in self.watched:
                    self.reads[id(t)].append(where)
        return func(*args, **kwargs)


@dataclasses.dataclass
class _Call:
    """What a forward hook saw of one candidate module: its calls and, per call, the tensors."""

    count: int = 0
    inputs: tuple[Any, ...] = ()
    output: Any = None
    input_fn: Any = None
    output_fn: Any = None


def _consumers(roots: list[torch.Tensor]) -> dict[Any, list[Any]]:
    """For each autograd node reachable from ``roots``' ``grad_fn``, the nodes that consume it (one
    entry per edge); a root tensor itself counts as a consumer ``None`` of its ``grad_fn``."""
    users: defaultdict[Any, list[Any]] = defaultdict(list)
    stack = []
    for t in roots:
        if t.grad_fn is not None:
            users[t.grad_fn].append(None)
            stack.append(t.grad_fn)
    visited: set[Any] = set()
    while stack:
        node = stack.pop()
        if node in visited:
            continue
        visited.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                users[nxt].append(node)
                stack.append(nxt)
    return users


@dataclasses.dataclass
class _Probe:
    """What one probe forward records: the candidate convs and BNs by path, each one's calls, which
    module read which watched tensor, and the tensors the model's own hooks would have seen."""

    convs: dict[str, nn.Module]
    bns: dict[str, nn.Module]
    calls: dict[str, _Call]
    recorder: _ReadRecorder
    seen_by_hooks: list[torch.Tensor] = dataclasses.field(default_factory=list)


def _add_probe_hooks(model: nn.Module, hooked: list[nn.Module], probe: _Probe, handles: list[Any]) -> None:
    """Register the probe's hooks on ``model``, appending each handle to ``handles`` as it is made.

    Candidates record their calls (and which candidate is running, for the recorder); modules
    holding no conv or BN mark where values may be read opaquely; the modules in ``hooked`` (those
    whose own hooks are stashed) record what those hooks would have seen.
    """
    recorder, calls, convs = probe.recorder, probe.calls, probe.convs

    def before(path: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple[Any, ...]) -> None:
            recorder.active.append(path)

        return hook

    def after(path: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            recorder.active.pop()
            call = calls[path]
            call.count += 1
            call.inputs, call.output = args, out
            first = args[0] if args else None
            call.input_fn = first.grad_fn if isinstance(first, torch.Tensor) else None
            call.output_fn = out.grad_fn if isinstance(out, torch.Tensor) else None
            if path in convs and isinstance(out, torch.Tensor):
                recorder.watched.add(id(out))  # kept alive by ``call.output`` while the probe runs

        return hook

    def enter(_m: nn.Module, _args: tuple[Any, ...]) -> None:
        recorder.opaque += 1

    def leave(_m: nn.Module, _args: tuple[Any, ...], _out: Any) -> None:
        recorder.opaque -= 1

    def hooked_in(_m: nn.Module, args: tuple[Any, ...]) -> None:
        probe.seen_by_hooks.extend(_tensors_in(args))

    def hooked_out(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        probe.seen_by_hooks.extend(_tensors_in((args, out)))

    for m in hooked:
        handles.append(m.register_forward_pre_hook(hooked_in))
        handles.append(m.register_forward_hook(hooked_out))
    for path, m in [*convs.items(), *probe.bns.items()]:
        handles.append(m.register_forward_pre_hook(before(path)))
        handles.append(m.register_forward_hook(after(path)))
    for m in model.modules():
        if not any(isinstance(sub, (nn.Conv2d, nn.BatchNorm2d)) for sub in m.modules()):
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave))


def _probe_input(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """``example`` detached, on the device (and, when floating, the dtype) of the model's first float
    tensor, requiring grad when floating."""
    ref = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), None)
    x = example.detach()
    if ref is not None:
        x = x.to(ref.device, ref.dtype if x.is_floating_point() else x.dtype)
    if x.is_floating_point():
        x.requires_grad_(True)
    return x


def _run_probe(model: nn.Module, example: torch.Tensor, probe: _Probe) -> dict[Any, list[Any]]:
    """One recorded forward of ``model`` on ``example``: the autograd consumers of its output.

    The model's own hooks are stashed (they may have effects outside the model) and its parameters
    made to require grad while it runs; both are restored afterwards, also when the forward raises.
    """
    # the copy's own hooks (copies of the caller's) do not run in the probe: they may have effects
    # outside the copy. What they would have seen (their module's inputs and outputs) is recorded,
    # and a conv output among it is not folded (the hook would see the BN output instead).
    hooked = [m for m in model.modules() if _has_hooks(m)]
    stashed = [
        (m, name, getattr(m, name)) for m in model.modules() for name in _HOOK_DICTS if hasattr(m, name)
    ]
    handles: list[Any] = []
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for m, name, _ in stashed:
            setattr(m, name, OrderedDict())
        _add_probe_hooks(model, hooked, probe, handles)
        for p, _ in flags:
            if p.is_floating_point() or p.is_complex():
                p.requires_grad_(True)
        x = _probe_input(model, example)
        with torch.inference_mode(False), torch.enable_grad(), probe.recorder:
            out = model(x)
        return _consumers(list(_tensors_in(out, deep=True)))
    finally:
        for h in handles:
            h.remove()
        for m, name, hooks in stashed:
            setattr(m, name, hooks)
        for p, flag in flags:
            p.requires_grad_(flag)


def _recorded_pairs(probe: _Probe, users: dict[Any, list[Any]]) -> list[tuple[str, str]]:
    """The ``(conv path, bn path)`` pairs of a finished probe that meet every folding condition."""
    calls, recorder, bns = probe.calls, probe.recorder, probe.bns

    def own_reads_only(path: str, module: nn.Module) -> bool:
        """Called once, and its tensors read by nothing but its own forward."""
        return calls[path].count == 1 and all(
            all(w == path for w in recorder.reads.get(id(t), [])) for t in _own_tensors(module)
        )

    hook_seen = {id(t) for t in probe.seen_by_hooks}
    by_input = {id(c.inputs[0]): p for p, c in calls.items() if p in bns and c.count == 1 and c.inputs}
    pairs: list[tuple[str, str]] = []
    for conv_path, conv in probe.convs.items():
        z = calls[conv_path].output
        if not isinstance(z, torch.Tensor) or id(z) not in by_input or id(z) in hook_seen:
            continue
        bn_path = by_input[id(z)]
        bn, bn_call, z_fn = bns[bn_path], calls[bn_path], calls[conv_path].output_fn
        if (
            z_fn is None
            or bn_call.input_fn is not z_fn  # z was changed in place between the conv and the BN
            or len(bn_call.inputs) != 1
            or bn.num_features != conv.out_channels
            or users.get(z_fn) != [bn_call.output_fn]  # the BN is z's one consumer in the graph
            or all(nxt is not z_fn for nxt, _ in bn_call.output_fn.next_functions)
            or recorder.reads.get(id(z)) != [bn_path]  # ... and nothing else read z (detach, ...)
            or not own_reads_only(conv_path, conv)
            or not own_reads_only(bn_path, bn)
        ):
            continue
        pairs.append((conv_path, bn_path))
    return pairs


def _probe_pairs(model: nn.Module, example: torch.Tensor, keep: set[str]) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs of ``model`` that meet every folding condition, found by one
    forward pass of ``model`` on ``example`` (see :func:`fold_batchnorm`); raises what the pass raises.

    Only ``model`` is changed while it runs (hooks added, parameters made to require grad) and it is
    restored afterwards, so other threads are not affected.
    """
    unshared = _unshared(model, keep)
    convs = {p: m for p, m in model.named_modules() if _plain_conv(m) and unshared(p, m)}
    bns = {p: m for p, m in model.named_modules() if _plain_bn(m) and unshared(p, m)}
    if not convs or not bns:
        return []
    calls = {p: _Call() for p in [*convs, *bns]}
    watched = {id(t) for m in [*convs.values(), *bns.values()] for t in _own_tensors(m)}
    probe = _Probe(convs, bns, calls, _ReadRecorder(watched))
    users = _run_probe(model, example, probe)
    if probe.recorder.converted:
        # control flow may depend on the values: paths the example did not take are unseen
        return []
    return _recorded_pairs(probe, users)


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


def fold_batchnorm(
    model: nn.Module, keep: Iterable[str] = (), *, example: torch.Tensor | None = None
) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with each ``Conv2d -> BatchNorm2d`` pair folded into the conv.

    Args:
        model: any module; it is deep-copied and never modified (parameters, buffers, training
            flags and hooks stay as they are).
        keep: dotted module paths (of a conv or of a BN) whose pair must not be folded.
        example: a small input batch for ``model`` (two images are plenty), moved to the device and
            floating dtype of the model's first floating parameter or buffer. With it the pairs are
            found by one forward pass of the copy (safe while other threads run forwards); without
            it by :mod:`torch.fx` tracing, which patches ``nn.Module`` for the whole process and so
            breaks any forward another thread runs at the same time: pass an example whenever
            another thread may be computing.

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

    1. a (stock) ``nn.Conv2d``'s output is consumed by a (stock) ``nn.BatchNorm2d`` and by nothing
       else (a conv output also used elsewhere, e.g. by a residual, is left alone). With
       ``example``: the copy (eval mode, its parameters made to require grad for the pass, the
       example too when floating) is run once under ``torch.enable_grad()`` with forward hooks on
       its convs and BNs. The BN's input must be the conv's output tensor, unchanged in place in
       between; in the autograd graph walked from the outputs the conv output's ``grad_fn`` must
       have exactly one consumer node, the BN output's ``grad_fn`` (a model output counts as a
       consumer); and a thread-local :class:`torch.overrides.TorchFunctionMode` must see exactly
       one call reading the conv output (the BN's own), which also catches non-differentiable
       uses (``detach``, comparisons, ``argmax``, in-place ops, code under ``no_grad``). If the
       forward turns tensor values into Python values (``bool``, ``item``, ``int``, ...) outside
       modules holding no ``Conv2d`` / ``BatchNorm2d``, its control flow may depend on the data
       and paths the example did not take are unseen, so nothing is folded. Without:
       on the fx graph of the copy, the conv's ``call_module`` node has exactly one user, the BN's
       ``call_module`` node, whose only argument is that conv node;
    2. the BN has ``track_running_stats=True``, running statistics, and ``num_features`` equal to
       the conv's ``out_channels``;
    3. neither path is in ``keep``; neither module is shared (reachable at more than one path,
       called more than once (hook calls counted, or nodes in the fx graph), or owning a
       parameter/buffer another module also holds), read by attribute in ``forward``
       (``self.conv.weight``: with ``example``, any call reading one of the module's tensors
       outside its own forward), or carrying hooks or parametrizations (whose meaning folding
       would change).

    The copy's own hooks (copies of the caller's, whose functions may act outside the copy) do not
    run in the probe; a conv output that one of them would have seen (as its module's input or
    output) is not folded. The hooks added for the probe are removed, the copy's hooks put back and
    its ``requires_grad`` flags restored afterwards; a module never called on ``example`` is not
    folded. Tracing uses
    :class:`torch.fx.Tracer` with one addition: modules holding no ``Conv2d`` or ``BatchNorm2d``
    are traced as single calls, so their own data-dependent checks (the zoo's ``GlobalAvgPool``
    tests the input rank) do not stop the trace; traces run one at a time under a module-level
    lock. If the probe or the trace raises (a wrong example, data dependent control flow around
    the convs, unsupported ops, anything), the result is a fresh eval-mode deep copy and 0. An
    exception from ``copy.deepcopy(model)`` itself propagates.
    """
    folder = BatchNormFolder(model, keep, example=example)
    return folder.model, len(folder.pairs)


class BatchNormFolder:
    """A folded eval-mode copy of ``source`` (as :func:`fold_batchnorm` makes it) that follows the
    source's later changes: :meth:`sync` copies every parameter and buffer of the source into the
    copy and folds the folded pairs again from the source's current conv weights and BN state.

    For analyses that change a model's weights in place many times and evaluate it after each
    change (loss landscapes, interpolation): the weights are written into ``source``, ``sync()``
    refreshes ``model``, and ``model`` is evaluated, one layer less per folded pair.

    ``keep`` and ``example`` are those of :func:`fold_batchnorm` (pass ``example`` whenever other
    threads may run forwards: without it the pairs are found by process-wide :mod:`torch.fx`
    tracing).

    Attributes:
        source: the model given (never modified here).
        model: the folded copy (eval mode).
        pairs: the folded ``(conv path, bn path)`` pairs.
    """

    def __init__(
        self, source: nn.Module, keep: Iterable[str] = (), *, example: torch.Tensor | None = None
    ) -> None:
        keep_paths = {keep} if isinstance(keep, str) else set(keep)
        if example is not None and not isinstance(example, torch.Tensor):
            raise TypeError(f"example: expected a torch.Tensor batch or None, got {type(example).__name__}")
        self.source = source
        work = copy_module.deepcopy(source)
        work.eval()
        try:
            if example is None:
                graph = _trace(work)
                pairs = _find_pairs(work, graph, keep_paths)
                del graph
            else:
                pairs = _probe_pairs(work, example, keep_paths)
        except Exception:
            # the trace or the probe may have left partial state on the copy: hand back an untouched one
            work = copy_module.deepcopy(source)
            work.eval()
            self.model, self.pairs = work, []
        else:
            self.pairs = pairs
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
