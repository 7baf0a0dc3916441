"""Feature taps: capture any module's output (or input) by dotted path with forward hooks, in
the manner of torchdistill's forward-hook manager — a model's ``forward`` is never rewritten.

Hooks are always removed when a :class:`FeatureTaps` block ends (also on exceptions) and every
helper that switches a model to eval mode restores each module's previous ``training`` flag.

A path is a dotted module path as in ``model.named_modules()`` (``layer3``, ``features.2``,
``blocks.0.attn.softmax``); ending it with ``:input`` captures the module's first positional
input instead of its output (``fc:input`` is the penultimate embedding of any classifier).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn

from workbench.models.errors import ModelError, nearest

INPUT_SUFFIX = ":input"
OUTPUT_SUFFIX = ":output"

#: cost of one halving of resolution between paired stages, relative to a full depth range
_RESOLUTION_WEIGHT = 0.25


# ---- paths --------------------------------------------------------------------------------
def split_path(path: str) -> tuple[str, bool]:
    """``"fc:input" -> ("fc", True)``; ``"layer3" -> ("layer3", False)`` (``:output`` is allowed
    and means the default)."""
    if not isinstance(path, str):
        raise ModelError(f"path {path!r}: expected a dotted module path string")
    if path.endswith(INPUT_SUFFIX):
        return path[: -len(INPUT_SUFFIX)], True
    if path.endswith(OUTPUT_SUFFIX):
        return path[: -len(OUTPUT_SUFFIX)], False
    if ":" in path:
        suffix = path[path.index(":") :]
        raise ModelError(f"path {path!r}: unknown suffix {suffix!r}; known: {INPUT_SUFFIX}, {OUTPUT_SUFFIX}")
    return path, False


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule of ``model`` at dotted ``path`` (``""`` is the model itself).

    An unknown path raises :class:`ModelError` (a ``ValueError``) naming it and the nearest
    existing module paths.
    """
    if not isinstance(path, str):
        raise ModelError(f"path {path!r}: expected a dotted module path string")
    if path == "":
        return model
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name]
        close = nearest(path, names, n=3, cutoff=0.0) or ["none"]
        raise ModelError(
            f"module path {path!r}: not found in {type(model).__name__}; nearest: {', '.join(close)}"
        ) from None


def _first_tensor(value: Any) -> torch.Tensor | None:
    """``value`` if it is a tensor, else the first tensor inside a tuple/list/dict, else None."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        items: Any = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return None
    for item in items:
        if isinstance(item, torch.Tensor):
            return item
    return None


def _has_inplace(model: nn.Module) -> bool:
    return any(getattr(m, "inplace", False) is True for m in model.modules())


# ---- training mode ------------------------------------------------------------------------
@contextmanager
def training_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """Set ``model.train(train)`` inside the block and restore every module's previous
    ``training`` flag afterwards (per module, so a frozen BN left in eval stays in eval)."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(bool(train))
    try:
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


# ---- the hook manager ---------------------------------------------------------------------
class FeatureTaps:
    """Context manager capturing the tensors at ``paths`` on every forward pass of ``model``.

    ``features[path]`` holds the latest capture (``path`` exactly as given, ``:input`` suffix
    included); outputs that are tuples/lists/dicts contribute their first tensor. With
    ``detach=True`` captures are detached from the autograd graph; gradients flow through
    them otherwise. Models containing in-place modules (``nn.ReLU(inplace=True)``) get copies,
    so a later in-place op cannot overwrite a capture. Paths are checked on construction
    (unknown path: :class:`ModelError`); hooks are registered on ``__enter__`` and always
    removed on ``__exit__``.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], detach: bool = False) -> None:
        if isinstance(paths, str):
            paths = [paths]
        self.model = model
        self.paths: list[str] = list(dict.fromkeys(paths))
        self.detach = bool(detach)
        self.features: dict[str, torch.Tensor] = {}
        self._targets: list[tuple[str, nn.Module, bool]] = []
        for path in self.paths:
            module_path, is_input = split_path(path)
            self._targets.append((path, get_module(model, module_path), is_input))
        self._clone = _has_inplace(model)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _store(self, path: str, value: Any, what: str) -> None:
        tensor = _first_tensor(value)
        if tensor is None:
            raise ModelError(f"path {path!r}: the module's {what} is {type(value).__name__}, not a tensor")
        if self.detach:
            tensor = tensor.detach()
        if self._clone:
            tensor = tensor.clone()
        self.features[path] = tensor

    def _output_hook(self, path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._store(path, output, "output")

        return hook

    def _input_hook(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._store(path, args if args else kwargs, "input")

        return hook

    def __enter__(self) -> FeatureTaps:
        if self._handles:
            raise ModelError("FeatureTaps: already active; a tap set can be entered once at a time")
        self.features = {}
        try:
            for path, module, is_input in self._targets:
                if is_input:
                    handle = module.register_forward_pre_hook(self._input_hook(path), with_kwargs=True)
                else:
                    handle = module.register_forward_hook(self._output_hook(path))
                self._handles.append(handle)
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this tap set registered (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __getitem__(self, path: str) -> torch.Tensor:
        if path in self.features:
            return self.features[path]
        if path in self.paths:
            raise ModelError(
                f"path {path!r}: nothing captured yet; run a forward pass inside the `with` block"
            )
        raise ModelError(f"path {path!r}: not tapped; tapped: {', '.join(self.paths) or 'none'}")

    def __contains__(self, path: object) -> bool:
        return path in self.features


def capture(
    model: nn.Module,
    x: torch.Tensor,
    paths: Sequence[str],
    *,
    train: bool | None = None,
    detach: bool = True,
    grad: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` once and return ``(logits, {path: tensor})``.

    ``train`` sets the mode for this pass (None keeps the current one); the previous per-module
    modes are always restored. ``grad=False`` runs under ``torch.inference_mode()``.
    """
    mode = training_mode(model, train) if train is not None else contextlib.nullcontext()
    no_grad = contextlib.nullcontext() if grad else torch.inference_mode()
    with mode, FeatureTaps(model, paths, detach=detach) as taps, no_grad:
        logits = model(x)
    return logits, dict(taps.features)


# ---- probing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """One module seen by a dummy forward: dotted ``path``, ``kind`` (class name), output
    ``shape`` without the batch dimension (``()`` when the forward pass does not run it) and
    ``params`` (its parameters, submodules included)."""

    path: str
    kind: str
    shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class _Record:
    start: int
    end: int
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) >= 1
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_shape)
    if not ok:
        raise ModelError(
            f"input_shape={input_shape!r}: expected (channels, height, width) of positive integers"
        )
    return tuple(input_shape)


def _dummy(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    ref = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.zeros(2, *shape, device=device, dtype=dtype)


def _probe(model: nn.Module, input_shape: Any) -> tuple[dict[str, _Record], tuple[int, ...]]:
    """One eval-mode, inference-mode forward of a zero batch of 2 with hooks on every named
    module; per path: start/end order and the first call's input/output shapes (batch kept)."""
    shape = _check_shape(input_shape)
    counter = itertools.count()
    starts: dict[str, tuple[int, tuple[int, ...] | None]] = {}
    records: dict[str, _Record] = {}
    handles = []

    def pre(path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if path not in starts:
                t = _first_tensor(args if args else kwargs)
                starts[path] = (next(counter), tuple(t.shape) if t is not None else None)

        return hook

    def post(path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if path not in records and path in starts:
                t = _first_tensor(output)
                start, in_shape = starts[path]
                records[path] = _Record(
                    start, next(counter), in_shape, tuple(t.shape) if t is not None else None
                )

        return hook

    try:
        for path, module in model.named_modules():
            if path:
                handles.append(module.register_forward_pre_hook(pre(path), with_kwargs=True))
                handles.append(module.register_forward_hook(post(path)))
        with training_mode(model, False), torch.inference_mode():
            try:
                model(_dummy(model, shape))
            except (RuntimeError, ValueError, TypeError, IndexError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise ModelError(
                    f"input_shape={shape}: a forward pass of {type(model).__name__} failed: {first}"
                ) from err
    finally:
        for h in handles:
            h.remove()
    return records, shape


def list_layers(
    model: nn.Module, input_shape: tuple[int, int, int], leaf_only: bool = False
) -> list[LayerInfo]:
    """Every named module of ``model`` in the order the forward pass enters them (modules the
    pass never runs last, with shape ``()``), from one dummy forward in eval mode (restored
    after). ``leaf_only`` keeps modules without children."""
    records, _ = _probe(model, input_shape)
    modules = [(p, m) for p, m in model.named_modules() if p]
    order = {p: i for i, (p, _) in enumerate(modules)}
    out = []
    for path, module in modules:
        if leaf_only and next(module.children(), None) is not None:
            continue
        rec = records.get(path)
        shape = rec.out_shape[1:] if rec is not None and rec.out_shape is not None else ()
        params = sum(p.numel() for p in module.parameters())
        out.append(LayerInfo(path, type(module).__name__, tuple(shape), params))
    out.sort(
        key=lambda info: (0, records[info.path].start) if info.path in records else (1, order[info.path])
    )
    return out


def _is_zoo(model: nn.Module) -> bool:
    stages = getattr(model, "stages", None)
    return (
        isinstance(stages, (list, tuple))
        and len(stages) > 0
        and all(isinstance(s, str) for s in stages)
        and isinstance(getattr(model, "fc", None), nn.Linear)
        and isinstance(getattr(model, "pool", None), nn.Module)
    )


def _declared_stages(model: nn.Module) -> list[str] | None:
    stages = getattr(model, "stages", None)
    if isinstance(stages, (list, tuple)) and stages and all(isinstance(s, str) for s in stages):
        for s in stages:
            get_module(model, split_path(s)[0])
        return list(stages)
    return None


def _pool_cut(records: dict[str, _Record]) -> float:
    """Where the head begins: the start order of the last module that collapses a spatial map
    (global pooling or a flatten: 4-D input with more than one pixel, output not 4-D or 1x1);
    infinity if there is none. Taking the last one skips squeeze-excitation pools inside blocks."""
    cut = -math.inf
    for rec in records.values():
        if rec.in_shape is None or rec.out_shape is None or len(rec.in_shape) != 4:
            continue
        if rec.in_shape[2] * rec.in_shape[3] <= 1:
            continue
        if len(rec.out_shape) != 4 or rec.out_shape[2] * rec.out_shape[3] == 1:
            cut = max(cut, rec.start)
    return cut if cut > -math.inf else math.inf


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[2:] if len(shape) == 4 else shape[1:-1]


def _candidates(model: nn.Module, records: dict[str, _Record]) -> list[str]:
    """Top-level children, expanded through plain ``Sequential``/``ModuleList`` containers whose
    children run at more than one resolution (so a whole conv stack in one container is split
    into its blocks)."""

    def expand(prefix: str, module: nn.Module) -> list[str]:
        children = [(f"{prefix}.{n}" if prefix else n, c) for n, c in module.named_children()]
        if prefix and type(module) not in (nn.Sequential, nn.ModuleList):
            return [prefix]
        if not prefix:
            return [p for path, child in children for p in expand(path, child)]
        sizes = {_spatial(records[p].out_shape) for p, _ in children if p in records and records[p].out_shape}
        if len(sizes) > 1:
            return [p for path, child in children for p in expand(path, child)]
        return [prefix]

    return expand("", model)


def stage_layers(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> list[str]:
    """The module paths whose outputs are ``model``'s successive stages, shallow to deep.

    ``model.stages`` when the model declares it (every zoo model does). Otherwise a heuristic
    from one dummy forward on ``input_shape``: the top-level children (split into blocks where
    one container spans several resolutions) with 4-D outputs that run before global pooling
    (for models without such maps, e.g. MLPs: every child that runs before the classifier); of
    each run of consecutive modules with the same output shape the last one is kept, runs of
    parameter-free modules alone (a max-pool) are dropped, and the last feature map is always
    kept.
    """
    declared = _declared_stages(model)
    if declared is not None:
        return declared
    if input_shape is None:
        raise ModelError(
            f"input_shape: needed to find the stages of {type(model).__name__} (it has no `stages` attribute)"
        )
    records, _ = _probe(model, input_shape)
    try:
        head = classifier_layer(model)
    except ModelError:
        head = None
    head_start = records[head].start if head is not None and head in records else math.inf
    cut = min(_pool_cut(records), head_start)
    cands = [p for p in _candidates(model, records) if p in records and records[p].out_shape is not None]
    cands = sorted((p for p in cands if len(records[p].out_shape) >= 2), key=lambda p: records[p].end)
    ran = [p for p in cands if len(records[p].out_shape) == 4 and records[p].end < cut]
    if not ran:
        ran = [p for p in cands if records[p].end < head_start]
    if not ran:
        raise ModelError(
            f"input_shape={tuple(input_shape)}: found no stage outputs in {type(model).__name__}"
        )
    runs: list[list[str]] = []
    for p in ran:
        if runs and records[runs[-1][-1]].out_shape[1:] == records[p].out_shape[1:]:
            runs[-1].append(p)
        else:
            runs.append([p])

    def has_params(path: str) -> bool:
        return next(get_module(model, path).parameters(), None) is not None

    kept = [run[-1] for i, run in enumerate(runs) if i == len(runs) - 1 or any(has_params(p) for p in run)]
    return kept


def last_conv_layer(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> str:
    """The path of the last 4-D feature map before global pooling (the map class activation
    maps are computed on): ``model.stages[-1]`` for zoo models (for the ViT: its final
    ``(B, N, D)`` token map, ``N`` patches in row-major order); for other models the last module,
    outermost first, whose output is 4-D, found by one dummy forward on ``input_shape``."""
    declared = _declared_stages(model)
    if declared is not None:
        return declared[-1]
    if input_shape is None:
        raise ModelError(
            f"input_shape: needed to find the last conv map of {type(model).__name__} (no `stages` attribute)"
        )
    records, _ = _probe(model, input_shape)
    cut = _pool_cut(records)
    maps = [
        (rec.end, p)
        for p, rec in records.items()
        if rec.out_shape is not None and len(rec.out_shape) == 4 and rec.end < cut
    ]
    if not maps:
        raise ModelError(
            f"input_shape={tuple(input_shape)}: {type(model).__name__} has no 4-D feature map before pooling"
        )
    return max(maps)[1]


def classifier_layer(model: nn.Module) -> str:
    """The path of the final ``nn.Linear``: ``fc`` for zoo models, otherwise the last
    ``nn.Linear`` in module registration order (:class:`ModelError` when there is none)."""
    if _is_zoo(model):
        return "fc"
    linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"model {type(model).__name__}: has no nn.Linear layer to use as the classifier")
    return linears[-1]


def penultimate_layer(model: nn.Module) -> str:
    """The path of the penultimate embedding ``(B, D)``: ``pool`` for zoo models, otherwise the
    input of the classifier, ``"<last Linear path>:input"``; for a model without an ``nn.Linear``
    (a convolutional classifier) the input of its last module with parameters of its own, in
    registration order (``"<path>:input"``, then a feature map). :class:`ModelError` for a model
    without parameters."""
    if _is_zoo(model):
        return "pool"
    if any(isinstance(m, nn.Linear) for m in model.modules()):
        return f"{classifier_layer(model)}{INPUT_SUFFIX}"
    owners = [
        p for p, m in model.named_modules() if p and next(m.parameters(recurse=False), None) is not None
    ]
    if not owners:
        raise ModelError(f"model {type(model).__name__}: has no layer with parameters to embed images")
    return f"{owners[-1]}{INPUT_SUFFIX}"


def _stage_geometry(model: nn.Module, paths: list[str], input_shape: Any) -> list[float]:
    """Per stage path: its resolution relative to the input side (feature-map height, patch
    grid side for ``(B, N, D)`` tokens, 1 pixel for vectors), from one dummy forward."""
    records, shape = _probe(model, input_shape)
    side = shape[-1] if len(shape) >= 2 else 1
    out = []
    for path in paths:
        module_path, is_input = split_path(path)
        rec = records.get(module_path)
        s = None if rec is None else (rec.in_shape if is_input else rec.out_shape)
        if s is None:
            raise ModelError(f"stage {path!r}: not run by a forward pass of {type(model).__name__}")
        if len(s) == 4:
            res = s[2]
        elif len(s) == 3:
            res = math.sqrt(s[1])
        else:
            res = 1
        out.append(max(res, 1) / side)
    return out


def match_stages(
    student: nn.Module,
    teacher: nn.Module,
    student_shape: tuple[int, int, int],
    teacher_shape: tuple[int, int, int],
    n: int | None = None,
) -> list[tuple[str, str]]:
    """Default ``(student_path, teacher_path)`` pairs for feature distillation.

    ``n`` student stages (default: as many as the shallower model has) are taken evenly by
    depth, always ending with the last; each gets the teacher stage closest in relative depth
    ``(i + 1) / num_stages``, with a penalty of 0.25 per halving of relative resolution
    between them, keeping the pairs in order (teacher stages strictly increasing) and pairing
    the two last stages — the minimum-cost such assignment (dynamic programming).
    """
    s_paths = stage_layers(student, student_shape)
    t_paths = stage_layers(teacher, teacher_shape)
    ls, lt = len(s_paths), len(t_paths)
    limit = min(ls, lt)
    if n is None:
        n = limit
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        raise ModelError(
            f"n={n!r}: expected an integer in [1, {limit}] (student has {ls} stages, teacher {lt})"
        )
    s_idx = [math.floor((k + 1) * ls / n + 0.5) - 1 for k in range(n)]
    s_res = _stage_geometry(student, [s_paths[i] for i in s_idx], student_shape)
    t_res = _stage_geometry(teacher, t_paths, teacher_shape)

    def cost(k: int, j: int) -> float:
        depth = abs((s_idx[k] + 1) / ls - (j + 1) / lt)
        return depth + _RESOLUTION_WEIGHT * abs(math.log2(s_res[k] / t_res[j]))

    # best[k][j]: minimum cost of pairing students 0..k with student k on teacher j
    inf = math.inf
    best = [[inf] * lt for _ in range(n)]
    back = [[-1] * lt for _ in range(n)]
    for j in range(lt):
        best[0][j] = cost(0, j)
    for k in range(1, n):
        for j in range(k, lt):
            prev = min(range(k - 1, j), key=lambda i: best[k - 1][i])
            best[k][j] = best[k - 1][prev] + cost(k, j)
            back[k][j] = prev
    j = lt - 1
    chosen = [j]
    for k in range(n - 1, 0, -1):
        j = back[k][j]
        chosen.append(j)
    chosen.reverse()
    return [(s_paths[i], t_paths[j]) for i, j in zip(s_idx, chosen, strict=True)]
