"""Relational methods: similarity-preserving KD, probabilistic knowledge transfer, relational
KD and contrastive representation distillation.

They transfer how samples relate to each other (batch Gram matrices, pairwise distances and
angles, conditional probabilities, or contrast against a memory of other samples) rather than
each sample's feature, so student and teacher features may differ in size. With several
teachers they follow the first one. ``beta`` scales each loss as RepDistiller's ``-b`` weight.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from workbench.distill import functional as F
from workbench.distill.base import Method, MethodContext, MethodParams, StepOutputs, register_method
from workbench.distill.connectors import Embed, method_error, probe_pairs, single_layer_pair


def _student_layer(default: str) -> Any:
    return Field(None, description=f"student module path (default: {default})")


def _teacher_layer(default: str) -> Any:
    return Field(None, description=f"teacher module path (default: {default})")


class _OneLayerMethod(Method):
    """Shared plumbing of the methods that read one student and one teacher layer."""

    default_layer = "penultimate"

    def __init__(self, params: MethodParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        self.s_path, self.t_path = single_layer_pair(
            self.name,
            ctx,
            getattr(params, "student_layer", None),
            getattr(params, "teacher_layer", None),
            self.default_layer,
        )

    def student_features(self) -> list[str]:
        return [self.s_path]

    def teacher_features(self) -> list[str]:
        return [self.t_path]

    def pair(self, out: StepOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        """This batch's student and (first) teacher feature."""
        return out.student_features[self.s_path], out.teacher_features[0][self.t_path]


# ---- similarity-preserving ---------------------------------------------------------------------


class SPParams(MethodParams):
    student_layer: str | None = _student_layer("the last stage")
    teacher_layer: str | None = _teacher_layer("the last stage")
    beta: float = Field(3000.0, ge=0.0, description="loss scale (RepDistiller's SP weight: 3000)")


@register_method
class SP(_OneLayerMethod):
    """Similarity-preserving KD (Tung & Mori, ICCV 2019).

    The student's row-normalised batch Gram matrix ``G = f fᵀ`` should match the teacher's:
    ``‖G_t - G_s‖_F² / B²`` (:func:`workbench.distill.functional.sp_loss`), on the last stage as
    RepDistiller (``feat[-2]``), scaled by ``beta`` (3000).
    """

    name = "sp"
    description = "Tung & Mori 2019: match the batch similarity (Gram) matrices of a layer"
    Params = SPParams
    default_layer = "last_stage"

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        return {"sp": self.params.beta * F.sp_loss(*self.pair(out))}


# ---- probabilistic knowledge transfer ------------------------------------------------------------


class PKTParams(MethodParams):
    student_layer: str | None = _student_layer("the penultimate embedding")
    teacher_layer: str | None = _teacher_layer("the penultimate embedding")
    beta: float = Field(30000.0, ge=0.0, description="loss scale (RepDistiller's PKT weight: 30000)")


@register_method
class PKT(_OneLayerMethod):
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018).

    KL divergence between the conditional probability distributions that cosine similarities
    induce over the batch (:func:`workbench.distill.functional.pkt_loss`), on the penultimate
    embeddings as RepDistiller (``feat[-1]``), scaled by ``beta`` (30000).
    """

    name = "pkt"
    description = (
        "Passalis & Tefas 2018: match the cosine-similarity probability distributions over the batch"
    )
    Params = PKTParams

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        return {"pkt": self.params.beta * F.pkt_loss(*self.pair(out))}


# ---- relational KD -----------------------------------------------------------------------------


class RKDParams(MethodParams):
    student_layer: str | None = _student_layer("the penultimate embedding")
    teacher_layer: str | None = _teacher_layer("the penultimate embedding")
    distance_weight: float = Field(25.0, ge=0.0, description="weight of the distance potential (paper: 25)")
    angle_weight: float = Field(50.0, ge=0.0, description="weight of the angle potential (paper: 50)")
    beta: float = Field(1.0, ge=0.0, description="loss scale (RepDistiller's RKD weight: 1)")


@register_method
class RKD(_OneLayerMethod):
    """Relational knowledge distillation (Park et al., CVPR 2019).

    Smooth-L1 between the mean-normalised pairwise distances and between the triplet angles of
    the student and teacher embeddings (:func:`workbench.distill.functional.rkd_loss`, weights
    25 and 50), on the penultimate embeddings as RepDistiller.
    """

    name = "rkd"
    description = "Park et al. 2019: match pairwise distances and triplet angles of embeddings"
    Params = RKDParams

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        p = self.params
        s, t = self.pair(out)
        return {
            "rkd": p.beta * F.rkd_loss(s, t, distance_weight=p.distance_weight, angle_weight=p.angle_weight)
        }


# ---- contrastive representation distillation ---------------------------------------------------

#: epsilon of RepDistiller's ``ContrastLoss``
NCE_EPS = 1e-7


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """Noise-contrastive estimation loss of CRD (RepDistiller ``ContrastLoss``).

    ``scores[:, 0]`` are the normalised scores of the positives, ``scores[:, 1:]`` those of the
    ``m`` negatives drawn uniformly (noise probability ``Pn = 1 / n_data``)::

        loss = -(Σ_b log(P_b0 / (P_b0 + m Pn + eps)) + Σ_bj log(m Pn / (P_bj + m Pn + eps))) / B

    Args:
        scores: ``(B, 1 + m)`` positive scores (``exp(v·w / T) / Z``).
        n_data: size of the memory (the training-set size).

    Returns:
        0-d loss tensor.
    """
    batch, m = scores.shape[0], scores.shape[1] - 1
    noise = m / float(n_data)
    pos = scores[:, 0]
    neg = scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + NCE_EPS))
    log_d0 = torch.log(noise / (neg + noise + NCE_EPS))
    return -(log_d1.sum() + log_d0.sum()) / batch


class CRDParams(MethodParams):
    student_layer: str | None = _student_layer("the penultimate embedding")
    teacher_layer: str | None = _teacher_layer("the penultimate embedding")
    feat_dim: int = Field(128, ge=2, le=4096, description="dimension of the embedding heads")
    nce_k: int | None = Field(
        None,
        ge=1,
        description="negatives per batch (default: min(16384, train size - 1); RepDistiller: 16384)",
    )
    nce_t: float = Field(0.07, gt=0.0, le=10.0, description="temperature of the scores")
    nce_m: float = Field(0.5, ge=0.0, lt=1.0, description="momentum of the memory-bank update")
    beta: float = Field(0.8, ge=0.0, description="loss scale (RepDistiller's CRD weight: 0.8)")


@register_method
class CRD(_OneLayerMethod):
    """Contrastive representation distillation (Tian, Krishnan & Isola, ICLR 2020), as
    RepDistiller's ``CRDLoss``/``ContrastMemory``/``ContrastLoss``.

    Trainable embedding heads (linear + L2 norm, ``feat_dim``) map the student and teacher
    penultimate features onto a sphere. Two memory banks of ``train_size`` entries (one per
    model, initialised uniformly in ``±1/sqrt(feat_dim/3)``) hold past embeddings by training-set
    index (``batch.index``). For each sample the positive is the other model's memory entry of
    the same index and ``nce_k`` negatives are other entries; scores ``exp(v·w / nce_t)`` are
    divided by a normalisation constant ``Z`` fixed on the first batch (``mean · train_size``),
    and the NCE loss (:func:`nce_loss`) is taken both ways (student against teacher memory and
    teacher against student memory). After the optimiser step, the entries of the batch move
    towards the new embeddings: ``w ← normalize(nce_m · w + (1 - nce_m) · v)``.

    One deviation, for memory: the negatives are drawn once per batch and shared by its rows
    (RepDistiller draws ``B × nce_k``); the NCE objective has the same expectation and the score
    matrix is ``B × nce_k`` instead of a ``B × nce_k × feat_dim`` gather. The memory banks are
    training state, not weights, so they are not written to checkpoints.
    """

    name = "crd"
    description = "Tian et al. 2020: contrastive distillation against a memory bank of negatives (NCE)"
    Params = CRDParams

    def __init__(self, params: CRDParams, ctx: MethodContext) -> None:
        super().__init__(params, ctx)
        n_data = int(ctx.train_size)
        if n_data < 2:
            raise method_error(
                self.name, "train_size", f"the memory bank needs at least 2 training samples, got {n_data}"
            )
        nce_k = params.nce_k if params.nce_k is not None else min(16384, n_data - 1)
        if nce_k >= n_data:
            raise method_error(
                self.name,
                "nce_k",
                f"{nce_k} negatives need more than {nce_k} training samples, the set has {n_data}",
            )
        self.n_data, self.nce_k = n_data, int(nce_k)
        s_feats, t_feats = probe_pairs(ctx, [(self.s_path, self.t_path)])
        s_dim = math.prod(s_feats[self.s_path].shape[1:])
        t_dim = math.prod(t_feats[self.t_path].shape[1:])
        self.embed_s = Embed(s_dim, params.feat_dim)
        self.embed_t = Embed(t_dim, params.feat_dim)
        gen = torch.Generator().manual_seed(int(ctx.seed))
        stdv = 1.0 / math.sqrt(params.feat_dim / 3.0)
        init = torch.rand(2, n_data, params.feat_dim, generator=gen) * (2 * stdv) - stdv
        self.register_buffer("memory_s", init[0].clone(), persistent=False)
        self.register_buffer("memory_t", init[1].clone(), persistent=False)
        # normalisation constants Z of the student and teacher scores, fixed on the first batch (-1 = unset)
        self.register_buffer("z", torch.full((2,), -1.0), persistent=False)
        self._z_ready = False
        self._negatives_gen: torch.Generator | None = None
        self._negatives_device: torch.device | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._negatives_gen is None or self._negatives_device != device:
            try:
                gen = torch.Generator(device=device)
            except RuntimeError:
                gen = torch.Generator()
            self._negatives_gen = gen.manual_seed(int(self.ctx.seed) + 1)
            self._negatives_device = device
        return self._negatives_gen

    def sample_negatives(self, device: torch.device) -> torch.Tensor:
        """``nce_k`` memory indices drawn uniformly (with replacement) for this batch."""
        gen = self._generator(device)
        return torch.randint(0, self.n_data, (self.nce_k,), generator=gen, device=gen.device).to(device)

    def _scores(
        self, v: torch.Tensor, memory: torch.Tensor, index: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        pos = (memory.index_select(0, index) * v).sum(dim=1, keepdim=True)
        neg = v @ memory.index_select(0, negatives).t()
        return torch.exp(torch.cat([pos, neg], dim=1) / self.params.nce_t)

    def loss(self, out: StepOutputs) -> dict[str, torch.Tensor]:
        f_s, f_t = self.pair(out)
        v_s = self.embed_s(f_s)
        v_t = self.embed_t(f_t.detach().to(v_s.dtype))
        index = out.index.to(self.memory_s.device).long()
        negatives = self.sample_negatives(self.memory_s.device)
        out_s = self._scores(v_s, self.memory_t, index, negatives)  # student embedding against teacher memory
        out_t = self._scores(v_t, self.memory_s, index, negatives)  # teacher embedding against student memory
        if not self._z_ready:
            with torch.no_grad():
                self.z.copy_(torch.stack([out_s.mean(), out_t.mean()]) * self.n_data)
            self._z_ready = True
        out_s = out_s / self.z[0]
        out_t = out_t / self.z[1]
        self._pending = (index, v_s.detach(), v_t.detach())
        return {"crd": self.params.beta * (nce_loss(out_s, self.n_data) + nce_loss(out_t, self.n_data))}

    @torch.no_grad()
    def update_memory(self, index: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor) -> None:
        """Move the memory entries at ``index`` towards the embeddings: ``normalize(m·w + (1-m)·v)``."""
        m = self.params.nce_m
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            moved = memory.index_select(0, index) * m + v.to(memory.dtype) * (1.0 - m)
            memory.index_copy_(0, index, torch.nn.functional.normalize(moved, dim=1))

    def after_step(self, out: StepOutputs) -> None:
        if self._pending is not None:
            self.update_memory(*self._pending)
            self._pending = None
