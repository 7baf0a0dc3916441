"""Representation similarity between two networks: CKA and 2-D embeddings of penultimate features.

Centered kernel alignment follows Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural
Network Representations Revisited", and the conventions of its reference demo notebook
(google-research ``representation_similarity``):

* the biased estimator centres a Gram matrix with ``H K H`` (``H = I - 11ᵀ/n``);
* the debiased estimator U-centres it (Székely & Rizzo 2014), which gives ``n(n-3)`` times the
  unbiased HSIC estimator of Song et al. 2012; CKA is then ``<K̃, L̃> / (‖K̃‖ ‖L̃‖)`` and may be
  negative;
* the RBF kernel is ``exp(-d² / (2 σ²))`` with ``σ² = bandwidth² · median(d²)``, the median taken
  over the full ``n × n`` matrix of squared Euclidean distances (zeros on the diagonal included),
  i.e. ``σ = bandwidth · sqrt(median squared distance)``.

Whole-dataset CKA on many layers uses the minibatch estimator of Nguyen, Raghu & Kornblith 2021,
"Do Wide and Deep Networks Learn the Same Things?": the unbiased ``HSIC_1`` of every batch is
averaged over batches, and CKA is ``mean HSIC_1(K, L) / sqrt(mean HSIC_1(K, K) · mean HSIC_1(L, L))``.
Only one batch's Gram matrices are ever held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_images,
    check_labels,
    check_positive_float,
    check_positive_int,
    model_device,
    on_device,
    resolve_device,
)
from workbench.models.taps import capture, penultimate_layer, stage_layers

__all__ = [
    "CKAResult",
    "CKATrainingResult",
    "EmbeddingResult",
    "MinibatchCKA",
    "cka_matrix",
    "cka_over_training",
    "embedding_2d",
    "linear_cka",
    "rbf_cka",
]


# ---- whole-matrix CKA -------------------------------------------------------------------------
def _as_matrix(x: object, name: str) -> torch.Tensor:
    """``x`` (array or tensor, ``(n, ...)``) as a float64 tensor ``(n, features)``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise AnalysisError(f"{name}: expected an array or tensor (n, features), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise AnalysisError(f"{name}: expected a non-empty array (n, features), got shape {tuple(x.shape)}")
    out = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    if not torch.isfinite(out).all():
        raise AnalysisError(f"{name}: contains NaN or infinite values")
    return out


def _pair_matrices(x: object, y: object, debiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    if xm.shape[0] != ym.shape[0]:
        raise AnalysisError(f"y: expected {xm.shape[0]} examples to match x, got {ym.shape[0]}")
    need = 4 if debiased else 2
    if xm.shape[0] < need:
        raise AnalysisError(
            f"x: CKA needs at least {need} examples ({'debiased' if debiased else 'biased'} estimator), "
            f"got {xm.shape[0]}"
        )
    return xm, ym.to(xm.device)


def _center_gram(gram: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centre a symmetric Gram matrix: ``H K H`` or, if ``unbiased``, its U-centred version."""
    n = gram.shape[0]
    gram = gram.clone()
    if unbiased:
        gram.fill_diagonal_(0.0)
        means = gram.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        gram.fill_diagonal_(0.0)
    else:
        means = gram.mean(0)
        means = means - means.mean() / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def _cka_from_grams(gram_x: torch.Tensor, gram_y: torch.Tensor, debiased: bool) -> float:
    kx = _center_gram(gram_x, debiased)
    ky = _center_gram(gram_y, debiased)
    nx, ny = torch.linalg.norm(kx), torch.linalg.norm(ky)
    for name, norm in (("x", nx), ("y", ny)):
        if not float(norm) > 0:
            raise AnalysisError(f"{name}: the representation is constant across examples; CKA is undefined")
    return float((kx * ky).sum() / (nx * ny))


def _debiased_dot(xty: torch.Tensor, rows_x: torch.Tensor, rows_y: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased (scaled) linear HSIC from feature-space quantities (Song et al. 2012 rearranged).

    ``xty`` is ``‖XᵀY‖²_F`` of column-centred features, ``rows_*`` their squared row norms.
    """
    return xty - n / (n - 2.0) * (rows_x @ rows_y) + rows_x.sum() * rows_y.sum() / ((n - 1.0) * (n - 2.0))


def _feature_space_linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> float:
    n = x.shape[0]
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    xy = torch.linalg.norm(x.T @ y) ** 2
    xx = torch.linalg.norm(x.T @ x) ** 2
    yy = torch.linalg.norm(y.T @ y) ** 2
    if debiased:
        rx, ry = (x * x).sum(1), (y * y).sum(1)
        xy, xx, yy = _debiased_dot(xy, rx, ry, n), _debiased_dot(xx, rx, rx, n), _debiased_dot(yy, ry, ry, n)
    for name, v in (("x", xx), ("y", yy)):
        if not float(v) > 0:
            raise AnalysisError(f"{name}: the representation is constant across examples; CKA is undefined")
    return float(xy / torch.sqrt(xx * yy))


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same examples (Kornblith et al. 2019, eq. 5).

    Args:
        x: features ``(n, ...)``; dimensions after the first are flattened.
        y: features ``(n, ...)`` of the same ``n`` examples (any width).
        debiased: use the unbiased HSIC estimator (Song et al. 2012) as in the reference demo; the
            value may then be slightly negative for unrelated representations. Needs ``n >= 4``.

    Returns:
        CKA in float64 arithmetic: 1 for representations equal up to an orthogonal transform and an
        isotropic scaling. Computed in feature space when that is cheaper, else from Gram matrices
        (both give the same value).
    """
    xm, ym = _pair_matrices(x, y, debiased)
    n = xm.shape[0]
    if max(xm.shape[1], ym.shape[1]) < n:
        return _feature_space_linear_cka(xm, ym, debiased)
    return _cka_from_grams(xm @ xm.T, ym @ ym.T, debiased)


def _rbf_gram(x: torch.Tensor, bandwidth: float, name: str) -> torch.Tensor:
    dots = x @ x.T
    sq_norms = torch.diagonal(dots)
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * dots).clamp_min(0.0)
    median = float(np.median(sq_dist.cpu().numpy()))
    if not median > 0:
        raise AnalysisError(f"{name}: the median pairwise distance is zero; the RBF bandwidth is undefined")
    return torch.exp(-sq_dist / (2.0 * bandwidth**2 * median))


def rbf_cka(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, bandwidth: float = 0.5, debiased: bool = False
) -> float:
    """CKA with a Gaussian (RBF) kernel (Kornblith et al. 2019, section 3 and the reference demo).

    Args:
        x: features ``(n, ...)``; dimensions after the first are flattened.
        y: features ``(n, ...)`` of the same examples.
        bandwidth: ``σ`` as a fraction of the median pairwise distance of each representation:
            ``k(a, b) = exp(-‖a-b‖² / (2 · bandwidth² · median‖·‖²))`` (the demo's ``threshold``).
        debiased: use the unbiased HSIC estimator (Song et al. 2012); needs ``n >= 4``.

    Returns:
        CKA in float64 arithmetic. Invariant to orthogonal transforms, translations and isotropic
        scaling of either representation (the bandwidth scales with the distances).
    """
    bw = check_positive_float(bandwidth, "bandwidth")
    xm, ym = _pair_matrices(x, y, debiased)
    return _cka_from_grams(_rbf_gram(xm, bw, "x"), _rbf_gram(ym, bw, "y"), debiased)


# ---- minibatch CKA ------------------------------------------------------------------------------
@dataclass
class _GramStats:
    """What one layer contributes to HSIC on one batch: the (U-)centred Gram matrix, flattened."""

    flat: torch.Tensor  # (n*n,) zero-diagonal gram (unbiased) or H K H (biased)
    rows: torch.Tensor  # (n,) row sums of the zero-diagonal gram (unbiased only)
    total: torch.Tensor  # () sum of the zero-diagonal gram (unbiased only)


class MinibatchCKA:
    """Accumulates linear CKA between every layer of ``a`` and every layer of ``b`` over batches.

    Nguyen, Raghu & Kornblith 2021 (section 3.1): for each batch the unbiased estimator

    ``HSIC_1(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) − 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))``

    (``K̃``: the linear Gram matrix with its diagonal set to zero) is computed and averaged over
    batches; ``compute()`` returns ``mean HSIC_1(K,L) / sqrt(mean HSIC_1(K,K) · mean HSIC_1(L,L))``.
    With ``debiased=False`` the biased ``HSIC_0 = tr(KHLH)/(n-1)²`` is averaged instead (its value
    depends on the batch size). Each layer's Gram matrix is computed once per batch and all pairs
    come from one matrix product, so memory is ``O(batch²)`` per layer. Batches are weighted
    equally, as in the paper.

    Args:
        layers_a: names of the first set of representations (rows of the result).
        layers_b: names of the second set (columns).
        debiased: unbiased ``HSIC_1`` (needs batches of at least 4 examples) or biased ``HSIC_0``.
    """

    def __init__(self, layers_a: Sequence[str], layers_b: Sequence[str], debiased: bool = True) -> None:
        self.layers_a = [str(s) for s in layers_a]
        self.layers_b = [str(s) for s in layers_b]
        for name, layers in (("layers_a", self.layers_a), ("layers_b", self.layers_b)):
            if not layers:
                raise AnalysisError(f"{name}: expected at least one layer name, got none")
        self.debiased = bool(debiased)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._ab: torch.Tensor | None = None
        self._aa: torch.Tensor | None = None
        self._bb: torch.Tensor | None = None
        self.n_batches = 0
        self.n_samples = 0

    # -- per-batch statistics --
    def layer_stats(self, feature: torch.Tensor) -> _GramStats:
        """The Gram-matrix statistics of one layer's batch of features ``(n, ...)``, in float64."""
        n = feature.shape[0]
        x = feature.detach().reshape(n, -1).to(torch.float64)
        gram = x @ x.T
        if self.debiased:
            gram.fill_diagonal_(0.0)
            rows = gram.sum(1)
            return _GramStats(gram.reshape(-1), rows, rows.sum())
        gram = gram - gram.mean(0, keepdim=True)
        gram = gram - gram.mean(1, keepdim=True)
        empty = gram.new_zeros(0)
        return _GramStats(gram.reshape(-1), empty, empty)

    def _check_batch(self, feats: Mapping[str, torch.Tensor], layers: list[str], arg: str) -> int:
        missing = [name for name in layers if name not in feats]
        if missing:
            raise AnalysisError(f"{arg}: no features for layer {missing[0]!r} (given: {', '.join(feats)})")
        sizes = {int(feats[name].shape[0]) for name in layers}
        if len(sizes) != 1:
            raise AnalysisError(f"{arg}: layers disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()

    def batch_stats(
        self,
        feats: Mapping[str, torch.Tensor],
        layers: Sequence[str],
        cache: dict[int, _GramStats] | None = None,
    ) -> list[_GramStats]:
        """Statistics of every named layer of one batch.

        A tensor object seen before (in ``cache``, keyed by identity) is not processed again, so a
        layer shared by both sides costs one Gram matrix.
        """
        cache = {} if cache is None else cache
        out = []
        for name in layers:
            t = feats[name]
            if id(t) not in cache:
                cache[id(t)] = self.layer_stats(t)
            out.append(cache[id(t)])
        return out

    def update(self, feats_a: Mapping[str, torch.Tensor], feats_b: Mapping[str, torch.Tensor]) -> None:
        """Add one batch: ``feats_a[name]``, ``feats_b[name]``: ``(n, ...)`` features of the same n examples.

        Raises:
            AnalysisError: a layer is missing, batch sizes differ, or ``n < 4`` with the unbiased
                estimator (``n < 2`` with the biased one).
        """
        n_a = self._check_batch(feats_a, self.layers_a, "feats_a")
        n_b = self._check_batch(feats_b, self.layers_b, "feats_b")
        if n_a != n_b:
            raise AnalysisError(f"feats_b: batch size {n_b} differs from feats_a's {n_a}")
        self._check_size(n_a)
        cache: dict[int, _GramStats] = {}
        stats_a = self.batch_stats(feats_a, self.layers_a, cache)
        stats_b = self.batch_stats(feats_b, self.layers_b, cache)
        self.update_stats(stats_a, stats_b, n_a)

    def _check_size(self, n: int) -> None:
        need = 4 if self.debiased else 2
        if n < need:
            raise AnalysisError(
                f"batch size {n} is too small for the {'unbiased' if self.debiased else 'biased'} HSIC "
                f"estimator; need at least {need} examples per batch"
            )

    def update_stats(self, stats_a: Sequence[_GramStats], stats_b: Sequence[_GramStats], n: int) -> None:
        """Add one batch from precomputed :meth:`layer_stats` (lets a fixed reference reuse its grams)."""
        self._check_size(n)
        if len(stats_a) != len(self.layers_a) or len(stats_b) != len(self.layers_b):
            raise AnalysisError(
                f"stats: expected {len(self.layers_a)} and {len(self.layers_b)} layer statistics, "
                f"got {len(stats_a)} and {len(stats_b)}"
            )
        device = stats_a[0].flat.device
        ga = torch.stack([s.flat for s in stats_a])
        gb = torch.stack([s.flat.to(device) for s in stats_b])
        if ga.shape[1] != n * n or gb.shape[1] != n * n:
            raise AnalysisError(f"stats: expected Gram matrices of a batch of {n} examples")
        ab = ga @ gb.T
        aa = (ga * ga).sum(1)
        bb = (gb * gb).sum(1)
        if self.debiased:
            ra = torch.stack([s.rows for s in stats_a])
            rb = torch.stack([s.rows.to(device) for s in stats_b])
            sa = torch.stack([s.total for s in stats_a])
            sb = torch.stack([s.total.to(device) for s in stats_b])
            c1, c2, c3 = 1.0 / ((n - 1.0) * (n - 2.0)), 2.0 / (n - 2.0), 1.0 / (n * (n - 3.0))
            ab = (ab + c1 * sa[:, None] * sb[None, :] - c2 * (ra @ rb.T)) * c3
            aa = (aa + c1 * sa * sa - c2 * (ra * ra).sum(1)) * c3
            bb = (bb + c1 * sb * sb - c2 * (rb * rb).sum(1)) * c3
        else:
            scale = 1.0 / (n - 1.0) ** 2
            ab, aa, bb = ab * scale, aa * scale, bb * scale
        if self._ab is None:
            self._ab, self._aa, self._bb = ab, aa, bb
        else:
            assert self._aa is not None and self._bb is not None
            self._ab = self._ab + ab.to(self._ab.device)
            self._aa = self._aa + aa.to(self._aa.device)
            self._bb = self._bb + bb.to(self._bb.device)
        self.n_batches += 1
        self.n_samples += n

    def compute(self) -> np.ndarray:
        """CKA matrix ``(len(layers_a), len(layers_b))`` over all batches so far.

        Entries are NaN where a layer's accumulated self-HSIC is not positive (a constant layer).
        """
        if self._ab is None or self._aa is None or self._bb is None:
            raise AnalysisError("MinibatchCKA: no batch has been added; call update() first")
        denom = torch.sqrt(self._aa[:, None].clamp_min(0) * self._bb[None, :].clamp_min(0))
        out = torch.where(denom > 0, self._ab / torch.where(denom > 0, denom, 1.0), torch.nan)
        return out.cpu().numpy()


# ---- CKA between two models ----------------------------------------------------------------------
@dataclass
class CKAResult:
    """Minibatch linear CKA between every chosen layer of two models.

    ``matrix[i, j]`` is CKA between ``layers_a[i]`` of model ``a`` and ``layers_b[j]`` of ``b`` over
    ``n_samples`` images in batches of (at most) ``batch_size``.
    """

    matrix: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    model_a_name: str = "model_a"
    model_b_name: str = "model_b"
    kernel: str = "linear"


def default_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The stage outputs of ``model`` followed by its penultimate embedding, without repeats."""
    layers = list(stage_layers(model, input_shape))
    pen = penultimate_layer(model)
    if pen not in layers:
        layers.append(pen)
    return layers


def _layer_list(
    layers: Sequence[str] | None, model: nn.Module, input_shape: tuple[int, ...], arg: str
) -> list[str]:
    if layers is None:
        return default_layers(model, input_shape)
    if isinstance(layers, str):
        raise AnalysisError(f"{arg}: expected a list of layer paths, got the string {layers!r}")
    out = [str(s) for s in layers]
    if not out:
        raise AnalysisError(f"{arg}: expected at least one layer path, got none")
    return out


def _features(model: nn.Module, x: torch.Tensor, paths: list[str]) -> dict[str, torch.Tensor]:
    _, feats = capture(model, x.to(model_device(model), non_blocking=True), paths, train=False, detach=True)
    return feats


def _two_model_features(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, layers_a: list[str], layers_b: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward per model (one in total when both are the same module)."""
    if model_a is model_b:
        feats = _features(model_a, x, list(dict.fromkeys(layers_a + layers_b)))
        return feats, feats
    return _features(model_a, x, layers_a), _features(model_b, x, layers_b)


def cka_matrix(
    model_a: nn.Module,
    model_b: nn.Module,
    images: torch.Tensor,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    batch_size: int = 256,
    debiased: bool = True,
    device: str | torch.device | None = None,
    names: tuple[str, str] = ("model_a", "model_b"),
) -> CKAResult:
    """Linear CKA between every layer pair of two models in one pass over ``images``.

    Minibatch CKA (Nguyen, Raghu & Kornblith 2021) with one forward per model per batch; every
    layer's Gram matrix is computed once per batch. Works for teacher vs student, student vs
    student, and a model against itself (``model_a is model_b``: a single forward per batch).

    Args:
        model_a, model_b: the two networks (left in the training mode they were found in).
        images: normalized inputs ``(N, C, H, W)``.
        layers_a, layers_b: module paths (``path:input`` captures a module's input); default: the
            model's stage outputs followed by its penultimate embedding.
        batch_size: examples per batch; a tail shorter than 4 is merged into the previous batch.
        debiased: average the unbiased ``HSIC_1`` (recommended) or the biased ``HSIC_0``.
        device: where the models run (moved there and back); default: each model's own device.
        names: display names of the two models, kept in the result.

    Returns:
        :class:`CKAResult` with ``matrix`` of shape ``(len(layers_a), len(layers_b))``.
    """
    images = check_images(images)
    bs = check_positive_int(batch_size, "batch_size")
    need = 4 if debiased else 2
    if len(images) < need:
        raise AnalysisError(f"images: minibatch CKA needs at least {need} images, got {len(images)}")
    shape = tuple(images.shape[1:])
    la = _layer_list(layers_a, model_a, shape, "layers_a")
    lb = _layer_list(layers_b, model_b, shape, "layers_b")
    acc = MinibatchCKA(la, lb, debiased=debiased)
    dev_a, dev_b = resolve_device(model_a, device), resolve_device(model_b, device)
    with on_device(model_a, dev_a), on_device(model_b, dev_b):
        for sl in batch_slices(len(images), bs, min_size=need):
            fa, fb = _two_model_features(model_a, model_b, images[sl], la, lb)
            acc.update(fa, fb)
    return CKAResult(
        matrix=acc.compute(),
        layers_a=la,
        layers_b=lb,
        n_samples=acc.n_samples,
        batch_size=bs,
        debiased=bool(debiased),
        model_a_name=str(names[0]),
        model_b_name=str(names[1]),
    )


# ---- CKA over training ---------------------------------------------------------------------------
@dataclass
class CKATrainingResult:
    """CKA of each checkpoint against a fixed reference model at matched layers.

    ``values[e, l]`` is CKA between ``layers[l]`` of the checkpoint of ``epochs[e]`` and
    ``reference_layers[l]`` of the reference.
    """

    epochs: np.ndarray
    values: np.ndarray
    layers: list[str]
    reference_layers: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    reference_name: str = "reference"


CheckpointItem = nn.Module | tuple[int, nn.Module]
CheckpointSource = Iterable[CheckpointItem] | Callable[[], Iterable[CheckpointItem]]


def _match_by_depth(n_from: int, n_to: int) -> list[int]:
    """For each of ``n_from`` layers, the index among ``n_to`` layers at the nearest relative depth."""
    if n_from == n_to:
        return list(range(n_from))
    if n_from == 1:
        return [n_to - 1]
    return [int(round(i * (n_to - 1) / (n_from - 1))) for i in range(n_from)]


def cka_over_training(
    checkpoints: CheckpointSource,
    reference: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
    reference_layers: Sequence[str] | None = None,
    batch_size: int = 256,
    debiased: bool = True,
    device: str | torch.device | None = None,
    reference_name: str = "reference",
) -> CKATrainingResult:
    """Minibatch linear CKA of every checkpoint against ``reference`` at matched layers.

    The reference's per-batch Gram matrices are computed once and reused for every checkpoint
    (memory ``O(N · batch)`` per reference layer), so each checkpoint costs one forward per batch.

    Args:
        checkpoints: ``(epoch, model)`` pairs or bare models (numbered 1, 2, ...), or a callable
            returning such an iterable (e.g. a generator loading one checkpoint at a time).
        reference: the fixed model (the teacher, or the final student).
        images: normalized inputs ``(N, C, H, W)``.
        layers: module paths on the checkpoints; default: stages + penultimate of the first one.
        reference_layers: the matching paths on the reference, one per entry of ``layers``;
            default: the reference's stages + penultimate, matched to ``layers`` by relative depth.
        batch_size, debiased, device: as in :func:`cka_matrix`.
        reference_name: display name kept in the result.

    Returns:
        :class:`CKATrainingResult` with ``values`` of shape ``(n_checkpoints, len(layers))``.
    """
    images = check_images(images)
    bs = check_positive_int(batch_size, "batch_size")
    need = 4 if debiased else 2
    if len(images) < need:
        raise AnalysisError(f"images: minibatch CKA needs at least {need} images, got {len(images)}")
    source = checkpoints() if callable(checkpoints) else checkpoints
    shape = tuple(images.shape[1:])
    slices = batch_slices(len(images), bs, min_size=need)

    epochs: list[int] = []
    rows: list[np.ndarray] = []
    la: list[str] | None = None
    lr: list[str] = []
    ref_unique: list[str] = []
    ref_index: list[int] = []
    ref_stats: list[list[_GramStats]] = []
    acc: MinibatchCKA | None = None
    dev_r = resolve_device(reference, device)
    for position, item in enumerate(source, start=1):
        if isinstance(item, nn.Module):
            epoch, model = position, item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], nn.Module):
            epoch, model = int(item[0]), item[1]
        else:
            raise AnalysisError(
                f"checkpoints: item {position} should be a model or an (epoch, model) pair, "
                f"got {type(item).__name__}"
            )
        if la is None:
            la = _layer_list(layers, model, shape, "layers")
            if reference_layers is None:
                all_ref = default_layers(reference, shape)
                lr = [all_ref[i] for i in _match_by_depth(len(la), len(all_ref))]
            else:
                lr = _layer_list(reference_layers, reference, shape, "reference_layers")
                if len(lr) != len(la):
                    raise AnalysisError(
                        f"reference_layers: expected {len(la)} paths (one per entry of layers), got {len(lr)}"
                    )
            ref_unique = list(dict.fromkeys(lr))
            ref_index = [ref_unique.index(p) for p in lr]
            acc = MinibatchCKA(la, ref_unique, debiased=debiased)
            with on_device(reference, dev_r):
                for sl in slices:
                    feats_r = _features(reference, images[sl], ref_unique)
                    ref_stats.append(acc.batch_stats(feats_r, ref_unique))
        assert acc is not None
        acc.reset()
        dev_m = resolve_device(model, device)
        with on_device(model, dev_m):
            for sl, stats_r in zip(slices, ref_stats, strict=True):
                feats = _features(model, images[sl], la)
                acc.update_stats(acc.batch_stats(feats, la), stats_r, sl.stop - sl.start)
        full = acc.compute()
        rows.append(full[np.arange(len(la)), ref_index])
        epochs.append(epoch)
    if la is None:
        raise AnalysisError("checkpoints: expected at least one checkpoint model, got none")
    return CKATrainingResult(
        epochs=np.asarray(epochs, dtype=np.int64),
        values=np.stack(rows),
        layers=la,
        reference_layers=lr,
        n_samples=len(images),
        batch_size=bs,
        debiased=bool(debiased),
        reference_name=str(reference_name),
    )


# ---- 2-D embeddings -----------------------------------------------------------------------------
@dataclass
class EmbeddingResult:
    """Penultimate features of two models on the same images, projected to 2-D.

    ``coords_a[i]`` and ``coords_b[i]`` belong to image ``indices[i]`` with label ``labels[i]``.
    ``explained_variance_a/b`` hold PCA's explained-variance ratios of the two axes (None for t-SNE).
    """

    coords_a: np.ndarray
    coords_b: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    method: str
    layer_a: str
    layer_b: str
    aligned: bool
    explained_variance_a: np.ndarray | None = None
    explained_variance_b: np.ndarray | None = None
    model_a_name: str = "model_a"
    model_b_name: str = "model_b"


_EMBED_METHODS = ("pca", "tsne")


def _collect(model: nn.Module, images: torch.Tensor, path: str, bs: int, device: torch.device) -> np.ndarray:
    with on_device(model, device):
        parts = [_features(model, images[sl], [path])[path] for sl in batch_slices(len(images), bs)]
    return torch.cat([p.reshape(p.shape[0], -1).float().cpu() for p in parts]).numpy()


def _project(
    feats: np.ndarray, method: str, seed: int, perplexity: float, arg: str
) -> tuple[np.ndarray, np.ndarray | None]:
    if feats.shape[1] < 2:
        raise AnalysisError(f"{arg}: expected an embedding with at least 2 features, got {feats.shape[1]}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(feats.astype(np.float64))
        return coords, pca.explained_variance_ratio_.astype(np.float64)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # scikit-learn's OpenMP runtime and torch's spin-wait against each other when both are
    # loaded; one OpenMP thread for the fit avoids a slowdown of one to two orders of magnitude.
    with threadpool_limits(limits=1, user_api="openmp"):
        coords = tsne.fit_transform(feats.astype(np.float32))
    return coords.astype(np.float64), None


def _procrustes_align(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre both point sets; rotate/reflect ``moving`` onto ``reference`` (orthogonal Procrustes)."""
    ref = reference - reference.mean(0)
    mov = moving - moving.mean(0)
    u, _, vt = np.linalg.svd(mov.T @ ref)
    return ref, mov @ (u @ vt)


def embedding_2d(
    model_a: nn.Module,
    model_b: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str = "pca",
    layer_a: str | None = None,
    layer_b: str | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    align: bool = True,
    names: tuple[str, str] = ("model_a", "model_b"),
) -> EmbeddingResult:
    """2-D maps of both models' penultimate features (scikit-learn PCA or t-SNE, van der Maaten 2008).

    Each model's features are projected separately (their widths may differ). With ``align`` the
    two maps are centred and ``b``'s map is rotated/reflected onto ``a``'s by orthogonal Procrustes
    (distances within each map are unchanged), so corresponding clusters sit in the same place.

    Args:
        model_a, model_b: the two networks.
        images: normalized inputs ``(N, C, H, W)``; labels: int64 ``(N,)``.
        method: ``"pca"`` or ``"tsne"``.
        layer_a, layer_b: feature paths; default: each model's penultimate layer.
        batch_size, device: batching and placement of the forwards.
        seed: random state of PCA / t-SNE. perplexity: t-SNE perplexity (must be < N).
        align: Procrustes-align ``b``'s map onto ``a``'s.
        names: display names of the two models.

    Returns:
        :class:`EmbeddingResult` with ``coords_a``, ``coords_b`` of shape ``(N, 2)``.
    """
    images = check_images(images)
    y = check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    if method not in _EMBED_METHODS:
        raise AnalysisError(f"method: unknown projection {method!r}; known: {', '.join(_EMBED_METHODS)}")
    if len(images) < 3:
        raise AnalysisError(f"images: a 2-D embedding needs at least 3 images, got {len(images)}")
    perp = check_positive_float(perplexity, "perplexity")
    if method == "tsne" and perp >= len(images):
        raise AnalysisError(
            f"perplexity: expected a value below the number of images {len(images)}, got {perp}"
        )
    pa = layer_a if layer_a is not None else penultimate_layer(model_a)
    pb = layer_b if layer_b is not None else penultimate_layer(model_b)
    fa = _collect(model_a, images, pa, bs, resolve_device(model_a, device))
    fb = _collect(model_b, images, pb, bs, resolve_device(model_b, device))
    ca, va = _project(fa, method, int(seed), perp, "layer_a")
    cb, vb = _project(fb, method, int(seed), perp, "layer_b")
    if align:
        ca, cb = _procrustes_align(ca, cb)
    return EmbeddingResult(
        coords_a=ca,
        coords_b=cb,
        labels=y.cpu().numpy(),
        indices=np.arange(len(images)),
        method=method,
        layer_a=pa,
        layer_b=pb,
        aligned=bool(align),
        explained_variance_a=va,
        explained_variance_b=vb,
        model_a_name=str(names[0]),
        model_b_name=str(names[1]),
    )
