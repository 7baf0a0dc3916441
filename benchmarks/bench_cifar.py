"""A CIFAR-scale KD epoch on this CPU, with its FLOP arithmetic.

The recipe ``cifar10-resnet20-resnet8`` (workbench.recipes: batch 64, SGD, random crop with
4-pixel padding and horizontal flips, KD ``0.1 * CE + 0.9 * KD`` at T = 4) runs through the engine
(the real :class:`~workbench.train.Trainer`, data read from CIFAR-10 python pickles) on 50,000
random 32x32x3 training images and 10,000 test images written in the standard layout
(``data_batch_1..5``, ``test_batch``, ``batches.meta``) into a temporary folder. Random pixels
cost what real ones cost; accuracy is not the point here.

Measured in one process: each run's training steps after ``--warmup`` steps (the mean step from
the end of step ``warmup`` to the end of step ``max_steps``), its set-up and its test evaluation;
a full epoch of 782 steps is extrapolated from the measured steps (said so in the report). Runs:
the KD student with the engine's default layout (channels-last on the CPU) and with the plain
NCHW layout, the resnet8 student trained from labels alone (its steps without a teacher), a bare
PyTorch loop of the same student steps (no engine), and the resnet20 teacher trained from labels
(for the 240-epoch teacher time). The arithmetic: forward FLOPs per image (``model_info``:
2 x MACs of convs and linear layers), a training step as 3 x the forward (backward about 2 x),
the machine's float32 matrix-product peak (the best of repeated 2048^3 products, timed in the
same run), and each run's FLOP rate as a share of that peak, on the wall clock and on the process's
CPU clock (its own CPU seconds, which other processes on a shared machine disturb far less; there,
``--threads 1`` keeps a waiting second thread from spinning and billing CPU seconds). Target: the
student's steps at >= 60 % of the peak. No GPU is measured here.

    python benchmarks/bench_cifar.py [--max-steps 40] [--warmup 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import load_note, machine, write_section  # noqa: E402

from workbench.config import validate_config  # noqa: E402
from workbench.models import create_model, model_info  # noqa: E402
from workbench.recipes import EPOCHS, get_recipe  # noqa: E402
from workbench.train import EvalEnded, SetupProgress, StepEnded, Trainer  # noqa: E402

RECIPE = "cifar10-resnet20-resnet8"
N_TRAIN, N_TEST = 50_000, 10_000
TARGET = 0.60  # the student's step FLOP rate as a share of the float32 peak


def write_cifar10(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with ``n_train`` random training images in five batches, ``n_test``
    test images and the ten class names, as the CIFAR-10 python version lays them out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def dump(name: str, obj: dict) -> None:
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))

    per = n_train // 5
    for i in range(1, 6):
        data = rng.integers(0, 256, (per, 3072), dtype=np.uint8)
        dump(f"data_batch_{i}", {b"data": data, b"labels": rng.integers(0, 10, per).tolist()})
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    dump("test_batch", {b"data": test, b"labels": rng.integers(0, 10, n_test).tolist()})
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    dump("batches.meta", {b"label_names": names, b"num_cases_per_batch": per})
    return root


def matmul_peak(n: int = 2048, repeats: int = 10) -> tuple[float, float]:
    """This machine's float32 matrix-product speed in GFLOP/s, the best of ``repeats`` n x n products
    (the practical peak that conv layers, lowered to such products by oneDNN, can approach): on the
    wall clock, and on the process's CPU clock (all threads' seconds, which other processes on a
    shared machine disturb far less)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / cpu / 1e9


def engine_run(config: dict[str, Any], teacher: torch.nn.Module | None, warmup: int) -> dict[str, float]:
    """One engine run of ``config``: set-up seconds (to the first step), the first step, the mean
    step after ``warmup`` steps (wall and process-CPU seconds), the test evaluation's seconds."""
    marks: dict[str, float] = {}
    steps: list[tuple[float, float]] = []

    def listen(event: Any) -> None:
        now = (time.perf_counter(), time.process_time())
        if isinstance(event, SetupProgress) and event.phase == "ready":
            marks["ready"], marks["cpu_ready"] = now
        elif isinstance(event, StepEnded):
            steps.append(now)
        elif isinstance(event, EvalEnded):
            marks["eval"], marks["cpu_eval"] = now

    cfg = validate_config(config)
    t0 = time.perf_counter()
    Trainer(cfg, teachers=[teacher] if teacher is not None else None, subscribers=[listen]).run()
    n = len(steps) - warmup
    return {
        "setup": marks["ready"] - t0,
        "first": steps[0][0] - marks["ready"],
        "step": (steps[-1][0] - steps[warmup - 1][0]) / n,
        "cpu_step": (steps[-1][1] - steps[warmup - 1][1]) / n,
        "eval": marks["eval"] - steps[-1][0],
        "cpu_first": steps[0][1] - marks["cpu_ready"],
        "cpu_eval": marks["cpu_eval"] - steps[-1][1],
        "steps": float(n),
    }


def bare_loop(
    student: torch.nn.Module, batch: int, steps: int, warmup: int, channels_last: bool
) -> tuple[float, float]:
    """Wall and process-CPU seconds per training step of ``student`` in a bare PyTorch loop (SGD, CE,
    one random batch already in memory, no augmentation, no engine), mean over ``steps`` after
    ``warmup``."""
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    student = student.to(memory_format=fmt).train()
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        loss = F.cross_entropy(student(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def _short(config: dict[str, Any], max_steps: int, memory_format: str = "auto") -> dict[str, Any]:
    config["train"].update(
        {
            "max_steps": max_steps,
            "snapshot_every_epoch": False,
            "step_log_every": 0,
            "memory_format": memory_format,
        }
    )
    return config


def measure(root: Path, max_steps: int, warmup: int) -> dict[str, Any]:
    """Every timing and FLOP count of the report."""
    recipe = get_recipe(RECIPE)
    torch.manual_seed(0)
    teacher = create_model(recipe.teacher, num_classes=10, in_channels=3, image_size=32)
    student = create_model(recipe.student, num_classes=10, in_channels=3, image_size=32)
    out: dict[str, Any] = {
        "t_flops": model_info(teacher, (3, 32, 32)).flops,
        "s_flops": model_info(student, (3, 32, 32)).flops,
        "peak": matmul_peak(),
    }
    kd = recipe.config(root=str(root), method="kd")
    out["kd"] = engine_run(_short(kd, max_steps), teacher, warmup)
    out["kd_nchw"] = engine_run(
        _short(recipe.config(root=str(root)), max_steps, "contiguous"), teacher, warmup
    )
    out["scratch"] = engine_run(_short(recipe.config(root=str(root), method="none"), max_steps), None, warmup)
    out["bare"] = bare_loop(student, 64, max_steps, warmup, channels_last=True)
    out["teacher"] = engine_run(_short(recipe.teacher_config(root=str(root)), max_steps), None, warmup)
    out["peak_end"] = matmul_peak()
    return out


def _share(flops: float, seconds: float, peak: float) -> float:
    return flops / seconds / 1e9 / peak


def _rate_row(what: str, flops: float, wall: float, cpu: float, peaks: tuple[float, float]) -> str:
    rate = flops / wall / 1e9
    return (
        f"| {what} | {rate:.0f} GFLOP/s = {100 * rate / peaks[0]:.0f}% of the wall-clock peak; "
        f"{100 * _share(flops, cpu, peaks[1]):.0f}% on the CPU clock |"
    )


def _epoch(r: dict[str, float], spe: int) -> float:
    return r["setup"] + r["first"] + (spe - 1) * r["step"] + r["eval"]


def _cpu_epoch(r: dict[str, float], spe: int) -> float:
    """An epoch's training steps and test evaluation in CPU seconds (set-up left out)."""
    return r["cpu_first"] + (spe - 1) * r["cpu_step"] + r["cpu_eval"]


def _run_row(what: str, r: dict[str, float], spe: int) -> str:
    return (
        f"| {what} | {r['setup']:.2f} | {r['first']:.2f} | {r['step']:.3f} ({r['cpu_step']:.3f}) "
        f"| {r['eval']:.1f} | {_epoch(r, spe) / 60:.1f} min |"
    )


def report(m: dict[str, Any], args: argparse.Namespace, load_before: float, spe: int) -> str:
    """The section of docs/benchmarks.md."""
    t, s = m["t_flops"], m["s_flops"]
    peaks = (max(m["peak"][0], m["peak_end"][0]), max(m["peak"][1], m["peak_end"][1]))
    s_step, kd_step, t_step = 3 * s * 64, (3 * s + t) * 64, 3 * t * 64
    kd, nchw, scratch, teach = m["kd"], m["kd_nchw"], m["scratch"], m["teacher"]
    bare_wall, bare_cpu = m["bare"]
    wall_share = _share(s_step, scratch["step"], peaks[0])
    cpu_share = _share(s_step, scratch["cpu_step"], peaks[1])
    verdict = "met" if cpu_share >= TARGET else "NOT met"
    if cpu_share >= TARGET:
        why = (
            f"The student's steps reach {100 * cpu_share:.0f}% of the peak on the CPU clock although its "
            "convolutions are small"
        )
    else:
        why = f"The student's steps reach {100 * cpu_share:.0f}% of the peak on the CPU clock: its convolutions are small"
    teacher_epoch = _epoch(teach, spe) - teach["setup"]
    threads = f" --threads {args.threads}" if getattr(args, "threads", 0) else ""
    threads_used = torch.get_num_threads()
    rows = "\n".join(
        [
            _run_row("KD resnet20 -> resnet8, channels-last (the engine's CPU default)", kd, spe),
            _run_row("KD, NCHW layout (`train.memory_format: contiguous`)", nchw, spe),
            _run_row("resnet8 from labels (no teacher)", scratch, spe),
            f"| resnet8 steps in a bare PyTorch loop (no engine, no augmentation) | | | {bare_wall:.3f} "
            f"({bare_cpu:.3f}) | | |",
            _run_row("resnet20 teacher from labels", teach, spe),
        ]
    )
    rates = "\n".join(
        [
            _rate_row(
                "student steps in the engine (resnet8 from labels)",
                s_step,
                scratch["step"],
                scratch["cpu_step"],
                peaks,
            ),
            _rate_row("student steps in the bare loop", s_step, bare_wall, bare_cpu, peaks),
            _rate_row(
                "KD steps (student training + teacher forward)", kd_step, kd["step"], kd["cpu_step"], peaks
            ),
            _rate_row(
                "teacher training steps (resnet20 from labels)",
                t_step,
                teach["step"],
                teach["cpu_step"],
                peaks,
            ),
        ]
    )
    return f"""## CIFAR recipe on the CPU

`python benchmarks/bench_cifar.py --max-steps {args.max_steps} --warmup {args.warmup}{threads}` — recipe
`{RECIPE}` (teacher resnet20, student resnet8, batch 64, crop + flip, KD 0.1 CE + 0.9 KD at T=4)
through the engine, on {N_TRAIN:,} random 32x32x3 training images and {N_TEST:,} test images written
as CIFAR-10 python pickles. Each run trains {args.max_steps} steps; the step time is the mean after
{args.warmup} warm-up steps, and **a full epoch ({spe} steps) is extrapolated** from it: set-up +
first step + {spe - 1} x the mean step + the measured test evaluation. GPU time is not measured here.
Machine: {machine()}. {load_note(load_before)}

| run | set-up s | first step s | mean step s (CPU s, all threads) | test eval s | one epoch, extrapolated |
|---|---|---|---|---|---|
{rows}

### The arithmetic

A training step counts 3 x the forward FLOPs (the backward about twice the forward); FLOPs are
2 x the multiply-accumulates of convs and linear layers (`workbench.models.model_info`). Each rate
is a share of the matrix-product peak on the wall clock and, less disturbed by other processes on a
shared machine, on the process's CPU clock (FLOPs per CPU second of all threads against the same
for the peak's products).

| quantity | value |
|---|---|
| student resnet8 forward | {s / 1e6:.1f} MFLOP per image |
| student training step (batch 64) | {s_step / 1e9:.2f} GFLOP |
| teacher resnet20 forward (every KD step: augmented inputs are not cached) | {t / 1e6:.1f} MFLOP per image, {t * 64 / 1e9:.2f} GFLOP per step |
| float32 matrix-product peak, 2048^3 products, best of 10 (start / end of the run) | {m["peak"][0]:.0f} / {m["peak_end"][0]:.0f} GFLOP/s wall; {m["peak"][1]:.0f} / {m["peak_end"][1]:.0f} GFLOP per CPU second |
{rates}
| student step seconds at {100 * TARGET:.0f}% of the wall-clock peak | {s_step / (TARGET * peaks[0] * 1e9):.3f} s (measured {scratch["step"]:.3f} s) |

| target | figure | |
|---|---|---|
| the student's training steps at >= {100 * TARGET:.0f}% of the float32 peak, CPU clock | {100 * cpu_share:.0f}% ({100 * wall_share:.0f}% on the wall clock) | {verdict} |

The verdict reads the CPU clock: on a shared machine the wall-clock peak and the steps are slowed by
different amounts (a share above 100 % says so), while both CPU-clock rates count only this
process's own seconds; run with `--threads 1` there, since a second thread waiting on a busy core
spins and bills CPU seconds. {why} (16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps; lowered to
matrix products their inner sizes are 27 to 576, against the 2048 of the peak's products), and batch
norm, ReLU, the loss and the optimizer step move memory without counting as FLOPs.
The bare loop bounds what the engine can reach for these shapes; the engine's student step takes
{scratch["step"] / bare_wall:.2f}x the bare loop's time on the wall clock ({scratch["cpu_step"] / bare_cpu:.2f}x
on the CPU clock), with the augmentation (crop, flip), normalisation and metrics the loop skips. The
KD step in the NCHW layout takes {nchw["step"] / kd["step"]:.2f}x the channels-last step's time
({nchw["cpu_step"] / kd["cpu_step"]:.2f}x on the CPU clock). torch.compile is not used by the engine and
was not tried.

### Training a CIFAR-10 teacher here

resnet20 from labels with the recipe's schedule, one epoch extrapolated as above (test evaluation
included, set-up once per run): {teacher_epoch / 60:.1f} min at this run's wall-clock speed, so
**{EPOCHS} epochs take about {EPOCHS * teacher_epoch / 3600:.0f} hours** on this CPU as loaded here;
counted in the process's CPU seconds ({_cpu_epoch(teach, spe) / 60:.1f} CPU-min per epoch, {threads_used}
torch thread(s)), about {EPOCHS * _cpu_epoch(teach, spe) / 3600:.0f} CPU-hours: the wall time one thread
takes on an otherwise idle core. The resnet20 -> resnet8 KD student: about
{EPOCHS * (_epoch(kd, spe) - kd["setup"]) / 3600:.0f} hours at this run's speed,
{EPOCHS * _cpu_epoch(kd, spe) / 3600:.0f} CPU-hours. GPU time is not measured here. On this
machine a recipe is for a few epochs (`--epochs N`: the milestones scale with it).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=40, help="training steps per run (a partial epoch)")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the mean")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write the doc")
    args = parser.parse_args(argv)
    if not 1 <= args.warmup < args.max_steps:
        parser.error("--warmup must be at least 1 and below --max-steps")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    spe = -(-N_TRAIN // 64)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cifar10(Path(tmp))
        measured = measure(root, args.max_steps, args.warmup)
    body = report(measured, args, load_before, spe)
    print(body)
    if not args.no_write:
        write_section("cifar", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
