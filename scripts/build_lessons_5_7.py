"""Build lessons 5-7 (notebooks/05_*.ipynb ... 07_*.ipynb) from the cell sources below, without outputs.

    python scripts/build_lessons_5_7.py

Conventions shared by every lesson: learning goals first; every long computation sized with
``workbench.lessons.size(full, quick)`` (``WORKBENCH_FAST=1`` picks the quick size); runs go to a
fresh temporary workspace unless ``WORKBENCH_RUNS`` names one. An exercise is an answer cell tagged
``exercise-answer`` whose metadata ``wrong_answer`` holds a wrong answer's source, followed by a
check cell calling :func:`workbench.lessons.check`; ``tests/test_notebooks.py`` runs every lesson
with its reference answers and with each wrong answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "notebooks"


def md(text: str) -> Any:
    """A markdown cell from dedented ``text``."""
    return new_markdown_cell(dedent(text).strip())


def code(text: str) -> Any:
    """A code cell from dedented ``text``."""
    return new_code_cell(dedent(text).strip())


def answer(text: str, wrong: str) -> Any:
    """An exercise answer cell: the reference answer, tagged, with a wrong answer in its metadata."""
    cell = code(text)
    cell.metadata["tags"] = ["exercise-answer"]
    cell.metadata["wrong_answer"] = dedent(wrong).strip()
    return cell


SETUP_COMMON = """
import dataclasses
import os
import tempfile

import torch
from IPython.display import display

from workbench.data import load_dataset
from workbench.lessons import check, fast, size
from workbench.runs import RunStore
from workbench.train import load_shipped_teacher, run
from workbench.validate import validate_run_config

torch.manual_seed(0)
# runs go to a fresh temporary workspace unless WORKBENCH_RUNS names one
WORKSPACE = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-lesson{n}-")
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
    \"\"\"Top-1 accuracy of `model` (in eval mode) on `images`.\"\"\"
    device = next(model.parameters()).device
    model.eval()
    return (model(images.to(device)).argmax(1).cpu() == labels).float().mean().item()


print("runs go to", WORKSPACE, "(fast mode: small sizes)" if fast() else "")
"""


def config_fn(model: str, kwargs: str = "{}") -> str:
    return f'''
def config(name, methods="none", *, ce_weight=1.0, model="{model}", kwargs={kwargs}, teachers=("shipped:mnist",), seed=0):
    """A run config: `model` trained on a subset of MNIST, the same budget for every run."""
    return validate_run_config({{
        "kind": "student" if methods == "none" else "distill",
        "name": name,
        "seed": seed,
        "data": {{"dataset": "mnist", "batch_size": 64, "train_subset": size(3000, 512)}},
        "model": {{"name": model, "kwargs": dict(kwargs)}},
        "teachers": [{{"source": s}} for s in teachers],
        "distill": {{"methods": methods, "ce_weight": ce_weight}},
        "optim": {{"name": "sgd", "lr": 0.05, "nesterov": True}},
        "train": {{"epochs": 2, "max_steps": size(None, 16)}},
    }})
'''


def kernelspec(nb: Any) -> Any:
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ---------------------------------------------------------------------------------------------------
# Lesson 5
# ---------------------------------------------------------------------------------------------------


def lesson5() -> Any:
    cells = [
        md("""
        # Lesson 5 — Loss landscapes: is the distilled student in a flatter minimum?

        **Learning goals.** After this lesson you can

        1. draw 1-D and 2-D slices of a student's loss around its trained weights along
           filter-normalised random directions (Li et al. 2018), with the `LandscapeExplorer` panel;
        2. measure sharpness with the Hessian: its top eigenvalue (power iteration) and its trace
           (Hutchinson's estimator);
        3. compare a distilled student with the same network trained from labels alone;
        4. explain why these pictures and numbers can mislead: a rescaling that leaves the network's
           function unchanged changes its sharpness (Dinh et al. 2017), and filter normalisation is
           what makes slices of differently scaled networks comparable.

        About 3 minutes on a 2-core laptop CPU; with `WORKBENCH_FAST=1` every size shrinks and the
        lesson runs in seconds (the numbers are then rough).
        """),
        md("""
        ## Set-up

        The shipped MNIST teacher, the embedded MNIST subset, and a run store in a temporary folder.
        `x`, `y` are a fixed evaluation subset of the test split: every landscape and Hessian below is
        computed on it, so the numbers of the two students are comparable.
        """),
        code(SETUP_COMMON.replace("{n}", "5")),
        md("""
        ## 1. Two students, one difference

        Both students are the same network, `cnn` with one convolution per stage (16-32-64 channels,
        24k parameters), trained on the same data for the same number of steps from the same seed.
        The first learns from the labels only (cross-entropy); the second with knowledge distillation,
        `0.1·CE + 0.9·T²·KL(teacher_T ‖ student_T)` at `T = 4` (Hinton et al. 2015).
        """),
        code(config_fn("cnn", '{"channels": [16, 32, 64], "convs_per_stage": 1}')),
        code("""
        scratch = run(config("lesson5-scratch"), store=store, dataset=data)
        kd = run(
            config("lesson5-kd", [{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}], ce_weight=0.1),
            store=store,
            dataset=data,
        )
        for name, r in [("scratch", scratch), ("kd", kd)]:
            print(f"{name:8s} test accuracy {r.summary['test_acc']:.3f}   agreement with the teacher {r.summary['agreement']:.3f}")
        """),
        md("""
        ## 2. The landscape around the distilled student

        A network has tens of thousands of weights, so its loss cannot be drawn as a function of all
        of them. Li et al. (2018) draw it on a plane through the trained weights `θ0`:
        `L(θ0 + α·d1 + β·d2)`, with `d1`, `d2` random Gaussian directions. Each *filter* of a direction
        (a conv output channel, a row of a linear layer) is rescaled to the norm of the matching filter
        of the weights — **filter normalisation** — so that a step `α = 1` changes every filter by
        about its own size. Biases and BatchNorm parameters are left out.

        The panel below computes in a background thread and fills the figure row by row. Press
        *Start*, or drive it from Python as the next cell does (it works the same without a browser).
        """),
        code("""
        from workbench.widgets import LandscapeExplorer

        explorer = LandscapeExplorer(teacher, kd.student, x, y, mode="2d", steps=size(11, 5), span=1.0)
        display(explorer)
        """),
        code("""
        explorer.start()  # the same as pressing "Start"
        explorer.wait()
        print("finished:", explorer.done, "| error:", explorer.error)
        print("cross-entropy at the trained weights:", explorer.result.references["model"])
        """),
        md("""
        Every control is a keyword of `set`: switching to a 1-D slice of the accuracy recomputes at
        once, as changing the controls by hand would.
        """),
        code("""
        explorer.set(mode="1d", objective="accuracy", steps=size(21, 7))
        explorer.wait()
        print("finished:", explorer.done, "| error:", explorer.error)
        """),
        md("""
        ## 3. Scratch against distilled, slice against slice

        `landscape_1d` with the same `seed` draws the same Gaussian for both students (they share an
        architecture), filter-normalised to each student's own weights. A narrower valley around
        `α = 0` is a sharper minimum.
        """),
        code("""
        from workbench.analysis import hessian_top_eigenvalue, hessian_trace, landscape_1d
        from workbench.viz import landscape_comparison

        slices = {
            name: landscape_1d(teacher, r.student, x, y, objectives=["cross_entropy", "accuracy"],
                               steps=size(21, 7), span=(-1.0, 1.0), seed=0)
            for name, r in [("scratch", scratch), ("student", kd)]
        }
        landscape_comparison(slices, "cross_entropy", title="1-D slices: scratch vs distilled student")
        """),
        md("""
        ## 4. Sharpness in numbers: the Hessian

        The curvature of the loss at `θ0` is the Hessian `H = ∇²L(θ0)`. Two summaries:

        * the **top eigenvalue** `λ_max`, the curvature along the sharpest direction, found by power
          iteration `v ← Hv / ‖Hv‖` on Hessian-vector products (double backpropagation; Pearlmutter 1994);
        * the **trace** `tr(H) = Σ λ_i`, the total curvature, estimated as the mean of `zᵀHz` over random
          ±1 vectors `z` (Hutchinson 1989), reported with its standard error.

        Keskar et al. (2017) linked flat minima (small `λ_max`) with better generalisation, and
        distilled students often sit in flatter minima than students trained on labels. Read the
        numbers, not the slogan: with a few hundred samples and a short schedule they can go either way.
        """),
        code("""
        sharpness = {}
        for name, r in [("scratch", scratch), ("kd", kd)]:
            top = hessian_top_eigenvalue(teacher, r.student, x, y, iters=size(20, 5), seed=0)
            trace = hessian_trace(teacher, r.student, x, y, samples=size(10, 2), seed=0)
            sharpness[name] = top.eigenvalue
            print(f"{name:8s} top eigenvalue {top.eigenvalue:9.3f} ({top.iterations} iterations)   "
                  f"trace {trace.trace:10.2f} ± {trace.std_error:.2f}")
        print(f"ratio kd / scratch: {sharpness['kd'] / sharpness['scratch']:.2f} "
              "(the doctor's sharpness rule fires at 1.5)")
        """),
        md("""
        ## 5. How these pictures and numbers mislead

        Every convolution of this network feeds a BatchNorm layer, which divides by the standard
        deviation of its input. Multiply a convolution's weights by `c` and scale the BatchNorm's
        running mean by `c` and its running variance (and `eps`) by `c²`: the network computes
        **exactly the same function**. Yet the curvature with respect to those weights changes by
        `1/c²`. Dinh et al. (2017) used such reparametrisations to show that "sharpness" measured in
        weight space is not a property of the function alone: any minimum can be made to look as
        sharp or as flat as one likes.
        """),
        code("""
        import copy

        from torch import nn


        def rescale_convs(model, c):
            \"\"\"A copy of `model` that computes the same function with every conv weight multiplied by `c`.\"\"\"
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
            \"\"\"Share of the evaluation images on which `a` and `b` predict the same class.\"\"\"
            return (a.eval()(x).argmax(1) == b.eval()(x).argmax(1)).float().mean().item()


        bigger = rescale_convs(kd.student, 10.0)
        print("same predictions:", same_predictions(kd.student, bigger))
        top_bigger = hessian_top_eigenvalue(teacher, bigger, x, y, iters=size(20, 5), seed=0)
        print(f"top eigenvalue: original {sharpness['kd']:.3f}, conv weights x10 {top_bigger.eigenvalue:.3f}")
        """),
        md("""
        The same function now looks much flatter. Slices along a direction *without* filter
        normalisation are fooled the same way: below, one raw Gaussian direction of a fixed total
        length is used for both networks. For the network with ten times larger conv weights the same
        step is relatively ten times smaller, so its valley looks wide.
        """),
        code("""
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
        """),
        md("""
        ## Exercises

        **Exercise 1.** Choose the factor `c` for `rescale_convs` that makes the distilled student
        look at least ten times *sharper* by its top Hessian eigenvalue, without changing a single
        prediction.
        """),
        answer("c = 0.1", "c = 10.0"),
        code("""
        sharper = rescale_convs(kd.student, c)
        top_c = hessian_top_eigenvalue(teacher, sharper, x, y, iters=size(20, 5), seed=0).eigenvalue
        print(f"same predictions: {same_predictions(kd.student, sharper):.3f}   top eigenvalue {top_c:.3f} "
              f"(original {sharpness['kd']:.3f})")
        check(
            same_predictions(kd.student, sharper) == 1.0 and top_c >= 10 * sharpness["kd"],
            "conv weights c times smaller make the curvature about 1/c² larger: c = 0.1 gives about 100x.",
            "the curvature in those weights scales as 1/c²: a c above 1 flattens, a c below 1 sharpens.",
        )
        """),
        md("""
        **Exercise 2.** Predict before you compute: with **filter-normalised** directions (the
        default of `landscape_1d`, same seed), does the 1-D cross-entropy slice of `bigger` (conv
        weights ×10) differ from the original student's? Set `slice_changes` to `True` or `False`.
        """),
        answer("slice_changes = False", "slice_changes = True"),
        code("""
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
        """),
        md("""
        ## References

        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
          Deep Learning Workshop, 2015.
        * H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein. *Visualizing the Loss Landscape of Neural
          Nets.* NeurIPS 2018.
        * L. Dinh, R. Pascanu, S. Bengio, Y. Bengio. *Sharp Minima Can Generalize For Deep Nets.*
          ICML 2017.
        * N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy, P. T. P. Tang. *On Large-Batch
          Training for Deep Learning: Generalization Gap and Sharp Minima.* ICLR 2017.
        * B. A. Pearlmutter. *Fast Exact Multiplication by the Hessian.* Neural Computation, 1994.
        * M. F. Hutchinson. *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian
          Smoothing Splines.* Communications in Statistics, 1989.
        """),
    ]
    return kernelspec(new_notebook(cells=cells))


# ---------------------------------------------------------------------------------------------------
# Lesson 6
# ---------------------------------------------------------------------------------------------------


def lesson6() -> Any:
    cells = [
        md("""
        # Lesson 6 — Diagnosing a failing student

        **Learning goals.** After this lesson you can

        1. recognise a **capacity gap**: a student too small to follow its teacher, and try a
           **teacher assistant** between them (TAKD, Mirzadeh et al. 2020; Cho & Hariharan 2019);
        2. spot a **mis-set temperature** from the logged loss terms;
        3. find the samples the teacher finds easy and the student hard (**relative difficulty**, the
           signal Relative Difficulty Distillation weights by);
        4. run the **student doctor** (`workbench.diagnosis.diagnose` and the `DoctorReport` panel) and
           read its ranked findings, their evidence and the thresholds behind them.

        About 3 minutes on a 2-core laptop CPU; seconds with `WORKBENCH_FAST=1`.
        """),
        md("## Set-up"),
        code(SETUP_COMMON.replace("{n}", "6")),
        md("""
        ## 1. A student far smaller than its teacher

        The teacher has 288k parameters; the student below, a `cnn` with 4-8-16 channels, has about
        5k — sixty times fewer. Cho & Hariharan (2019) found that a larger, more accurate teacher does
        not always teach a small student better: the student cannot reproduce the teacher's function,
        and the soft targets it is asked to match are beyond its reach. Mirzadeh et al. (2020) put a
        **teacher assistant** of intermediate size between the two: the teacher distils into the
        assistant, the assistant into the student (`takd`, a chain of two runs here).

        Three runs of the same tiny student with the same budget: from labels only, KD straight from
        the teacher, and KD through a `cnn_small` assistant (72k parameters).
        """),
        code(config_fn("cnn", '{"channels": [4, 8, 16]}')),
        code("""
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
        """),
        md("""
        Compare the two distilled students. With this short budget the difference between them can be
        smaller than the spread between seeds; TAKD's gains in the paper come from long schedules on
        CIFAR. What the chain reliably changes is *whom* the student agrees with: its teacher is now
        the assistant, a function it can follow more closely.

        ## 2. The doctor

        The student doctor runs the workbench's analyses on a student and its teacher (agreement,
        calibration, softness of the outputs, CKA of matched layers, the logged loss terms, ...) and
        applies explicit rules to the numbers (see `docs/doctor.md`). Each finding has a severity, the
        evidence, an explanation, the next experiment to try, and a view that shows it. The panel
        computes in the background; `wait()` blocks until the report is ready.
        """),
        code("""
        from workbench.widgets import DoctorReport

        doctor = DoctorReport(direct.run_id, store=store, n_samples=size(500, 100))
        display(doctor)
        """),
        code("""
        report = doctor.wait()
        print("error:", doctor.error)
        print(report.to_text())
        """),
        md("""
        Choosing a finding in the panel draws the view that holds its evidence (`doctor.detail`). From
        Python, set the `finding` control to its index:
        """),
        code("""
        if doctor.findings:
            doctor.set(finding=0)
            display(doctor.detail)
        else:
            print("no finding fired")
        """),
        md("""
        ## 3. A mis-set temperature

        The KD term carries a factor `T²` so that its gradients keep their size as `T` changes
        (Hinton et al. 2015). The student below is distilled at `T = 20` with the usual weights
        `0.1·CE + 0.9·KD`. At such a temperature the teacher's softened outputs are almost uniform and
        the KD term behaves like a squared error between centred logits, which dwarfs the
        cross-entropy: the labels barely count any more. The logged, weighted loss terms show the
        balance, and the doctor reads the same numbers.
        """),
        code("""
        from workbench.diagnosis import diagnose
        from workbench.viz import loss_terms

        HOT = [{"name": "kd", "weight": 0.9, "params": {"temperature": 20.0}}]
        hot = run(config("lesson6-hot", HOT, ce_weight=0.1), store=store, dataset=data)
        print(f"T = 20: test accuracy {hot.summary['test_acc']:.3f} (T = 4: {direct.summary['test_acc']:.3f})")
        hot_report = diagnose(hot.run_id, runs_root=WORKSPACE, n_samples=size(500, 100))
        print(hot_report.to_text())
        loss_terms(store.load(hot.run_id).metrics, title="Weighted loss terms at T = 20")
        """),
        md("""
        ## 4. Relative difficulty: easy for the teacher, hard for the student

        Per sample, the *difficulty* of a model is `1 − p(y | x)`: 0 when it is certain and right,
        1 when it puts no mass on the true class. The *relative difficulty* is the student's minus the
        teacher's. Relative Difficulty Distillation (RDD, Liang et al. 2024) weights each sample's
        distillation term by such a difficulty, so that the student spends its effort where it lags
        the teacher. `difficulty_report` computes both difficulties; the shaded corner of the scatter
        holds the samples that are easy for the teacher (difficulty ≤ 0.2) and hard for the student
        (≥ 0.5). The workbench's `rdd` method trains with these weights; `docs/methods.md` measures
        why its default weighting can concentrate on a handful of samples.
        """),
        code("""
        from workbench.analysis import difficulty_report
        from workbench.viz import difficulty_scatter

        difficulty = difficulty_report(teacher, direct.student, x, y, class_names=data.class_names)
        print(f"{len(difficulty.selected)} of {difficulty.n_samples} samples are easy for the teacher and hard for the student")
        difficulty_scatter(difficulty)
        """),
        md("""
        ## Exercises

        **Exercise 1.** From the per-sample arrays `difficulty.teacher_difficulty` and
        `difficulty.student_difficulty` (NumPy), count the samples that are easy for the teacher
        (difficulty at most `0.2`) and hard for the student (at least `0.5`). Store the count in `n_gap`.
        """),
        answer(
            """
            n_gap = int(((difficulty.teacher_difficulty <= 0.2) & (difficulty.student_difficulty >= 0.5)).sum())
            """,
            """
            n_gap = int((difficulty.student_difficulty - difficulty.teacher_difficulty > 0).sum())
            """,
        ),
        code("""
        print("n_gap =", n_gap)
        check(
            n_gap == len(difficulty.selected),
            f"{n_gap} samples: the shaded corner of the scatter.",
            "both conditions must hold: teacher difficulty <= 0.2 and student difficulty >= 0.5.",
        )
        """),
        md("""
        **Exercise 2.** The run's per-epoch metrics, `store.load(hot.run_id).metrics["epochs"]`, log
        every loss term *already weighted* as it enters the objective: `loss/ce` (0.1·CE) and `loss/kd`
        (0.9·T²·KL). Set `ratio` to how many times larger the KD term is than the CE term in the last
        epoch of the `T = 20` run. (The doctor reads the same logged terms.)
        """),
        answer(
            """
            last = store.load(hot.run_id).metrics["epochs"][-1]
            ratio = last["loss/kd"] / last["loss/ce"]
            """,
            """
            last = store.load(hot.run_id).metrics["epochs"][-1]
            ratio = last["loss/ce"] / last["loss/kd"]
            """,
        ),
        code("""
        logged = store.load(hot.run_id).metrics["epochs"][-1]
        print(f"ratio = {ratio:.1f}")
        check(
            abs(ratio - logged["loss/kd"] / logged["loss/ce"]) < 1e-9 * max(1.0, abs(ratio)),
            f"the KD term is {ratio:.0f} times the label term: at T = 20 the labels barely steer the student.",
            "divide the KD term by the CE term (how many times larger the distillation term is).",
        )
        """),
        md("""
        ## References

        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
          Deep Learning Workshop, 2015.
        * J. H. Cho, B. Hariharan. *On the Efficacy of Knowledge Distillation.* ICCV 2019.
        * S. I. Mirzadeh, M. Farajtabar, A. Li, N. Levine, A. Matsukawa, H. Ghasemzadeh. *Improved
          Knowledge Distillation via Teacher Assistant.* AAAI 2020.
        * D. Liang, Y. Sun, Y. Du, S. Chen, S.-J. Huang. *Relative Difficulty Distillation for Semantic
          Segmentation.* 2024.
        * C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger. *On Calibration of Modern Neural Networks.*
          ICML 2017.
        * S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations
          Revisited.* ICML 2019.
        """),
    ]
    return kernelspec(new_notebook(cells=cells))


# ---------------------------------------------------------------------------------------------------
# Lesson 7
# ---------------------------------------------------------------------------------------------------


def lesson7() -> Any:
    cells = [
        md("""
        # Lesson 7 — Learning without a big teacher

        **Learning goals.** After this lesson you can

        1. train a cohort of small networks that teach each other — **deep mutual learning** (DML,
           Zhang et al. 2018);
        2. train **born-again networks**: generations of one architecture, each taught by the last
           (Furlanello et al. 2018), and ensemble the generations;
        3. distil a student from a **momentum teacher**, an exponential moving average of its own
           weights (Mean Teacher, Tarvainen & Valpola 2017);
        4. compare the runs side by side with the `CompareRuns` panel.

        None of these needs a large pre-trained teacher. About 3 minutes on a 2-core laptop CPU;
        seconds with `WORKBENCH_FAST=1`.
        """),
        md("## Set-up"),
        code(SETUP_COMMON.replace("{n}", "7")),
        md("""
        Every run below trains the same small network, a `cnn` with one convolution per stage
        (16-32-64 channels, 24k parameters), for the same budget. The baseline learns from the
        labels alone; no run below uses the shipped teacher.
        """),
        code(config_fn("cnn", '{"channels": [16, 32, 64], "convs_per_stage": 1}')),
        code("""
        scratch = run(config("lesson7-scratch", teachers=()), store=store, dataset=data)
        print(f"scratch: test accuracy {scratch.summary['test_acc']:.3f}")
        """),
        md("""
        ## 1. Deep mutual learning

        DML trains a cohort side by side. Each network minimises its cross-entropy plus the KL
        divergence from each other member's predictions, `CE(y, p_1) + KL(p_2 ‖ p_1)`, the other's
        outputs taken as fixed targets. Neither network is a teacher; each one's mistakes are, on
        average, not the other's, and the soft targets carry the same kind of dark knowledge a teacher
        would. Here the cohort is the student and one peer (`peers=1`), so a step costs about twice as much.
        """),
        code("""
        DML = [{"name": "dml", "params": {"peers": 1, "temperature": 1.0}}]
        dml = run(config("lesson7-dml", DML, teachers=()), store=store, dataset=data)
        peer = dml.method.peers()[0]
        print(f"DML student {accuracy(dml.student):.3f}   its peer {accuracy(peer):.3f}   scratch {accuracy(scratch.student):.3f}")
        """),
        md("""
        ## 2. Born-again networks

        Furlanello et al. (2018) train a network from labels, then train a fresh network of the *same*
        architecture to match it (`T = 1`, with cross-entropy), then a third to match the second, and
        so on. Students often overtake their teachers, and the generations ensemble well. The chain's
        first teacher is the scratch run above (`run:<id>`); each generation is a run of its own.
        """),
        code("""
        BAN = [{"name": "ban", "params": {"generations": size(3, 2), "temperature": 1.0}}]
        ban = run(config("lesson7-ban", BAN, teachers=(f"run:{scratch.run_id}",)), store=store, dataset=data)
        generations = [store.load(i).load_model("final") for i in ban.link_ids]
        print(f"generation 0 (scratch) {accuracy(scratch.student):.3f}")
        for k, net in enumerate(generations, 1):
            print(f"generation {k}            {accuracy(net):.3f}")
        """),
        md("""
        ## 3. A momentum teacher

        Tarvainen & Valpola (2017) keep a second copy of the student whose weights follow the
        student's by an exponential moving average after every optimiser step,
        `θ_teacher ← a·θ_teacher + (1 − a)·θ_student`, and train the student to match that teacher's
        outputs. The average smooths the noise of single SGD steps: the mean teacher is often more
        accurate than the student it averages. With `a = 0.99` the teacher averages over roughly the
        last `1 / (1 − a) = 100` steps (the workbench also warms the decay up, `a = min(1 − 1/(n+1), momentum)`
        at the `n`-th update, as the reference code does).
        """),
        code("""
        EMA = [{"name": "ema", "params": {"momentum": 0.99, "temperature": 4.0}}]
        ema = run(config("lesson7-ema", EMA, teachers=()), store=store, dataset=data)
        mean_teacher = ema.method.teacher_models()[0]
        print(f"EMA student {accuracy(ema.student):.3f}   its mean teacher {accuracy(mean_teacher):.3f}")
        """),
        md("""
        ## 4. All runs side by side

        The `CompareRuns` panel overlays one metric of several stored runs over epochs and lists their
        summaries. Pick runs and a metric in the panel, or set them from Python.
        """),
        code("""
        from workbench.widgets import CompareRuns

        compare = CompareRuns([scratch.run_id, dml.run_id, *ban.link_ids, ema.run_id], store=store)
        display(compare)
        """),
        code("""
        compare.set(metric="train_loss")
        print("error:", compare.error)
        for row in compare.table:
            print(f"{row['name']:22s} {row['method']:5s} test accuracy {row['test_acc']:.3f}")
        """),
        md("""
        ## Exercises

        **Exercise 1.** Write the momentum teacher's update for one tensor: `ema_update(teacher_w,
        student_w, a)` returns the teacher's new weights after one step with decay `a`. Then set
        `horizon` to the number of recent steps a teacher with `a = 0.999` effectively averages over.
        """),
        answer(
            """
            def ema_update(teacher_w, student_w, a):
                return a * teacher_w + (1 - a) * student_w

            horizon = 1 / (1 - 0.999)
            """,
            """
            def ema_update(teacher_w, student_w, a):
                return (1 - a) * teacher_w + a * student_w

            horizon = 1 / (1 - 0.999)
            """,
        ),
        code("""
        t_w, s_w = torch.randn(5, generator=torch.Generator().manual_seed(1)), torch.randn(5)
        reference = torch.lerp(t_w, s_w, 1 - 0.9)  # what the workbench's EMA teacher does (Tensor.lerp_)
        check(
            torch.allclose(ema_update(t_w, s_w, 0.9), reference) and abs(horizon - 1000) < 1e-6,
            "the teacher keeps a share a of itself and takes 1 - a of the student; a = 0.999 averages ~1000 steps.",
            "the decay a weighs the teacher's own weights, 1 - a the student's (and 1 / (1 - a) steps).",
        )
        """),
        md("""
        **Exercise 2.** Ensemble the born-again generations: set `ensemble_probs` to the mean of the
        generations' *softmax probabilities* on `x` (a tensor of shape `(n_eval, 10)`), as
        Furlanello et al. do for their ensembles. (Each network in `generations` runs on the device it
        was loaded on; `x` is on the CPU.)
        """),
        answer(
            """
            with torch.no_grad():
                ensemble_probs = torch.stack(
                    [torch.softmax(net.eval()(x.to(next(net.parameters()).device)).cpu(), dim=1) for net in generations]
                ).mean(0)
            """,
            """
            with torch.no_grad():
                ensemble_probs = torch.softmax(
                    torch.stack([net.eval()(x.to(next(net.parameters()).device)).cpu() for net in generations]).mean(0), dim=1
                )
            """,
        ),
        code("""
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
        """),
        md("""
        ## References

        * Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu. *Deep Mutual Learning.* CVPR 2018.
        * T. Furlanello, Z. C. Lipton, M. Tschannen, L. Itti, A. Anandkumar. *Born-Again Neural
          Networks.* ICML 2018.
        * A. Tarvainen, H. Valpola. *Mean Teachers Are Better Role Models: Weight-Averaged Consistency
          Targets Improve Semi-Supervised Deep Learning Results.* NeurIPS 2017.
        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NeurIPS
          Deep Learning Workshop, 2015.
        """),
    ]
    return kernelspec(new_notebook(cells=cells))


LESSONS = {
    "05_loss_landscapes.ipynb": lesson5,
    "06_diagnosing_a_failing_student.ipynb": lesson6,
    "07_learning_without_a_big_teacher.ipynb": lesson7,
}


def main(argv: list[str] | None = None) -> int:
    """Write the lessons named on the command line (default: all three) to notebooks/."""
    names = argv if argv else list(LESSONS)
    OUT.mkdir(exist_ok=True)
    for name in names:
        nb = LESSONS[name]()
        nbformat.validate(nb)
        nbformat.write(nb, OUT / name)
        print("wrote", OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
