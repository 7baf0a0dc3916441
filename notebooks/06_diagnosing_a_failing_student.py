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
#     lesson: 06_diagnosing_a_failing_student
# ---

# %% [markdown]
# # Lesson 6 — Diagnosing a failing student
#
# **Learning goals.** After this lesson you can
#
# 1. recognise a **capacity gap**: a student too small to follow its teacher, and try a
#    **teacher assistant** between them (TAKD, Mirzadeh et al. 2020; Cho & Hariharan 2019);
# 2. spot a **mis-set temperature** the way the doctor does: from the entropy of the teacher's soft
#    labels, and not from the ratio of the logged loss terms (large by design);
# 3. find the samples the teacher finds easy and the student hard (**relative difficulty**, the
#    signal Relative Difficulty Distillation weights by);
# 4. run the **student doctor** (`workbench.diagnosis.diagnose` and the `DoctorPanel` panel) and
#    read its ranked findings, their evidence and the thresholds behind them.
#
# About 3 minutes on a 2-core laptop CPU; seconds with `WORKBENCH_FAST=1`.

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
WORKSPACE = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson6-")
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
# ## 1. A student far smaller than its teacher
#
# The teacher has 288k parameters; the student below, a `cnn` with 4-8-16 channels, has about
# 5k — sixty times fewer. Cho & Hariharan (2019) found that a larger, more accurate teacher does
# not always teach a small student better: the student cannot reproduce the teacher's function,
# and the soft targets it is asked to match are beyond its reach. Mirzadeh et al. (2020) put a
# **teacher assistant** of intermediate size between the two: the teacher distils into the
# assistant, the assistant into the student (`takd`, a chain of two runs here).
#
# Three runs of the same tiny student with the same budget: from labels only, KD straight from
# the teacher, and KD through a `cnn_small` assistant (72k parameters).

# %%
def config(name, methods="none", *, ce_weight=1.0, model="cnn", kwargs=None, teachers=("shipped:mnist",), seed=0):
    """A run config: `model` with `kwargs` (default: 4-8-16 channels) trained on a subset of MNIST,
    the same budget for every run."""
    kwargs = {"channels": [4, 8, 16]} if kwargs is None else kwargs
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
KD = [{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}]
TAKD = [{"name": "takd", "weight": 0.9, "params": {"temperature": 4.0, "assistants": [{"model": "cnn_small"}]}}]

scratch = run(config("lesson6-scratch"), store=store, dataset=data)
direct = run(config("lesson6-kd", KD, ce_weight=0.1), store=store, dataset=data)
chain = run(config("lesson6-takd", TAKD, ce_weight=0.1), store=store, dataset=data)  # assistant, then student
assistant = store.load(chain.link_ids[0])

print(f"teacher               test accuracy {accuracy(teacher):.3f}")
print(f"assistant (cnn_small) test accuracy {assistant.summary()['test_acc']:.3f}")
for name, r in [("scratch", scratch), ("KD from the teacher", direct), ("KD via the assistant", chain)]:
    print(f"{name:21s} test accuracy {r.summary['test_acc']:.3f}   agreement with its teacher {r.summary['agreement']:.3f}")

# %% [markdown]
# Compare the two distilled students. With this short budget the difference between them can be
# smaller than the spread between seeds; TAKD's gains in the paper come from long schedules on
# CIFAR. What the chain reliably changes is *whom* the student agrees with: its teacher is now
# the assistant, a function it can follow more closely.
#
# ## 2. The doctor
#
# The student doctor runs the workbench's analyses on a student and its teacher (agreement,
# calibration, the entropy of the soft labels, the distillation term's share of the gradient, CKA
# of matched layers, ...), reads what the run recorded (its config, history and status) and
# applies explicit rules to the numbers (see `docs/doctor.md`). Each finding has a severity, the
# evidence, an explanation, the next experiment to try, and a view that shows it. The panel
# computes in the background; `wait()` blocks until the report is ready.

# %%
from workbench.widgets import DoctorPanel

doctor = DoctorPanel(direct.run_id, store=store, n_samples=size(500, 100))
display(doctor)

# %%
report = doctor.wait()
print("error:", doctor.error)
print(report.to_text())

# %% [markdown]
# Choosing a finding in the panel draws the view that holds its evidence (`doctor.detail`). From
# Python, set the `finding` control to its index:

# %%
if doctor.findings:
    doctor.set(finding=0)
    display(doctor.detail)
else:
    print("no finding fired")

# %% [markdown]
# ## 3. A mis-set temperature
#
# The student below is distilled at `T = 20` with the usual weights `0.1·CE + 0.9·KD`. How does
# the run show that the temperature is wrong?
#
# *Not* in the logged loss terms. The run logs each term as it enters the objective: `loss/ce`
# (0.1·CE) and `loss/kd` (0.9·T²·KL). Their ratio is large in every healthy distilled run too:
# with this recipe at `T = 4` it is about 60× by design, because the factor `T²` keeps the soft
# term's gradient at the scale of the hard one (Hinton et al. 2015) and CE falls faster than KL as
# the student fits the labels. A large ratio says nothing about the temperature, so the doctor
# deliberately does not read it. It reads:
#
# * **the KD weight** (`kd_weight`, from the config): at 5 or more the distillation term scales
#   the step size (rule `kd_dominates`);
# * **the KD term's share of the gradient** on the student's logits (`kd_share`):
#   `w·T·|softmax(z_s/T) − softmax(z_t/T)|` (the gradient of `w·T²·KL`) over that plus
#   `w_ce·|softmax(z_s) − y|`; at 0.15 or less the teacher hardly teaches (rule `kd_vanishes`);
# * **the entropy of the teacher's soft labels** (`teacher_soft_entropy`): the entropy of
#   `softmax(z_t/T)` divided by `log K` (0 is one-hot, 1 is uniform), averaged over the test
#   images. At 0.1 or less the temperature is too low (rule `temperature_low`): the soft labels
#   are nearly one-hot and carry no more than the labels. At 0.9 or more it is too high (rule
#   `temperature_high`): the soft labels are nearly uniform, and which class is right is barely
#   in them.
#
# The cell below trains the `T = 20` student, diagnoses it, and prints for both students, at
# `T = 4` (section 1) and at `T = 20`, the logged ratio next to the three numbers the doctor reads.

# %%
from workbench.diagnosis import diagnose
from workbench.viz import softness_histogram

HOT = [{"name": "kd", "weight": 0.9, "params": {"temperature": 20.0}}]
hot = run(config("lesson6-hot", HOT, ce_weight=0.1), store=store, dataset=data)
hot_report = diagnose(hot.run_id, store=store, n_samples=size(500, 100))
for T, r, diagnosis in [(4, direct, report), (20, hot, hot_report)]:
    last = store.load(r.run_id).metrics["epochs"][-1]
    ev = diagnosis.evidence
    print(
        f"T = {T:>2}: test accuracy {r.summary['test_acc']:.3f} | logged loss/kd ÷ loss/ce = "
        f"{last['loss/kd'] / last['loss/ce']:5.1f} | kd_weight {ev['kd_weight']:g}, "
        f"kd_share {ev['kd_share']:.2f}, teacher soft-label entropy {ev['teacher_soft_entropy']:.2f}"
    )
print()
print(hot_report.to_text())
softness_histogram(hot_report.results["softness"], title="Soft-label entropy at T = 20")

# %% [markdown]
# The logged ratio is large at both temperatures (in our runs about 60× at `T = 4` and *smaller*,
# about 45×, at `T = 20`): it cannot point at the temperature. The weight is 0.9 in both runs, and
# the distillation term carries most of the gradient in both (the `T²` factor at work), so neither
# `kd_dominates` nor `kd_vanishes` fires. What separates the runs is the soft-label entropy: about
# 0.6 at `T = 4`, close to 1 at `T = 20`, past the doctor's threshold of 0.9, so
# `temperature_high` fires, with `T = 4` as its experiment. The histogram above is that finding's
# view: the teacher's entropies pile up near 1. (Both reports also name the capacity gap of
# section 1: this student is far smaller than its teacher.)

# %% [markdown]
# ## 4. Relative difficulty: easy for the teacher, hard for the student
#
# Per sample, the *difficulty* of a model is `1 − p(y | x)`: 0 when it is certain and right,
# 1 when it puts no mass on the true class. The *relative difficulty* is the student's minus the
# teacher's. Relative Difficulty Distillation (RDD, Liang et al. 2024) weights each sample's
# distillation term by such a difficulty, so that the student spends its effort where it lags
# the teacher. `difficulty_report` computes both difficulties; the shaded corner of the scatter
# holds the samples that are easy for the teacher (difficulty ≤ 0.2) and hard for the student
# (≥ 0.5). The workbench's `rdd` method trains with these weights; `docs/methods.md` measures
# why its default weighting can concentrate on a handful of samples.

# %%
from workbench.analysis import difficulty_report
from workbench.viz import difficulty_scatter

difficulty = difficulty_report(teacher, direct.student, x, y, class_names=data.class_names)
print(f"{len(difficulty.selected)} of {difficulty.n_samples} samples are easy for the teacher and hard for the student")
difficulty_scatter(difficulty)

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** From the per-sample arrays `difficulty.teacher_difficulty` and
# `difficulty.student_difficulty` (NumPy), count the samples that are easy for the teacher
# (difficulty at most `0.2`) and hard for the student (at least `0.5`). Store the count in `n_gap`.

# %% exercise="1" points=1 tags=["exercise"]
### BEGIN SOLUTION
n_gap = int(((difficulty.teacher_difficulty <= 0.2) & (difficulty.student_difficulty >= 0.5)).sum())
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# n_gap = int((difficulty.student_difficulty - difficulty.teacher_difficulty > 0).sum())

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _want = int(((difficulty.teacher_difficulty <= 0.2) & (difficulty.student_difficulty >= 0.5)).sum())
# assert n_gap == _want, f"n_gap = {n_gap}; {_want} samples have teacher difficulty <= 0.2 and student difficulty >= 0.5"

# %%
print("n_gap =", n_gap)
check(
    n_gap == len(difficulty.selected),
    f"{n_gap} samples: the shaded corner of the scatter.",
    "both conditions must hold: teacher difficulty <= 0.2 and student difficulty >= 0.5.",
)

# %% [markdown]
# **Exercise 2.** The doctor's temperature rules read the entropy of the teacher's soft labels.
# Compute it yourself for the `T = 20` run on the evaluation images `x`: the entropy of
# `softmax(teacher(x) / T)` for each image, divided by `log K` (`K = 10` classes) so that 0 is
# one-hot and 1 is uniform, averaged over the images. Store the number in `entropy`.

# %% exercise="2" points=2 tags=["exercise"]
import math

T = 20.0
### BEGIN SOLUTION
with torch.no_grad():
    log_p = torch.log_softmax(teacher(x) / T, dim=1)
entropy = float((-(log_p.exp() * log_p).sum(dim=1) / math.log(10)).mean())
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# import math
#
# with torch.no_grad():
#     log_p = torch.log_softmax(teacher(x), dim=1)
# entropy = float((-(log_p.exp() * log_p).sum(dim=1) / math.log(10)).mean())

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# from workbench.analysis.doctor import softness_from_logits as _softness
#
# with torch.no_grad():
#     _logits = teacher(x)
# _want = float(_softness(_logits, _logits, 20.0).teacher_mean)
# assert abs(float(entropy) - _want) < 1e-4, f"entropy = {float(entropy):.4f}; the mean normalised entropy at T = 20 is {_want:.4f}"

# %%
from workbench.analysis.doctor import DoctorThresholds, softness_from_logits

with torch.no_grad():
    teacher_logits = teacher(x)
reference = softness_from_logits(teacher_logits, teacher_logits, 20.0).teacher_mean
soft_high = DoctorThresholds().soft_high
print(f"entropy = {entropy:.3f}")
check(
    abs(entropy - reference) < 1e-4,
    f"{entropy:.2f}, {'at or above' if entropy >= soft_high else 'below'} the doctor's soft_high = {soft_high:g}: "
    "this is the number behind `temperature_high`.",
    "divide the logits by T = 20 before the softmax, and the entropy by log 10.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the KD student (straight from the teacher) on the app's Student doctor page,
# with the scratch run as its baseline. The app shows the runs of the store it serves, so start it
# on this lesson's run store (the command is under the link); `WORKBENCH_APP_URL` sets the app's
# address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(direct.run_id, store=store, page="doctor", scratch=scratch.run_id)

# %% [markdown]
# ## References
#
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
#   Deep Learning Workshop, 2015.
# * J. H. Cho, B. Hariharan. *On the Efficacy of Knowledge Distillation.* ICCV 2019.
# * S. I. Mirzadeh, M. Farajtabar, A. Li, N. Levine, A. Matsukawa, H. Ghasemzadeh. *Improved
#   Knowledge Distillation via Teacher Assistant.* AAAI 2020.
# * D. Liang, Y. Sun, Y. Du, S. Chen, S.-J. Huang. *Relative Difficulty Distillation for Semantic
#   Segmentation.* 2024.
# * C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger. *On Calibration of Modern Neural Networks.*
#   ICML 2017.
# * S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations
#   Revisited.* ICML 2019.
