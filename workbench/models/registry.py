"""The model registry (in the spirit of timm's ``create_model``): named architectures, each a
builder — an ``nn.Module`` class or a function returning a module — plus the keyword arguments its
name fixes.

The zoo registers itself here with :func:`register_model`; an architecture of your own registers
the same way, with :func:`register_model` as a decorator (timm's convention), in your own code or
in a plugin (:mod:`workbench.models.plugins`) that every face and job worker loads. Listing the
registry or creating a model loads the plugins first (once per process).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import torch
from torch import nn

from workbench.errors import one_line
from workbench.models import plugins
from workbench.models.cnn import PlainCNN
from workbench.models.errors import ModelError, check_int, nearest
from workbench.models.estimate import ModelEstimate, describe_kwargs, estimate_family, memory_problem
from workbench.models.meta import SkipInitOnMeta, check_forward, on_meta_only
from workbench.models.mlp import MLP
from workbench.models.mobilenetv2 import MobileNetV2
from workbench.models.resnet import CifarResNet
from workbench.models.vgg import VGG
from workbench.models.vit import TinyViT
from workbench.models.wrn import WideResNet

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Callable[..., Any])

_COMMON = ("num_classes", "in_channels", "image_size")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: :attr:`ModelSpec.source` of the models the workbench itself ships
ZOO = "zoo"

#: family name -> its builder (an ``nn.Module`` class or a function returning a module), filled by
#: :func:`register_model`: the zoo's families first, then those of your own code and plugins
FAMILIES: dict[str, Builder] = {}


@dataclass(frozen=True)
class ModelSpec:
    """One registered name: its family, a one-line description, and ``defaults`` — every keyword
    argument the name builds with (the family defaults overlaid with the ``fixed`` ones).
    ``fixed`` lists the arguments the name itself pins (``depth`` for ``resnet20``).

    ``source`` says where the model came from: ``"zoo"`` for the workbench's own, the plugin's
    name for a model a plugin registered (:mod:`workbench.models.plugins`), else the module of the
    code that registered it (``"__main__"`` in a notebook or script). ``builder`` is the dotted
    name of the class or function that builds it."""

    name: str
    family: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()
    source: str = ZOO
    builder: str = ""


@dataclass(frozen=True)
class _Entry:
    family: str
    description: str
    fixed: dict[str, Any]
    source: str


_REGISTRY: dict[str, _Entry] = {}
_zoo_registering = False


# ---- registering -----------------------------------------------------------------------------
@overload
def register_model(
    builder: B,
    /,
    *,
    name: str | None = None,
    family: str | None = None,
    description: str | None = None,
    **fixed: Any,
) -> B: ...
@overload
def register_model(
    builder: None = None,
    /,
    *,
    name: str | None = None,
    family: str | None = None,
    description: str | None = None,
    **fixed: Any,
) -> Callable[[B], B]: ...
def register_model(
    builder: B | None = None,
    /,
    *,
    name: str | None = None,
    family: str | None = None,
    description: str | None = None,
    **fixed: Any,
) -> B | Callable[[B], B]:
    """Register an architecture under a name, as a decorator or a plain call (timm's convention).

    ``builder`` is an ``nn.Module`` class or a function returning a module; it takes
    ``num_classes``, ``in_channels`` and ``image_size`` (square inputs) plus keyword arguments of
    its own, each with a default: those defaults are the model's form (:func:`describe_models`),
    and a run config's ``model.kwargs`` may change them. Its ``forward(x)`` returns logits
    ``(B, num_classes)``; see ``docs/plugins.md`` for the conventions that give the best views.

    Args:
        builder: the class or function (omitted: a decorator is returned).
        name: the registered name (default: the family's name). Letters, digits, ``_``, ``-``, ``.``.
        family: the builder's family name (default: the builder's ``__name__``); every name of a
            family shares its builder (``resnet20`` and ``resnet32`` are both ``resnet``).
        description: one line (default: the first paragraph of the builder's docstring).
        fixed: keyword arguments the name pins (``depth=20`` for ``resnet20``); a config cannot
            change them.

    Returns:
        ``builder`` unchanged, or the decorator that registers it.

    Raises:
        ModelError: one line, for a builder that is not a class or function, a missing common
            argument, an argument without a default, a ``fixed`` key the builder does not take, or
            a name or family already registered by other code. Registering the same builder
            again from the same source (a module imported twice) replaces the entry.

    Example::

        @register_model(description="my tiny net")
        def my_net(num_classes=10, in_channels=1, image_size=28, width=16):
            ...
    """
    if builder is None:

        def decorate(target: B) -> B:
            return register_model(target, name=name, family=family, description=description, **fixed)

        return decorate
    _register(builder, name, family, description, fixed)
    return builder


def _register(
    builder: Any, name: str | None, family: str | None, description: str | None, fixed: dict[str, Any]
) -> None:
    if isinstance(builder, str):
        raise ModelError(
            f"register_model({builder!r}): expected a class or function first; pass the name as name=..."
        )
    is_class = isinstance(builder, type)
    if (is_class and not issubclass(builder, nn.Module)) or not callable(builder):
        raise ModelError(
            f"register_model: expected an nn.Module class or a function returning one, got {builder!r}"
        )
    family = family if family is not None else getattr(builder, "__name__", "")
    name = name if name is not None else family
    for what, value in (("family", family), ("name", name)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ModelError(
                f"register_model: {what}={value!r}: expected letters, digits, '_', '-' or '.', "
                f"starting with a letter or digit; pass {what}=..."
            )
    where = f"model {name!r}"
    allowed = _arguments(builder, where)
    bad = sorted(set(fixed) - set(allowed))
    if bad:
        raise ModelError(
            f"{where}: {_qualname(builder)} has no argument {bad[0]!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    owner = FAMILIES.get(family)
    if owner is not None and _qualname(owner) != _qualname(builder):
        raise ModelError(
            f"{where}: family {family!r} is already {_qualname(owner)}; pass family=... to name yours"
        )
    source = _source()
    old = _REGISTRY.get(name)
    if old is not None and (old.source, _qualname(FAMILIES[old.family])) != (source, _qualname(builder)):
        raise ModelError(
            f"{where}: already registered by {_qualname(FAMILIES[old.family])} (source {old.source!r}); "
            "register yours under another name"
        )
    FAMILIES[family] = builder
    text = " ".join(description.split()) if isinstance(description, str) else _doc_line(builder)
    _REGISTRY[name] = _Entry(family, text, dict(fixed), source)


def _qualname(builder: Any) -> str:
    """``module.qualname`` of a class or function: the identity two registrations are compared by."""
    module = getattr(builder, "__module__", None) or "?"
    return f"{module}.{getattr(builder, '__qualname__', type(builder).__name__)}"


def _source() -> str:
    """The plugin being imported, else ``"zoo"`` while the zoo registers itself, else the module
    of the code that called :func:`register_model` (the first frame outside this module)."""
    plugin = plugins.current_plugin()
    if plugin is not None:
        return plugin
    if _zoo_registering:
        return ZOO
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "?")) if frame is not None else "?"


def _doc_line(builder: Any) -> str:
    """The first paragraph of the builder's own docstring, on one line ("" without one)."""
    doc = builder.__dict__.get("__doc__") if isinstance(builder, type) else getattr(builder, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())


def _arguments(builder: Any, where: str) -> dict[str, Any]:
    """The builder's keyword arguments beyond the common three, with their defaults; raises when
    it does not take the common three or has an argument without a default."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError) as err:
        raise ModelError(f"{where}: cannot read the signature of {_qualname(builder)} ({err})") from None
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [c for c in _COMMON if c not in params and not var_kw]
    if missing:
        raise ModelError(
            f"{where}: {_qualname(builder)} must take num_classes, in_channels and image_size; "
            f"missing {missing[0]!r}"
        )
    out: dict[str, Any] = {}
    for key, param in params.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ModelError(f"{where}: argument {key!r} of {_qualname(builder)} is positional-only")
        if key in _COMMON:
            continue
        if param.default is inspect.Parameter.empty:
            raise ModelError(
                f"{where}: argument {key!r} of {_qualname(builder)} has no default; give it one "
                "(the defaults are the model's form)"
            )
        out[key] = param.default
    return out


# ---- listing -----------------------------------------------------------------------------------
def family_defaults(family: str) -> dict[str, Any]:
    """The keyword arguments (beyond num_classes, in_channels, image_size) of ``family`` with
    their defaults."""
    plugins.load_plugins()
    if family not in FAMILIES:
        raise ModelError(f"family {family!r}: unknown; known: {', '.join(FAMILIES)}")
    return _arguments(FAMILIES[family], f"family {family!r}")


def list_models() -> list[str]:
    """Every registered model name: the zoo in registry order (small to large within a family),
    then the models of your own code and of plugins (loaded first, once per process)."""
    plugins.load_plugins()
    return list(_REGISTRY)


def describe_models() -> list[ModelSpec]:
    """A :class:`ModelSpec` (name, family, description, defaults, source, builder) per registered
    name, in :func:`list_models` order (plugins loaded first)."""
    plugins.load_plugins()
    out = []
    for name, entry in list(_REGISTRY.items()):
        builder = FAMILIES[entry.family]
        defaults = {**_arguments(builder, f"model {name!r}"), **entry.fixed}
        out.append(
            ModelSpec(
                name,
                entry.family,
                entry.description,
                defaults,
                tuple(entry.fixed),
                entry.source,
                _qualname(builder),
            )
        )
    return out


# ---- building ----------------------------------------------------------------------------------
def create_model(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name`` for ``in_channels x image_size x image_size`` inputs
    and ``num_classes`` classes, with freshly initialised weights (seed with
    ``torch.manual_seed`` first for reproducible weights).

    ``kwargs`` are the family's own arguments (see :func:`describe_models`); those the name pins
    (``depth`` of ``resnet20``) cannot be changed — use the family's generic name (``resnet``).
    Unknown names, unknown or pinned arguments and bad values raise :class:`ModelError` naming
    the model and the argument; so does a model whose estimated size (:func:`estimate_model`, or a
    build on the ``meta`` device for a family without an estimator) exceeds the memory budget,
    before anything is allocated, and a builder that raises (its first line, with its type).
    Zoo models follow the conventions ``forward(x) -> logits``, ``stages`` (module paths,
    shallow to deep), head ``pool`` (penultimate embedding) then ``fc``; the analyses find
    sensible layers of models without them (:mod:`workbench.models.taps`).
    """
    family, fixed = _checked_name(name, kwargs)
    estimate = estimate_model(name, num_classes, in_channels, image_size, **kwargs)
    try:
        common = _common(num_classes, in_channels, image_size)
        if estimate is None:  # a family without an estimator: size it on the meta device
            estimate = _meta_estimate(family, common, {**fixed, **kwargs})
            if estimate is not None:
                _refuse_over_budget(kwargs, in_channels, image_size, estimate)
        return _build(family, common, {**fixed, **kwargs})
    except ModelError as err:
        raise ModelError(f"model {name!r}: {err}") from err.__cause__


def check_model(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> None:
    """Check that model ``name`` can be built for ``in_channels x image_size x image_size`` inputs
    and ``num_classes`` classes and that its forward pass returns logits ``(1, num_classes)``
    for one such input, allocating nothing: the model is built on the ``meta`` device (weight
    initialisation skipped) and the forward runs there. Where an operation has no meta
    implementation (or the forward reads a value), the model is built for real on the CPU and run
    on one zero image instead, leaving torch's random state as it was.

    Raises:
        ModelError: one line starting ``model 'NAME':`` — the mistakes :func:`create_model`
            refuses (unknown name or argument, bad value, over the memory budget), a builder that
            raises, a forward pass that fails or returns something other than the logits.
    """
    try:
        with torch.device("meta"), SkipInitOnMeta():
            model = create_model(name, num_classes, in_channels, image_size, **kwargs)
            check_forward(
                model, (int(in_channels), int(image_size), int(image_size)), int(num_classes), name=name
            )
        return
    except ModelError as err:
        if err.__cause__ is None or not on_meta_only(err.__cause__):
            raise
    with torch.random.fork_rng(devices=[]):
        model = create_model(name, num_classes, in_channels, image_size, **kwargs)
    check_forward(
        model.cpu(), (int(in_channels), int(image_size), int(image_size)), int(num_classes), name=name
    )


def _common(num_classes: int, in_channels: int, image_size: int) -> dict[str, int]:
    return {
        "num_classes": check_int("num_classes", num_classes),
        "in_channels": check_int("in_channels", in_channels),
        "image_size": check_int("image_size", image_size),
    }


def _build(family: str, common: dict[str, int], kwargs: dict[str, Any]) -> nn.Module:
    """Call the family's builder; a builder's own exception becomes a one-line ModelError (with
    the exception as its cause)."""
    builder = FAMILIES[family]
    try:
        model = builder(**common, **kwargs)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - a registered builder may raise anything
        shape = f"{common['in_channels']}x{common['image_size']}x{common['image_size']}"
        args = f" with {describe_kwargs(kwargs)}" if kwargs else ""
        raise ModelError(
            f"cannot be built{args} for {shape} inputs and {common['num_classes']} classes "
            f"({one_line(err, typed=True)})"
        ) from err
    if not isinstance(model, nn.Module):
        raise ModelError(f"{_qualname(builder)} returned {type(model).__name__}, expected an nn.Module")
    return model


def _meta_estimate(family: str, common: dict[str, int], kwargs: dict[str, Any]) -> ModelEstimate | None:
    """Size a family without an estimator by building it on the meta device; ``None`` when an
    operation of the builder has no meta implementation."""
    try:
        with torch.device("meta"), SkipInitOnMeta():
            meta = _build(family, common, kwargs)
    except ModelError as err:
        if err.__cause__ is not None and on_meta_only(err.__cause__):
            return None
        raise
    params = sum(p.numel() for p in meta.parameters())
    buffers = sum(b.numel() * b.element_size() for b in meta.buffers())
    return ModelEstimate(params, buffers, sum(1 for _ in meta.modules()))


def _checked_name(name: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(family, fixed kwargs)`` of ``name``; unknown names and unknown or pinned kwargs raise."""
    plugins.load_plugins()
    if name not in _REGISTRY:
        close = nearest(name, _REGISTRY, n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"model {name!r}: unknown name{hint}; known: {', '.join(_REGISTRY)}{_broken_note()}")
    entry = _REGISTRY[name]
    allowed = _arguments(FAMILIES[entry.family], f"model {name!r}")
    for key in kwargs:
        if key not in allowed:
            free = [k for k in allowed if k not in entry.fixed] or ["none"]
            raise ModelError(f"model {name!r}: unknown argument {key!r}; allowed: {', '.join(free)}")
        if key in entry.fixed and not _same(kwargs[key], entry.fixed[key]):
            raise ModelError(
                f"model {name!r}: argument {key}={kwargs[key]!r} is fixed by the name "
                f"({key}={entry.fixed[key]!r}); use {entry.family!r} to choose it"
            )
    return entry.family, entry.fixed


def _broken_note() -> str:
    note = plugins.broken_summary()
    return f"; {note}" if note else ""


def _refuse_over_budget(
    kwargs: dict[str, Any], in_channels: int, image_size: int, estimate: ModelEstimate
) -> None:
    problem = memory_problem(estimate)
    if problem:
        shown = describe_kwargs(kwargs) or "the default arguments"
        raise ModelError(
            f"{shown} on {in_channels}x{image_size}x{image_size} inputs: {problem}; refused before allocating"
        )


def estimate_model(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> ModelEstimate | None:
    """Size the registered model ``name`` from its architecture alone (nothing is allocated):
    parameter count, buffer bytes and module count (see :mod:`workbench.models.estimate`).

    Raises :class:`ModelError` naming the model and the argument for the mistakes
    :func:`create_model` would refuse (unknown name or argument, bad value), and when the model
    would not fit the memory budget (``$WORKBENCH_MEMORY_BUDGET_MB``, else half the available
    memory): ``model 'mlp': hidden=[100000, 100000] on 1x28x28 inputs: 10,079,600,010 parameters,
    needs about 37.5 GB of memory, over the budget of ...``. ``None`` for a family without an
    arithmetic estimator (your own: :func:`estimate_model_bytes` sizes those on the meta device).
    """
    family, fixed = _checked_name(name, kwargs)
    try:
        estimate = estimate_family(family, num_classes, in_channels, image_size, {**fixed, **kwargs})
        if estimate is not None:
            _refuse_over_budget(kwargs, in_channels, image_size, estimate)
    except ModelError as err:
        raise ModelError(f"model {name!r}: {err}") from None
    return estimate


def estimate_model_bytes(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> int:
    """Estimated bytes of model ``name`` once built (float32 parameters, buffers, module objects),
    computed from the architecture without allocating; raises :class:`ModelError` as
    :func:`estimate_model` does (bad arguments, over the memory budget). A family without an
    estimator is sized on PyTorch's ``meta`` device (built for real, then freed, when its builder
    needs real tensors)."""
    estimate = estimate_model(name, num_classes, in_channels, image_size, **kwargs)
    if estimate is not None:
        return estimate.bytes
    family, fixed = _checked_name(name, kwargs)
    try:
        common = _common(num_classes, in_channels, image_size)
        estimate = _meta_estimate(family, common, {**fixed, **kwargs})
        if estimate is None:
            with torch.random.fork_rng(devices=[]):
                model = _build(family, common, {**fixed, **kwargs})
            estimate = ModelEstimate(
                sum(p.numel() for p in model.parameters()),
                sum(b.numel() * b.element_size() for b in model.buffers()),
                sum(1 for _ in model.modules()),
            )
    except ModelError as err:
        raise ModelError(f"model {name!r}: {err}") from None
    return estimate.bytes


def _same(a: Any, b: Any) -> bool:
    """Equality that treats lists and tuples alike (YAML gives lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b


def _register_zoo() -> None:
    global _zoo_registering
    _zoo_registering = True
    try:
        _register_zoo_names()
    finally:
        _zoo_registering = False


def _register_zoo_names() -> None:
    def reg(builder: Builder, name: str, family: str, description: str, **fixed: Any) -> None:
        register_model(builder, name=name, family=family, description=description, **fixed)

    reg(MLP, "mlp", "mlp", "Multilayer perceptron on flattened pixels; hidden=(256, 128)")
    reg(
        PlainCNN,
        "cnn",
        "cnn",
        "Plain conv net, conv-BN-ReLU stages with max-pool, GAP + linear; channels, convs_per_stage",
    )
    reg(
        PlainCNN,
        "cnn_small",
        "cnn",
        "Small plain conv net (16-32-64, ~72k params): the quick student",
        channels=(16, 32, 64),
    )
    reg(
        PlainCNN,
        "cnn_large",
        "cnn",
        "Wider plain conv net (32-64-128, ~0.29M params): the MNIST-family teacher",
        channels=(32, 64, 128),
    )
    reg(CifarResNet, "resnet", "resnet", "CIFAR ResNet (He et al. 2016), 6n+2 layers; depth, width, channels")
    for depth in (8, 14, 20, 32, 44, 56, 110):
        reg(
            CifarResNet,
            f"resnet{depth}",
            "resnet",
            f"CIFAR ResNet-{depth}, widths 16-32-64 (He et al. 2016)",
            depth=depth,
        )
    for depth in (8, 32):
        reg(
            CifarResNet,
            f"resnet{depth}x4",
            "resnet",
            f"CIFAR ResNet-{depth} four times wider, widths 64-128-256",
            depth=depth,
            channels=(32, 64, 128, 256),
        )
    reg(
        WideResNet,
        "wrn",
        "wrn",
        "Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016); depth, widen_factor, dropout",
    )
    for depth, k in ((16, 1), (16, 2), (40, 1), (40, 2)):
        reg(
            WideResNet, f"wrn_{depth}_{k}", "wrn", f"Wide ResNet WRN-{depth}-{k}", depth=depth, widen_factor=k
        )
    reg(VGG, "vgg", "vgg", "VGG with BN for small images, GAP + linear; depth (8, 11, 13, 16, 19), width")
    for depth in (8, 11, 13):
        reg(VGG, f"vgg{depth}", "vgg", f"VGG-{depth} with BN for small images", depth=depth)
    reg(
        MobileNetV2,
        "mobilenetv2",
        "mobilenetv2",
        "MobileNetV2 (Sandler et al. 2018) for small images; width_mult=0.5, expand_ratio",
    )
    reg(
        TinyViT,
        "vit_tiny",
        "vit",
        "Tiny Vision Transformer, mean-pooled tokens; patch_size, dim, depth, heads",
    )


_register_zoo()
