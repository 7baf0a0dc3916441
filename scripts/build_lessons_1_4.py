"""Build lessons 1-4 (``notebooks/01_*.ipynb`` .. ``notebooks/04_*.ipynb``) from the cells below.

The notebooks are written without outputs (``execution_count`` null, ``outputs`` empty) and with
stable cell ids, so rebuilding an unchanged lesson gives the same file. Each exercise has an answer
cell tagged ``exercise-answer`` whose metadata ``wrong_answer`` holds a wrong answer: the notebook
tests run it in place of the reference answer and expect the check cell after it to fail.

Usage: ``python scripts/build_lessons_1_4.py`` (writes into ``notebooks/`` next to this folder).
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


def md(text: str) -> dict[str, Any]:
    """A markdown cell (``text`` dedented and stripped)."""
    return new_markdown_cell(dedent(text).strip())


def code(src: str) -> dict[str, Any]:
    """A code cell (``src`` dedented and stripped)."""
    return new_code_cell(dedent(src).strip())


def answer(src: str, wrong: str) -> dict[str, Any]:
    """An exercise answer cell: the reference answer, tagged, with a wrong answer in its metadata."""
    cell = code(src)
    cell.metadata["tags"] = ["exercise-answer"]
    cell.metadata["wrong_answer"] = dedent(wrong).strip()
    return cell


def setup_cell(lesson: str) -> dict[str, Any]:
    """The first code cell of every lesson: imports, fast mode, a workspace of its own."""
    return code(
        f"""
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
        workspace = os.environ.get("WORKBENCH_RUNS") or tempfile.mkdtemp(prefix="workbench-{lesson}-")
        store = RunStore(workspace)
        print(f"device: {{device}} · runs go to {{workspace}} · fast mode: {{fast()}}")
        """
    )


def notebook(cells: list[dict[str, Any]], slug: str) -> nbformat.NotebookNode:
    """A notebook of ``cells`` with stable ids and the python3 kernel."""
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{slug}-{i:02d}"
        if cell.cell_type == "code":
            cell["execution_count"] = None
            cell["outputs"] = []
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ---- lesson 1 -------------------------------------------------------------------------------------

LESSON_1 = [
    md(
        """
        # Lesson 1 · What is knowledge distillation?

        A large network (the **teacher**) has learned a task well. A small network (the **student**)
        should do the same job with a fraction of the parameters. Knowledge distillation trains the
        student not only on the true labels but on the teacher's *outputs* (Hinton, Vinyals & Dean 2015).

        **Learning goals.** After this lesson you can

        1. say what a teacher, a student and a soft label are;
        2. explain what the softmax temperature *T* does to a soft label, and why the KD loss is
           multiplied by *T²*;
        3. read "dark knowledge" from a teacher: which wrong classes it finds plausible;
        4. train the same student from scratch and with KD, and compare them;
        5. use the `DarkKnowledge` and `TrainPanel` panels, by hand and from Python.

        Run the cells from top to bottom. With `WORKBENCH_FAST=1` set, every size shrinks so the lesson
        runs in seconds (the numbers are then only a smoke test).
        """
    ),
    setup_cell("lesson01"),
    md(
        """
        ## The teacher

        The workbench ships a trained MNIST teacher: `cnn_large`, a plain convolutional network of
        about 290k parameters, 99.35 % accurate on the embedded test subset. `load_shipped_teacher`
        returns it frozen (eval mode, no gradients). The data is the embedded MNIST subset
        (12,000 train and 2,000 test images), nothing is downloaded.
        """
    ),
    code(
        """
        import dataclasses

        from workbench.data import load_dataset
        from workbench.train import load_shipped_teacher

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
        """
    ),
    md(
        r"""
        ## Soft labels and the temperature

        A classifier ends in logits $z_1, \dots, z_K$, turned into probabilities by a softmax. Hinton et
        al. divide the logits by a **temperature** $T$ first:

        $$p_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}.$$

        At $T = 1$ this is the usual softmax: a confident teacher puts nearly all the mass on one class,
        and its output says little more than the hard label. As $T$ grows the distribution flattens and
        the small probabilities of the *wrong* classes become visible. These **soft labels** are what the
        student learns from.
        """
    ),
    code(
        """
        from workbench.analysis import soft_labels_across_temperatures
        from workbench.viz import soft_label_plot

        sample = 0
        temperatures = [1, 2, 4, 8, 16]
        probs = soft_labels_across_temperatures(teacher_logits[sample], temperatures)
        for t, row in zip(temperatures, probs):
            top = row.argsort()[::-1][:3]
            print(f"T = {t:>2}: " + ",  ".join(f"{data.class_names[k]}: {row[k]:.3f}" for k in top))
        soft_label_plot(probs, temperatures, data.class_names,
                        title=f"Teacher's soft labels for test image {sample} (label {int(y_test[sample])})")
        """
    ),
    md(
        """
        ## Dark knowledge

        The wrong-class probabilities are not noise: they say which classes the teacher finds *similar*.
        Hinton et al. called this **dark knowledge**. Averaging the teacher's soft labels (at $T = 4$) over
        the test images of each digit, and ignoring the digit itself, shows the class each digit is most
        often mistaken for. A student trained on hard labels never sees this; a distilled student does.
        """
    ),
    code(
        """
        p4 = torch.softmax(teacher_logits / 4.0, dim=1)
        confusable = {}
        for k in range(10):
            mean = p4[y_test == k].mean(0).clone()
            mean[k] = 0.0
            confusable[k] = int(mean.argmax())
            print(f"a {data.class_names[k]} looks most like a {data.class_names[confusable[k]]} "
                  f"(mean soft label {mean[confusable[k]]:.3f})")
        """
    ),
    md(
        """
        ### The `DarkKnowledge` panel

        The panel below draws the teacher's soft labels for one image; move the **T** slider and pick
        another **sample**. The panel runs the teacher once and recomputes the soft labels from its kept
        logits, so the slider is instant.
        """
    ),
    code(
        """
        from workbench.widgets import DarkKnowledge

        dark = DarkKnowledge(teacher, x_test[:64], y_test[:64], class_names=data.class_names,
                             temperature=4.0, sample=0)
        display(dark)
        """
    ),
    md(
        """
        Every panel can also be driven from Python: `panel.set(name=value)` does what moving a control
        does, and `panel.value(name)`, `panel.result` and `panel.figure` read what it shows. Here the
        entropy of the drawn soft label (in nats) rises towards $\\log 10 \\approx 2.30$, the uniform
        distribution, as $T$ grows.
        """
    ),
    code(
        """
        for t in (1.0, 4.0, 16.0):
            dark.set(temperature=t)
            print(f"T = {dark.value('temperature'):>4}: entropy {dark.entropy:.3f} nats, "
                  f"largest soft label {dark.soft_labels.max():.3f}")
        assert dark.error is None, dark.error
        dark.set(temperature=4.0)
        """
    ),
    md(
        r"""
        ## Training a student: scratch vs. distillation

        The **student** is `cnn_small` (about 73k parameters, a quarter of the teacher's compute). We
        train it twice with the same seed, data and budget:

        * **scratch**: cross-entropy on the true labels only;
        * **KD**: Hinton's objective $0.1 \cdot \mathrm{CE}(y, s) + 0.9 \cdot T^2\, \mathrm{KL}\big(p^{t}(T)
          \,\|\, p^{s}(T)\big)$ with $T = 4$.

        Why $T^2$? The gradient of the soft term with respect to the student's logits scales as $1/T^2$;
        multiplying by $T^2$ keeps its size comparable to the cross-entropy's when $T$ changes.

        `workbench.train.run(config)` is the one training entry point (the CLI, the app, sweeps and the
        job queue all call it). Here it runs in this kernel, on a subset of the training images.
        """
    ),
    code(
        """
        from workbench.train import run
        from workbench.validate import validate_run_config


        def student_config(methods, ce_weight):
            distill = methods != "none"
            return validate_run_config({
                "kind": "distill" if distill else "student",
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
        """
    ),
    md(
        """
        With a few thousand training images the distilled student usually ends ahead: every soft label
        carries information about all ten classes, while a hard label carries one. (In fast mode the runs
        are too short for the numbers to mean anything.)

        ## The `TrainPanel`

        The `TrainPanel` is the same training as a form: dataset, teacher, student, methods with their
        hyper-parameters, epochs, seed. **Start** queues the run on the workbench's job queue, which trains
        it in a worker process (this kernel stays free) and writes it to the run store; the panel draws
        live loss and accuracy curves. Here it trains the KD student again, into this lesson's workspace.
        """
    ),
    code(
        """
        from workbench.widgets import TrainPanel

        panel = TrainPanel(store=store, dataset="mnist", teacher="shipped:mnist", student="cnn_small",
                           methods="kd", epochs=EPOCHS, seed=0, max_steps=MAX_STEPS or 0,
                           data={"train_subset": N_TRAIN, "batch_size": 64})
        panel.set(**{"kd.temperature": 4.0})
        display(panel)
        """
    ),
    md(
        """
        Pressing **Start** in the panel and calling `panel.start()` do the same. `panel.wait()` blocks until
        the job has finished and returns the stored run (`workbench.runs.Run`): its config, metrics and
        checkpoints, loadable again in any session.
        """
    ),
    code(
        """
        job = panel.start()
        assert job is not None, panel.error
        finished = panel.wait(timeout=600)
        assert finished is not None, panel.error
        summary = finished.metrics["summary"]
        print(f"run {finished.id}: {finished.status['status']}, test accuracy {summary['test_acc']:.2%}, "
              f"agreement {summary['agreement']:.2%} (on the full 2,000-image test subset)")
        """
    ),
    md(
        """
        ### How far is the student from the teacher?

        Given a student, `DarkKnowledge` also reports its KD loss $T^2 \\cdot \\mathrm{KL}$ at the current
        temperature, averaged over the images given. Compare the scratch and the KD student: the
        distilled one should be closer to the teacher's soft labels.
        """
    ),
    code(
        """
        student_from_panel = finished.load_model("final", device=device)
        for name, model in (("scratch", scratch.student), ("KD (kernel)", kd.student), ("KD (panel)", student_from_panel)):
            panel_kd = DarkKnowledge(teacher, x_test[:64], y_test[:64], student=model, class_names=data.class_names)
            panel_kd.set(temperature=4.0)
            print(f"{name:>12}: KD loss at T = 4: {panel_kd.kd_loss:.3f}")
        display(panel_kd)
        """
    ),
    md(
        r"""
        ## Exercise 1 · The KD loss by hand

        `s` holds the KD student's logits and `t` the teacher's logits for the first 64 test images.
        Write Hinton's distillation loss for this batch,

        $$T^2 \cdot \frac{1}{B} \sum_{b=1}^{B} \mathrm{KL}\big(\mathrm{softmax}(t_b / T) \,\|\,
        \mathrm{softmax}(s_b / T)\big), \qquad \mathrm{KL}(p \,\|\, q) = \sum_i p_i (\log p_i - \log q_i),$$

        as a number `my_kd_loss`, using `torch.softmax` / `torch.log_softmax`.
        """
    ),
    code(
        """
        T = 4.0
        with torch.inference_mode():
            s = kd.student(x_test[:64]).float()
        t = teacher_logits[:64].float()
        """
    ),
    answer(
        """
        # your answer
        my_kd_loss = T**2 * (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean()
        """,
        wrong="""
        # your answer
        my_kd_loss = (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean()
        """,
    ),
    code(
        """
        from workbench.distill.functional import kd_loss

        reference = float(kd_loss(s, t, temperature=T))
        check(
            abs(float(my_kd_loss) - reference) <= 1e-4 * max(1.0, abs(reference)),
            right=f"{float(my_kd_loss):.4f} is the KD loss (workbench.distill.functional.kd_loss agrees).",
            wrong=f"got {float(my_kd_loss):.4f}, expected {reference:.4f}. Did you average over the batch and multiply by T²?",
        )
        """
    ),
    md(
        """
        ## Exercise 2 · Reading dark knowledge

        Which digit does the teacher think a **7** looks most like? Use the teacher's soft labels at
        $T = 4$ (`teacher_logits`, `y_test`), average them over the test images of 7s, ignore class 7
        itself, and set `most_like_7` to that digit's class name (a string such as `"3"`).
        """
    ),
    answer(
        """
        # your answer
        mean_7 = torch.softmax(teacher_logits[y_test == 7] / 4.0, dim=1).mean(0)
        mean_7[7] = 0.0
        most_like_7 = data.class_names[int(mean_7.argmax())]
        """,
        wrong="""
        # your answer
        most_like_7 = "7"
        """,
    ),
    code(
        """
        expected = data.class_names[confusable[7]]
        check(
            most_like_7 == expected,
            right=f"the teacher's 7s put the most wrong-class mass on {expected!r}.",
            wrong=f"{most_like_7!r} is not it: average softmax(teacher_logits / 4) over the 7s and take the "
                  "largest entry other than class 7.",
        )
        """
    ),
    md(
        """
        ## References

        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* NIPS Deep
          Learning Workshop, 2015. arXiv:1503.02531.
        * Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-based learning applied to document
          recognition.* Proceedings of the IEEE 86(11), 1998 (MNIST).

        Next: lesson 2, a tour of distillation methods beyond the logits.
        """
    ),
]


# ---- lesson 2 -------------------------------------------------------------------------------------

LESSON_2 = [
    md(
        """
        # Lesson 2 · A tour of distillation methods

        Hinton's KD matches the teacher's output probabilities. Since then, methods have attached the
        distillation loss to three different places of the two networks:

        | family | what is matched | methods in this lesson |
        |---|---|---|
        | **logits** | the outputs, softened | KD (Hinton et al. 2015), DKD (Zhao et al. 2022), DIST (Huang et al. 2022) |
        | **features** | intermediate feature maps | FitNets (Romero et al. 2015), AT (Zagoruyko & Komodakis 2017), CAT-KD (Guo et al. 2023) |
        | **relations** | how samples relate to each other | RKD (Park et al. 2019), SP (Tung & Mori 2019), PKT (Passalis & Tefas 2018) |

        **Learning goals.** After this lesson you can

        1. name the three families and say what each one matches;
        2. write a run config for any method, with its hyper-parameters and layers;
        3. train the same student under each method and compare them fairly (same seed, data, budget);
        4. run a small sweep with `workbench.sweep` and compare runs in the `CompareRuns` panel.
        """
    ),
    setup_cell("lesson02"),
    md(
        """
        ## Data, teacher, student

        Fashion-MNIST (embedded subset), the shipped `cnn_large` teacher (about 91 % accurate), and a small
        student: `cnn` with one convolution per stage (channels 16-32-64, 24k parameters), the student of
        the project's methods table (`docs/methods.md`). Every method below gets the same student, seed,
        training images and number of steps.
        """
    ),
    code(
        """
        import dataclasses

        from workbench.data import load_dataset
        from workbench.train import load_shipped_teacher, run
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
            \"\"\"A run config: the shared student, data and optimiser, with the given distillation methods.\"\"\"
            return validate_run_config({
                "kind": "student" if methods == "none" else "distill",
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
            \"\"\"Train one student into this lesson's run store and print its test accuracy and agreement.\"\"\"
            result = run(method_config(name, methods, ce_weight), store=store, dataset=small, teachers=[teacher])
            results[name] = result
            s = result.summary
            agree = f"{s['agreement']:.2%}" if "agreement" in s else "-"
            print(f"{name:>8}: test accuracy {s['test_acc']:.2%}, agreement with the teacher {agree}")
            return result


        train_method("none", "none")
        """
    ),
    md(
        r"""
        ## 1 · Logit methods

        * **KD** matches $\mathrm{softmax}(z/T)$ of teacher and student with a KL divergence.
        * **DKD** (Decoupled KD) splits KD into a *target-class* term (TCKD: how confident on the true
          class) and a *non-target* term (NCKD: how the remaining mass is spread) and weights them
          separately, $\alpha \cdot \mathrm{TCKD} + \beta \cdot \mathrm{NCKD}$; the paper finds NCKD (the
          dark knowledge) is the part that matters and is suppressed by KD's coupling.
        * **DIST** drops the exact match of probabilities and asks only for the same *ranking*: it
          maximises the Pearson correlation between teacher and student probabilities per sample
          (inter-class) and per class over the batch (intra-class).

        A method is named in `distill.methods`, either as an expression (`"0.9*kd"`) or as a list with
        hyper-parameters. DKD warms its loss up over `warmup` epochs (20 in the paper); for these short
        runs we use one.
        """
    ),
    code(
        """
        train_method("kd", "0.9*kd", ce_weight=0.1)
        train_method("dkd", [{"name": "dkd", "params": {"warmup": 1.0}}])
        train_method("dist", [{"name": "dist", "params": {"temperature": 4.0, "beta": 2.0, "gamma": 2.0}}])
        """
    ),
    md(
        """
        ## 2 · Feature methods

        These match what happens *inside* the networks, at module paths of both models. Our conv nets
        name their stages `features.0`, `features.1`, `features.2`; the teacher's stages are twice as wide
        (32-64-128 channels against 16-32-64) and twice as deep, so a method either learns a
        **connector** or compares something that does not depend on the width:

        * **FitNets** picks one student layer (the *hint*) and one teacher layer, maps the student's
          feature through a learned 1×1-conv connector, and minimises the mean squared error.
        * **AT** (attention transfer) reduces each feature map to a spatial *attention map*,
          $a(f) = \\mathrm{normalize}\\big(\\tfrac{1}{C}\\sum_c f_c^2\\big)$, which has no channel dimension,
          and matches those, stage by stage.
        * **CAT-KD** transfers *class activation maps*: the last feature map weighted by each class's
          classifier weights, pooled to a tiny grid (2×2), i.e. *where* the evidence for each class is.

        By default each method picks its layers (FitNets: the middle stages, AT: every stage pair); the
        `student_layers` / `teacher_layers` parameters choose them explicitly, as for FitNets below.
        """
    ),
    code(
        """
        from workbench.models.taps import list_layers

        print("student stages:", [i.path for i in list_layers(results["none"].student, (1, 28, 28))
                                  if i.path.count(".") == 1 and i.path.startswith("features")])
        train_method("fitnet", [{"name": "fitnet",
                                 "params": {"student_layers": ["features.1"], "teacher_layers": ["features.1"]}}])
        train_method("at", "at")
        train_method("cat_kd", "cat_kd")
        """
    ),
    md(
        """
        ## 3 · Relation methods

        Instead of matching what each sample looks like to the two networks, these match how samples
        relate *to each other* within a batch, usually at the penultimate embedding. Relations are
        $B \\times B$ objects, so the widths of the two networks never need to agree.

        * **RKD** matches the pairwise *distances* (normalised by their mean) and the *angles* formed by
          triplets of embeddings.
        * **SP** (similarity-preserving) matches the row-normalised Gram matrices $G = F F^\\top$ of a batch.
        * **PKT** turns cosine similarities into conditional probability distributions over the batch
          and matches them with a KL divergence.
        """
    ),
    code(
        """
        train_method("rkd", "rkd")
        train_method("sp", "sp")
        train_method("pkt", "pkt")
        """
    ),
    md(
        """
        ## Comparing the runs

        Every run above went to this lesson's run store, so the `CompareRuns` panel can lay them side by
        side: test accuracy (or any logged metric) over epochs, and a table of their summaries. Pick runs
        and a metric in the panel; here we set them from Python. One or two short epochs are far from the
        papers' 200-epoch setting, so read the ordering with care (see `docs/methods.md` for a longer,
        seed-averaged table).
        """
    ),
    code(
        """
        from workbench.widgets import CompareRuns

        ids = {name: r.run_id for name, r in results.items()}
        compare = CompareRuns(list(ids.values()), store=store, metric="test_acc")
        display(compare)
        """
    ),
    code(
        """
        compare.set(metric="agreement")
        assert compare.error is None, compare.error
        for row in sorted(compare.table, key=lambda r: -(r.get("test_acc") or 0.0)):
            name = next(n for n, i in ids.items() if i == row["id"])
            print(f"{name:>8}: test accuracy {row['test_acc']:.2%}")
        """
    ),
    md(
        """
        ## A small sweep

        A **sweep** trains a grid of configs × seeds. Each trial is an ordinary run in the store, named by
        a hash of its config, so an interrupted sweep resumes where it stopped. Here the grid is the KD
        temperature: the grid key `distill.methods` takes a whole method list per trial. The same sweep
        can be written as a YAML file and run with `workbench sweep FILE` (optionally on Ray).

        The sweep's runs read their data from the config alone, so they train on `data.train_subset` of
        the training images and are evaluated on the whole 2,000-image test subset.
        """
    ),
    code(
        """
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
        for row, o in zip(rows, outcomes):
            T = o.trial.config.distill.methods[0].params["temperature"]
            print(f"T = {T:>3}: test accuracy {row['test_acc_mean']:.2%}, agreement {row['agreement_mean']:.2%}")
        compare.set(runs=[o.run_id for o in outcomes] + [ids["kd"]], metric="test_acc")
        """
    ),
    md(
        r"""
        ## Exercise 1 · Attention maps

        Write AT's attention map as a function `attention_map(f)` of a feature batch `f` of shape
        $(B, C, H, W)$: average the squared activations over the channels, flatten each sample's
        $H \times W$ map to a vector, and L2-normalise it (`torch.nn.functional.normalize(..., dim=1)`).
        The check compares $\mathrm{mean}\big((a(f_s) - a(f_t))^2\big)$ with the library's `at_loss`.
        """
    ),
    answer(
        """
        # your answer
        def attention_map(f):
            return torch.nn.functional.normalize(f.pow(2).mean(dim=1).flatten(1), dim=1)
        """,
        wrong="""
        # your answer
        def attention_map(f):
            return f.pow(2).mean(dim=1).flatten(1)
        """,
    ),
    code(
        """
        from workbench.distill.functional import at_loss

        g = torch.Generator().manual_seed(0)
        f_s, f_t = torch.randn(8, 16, 7, 7, generator=g), torch.randn(8, 64, 7, 7, generator=g)
        mine = (attention_map(f_s) - attention_map(f_t)).pow(2).mean()
        check(
            torch.allclose(mine, at_loss(f_s, f_t), rtol=1e-5, atol=1e-8),
            right="your attention maps give AT's loss, for a 16-channel student and a 64-channel teacher alike.",
            wrong="not AT's loss yet: square, average over channels (dim 1), flatten, then L2-normalise each row.",
        )
        """
    ),
    md(
        """
        ## Exercise 2 · Which family?

        Set `family` to a dict mapping each method name to `"logits"`, `"features"` or `"relations"`, by
        what its loss compares.
        """
    ),
    answer(
        """
        # your answer
        family = {"kd": "logits", "dkd": "logits", "dist": "logits",
                  "fitnet": "features", "at": "features", "cat_kd": "features",
                  "rkd": "relations", "sp": "relations", "pkt": "relations"}
        """,
        wrong="""
        # your answer
        family = {"kd": "logits", "dkd": "logits", "dist": "relations",
                  "fitnet": "features", "at": "features", "cat_kd": "logits",
                  "rkd": "relations", "sp": "features", "pkt": "relations"}
        """,
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## References

        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
        * B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang. *Decoupled Knowledge Distillation.* CVPR 2022.
        * T. Huang, S. You, F. Wang, C. Qian, C. Xu. *Knowledge Distillation from A Stronger Teacher* (DIST).
          NeurIPS 2022.
        * A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio. *FitNets: Hints for Thin
          Deep Nets.* ICLR 2015.
        * S. Zagoruyko, N. Komodakis. *Paying More Attention to Attention: Improving the Performance of
          Convolutional Neural Networks via Attention Transfer.* ICLR 2017.
        * Z. Guo, H. Yan, H. Li, X. Lin. *Class Attention Transfer Based Knowledge Distillation* (CAT-KD).
          CVPR 2023.
        * W. Park, D. Kim, Y. Lu, M. Cho. *Relational Knowledge Distillation.* CVPR 2019.
        * F. Tung, G. Mori. *Similarity-Preserving Knowledge Distillation.* ICCV 2019.
        * N. Passalis, A. Tefas. *Learning Deep Representations with Probabilistic Knowledge Transfer.*
          ECCV 2018.
        * H. Xiao, K. Rasul, R. Vollgraf. *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
          Learning Algorithms.* arXiv:1708.07747, 2017.
        """
    ),
]


# ---- lesson 3 -------------------------------------------------------------------------------------

LESSON_3 = [
    md(
        """
        # Lesson 3 · Where do teacher and student look? Class activation maps

        Accuracy says *whether* a network is right; a **class activation map** (CAM) says *where in the
        image* the evidence for its decision lies. Comparing the maps of a teacher and a student shows
        whether the student learned to look at the same things, or found a shortcut.

        **Learning goals.** After this lesson you can

        1. explain how Grad-CAM (Selvaraju et al. 2017) and Eigen-CAM (Muhammad & Yeasin 2020) build a
           map, and why one is class-specific and the other is not;
        2. use the `shapes` dataset with a background **confounder** to catch a student relying on context;
        3. measure context reliance with object masks;
        4. see how distillation, and CAT-KD's transfer of the maps themselves, changes where a student looks;
        5. explore maps in the `CamExplorer` panel, by hand and from Python.
        """
    ),
    setup_cell("lesson03"),
    md(
        """
        ## A dataset with a shortcut

        `shapes` renders ten geometric shapes on ten textured backgrounds, with the exact mask of every
        shape. With `confounding=0.9` each class gets "its" background in 9 of 10 training images, while
        the test backgrounds are random: a network can reach high training accuracy by recognising the
        background instead of the shape, and then fails on the test split. (A controlled version of the
        "cow on grass" problem of natural images.) The shipped `shapes` teacher was trained without the
        confounder and is right on nearly every test image.
        """
    ),
    code(
        """
        import numpy as np

        from workbench.data import PAIRED_BACKGROUND, load_dataset
        from workbench.train import load_shipped_teacher, run
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
        """
    ),
    md(
        """
        ## Three students

        The same student (`cnn_small`), seed and budget, trained three ways on the confounded images:
        from **scratch** (labels only), with **KD** from the teacher, and with **CAT-KD**, which transfers
        the teacher's class activation maps directly (Guo et al. 2023).
        """
    ),
    code(
        """
        def shapes_config(methods, ce_weight=1.0):
            distill = methods != "none"
            return validate_run_config({
                "kind": "distill" if distill else "student",
                "seed": 0,
                "data": {"dataset": "shapes", "batch_size": 64, "options": OPTIONS},
                "model": {"name": "cnn_small"},
                "teachers": [{"source": "shipped:shapes"}] if distill else [],
                "distill": {"methods": methods, "ce_weight": ce_weight},
                "optim": {"name": "sgd", "lr": 0.05, "nesterov": True},
                "schedule": {"name": "cosine", "warmup_epochs": 0.2},
                "train": {"epochs": EPOCHS, "max_steps": MAX_STEPS},
            })


        students = {
            "scratch": run(shapes_config("none"), dataset=data).student,
            "kd": run(shapes_config("0.9*kd", 0.1), dataset=data, teachers=[teacher]).student,
            "cat_kd": run(shapes_config("cat_kd"), dataset=data, teachers=[teacher]).student,
        }
        with torch.inference_mode():
            print(f"{'teacher':>8}: test accuracy {(teacher(x_test).argmax(1) == y_test).float().mean():.2%}")
            for name, model in students.items():
                model.eval()
                print(f"{name:>8}: test accuracy {(model(x_test).argmax(1) == y_test).float().mean():.2%}")
        """
    ),
    md(
        r"""
        ## Grad-CAM

        Take a convolutional layer's feature maps $A^k$ (here the last one) and the score $y^c$ of the
        class $c$ to explain. Grad-CAM weights each channel by the average gradient of the score with
        respect to it and keeps the positive part:

        $$\alpha_k^c = \frac{1}{HW}\sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
        L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big).$$

        The map is upsampled to the image. `compare_cams` computes it for teacher and student (and any
        extra model) on the same images, compares the maps (Pearson correlation, top-20 % region IoU)
        and, given the object masks, measures localization: **energy in mask** is the share of the map's
        mass on the shape, **context reliance** the share on the background. With `target="predicted"`
        each model explains *its own* decision, which is what we want to audit here. (Shapes are small,
        so even a perfect map at the last layer's 8×8 resolution puts some mass on the background: compare
        the models with each other, not with 0.)
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        The student trained on the confounded labels alone puts clearly more of its evidence on the
        background than the teacher does, and it is wrong on most test images: the background *was* the
        label in training. The KD student's maps sit on the shape about as much as the teacher's, and
        its accuracy follows: the teacher's soft labels do not follow the background, so copying them
        means ignoring it. CAT-KD's result varies a lot from seed to seed in such short runs (see
        `docs/methods.md`). (Fast mode trains for a handful of steps, so its maps are close to untrained.)

        ## Eigen-CAM

        Eigen-CAM needs no gradient and no class: it projects the layer's activations on their first
        principal component, $L_{\\text{Eigen-CAM}} = A\\,v_1$ where $v_1$ is the top right singular vector
        of the $(HW \\times C)$ activation matrix (sign fixed so the map is mostly positive). It shows what
        the layer responds to most strongly, whatever the class. Grad-CAM answers "where is the evidence
        for class *c*?"; Eigen-CAM answers "what stands out to this layer?". Change the target and only
        the Grad-CAM map moves. Eigen-CAM still catches the shortcut: it shows what a layer responds to,
        and the scratch student's last layer responds to the background.
        """
    ),
    code(
        """
        from workbench.analysis import compute_cams

        other = (y_test + 1) % 10  # explain a wrong class instead of the label
        for method in ("gradcam", "eigencam"):
            a = compute_cams(teacher, x_test[:32], method=method, target="label", labels=y_test[:32]).maps
            b = compute_cams(teacher, x_test[:32], method=method, target=other[:32]).maps
            corr = np.mean([np.corrcoef(p.ravel(), q.ravel())[0, 1] for p, q in zip(a, b) if p.std() > 0 and q.std() > 0])
            print(f"{method:>9}: label map vs wrong-class map, mean correlation {corr:.2f}")

        eigen = compare_cams(teacher, students["kd"], x_test, y_test, method="eigencam",
                             extra={"scratch": students["scratch"]}, masks=masks)
        for name, loc in (("teacher", eigen.teacher_localization), ("kd", eigen.student_localization),
                          ("scratch", eigen.extra_localization["scratch"])):
            print(f"Eigen-CAM context reliance, {name:>7}: {np.nanmean(loc.context_reliance):.2f}")
        """
    ),
    md(
        """
        ## The `CamExplorer` panel

        The panel shows teacher, student and (optionally) the scratch student's maps side by side. Its
        controls choose the **method** (any CAM of the workbench), the **layer** of each model, the
        **target** (the true label, each model's own prediction, or the teacher's), and which images to
        show (random, a class, or where teacher and student *disagree*).
        """
    ),
    code(
        """
        from workbench.widgets import CamExplorer

        explorer = CamExplorer(teacher, students["kd"], x_test, y_test, scratch=students["scratch"],
                               class_names=data.class_names, method="gradcam", target="predicted", n_images=4,
                               mean=data.mean, std=data.std)
        display(explorer)
        """
    ),
    code(
        """
        explorer.set(method="eigencam")
        print("method:", explorer.value("method"), "· images shown:", [int(i) for i in explorer.indices])
        explorer.set(method="gradcam", select="class", **{"class": "star"})
        print("images of class 'star':", [int(i) for i in explorer.indices],
              f"· teacher-student correlation {np.nanmean(explorer.result.pearson):.2f}")
        assert explorer.error is None, explorer.error
        """
    ),
    md(
        """
        ## CAT-KD: transferring the maps

        CAT-KD computes a class activation map for *every* class from the last feature map and the
        classifier weights (Zhou et al.'s CAM), average-pools each to a 2×2 grid, normalises, and makes the
        student's pooled maps match the teacher's. The student is told directly *where* the teacher finds
        evidence for each class. Compare its maps with the KD student's in the panel by making it the
        student (its context reliance was printed above).
        """
    ),
    code(
        """
        cat_explorer = CamExplorer(teacher, students["cat_kd"], x_test, y_test, scratch=students["scratch"],
                                   class_names=data.class_names, method="gradcam", target="predicted", n_images=4,
                                   mean=data.mean, std=data.std)
        display(cat_explorer)
        """
    ),
    md(
        r"""
        ## Exercise 1 · Context reliance by hand

        `maps` holds the scratch student's Grad-CAM maps (of its own predictions) on the test images,
        shape $(N, H, W)$, and
        `masks` the shapes' boolean masks. Compute each image's **context reliance**, the share of the
        map's non-negative mass *outside* the mask, $1 - \sum_{ij} m^+_{ij}\,[\text{mask}_{ij}] /
        \sum_{ij} m^+_{ij}$ with $m^+ = \max(m, 0)$, as a tensor `my_reliance` of shape $(N,)$.
        """
    ),
    code(
        """
        maps = torch.as_tensor(cams.extra["scratch"].maps, dtype=torch.float64)
        object_masks = masks.to(torch.float64)
        """
    ),
    answer(
        """
        # your answer
        positive = maps.clamp(min=0)
        my_reliance = 1 - (positive * object_masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2))
        """,
        wrong="""
        # your answer
        positive = maps.clamp(min=0)
        my_reliance = (positive * object_masks).sum(dim=(1, 2)) / positive.sum(dim=(1, 2))
        """,
    ),
    code(
        """
        reference = cams.extra_localization["scratch"].context_reliance
        check(
            np.allclose(np.asarray(my_reliance, dtype=np.float64), reference, atol=1e-6, equal_nan=True),
            right=f"mean context reliance {np.nanmean(reference):.2f}, as localization_metrics computes it.",
            wrong="not the context reliance: it is the share of the (clamped) map OUTSIDE the mask, per image.",
        )
        """
    ),
    md(
        """
        ## Exercise 2 · Does Eigen-CAM depend on the target?

        Set `eigencam_depends_on_target` to `True` if the Eigen-CAM map of an image changes when you ask
        it to explain another class, else `False`. The check computes both maps to find out.
        """
    ),
    answer(
        """
        # your answer
        eigencam_depends_on_target = False
        """,
        wrong="""
        # your answer
        eigencam_depends_on_target = True
        """,
    ),
    code(
        """
        m_label = compute_cams(students["kd"], x_test[:16], method="eigencam", target="label", labels=y_test[:16]).maps
        m_other = compute_cams(students["kd"], x_test[:16], method="eigencam", target=other[:16]).maps
        depends = not np.allclose(m_label, m_other, atol=1e-6)
        check(
            eigencam_depends_on_target == depends,
            right="Eigen-CAM is class-agnostic: the first principal component of the activations ignores the target.",
            wrong="compare compute_cams(..., method='eigencam') for two different targets: the maps are identical.",
        )
        """
    ),
    md(
        """
        ## References

        * R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra. *Grad-CAM: Visual
          Explanations from Deep Networks via Gradient-based Localization.* ICCV 2017.
        * M. B. Muhammad, M. Yeasin. *Eigen-CAM: Class Activation Map using Principal Components.* IJCNN 2020.
        * B. Zhou, A. Khosla, A. Lapedriza, A. Oliva, A. Torralba. *Learning Deep Features for
          Discriminative Localization* (CAM). CVPR 2016.
        * Z. Guo, H. Yan, H. Li, X. Lin. *Class Attention Transfer Based Knowledge Distillation* (CAT-KD).
          CVPR 2023.
        * H. Wang, Z. Wang, M. Du, F. Yang, Z. Zhang, S. Ding, P. Mardziel, X. Hu. *Score-CAM:
          Score-Weighted Visual Explanations for Convolutional Neural Networks.* CVPR Workshops 2020
          (the energy-based pointing game behind "energy in mask").
        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
        """
    ),
]


# ---- lesson 4 -------------------------------------------------------------------------------------

LESSON_4 = [
    md(
        """
        # Lesson 4 · Feature similarity with CKA

        Two networks can agree on every prediction and still compute them differently. **Centered kernel
        alignment** (CKA; Kornblith, Norouzi, Lee & Hinton 2019) compares what two layers represent, given
        their activations on the same examples, even when the layers have different widths.

        **Learning goals.** After this lesson you can

        1. state linear CKA and compute it;
        2. show numerically what it is invariant to (orthogonal transforms, isotropic scaling) and what it
           is not (arbitrary invertible linear maps);
        3. read a teacher-student CKA heatmap: which student layer lines up with which teacher layer;
        4. follow the alignment over training in the `SimilarityExplorer` panel.
        """
    ),
    setup_cell("lesson04"),
    md(
        r"""
        ## Linear CKA

        Let $X \in \mathbb{R}^{n \times p_1}$ and $Y \in \mathbb{R}^{n \times p_2}$ be the activations of two
        layers on the same $n$ examples (one row per example, flattened), each column centred. Then

        $$\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F \, \lVert Y^\top Y \rVert_F}
        \in [0, 1].$$

        Equivalently it compares the $n \times n$ similarity (Gram) matrices $XX^\top$ and $YY^\top$:
        CKA looks at *how examples relate to each other* in each layer, not at individual neurons,
        which is why layers of different widths can be compared. `workbench.analysis.linear_cka`
        computes it (in float64).
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        **Invariant:** orthogonal transforms (rotations, reflections, permutations of neurons), isotropic
        scaling, and shifts (the columns are centred). These change nothing about the geometry of the
        examples, so CKA is exactly 1. **Not invariant:** per-feature rescaling and general invertible
        linear maps, which stretch some directions more than others. Kornblith et al. argue this is a
        feature: a measure invariant to every invertible linear map (like CCA) cannot tell layers apart
        once their width reaches the number of examples. Unrelated random features are not at 0 with the
        biased estimator; the *debiased* estimator (`debiased=True`, the default of `cka_matrix`) removes
        most of that offset.
        """
    ),
    code(
        """
        Y = cases["unrelated: random"]
        print(f"biased: {linear_cka(X, Y):.4f} · debiased: {linear_cka(X, Y, debiased=True):.4f}")
        """
    ),
    md(
        """
        ## Teacher vs. student, layer by layer

        Now real networks: the shipped MNIST teacher (`cnn_large`, three stages of 32-64-128 channels)
        and a `cnn_small` student (16-32-64) distilled from it with KD. The run is stored with a
        checkpoint per epoch, so we can also look at the student *during* training.
        """
    ),
    code(
        """
        import dataclasses

        import numpy as np

        from workbench.data import load_dataset
        from workbench.train import load_shipped_teacher, run
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
                "kind": "distill" if distill else "student",
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
        """
    ),
    md(
        """
        `cka_matrix` computes CKA between every teacher layer (rows) and every student layer (columns) in
        one pass over the images (minibatch CKA, Nguyen, Raghu & Kornblith 2021). By default the layers are
        each model's stage outputs followed by its penultimate embedding. A teacher against itself gives 1
        on the diagonal; a good student should show a bright diagonal too: its first stage like the
        teacher's first stage, and so on.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        Early layers compute generic edge and stroke detectors, and any two MNIST networks agree there.
        The difference is in the deep layers: the distilled student's last stage and embedding line up
        more closely with the teacher's than the scratch student's do, because KD asks the student to
        reproduce the teacher's outputs, which are computed from exactly those layers. (At full size;
        fast mode trains too briefly to show it.)
        """
    ),
    md(
        """
        ## The `SimilarityExplorer` panel

        The panel draws the CKA heatmap; its **epoch** slider switches between the student's per-epoch
        snapshots (`0` is the student you passed), **kernel** switches to RBF CKA, and **view** to a 2-D
        embedding of both models' penultimate features.
        """
    ),
    code(
        """
        from workbench.widgets import SimilarityExplorer

        stored = store.load(kd.run_id)
        snapshots = {epoch: stored.load_model(name, device=device) for epoch, name in stored.epoch_checkpoints()}
        print("snapshots:", sorted(snapshots))
        similarity = SimilarityExplorer(teacher, kd_student, images, labels=labels, snapshots=snapshots,
                                        kernel="linear", class_names=data.class_names)
        display(similarity)
        """
    ),
    code(
        """
        for epoch in sorted(snapshots):
            similarity.set(epoch=epoch)
            assert similarity.error is None, similarity.error
            print(f"epoch {epoch}: matching layers " + ", ".join(f"{v:.2f}" for v in np.diag(similarity.result.matrix)))
        similarity.set(view="embedding")
        """
    ),
    md(
        """
        ## Exercise 1 · Invariance to orthogonal transforms

        Build your own orthogonal matrix `R` of size `d × d` (hint: the `Q` factor of a QR decomposition of
        a random matrix, `torch.linalg.qr`), and set `cka_rotated` to the linear CKA between `X` and `X @ R`.
        """
    ),
    answer(
        """
        # your answer
        R, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
        cka_rotated = linear_cka(X, X @ R)
        """,
        wrong="""
        # your answer
        R = torch.randn(d, d, dtype=torch.float64)
        cka_rotated = linear_cka(X, X @ R)
        """,
    ),
    code(
        """
        R_ = torch.as_tensor(R, dtype=torch.float64)
        orthogonal = R_.shape == (d, d) and torch.allclose(R_.T @ R_, torch.eye(d, dtype=torch.float64), atol=1e-8)
        check(
            orthogonal and abs(float(cka_rotated) - 1.0) < 1e-8,
            right="R is orthogonal and CKA(X, X R) = 1: rotating the features changes no example's geometry.",
            wrong=f"R is {'orthogonal' if orthogonal else 'not orthogonal (RᵀR ≠ I)'} and CKA = {float(cka_rotated):.4f}; "
                  "take the Q of torch.linalg.qr(torch.randn(d, d)).",
        )
        """
    ),
    md(
        """
        ## Exercise 2 · Which student layer matches the teacher's last stage?

        From `result` (the teacher vs KD-student CKA matrix: rows `result.teacher_layers`, columns
        `result.student_layers`), set `best_match` to the name of the student layer most similar to the
        teacher's last stage, `"features.2"`.
        """
    ),
    answer(
        """
        # your answer
        row = result.teacher_layers.index("features.2")
        best_match = result.student_layers[int(np.argmax(result.matrix[row]))]
        """,
        wrong="""
        # your answer
        row = result.teacher_layers.index("features.2")
        best_match = result.student_layers[int(np.argmin(result.matrix[row]))]
        """,
    ),
    code(
        """
        row_values = result.matrix[result.teacher_layers.index("features.2")]
        expected = result.student_layers[int(np.argmax(row_values))]
        check(
            best_match == expected,
            right=f"{expected!r} (CKA {row_values.max():.2f}) lines up with the teacher's last stage.",
            wrong=f"{best_match!r} is not the largest entry of the teacher's 'features.2' row.",
        )
        """
    ),
    md(
        """
        ## References

        * S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations
          Revisited.* ICML 2019.
        * T. Nguyen, M. Raghu, S. Kornblith. *Do Wide and Deep Networks Learn the Same Things? Uncovering
          How Neural Network Representations Vary with Width and Depth.* ICLR 2021 (minibatch CKA).
        * L. Song, A. Smola, A. Gretton, J. Bedo, K. Borgwardt. *Feature Selection via Dependence
          Maximization.* JMLR 13, 2012 (the unbiased HSIC estimator).
        * G. Hinton, O. Vinyals, J. Dean. *Distilling the Knowledge in a Neural Network.* arXiv:1503.02531, 2015.
        """
    ),
]


LESSONS = {
    "01_what_is_distillation": LESSON_1,
    "02_tour_of_methods": LESSON_2,
    "03_class_activation_maps": LESSON_3,
    "04_feature_similarity": LESSON_4,
}


def main(argv: list[str]) -> int:
    """Write the lessons (all, or those whose names start with an argument) into ``notebooks/``."""
    OUT.mkdir(exist_ok=True)
    for name, cells in LESSONS.items():
        if argv and not any(name.startswith(a) for a in argv):
            continue
        nb = notebook(cells, name[:2])
        nbformat.validate(nb)
        path = OUT / f"{name}.ipynb"
        path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({len(nb.cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
