"""The model registry (in the spirit of timm's ``create_model``): named architectures, each a
family class plus the keyword arguments its name fixes."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from workbench.models.cnn import PlainCNN
from workbench.models.errors import ModelError, check_int, nearest
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
    the model and the argument. The result follows the zoo conventions: ``forward(x) -> logits``,
    ``stages`` (module paths, shallow to deep), head ``pool`` (penultimate embedding) then ``fc``.
    """
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
    try:
        common = {
            "num_classes": check_int("num_classes", num_classes),
            "in_channels": check_int("in_channels", in_channels),
            "image_size": check_int("image_size", image_size),
        }
        return FAMILIES[family](**common, **{**fixed, **kwargs})
    except ModelError as err:
        raise ModelError(f"model {name!r}: {err}") from None


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
