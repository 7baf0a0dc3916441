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
#     lesson: 05_loss_landscapes
# ---

# %% [markdown]
# # Lesson 5 — Loss landscapes: is the distilled student in a flatter minimum?
#
# **Learning goals.** After this lesson you can
#
# 1. draw 1-D and 2-D slices of a student's loss around its trained weights along
#    filter-normalised random directions (Li et al. 2018), with the `LandscapeExplorer` panel;
# 2. measure sharpness with the Hessian: its top eigenvalue (power iteration) and its trace
#    (Hutchinson's estimator);
# 3. compare a distilled student with the same network trained from labels alone;
# 4. explain why these pictures and numbers can mislead: a rescaling that leaves the network's
#    function unchanged changes its sharpness (Dinh et al. 2017), and filter normalisation is
#    what makes slices of differently scaled networks comparable.
#
# About 3 minutes on a 2-core laptop CPU; with `WORKBENCH_FAST=1` every size shrinks and the
# lesson runs in seconds (the numbers are then rough).

# %% [markdown]
# ## Set-up
#
# The shipped MNIST teacher, the embedded MNIST subset, and a run store in a temporary folder.
# `x`, `y` are a fixed evaluation subset of the test split: every landscape and Hessian below is
# computed on it, so the numbers of the two students are comparable.

# %%
import dataclasses
import os
import tempfile

import torch
from IPython.display import display

from workbench.data import load_dataset
from workbench.lessons import check, fast, size
from workbench.runs import RunStore, load_shipped_teacher
from workbench.train import run
from workbench.validate import validate_run_config

torch.manual_seed(0)
# runs go to a fresh temporary workspace unless WORKBENCH_RUNS names one
WORKSPACE = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson5-")
store = RunStore(WORKSPACE)

mnist = load_dataset("mnist")  # the embedded 12,000 / 2,000 subset
# a smaller test split keeps every evaluation during training quick
data = dataclasses.replace(mnist, test=mnist.test.subset(range(size(1000, 300))))
teacher = load_shipped_teacher("mnist")  # cnn_large, 288k parameters, 99.35 % test accuracy

n_eval = size(256, 64)  # the fixed evaluation subset of the analyses below
x = data.normalize(data.test.images[:n_eval])
y = data.test.labels[:n_eval]


@torch.no_grad()
def accuracy(model, images=x, labels=y):
    """Top-1 accuracy of `model` (in eval mode) on `images`."""
    device = next(model.parameters()).device
    model.eval()
    return (model(images.to(device)).argmax(1).cpu() == labels).float().mean().item()


print("runs go to", WORKSPACE, "(fast mode: small sizes)" if fast() else "")


# %% [markdown]
# ## 1. Two students, one difference
#
# Both students are the same network, `cnn` with one convolution per stage (16-32-64 channels,
# 24k parameters), trained on the same data for the same number of steps from the same seed.
# The first learns from the labels only (cross-entropy); the second with knowledge distillation,
# `0.1·CE + 0.9·T²·KL(teacher_T ‖ student_T)` at `T = 4` (Hinton et al. 2015).

# %%
def config(name, methods="none", *, ce_weight=1.0, model="cnn", kwargs=None, teachers=("shipped:mnist",), seed=0):
    """A run config: `model` with `kwargs` (default: 16-32-64 channels, one convolution per stage)
    trained on a subset of MNIST, the same budget for every run."""
    kwargs = {"channels": [16, 32, 64], "convs_per_stage": 1} if kwargs is None else kwargs
    return validate_run_config({
        "name": name,
        "seed": seed,
        "data": {"dataset": "mnist", "batch_size": 64, "train_subset": size(3000, 512)},
        "model": {"name": model, "kwargs": dict(kwargs)},
        "teachers": [{"source": s} for s in teachers],
        "distill": {"methods": methods, "ce_weight": ce_weight},
        "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
        "train": {"epochs": 2, "max_steps": size(None, 16)},
    })


# %%
scratch = run(config("lesson5-scratch"), store=store, dataset=data)
kd = run(
    config("lesson5-kd", [{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}], ce_weight=0.1),
    store=store,
    dataset=data,
)
for name, r in [("scratch", scratch), ("kd", kd)]:
    print(f"{name:8s} test accuracy {r.summary['test_acc']:.3f}   agreement with the teacher {r.summary['agreement']:.3f}")

# %% [markdown]
# ## 2. The landscape around the distilled student
#
# A network has tens of thousands of weights, so its loss cannot be drawn as a function of all
# of them. Li et al. (2018) draw it on a plane through the trained weights `θ0`:
# `L(θ0 + α·d1 + β·d2)`, with `d1`, `d2` random Gaussian directions. Each *filter* of a direction
# (a conv output channel, a row of a linear layer) is rescaled to the norm of the matching filter
# of the weights — **filter normalisation** — so that a step `α = 1` changes every filter by
# about its own size. Biases and BatchNorm parameters are left out.
#
# The panel below computes in a background thread and fills the figure row by row. Press
# *Start*, or drive it from Python as the next cell does (it works the same without a browser).

# %%
from workbench.widgets import LandscapeExplorer

explorer = LandscapeExplorer(teacher, kd.student, x, y, mode="2d", steps=size(11, 5), span=1.0)
display(explorer)

# %%
explorer.start()  # the same as pressing "Start"
explorer.wait()
print("finished:", explorer.done, "| error:", explorer.error)
print("cross-entropy at the trained weights:", explorer.result.references["model"])

# %% [markdown]
# Every control is a keyword of `set`: switching to a 1-D slice of the accuracy recomputes at
# once, as changing the controls by hand would.

# %%
explorer.set(mode="1d", objective="accuracy", steps=size(21, 7))
explorer.wait()
print("finished:", explorer.done, "| error:", explorer.error)

# %% [markdown]
# ## 3. Scratch against distilled, slice against slice
#
# `landscape_1d` with the same `seed` draws the same Gaussian for both students (they share an
# architecture), filter-normalised to each student's own weights. A narrower valley around
# `α = 0` is a sharper minimum.

# %%
from workbench.analysis import hessian_top_eigenvalue, hessian_trace, landscape_1d
from workbench.viz import landscape_comparison

slices = {
    name: landscape_1d(teacher, r.student, x, y, objectives=["cross_entropy", "accuracy"],
                       steps=size(21, 7), span=(-1.0, 1.0), seed=0)
    for name, r in [("scratch", scratch), ("student", kd)]
}
landscape_comparison(slices, "cross_entropy", title="1-D slices: scratch vs distilled student")

# %% [markdown]
# ## 4. Sharpness in numbers: the Hessian
#
# The curvature of the loss at `θ0` is the Hessian `H = ∇²L(θ0)`. Two summaries:
#
# * the **top eigenvalue** `λ_max`, the curvature along the sharpest direction, found by power
#   iteration `v ← Hv / ‖Hv‖` on Hessian-vector products (double backpropagation; Pearlmutter 1994);
# * the **trace** `tr(H) = Σ λ_i`, the total curvature, estimated as the mean of `zᵀHz` over random
#   ±1 vectors `z` (Hutchinson 1989), reported with its standard error.
#
# Keskar et al. (2017) linked flat minima (small `λ_max`) with better generalisation, and
# distilled students often sit in flatter minima than students trained on labels. Read the
# numbers, not the slogan: with a few hundred samples and a short schedule they can go either way.

# %%
sharpness = {}
for name, r in [("scratch", scratch), ("kd", kd)]:
    top = hessian_top_eigenvalue(teacher, r.student, x, y, iters=size(20, 5), seed=0)
    trace = hessian_trace(teacher, r.student, x, y, n_probes=size(10, 2), seed=0)
    sharpness[name] = top.eigenvalue
    print(f"{name:8s} top eigenvalue {top.eigenvalue:9.3f} ({top.iterations} iterations)   "
          f"trace {trace.trace:10.2f} ± {trace.std_error:.2f}")
print(f"ratio kd / scratch: {sharpness['kd'] / sharpness['scratch']:.2f} "
      "(the doctor's sharpness rule fires at 1.5)")

# %% [markdown]
# ## 5. How these pictures and numbers mislead
#
# Every convolution of this network feeds a BatchNorm layer, which divides by the standard
# deviation of its input. Multiply a convolution's weights by `c` and scale the BatchNorm's
# running mean by `c` and its running variance (and `eps`) by `c²`: the network computes
# **exactly the same function**. Yet the curvature with respect to those weights changes by
# `1/c²`. Dinh et al. (2017) used such reparametrisations to show that "sharpness" measured in
# weight space is not a property of the function alone: any minimum can be made to look as
# sharp or as flat as one likes.

# %%
import copy

from torch import nn


def rescale_convs(model, c):
    """A copy of `model` that computes the same function with every conv weight multiplied by `c`."""
    out = copy.deepcopy(model)
    convs = [m for m in out.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in out.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for conv, bn in zip(convs, norms, strict=True):  # conv -> BatchNorm -> ReLU, stage by stage
            conv.weight.mul_(c)
            bn.running_mean.mul_(c)
            bn.running_var.mul_(c * c)
            bn.eps *= c * c
    return out


@torch.no_grad()
def same_predictions(a, b):
    """Share of the evaluation images on which `a` and `b` predict the same class."""
    return (a.eval()(x).argmax(1) == b.eval()(x).argmax(1)).float().mean().item()


bigger = rescale_convs(kd.student, 10.0)
print("same predictions:", same_predictions(kd.student, bigger))
top_bigger = hessian_top_eigenvalue(teacher, bigger, x, y, iters=size(20, 5), seed=0)
print(f"top eigenvalue: original {sharpness['kd']:.3f}, conv weights x10 {top_bigger.eigenvalue:.3f}")

# %% [markdown]
# The same function now looks much flatter. Slices along a direction *without* filter
# normalisation are fooled the same way: below, one raw Gaussian direction of a fixed total
# length is used for both networks. For the network with ten times larger conv weights the same
# step is relatively ten times smaller, so its valley looks wide.

# %%
from workbench.analysis import random_direction

fn = random_direction(kd.student, seed=0)  # filter-normalised to kd.student's weights
gen = torch.Generator().manual_seed(0)
raw = {k: torch.randn(v.shape, generator=gen) if v.ndim > 1 else torch.zeros_like(v) for k, v in fn.items()}
length = torch.sqrt(sum((v ** 2).sum() for v in fn.values()))
total = torch.sqrt(sum((v ** 2).sum() for v in raw.values()))
raw = {k: v * (length / total) for k, v in raw.items()}  # same total length, no per-filter scaling

raw_slices = {
    name: landscape_1d(teacher, net, x, y, direction=raw, steps=size(21, 7), span=(-1.0, 1.0))
    for name, net in [("original", kd.student), ("conv weights x10", bigger)]
}
landscape_comparison(raw_slices, "cross_entropy", title="Raw (not filter-normalised) direction")

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Choose the factor `c` for `rescale_convs` that makes the distilled student
# look at least ten times *sharper* by its top Hessian eigenvalue, without changing a single
# prediction.

# %% exercise="1" points=1 tags=["exercise"]
### BEGIN SOLUTION
c = 0.1
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# c = 10.0

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# # curvature in the conv weights scales as 1/c², so "ten times sharper" needs 0 < c <= 1/√10
# assert isinstance(c, (int, float)) and not isinstance(c, bool), f"c must be a number, got {type(c).__name__}"
# assert 0 < c <= 10 ** -0.5, f"c = {c}: a factor above 1/√10 ≈ 0.316 (or not positive) does not sharpen ten times"

# %%
sharper = rescale_convs(kd.student, c)
top_c = hessian_top_eigenvalue(teacher, sharper, x, y, iters=size(20, 5), seed=0).eigenvalue
print(f"same predictions: {same_predictions(kd.student, sharper):.3f}   top eigenvalue {top_c:.3f} "
      f"(original {sharpness['kd']:.3f})")
check(
    same_predictions(kd.student, sharper) == 1.0 and top_c >= 10 * sharpness["kd"],
    "conv weights c times smaller make the curvature about 1/c² larger: c = 0.1 gives about 100x.",
    "the curvature in those weights scales as 1/c²: a c above 1 flattens, a c below 1 sharpens.",
)

# %% [markdown]
# **Exercise 2.** Predict before you compute: with **filter-normalised** directions (the
# default of `landscape_1d`, same seed), does the 1-D cross-entropy slice of `bigger` (conv
# weights ×10) differ from the original student's? Set `slice_changes` to `True` or `False`.

# %% exercise="2" points=1 tags=["exercise"]
### BEGIN SOLUTION
slice_changes = False
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# slice_changes = True

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# assert slice_changes in (True, False), "set slice_changes to True or False"
# assert not slice_changes, "a filter-normalised direction scales with the weights, and BatchNorm undoes the scale"

# %%
import numpy as np

fn_slices = [landscape_1d(teacher, net, x, y, steps=size(11, 5), seed=0) for net in (kd.student, bigger)]
gap = float(np.max(np.abs(fn_slices[0].values["cross_entropy"] - fn_slices[1].values["cross_entropy"])))
print(f"largest difference between the two filter-normalised slices: {gap:.2e}")
check(
    slice_changes == (gap > 1e-3),
    "each filter of the direction scales with its weights, so θ0 + α·d is rescaled as a whole and "
    "BatchNorm undoes it: the slice is the same.",
    "the direction is filter-normalised: multiply the weights by 10 and the direction grows by 10 too.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the KD student on the app's Loss landscape page. The app shows the runs of
# the store it serves, so start it on this lesson's run store (the command is under the link);
# `WORKBENCH_APP_URL` sets the app's address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(kd.run_id, store=store, page="landscape")

# %% [markdown]
# ## References
#
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
#   Deep Learning Workshop, 2015.
# * H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein. *Visualizing the Loss Landscape of Neural
#   Nets.* NeurIPS 2018.
# * L. Dinh, R. Pascanu, S. Bengio, Y. Bengio. *Sharp Minima Can Generalize For Deep Nets.*
#   ICML 2017.
# * N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy, P. T. P. Tang. *On Large-Batch
#   Training for Deep Learning: Generalization Gap and Sharp Minima.* ICLR 2017.
# * B. A. Pearlmutter. *Fast Exact Multiplication by the Hessian.* Neural Computation, 1994.
# * M. F. Hutchinson. *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian
#   Smoothing Splines.* Communications in Statistics, 1989.
