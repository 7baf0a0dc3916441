"""Centered kernel alignment (CKA) as pure tensor functions: whole-matrix and minibatch estimators.

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
"Do Wide and Deep Networks Learn the Same Things?" (:class:`MinibatchCKA`): the unbiased ``HSIC_1``
of every batch is averaged over batches, and CKA is
``mean HSIC_1(K, L) / sqrt(mean HSIC_1(K, K) · mean HSIC_1(L, L))``. Only one batch's Gram
matrices are ever held in memory.

Precision: a linear Gram matrix is formed from the batch's column-centred features (the unbiased
and the biased HSIC are both unchanged by subtracting a constant from every example, Székely &
Rizzo 2014), in float32 for float32 features by default, and the HSIC terms are formed and
accumulated in float64. Centring first removes the large common offset of post-ReLU or pooled
features before the matrix product, so the float32 Gram path stays within 1e-6 of a float64
computation on such features (``tests/test_cka_precision.py``), where an uncentred Gram matrix
loses digits to cancellation even in float64. ``precision="float64"`` forms every Gram matrix in
float64.

CKA between models (feature capture, layer choice, CKA over training) is in :mod:`.similarity`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.analysis._common import AnalysisError, check_positive_float

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "MinibatchCKA",
    "check_kernel",
    "check_precision",
    "linear_cka",
    "rbf_cka",
]

#: the kernels CKA is computed with
KERNELS = ("linear", "rbf")


def check_kernel(kernel: object) -> str:
    """``kernel`` if it is one of :data:`KERNELS`, else a one-line :class:`AnalysisError`."""
    if kernel not in KERNELS:
        raise AnalysisError(f"kernel: unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    return str(kernel)


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


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line :class:`AnalysisError`."""
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
        self.kernel = check_kernel(kernel)
        self.debiased = bool(debiased)
        self.bandwidth = check_positive_float(bandwidth, "bandwidth")
        self.precision = check_precision(precision)
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
