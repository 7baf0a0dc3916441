"""Connectors and projection heads that map student features onto teacher features, and the
layer checks and shape probes that size them when a method is set up.

* :class:`ConvConnector` — FitNets' regressor as in RepDistiller's ``ConvReg``: a 1x1 convolution
  and batch normalisation (and a ReLU when the teacher's feature is non-negative), after the
  student map is pooled or upsampled to the teacher's spatial size.
* :class:`LinearConnector` — the same for vectors and token sequences: linear + batch norm.
* :class:`Embed` — CRD's embedding head (RepDistiller ``Embed``): flatten, linear, L2-normalise.
* :class:`OrthogonalProjector` — V_kD's projector: a bias-free linear map kept orthogonal by
  ``torch.nn.utils.parametrizations.orthogonal``.

Every builder takes shapes without the batch dimension, as :func:`probe_shapes` returns them,
and raises :class:`ConnectorError` (a ``ValueError``) when the shapes cannot be connected.
Methods turn these errors into one-line :class:`~workbench.distill.base.MethodError` messages
naming the method and the field (:func:`method_error`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from workbench.distill.base import MethodContext, MethodError
from workbench.errors import one_line

__all__ = [
    "ConnectorError",
    "ConvConnector",
    "Embed",
    "GridConnector",
    "LinearConnector",
    "OrthogonalProjector",
    "PooledLinearConnector",
    "build_connector",
    "check_layer",
    "default_layer",
    "describe_shape",
    "first_line",
    "method_error",
    "pool_to_vector",
    "probe_features",
    "probe_pairs",
    "probe_shapes",
    "require_teacher",
    "single_layer_pair",
    "stage_layer_pairs",
    "token_grid",
    "tokens_to_map",
    "vector_size",
]


class ConnectorError(ValueError):
    """Student and teacher feature shapes cannot be connected; the message says why."""


# ---- errors and layer checks --------------------------------------------------------------------


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type name when it has none)."""
    return one_line(err)


def method_error(method: str, field: str, message: str) -> MethodError:
    """A one-line :class:`MethodError` ``"method 'NAME': FIELD: MESSAGE"`` (the format of
    :func:`workbench.distill.base.parse_params`)."""
    text = one_line(message) if message.strip() else "invalid value"
    return MethodError(f"method {method!r}: {field}: {text}")


def require_teacher(method: str, ctx: MethodContext) -> nn.Module:
    """The first teacher of ``ctx``; a :class:`MethodError` naming ``teachers`` when there is none."""
    if not ctx.teachers:
        raise method_error(method, "teachers", "this method distils from a teacher, none was given")
    return ctx.teachers[0]


def check_layer(
    method: str, field: str, models: Sequence[nn.Module], path: object, role: str = "student"
) -> str:
    """Check that module path ``path`` (optionally ending in ``:input``) exists in every model.

    Args:
        method: method name, for the error message.
        field: hyperparameter that holds the path (e.g. ``student_layers[0]``).
        models: the networks the path is captured on (the student, or every teacher).
        path: the dotted module path.
        role: ``student`` or ``teacher``, for the error message.

    Returns:
        ``path`` unchanged.

    Raises:
        MethodError: one line naming the method, the field, the path and the nearest names.
    """
    from workbench.models.taps import get_module, split_path

    if not isinstance(path, str) or not path.strip():
        raise method_error(method, field, f"expected a module path of the {role}, got {path!r}")
    try:
        module_path, _ = split_path(path)
    except ValueError as err:
        raise method_error(method, field, first_line(err)) from None
    for i, model in enumerate(models):
        try:
            get_module(model, module_path)
        except (ValueError, AttributeError, KeyError) as err:
            which = role if len(models) == 1 else f"{role} {i}"
            raise method_error(
                method, field, f"unknown layer {path!r} in the {which}: {first_line(err)}"
            ) from None
    return path


def default_layer(
    method: str, field: str, model: nn.Module, which: str, input_shape: tuple[int, int, int]
) -> str:
    """A default module path of ``model``: ``penultimate`` (the embedding before the classifier),
    ``last_stage`` (the deepest stage output) or ``last_conv`` (the map class activation maps use).

    Raises:
        MethodError: naming ``field`` when the model has no such layer (then the user must set it).
    """
    from workbench.models import taps

    try:
        if which == "penultimate":
            return taps.penultimate_layer(model)
        if which == "last_stage":
            stages = taps.stage_layers(model, input_shape)
            if not stages:
                raise ValueError("the model has no stage layers")
            return stages[-1]
        if which == "last_conv":
            return taps.last_conv_layer(model, input_shape)
    except (ValueError, AttributeError, RuntimeError) as err:
        raise method_error(
            method, field, f"no default {which.replace('_', ' ')} layer ({first_line(err)}); set {field}"
        ) from None
    raise ValueError(f"default_layer: which must be penultimate, last_stage or last_conv, got {which!r}")


# ---- shape probes -------------------------------------------------------------------------------


def probe_features(model: nn.Module, paths: Sequence[str], sample: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` once on ``sample`` in eval mode without gradients and return the captured
    features (``path -> tensor``). The model's training flags and hooks are restored afterwards."""
    from workbench.models.taps import capture

    _, feats = capture(model, sample, list(paths), train=False, detach=True, grad=False)
    return {p: feats[p] for p in paths}


def probe_shapes(model: nn.Module, paths: Sequence[str], sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Shapes (without the batch dimension) of the features at ``paths`` for inputs like ``sample``."""
    return {p: tuple(f.shape[1:]) for p, f in probe_features(model, paths, sample).items()}


def describe_shape(shape: Sequence[int]) -> str:
    """``(C, H, W)``-style text of a feature shape without the batch dimension."""
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def vector_size(shape: Sequence[int]) -> int:
    """Length of the vector :func:`pool_to_vector` makes of a feature of this shape."""
    if len(shape) in (2, 3):
        return int(shape[-1]) if len(shape) == 2 else int(shape[0])
    size = 1
    for d in shape:
        size *= int(d)
    return size


def token_grid(num_tokens: int) -> int | None:
    """Side ``g`` of a square ``g x g`` patch grid holding ``num_tokens`` tokens, or None."""
    side = int(round(num_tokens**0.5))
    return side if side * side == num_tokens else None


def tokens_to_map(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, D)`` patch tokens in row-major order -> ``(B, D, g, g)`` map, ``N = g²``."""
    side = token_grid(x.shape[1])
    if side is None:
        raise ConnectorError(f"{x.shape[1]} tokens do not form a square patch grid")
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)


def pool_to_vector(x: torch.Tensor) -> torch.Tensor:
    """One vector per sample: ``(B, C, H, W)`` -> global average pool ``(B, C)``; ``(B, N, D)``
    tokens -> mean over tokens ``(B, D)``; ``(B, D)`` unchanged; anything else flattened."""
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    return x.reshape(x.shape[0], -1)


# ---- connectors ---------------------------------------------------------------------------------


class ConvConnector(nn.Module):
    """FitNets regressor for feature maps: resample to the teacher's ``(H, W)``, 1x1 conv, BN, ReLU.

    Romero et al. 2015 ("FitNets"), as RepDistiller's ``ConvReg`` (conv + ``BatchNorm2d`` +
    ReLU). ``ConvReg`` matches spatial sizes with strided or transposed convolutions; here a
    larger student map is average-pooled and a smaller one bilinearly upsampled to the teacher's
    size before the 1x1 convolution, which covers every pair of sizes with one set of weights.

    Args:
        in_channels: student channels.
        out_channels: teacher channels.
        out_size: teacher ``(H, W)``.
        relu: end with a ReLU (right when the teacher feature is a post-ReLU activation).
    """

    def __init__(
        self, in_channels: int, out_channels: int, out_size: tuple[int, int], relu: bool = True
    ) -> None:
        super().__init__()
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_s, H_s, W_s)`` -> ``(B, C_t, H_t, W_t)``."""
        h, w = x.shape[-2:]
        if (h, w) != self.out_size:
            if h >= self.out_size[0] and w >= self.out_size[1]:
                x = F.adaptive_avg_pool2d(x, self.out_size)
            else:
                x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LinearConnector(nn.Module):
    """Linear map + batch norm (+ ReLU) on the last dimension of ``(B, D)`` or ``(B, N, D)`` inputs.

    The vector counterpart of :class:`ConvConnector` (RepDistiller's ``LinearEmbed`` followed by
    the normalisation ``ConvReg`` uses); tokens share the normalisation statistics.
    """

    def __init__(self, in_features: int, out_features: int, relu: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D_s)`` -> ``(..., D_t)``."""
        lead = x.shape[:-1]
        y = self.bn(self.linear(x.reshape(-1, x.shape[-1])))
        y = F.relu(y) if self.relu else y
        return y.reshape(*lead, y.shape[-1])


class GridConnector(nn.Module):
    """Connect a conv map and a vision transformer's patch tokens through their spatial grid.

    Tokens ``(N, D)`` of a square ``g x g`` patch grid (row-major) are read as a ``(D, g, g)``
    map; the map is resampled to the target grid and passed through :class:`ConvConnector`;
    a token target gets the result back as ``(g'², D')`` tokens.

    Args:
        in_channels: channels (or token width) of the student feature.
        out_channels: channels (or token width) of the teacher feature.
        out_size: the teacher's ``(H, W)`` (its patch grid for tokens).
        tokens_in: the student feature is patch tokens.
        tokens_out: the teacher feature is patch tokens.
        relu: end with a ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        out_size: tuple[int, int],
        tokens_in: bool,
        tokens_out: bool,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ConvConnector(in_channels, out_channels, out_size, relu=relu)
        self.tokens_in, self.tokens_out = bool(tokens_in), bool(tokens_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student map or tokens -> teacher map ``(B, C, H, W)`` or tokens ``(B, H*W, C)``."""
        y = self.conv(tokens_to_map(x) if self.tokens_in else x)
        return y.flatten(2).transpose(1, 2) if self.tokens_out else y


class PooledLinearConnector(nn.Module):
    """Pool a feature map or token sequence to one vector (:func:`pool_to_vector`), then
    :class:`LinearConnector`: connects a spatial student feature to a vector teacher feature."""

    def __init__(self, in_features: int, out_features: int, relu: bool = False) -> None:
        super().__init__()
        self.linear = LinearConnector(in_features, out_features, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...)`` -> ``(B, D_t)``."""
        return self.linear(pool_to_vector(x))


def build_connector(
    student_shape: Sequence[int], teacher_shape: Sequence[int], relu: bool = True
) -> nn.Module:
    """The connector that maps a student feature of ``student_shape`` onto ``teacher_shape``.

    Shapes exclude the batch dimension: ``(C, H, W)`` maps use :class:`ConvConnector`;
    ``(D,)`` vectors and ``(N, D)`` token sequences with the same ``N`` use
    :class:`LinearConnector`; a map or token sequence onto a vector uses
    :class:`PooledLinearConnector`; a map and a square grid of patch tokens (either way round),
    or token grids of different sizes, use :class:`GridConnector`.

    Args:
        student_shape: student feature shape.
        teacher_shape: teacher feature shape.
        relu: end the connector with a ReLU (pass True when the teacher feature is non-negative).

    Returns:
        An ``nn.Module`` whose output has exactly ``teacher_shape`` per sample.

    Raises:
        ConnectorError: the shapes cannot be connected (e.g. a vector onto a feature map).
    """
    s, t = tuple(int(d) for d in student_shape), tuple(int(d) for d in teacher_shape)
    if len(s) == 3 and len(t) == 3:
        return ConvConnector(s[0], t[0], (t[1], t[2]), relu=relu)
    if len(t) == 1 and len(s) == 1:
        return LinearConnector(s[0], t[0], relu=relu)
    if len(t) == 1 and len(s) in (2, 3):
        return PooledLinearConnector(vector_size(s), t[0], relu=relu)
    if len(s) == 2 and len(t) == 2 and s[0] == t[0]:
        return LinearConnector(s[1], t[1], relu=relu)
    if {len(s), len(t)} <= {2, 3}:
        s_grid = token_grid(s[0]) if len(s) == 2 else s[1]
        t_grid = token_grid(t[0]) if len(t) == 2 else t[1]
        if s_grid is None or t_grid is None:
            tokens = s if len(s) == 2 else t
            raise ConnectorError(
                f"tokens {describe_shape(tokens)} do not form a square patch grid; expected N = g x g "
                "to connect them with a feature map or with tokens of another count"
            )
        s_channels = s[1] if len(s) == 2 else s[0]
        t_channels, t_size = (t[1], (t_grid, t_grid)) if len(t) == 2 else (t[0], (t[1], t[2]))
        return GridConnector(s_channels, t_channels, t_size, len(s) == 2, len(t) == 2, relu=relu)
    raise ConnectorError(
        f"cannot map a student feature of shape {describe_shape(s)} onto a teacher feature of shape "
        f"{describe_shape(t)}; expected maps (C, H, W) or patch tokens (N, D) on both sides, "
        "or a vector teacher"
    )


class Embed(nn.Module):
    """CRD's embedding head (Tian et al. 2020; RepDistiller ``Embed``): flatten, linear, L2-normalise."""

    def __init__(self, in_features: int, out_features: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...)`` -> unit-norm ``(B, out_features)``."""
        return F.normalize(self.linear(x.reshape(x.shape[0], -1)), dim=1)


class OrthogonalProjector(nn.Module):
    """V_kD's projector (Miles, Elezi & Deng, CVPR 2024): the student feature pooled to a vector
    (:func:`pool_to_vector`) and mapped by a bias-free linear layer whose weight is kept
    (semi-)orthogonal by ``torch.nn.utils.parametrizations.orthogonal``, so the projection
    preserves the student's feature geometry instead of learning an arbitrary re-mapping."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.utils.parametrizations.orthogonal(nn.Linear(in_features, out_features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...)`` -> ``(B, out_features)``."""
        return self.linear(pool_to_vector(x))


# ---- layer choices shared by the feature and relation methods ------------------------------------


def single_layer_pair(
    method: str,
    ctx: MethodContext,
    student_layer: str | None,
    teacher_layer: str | None,
    default: str = "penultimate",
) -> tuple[str, str]:
    """The ``(student_path, teacher_path)`` one-layer methods read, checked on the student and on
    every teacher; a missing side defaults to :func:`default_layer` ``default`` of that model."""
    teacher = require_teacher(method, ctx)
    if student_layer is None:
        student_layer = default_layer(method, "student_layer", ctx.student, default, ctx.input_shape)
    if teacher_layer is None:
        teacher_layer = default_layer(method, "teacher_layer", teacher, default, ctx.input_shape)
    check_layer(method, "student_layer", [ctx.student], student_layer, "student")
    check_layer(method, "teacher_layer", ctx.teachers, teacher_layer, "teacher")
    return student_layer, teacher_layer


def stage_layer_pairs(
    method: str,
    ctx: MethodContext,
    student_layers: Sequence[str] | None,
    teacher_layers: Sequence[str] | None,
    pick: str = "all",
) -> list[tuple[str, str]]:
    """``(student_path, teacher_path)`` pairs for multi-layer methods, checked on the models.

    Explicit ``student_layers``/``teacher_layers`` (both or neither) are paired in order; without
    them the stages are paired by :func:`workbench.models.taps.match_stages` (relative depth and
    resolution) and ``pick`` keeps ``all`` pairs or the ``middle`` one (FitNets' hint layer).

    Raises:
        MethodError: one line naming the method and ``student_layers`` or ``teacher_layers``.
    """
    teacher = require_teacher(method, ctx)
    if (student_layers is None) != (teacher_layers is None):
        missing = "teacher_layers" if teacher_layers is None else "student_layers"
        raise method_error(
            method,
            missing,
            "give student_layers and teacher_layers together, or neither for the default pairs",
        )
    if student_layers is None or teacher_layers is None:
        from workbench.models.taps import match_stages

        try:
            pairs = list(match_stages(ctx.student, teacher, ctx.input_shape, ctx.input_shape))
        except (ValueError, AttributeError, RuntimeError) as err:
            raise method_error(
                method,
                "student_layers",
                f"no default layer pairs ({first_line(err)}); set student_layers and teacher_layers",
            ) from None
        if not pairs:
            raise method_error(
                method,
                "student_layers",
                "no default layer pairs for these models; set student_layers and teacher_layers",
            )
        if pick == "middle":
            pairs = [pairs[len(pairs) // 2]]
    else:
        if len(student_layers) != len(teacher_layers):
            raise method_error(
                method,
                "teacher_layers",
                f"{len(teacher_layers)} teacher layers for {len(student_layers)} student layers; "
                "expected one per student layer",
            )
        pairs = list(zip(student_layers, teacher_layers, strict=True))
    for i, (s_path, t_path) in enumerate(pairs):
        check_layer(method, f"student_layers[{i}]", [ctx.student], s_path, "student")
        check_layer(method, f"teacher_layers[{i}]", ctx.teachers, t_path, "teacher")
    return [(str(s), str(t)) for s, t in pairs]


def probe_pairs(
    ctx: MethodContext, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Student and first-teacher features at the paths of ``pairs`` for ``ctx.sample``."""
    student = probe_features(ctx.student, [s for s, _ in pairs], ctx.sample)
    teacher = probe_features(ctx.teachers[0], [t for _, t in pairs], ctx.sample)
    return student, teacher
