"""Analyses and training on a CUDA GPU; prints "no CUDA device: skipped" where there is none.

1. 2-D loss landscape of resnet8 on 1,000 samples, 21 x 21 and 51 x 51 grids: one grid point per
   forward call (``points_per_batch=1``, the CPU's way) vs several points per vmapped call
   (``"auto"`` and a few fixed counts), same values within 1e-5 (targets on an H200: 21 x 21
   <= 0.5 s, 51 x 51 <= 3 s).
2. Minibatch CKA, resnet20 x resnet8, 16 layer pairs, 5,000 samples: float32 Gram matrices vs the
   float64 path, and ``pytorch-cka`` where installed.
3. One KD training epoch (embedded MNIST, ``cnn_small`` student, shipped teacher) on the GPU.

    python benchmarks/bench_gpu.py [--quick]

Writes its section of docs/benchmarks.md only when it ran on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from workbench.analysis import cka_matrix, landscape_2d  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.models import create_model  # noqa: E402
from workbench.models.taps import penultimate_layer, stage_layers  # noqa: E402


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls (device synchronised around each) and the last result."""
    times, out = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_landscape(
    x: torch.Tensor, y: torch.Tensor, model: torch.nn.Module, steps: int, repeats: int
) -> list:
    rows = []
    ref = None
    for ppb in (1, "auto", 8, 16, 32, 64):
        secs, res = _timed(
            lambda ppb=ppb: landscape_2d(None, model, x, y, steps=steps, device="cuda", points_per_batch=ppb),
            repeats,
        )
        values = res.values["cross_entropy"]
        ref = values if ref is None else ref
        rows.append(
            {
                "points_per_batch": f"{ppb} ({res.params['points_per_batch']})"
                if ppb == "auto"
                else str(ppb),
                "seconds": secs,
                "diff": float(np.abs(values - ref).max()),
            }
        )
    return rows


def bench_cka(x: torch.Tensor, teacher: torch.nn.Module, student: torch.nn.Module, repeats: int) -> list:
    shape = tuple(x.shape[1:])
    layers = {
        "teacher": [*stage_layers(teacher, shape), penultimate_layer(teacher)],
        "student": [*stage_layers(student, shape), penultimate_layer(student)],
    }
    xs = x.cuda()
    rows = []
    secs, fast = _timed(
        lambda: cka_matrix(teacher, student, xs, layers=layers, batch_size=500, device="cuda"), repeats
    )
    secs64, exact = _timed(
        lambda: cka_matrix(
            teacher,
            student,
            xs,
            layers=layers,
            batch_size=500,
            device="cuda",
            precision="float64",
            fold_bn=False,
        ),
        repeats,
    )
    rows.append(
        {
            "name": "ours, defaults (float32 Gram matrices)",
            "seconds": secs,
            "diff": float(np.abs(fast.matrix - exact.matrix).max()),
        }
    )
    rows.append({"name": 'ours, `precision="float64", fold_bn=False`', "seconds": secs64, "diff": 0.0})
    try:
        import copy

        from cka import compute_cka  # pytorch-cka, optional
        from torch.utils.data import DataLoader, TensorDataset

        loader = DataLoader(TensorDataset(xs), batch_size=500)

        def peer() -> torch.Tensor:
            t, s = copy.deepcopy(teacher), copy.deepcopy(student)
            return compute_cka(
                t,
                s,
                loader,
                layers=layers["teacher"],
                model2_layers=layers["student"],
                device="cuda",
                progress=False,
            )[0]

        secs_p, m = _timed(peer, repeats)
        rows.append(
            {
                "name": "`pytorch-cka` `compute_cka`",
                "seconds": secs_p,
                "diff": float(np.abs(m.double().cpu().numpy() - exact.matrix).max()),
            }
        )
    except ImportError:
        pass
    return rows


def bench_kd_epoch(precision: str = "float32") -> dict[str, float]:
    """Two KD epochs on CUDA with ``distill.teacher_precision = precision``: the first epoch's
    seconds (the teacher forwards fill the cache), the median epoch and the whole call's wall time."""
    from workbench.config import validate_config
    from workbench.train import Trainer

    ds = load_dataset("mnist")
    config = validate_config(
        {
            "kind": "distill",
            "seed": 0,
            "data": {"dataset": "mnist", "batch_size": 64},
            "model": {"name": "cnn_small"},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "constant"},
            "train": {"epochs": 2, "snapshot_every_epoch": False, "device": "cuda"},
            "teachers": [{"source": "shipped:mnist"}],
            "distill": {
                "methods": [{"name": "kd", "weight": 0.9}],
                "ce_weight": 0.1,
                "teacher_precision": precision,
            },
        }
    )
    t0 = time.perf_counter()
    result = Trainer(config, dataset=ds).run()
    wall = time.perf_counter() - t0
    secs = [h["seconds"] for h in result.history]
    return {
        "first": secs[0],
        "wall": wall,
        "seconds": statistics.median(secs),
        "samples": len(ds.train.images),
        "test_acc": result.summary["test_acc"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    repeats = 1 if args.quick else 3
    ds = load_dataset("shapes", n_train=500 if args.quick else 5000, n_test=1000)
    torch.manual_seed(0)
    teacher = create_model("resnet20", num_classes=ds.num_classes, in_channels=3, image_size=32).eval()
    student = create_model("resnet8", num_classes=ds.num_classes, in_channels=3, image_size=32).eval()
    x, y = ds.normalize(ds.test.images[:1000]), ds.test.labels[:1000]
    landscape_2d(None, student, x[:64], y[:64], steps=2, device="cuda", points_per_batch=2)  # warm-up
    land = {
        steps: bench_landscape(x, y, student, steps, repeats)
        for steps in ((5, 9) if args.quick else (21, 51))
    }
    cka = bench_cka(ds.normalize(ds.train.images), teacher, student, repeats)
    kd = None if args.quick else {p: bench_kd_epoch(p) for p in ("float32", "bfloat16")}

    name = torch.cuda.get_device_name()
    lines = [
        "## On a GPU",
        "",
        f"`python benchmarks/bench_gpu.py{' --quick' if args.quick else ''}` — {name}, torch {torch.__version__}; "
        f"medians of {repeats} runs, device synchronised.",
        "",
        "| landscape, resnet8, 1000 samples | points per call | seconds | max abs difference from 1 point per call |",
        "|---|---|---|---|",
    ]
    for steps, rows in land.items():
        for r in rows:
            lines.append(
                f"| {steps}x{steps} | {r['points_per_batch']} | {r['seconds']:.2f} | {r['diff']:.1e} |"
            )
    lines += [
        "",
        "| minibatch CKA, 16 layer pairs | seconds | max abs difference from float64 |",
        "|---|---|---|",
    ]
    lines += [f"| {r['name']} | {r['seconds']:.2f} | {r['diff']:.1e} |" for r in cka]
    if kd is not None:
        n_kd = kd["float32"]["samples"]
        lines += [
            "",
            f"| 2 KD epochs (embedded MNIST, {n_kd} images, `cnn_small` student, shipped teacher, batch 64) "
            "| first epoch (s) | median epoch (s) | wall, set-up included (s) | test acc |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `distill.teacher_precision: {p}` | {r['first']:.2f} | {r['seconds']:.2f} | {r['wall']:.2f} "
            f"| {100 * r['test_acc']:.2f}% |"
            for p, r in kd.items()
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
