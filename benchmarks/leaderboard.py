"""The methods leaderboard as ONE experiment through the job queue: every distillation method x
several seeds, 1 epoch on the embedded MNIST subset, trained by real worker processes, timed with
``--max-jobs 1`` and ``2``; each method's seed spread and its paired gain over ``none``.

    python benchmarks/leaderboard.py                                  # 20 methods x 3 seeds (long: ~30+ min)
    python benchmarks/leaderboard.py --methods 3 --seeds 2 --no-docs  # a quick check

Each ``--max-jobs`` setting trains the whole experiment into its own fresh store
(``--runs``/jobs-<k>, emptied first), so the wall times compare the same work; the seed spread
comes from the first setting. The experiment and its rows are the library's leaderboard
(:mod:`workbench.experiments.leaderboard`: each method's own objective, ``OBJECTIVES``), as on the
app's Leaderboard page, with the methods table's student, optimiser and schedule. Figures go to docs/benchmarks.md (section
``leaderboard``) unless ``--no-docs``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402
from methods_table import ASSISTANT, TRAINING  # noqa: E402

from workbench.distill import list_methods  # noqa: E402
from workbench.experiments import group_runs, group_table  # noqa: E402
from workbench.experiments.leaderboard import leaderboard_rows, method_name  # noqa: E402
from workbench.experiments.leaderboard import leaderboard_spec as board_spec  # noqa: E402
from workbench.jobs import JobQueue  # noqa: E402
from workbench.runs import RunStore  # noqa: E402
from workbench.sweep import (  # noqa: E402
    SweepSpec,
    estimate_seconds,
    experiment_status,
    format_seconds,
    submit_experiment,
)


def leaderboard_spec(methods: list[str], seeds: list[int], epochs: int) -> SweepSpec:
    """The leaderboard as one experiment on the embedded MNIST subset: the library's spec (a grid over
    the `distill` section, one entry per method) with the methods table's training settings."""
    return board_spec(
        f"leaderboard-{len(methods)}m-{len(seeds)}s-{epochs}e",
        dataset="mnist",
        student="cnn",
        teacher="shipped:mnist",
        epochs=epochs,
        methods=methods,
        seeds=seeds,
        config={**TRAINING, "data": {"batch_size": 64}},
        params={"takd": {"assistants": [ASSISTANT]}},
    )


def run_once(spec: SweepSpec, root: Path, max_jobs: int, poll: float) -> dict[str, Any]:
    """Train ``spec`` into a fresh store at ``root`` with ``max_jobs`` workers; wall time from
    submit to the last trial's end, the estimate made at submit, the final states."""
    shutil.rmtree(root, ignore_errors=True)
    queue = JobQueue(root, max_jobs=max_jobs, reserve=0)
    t0 = time.perf_counter()
    sub = submit_experiment(spec, queue)
    print(sub.line(), flush=True)
    seen: dict[str, str] = {}
    while True:
        queue.pump()
        status = experiment_status(root, spec.name)
        for t in status.trials:
            if seen.get(t.key) != t.state and t.state in ("completed", "failed", "stopped"):
                print(f"  {t.group[:70]} seed {t.seed}: {t.state} {t.error or ''}", flush=True)
            seen[t.key] = t.state
        if not status.active:
            break
        time.sleep(poll)
    wall = time.perf_counter() - t0
    return {
        "max_jobs": max_jobs,
        "threads": queue.threads,
        "wall": wall,
        "estimate": sub.estimate.total,
        "status": status,
    }


def method_rows(store: Path, status: Any) -> list[dict[str, Any]]:
    """The leaderboard's rows (best first): per method its mean, std, min, max and n over seeds of
    the test accuracy (points) and the paired gain over scratch with its 95 % interval."""
    runs = RunStore(store)
    groups = group_runs([runs.load(i) for i in status.run_ids("completed")])
    spread = {r["group"]: r for r in group_table(groups, "test_acc")}
    label = {method_name(g): g.label for g in groups}
    rows = leaderboard_rows(groups, "test_acc")
    for r in rows:
        r["min"], r["max"] = 100 * spread[label[r["method"]]]["min"], 100 * spread[label[r["method"]]]["max"]
    return rows


def load_note(before: float) -> str:
    """The machine's load over the run: the 1-minute load average at its start and its end."""
    after = os.getloadavg()[0]
    busy = before >= 1.0 or after >= 2.5
    tail = "other work shared the cores, so the seconds are noisy" if busy else "a quiet machine"
    return f"Load: 1-minute load average {before:.1f} at the start, {after:.1f} at the end ({tail})."


def full_run_note(spec: SweepSpec, args: argparse.Namespace) -> list[str]:
    """For a reduced run: the full leaderboard's command and its estimated wall times."""
    methods = list_methods()
    if len(spec.grid["distill"]) == len(methods) and len(spec.seeds) >= 3:
        return []
    full = leaderboard_spec(methods, [0, 1, 2], args.epochs)
    times = ", ".join(
        f"{format_seconds(estimate_seconds(full, max_jobs=k).total)} with `--max-jobs {k}`"
        for k in args.max_jobs
    )
    return [
        f"A reduced run. The full leaderboard ({len(methods)} methods x 3 seeds) is "
        f"`python benchmarks/leaderboard.py --epochs {args.epochs} --max-jobs {' '.join(map(str, args.max_jobs))}`; "
        f"estimated from FLOPs at {times}.",
        "",
    ]


def render(
    args: argparse.Namespace,
    spec: SweepSpec,
    timings: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    note: str,
) -> str:
    """The docs section."""
    n_methods = len(spec.grid["distill"])
    cmd = f"python benchmarks/leaderboard.py --methods {n_methods} --seeds {len(spec.seeds)} --epochs {args.epochs}"
    lines = [
        "## Methods leaderboard as one experiment",
        "",
        f"`{cmd} --max-jobs {' '.join(map(str, args.max_jobs))}` — {n_methods} methods x {len(spec.seeds)} seeds "
        f"= {n_methods * len(spec.seeds)} trials, {args.epochs} epoch(s) each on the embedded MNIST subset "
        "(12,000 train / 2,000 test), student `cnn` (16-32-64, one conv per stage), teacher `shipped:mnist`, "
        "objectives of the methods table; submitted as ONE experiment (`workbench.sweep.submit_experiment`) "
        "and trained by the job queue's worker processes. Wall time from submit to the last trial's end "
        "(worker start-up included); the estimate is the one made at submit.",
        f"Machine: {machine()}. {note}",
        "",
        *full_run_note(spec, args),
        "| `--max-jobs` | threads per worker | wall time | estimate at submit | completed | failed |",
        "|---|---|---|---|---|---|",
    ]
    for t in timings:
        counts = t["status"].counts
        lines.append(
            f"| {t['max_jobs']} | {t['threads']} | {format_seconds(t['wall'])} ({t['wall']:.0f} s) | "
            f"{format_seconds(t['estimate'])} | {counts['completed']} | {counts['failed']} |"
        )
    if len(timings) > 1:
        lines += [
            "",
            f"Speed-up of `--max-jobs {timings[-1]['max_jobs']}` over `--max-jobs {timings[0]['max_jobs']}`: "
            f"{timings[0]['wall'] / timings[-1]['wall']:.2f}x.",
        ]
    lines += [
        "",
        f"Seed spread of each method (test accuracy, %, over the seeds of the `--max-jobs {timings[0]['max_jobs']}` "
        "run; std with ddof=1), and the paired gain over `none` seed by seed with its 95 % Student-t interval:",
        "",
        "| method | mean | std | min | max | n | vs `none` (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['method']}` | {r['mean']:.2f} | {r['std']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['n']} | "
            f"{r['vs scratch'] or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        type=int,
        default=None,
        help="the first N methods of the registry, `none` first (default: all)",
    )
    parser.add_argument("--method-names", nargs="+", default=None, help="these methods instead")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--runs", default="runs/leaderboard", help="stores go to <runs>/jobs-<k> (emptied first)"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between queue passes")
    parser.add_argument(
        "--no-docs", action="store_true", help="print the section, do not write docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    methods = args.method_names or list_methods()[: args.methods]
    spec = leaderboard_spec(methods, list(range(args.seeds)), args.epochs)
    before = os.getloadavg()[0]
    timings = []
    for k in args.max_jobs:
        print(f"--max-jobs {k}", flush=True)
        timings.append(run_once(spec, Path(args.runs) / f"jobs-{k}", k, args.poll))
        print(f"--max-jobs {k}: {timings[-1]['wall']:.1f} s", flush=True)
    rows = method_rows(Path(args.runs) / f"jobs-{args.max_jobs[0]}", timings[0]["status"])
    body = render(args, spec, timings, rows, load_note(before))
    print(body)
    if not args.no_docs:
        write_section("leaderboard", body)
        print("written: docs/benchmarks.md (section leaderboard)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
