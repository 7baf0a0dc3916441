"""Feature-based methods: FitNets hints, attention transfer, class attention transfer (CAT-KD),
neuron selectivity transfer and V_kD.

Features come from forward hooks on module paths (``student_layers``/``teacher_layers`` or
``student_layer``/``teacher_layer``); without them the stages are paired by depth and resolution
(:func:`workbench.models.taps.match_stages`) or a sensible single layer is taken. Connectors and
projectors are sized at set-up by running both models once on ``ctx.sample`` (eval mode, no
gradient, modes restored), and are submodules, so they train and are saved with the student.
With several teachers, feature methods follow the first one (the same paths are captured on
every teacher, so each must have them). ``beta`` scales each loss as the reference's ``-b``
loss weight, so a method is usable at weight 1.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as TF
from pydantic import Field
from torch import nn

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import (
    ConnectorError,
    OrthogonalProjector,
    build_connector,
    describe_shape,
    first_line,
    method_error,
    pool_to_vector,
    probe_pairs,
    single_layer_pair,
    stage_layer_pairs,
    token_grid,
    tokens_to_map,
    vector_size,
)

_LAYERS_DOC = "module paths of the {role} (default: stages paired by depth and resolution)"


def _layers_field(role: str) -> Any:
    return Field(None, min_length=1, max_length=16, description=_LAYERS_DOC.format(role=role))


def as_map(x: torch.Tensor) -> torch.Tensor:
    """A feature as a ``(B, C, H, W)`` map: maps unchanged, square-grid patch tokens ``(B, N, D)``
    rearranged to ``(B, D, g, g)`` (:func:`~workbench.distill.connectors.tokens_to_map`)."""
    return tokens_to_map(x) if x.dim() == 3 else x


def _map_shape(method: str, field: str, path: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a feature of ``shape`` is read as; a one-line error when it is no map."""
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 2 and token_grid(shape[0]) is not None:
        side = token_grid(shape[0])
        return (shape[1], side, side)  # type: ignore[return-value]
    raise method_error(
        method,
        field,
        f"layer {path!r} gives {describe_shape(shape)}, expected a (C, H, W) feature map "
        "(or patch tokens of a square grid)",
    )


def _check_maps(method: str, pairs: list[tuple[str, str]], s_feats: dict, t_feats: dict) -> None:
    """Every paired feature is a map (or square-grid patch tokens) and one map of a pair can be
    pooled onto the other."""
    for i, (s_path, t_path) in enumerate(pairs):
        s_shape = _map_shape(method, f"student_layers[{i}]", s_path, tuple(s_feats[s_path].shape[1:]))
        t_shape = _map_shape(method, f"teacher_layers[{i}]", t_path, tuple(t_feats[t_path].shape[1:]))
        (sh, sw), (th, tw) = s_shape[1:], t_shape[1:]
        if not ((sh >= th and sw >= tw) or (th >= sh and tw >= sw)):
            raise method_error(
                method,
                f"teacher_layers[{i}]",
                f"maps {sh}x{sw} ({s_path!r}) and {th}x{tw} ({t_path!r}) cannot be pooled onto each other",
            )


# ---- FitNets -----------------------------------------------------------------------------------


class FitNetParams(MethodParams):
    student_layers: list[str] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="student module paths (default: the middle stage pair, FitNets' hint layer)",
    )
    teacher_layers: list[str] | None = Field(
        None, min_length=1, max_length=16, description="teacher module paths, one per student layer"
    )
    beta: float = Field(100.0, ge=0.0, description="loss scale (RepDistiller's FitNet weight: 100)")


@register_method
class FitNet(Method):
    """FitNets: Hints for Thin Deep Nets (Romero et al., ICLR 2015).

    A learned connector maps each student layer onto its teacher layer and the mean squared
    error is the hint loss (:func:`workbench.distill.functional.hint_loss`), as RepDistiller's
    ``HintLoss`` with its ``ConvReg`` regressor (here :func:`~workbench.distill.connectors.build_connector`:
    1x1 conv + BN, ReLU when the teacher feature is non-negative; linear + BN for vectors), trained
    jointly with the student and scaled by ``beta`` (RepDistiller: 100, hint layer = the middle
    stage).
    """

    name = "fitnet"
    description = (
        "Romero et al. 2015: a learned connector maps a student layer onto a teacher layer, MSE hint"
    )
    Params = FitNetParams

    def __init__(self, params: FitNetParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.pairs = stage_layer_pairs(
            self.name, ctx, params.student_layers, params.teacher_layers, pick="middle"
        )
        s_feats, t_feats = probe_pairs(ctx, self.pairs)
        connectors = []
        for i, (s_path, t_path) in enumerate(self.pairs):
            t_feat = t_feats[t_path]
            try:
                conn = build_connector(
                    s_feats[s_path].shape[1:], t_feat.shape[1:], relu=bool(t_feat.min() >= 0)
                )
            except ConnectorError as err:
                raise method_error(
                    self.name, f"student_layers[{i}]", f"{s_path!r} -> {t_path!r}: {first_line(err)}"
                ) from None
            connectors.append(conn)
        self.connectors = nn.ModuleList(connectors)

    def student_features(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_features(self) -> list[str]:
        return [t for _, t in self.pairs]

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = out.teacher_features[0]
        total = sum(
            F.hint_loss(conn(out.student_features[s]), teacher[t])
            for conn, (s, t) in zip(self.connectors, self.pairs, strict=True)
        )
        return {"fitnet": self.params.beta * total}


# ---- attention transfer ------------------------------------------------------------------------


class ATParams(MethodParams):
    student_layers: list[str] | None = _layers_field("student")
    teacher_layers: list[str] | None = _layers_field("teacher")
    p: float = Field(2.0, gt=0.0, le=16.0, description="exponent of the activations in the attention map")
    beta: float = Field(1000.0, ge=0.0, description="loss scale (the paper's and RepDistiller's beta: 1000)")


@register_method
class AT(Method):
    """Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017).

    ``beta · Σ_pairs mean((a(f_s) - a(f_t))²)`` with ``a(f) = normalize(mean_c f^p)``
    (:func:`workbench.distill.functional.at_loss`), over one or more stage pairs, as RepDistiller's
    ``Attention`` loss summed over the groups (``beta = 1000``; default pairs: every stage). No
    connector is needed: attention maps average over channels.
    """

    name = "at"
    description = "Zagoruyko & Komodakis 2017: match spatial attention maps of paired stages"
    Params = ATParams

    def __init__(self, params: ATParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.pairs = stage_layer_pairs(
            self.name, ctx, params.student_layers, params.teacher_layers, pick="all"
        )
        _check_maps(self.name, self.pairs, *probe_pairs(ctx, self.pairs))

    def student_features(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_features(self) -> list[str]:
        return [t for _, t in self.pairs]

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = out.teacher_features[0]
        total = sum(
            F.at_loss(as_map(out.student_features[s]), as_map(teacher[t]), p=self.params.p)
            for s, t in self.pairs
        )
        return {"at": self.params.beta * total}


# ---- neuron selectivity transfer ---------------------------------------------------------------


class NSTParams(MethodParams):
    student_layers: list[str] | None = _layers_field("student")
    teacher_layers: list[str] | None = _layers_field("teacher")
    beta: float = Field(50.0, ge=0.0, description="loss scale (RepDistiller's NST weight: 50)")


@register_method
class NST(Method):
    """Neuron selectivity transfer (Huang & Wang 2017, "Like What You Like").

    Squared MMD with a degree-2 polynomial kernel between the channel-wise spatial distributions
    of paired maps (:func:`workbench.distill.functional.nst_loss`), summed over the pairs and
    scaled by ``beta`` as RepDistiller's ``NSTLoss`` (weight 50; default pairs: every stage).
    """

    name = "nst"
    description = (
        "Huang & Wang 2017: match neuron selectivity patterns (polynomial-kernel MMD of channel maps)"
    )
    Params = NSTParams

    def __init__(self, params: NSTParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.pairs = stage_layer_pairs(
            self.name, ctx, params.student_layers, params.teacher_layers, pick="all"
        )
        _check_maps(self.name, self.pairs, *probe_pairs(ctx, self.pairs))

    def student_features(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_features(self) -> list[str]:
        return [t for _, t in self.pairs]

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        teacher = out.teacher_features[0]
        total = sum(F.nst_loss(as_map(out.student_features[s]), as_map(teacher[t])) for s, t in self.pairs)
        return {"nst": self.params.beta * total}


# ---- class attention transfer ------------------------------------------------------------------


class CATKDParams(MethodParams):
    student_layer: str | None = Field(
        None, description="student feature map before pooling (default: its last conv map)"
    )
    teacher_layer: str | None = Field(
        None, description="teacher feature map before pooling (default: its last conv map)"
    )
    resolution: int = Field(2, ge=1, le=64, description="side of the pooled class activation maps (paper: 2)")
    normalize: bool = Field(
        False, description="L2-normalise each pooled map before the MSE (reference IF_NORMALIZE)"
    )
    beta: float = Field(
        10.0,
        ge=0.0,
        description="loss scale (the authors' CIFAR-100 CAT_loss_weight: 0.7 to 15 by model pair)",
    )


def _classifier(method: str, field: str, model: nn.Module, role: str) -> nn.Linear:
    from workbench.models.taps import classifier_layer, get_module

    try:
        module = get_module(model, classifier_layer(model))
    except (ValueError, AttributeError) as err:
        raise method_error(
            method, field, f"the {role} has no linear classifier ({first_line(err)})"
        ) from None
    if not isinstance(module, nn.Linear):
        raise method_error(
            method, field, f"the {role}'s classifier is a {type(module).__name__}, expected nn.Linear"
        )
    return module


@register_method
class CATKD(Method):
    """Class attention transfer (Guo et al., "Class Attention Transfer Based Knowledge
    Distillation", CVPR 2023).

    Class activation maps ``CAM_k = Σ_c W[k, c] f_c`` of both models (the last conv map weighted
    by each model's own linear classifier; the student's classifier weight receives gradients,
    as the reference's 1x1-conv head), average-pooled to ``resolution × resolution``, optionally
    normalised, matched by MSE and scaled by ``beta`` (the authors' mdistiller-based ``CAT_KD``,
    :func:`workbench.distill.functional.cat_kd_loss`; their CIFAR-100 configs use
    ``CAM_RESOLUTION`` 2, ``IF_NORMALIZE`` False and ``CAT_loss_weight`` between 0.7 for
    resnet56 -> resnet20 and 15 for resnet32x4 -> resnet8x4; the default 10 sits in that range).
    Vision-transformer patch tokens of a square grid are read as a ``(D, g, g)`` map, whose
    CAM the token-mean-pool + linear head averages to the logit exactly as GAP + linear does.
    """

    name = "cat_kd"
    description = "Guo et al. 2023: transfer pooled class activation maps (class attention)"
    Params = CATKDParams

    def __init__(self, params: CATKDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.s_path, self.t_path = single_layer_pair(
            self.name, ctx, params.student_layer, params.teacher_layer, default="last_conv"
        )
        s_fc = _classifier(self.name, "student_layer", ctx.student, "student")
        t_fc = _classifier(self.name, "teacher_layer", ctx.teachers[0], "teacher")
        s_feats, t_feats = probe_pairs(ctx, [(self.s_path, self.t_path)])
        for field, path, feat, fc in (
            ("student_layer", self.s_path, s_feats[self.s_path], s_fc),
            ("teacher_layer", self.t_path, t_feats[self.t_path], t_fc),
        ):
            shape = _map_shape(self.name, field, path, tuple(feat.shape[1:]))
            if fc.in_features != shape[0]:
                raise method_error(
                    self.name,
                    field,
                    f"layer {path!r} has {shape[0]} channels, the classifier takes {fc.in_features} features",
                )
        if s_fc.out_features != t_fc.out_features:
            raise method_error(
                self.name,
                "teacher_layer",
                f"teacher predicts {t_fc.out_features} classes, student {s_fc.out_features}",
            )
        # plain lists: the classifiers belong to the networks, not to this method's state
        self._fcs: list[nn.Linear] = [s_fc, t_fc]

    def student_features(self) -> list[str]:
        return [self.s_path]

    def teacher_features(self) -> list[str]:
        return [self.t_path]

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        s_fc, t_fc = self._fcs
        s_cams = F.class_activation_maps(as_map(out.student_features[self.s_path]), s_fc.weight)
        t_cams = F.class_activation_maps(as_map(out.teacher_features[0][self.t_path]), t_fc.weight.detach())
        value = F.cat_kd_loss(
            s_cams, t_cams, resolution=self.params.resolution, normalize=self.params.normalize
        )
        return {"cat_kd": self.params.beta * value}


# ---- V_kD --------------------------------------------------------------------------------------


class VKDParams(MethodParams):
    student_layer: str | None = Field(
        None, description="student feature (default: the penultimate embedding)"
    )
    teacher_layer: str | None = Field(
        None, description="teacher feature (default: the penultimate embedding)"
    )
    normalization: Literal["standardize", "none"] = Field(
        "standardize",
        description="task-specific teacher normalisation: standardize each embedding (classification)",
    )
    beta: float = Field(1.0, ge=0.0, description="loss scale")


@register_method
class VKD(Method):
    """V_kD: Improving Knowledge Distillation using Orthogonal Projections (Miles, Elezi & Deng,
    CVPR 2024; reference code ``roymiles/vkd``).

    The student feature (pooled to a vector) goes through an orthogonal projector
    (:class:`~workbench.distill.connectors.OrthogonalProjector`, a bias-free linear layer under
    ``torch.nn.utils.parametrizations.orthogonal``); the teacher feature is standardised per
    sample (``layer_norm`` without affine parameters, the paper's normalisation for
    discriminative tasks); the loss is the smooth-L1 distance, scaled by ``beta``.
    """

    name = "vkd"
    description = (
        "Miles et al. 2024: orthogonal projection of student features onto standardised teacher features"
    )
    Params = VKDParams

    def __init__(self, params: VKDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.s_path, self.t_path = single_layer_pair(
            self.name, ctx, params.student_layer, params.teacher_layer
        )
        s_feats, t_feats = probe_pairs(ctx, [(self.s_path, self.t_path)])
        s_dim = vector_size(s_feats[self.s_path].shape[1:])
        t_dim = vector_size(t_feats[self.t_path].shape[1:])
        self.projector = OrthogonalProjector(s_dim, t_dim)

    def student_features(self) -> list[str]:
        return [self.s_path]

    def teacher_features(self) -> list[str]:
        return [self.t_path]

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        z_s = self.projector(out.student_features[self.s_path])
        z_t = pool_to_vector(out.teacher_features[0][self.t_path]).detach().to(z_s.dtype)
        if self.params.normalization == "standardize":
            z_t = TF.layer_norm(z_t, (z_t.shape[-1],))
        return {"vkd": self.params.beta * TF.smooth_l1_loss(z_s, z_t)}
