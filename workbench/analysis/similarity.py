"""Representation similarity between two networks: centered kernel alignment (CKA).

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

Precision: a linear Gram matrix is formed from the batch's column-centred features (the unbiased
and the biased HSIC are both unchanged by subtracting a constant from every example, Székely &
Rizzo 2014), in float32 for float32 features by default, and the HSIC terms are formed and
accumulated in float64. Centring first removes the large common offset of post-ReLU or pooled
features before the matrix product, so the float32 Gram path stays within 1e-6 of a float64
computation on such features (``tests/test_cka_precision.py``), where an uncentred Gram matrix
loses digits to cancellation even in float64. ``precision="float64"`` forms every Gram matrix in
float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.analysis._common import (
    AnalysisError,
    batch_slices,
    check_class_names,
    check_images,
    check_labels,
    check_model,
    check_names,
    check_positive_float,
    check_positive_int,
    model_device,
    new_tracker,
    resolve_device,
    working_copy,
)
from workbench.analysis._result import AnalysisResult
from workbench.models.errors import ModelError
from workbench.models.fusion import fold_batchnorm
from workbench.models.layout import MEMORY_FORMATS, as_channels_last, channels_last, wants_channels_last
from workbench.models.taps import (
    capture,
    get_module,
    match_stages,
    penultimate_layer,
    split_path,
    stage_layers,
)
from workbench.runtime import CancelToken, ProgressFn

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "CKAResult",
    "CKATrainingResult",
    "MinibatchCKA",
    "cka_matrix",
    "cka_over_training",
    "linear_cka",
    "matched_pairs",
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
    # CKA (linear and RBF, biased and debiased) does not change when a constant is subtracted from
    # every example; centring first keeps a large common offset out of the Gram matrices' rounding
    ym = ym.to(xm.device)
    return xm - xm.mean(0, keepdim=True), ym - ym.mean(0, keepdim=True)


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
#: accepted values of ``precision``: the dtype Gram matrices are formed in
PRECISIONS = ("float32", "float64")
# a float32 Gram matrix whose largest diagonal entry falls outside [_TINY, _HUGE] is formed again
# from features rescaled by a power of two (exact), so it neither under- nor overflows
_TINY, _HUGE = 2.0**-90, 2.0**90


def _flat_features(feature: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` features as ``(n, features)`` without a copy where possible: a channels-last
    4-D tensor is flattened in NHWC order (a Gram matrix does not depend on the order of the
    features)."""
    f = feature.detach()
    n = f.shape[0]
    if f.ndim == 4 and not f.is_contiguous() and f.is_contiguous(memory_format=torch.channels_last):
        f = f.permute(0, 2, 3, 1)
    return f.reshape(n, -1)


def _check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise AnalysisError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)


def _linear_gram(x: torch.Tensor, precision: str) -> torch.Tensor:
    """The float64 Gram matrix ``Xc Xcᵀ`` of the column-centred features ``Xc`` of ``x`` ``(n, d)``.

    The product is formed in float32 when ``precision == "float32"`` and ``x`` is not float64, else
    in float64. A float32 product whose diagonal would under- or overflow is formed from ``x``
    scaled by a power of two, and scaled back in float64.
    """
    work = torch.float64 if precision == "float64" or x.dtype == torch.float64 else torch.float32
    x = x.to(work)
    x = x - x.mean(0, keepdim=True)
    gram = x @ x.T
    if work == torch.float32:
        top = float(gram.diagonal().max())
        if not _TINY <= top <= _HUGE:  # (a constant layer stays all zeros)
            amax = float(x.abs().max())
            if amax > 0 and np.isfinite(amax):
                k = int(np.floor(np.log2(amax)))
                x = x * 2.0**-k
                return (x @ x.T).to(torch.float64) * 4.0**k
    return gram.to(torch.float64)


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
        kernel: ``"linear"`` (the paper's estimator) or ``"rbf"``: each batch's Gram matrix is then
            the Gaussian kernel of :func:`rbf_cka` with the median heuristic taken within the batch.
        bandwidth: the RBF ``σ`` as a fraction of the batch's median pairwise distance.
        precision: ``"float32"`` (default): a linear Gram matrix of float32 (or lower precision)
            features is formed in float32 from the column-centred features, within 1e-6 of the
            float64 result; ``"float64"``: every Gram matrix in float64. Float64 features always get
            a float64 Gram matrix, and the RBF kernel is always evaluated in float64. The HSIC terms
            are formed and accumulated in float64 in every case.
    """

    def __init__(
        self,
        layers_a: Sequence[str],
        layers_b: Sequence[str],
        debiased: bool = True,
        kernel: str = "linear",
        bandwidth: float = 0.5,
        precision: str = "float32",
    ) -> None:
        self.layers_a = [str(s) for s in layers_a]
        self.layers_b = [str(s) for s in layers_b]
        for name, layers in (("layers_a", self.layers_a), ("layers_b", self.layers_b)):
            if not layers:
                raise AnalysisError(f"{name}: expected at least one layer name, got none")
        if kernel not in KERNELS:
            raise AnalysisError(f"kernel: unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.debiased = bool(debiased)
        self.kernel = kernel
        self.bandwidth = check_positive_float(bandwidth, "bandwidth")
        self.precision = _check_precision(precision)
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
        """The Gram-matrix statistics of one layer's batch of features ``(n, ...)``, in float64.

        The Gram matrix is formed as ``precision`` says (see the class docstring); the returned
        statistics are float64 on the features' device.
        """
        x = _flat_features(feature)
        if self.kernel == "linear":
            gram = _linear_gram(x, self.precision)
        else:
            x = x.to(torch.float64)
            gram = _rbf_gram(x - x.mean(0, keepdim=True), self.bandwidth, "features")
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
class CKAResult(AnalysisResult):
    """Minibatch CKA between every chosen layer of a teacher (rows) and a student (columns).

    ``matrix[i, j]`` is CKA between ``teacher_layers[i]`` and ``student_layers[j]`` over
    ``n_samples`` images in batches of (at most) ``batch_size``; ``names`` are the two display names.
    """

    matrix: np.ndarray
    teacher_layers: list[str]
    student_layers: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    kernel: str = "linear"
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    # read-only aliases kept for callers written against the earlier field names
    @property
    def layers_a(self) -> list[str]:
        """Alias of ``teacher_layers`` (the rows)."""
        return self.teacher_layers

    @property
    def layers_b(self) -> list[str]:
        """Alias of ``student_layers`` (the columns)."""
        return self.student_layers


KERNELS = ("linear", "rbf")
_ROLES = ("teacher", "student")


def default_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The stage outputs of ``model`` followed by its penultimate embedding, without repeats."""
    layers = list(stage_layers(model, input_shape))
    pen = penultimate_layer(model)
    if pen not in layers:
        layers.append(pen)
    return layers


def split_layers(layers: object, arg: str = "layers") -> dict[str, Any]:
    """``layers`` as ``{"teacher": ..., "student": ...}``: a mapping with those keys (a missing key
    means the default for that model), or one value used for both models, or ``None``."""
    if layers is None:
        return {"teacher": None, "student": None}
    if isinstance(layers, Mapping):
        unknown = [k for k in layers if k not in _ROLES]
        if unknown:
            raise AnalysisError(f"{arg}: unknown key {unknown[0]!r}; expected 'teacher' and/or 'student'")
        return {role: layers.get(role) for role in _ROLES}
    return {"teacher": layers, "student": layers}


def _check_paths(model: nn.Module, paths: list[str], arg: str) -> list[str]:
    for path in paths:
        try:
            get_module(model, split_path(path)[0])
        except ModelError as err:
            raise AnalysisError(f"{arg}: {err}") from None
    return paths


def _layer_list(layers: object, model: nn.Module, input_shape: tuple[int, ...], arg: str) -> list[str]:
    if layers is None:
        try:
            return default_layers(model, input_shape)
        except ModelError as err:
            raise AnalysisError(f"{arg}: no default layers ({err}); pass the module paths") from None
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise AnalysisError(f"{arg}: expected a list of layer paths, got {layers!r}")
    out = [str(s) for s in layers]
    if not out:
        raise AnalysisError(f"{arg}: expected at least one layer path, got none")
    return _check_paths(model, out, arg)


def _features(
    model: nn.Module, x: torch.Tensor, paths: list[str], cl: bool = False
) -> dict[str, torch.Tensor]:
    """Features at ``paths`` of a working copy (eval mode already) on one batch; ``cl``: feed the
    batch channels-last (the copy's tensors are then channels-last too)."""
    x = x.to(model_device(model), non_blocking=True)
    _, feats = capture(model, as_channels_last(x) if cl else x, paths, detach=True)
    return feats


def _two_model_features(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    layers_a: list[str],
    layers_b: list[str],
    cl: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward per model (one in total when both are the same module)."""
    if model_a is model_b:
        feats = _features(model_a, x, list(dict.fromkeys(layers_a + layers_b)), cl)
        return feats, feats
    return _features(model_a, x, layers_a, cl), _features(model_b, x, layers_b, cl)


def _fold_keep(model: nn.Module, paths: Sequence[str]) -> set[str]:
    """Module paths whose Conv2d -> BatchNorm2d pair must not be folded for the taps at ``paths``
    to see what they see in the unfolded model: each tapped module (a tapped conv keeps its raw
    output, a tapped BN its input) and, for a tapped container, its last leaf module when that is
    a conv (the container's output is then the raw conv output)."""
    keep: set[str] = set()
    for path in paths:
        mod_path = split_path(path)[0]
        keep.add(mod_path)
        leaves = [
            name for name, sub in get_module(model, mod_path).named_modules() if not list(sub.children())
        ]
        if leaves and leaves[-1]:
            last = f"{mod_path}.{leaves[-1]}" if mod_path else leaves[-1]
            if isinstance(get_module(model, last), nn.Conv2d):
                keep.add(last)
    return keep


def _feature_net(
    copy: nn.Module, paths: Sequence[str], fold_bn: bool, example: torch.Tensor | None = None
) -> nn.Module:
    """The network features are read from: with ``fold_bn`` an eval-mode copy of the working copy
    ``copy`` with its Conv2d -> BatchNorm2d pairs folded (:func:`workbench.models.fold_batchnorm`),
    except the pairs :func:`_fold_keep` names, so every tap sees the same values up to float
    rounding; else ``copy`` itself."""
    if not fold_bn:
        return copy
    try:
        folded, n_folded = fold_batchnorm(copy, keep=_fold_keep(copy, paths), example=example)
    except Exception:  # a model that cannot be deep-copied is read as it is
        return copy
    if n_folded == 0:
        return copy
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _check_memory_format(memory_format: object) -> str:
    if memory_format not in MEMORY_FORMATS:
        raise AnalysisError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    return str(memory_format)


def _copies(
    teacher: nn.Module, student: nn.Module, device: str | torch.device | None
) -> tuple[nn.Module, nn.Module]:
    """Working copies of both models (one shared copy when they are the same module)."""
    dev_t, dev_s = resolve_device(teacher, device), resolve_device(student, device)
    t_copy = working_copy(teacher, dev_t)
    s_copy = t_copy if student is teacher and dev_s == dev_t else working_copy(student, dev_s)
    return t_copy, s_copy


def _check_cka_inputs(
    images: object, labels: object, batch_size: object, debiased: bool, kernel: object, bandwidth: object
) -> tuple[torch.Tensor, int, int, float]:
    images = check_images(images)
    if labels is not None:
        check_labels(labels, len(images))
    bs = check_positive_int(batch_size, "batch_size")
    if kernel not in KERNELS:
        raise AnalysisError(f"kernel: unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    bw = check_positive_float(bandwidth, "bandwidth")
    need = 4 if debiased else 2
    if len(images) < need:
        raise AnalysisError(f"images: minibatch CKA needs at least {need} images, got {len(images)}")
    return images, bs, need, bw


def cka_matrix(
    teacher: nn.Module,
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    layers: Mapping[str, Sequence[str] | None] | Sequence[str] | None = None,
    kernel: str = "linear",
    bandwidth: float = 0.5,
    debiased: bool = True,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    precision: str = "float32",
    fold_bn: bool = True,
    memory_format: str = "auto",
) -> CKAResult:
    """CKA between every layer pair of a teacher and a student in one pass over ``images``.

    Minibatch CKA (Nguyen, Raghu & Kornblith 2021) with one forward per model per batch; every
    layer's Gram matrix is computed once per batch and all pairs come from one matrix product.
    Works for teacher vs student, student vs student, and a model against itself (``teacher is
    student``: a single forward per batch). The models are never changed: the forwards run on
    eval-mode working copies.

    Args:
        teacher, student: the two networks (rows and columns of the matrix).
        images: normalized inputs ``(N, C, H, W)``.
        labels: optional ``(N,)`` classes; checked, not needed by CKA.
        layers: ``{"teacher": [...], "student": [...]}`` module paths (``path:input`` captures a
            module's input; a missing key or ``None``: the model's stage outputs followed by its
            penultimate embedding), or one list used for both models.
        kernel: ``"linear"`` (Kornblith et al. 2019, eq. 5) or ``"rbf"`` (median heuristic per batch).
        bandwidth: RBF ``σ`` as a fraction of the median pairwise distance.
        debiased: average the unbiased ``HSIC_1`` (recommended) or the biased ``HSIC_0``.
        names, class_names: display names kept in the result.
        device: where the models run; default: each model's own device.
        batch_size: examples per batch; a tail shorter than 4 is merged into the previous batch.
        progress: ``progress(done, total, message)`` once per batch. cancel: checked every batch.
        precision: ``"float32"`` (default) forms each linear Gram matrix in float32 from centred
            features and accumulates HSIC in float64 (within 1e-6 of ``"float64"``, which forms
            every Gram matrix in float64); see :class:`MinibatchCKA`.
        fold_bn: read the features from copies with BatchNorm folded into the convolutions before
            it (pairs whose raw output a tap reads are kept), fewer layers per forward; the
            features agree with the unfolded model up to float rounding.
        memory_format: ``"auto"`` (conv nets channels-last on the CPU, faster; values equal up to
            float rounding), ``"contiguous"`` or ``"channels_last"``.

    Returns:
        :class:`CKAResult` with ``matrix`` of shape ``(len(teacher_layers), len(student_layers))``.
    """
    check_model(teacher, "teacher")
    check_model(student, "student")
    images, bs, need, bw = _check_cka_inputs(images, labels, batch_size, debiased, kernel, bandwidth)
    prec = _check_precision(precision)
    fmt = _check_memory_format(memory_format)
    pair = check_names(names)
    classes = check_class_names(class_names)
    req = split_layers(layers)
    slices = batch_slices(len(images), bs, min_size=need)
    track = new_tracker(progress, cancel, len(slices), "CKA")
    track.start()
    t_copy, s_copy = _copies(teacher, student, device)
    shape = tuple(images.shape[1:])
    lt = _layer_list(req["teacher"], t_copy, shape, "layers['teacher']")
    ls = _layer_list(req["student"], s_copy, shape, "layers['student']")
    acc = MinibatchCKA(lt, ls, debiased=debiased, kernel=kernel, bandwidth=bw, precision=prec)
    if t_copy is s_copy:
        t_net = s_net = _feature_net(t_copy, lt + ls, fold_bn, images[:2])
    else:
        t_net = _feature_net(t_copy, lt, fold_bn, images[:2])
        s_net = _feature_net(s_copy, ls, fold_bn, images[:2])
    del t_copy, s_copy
    cl = wants_channels_last(fmt, model_device(t_net), t_net) and wants_channels_last(
        fmt, model_device(s_net), s_net
    )
    with channels_last(t_net, s_net, enabled=cl):
        for sl in slices:
            track.check()
            ft, fs = _two_model_features(t_net, s_net, images[sl], lt, ls, cl)
            acc.update(ft, fs)
            track.advance()
    return CKAResult(
        matrix=acc.compute(),
        teacher_layers=lt,
        student_layers=ls,
        n_samples=acc.n_samples,
        batch_size=bs,
        debiased=bool(debiased),
        kernel=kernel,
        names=pair,
        class_names=classes,
        params=_cka_params(kernel, bw, debiased, bs, prec, fold_bn, fmt),
    )


def _cka_params(
    kernel: str, bandwidth: Any, debiased: bool, batch_size: int, precision: str, fold_bn: bool, memory_format: str
) -> dict[str, Any]:
    """The settings a CKA result records in ``params``."""
    return {
        "kernel": kernel,
        "bandwidth": bandwidth,
        "debiased": bool(debiased),
        "batch_size": batch_size,
        "precision": precision,
        "fold_bn": bool(fold_bn),
        "memory_format": memory_format,
    }


# ---- CKA over training ---------------------------------------------------------------------------
@dataclass
class CKATrainingResult(AnalysisResult):
    """CKA of each student snapshot against the teacher at matched layer pairs.

    ``values[e, p]`` is CKA between ``student_layers[p]`` of the snapshot of ``epochs[e]`` and
    ``teacher_layers[p]`` of the teacher.
    """

    epochs: np.ndarray
    values: np.ndarray
    student_layers: list[str]
    teacher_layers: list[str]
    n_samples: int
    batch_size: int
    debiased: bool
    kernel: str = "linear"
    names: tuple[str, str] = ("teacher", "student")
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)


Snapshot = nn.Module | Callable[[], nn.Module]
Snapshots = Mapping[int, Snapshot] | Sequence[Snapshot | tuple[int, Snapshot]]


def _snapshot_items(snapshots: object) -> list[tuple[int, Snapshot]]:
    """``(epoch, model or loader)`` pairs from a mapping or a sequence (bare entries numbered 1, 2, ...)."""
    if isinstance(snapshots, Mapping):
        items = list(snapshots.items())
    elif isinstance(snapshots, Sequence) and not isinstance(snapshots, str):
        items = []
        for position, item in enumerate(snapshots, start=1):
            if isinstance(item, tuple) and len(item) == 2:
                items.append(item)
            else:
                items.append((position, item))
    else:
        raise AnalysisError(
            f"snapshots: expected a mapping epoch -> model (or a list of models), got {type(snapshots).__name__}"
        )
    out = []
    for epoch, value in items:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise AnalysisError(f"snapshots: expected integer epochs, got {epoch!r}")
        if not isinstance(value, nn.Module) and not callable(value):
            raise AnalysisError(
                f"snapshots[{int(epoch)}]: expected a model or a loader returning one, got {type(value).__name__}"
            )
        out.append((int(epoch), value))
    if not out:
        raise AnalysisError("snapshots: expected at least one student snapshot, got none")
    return out


def _load_snapshot(epoch: int, value: Snapshot) -> nn.Module:
    model = value if isinstance(value, nn.Module) else value()
    if not isinstance(model, nn.Module):
        raise AnalysisError(f"snapshots[{epoch}]: the loader returned {type(model).__name__}, not a model")
    return model


def matched_pairs(student: nn.Module, teacher: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str]]:
    """The ``(student_path, teacher_path)`` pairs feature distillation trains by default
    (:func:`workbench.models.taps.match_stages`), followed by the two penultimate embeddings."""
    try:
        pairs = match_stages(student, teacher, input_shape, input_shape)  # type: ignore[arg-type]
    except ModelError as err:
        raise AnalysisError(f"layers: no default stage pairs ({err}); pass the module paths") from None
    pen = (penultimate_layer(student), penultimate_layer(teacher))
    if pen not in pairs:
        pairs.append(pen)
    return pairs


def cka_over_training(
    teacher: nn.Module,
    snapshots: Snapshots,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    layers: Mapping[str, Sequence[str]] | None = None,
    kernel: str = "linear",
    bandwidth: float = 0.5,
    debiased: bool = True,
    names: Sequence[str] = ("teacher", "student"),
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    precision: str = "float32",
    fold_bn: bool = True,
    memory_format: str = "auto",
) -> CKATrainingResult:
    """Minibatch CKA of every student snapshot against the teacher at matched layer pairs.

    The teacher's per-batch Gram matrices are computed once and reused for every snapshot (memory
    ``O(N · batch)`` per teacher layer), so each snapshot costs one forward per batch. Snapshots
    given as loaders are loaded one at a time.

    Args:
        teacher: the fixed reference network.
        snapshots: ``{epoch: student model or zero-argument loader returning one}``, or a list of
            models / ``(epoch, model)`` pairs (bare models are numbered 1, 2, ...).
        images: normalized inputs ``(N, C, H, W)``; labels: optional, checked, not needed.
        layers: ``{"teacher": [...], "student": [...]}`` paths of equal length, paired in order;
            default: the stage pairs feature distillation trains
            (:func:`workbench.models.taps.match_stages` on the first snapshot) and the two
            penultimate embeddings.
        kernel, bandwidth, debiased, names, class_names, device, batch_size, precision, fold_bn,
            memory_format: as in :func:`cka_matrix`.
        progress: once per batch (the teacher's pass, then each snapshot's). cancel: every batch.

    Returns:
        :class:`CKATrainingResult` with ``values`` of shape ``(n_snapshots, n_pairs)``.
    """
    check_model(teacher, "teacher")
    images, bs, need, bw = _check_cka_inputs(images, labels, batch_size, debiased, kernel, bandwidth)
    prec = _check_precision(precision)
    fmt = _check_memory_format(memory_format)
    pair = check_names(names)
    classes = check_class_names(class_names)
    items = _snapshot_items(snapshots)
    if layers is not None:
        if not isinstance(layers, Mapping) or set(layers) != set(_ROLES):
            raise AnalysisError("layers: expected {'teacher': [...], 'student': [...]} of equal length")
    shape = tuple(images.shape[1:])
    slices = batch_slices(len(images), bs, min_size=need)
    track = new_tracker(progress, cancel, len(slices) * (1 + len(items)), "CKA over training")
    track.start()

    t_copy = working_copy(teacher, resolve_device(teacher, device))
    first_model = _load_snapshot(*items[0])
    first = working_copy(first_model, resolve_device(first_model, device))
    del first_model
    if layers is None:
        pairs = matched_pairs(first, t_copy, shape)
        ls, lt = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        lt = _layer_list(layers["teacher"], t_copy, shape, "layers['teacher']")
        ls = _layer_list(layers["student"], first, shape, "layers['student']")
        if len(lt) != len(ls):
            raise AnalysisError(
                f"layers: expected as many teacher paths as student paths, got {len(lt)} and {len(ls)}"
            )
    t_unique = list(dict.fromkeys(lt))
    t_index = [t_unique.index(p) for p in lt]
    acc = MinibatchCKA(ls, t_unique, debiased=debiased, kernel=kernel, bandwidth=bw, precision=prec)
    t_net = _feature_net(t_copy, t_unique, fold_bn, images[:2])
    del t_copy
    t_cl = wants_channels_last(fmt, model_device(t_net), t_net)
    t_stats = []
    with channels_last(t_net, enabled=t_cl):
        for sl in slices:
            track.check()
            t_stats.append(acc.batch_stats(_features(t_net, images[sl], t_unique, t_cl), t_unique))
            track.advance(message=f"CKA over training: {pair[0]}")
    del t_net

    epochs: list[int] = []
    rows: list[np.ndarray] = []
    for k, (epoch, value) in enumerate(items):
        if k == 0:
            s_copy = first
        else:
            model = _load_snapshot(epoch, value)
            s_copy = working_copy(model, resolve_device(model, device))
            _check_paths(s_copy, ls, f"snapshots[{epoch}]")
        acc.reset()
        s_net = _feature_net(s_copy, ls, fold_bn, images[:2])
        s_cl = wants_channels_last(fmt, model_device(s_net), s_net)
        with channels_last(s_net, enabled=s_cl):
            for sl, stats_t in zip(slices, t_stats, strict=True):
                track.check()
                feats = _features(s_net, images[sl], ls, s_cl)
                acc.update_stats(acc.batch_stats(feats, ls), stats_t, sl.stop - sl.start)
                track.advance(message=f"CKA over training: epoch {epoch}")
        del s_net
        full = acc.compute()
        rows.append(full[np.arange(len(ls)), t_index])
        epochs.append(epoch)
        del s_copy
    return CKATrainingResult(
        epochs=np.asarray(epochs, dtype=np.int64),
        values=np.stack(rows),
        student_layers=ls,
        teacher_layers=lt,
        n_samples=len(images),
        batch_size=bs,
        debiased=bool(debiased),
        kernel=kernel,
        names=pair,
        class_names=classes,
        params=_cka_params(kernel, bw, debiased, bs, prec, fold_bn, fmt),
    )


def __getattr__(name: str) -> Any:
    # the 2-D embeddings moved to workbench.analysis.embedding
    if name in ("EmbeddingResult", "embedding_2d"):
        from workbench.analysis import embedding

        return getattr(embedding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
