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
#     lesson: 07_learning_without_a_big_teacher
# ---

# %% [markdown]
# # Lesson 7 — Learning without a big teacher
#
# **Learning goals.** After this lesson you can
#
# 1. train a cohort of small networks that teach each other — **deep mutual learning** (DML,
#    Zhang et al. 2018);
# 2. train **born-again networks**: generations of one architecture, each taught by the last
#    (Furlanello et al. 2018), and ensemble the generations;
# 3. distil a student from a **momentum teacher**, an exponential moving average of its own
#    weights (Mean Teacher, Tarvainen & Valpola 2017);
# 4. compare the runs side by side with the `CompareRuns` panel.
#
# None of these needs a large pre-trained teacher. About 3 minutes on a 2-core laptop CPU;
# seconds with `WORKBENCH_FAST=1`.

# %% [markdown]
# ## Set-up

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
WORKSPACE = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson7-")
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
# Every run below trains the same small network, a `cnn` with one convolution per stage
# (16-32-64 channels, 24k parameters), for the same budget. The baseline learns from the
# labels alone; no run below uses the shipped teacher.

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
scratch = run(config("lesson7-scratch", teachers=()), store=store, dataset=data)
print(f"scratch: test accuracy {scratch.summary['test_acc']:.3f}")

# %% [markdown]
# ## 1. Deep mutual learning
#
# DML trains a cohort side by side. Each network minimises its cross-entropy plus the KL
# divergence from each other member's predictions, `CE(y, p_1) + KL(p_2 ‖ p_1)`, the other's
# outputs taken as fixed targets. Neither network is a teacher; each one's mistakes are, on
# average, not the other's, and the soft targets carry the same kind of dark knowledge a teacher
# would. Here the cohort is the student and one peer (`peers=1`), so a step costs about twice as much.

# %%
DML = [{"name": "dml", "params": {"peers": 1, "temperature": 1.0}}]
dml = run(config("lesson7-dml", DML, teachers=()), store=store, dataset=data)
peer = dml.method.peers()[0]
print(f"DML student {accuracy(dml.student):.3f}   its peer {accuracy(peer):.3f}   scratch {accuracy(scratch.student):.3f}")

# %% [markdown]
# ## 2. Born-again networks
#
# Furlanello et al. (2018) train a network from labels, then train a fresh network of the *same*
# architecture to match it (`T = 1`, with cross-entropy), then a third to match the second, and
# so on. Students often overtake their teachers, and the generations ensemble well. The chain's
# first teacher is the scratch run above (`run:<id>`); each generation is a run of its own.

# %%
BAN = [{"name": "ban", "params": {"generations": size(3, 2), "temperature": 1.0}}]
ban = run(config("lesson7-ban", BAN, teachers=(f"run:{scratch.run_id}",)), store=store, dataset=data)
generations = [store.load(i).load_model("final") for i in ban.link_ids]
print(f"generation 0 (scratch) {accuracy(scratch.student):.3f}")
for k, net in enumerate(generations, 1):
    print(f"generation {k}            {accuracy(net):.3f}")

# %% [markdown]
# ## 3. A momentum teacher
#
# Tarvainen & Valpola (2017) keep a second copy of the student whose weights follow the
# student's by an exponential moving average after every optimiser step,
# `θ_teacher ← a·θ_teacher + (1 − a)·θ_student`, and train the student to match that teacher's
# outputs. The average smooths the noise of single SGD steps: the mean teacher is often more
# accurate than the student it averages. With `a = 0.99` the teacher averages over roughly the
# last `1 / (1 − a) = 100` steps (the workbench also warms the decay up, `a = min(1 − 1/(n+1), momentum)`
# at the `n`-th update, as the reference code does).

# %%
EMA = [{"name": "ema", "params": {"momentum": 0.99, "temperature": 4.0}}]
ema = run(config("lesson7-ema", EMA, teachers=()), store=store, dataset=data)
mean_teacher = ema.method.teacher_models()[0]
print(f"EMA student {accuracy(ema.student):.3f}   its mean teacher {accuracy(mean_teacher):.3f}")

# %% [markdown]
# ## 4. All runs side by side
#
# The `CompareRuns` panel overlays one metric of several stored runs over epochs and lists their
# summaries. Pick runs and a metric in the panel, or set them from Python.

# %%
from workbench.widgets import CompareRuns

compare = CompareRuns([scratch.run_id, dml.run_id, *ban.link_ids, ema.run_id], store=store, group=False)
display(compare)

# %%
compare.set(metric="train_loss")
print("error:", compare.error)
for row in compare.table:
    print(f"{row['name']:22s} {row['method']:5s} test accuracy {row['test_acc']:.3f}")


# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Write the momentum teacher's update for one tensor: `ema_update(teacher_w,
# student_w, a)` returns the teacher's new weights after one step with decay `a`. Then set
# `horizon` to the number of recent steps a teacher with `a = 0.999` effectively averages over.

# %% exercise="1" points=1 tags=["exercise"]
def ema_update(teacher_w, student_w, a):
    ### BEGIN SOLUTION
    return a * teacher_w + (1 - a) * student_w
    ### END SOLUTION


### BEGIN SOLUTION
horizon = 1 / (1 - 0.999)
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# def ema_update(teacher_w, student_w, a):
#     return (1 - a) * teacher_w + a * student_w
#
# horizon = 1 / (1 - 0.999)

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _g = torch.Generator().manual_seed(3)
# _t, _s = torch.randn(6, generator=_g), torch.randn(6, generator=_g)
# for _a in (0.25, 0.99):
#     assert torch.allclose(ema_update(_t, _s, _a), _a * _t + (1 - _a) * _s), f"ema_update(t, s, {_a}) is not {_a}·t + {1 - _a:g}·s"
# assert abs(float(horizon) - 1000) < 1e-6, f"horizon = {horizon}; a = 0.999 averages over 1 / (1 - a) = 1000 steps"

# %%
t_w, s_w = torch.randn(5, generator=torch.Generator().manual_seed(1)), torch.randn(5)
reference = torch.lerp(t_w, s_w, 1 - 0.9)  # what the workbench's EMA teacher does (Tensor.lerp_)
check(
    torch.allclose(ema_update(t_w, s_w, 0.9), reference) and abs(horizon - 1000) < 1e-6,
    "the teacher keeps a share a of itself and takes 1 - a of the student; a = 0.999 averages ~1000 steps.",
    "the decay a weighs the teacher's own weights, 1 - a the student's (and 1 / (1 - a) steps).",
)

# %% [markdown]
# **Exercise 2.** Ensemble the born-again generations: set `ensemble_probs` to the mean of the
# generations' *softmax probabilities* on `x` (a tensor of shape `(n_eval, 10)`), as
# Furlanello et al. do for their ensembles. (Each network in `generations` runs on the device it
# was loaded on; `x` is on the CPU.)

# %% exercise="2" points=2 tags=["exercise"]
### BEGIN SOLUTION
with torch.no_grad():
    ensemble_probs = torch.stack(
        [torch.softmax(net.eval()(x.to(next(net.parameters()).device)).cpu(), dim=1) for net in generations]
    ).mean(0)
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# with torch.no_grad():
#     ensemble_probs = torch.softmax(
#         torch.stack([net.eval()(x.to(next(net.parameters()).device)).cpu() for net in generations]).mean(0), dim=1
#     )

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# with torch.no_grad():
#     _want = sum(torch.softmax(_n.eval()(x.to(next(_n.parameters()).device)).cpu(), dim=1) for _n in generations)
# _want = _want / len(generations)
# _mine = torch.as_tensor(ensemble_probs).cpu()
# assert tuple(_mine.shape) == tuple(_want.shape), f"ensemble_probs has shape {tuple(_mine.shape)}, expected {tuple(_want.shape)}"
# assert torch.allclose(_mine.sum(1), torch.ones(len(_mine)), atol=1e-5), "each row of ensemble_probs must sum to 1"
# assert torch.allclose(_mine, _want, atol=1e-6), "ensemble_probs is not the mean of the generations' probabilities"

# %%
with torch.no_grad():
    probs = [torch.softmax(net.eval()(x.to(next(net.parameters()).device)).cpu(), dim=1) for net in generations]
expected = sum(probs) / len(probs)
ensemble_acc = (ensemble_probs.argmax(1) == y).float().mean().item()
print(f"ensemble of {len(generations)} generations: accuracy {ensemble_acc:.3f}; "
      f"best single generation {max(accuracy(net) for net in generations):.3f}")
check(
    tuple(ensemble_probs.shape) == tuple(expected.shape) and torch.allclose(ensemble_probs, expected, atol=1e-6),
    "the mean of the probabilities: each generation votes with its whole distribution.",
    "average the probabilities (softmax of each network), not the logits.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the app's Compare page with this lesson's runs picked. The app shows the runs
# of the store it serves, so start it on this lesson's run store (the command is under the link);
# `WORKBENCH_APP_URL` sets the app's address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(ema.run_id, store=store, page="compare",
                  runs=[scratch.run_id, dml.run_id, *ban.link_ids, ema.run_id])

# %% [markdown]
# ## References
#
# * Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu. *Deep Mutual Learning.* CVPR 2018.
# * T. Furlanello, Z. C. Lipton, M. Tschannen, L. Itti, A. Anandkumar. *Born-Again Neural
#   Networks.* ICML 2018.
# * A. Tarvainen, H. Valpola. *Mean Teachers Are Better Role Models: Weight-Averaged Consistency
#   Targets Improve Semi-Supervised Deep Learning Results.* NeurIPS 2017.
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
#   Deep Learning Workshop, 2015.
