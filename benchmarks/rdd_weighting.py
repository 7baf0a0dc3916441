"""Why `rdd` trails `kd` in the methods table: its relative-difficulty weights, measured.

Trains the methods-table student with `kd` and with `rdd` under several weightings (the default
staged TFE -> TSE with weight temperature 1, each stage alone, and flatter weights), on the
methods-table datasets, and records for every variant the test accuracy, the train loss per
epoch, and how concentrated the weights were: the effective sample size
``ESS = (sum w)^2 / sum w^2`` as a fraction of the batch (1 = uniform) and the largest single
weight (the batch mean is 1), separately for the TFE and TSE steps. Writes the `rdd` section of
docs/methods.md.

    python benchmarks/rdd_weighting.py [--epochs 2] [--seeds 0] [--datasets fashion-mnist shapes] [--notes F]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine  # noqa: E402
from methods_table import DATASETS, base_config, method_entry, write_sections  # noqa: E402

import workbench.distill.weighting as weighting  # noqa: E402
from workbench.config import validate_config  # noqa: E402
from workbench.train import Trainer  # noqa: E402

#: (label, method, extra params)
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("kd", "kd", {}),
    ("rdd (default: staged, weight temperature 1)", "rdd", {}),
    ("rdd, TFE only", "rdd", {"mode": "tfe"}),
    ("rdd, TSE only", "rdd", {"mode": "tse"}),
    ("rdd, staged, weight temperature 3", "rdd", {"weight_temperature": 3.0}),
    ("rdd, staged, weight temperature 100 (about uniform)", "rdd", {"weight_temperature": 100.0}),
]


class WeightRecorder:
    """Wraps ``relative_weights`` while a run trains and records each batch's concentration."""

    def __init__(self) -> None:
        self.ess: list[float] = []
        self.peak: list[float] = []
        self._original = weighting.relative_weights

    def __enter__(self) -> WeightRecorder:
        def recorded(difficulty: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
            w = self._original(difficulty, temperature)
            self.ess.append(float(w.sum() ** 2 / (w * w).sum()) / w.numel())
            self.peak.append(float(w.max()))
            return w

        weighting.relative_weights = recorded
        return self

    def __exit__(self, *exc: object) -> None:
        weighting.relative_weights = self._original


def _config(dataset: str, method: str, params: dict[str, Any], epochs: int, seed: int) -> Any:
    entry = method_entry(method)
    entry["methods"][0]["params"] = {**entry["methods"][0]["params"], **params}
    return validate_config({**base_config(dataset, epochs), "seed": seed, "distill": entry})


def _stage_stats(values: list[float], stages: list[str], which: str, fn: Any) -> str:
    picked = [v for v, s in zip(values, stages, strict=True) if s == which]
    return f"{fn(picked):.2f}" if picked else "-"


def run_variant(dataset: str, method: str, params: dict[str, Any], epochs: int, seed: int) -> dict[str, Any]:
    """Train one variant; accuracy, losses per epoch and the weight statistics per stage."""
    cfg = _config(dataset, method, params, epochs, seed)
    trainer = Trainer(cfg)
    with WeightRecorder() as rec:
        result = trainer.run()
    stages: list[str] = []
    if rec.ess:
        rdd = trainer.method.methods[0]
        steps = len(rec.ess)
        stages = [rdd.stage(i, steps) for i in range(steps)]
    return {
        "acc": result.summary["test_acc"],
        "losses": [h["train_loss"] for h in result.history],
        "ess_tfe": _stage_stats(rec.ess, stages, "tfe", statistics.mean),
        "ess_tse": _stage_stats(rec.ess, stages, "tse", statistics.mean),
        "peak_tfe": _stage_stats(rec.peak, stages, "tfe", max),
        "peak_tse": _stage_stats(rec.peak, stages, "tse", max),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--notes", default=None, help="a Markdown file appended to the section (reading)")
    args = parser.parse_args(argv)
    lines = [
        "## Why `rdd` trails `kd`: its weights",
        "",
        f"`python benchmarks/rdd_weighting.py --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))} "
        f"--datasets {' '.join(args.datasets)}` — the methods-table student, teacher and optimiser, "
        f"0.1·CE + 0.9·(method). ESS: effective sample size of the batch weights as a fraction of the "
        f"batch (1 = uniform), mean over steps; peak: the largest weight of any step (batch mean 1). "
        f"Machine: {machine()}.",
    ]
    for dataset in args.datasets:
        lines += [
            "",
            f"### {dataset}",
            "",
            "| variant | test acc | train loss per epoch | ESS TFE | ESS TSE | peak TFE | peak TSE |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, method, params in VARIANTS:
            runs = [run_variant(dataset, method, params, args.epochs, s) for s in args.seeds]
            acc = statistics.mean(r["acc"] for r in runs)
            first = runs[0]
            losses = " → ".join(f"{v:.2f}" for v in first["losses"])
            lines.append(
                f"| {label} | {100 * acc:.2f}% | {losses} | {first['ess_tfe']} | {first['ess_tse']} "
                f"| {first['peak_tfe']} | {first['peak_tse']} |"
            )
            print(lines[-1], flush=True)
    if args.notes:
        lines += ["", Path(args.notes).read_text(encoding="utf-8").strip()]
    write_sections({"rdd": "\n".join(lines)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
