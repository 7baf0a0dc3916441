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
#     lesson: 02_tour_of_methods
# ---

# %% [markdown]
# # Lesson 2 · A tour of distillation methods
#
# Hinton's KD matches the teacher's output probabilities. Since then, methods have attached the
# distillation loss to three different places of the two networks:
#
# | family | what is matched | methods in this lesson |
# |---|---|---|
# | **logits** | the outputs, softened | KD (Hinton et al. 2015), DKD (Zhao et al. 2022), DIST (Huang et al. 2022) |
# | **features** | intermediate feature maps | FitNets (Romero et al. 2015), AT (Zagoruyko & Komodakis 2017), CAT-KD (Guo et al. 2023) |
# | **relations** | how samples relate to each other | RKD (Park et al. 2019), SP (Tung & Mori 2019), PKT (Passalis & Tefas 2018) |
#
# **Learning goals.** After this lesson you can
#
# 1. name the three families and say what each one matches;
# 2. write a run config for any method, with its hyper-parameters and layers;
# 3. train the same student under each method and compare them fairly (same seed, data, budget);
# 4. run a small sweep with `workbench.sweep` and compare runs in the `CompareRuns` panel.

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
workspace = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson02-")
store = RunStore(workspace)
print(f"device: {device} · runs go to {workspace} · fast mode: {fast()}")

# %% [markdown]
# ## Data, teacher, student
#
# Fashion-MNIST (embedded subset), the shipped `cnn_large` teacher (about 91 % accurate), and a small
# student: `cnn` with one convolution per stage (channels 16-32-64, 24k parameters), the student of
# the project's methods table (`docs/methods.md`). Every method below gets the same student, seed,
# training images and number of steps.

# %%
import dataclasses

from workbench.data import load_dataset
from workbench.runs import load_shipped_teacher
from workbench.train import run
from workbench.validate import validate_run_config

N_TRAIN = size(2000, 256)
N_TEST = size(500, 256)
EPOCHS = size(3, 1)
MAX_STEPS = size(None, 4)

data = load_dataset("fashion-mnist")
small = dataclasses.replace(
    data, train=data.train.subset(torch.arange(N_TRAIN)), test=data.test.subset(torch.arange(N_TEST))
)
teacher = load_shipped_teacher("fashion-mnist", device)
STUDENT = {"name": "cnn", "kwargs": {"channels": [16, 32, 64], "convs_per_stage": 1}}


def method_config(name, methods, ce_weight=1.0):
    """A run config: the shared student, data and optimiser, with the given distillation methods."""
    return validate_run_config({
        "name": name,
        "seed": 0,
        "data": {"dataset": "fashion-mnist", "batch_size": 64},
        "model": STUDENT,
        "teachers": [] if methods == "none" else [{"source": "shipped:fashion-mnist"}],
        "distill": {"methods": methods, "ce_weight": ce_weight},
        "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
        "schedule": {"name": "cosine", "warmup_epochs": 0.2},
        "train": {"epochs": EPOCHS, "max_steps": MAX_STEPS},
    })


results = {}


def train_method(name, methods, ce_weight=1.0):
    """Train one student into this lesson's run store and print its test accuracy and agreement."""
    result = run(method_config(name, methods, ce_weight), store=store, dataset=small, teachers=[teacher])
    results[name] = result
    s = result.summary
    agree = f"{s['agreement']:.2%}" if "agreement" in s else "-"
    print(f"{name:>8}: test accuracy {s['test_acc']:.2%}, agreement with the teacher {agree}")
    return result


train_method("none", "none")

# %% [markdown]
# ## 1 · Logit methods
#
# * **KD** matches $\mathrm{softmax}(z/T)$ of teacher and student with a KL divergence.
# * **DKD** (Decoupled KD) splits KD into a *target-class* term (TCKD: how confident on the true
#   class) and a *non-target* term (NCKD: how the remaining mass is spread) and weights them
#   separately, $\alpha \cdot \mathrm{TCKD} + \beta \cdot \mathrm{NCKD}$; the paper finds NCKD (the
#   dark knowledge) is the part that matters and is suppressed by KD's coupling.
# * **DIST** drops the exact match of probabilities and asks only for the same *ranking*: it
#   maximises the Pearson correlation between teacher and student probabilities per sample
#   (inter-class) and per class over the batch (intra-class).
#
# A method is named in `distill.methods`, either as an expression (`"0.9*kd"`) or as a list with
# hyper-parameters. DKD warms its loss up over `warmup` epochs (20 in the paper); for these short
# runs we use one.

# %%
train_method("kd", "0.9*kd", ce_weight=0.1)
train_method("dkd", [{"name": "dkd", "params": {"warmup": 1.0}}])
train_method("dist", [{"name": "dist", "params": {"temperature": 4.0, "beta": 2.0, "gamma": 2.0}}])

# %% [markdown]
# ## 2 · Feature methods
#
# These match what happens *inside* the networks, at module paths of both models. Our conv nets
# name their stages `features.0`, `features.1`, `features.2`; the teacher's stages are twice as wide
# (32-64-128 channels against 16-32-64) and twice as deep, so a method either learns a
# **connector** or compares something that does not depend on the width:
#
# * **FitNets** picks one student layer (the *hint*) and one teacher layer, maps the student's
#   feature through a learned 1×1-conv connector, and minimises the mean squared error.
# * **AT** (attention transfer) reduces each feature map to a spatial *attention map*,
#   $a(f) = \mathrm{normalize}\big(\tfrac{1}{C}\sum_c f_c^2\big)$, which has no channel dimension,
#   and matches those, stage by stage.
# * **CAT-KD** transfers *class activation maps*: the last feature map weighted by each class's
#   classifier weights, pooled to a tiny grid (2×2), i.e. *where* the evidence for each class is.
#
# By default each method picks its layers (FitNets: the middle stages, AT: every stage pair); the
# `student_layers` / `teacher_layers` parameters choose them explicitly, as for FitNets below.

# %%
from workbench.models.taps import list_layers

print("student stages:", [i.path for i in list_layers(results["none"].student, (1, 28, 28))
                          if i.path.count(".") == 1 and i.path.startswith("features")])
train_method("fitnet", [{"name": "fitnet",
                         "params": {"student_layers": ["features.1"], "teacher_layers": ["features.1"]}}])
train_method("at", "at")
train_method("cat_kd", "cat_kd")

# %% [markdown]
# ## 3 · Relation methods
#
# Instead of matching what each sample looks like to the two networks, these match how samples
# relate *to each other* within a batch, usually at the penultimate embedding. Relations are
# $B \times B$ objects, so the widths of the two networks never need to agree.
#
# * **RKD** matches the pairwise *distances* (normalised by their mean) and the *angles* formed by
#   triplets of embeddings.
# * **SP** (similarity-preserving) matches the row-normalised Gram matrices $G = F F^\top$ of a batch.
# * **PKT** turns cosine similarities into conditional probability distributions over the batch
#   and matches them with a KL divergence.

# %%
train_method("rkd", "rkd")
train_method("sp", "sp")
train_method("pkt", "pkt")

# %% [markdown]
# ## Comparing the runs
#
# Every run above went to this lesson's run store, so the `CompareRuns` panel can lay them side by
# side: test accuracy (or any logged metric) over epochs, and a table of their summaries. Pick runs
# and a metric in the panel; here we set them from Python. One or two short epochs are far from the
# papers' 200-epoch setting, so read the ordering with care (see `docs/methods.md` for a longer,
# seed-averaged table).

# %%
from workbench.widgets import CompareRuns

ids = {name: r.run_id for name, r in results.items()}
compare = CompareRuns(list(ids.values()), store=store, metric="test_acc", group=False)  # one curve per run
display(compare)

# %%
compare.set(metric="agreement")
assert compare.error is None, compare.error
for row in sorted(compare.table, key=lambda r: -(r.get("test_acc") or 0.0)):
    name = next(n for n, i in ids.items() if i == row["id"])
    print(f"{name:>8}: test accuracy {row['test_acc']:.2%}")

# %% [markdown]
# ## A small sweep
#
# A **sweep** trains a grid of configs × seeds. Each trial is an ordinary run in the store, named by
# a hash of its config, so an interrupted sweep resumes where it stopped. Here the grid is the KD
# temperature: the grid key `distill.methods` takes a whole method list per trial. The same sweep
# can be written as a YAML file and run with `workbench sweep FILE` (optionally on Ray).
#
# The sweep's runs read their data from the config alone, so they train on `data.train_subset` of
# the training images and are evaluated on the whole 2,000-image test subset.

# %%
from workbench.sweep import SweepSpec, run_sweep, summarize

base = method_config("kd-T", "0.9*kd", ce_weight=0.1).model_dump(mode="json")
base["data"]["train_subset"] = N_TRAIN
spec = SweepSpec(
    name="kd-temperature",
    config=base,
    grid={"distill.methods": [
        [{"name": "kd", "weight": 0.9, "params": {"temperature": T}}] for T in (1.0, 4.0)
    ]},
    seeds=[0],
)
outcomes = run_sweep(spec, store=store)
rows = summarize(outcomes)
for row, o in zip(rows, outcomes, strict=True):
    T = o.trial.config.distill.methods[0].params["temperature"]
    print(f"T = {T:>3}: test accuracy {row['test_acc_mean']:.2%}, agreement {row['agreement_mean']:.2%}")
compare.set(runs=[o.run_id for o in outcomes] + [ids["kd"]], metric="test_acc")


# %% [markdown]
# ## Exercise 1 · Attention maps
#
# Write AT's attention map as a function `attention_map(f)` of a feature batch `f` of shape
# $(B, C, H, W)$: average the squared activations over the channels, flatten each sample's
# $H \times W$ map to a vector, and L2-normalise it (`torch.nn.functional.normalize(..., dim=1)`).
# The check compares $\mathrm{mean}\big((a(f_s) - a(f_t))^2\big)$ with the library's `at_loss`.

# %% exercise="1" points=2 tags=["exercise"]
def attention_map(f):
    ### BEGIN SOLUTION
    return torch.nn.functional.normalize(f.pow(2).mean(dim=1).flatten(1), dim=1)
    ### END SOLUTION


# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# def attention_map(f):
#     return f.pow(2).mean(dim=1).flatten(1)

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# from workbench.distill.functional import at_loss as _at_loss
#
# _g = torch.Generator().manual_seed(7)
# _fs, _ft = torch.randn(4, 8, 5, 5, generator=_g), torch.randn(4, 32, 5, 5, generator=_g)
# _a = attention_map(_fs)
# assert tuple(_a.shape) == (4, 25), f"attention_map of (4, 8, 5, 5) features has shape {tuple(_a.shape)}, expected (4, 25)"
# assert torch.allclose(_a.norm(dim=1), torch.ones(4), atol=1e-5), "each attention map must have unit L2 norm"
# assert torch.allclose((attention_map(_fs) - attention_map(_ft)).pow(2).mean(), _at_loss(_fs, _ft), rtol=1e-5, atol=1e-8), (
#     "the attention maps of an 8-channel student and a 32-channel teacher do not give AT's loss"
# )

# %%
from workbench.distill.functional import at_loss

g = torch.Generator().manual_seed(0)
f_s, f_t = torch.randn(8, 16, 7, 7, generator=g), torch.randn(8, 64, 7, 7, generator=g)
mine = (attention_map(f_s) - attention_map(f_t)).pow(2).mean()
check(
    torch.allclose(mine, at_loss(f_s, f_t), rtol=1e-5, atol=1e-8),
    right="your attention maps give AT's loss, for a 16-channel student and a 64-channel teacher alike.",
    wrong="not AT's loss yet: square, average over channels (dim 1), flatten, then L2-normalise each row.",
)

# %% [markdown]
# ## Exercise 2 · Which family?
#
# Set `family` to a dict mapping each method name to `"logits"`, `"features"` or `"relations"`, by
# what its loss compares.

# %% exercise="2" points=1 tags=["exercise"]
### BEGIN SOLUTION
family = {"kd": "logits", "dkd": "logits", "dist": "logits",
          "fitnet": "features", "at": "features", "cat_kd": "features",
          "rkd": "relations", "sp": "relations", "pkt": "relations"}
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# family = {"kd": "logits", "dkd": "logits", "dist": "relations",
#           "fitnet": "features", "at": "features", "cat_kd": "logits",
#           "rkd": "relations", "sp": "features", "pkt": "relations"}

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _families = {"kd": "logits", "dkd": "logits", "dist": "logits", "fitnet": "features", "at": "features",
#              "cat_kd": "features", "rkd": "relations", "sp": "relations", "pkt": "relations"}
# assert isinstance(family, dict), f"family must be a dict, got {type(family).__name__}"
# _misplaced = sorted(m for m in _families if family.get(m) != _families[m])
# assert not _misplaced, f"misplaced: {', '.join(_misplaced)}"

# %%
from workbench.distill import get_method_class

expected = {"kd": "logits", "dkd": "logits", "dist": "logits", "fitnet": "features", "at": "features",
            "cat_kd": "features", "rkd": "relations", "sp": "relations", "pkt": "relations"}
given = family if isinstance(family, dict) else {}
wrong_ones = sorted(m for m in expected if given.get(m) != expected[m])
check(
    not wrong_ones,
    right="all nine placed. DIST compares probabilities (logits); CAT-KD compares class maps built "
          "from the last feature map (features); SP compares batch Gram matrices (relations).",
    wrong=f"look again at: {', '.join(wrong_ones)} "
          f"({'; '.join(get_method_class(m).description for m in wrong_ones[:3])})",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the app's Compare page with this lesson's students picked. The app shows the
# runs of the store it serves, so start it on this lesson's run store (the command is under the
# link); `WORKBENCH_APP_URL` sets the app's address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(ids["kd"], store=store, page="compare", runs=list(ids.values()))

# %% [markdown]
# ## References
#
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
# * B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang. *Decoupled Knowledge Distillation.* CVPR 2022.
# * T. Huang, S. You, F. Wang, C. Qian, C. Xu. *Knowledge Distillation from A Stronger Teacher* (DIST).
#   NeurIPS 2022.
# * A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio. *FitNets: Hints for Thin
#   Deep Nets.* ICLR 2015.
# * S. Zagoruyko, N. Komodakis. *Paying More Attention to Attention: Improving the Performance of
#   Convolutional Neural Networks via Attention Transfer.* ICLR 2017.
# * Z. Guo, H. Yan, H. Li, X. Lin. *Class Attention Transfer Based Knowledge Distillation* (CAT-KD).
#   CVPR 2023.
# * W. Park, D. Kim, Y. Lu, M. Cho. *Relational Knowledge Distillation.* CVPR 2019.
# * F. Tung, G. Mori. *Similarity-Preserving Knowledge Distillation.* ICCV 2019.
# * N. Passalis, A. Tefas. *Learning Deep Representations with Probabilistic Knowledge Transfer.*
#   ECCV 2018.
# * H. Xiao, K. Rasul, R. Vollgraf. *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
#   Learning Algorithms.* arXiv:1708.07747, 2017.
