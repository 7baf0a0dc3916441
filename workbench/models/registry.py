"""The model registry (in the spirit of timm's ``create_model``): named architectures, each a
family class plus the keyword arguments its name fixes."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.models.cnn import PlainCNN
from workbench.models.errors import ModelError, check_int, nearest
from workbench.models.estimate import ModelEstimate, describe_kwargs, estimate_family, memory_problem
from workbench.models.mlp import MLP
from workbench.models.mobilenetv2 import MobileNetV2
from workbench.models.resnet import CifarResNet
from workbench.models.vgg import VGG
from workbench.models.vit import TinyViT
from workbench.models.wrn import WideResNet

_COMMON = ("num_classes", "in_channels", "image_size")

FAMILIES: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn": PlainCNN,
    "resnet": CifarResNet,
    "wrn": WideResNet,
    "vgg": VGG,
    "mobilenetv2": MobileNetV2,
    "vit": TinyViT,
}


@dataclass(frozen=True)
class ModelSpec:
    """One registered name: its family, a one-line description, and ``defaults`` — every keyword
    argument the name builds with (the family defaults overlaid with the ``fixed`` ones).
    ``fixed`` lists the arguments the name itself pins (``depth`` for ``resnet20``)."""

    name: str
    family: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()


_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {}


def family_defaults(family: str) -> dict[str, Any]:
    """The keyword arguments (beyond num_classes, in_channels, image_size) of ``family`` with
    their defaults."""
    if family not in FAMILIES:
        raise ModelError(f"family {family!r}: unknown; known: {', '.join(FAMILIES)}")
    sig = inspect.signature(FAMILIES[family].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self" and k not in _COMMON}


def register_model(name: str, family: str, description: str, **fixed: Any) -> None:
    """Add ``name`` as ``family`` built with the keyword arguments ``fixed``."""
    allowed = family_defaults(family)
    bad = sorted(set(fixed) - set(allowed))
    if bad:
        raise ModelError(
            f"model {name!r}: family {family!r} has no argument {bad[0]!r}; allowed: {', '.join(allowed)}"
        )
    _REGISTRY[name] = (family, description, dict(fixed))


def list_models() -> list[str]:
    """Every registered model name, in registry order (small to large within a family)."""
    return list(_REGISTRY)


def describe_models() -> list[ModelSpec]:
    """A :class:`ModelSpec` (name, family, description, defaults) per registered name."""
    out = []
    for name, (family, description, fixed) in _REGISTRY.items():
        defaults = {**family_defaults(family), **fixed}
        out.append(ModelSpec(name, family, description, defaults, tuple(fixed)))
    return out


def create_model(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name`` for ``in_channels x image_size x image_size`` inputs
    and ``num_classes`` classes, with freshly initialised weights (seed with
    ``torch.manual_seed`` first for reproducible weights).

    ``kwargs`` are the family's own arguments (see :func:`describe_models`); those the name pins
    (``depth`` of ``resnet20``) cannot be changed — use the family's generic name (``resnet``).
    Unknown names, unknown or pinned arguments and bad values raise :class:`ModelError` naming
    the model and the argument; so does a model whose estimated size (:func:`estimate_model`)
    exceeds the memory budget, before anything is allocated. The result follows the zoo conventions: ``forward(x) -> logits``,
    ``stages`` (module paths, shallow to deep), head ``pool`` (penultimate embedding) then ``fc``.
    """
    family, fixed = _checked_name(name, kwargs)
    estimate = estimate_model(name, num_classes, in_channels, image_size, **kwargs)
    try:
        common = {
            "num_classes": check_int("num_classes", num_classes),
            "in_channels": check_int("in_channels", in_channels),
            "image_size": check_int("image_size", image_size),
        }
        if estimate is None:  # a family registered without an estimator: size it on the meta device
            with torch.device("meta"):
                meta = FAMILIES[family](**common, **{**fixed, **kwargs})
            estimate = ModelEstimate(sum(p.numel() for p in meta.parameters()), 0, 0)
            _refuse_over_budget(kwargs, in_channels, image_size, estimate)
        return FAMILIES[family](**common, **{**fixed, **kwargs})
    except ModelError as err:
        raise ModelError(f"model {name!r}: {err}") from None


def _checked_name(name: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(family, fixed kwargs)`` of ``name``; unknown names and unknown or pinned kwargs raise."""
    if name not in _REGISTRY:
        close = nearest(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"model {name!r}: unknown name{hint}; known: {', '.join(_REGISTRY)}")
    family, _, fixed = _REGISTRY[name]
    allowed = family_defaults(family)
    for key in kwargs:
        if key not in allowed:
            free = [k for k in allowed if k not in fixed] or ["none"]
            raise ModelError(f"model {name!r}: unknown argument {key!r}; allowed: {', '.join(free)}")
        if key in fixed and not _same(kwargs[key], fixed[key]):
            raise ModelError(
                f"model {name!r}: argument {key}={kwargs[key]!r} is fixed by the name "
                f"({key}={fixed[key]!r}); use {family!r} to choose it"
            )
    return family, fixed


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
    needs about 37.5 GB of memory, over the budget of ...``. ``None`` for a user-registered family without
    an estimator.
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
    estimator is sized on PyTorch's ``meta`` device."""
    estimate = estimate_model(name, num_classes, in_channels, image_size, **kwargs)
    if estimate is None:
        family, fixed = _checked_name(name, kwargs)
        with torch.device("meta"):
            meta = FAMILIES[family](
                num_classes=num_classes, in_channels=in_channels, image_size=image_size, **{**fixed, **kwargs}
            )
        estimate = ModelEstimate(sum(p.numel() for p in meta.parameters()), 0, 0)
    return estimate.bytes


def _same(a: Any, b: Any) -> bool:
    """Equality that treats lists and tuples alike (YAML gives lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b


def _register_zoo() -> None:
    reg = register_model
    reg("mlp", "mlp", "Multilayer perceptron on flattened pixels; hidden=(256, 128)")
    reg(
        "cnn",
        "cnn",
        "Plain conv net, conv-BN-ReLU stages with max-pool, GAP + linear; channels, convs_per_stage",
    )
    reg(
        "cnn_small",
        "cnn",
        "Small plain conv net (16-32-64, ~72k params): the quick student",
        channels=(16, 32, 64),
    )
    reg(
        "cnn_large",
        "cnn",
        "Wider plain conv net (32-64-128, ~0.29M params): the MNIST-family teacher",
        channels=(32, 64, 128),
    )
    reg("resnet", "resnet", "CIFAR ResNet (He et al. 2016), 6n+2 layers; depth, width, channels")
    for depth in (8, 14, 20, 32, 44, 56, 110):
        reg(
            f"resnet{depth}", "resnet", f"CIFAR ResNet-{depth}, widths 16-32-64 (He et al. 2016)", depth=depth
        )
    for depth in (8, 32):
        reg(
            f"resnet{depth}x4",
            "resnet",
            f"CIFAR ResNet-{depth} four times wider, widths 64-128-256",
            depth=depth,
            channels=(32, 64, 128, 256),
        )
    reg("wrn", "wrn", "Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016); depth, widen_factor, dropout")
    for depth, k in ((16, 1), (16, 2), (40, 1), (40, 2)):
        reg(f"wrn_{depth}_{k}", "wrn", f"Wide ResNet WRN-{depth}-{k}", depth=depth, widen_factor=k)
    reg("vgg", "vgg", "VGG with BN for small images, GAP + linear; depth (8, 11, 13, 16, 19), width")
    for depth in (8, 11, 13):
        reg(f"vgg{depth}", "vgg", f"VGG-{depth} with BN for small images", depth=depth)
    reg(
        "mobilenetv2",
        "mobilenetv2",
        "MobileNetV2 (Sandler et al. 2018) for small images; width_mult=0.5, expand_ratio",
    )
    reg("vit_tiny", "vit", "Tiny Vision Transformer, mean-pooled tokens; patch_size, dim, depth, heads")


_register_zoo()
