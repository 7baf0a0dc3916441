"""Per-method formulas of the class activation maps (private to :mod:`workbench.analysis.cam`).

Each kernel takes a whole batch of layer activations ``A`` ``(B, K, h, w)`` (and, where the method
uses them, the gradients ``G = dy^c / dA`` of each sample's target score, same shape) and returns
the signed map ``(B, h, w)`` before any ReLU, upsampling or normalization.
"""

from __future__ import annotations

import math

import torch

from workbench.analysis._common import AnalysisError


def gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) before the ReLU: ``sum_k mean_ij(G_k) * A_k``."""
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def gradcam_plus_plus(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score, eq. 10) before the ReLU.

    With ``Y^c = exp(S^c)`` and a piecewise-linear network, the higher derivatives are powers of the
    first: ``alpha_kij = G^2 / (2 G^2 + sum_ab A_kab G^3)`` (0 where the denominator vanishes),
    ``w_k = sum_ij alpha_kij ReLU(G_kij)``, map ``= sum_k w_k A_k``. The positive per-image factor
    ``exp(S^c)`` that multiplies every ``w_k`` is left out, so magnitudes stay comparable.
    """
    g2 = grads * grads
    g3 = g2 * grads
    sum_acts = acts.sum(dim=(2, 3), keepdim=True)
    denom = 2.0 * g2 + sum_acts * g3
    safe = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(denom))
    weights = (alpha * torch.relu(grads)).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def hirescam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020) before the ReLU: the element-wise ``sum_k G_k * A_k``."""
    return (grads * acts).sum(dim=1)


def layercam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021, eq. 3-4) before the ReLU: ``sum_k ReLU(G_k) * A_k``."""
    return (torch.relu(grads) * acts).sum(dim=1)


def class_activation_map(acts: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al. 2016, eq. 2): ``M_c = sum_k w^c_k A_k``; ``class_weights`` ``(B, K)``: head rows."""
    return torch.einsum("bkhw,bk->bhw", acts, class_weights)


def eigencam(acts: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of each position's activations on the first
    right singular vector ``v1`` of ``A`` reshaped to ``O`` ``(h*w, K)``, i.e. ``O v1 = s1 u1``.

    As in the paper the matrix is not centred. ``v1`` (or ``u1`` and ``s1``) come from the
    symmetric eigenproblem of the smaller Gram matrix ``O^T O`` or ``O O^T`` in float64, batched.
    The sign of a singular vector is arbitrary; it is chosen so that the map sums to a
    non-negative value (for non-negative activations the Perron-Frobenius vector then gives a
    non-negative map). Class-agnostic: no target is used.
    """
    b, k, h, w = acts.shape
    mat = acts.reshape(b, k, h * w).transpose(1, 2).to(torch.float64)
    if h * w <= k:
        evals, evecs = torch.linalg.eigh(mat @ mat.transpose(1, 2))
        proj = evecs[:, :, -1] * evals[:, -1:].clamp_min(0.0).sqrt()
    else:
        _, evecs = torch.linalg.eigh(mat.transpose(1, 2) @ mat)
        proj = torch.einsum("bpk,bk->bp", mat, evecs[:, :, -1])
    sign = torch.where(proj.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    return (proj * sign).reshape(b, h, w).to(acts.dtype)


def scorecam_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM masks (Wang et al. 2020, eq. 5): each channel upsampled bilinearly to ``size`` and
    min-max normalized to ``[0, 1]``; a constant channel gives an all-zero mask. Returns ``(B, K, H, W)``."""
    up = torch.nn.functional.interpolate(acts, size=size, mode="bilinear", align_corners=False)
    flat = up.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    hi = flat.amax(dim=2, keepdim=True)
    span = hi - lo
    norm = torch.where(
        span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat)
    )
    return norm.reshape(up.shape)


def tokens_to_grid(tokens: torch.Tensor, path: str) -> torch.Tensor:
    """Reshape transformer tokens ``(B, T, D)`` to a map ``(B, D, s, s)``; a leading class token is dropped.

    ``T`` must be a square (patch tokens only) or one more than a square (class token first).
    Raises :class:`AnalysisError` (a ``ValueError``) otherwise.
    """
    b, t, d = tokens.shape
    side = math.isqrt(t)
    if side * side == t:
        grid = tokens
    elif math.isqrt(t - 1) ** 2 == t - 1 and t > 1:
        side = math.isqrt(t - 1)
        grid = tokens[:, 1:, :]
    else:
        raise AnalysisError(
            f"layer {path!r}: {t} tokens are neither a square grid nor a class token plus a square grid"
        )
    return grid.transpose(1, 2).reshape(b, d, side, side)
