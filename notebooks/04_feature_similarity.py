# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: workbench,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   workbench:
#     lesson: 04_feature_similarity
# ---

# %% [markdown]
# # Lesson 4 · Feature similarity with CKA
#
# Two networks can agree on every prediction and still compute them differently. **Centered kernel
# alignment** (CKA; Kornblith, Norouzi, Lee & Hinton 2019) compares what two layers represent, given
# their activations on the same examples, even when the layers have different widths.
#
# **Learning goals.** After this lesson you can
#
# 1. state linear CKA and compute it;
# 2. show numerically what it is invariant to (orthogonal transforms, isotropic scaling) and what it
#    is not (arbitrary invertible linear maps);
# 3. read a teacher-student CKA heatmap: which student layer lines up with which teacher layer;
# 4. follow the alignment over training in the `SimilarityExplorer` panel.

# %%
import os
import tempfile

import torch
from IPython.display import display

from workbench.devices import resolve_device
from workbench.lessons import check, fast, size
from workbench.runs import RunStore

torch.manual_seed(0)
device = resolve_device("auto")
# This lesson's runs go to a fresh temporary folder (or to $WORKBENCH_RUNS when set),
# never to your ./runs.
workspace = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson04-")
store = RunStore(workspace)
print(f"device: {device} · runs go to {workspace} · fast mode: {fast()}")

# %% [markdown]
# ## Linear CKA
#
# Let $X \in \mathbb{R}^{n \times p_1}$ and $Y \in \mathbb{R}^{n \times p_2}$ be the activations of two
# layers on the same $n$ examples (one row per example, flattened), each column centred. Then
#
# $$\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F \, \lVert Y^\top Y \rVert_F}
# \in [0, 1].$$
#
# Equivalently it compares the $n \times n$ similarity (Gram) matrices $XX^\top$ and $YY^\top$:
# CKA looks at *how examples relate to each other* in each layer, not at individual neurons,
# which is why layers of different widths can be compared. `workbench.analysis.linear_cka`
# computes it (in float64).

# %%
from workbench.analysis import linear_cka

g = torch.Generator().manual_seed(0)
n, d = 500, 64
X = torch.randn(n, d, generator=g, dtype=torch.float64)
Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))   # orthogonal
A = torch.randn(d, d, generator=g, dtype=torch.float64)                         # invertible, not orthogonal
scales = torch.linspace(0.1, 10.0, d, dtype=torch.float64)                      # per-feature scaling

cases = {
    "X itself": X,
    "rotated: X Q": X @ Q,
    "isotropic scaling: 3 X": 3.0 * X,
    "shifted: X + 5": X + 5.0,
    "rotated, scaled, shifted": 0.5 * X @ Q + 1.0,
    "anisotropic scaling: X diag(s)": X * scales,
    "invertible linear: X A": X @ A,
    "unrelated: random": torch.randn(n, d, generator=g, dtype=torch.float64),
}
for name, Y in cases.items():
    print(f"{name:>32}: CKA = {linear_cka(X, Y):.4f}")

# %% [markdown]
# **Invariant:** orthogonal transforms (rotations, reflections, permutations of neurons), isotropic
# scaling, and shifts (the columns are centred). These change nothing about the geometry of the
# examples, so CKA is exactly 1. **Not invariant:** per-feature rescaling and general invertible
# linear maps, which stretch some directions more than others. Kornblith et al. argue this is a
# feature: a measure invariant to every invertible linear map (like CCA) cannot tell layers apart
# once their width reaches the number of examples. Unrelated random features are not at 0 with the
# biased estimator; the *debiased* estimator (`debiased=True`, the default of `cka_matrix`) removes
# most of that offset.

# %%
Y = cases["unrelated: random"]
print(f"biased: {linear_cka(X, Y):.4f} · debiased: {linear_cka(X, Y, debiased=True):.4f}")

# %% [markdown]
# ## Teacher vs. student, layer by layer
#
# Now real networks: the shipped MNIST teacher (`cnn_large`, three stages of 32-64-128 channels)
# and a `cnn_small` student (16-32-64) distilled from it with KD. The run is stored with a
# checkpoint per epoch, so we can also look at the student *during* training.

# %%
import dataclasses

import numpy as np

from workbench.data import load_dataset
from workbench.runs import load_shipped_teacher
from workbench.train import run
from workbench.validate import validate_run_config

N_TRAIN = size(3000, 256)
N_IMAGES = size(1000, 200)  # images CKA is computed on
EPOCHS = size(3, 2)

data = load_dataset("mnist")
small = dataclasses.replace(
    data, train=data.train.subset(torch.arange(N_TRAIN)), test=data.test.subset(torch.arange(N_IMAGES))
)
teacher = load_shipped_teacher("mnist", device)
images = data.normalize(small.test.images).to(device)
labels = small.test.labels.to(device)


def mnist_config(methods, ce_weight):
    distill = methods != "none"
    return validate_run_config({
        "seed": 0,
        "data": {"dataset": "mnist", "batch_size": 64},
        "model": {"name": "cnn_small"},
        "teachers": [{"source": "shipped:mnist"}] if distill else [],
        "distill": {"methods": methods, "ce_weight": ce_weight},
        "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
        "train": {"epochs": EPOCHS, "snapshot_every_epoch": True},
    })


kd = run(mnist_config("0.9*kd", 0.1), store=store, dataset=small, teachers=[teacher])
scratch = run(mnist_config("none", 1.0), store=store, dataset=small)
for name, r in (("kd", kd), ("scratch", scratch)):
    print(f"{name:>8}: test accuracy {r.summary['test_acc']:.2%} ({r.summary['epochs_done']} epochs)")

# %% [markdown]
# `cka_matrix` computes CKA between every teacher layer (rows) and every student layer (columns) in
# one pass over the images (minibatch CKA, Nguyen, Raghu & Kornblith 2021). By default the layers are
# each model's stage outputs followed by its penultimate embedding. A teacher against itself gives 1
# on the diagonal; a good student should show a bright diagonal too: its first stage like the
# teacher's first stage, and so on.

# %%
from workbench.analysis import cka_matrix
from workbench.viz import cka_heatmap

kd_student = kd.student.eval()
result = cka_matrix(teacher, kd_student, images, names=("teacher", "KD student"))
print("teacher layers:", result.teacher_layers)
print("student layers:", result.student_layers)
scratch_result = cka_matrix(teacher, scratch.student.eval(), images, names=("teacher", "scratch student"))
for name, r in (("KD", result), ("scratch", scratch_result)):
    diag = np.diag(r.matrix)
    print(f"{name:>8} student, matching layers: " + ", ".join(f"{v:.2f}" for v in diag))
cka_heatmap(result, title="Linear CKA · teacher vs KD student")

# %% [markdown]
# Early layers compute generic edge and stroke detectors, and any two MNIST networks agree there.
# The difference is in the deep layers: the distilled student's last stage and embedding line up
# more closely with the teacher's than the scratch student's do, because KD asks the student to
# reproduce the teacher's outputs, which are computed from exactly those layers. (At full size;
# fast mode trains too briefly to show it.)

# %% [markdown]
# ## The `SimilarityExplorer` panel
#
# The panel draws the CKA heatmap; its **epoch** slider switches between the student's per-epoch
# snapshots (`0` is the student you passed), **kernel** switches to RBF CKA, and **view** to a 2-D
# embedding of both models' penultimate features.

# %%
from workbench.widgets import SimilarityExplorer

stored = store.load(kd.run_id)
snapshots = {epoch: stored.load_model(name, device=device) for epoch, name in stored.epoch_checkpoints()}
print("snapshots:", sorted(snapshots))
similarity = SimilarityExplorer(teacher, kd_student, images, labels=labels, snapshots=snapshots,
                                kernel="linear", class_names=data.class_names)
display(similarity)

# %%
for epoch in sorted(snapshots):
    similarity.set(epoch=epoch)
    assert similarity.error is None, similarity.error
    print(f"epoch {epoch}: matching layers " + ", ".join(f"{v:.2f}" for v in np.diag(similarity.result.matrix)))
similarity.set(view="embedding")

# %% [markdown]
# ## Exercise 1 · Invariance to orthogonal transforms
#
# Build your own orthogonal matrix `R` of size `d × d` (hint: the `Q` factor of a QR decomposition of
# a random matrix, `torch.linalg.qr`), and set `cka_rotated` to the linear CKA between `X` and `X @ R`.

# %% exercise="1" points=2 tags=["exercise"]
### BEGIN SOLUTION
R, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
cka_rotated = linear_cka(X, X @ R)
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# R = torch.randn(d, d, dtype=torch.float64)
# cka_rotated = linear_cka(X, X @ R)

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _R = torch.as_tensor(R, dtype=torch.float64)
# assert tuple(_R.shape) == (d, d), f"R has shape {tuple(_R.shape)}, expected ({d}, {d})"
# assert torch.allclose(_R.T @ _R, torch.eye(d, dtype=torch.float64), atol=1e-8), "R is not orthogonal (RᵀR ≠ I)"
# assert abs(float(cka_rotated) - float(linear_cka(X, X @ _R))) < 1e-8, "cka_rotated is not the linear CKA of X and X @ R"
# assert abs(float(cka_rotated) - 1.0) < 1e-8, f"CKA(X, X R) = {float(cka_rotated):.4f}, expected 1"

# %%
R_ = torch.as_tensor(R, dtype=torch.float64)
orthogonal = R_.shape == (d, d) and torch.allclose(R_.T @ R_, torch.eye(d, dtype=torch.float64), atol=1e-8)
check(
    orthogonal and abs(float(cka_rotated) - 1.0) < 1e-8,
    right="R is orthogonal and CKA(X, X R) = 1: rotating the features changes no example's geometry.",
    wrong=f"R is {'orthogonal' if orthogonal else 'not orthogonal (RᵀR ≠ I)'} and CKA = {float(cka_rotated):.4f}; "
          "take the Q of torch.linalg.qr(torch.randn(d, d)).",
)

# %% [markdown]
# ## Exercise 2 · Which student layer matches the teacher's last stage?
#
# From `result` (the teacher vs KD-student CKA matrix: rows `result.teacher_layers`, columns
# `result.student_layers`), set `best_match` to the name of the student layer most similar to the
# teacher's last stage, `"features.2"`.

# %% exercise="2" points=1 tags=["exercise"]
### BEGIN SOLUTION
row = result.teacher_layers.index("features.2")
best_match = result.student_layers[int(np.argmax(result.matrix[row]))]
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# row = result.teacher_layers.index("features.2")
# best_match = result.student_layers[int(np.argmin(result.matrix[row]))]

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _row = np.asarray(result.matrix)[result.teacher_layers.index("features.2")]
# _want = result.student_layers[int(np.argmax(_row))]
# assert best_match == _want, f"best_match = {best_match!r}; the largest CKA of the teacher's 'features.2' row is {_want!r}"

# %%
row_values = result.matrix[result.teacher_layers.index("features.2")]
expected = result.student_layers[int(np.argmax(row_values))]
check(
    best_match == expected,
    right=f"{expected!r} (CKA {row_values.max():.2f}) lines up with the teacher's last stage.",
    wrong=f"{best_match!r} is not the largest entry of the teacher's 'features.2' row.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the KD student on the app's Feature similarity page. The app shows the runs
# of the store it serves, so start it on this lesson's run store (the command is under the link);
# `WORKBENCH_APP_URL` sets the app's address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(kd.run_id, store=store, page="similarity")

# %% [markdown]
# ## References
#
# * S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations
#   Revisited.* ICML 2019.
# * T. Nguyen, M. Raghu, S. Kornblith. *Do Wide and Deep Networks Learn the Same Things? Uncovering
#   How Neural Network Representations Vary with Width and Depth.* ICLR 2021 (minibatch CKA).
# * L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. *Feature Selection via Dependence
#   Maximization.* JMLR 13, 2012 (the unbiased HSIC estimator).
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
