"""The cost of step-level metrics: a `cnn_small` MNIST epoch with step metrics on and off.

Both sides are engine runs writing to a run store (the store writer appends the step log to disk,
as in every real run), on the embedded MNIST subset, in interleaved rounds (the order alternates
every round), after one untimed warm-up of each; the figure is the median over rounds of the
on/off ratio of epoch seconds (training steps only, the engine's ``seconds``). Target: at most 2 %.

A second figure accounts for the same cost from the parts: the seconds of building and appending
one record (measured over many records) times the records of an epoch, plus the per-step check of
whether a step is recorded, over the epoch's seconds.

    python benchmarks/bench_step_metrics.py [--rounds 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import load_note, machine, write_section  # noqa: E402

from workbench.config import validate_config  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.runs import RunStore  # noqa: E402
from workbench.runs.steps import StepLogAppender  # noqa: E402
from workbench.train import Trainer  # noqa: E402
from workbench.train.steplog import StepRecorder, step_log_interval  # noqa: E402

STUDENT = "cnn_small"
BATCH = 64
TARGET = 0.02


def _config(epochs: int, step_log_every: int | None) -> object:
    return validate_config(
        {
            "kind": "student",
            "seed": 0,
            "data": {"dataset": "mnist", "batch_size": BATCH},
            "model": {"name": STUDENT},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "constant"},
            "train": {"epochs": epochs, "snapshot_every_epoch": False, "step_log_every": step_log_every},
        }
    )


def engine_epochs(epochs: int, ds, step_log_every: int | None, root: Path) -> dict[str, float]:
    """One engine run into a run store under ``root``: its median epoch seconds and the number of
    step records it wrote."""
    store = RunStore(root)
    result = Trainer(_config(epochs, step_log_every), dataset=ds, store=store).run()
    return {
        "epoch": statistics.median(h["seconds"] for h in result.history),
        "records": len(store.load(result.run_id).step_metrics()),
    }


def rounds(n: int, epochs: int, ds, root: Path) -> dict[str, list[dict[str, float]]]:
    """``n`` interleaved rounds of an engine run with step metrics (the default, about 50 points
    per epoch) and without (``0``); the order alternates every round, after one warm-up of each."""
    sides = {"on": None, "off": 0}
    for name, every in sides.items():
        engine_epochs(1, ds, every, root / f"warm-{name}")
    out: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    for i in range(n):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            out[name].append(engine_epochs(epochs, ds, sides[name], root / f"{name}-{i}"))
            print(f"round {i + 1}/{n}, step metrics {name}: {out[name][-1]['epoch']:.2f} s / epoch "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return out


def record_cost(root: Path, spe: int, n: int = 2000) -> dict[str, float]:
    """Seconds to build and append one record (a KD-like record with two loss terms, written
    to a step log on disk), and to decide for one step whether it is recorded."""
    root.mkdir(parents=True, exist_ok=True)
    appender = StepLogAppender(root)
    recorder = StepRecorder(step_log_interval(None, spe), spe, spe * 1000)
    hits = torch.tensor(60)
    terms = {"ce": 0.123456789, "kd": 1.23456789}
    t0 = time.perf_counter()
    for step in range(1, n + 1):
        record = recorder.record(
            step=step, epoch=1, loss=1.3580246, terms=terms, lr=0.05, hits=hits, batch_size=BATCH, seen=step * BATCH
        )
        appender.append(record)
    per_record = (time.perf_counter() - t0) / n
    appender.close()
    due = recorder.due
    t0 = time.perf_counter()
    for step in range(1, 100_001):
        due(step, step % spe)
    per_check = (time.perf_counter() - t0) / 100_000
    return {"record": per_record, "check": per_check}


def _report(args: argparse.Namespace, load_before: float, out: dict, cost: dict, n: int, spe: int) -> str:
    on = [r["epoch"] for r in out["on"]]
    off = [r["epoch"] for r in out["off"]]
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    overhead = statistics.median(ratios) - 1
    records = statistics.median(r["records"] for r in out["on"]) / args.epochs
    epoch_off = statistics.median(off)
    accounted = (records * cost["record"] + spe * cost["check"]) / epoch_off
    ok = "met" if overhead <= TARGET else "NOT met"
    return f"""## Step metrics

`python benchmarks/bench_step_metrics.py --rounds {args.rounds} --epochs {args.epochs}` —
embedded MNIST ({n} train images, {spe} steps per epoch), student `{STUDENT}`, batch {BATCH}, SGD,
each run writing to a run store. Machine: {machine()}. {load_note(load_before)}

Step metrics on (`train.step_log_every` unset: every {step_log_interval(None, spe)} steps and each
epoch's last, {records:.0f} records per epoch appended to `steps.jsonl`) against off
(`step_log_every: 0`), {args.rounds} interleaved rounds of {args.epochs}-epoch runs (the order
alternates every round) after one warm-up of each; seconds per epoch are training steps only.

| measurement | seconds / epoch |
|---|---|
| step metrics off (median) | {epoch_off:.3f} |
| step metrics on (median) | {statistics.median(on):.3f} |

| target | figure | |
|---|---|---|
| step-metrics overhead <= 2 % of an epoch (median of the per-round on/off ratios) | {100 * overhead:+.2f} % (rounds: {", ".join(f"{100 * (r - 1):+.1f}" for r in ratios)}) | {ok} |
| the same accounted from its parts: {records:.0f} records x {1e6 * cost["record"]:.0f} us (build + append + flush) + {spe} steps x {1e9 * cost["check"]:.0f} ns (is it recorded?) | {100 * accounted:.3f} % | |

A step that is not recorded costs one comparison: no `.item()`, no clock read, no write. The measured
ratio moves with the load from other processes by more than the step log costs (see the per-round
figures); the accounted figure is the cost itself.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    ds = load_dataset("mnist")
    spe = -(-len(ds.train) // BATCH)
    with tempfile.TemporaryDirectory(prefix="bench-step-metrics-") as tmp:
        root = Path(tmp)
        out = rounds(args.rounds, args.epochs, ds, root)
        cost = record_cost(root / "cost", spe)
    body = _report(args, load_before, out, cost, len(ds.train), spe)
    write_section("step-metrics", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
