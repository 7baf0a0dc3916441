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
#     lesson: 01_what_is_distillation
# ---

# %% [markdown]
# # Lesson 1 · What is knowledge distillation?
#
# A large network (the **teacher**) has learned a task well. A small network (the **student**)
# should do the same job with a fraction of the parameters. Knowledge distillation trains the
# student not only on the true labels but on the teacher's *outputs* (Hinton, Vinyals & Dean 2015).
#
# **Learning goals.** After this lesson you can
#
# 1. say what a teacher, a student and a soft label are;
# 2. explain what the softmax temperature *T* does to a soft label, and why the KD loss is
#    multiplied by *T²*;
# 3. read "dark knowledge" from a teacher: which wrong classes it finds plausible;
# 4. train the same student from scratch and with KD, and compare them;
# 5. use the `DarkKnowledge` and `TrainPanel` panels, by hand and from Python.
#
# Run the cells from top to bottom. With `WORKBENCH_FAST=1` set, every size shrinks so the lesson
# runs in seconds (the numbers are then only a smoke test).

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
workspace = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson01-")
store = RunStore(workspace)
print(f"device: {device} · runs go to {workspace} · fast mode: {fast()}")

# %% [markdown]
# ## The teacher
#
# The workbench ships a trained MNIST teacher: `cnn_large`, a plain convolutional network of
# about 290k parameters, 99.35 % accurate on the embedded test subset. `load_shipped_teacher`
# returns it frozen (eval mode, no gradients). The data is the embedded MNIST subset
# (12,000 train and 2,000 test images), nothing is downloaded.

# %%
import dataclasses

from workbench.data import load_dataset
from workbench.runs import load_shipped_teacher

N_TRAIN = size(3000, 512)   # training images the students see
N_TEST = size(1000, 256)    # test images we evaluate on
EPOCHS = size(2, 1)
MAX_STEPS = size(None, 12)  # fast mode: stop after a few optimizer steps

data = load_dataset("mnist")
small = dataclasses.replace(
    data, train=data.train.subset(torch.arange(N_TRAIN)), test=data.test.subset(torch.arange(N_TEST))
)
teacher = load_shipped_teacher("mnist", device)
x_test = data.normalize(small.test.images).to(device)
y_test = small.test.labels.to(device)
with torch.inference_mode():
    teacher_logits = teacher(x_test)
n_params = sum(p.numel() for p in teacher.parameters())
teacher_acc = (teacher_logits.argmax(1) == y_test).float().mean().item()
print(f"teacher: {n_params:,} parameters, {teacher_acc:.2%} correct on {N_TEST} test images")

# %% [markdown]
# ## Soft labels and the temperature
#
# A classifier ends in logits $z_1, \dots, z_K$, turned into probabilities by a softmax. Hinton et
# al. divide the logits by a **temperature** $T$ first:
#
# $$p_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}.$$
#
# At $T = 1$ this is the usual softmax: a confident teacher puts nearly all the mass on one class,
# and its output says little more than the hard label. As $T$ grows the distribution flattens and
# the small probabilities of the *wrong* classes become visible. These **soft labels** are what the
# student learns from.

# %%
from workbench.analysis import soft_labels_across_temperatures
from workbench.viz import soft_label_plot

sample = 0
temperatures = [1, 2, 4, 8, 16]
probs = soft_labels_across_temperatures(teacher_logits[sample], temperatures)
for t, row in zip(temperatures, probs, strict=True):
    top = row.argsort()[::-1][:3]
    print(f"T = {t:>2}: " + ",  ".join(f"{data.class_names[k]}: {row[k]:.3f}" for k in top))
soft_label_plot(probs, temperatures, data.class_names,
                title=f"Teacher's soft labels for test image {sample} (label {int(y_test[sample])})")

# %% [markdown]
# ## Dark knowledge
#
# The wrong-class probabilities are not noise: they say which classes the teacher finds *similar*.
# Hinton et al. called this **dark knowledge**. Averaging the teacher's soft labels (at $T = 4$) over
# the test images of each digit, and ignoring the digit itself, shows the class each digit is most
# often mistaken for. A student trained on hard labels never sees this; a distilled student does.

# %%
p4 = torch.softmax(teacher_logits / 4.0, dim=1)
confusable = {}
for k in range(10):
    mean = p4[y_test == k].mean(0).clone()
    mean[k] = 0.0
    confusable[k] = int(mean.argmax())
    print(f"a {data.class_names[k]} looks most like a {data.class_names[confusable[k]]} "
          f"(mean soft label {mean[confusable[k]]:.3f})")

# %% [markdown]
# ### The `DarkKnowledge` panel
#
# The panel below draws the teacher's soft labels for one image; move the **T** slider and pick
# another **sample**. The panel runs the teacher once and recomputes the soft labels from its kept
# logits, so the slider is instant.

# %%
from workbench.widgets import DarkKnowledge

dark = DarkKnowledge(teacher, x_test[:64], y_test[:64], class_names=data.class_names,
                     temperature=4.0, sample=0)
display(dark)

# %% [markdown]
# Every panel can also be driven from Python: `panel.set(name=value)` does what moving a control
# does, and `panel.value(name)`, `panel.result` and `panel.figure` read what it shows. Here the
# entropy of the drawn soft label (in nats) rises towards $\log 10 \approx 2.30$, the uniform
# distribution, as $T$ grows.

# %%
for t in (1.0, 4.0, 16.0):
    dark.set(temperature=t)
    print(f"T = {dark.value('temperature'):>4}: entropy {dark.entropy:.3f} nats, "
          f"largest soft label {dark.soft_labels.max():.3f}")
assert dark.error is None, dark.error
dark.set(temperature=4.0)

# %% [markdown]
# ## Training a student: scratch vs. distillation
#
# The **student** is `cnn_small` (about 73k parameters, a quarter of the teacher's compute). We
# train it twice with the same seed, data and budget:
#
# * **scratch**: cross-entropy on the true labels only;
# * **KD**: Hinton's objective $0.1 \cdot \mathrm{CE}(y, s) + 0.9 \cdot T^2\, \mathrm{KL}\big(p^{t}(T)
#   \,\|\, p^{s}(T)\big)$ with $T = 4$.
#
# Why $T^2$? The gradient of the soft term with respect to the student's logits scales as $1/T^2$;
# multiplying by $T^2$ keeps its size comparable to the cross-entropy's when $T$ changes.
#
# `workbench.train.run(config)` is the one training entry point (the CLI, the app, sweeps and the
# job queue all call it). Here it runs in this kernel, on a subset of the training images.

# %%
from workbench.train import run
from workbench.validate import validate_run_config


def student_config(methods, ce_weight):
    distill = methods != "none"
    return validate_run_config({
        "seed": 0,
        "data": {"dataset": "mnist", "batch_size": 64},
        "model": {"name": "cnn_small"},
        "teachers": [{"source": "shipped:mnist"}] if distill else [],
        "distill": {"methods": methods, "ce_weight": ce_weight},
        "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
        "train": {"epochs": EPOCHS, "max_steps": MAX_STEPS},
    })


def evaluate(model):
    model.eval()
    with torch.inference_mode():
        pred = model(x_test).argmax(1)
    return (pred == y_test).float().mean().item(), (pred == teacher_logits.argmax(1)).float().mean().item()


scratch = run(student_config("none", 1.0), dataset=small)
kd = run(student_config("0.9*kd", 0.1), dataset=small, teachers=[teacher])
for name, result in (("scratch", scratch), ("KD", kd)):
    acc, agree = evaluate(result.student)
    print(f"{name:>8}: test accuracy {acc:.2%}, agrees with the teacher on {agree:.2%} "
          f"({result.summary['steps']} steps, {result.summary['seconds']:.1f} s)")

# %% [markdown]
# With a few thousand training images the distilled student usually ends ahead: every soft label
# carries information about all ten classes, while a hard label carries one. (In fast mode the runs
# are too short for the numbers to mean anything.)
#
# ## The `TrainPanel`
#
# The `TrainPanel` is the same training as a form: dataset, teacher, student, methods with their
# hyper-parameters, epochs, seed. **Start** queues the run on the workbench's job queue, which trains
# it in a worker process (this kernel stays free) and writes it to the run store; the panel draws
# live loss and accuracy curves. Here it trains the KD student again, into this lesson's workspace.

# %%
from workbench.widgets import TrainPanel

panel = TrainPanel(store=store, dataset="mnist", teacher="shipped:mnist", student="cnn_small",
                   methods="kd", epochs=EPOCHS, seed=0, max_steps=MAX_STEPS or 0,
                   data={"train_subset": N_TRAIN, "batch_size": 64})
panel.set(**{"kd.temperature": 4.0})
display(panel)

# %% [markdown]
# Pressing **Start** in the panel and calling `panel.start()` do the same. `panel.wait()` blocks until
# the job has finished and returns the stored run (`workbench.runs.Run`): its config, metrics and
# checkpoints, loadable again in any session.

# %%
job = panel.start()
assert job is not None, panel.error
finished = panel.wait(timeout=600)
assert finished is not None, panel.error
summary = finished.metrics["summary"]
print(f"run {finished.id}: {finished.status['status']}, test accuracy {summary['test_acc']:.2%}, "
      f"agreement {summary['agreement']:.2%} (on the full 2,000-image test subset)")

# %% [markdown]
# ### How far is the student from the teacher?
#
# Given a student, `DarkKnowledge` also reports its KD loss $T^2 \cdot \mathrm{KL}$ at the current
# temperature, averaged over the images given. Compare the scratch and the KD student: the
# distilled one should be closer to the teacher's soft labels.

# %%
student_from_panel = finished.load_model("final", device=device)
for name, model in (("scratch", scratch.student), ("KD (kernel)", kd.student), ("KD (panel)", student_from_panel)):
    panel_kd = DarkKnowledge(teacher, x_test[:64], y_test[:64], student=model, class_names=data.class_names)
    panel_kd.set(temperature=4.0)
    print(f"{name:>12}: KD loss at T = 4: {panel_kd.kd_loss:.3f}")
display(panel_kd)

# %% [markdown]
# ## Exercise 1 · The KD loss by hand
#
# `s` holds the KD student's logits and `t` the teacher's logits for the first 64 test images.
# Write Hinton's distillation loss for this batch,
#
# $$T^2 \cdot \frac{1}{B} \sum_{b=1}^{B} \mathrm{KL}\big(\mathrm{softmax}(t_b / T) \,\|\,
# \mathrm{softmax}(s_b / T)\big), \qquad \mathrm{KL}(p \,\|\, q) = \sum_i p_i (\log p_i - \log q_i),$$
#
# as a number `my_kd_loss`, using `torch.softmax` / `torch.log_softmax`.

# %%
T = 4.0
with torch.inference_mode():
    s = kd.student(x_test[:64]).float()
t = teacher_logits[:64].float()

# %% exercise="1" points=2 tags=["exercise"]
### BEGIN SOLUTION
my_kd_loss = T**2 * (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean()
### END SOLUTION

# %% [raw] exercise="1" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# my_kd_loss = (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean()

# %% [raw] exercise="1" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# from workbench.distill.functional import kd_loss as _kd_loss
#
# _want = float(_kd_loss(s, t, temperature=4.0))
# assert abs(float(my_kd_loss) - _want) <= 1e-4 * max(1.0, abs(_want)), (
#     f"my_kd_loss = {float(my_kd_loss):.4f}; T² times the batch mean of KL(teacher ‖ student) at T = 4 is {_want:.4f}"
# )

# %%
from workbench.distill.functional import kd_loss

reference = float(kd_loss(s, t, temperature=T))
check(
    abs(float(my_kd_loss) - reference) <= 1e-4 * max(1.0, abs(reference)),
    right=f"{float(my_kd_loss):.4f} is the KD loss (workbench.distill.functional.kd_loss agrees).",
    wrong=f"got {float(my_kd_loss):.4f}, expected {reference:.4f}. Did you average over the batch and multiply by T²?",
)

# %% [markdown]
# ## Exercise 2 · Reading dark knowledge
#
# Which digit does the teacher think a **7** looks most like? Use the teacher's soft labels at
# $T = 4$ (`teacher_logits`, `y_test`), average them over the test images of 7s, ignore class 7
# itself, and set `most_like_7` to that digit's class name (a string such as `"3"`).

# %% exercise="2" points=1 tags=["exercise"]
### BEGIN SOLUTION
mean_7 = torch.softmax(teacher_logits[y_test == 7] / 4.0, dim=1).mean(0)
mean_7[7] = 0.0
most_like_7 = data.class_names[int(mean_7.argmax())]
### END SOLUTION

# %% [raw] exercise="2" tags=["wrong-answer"]
# # A wrong answer: the lesson tests run it in place of the answer above, and the check must reject it.
# # your answer
# most_like_7 = "7"

# %% [raw] exercise="2" tags=["hidden-check"]
# # Hidden check: `workbench lessons grade` runs it right after the answer cell; the student version leaves it out.
# _sevens = torch.softmax(teacher_logits[y_test == 7] / 4.0, dim=1).mean(0)
# _sevens[7] = 0.0
# _want = data.class_names[int(_sevens.argmax())]
# assert most_like_7 == _want, f"most_like_7 = {most_like_7!r}; the teacher's 7s put the most wrong-class mass on {_want!r}"

# %%
expected = data.class_names[confusable[7]]
check(
    most_like_7 == expected,
    right=f"the teacher's 7s put the most wrong-class mass on {expected!r}.",
    wrong=f"{most_like_7!r} is not it: average softmax(teacher_logits / 4) over the 7s and take the "
          "largest entry other than class 7.",
)

# %% [markdown]
# ## This lesson's runs in the app
#
# The link below opens the KD student that the `TrainPanel` trained on the app's Training page (its
# loss and accuracy curves). The app shows the runs of the store it serves, so start it on this
# lesson's run store (the command is under the link); `WORKBENCH_APP_URL` sets the app's address
# when it is not the default.

# %%
from workbench.lessons import app_link_markdown

app_link_markdown(finished, store=store, page="training")

# %% [markdown]
# ## References
#
# * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NIPS Deep
#   Learning Workshop, 2015. arXiv:1503.02531.
# * Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-based learning applied to document
#   recognition.* Proceedings of the IEEE 86(11), 1998 (MNIST).
#
# Next: lesson 2, a tour of distillation methods beyond the logits.
