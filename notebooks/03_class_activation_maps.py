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
#     lesson: 03_class_activation_maps
# ---

# %% [markdown]
# # Lesson 3 · Where do teacher and student look? Class activation maps
#
# Accuracy says *whether* a network is right; a **class activation map** (CAM) says *where in the
# image* the evidence for its decision lies. Comparing the maps of a teacher and a student shows
# whether the student learned to look at the same things, or found a shortcut.
#
# **Learning goals.** After this lesson you can
#
# 1. explain how Grad-CAM (Selvaraju et al. 2017) and Eigen-CAM (Muhammad & Yeasin 2020) build a
#    map, and why one is class-specific and the other is not;
# 2. use the `shapes` dataset with a background **confounder** to catch a student relying on context;
# 3. measure context reliance with object masks;
# 4. see how distillation, and CAT-KD's transfer of the maps themselves, changes where a student looks;
# 5. explore maps in the `CamExplorer` panel, by hand and from Python.

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
workspace = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson03-")
store = RunStore(workspace)
print(f"device: {device} · runs go to {workspace} · fast mode: {fast()}")

# %% [markdown]
# ## A dataset with a shortcut
#
# `shapes` renders ten geometric shapes on ten textured backgrounds, with the exact mask of every
# shape. With `confounding=0.9` each class gets "its" background in 9 of 10 training images, while
# the test backgrounds are random: a network can reach high training accuracy by recognising the
# background instead of the shape, and then fails on the test split. (A controlled version of the
# "cow on grass" problem of natural images.) The shipped `shapes` teacher was trained without the
# confounder and is right on nearly every test image.

# %%
import numpy as np

from workbench.data import PAIRED_BACKGROUND, load_dataset
from workbench.runs import load_shipped_teacher
from workbench.train import run
from workbench.validate import validate_run_config

N_TRAIN = size(3000, 512)
N_TEST = size(500, 128)
EPOCHS = size(2, 1)
MAX_STEPS = size(None, 8)
OPTIONS = {"n_train": N_TRAIN, "n_test": N_TEST, "confounding": 0.9, "seed": 0}

data = load_dataset("shapes", **OPTIONS)
teacher = load_shipped_teacher("shapes", device)
paired = torch.as_tensor(PAIRED_BACKGROUND)
for split in ("train", "test"):
    s = getattr(data, split)
    share = (s.context == paired[s.labels]).float().mean().item()
    print(f"{split:>5}: {len(s)} images, {share:.0%} on their class's paired background")
x_test = data.normalize(data.test.images).to(device)
y_test = data.test.labels.to(device)
masks = data.test.masks


# %% [markdown]
# ## Three students
#
# The same student (`cnn_small`), seed and budget, trained three ways on the confounded images:
# from **scratch** (labels only), with **KD** from the teacher, and with **CAT-KD**, which transfers
# the teacher's class activation maps directly (Guo et al. 2023).

# %%
def shapes_config(methods, ce_weight=1.0):
    distill = methods != "none"
    return validate_run_config({
        "seed": 0,
        "data": {"dataset": "shapes", "batch_size": 64, "options": OPTIONS},
        "model": {"name": "cnn_small"},
        "teachers": [{"source": "shipped:shapes"}] if distill else [],
        "distill": {"methods": methods, "ce_weight": ce_weight},
        "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
        "schedule": {"name": "cosine", "warmup_epochs": 0.2},
        "train": {"epochs": EPOCHS, "max_steps": MAX_STEPS},
    })


trained = {  # each run goes to this lesson's run store, so the app can open it (see the end)
    "scratch": run(shapes_config("none"), store=store, dataset=data),
    "kd": run(shapes_config("0.9*kd", 0.1), store=store, dataset=data, teachers=[teacher]),
    "cat_kd": run(shapes_config("cat_kd"), store=store, dataset=data, teachers=[teacher]),
}
students = {name: result.student for name, result in trained.items()}
with torch.inference_mode():
    print(f"{'teacher':>8}: test accuracy {(teacher(x_test).argmax(1) == y_test).float().mean():.2%}")
    for name, model in students.items():
        model.eval()
        print(f"{name:>8}: test accuracy {(model(x_test).argmax(1) == y_test).float().mean():.2%}")

# %% [markdown]
# ## Grad-CAM
#
# Take a convolutional layer's feature maps $A^k$ (here the last one) and the score $y^c$ of the
# class $c$ to explain. Grad-CAM weights each channel by the average gradient of the score with
# respect to it and keeps the positive part:
#
# $$\alpha_k^c = \frac{1}{HW}\sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
# L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big).$$
#
# The map is upsampled to the image. `compare_cams` computes it for teacher and student (and any
# extra model) on the same images, compares the maps (Pearson correlation, top-20 % region IoU)
# and, given the object masks, measures localization: **energy in mask** is the share of the map's
# mass on the shape, **context reliance** the share on the background. With `target="predicted"`
# each model explains *its own* decision, which is what we want to audit here. (Shapes are small,
# so even a perfect map at the last layer's 8×8 resolution puts some mass on the background: compare
# the models with each other, not with 0.)

# %%
from workbench.analysis import compare_cams
from workbench.viz import cam_grid, localization_summary

cams = compare_cams(teacher, students["kd"], x_test, y_test, method="gradcam", target="predicted",
                    extra={"scratch": students["scratch"], "cat_kd": students["cat_kd"]},
                    masks=masks, class_names=data.class_names)
print(f"teacher-student map correlation (KD student): {np.nanmean(cams.pearson):.2f}")
reliance = {"teacher": cams.teacher_localization, "kd": cams.student_localization, **cams.extra_localization}
for name, loc in reliance.items():
    print(f"{name:>8}: context reliance {np.nanmean(loc.context_reliance):.2f}")
display(cam_grid(cams, x_test, mean=data.mean, std=data.std, max_images=4, class_names=data.class_names))
localization_summary(cams)

# %% [markdown]
# The student trained on the confounded labels alone puts clearly more of its evidence on the
# background than the teacher does, and it is wrong on most test images: the background *was* the
# label in training. The KD student's maps sit on the shape about as much as the teacher's, and
# its accuracy follows: the teacher's soft labels do not follow the background, so copying them
# means ignoring it. CAT-KD's result varies a lot from seed to seed in such short runs (see
# `docs/methods.md`). (Fast mode trains for a handful of steps, so its maps are close to untrained.)
#
# ## Eigen-CAM
#
# Eigen-CAM needs no gradient and no class: it projects the layer's activations on their first
# principal component, $L_{\text{Eigen-CAM}} = A\,v_1$ where $v_1$ is the top right singular vector
# of the $(HW \times C)$ activation matrix (sign fixed so the map is mostly positive). It shows what
# the layer responds to most strongly, whatever the class. Grad-CAM answers "where is the evidence
# for class *c*?"; Eigen-CAM answers "what stands out to this layer?". Change the target and only
# the Grad-CAM map moves. Eigen-CAM still catches the shortcut: it shows what a layer responds to,
# and the scratch student's last layer responds to the background.

# %%
from workbench.analysis import compute_cams

other = (y_test + 1) % 10  # explain a wrong class instead of the label
for method in ("gradcam", "eigencam"):
    a = compute_cams(teacher, x_test[:32], method=method, target="label", labels=y_test[:32]).maps
    b = compute_cams(teacher, x_test[:32], method=method, target=other[:32]).maps
    corr = np.mean([np.corrcoef(p.ravel(), q.ravel())[0, 1] for p, q in zip(a, b, strict=True) if p.std() > 0 and q.std() > 0])
    print(f"{method:>9}: label map vs wrong-class map, mean correlation {corr:.2f}")

eigen = compare_cams(teacher, students["kd"], x_test, y_test, method="eigencam",
                     extra={"scratch": students["scratch"]}, masks=masks)
for name, loc in (("teacher", eigen.teacher_localization), ("kd", eigen.student_localization),
                  ("scratch", eigen.extra_localization["scratch"])):
    print(f"Eigen-CAM context reliance, {name:>7}: {np.nanmean(loc.context_reliance):.2f}")

# %% [markdown]
# ## The `CamExplorer` panel
#
# The panel shows teacher, student and (optionally) the scratch student's maps side by side. Its
# controls choose the **method** (any CAM of the workbench), the **layer** of each model, the
# **target** (the true label, each model's own prediction, or the teacher's), and which images to
# show (random, a class, or where teacher and student *disagree*).

# %%
from workbench.widgets import CamExplorer

explorer = CamExplorer(teacher, students["kd"], x_test, y_test, scratch=students["scratch"],
                       class_names=data.class_names, method="gradcam", target="predicted", n_images=4,
                       mean=data.mean, std=data.std)
display(explorer)

# %%
explorer.set(method="eigencam")
print("method:", explorer.value("method"), "· images shown:", [int(i) for i in explorer.indices])
explorer.set(method="gradcam", pick="class", **{"class": "star"})
print("images of class 'star':", [int(i) for i in explorer.indices],
      f"· teacher-student correlation {np.nanmean(explorer.result.pearson):.2f}")
assert explorer.error is None, explorer.error

# %% [markdown]
# ## CAT-KD: transferring the maps
#
# CAT-KD computes a class activation map for *every* class from the last feature map and the
# classifier weights (Zhou et al.'s CAM), average-pools each to a 2×2 grid, normalises, and makes the
# student's pooled maps match the teacher's. The student is told directly *where* the teacher finds
# evidence for each class. Compare its maps with the KD student's in the panel by making it the
# student (its context reliance was printed above).

# %%
cat_explorer = CamExplorer(teacher, students["cat_kd"], x_test, y_test, scratch=students["scratch"],
                           class_names=data.class_names, method="gradcam", target="predicted", n_images=4,
                           mean=data.mean, std=data.std)
display(cat_explorer)

# %% [markdown]
# ## Exercise 1 · Context reliance by hand
#
# `maps` holds the scratch student's Grad-CAM maps (of its own predictions) on the test images,
# shape $(N, H, W)$, and
# `masks` the shapes' boolean masks. Compute each image's **context reliance**, the share of the
# map's non-negative mass *outside* the mask, $1 - \sum_{ij} m^+_{ij}\,[\text{mask}_{ij}] /
# \sum_{ij} m^+_{ij}$ with $m^+ = \max(m, 0)$, as a tensor `my_reliance` of shape $(N,)$.

# %%
maps = torch.as_tensor(cams.extra["scratch"].maps, dtype=torch.float64)
object_masks = masks.to(torch.float64)

# %% exercise="1" points=2 tags=["exercise"]
### BEGIN SOLUTION
positive = maps.clamp(min=0)
my_reliance = 1 - (positive * object_masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2))
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# positive = maps.clamp(min=0)
# my_reliance = (positive * object_masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2))

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _positive = maps.clamp(min=0)
# _want = (1 - (_positive * object_masks).sum(dim=(1, 2)) / _positive.sum(dim=(1, 2))).numpy()
# _mine = np.asarray(torch.as_tensor(my_reliance).detach().cpu(), dtype=np.float64)
# assert _mine.shape == _want.shape, f"my_reliance has shape {_mine.shape}, expected one value per image {_want.shape}"
# assert np.allclose(_mine, _want, atol=1e-6, equal_nan=True), "my_reliance is not the share of the map outside the mask"

# %%
reference = cams.extra_localization["scratch"].context_reliance
check(
    np.allclose(np.asarray(my_reliance, dtype=np.float64), reference, atol=1e-6, equal_nan=True),
    right=f"mean context reliance {np.nanmean(reference):.2f}, as localization_metrics computes it.",
    wrong="not the context reliance: it is the share of the (clamped) map OUTSIDE the mask, per image.",
)

# %% [markdown]
# ## Exercise 2 · Does Eigen-CAM depend on the target?
#
# Set `eigencam_depends_on_target` to `True` if the Eigen-CAM map of an image changes when you ask
# it to explain another class, else `False`. The check computes both maps to find out.

# %% exercise="2" points=1 tags=["exercise"]
### BEGIN SOLUTION
eigencam_depends_on_target = False
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# eigencam_depends_on_target = True

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# assert isinstance(eigencam_depends_on_target, (bool, np.bool_)), "set eigencam_depends_on_target to True or False"
# assert not eigencam_depends_on_target, "Eigen-CAM takes the first principal component of the activations: no target enters it"

# %%
m_label = compute_cams(students["kd"], x_test[:16], method="eigencam", target="label", labels=y_test[:16]).maps
m_other = compute_cams(students["kd"], x_test[:16], method="eigencam", target=other[:16]).maps
depends = not np.allclose(m_label, m_other, atol=1e-6)
check(
    eigencam_depends_on_target == depends,
    right="Eigen-CAM is class-agnostic: the first principal component of the activations ignores the target.",
    wrong="compare compute_cams(..., method='eigencam') for two different targets: the maps are identical.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the KD student of the confounded shapes on the app's Class activation maps
# page, with the scratch student beside it. The app shows the runs of the store it serves, so start
# it on this lesson's run store (the command is under the link); `WORKBENCH_APP_URL` sets the app's
# address when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(trained["kd"].run_id, store=store, page="cams", checkpoint="final",
                  scratch=trained["scratch"].run_id)

# %% [markdown]
# ## References
#
# * R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra. *Grad-CAM: Visual
#   Explanations from Deep Networks via Gradient-based Localization.* ICCV 2017.
# * M. B. Muhammad, M. Yeasin. *Eigen-CAM: Class Activation Map using Principal Components.* IJCNN 2020.
# * B. Zhou, A. Khosla, A. Lapedriza, A. Oliva, A. Torralba. *Learning Deep Features for
#   Discriminative Localization* (CAM). CVPR 2016.
# * Z. Guo, H. Yan, H. Li, X. Lin. *Class Attention Transfer Based Knowledge Distillation* (CAT-KD).
#   CVPR 2023.
# * H. Wang, Z. Wang, M. Du, F. Yang, Z. Zhang, S. Ding, P. Mardziel, X. Hu. *Score-CAM:
#   Score-Weighted Visual Explanations for Convolutional Neural Networks.* CVPR Workshops 2020
#   (the energy-based pointing game behind "energy in mask").
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
