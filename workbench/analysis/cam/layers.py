"""Which layers of a model a class activation map can be drawn at, and a clear error when none.

:func:`cam_layers` lists the candidates a face offers in its layer picker: ``""`` (the default, the
model's last convolutional map) followed by the model's stages and every other module whose output
is a feature map ``(B, C, h, w)`` (or, for a stage, tokens ``(B, T, D)``), in forward order.
:func:`check_cam_layer` resolves a layer choice and says in one line when the model has no feature
map at all (an MLP), pointing to the pixel methods, which work on any model.

Both read shapes from one dummy forward (:func:`workbench.models.taps.list_layers`) of the
analysis's own copy (:func:`workbench.analysis._common.working_copy`), so the caller's model is
never touched, not even by a hook for the time of the forward: a model shared by several sessions
can be listed while other threads copy or analyse it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from workbench.analysis._common import AnalysisError, model_device, working_copy

#: methods that attribute to the input pixels and so need no feature map
PIXEL_HINT = "use a pixel method (saliency, integrated_gradients, occlusion)"


@dataclass(frozen=True)
class _Probe:
    shapes: dict[str, tuple[int, ...]]  # module path -> output shape without the batch dimension
    candidates: list[str]  # stages with map or token outputs, then other modules with map outputs
    default: str  # the last conv map compute_cams uses by default ("" when there is none)


def _probe(model: nn.Module, image_shape: tuple[int, int, int]) -> _Probe:
    from workbench.models.errors import ModelError
    from workbench.models.taps import last_conv_layer, list_layers, stage_layers

    if not isinstance(model, nn.Module):
        raise AnalysisError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    work = working_copy(model, model_device(model))
    shapes = {info.path: info.shape for info in list_layers(work, image_shape)}
    stages = [p for p in stage_layers(work, image_shape) if len(shapes.get(p, ())) in (2, 3)]
    maps = [path for path, shape in shapes.items() if path and len(shape) == 3]
    try:
        default = last_conv_layer(work, input_shape=image_shape)
    except ModelError:
        default = ""
    return _Probe(shapes, stages + [p for p in maps if p not in stages], default)


def cam_layers(model: nn.Module, image_shape: tuple[int, int, int]) -> list[str]:
    """Layers a CAM can be drawn at, for a layer picker.

    Args:
        model: the network (any device; left unchanged).
        image_shape: the input's ``(channels, height, width)``.

    Returns:
        ``[""]`` (the model's last convolutional layer, the default of
        :func:`workbench.analysis.compute_cams`) followed by the model's stages whose outputs are
        4-D feature maps (or 3-D tokens) and every other module with a 4-D output ``(B, C, h, w)``, in
        forward order. Just ``[""]`` for a model without feature maps (an MLP) or whose dummy forward
        fails: pixel methods still work there.
    """
    try:
        return ["", *_probe(model, image_shape).candidates]
    except Exception:  # noqa: BLE001 - a model without feature maps: only the default
        return [""]


def check_cam_layer(
    model: nn.Module, layer: str | None, image_shape: tuple[int, int, int], *, name: str | None = None
) -> str:
    """The module path a layer CAM method will use on ``model``, checked before any map is computed.

    Args:
        model: the network (left unchanged).
        layer: a module path, or ``None``/``""`` for the default (the last convolutional map).
        image_shape: the input's ``(channels, height, width)``.
        name: which model this is (``"student"``); when given, the error message starts with it.

    Returns:
        The resolved module path.

    Raises:
        AnalysisError: one line. For a model without any feature map (an MLP):
            ``layer 'X': expected a 4-D feature map; this model has none — use a pixel method
            (saliency, integrated_gradients, occlusion)``; for a layer whose output is not a map in a
            model that has some: the layer, its output's dimensions and the candidates.
    """
    try:
        return _check(model, layer, image_shape)
    except AnalysisError as err:
        if name is None:
            raise
        raise AnalysisError(f"{name}: {err}") from None


def _check(model: nn.Module, layer: str | None, image_shape: tuple[int, int, int]) -> str:
    from workbench.models.errors import ModelError
    from workbench.models.taps import split_path

    if layer is not None and not isinstance(layer, str):
        raise AnalysisError(f"layer: expected a module path such as 'layer3', got {layer!r}")
    try:
        probe = _probe(model, image_shape)
    except ModelError as err:
        raise AnalysisError(f"model: {err}") from None
    path = layer or probe.default
    shown_path = repr(path) if path else "(default)"
    if not probe.candidates:
        raise AnalysisError(
            f"layer {shown_path}: expected a 4-D feature map; this model has none — {PIXEL_HINT}"
        )
    try:
        module_path, to_input = split_path(path)
    except ModelError as err:
        raise AnalysisError(f"layer: {err}") from None
    listed = ", ".join(probe.candidates[:12]) + (", ..." if len(probe.candidates) > 12 else "")
    if module_path not in probe.shapes:
        raise AnalysisError(f"layer {shown_path}: no such module; feature maps: {listed}")
    # a map (B, C, h, w) or tokens (B, T, D), as compute_cams accepts; a module's input is checked there
    if to_input or len(probe.shapes[module_path]) in (2, 3):
        return path
    dims = len(probe.shapes[module_path]) + 1 if probe.shapes[module_path] else 0
    got = f"a {dims}-D output" if dims else "no output (the forward pass never runs it)"
    raise AnalysisError(f"layer {shown_path}: expected a 4-D feature map, got {got}; feature maps: {listed}")


__all__ = ["PIXEL_HINT", "cam_layers", "check_cam_layer"]
