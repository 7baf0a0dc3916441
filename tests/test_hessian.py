"""Hessian curvature of a student's objective: power iteration (Pearlmutter 1994 products) and
Hutchinson's 1989 trace estimator, computed on a gradient-enabled copy of the student."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workbench.analysis.hessian import hessian_top_eigenvalue, hessian_trace
from workbench.analysis.objectives import Objective, cross_entropy, kd
from workbench.models import create_model

N = 64


def _make(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn_small", num_classes=10, in_channels=1, image_size=8).eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 1, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g)


@pytest.fixture(scope="module")
def teacher():
    return _make(11)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(now[k], v), k


# ---- Hessian ------------------------------------------------------------------------------------
class _Quadratic(nn.Module):
    """``logits = w`` for every sample, so ``loss = ½ wᵀAw`` has Hessian ``A`` everywhere."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(x.shape[0], -1)


def _quadratic_loss(a: torch.Tensor) -> Objective:
    def fn(logits, labels, teacher_logits):
        return 0.5 * torch.einsum("bi,ij,bj->b", logits, a, logits).mean()

    return Objective("quadratic", fn)


EIGS = [-6.0, 3.0, 1.0, 0.5, -0.2]


def _rotated_a() -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    return q @ torch.diag(torch.tensor(EIGS, dtype=torch.float64)) @ q.T


def test_power_iteration_finds_the_largest_magnitude_eigenvalue_with_its_sign():
    model, a = _Quadratic(5), _rotated_a()
    x, y = torch.zeros(8, 1), torch.zeros(8, dtype=torch.long)
    res = hessian_top_eigenvalue(
        None, model, x, y, objective=_quadratic_loss(a), iters=200, tol=1e-10, batch_size=3
    )
    assert res.converged
    assert res.eigenvalue == pytest.approx(-6.0, rel=1e-6)


def test_hutchinson_trace_is_exact_for_a_diagonal_hessian_and_close_otherwise():
    model = _Quadratic(5)
    x, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    diag = torch.diag(torch.tensor(EIGS, dtype=torch.float64))
    exact = hessian_trace(None, model, x, y, objective=_quadratic_loss(diag), n_probes=5)
    assert exact.trace == pytest.approx(sum(EIGS), abs=1e-12)  # zᵀDz = tr D for every ±1 vector z
    assert exact.std_error == pytest.approx(0.0, abs=1e-12)

    a = _rotated_a()
    res = hessian_trace(None, model, x, y, objective=_quadratic_loss(a), n_probes=400, seed=2)
    off = a - torch.diag(torch.diagonal(a))
    sd = math.sqrt(2.0 * float((off**2).sum()) / 400)  # Hutchinson's variance: 2 Σ_{i≠j} A_ij² per probe
    assert abs(res.trace - sum(EIGS)) < 4 * sd
    assert res.std_error == pytest.approx(sd, rel=0.25)


def test_hessian_of_a_convex_objective_is_positive_and_the_model_is_restored(data, teacher):
    images, labels = data
    # logits linear in the weights: cross-entropy and KD are convex, so the Hessian is PSD
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.train()
    model[1].bias.requires_grad_(False)
    saved = _state(model)
    ce = hessian_top_eigenvalue(None, model, images, labels, objective=cross_entropy, iters=8, batch_size=20)
    kd_eig = hessian_top_eigenvalue(teacher, model, images, labels, objective=kd(4.0), iters=8)
    tr = hessian_trace(None, model, images, labels, objective="cross_entropy", n_probes=4)
    assert ce.eigenvalue > 0 and kd_eig.eigenvalue > 0 and tr.trace > 0
    _assert_same_state(model, saved)
    assert model.training and model[1].weight.requires_grad and not model[1].bias.requires_grad
    assert model[1].weight.grad is None


def test_hessian_objective_by_name_and_progress_per_iteration(data):
    images, labels = data
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    reports = []
    res = hessian_top_eigenvalue(
        None,
        model,
        images,
        labels,
        objective="cross_entropy",
        iters=4,
        tol=1e-12,
        progress=lambda *r: reports.append(r),
    )
    assert [r[0] for r in reports][:2] == [0, 1] and reports[-1][:2] == (4, 4)
    assert res.params["objective"] == "cross_entropy" and res.iterations <= 4
    with pytest.raises(ValueError, match="unknown objective 'hinge'"):
        hessian_trace(None, model, images, labels, objective="hinge")
    with pytest.raises(ValueError, match="teacher"):
        hessian_trace(None, model, images, labels, objective="kd")
