"""2-D embeddings of a teacher's and a student's penultimate features (PCA / t-SNE, Procrustes-aligned)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.embedding import embedding_2d
from workbench.models import create_model


@pytest.fixture(scope="module")
def models_and_images():
    torch.manual_seed(0)
    a = create_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
    torch.manual_seed(1)
    b = create_model("resnet8", num_classes=10, in_channels=1, image_size=8)
    images = torch.randn(48, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    return a, b, images


# ---- embeddings ---------------------------------------------------------------------------------
class _TwoD(nn.Module):
    """A user model without zoo conventions whose penultimate embedding has 2 features."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _pairwise(c: np.ndarray) -> np.ndarray:
    return np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)


def test_pca_embedding_of_a_2d_feature_space_preserves_distances(models_and_images):
    _, _, images = models_and_images
    ma, mb = _TwoD(0), _TwoD(1)
    labels = torch.arange(len(images)) % 3
    res = embedding_2d(ma, mb, images, labels, method="pca")
    assert res.teacher_layer == "head:input"
    assert res.teacher_coords.shape == (48, 2) and res.student_coords.shape == (48, 2)
    with torch.no_grad():
        fa, fb = ma.body(images).double().numpy(), mb.body(images).double().numpy()
    # centring + rotation (PCA) + Procrustes rotation keep every pairwise distance
    np.testing.assert_allclose(_pairwise(res.teacher_coords), _pairwise(fa), atol=1e-4)
    np.testing.assert_allclose(_pairwise(res.student_coords), _pairwise(fb), atol=1e-4)
    np.testing.assert_allclose(res.teacher_explained_variance.sum(), 1.0, atol=1e-9)
    assert res.labels.tolist() == labels.tolist()


def test_tsne_embedding_shapes_and_bad_method(models_and_images):
    a, b, images = models_and_images
    labels = torch.arange(len(images)) % 10
    res = embedding_2d(a, b, images, labels, method="tsne", perplexity=5.0, align=False)
    assert res.teacher_coords.shape == res.student_coords.shape == (48, 2)
    assert res.teacher_explained_variance is None and np.isfinite(res.student_coords).all()
    with pytest.raises(ValueError, match="method: unknown projection 'umap'; known: pca, tsne"):
        embedding_2d(a, b, images, labels, method="umap")


def test_embedding_layers_by_role_and_bad_paths(models_and_images):
    a, b, images = models_and_images
    labels = torch.arange(len(images)) % 10
    res = embedding_2d(a, b, images, labels, layers={"student": "layer2"}, align=False)
    assert res.teacher_layer == "pool" and res.student_layer == "layer2"
    assert res.names == ("teacher", "student") and res.params["method"] == "pca"
    with pytest.raises(ValueError, match=r"layers\['teacher'\]: module path 'nope'"):
        embedding_2d(a, b, images, labels, layers={"teacher": "nope"})
    with pytest.raises(ValueError, match="layers: unknown key 'model_a'"):
        embedding_2d(a, b, images, labels, layers={"model_a": "pool"})
