"""The model zoo, your own architectures, and feature taps.

``create_model(name, num_classes, in_channels, image_size, **kwargs)`` builds a registered
architecture (``list_models()`` / ``describe_models()`` say what exists and where each came from).
Every zoo model follows the same conventions, which give the analyses their best defaults:

* ``forward(x)`` returns logits only;
* ``model.stages`` lists the dotted module paths of its successive stages, shallow to deep;
  for conv nets these give ``(B, C, H, W)`` maps, the last one being the map that is pooled;
  for the ViT ``(B, N, D)`` tokens;
* the head is ``model.pool`` (global average pooling + flatten, output ``(B, C)``: the
  penultimate embedding) followed by ``model.fc`` (``nn.Linear``), so plain CAMs apply.

``@register_model`` adds an architecture of your own (a class or a builder function taking
``num_classes, in_channels, image_size`` and keyword arguments with defaults); a plugin
(:mod:`workbench.models.plugins`: an entry point of group ``workbench.models`` or a module named
in ``$WORKBENCH_PLUGINS``) does so for every face and job worker. A model without ``stages``,
``pool`` and ``fc`` gets defaults derived from its modules, in one place,
:mod:`workbench.models.taps` (``stage_layers``, ``last_conv_layer``, ``penultimate_layer``,
``classifier_layer``). ``check_model`` tries a model on a dataset's shape without allocating.

:mod:`workbench.models.taps` captures any module's output by path with forward hooks, for zoo
and user models alike; :mod:`workbench.models.layout` runs conv nets channels-last and
:mod:`workbench.models.fusion` folds BatchNorm into convolutions for inference.
"""

from __future__ import annotations

from workbench.models.errors import ModelError
from workbench.models.estimate import ModelEstimate
from workbench.models.fusion import fold_batchnorm
from workbench.models.info import ModelInfo, count_flops, model_info
from workbench.models.layout import (
    MEMORY_FORMATS,
    as_channels_last,
    channels_last,
    input_layout,
    wants_channels_last,
)
from workbench.models.plugins import Plugin, broken_plugins, load_plugins
from workbench.models.registry import (
    ZOO,
    ModelSpec,
    check_model,
    create_model,
    describe_models,
    estimate_model,
    estimate_model_bytes,
    list_models,
    register_model,
)
from workbench.models.taps import (
    FeatureTaps,
    LayerInfo,
    capture,
    classifier_layer,
    get_module,
    last_conv_layer,
    list_layers,
    match_stages,
    penultimate_layer,
    stage_layers,
    training_mode,
)

__all__ = [
    "FeatureTaps",
    "LayerInfo",
    "MEMORY_FORMATS",
    "ModelError",
    "ModelEstimate",
    "ModelInfo",
    "ModelSpec",
    "Plugin",
    "ZOO",
    "as_channels_last",
    "broken_plugins",
    "capture",
    "channels_last",
    "check_model",
    "classifier_layer",
    "count_flops",
    "create_model",
    "describe_models",
    "estimate_model",
    "estimate_model_bytes",
    "fold_batchnorm",
    "get_module",
    "input_layout",
    "last_conv_layer",
    "list_layers",
    "list_models",
    "load_plugins",
    "match_stages",
    "model_info",
    "penultimate_layer",
    "register_model",
    "stage_layers",
    "training_mode",
    "wants_channels_last",
]
