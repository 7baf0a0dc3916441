"""The methods table: every distillation method on the embedded Fashion-MNIST and on confounded
`shapes`, one teacher/student pair per dataset, several seeds, equal epochs — run through the
sweep runner — written to docs/methods.md.

    python benchmarks/methods_table.py [--epochs 3] [--seeds 0 1 2] [--workers 1] [--backend local]

Every trial lands in the run store (``--runs``, default ``runs/methods-table``), so an
interrupted table resumes where it stopped.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine  # noqa: E402

from workbench.distill import list_methods  # noqa: E402
from workbench.experiments import group_runs, group_table  # noqa: E402
from workbench.experiments.leaderboard import (  # noqa: E402
    SCRATCH,
    leaderboard_rows,
    leaderboard_spec,
    method_name,
    method_of,
)
from workbench.runs import RunStore, atomic_write_text  # noqa: E402
from workbench.sweep import SweepSpec, run_sweep  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "methods.md"
#: the student of both tables: ``cnn`` with these kwargs; TAKD's assistant sits between it and the teacher
STUDENT_KWARGS: dict[str, Any] = {"channels": [16, 32, 64], "convs_per_stage": 1}
ASSISTANT = {"model": "cnn", "kwargs": {"channels": [24, 48, 96], "convs_per_stage": 1}}
#: what every trial shares beyond the leaderboard's base: optimiser and schedule of the table
TRAINING: dict[str, Any] = {
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 0.2},
    "model": {"kwargs": STUDENT_KWARGS},
}

DATASETS = {
    "fashion-mnist": {"data": {"batch_size": 64}, "teacher": "shipped:fashion-mnist"},
    "shapes": {
        "data": {"batch_size": 64, "options": {"confounding": 0.9, "seed": 0}},
        "teacher": "shipped:shapes",
    },
}


def table_spec(
    dataset: str, methods: list[str], epochs: int, seeds: list[int], backend: str = "local", workers: int = 1
) -> SweepSpec:
    """One dataset's table as the library's leaderboard experiment (each method's own objective,
    :data:`workbench.experiments.leaderboard.OBJECTIVES`), with the table's optimiser and schedule."""
    spec = leaderboard_spec(
        f"methods-{dataset}",
        dataset=dataset,
        student="cnn",
        teacher=DATASETS[dataset]["teacher"],
        epochs=epochs,
        methods=methods,
        seeds=seeds,
        config={**TRAINING, "data": DATASETS[dataset]["data"]},
        params={"takd": {"assistants": [ASSISTANT]}},
    )
    return spec.model_copy(update={"backend": backend, "workers": workers})


def _pct(mean: float, std: float) -> str:
    return "-" if mean != mean else f"{100 * mean:.2f} ± {100 * std:.2f}"


HEADER = """# Methods table

Every method of `workbench methods list`, trained by the sweep runner (`workbench.sweep`) with
equal epochs and the same student, teacher, optimiser and schedule; each dataset's section says
the command that wrote it. The rows are the methods leaderboard's
(`workbench.experiments.leaderboard`: the same experiment, grouping and paired statistics as the
app's Leaderboard page), each method with its own objective (`OBJECTIVES` there). Student: `cnn`
(channels 16-32-64, one conv per stage, 24k parameters); teachers: the shipped `cnn_large`
teachers. SGD (lr 0.05, Nesterov, cosine), batch 64. Agreement is top-1 agreement with the
teacher on the test split; seconds per epoch exclude evaluation and the one-time teacher cache.
"""


def table_lines(groups: Any) -> list[str]:
    """The Markdown table of one dataset: the leaderboard's rows (best first) with agreement and
    seconds per epoch from the same groups."""
    rows = leaderboard_rows(groups, "test_acc")
    label = {method_name(g): g.label for g in groups}
    extra = {m: {r["group"]: r for r in group_table(groups, m)} for m in ("agreement", "seconds")}
    lines = [
        "| method | objective | test acc (%) | vs scratch (points, 95 % interval) | vs KD | agreement (%) | s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        agr = extra["agreement"].get(label[r["method"]], {})
        sec = extra["seconds"].get(label[r["method"]], {})
        lines.append(
            f"| `{r['method']}` | {r['objective']} | {_pct(r['mean'] / 100, r['std'] / 100)} | "
            f"{r['vs scratch'] or '-'} | {r['vs KD'] or '-'} | {_pct(agr.get('mean', math.nan), agr.get('std', 0.0))} | "
            f"{sec.get('mean', math.nan):.2f} |"
        )
    beat = [
        r["method"] for r in rows if r["method"] != SCRATCH and r["vs scratch"] and "[+" in r["vs scratch"]
    ]
    lines += ["", f"Methods whose 95 % interval over scratch is above 0: {', '.join(beat) or 'none'}."]
    return lines


def render(tables: dict[str, Any], args: argparse.Namespace) -> dict[str, str]:
    """Each dataset's section of docs/methods.md."""
    sections = {}
    for dataset, groups in tables.items():
        lines = [
            f"## {dataset}",
            "",
            f"`python benchmarks/methods_table.py --datasets {dataset} --epochs {args.epochs} "
            f"--seeds {' '.join(map(str, args.seeds))}{f' --threads {args.threads}' if args.threads else ''}` — "
            f"{args.epochs} epochs, mean ± std over {len(args.seeds)} seed(s). Machine: {machine()}.",
            "",
        ]
        if dataset == "shapes":
            lines += [
                "Confounded `shapes` (confounding 0.9: in the train split 9 in 10 images of a class share its "
                "background; the test split is not confounded). The teacher was trained without the confounder.",
                "",
            ]
        lines += table_lines(groups)
        if args.notes:
            lines += ["", Path(args.notes).read_text(encoding="utf-8").strip()]
        sections[dataset] = "\n".join(lines)
    return sections


def write_sections(sections: dict[str, str]) -> None:
    """Replace (or add) each dataset's section of docs/methods.md, keeping the others."""
    import re

    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    for key, body in sections.items():
        start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
        block = f"{start}\n{body.strip()}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        text = (
            pattern.sub(lambda _, b=block: b, text)
            if pattern.search(text)
            else text.rstrip() + "\n\n" + block + "\n"
        )
    atomic_write_text(DOC, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--runs", default="runs/methods-table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--notes", default=None, help="a Markdown file appended to the table (observations)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    methods = args.methods or list_methods()
    store = RunStore(args.runs)
    tables: dict[str, Any] = {}
    for dataset in args.datasets:
        spec = table_spec(dataset, methods, args.epochs, args.seeds, args.backend, args.workers)
        outcomes = run_sweep(
            spec,
            store,
            on_trial=lambda o: print(
                f"{o.trial.group[:60]} seed {o.trial.seed}: {o.status} {o.summary.get('test_acc')}",
                flush=True,
            ),
        )
        done = [store.load(o.run_id) for o in outcomes if o.status == "completed"]
        tables[dataset] = group_runs(done)
        print(
            f"{dataset}: {len(tables[dataset])} methods, {len(done)} runs ({method_of(tables[dataset][0])} ...)"
        )
    sections = render(tables, args)
    write_sections(sections)
    print("\n\n".join(sections.values()))
    print(f"written: {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
