"""The methods table: every distillation method on the embedded Fashion-MNIST and on confounded
`shapes`, one teacher/student pair per dataset, several seeds, equal epochs — run through the
sweep runner — written to docs/methods.md.

    python benchmarks/methods_table.py [--epochs 3] [--seeds 0 1 2] [--workers 1] [--backend local]

Every trial lands in the run store (``--runs``, default ``runs/methods-table``), so an
interrupted table resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine  # noqa: E402

from workbench.distill import list_methods  # noqa: E402
from workbench.runs import RunStore, atomic_write_text  # noqa: E402
from workbench.sweep import SweepSpec, run_sweep, summarize  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "methods.md"
STUDENT = {"name": "cnn", "kwargs": {"channels": [16, 32, 64], "convs_per_stage": 1}}
ASSISTANT = {"model": "cnn", "kwargs": {"channels": [24, 48, 96], "convs_per_stage": 1}}

#: the objective of each method in the table: (ce_weight, method weight, params)
#: KD-family methods follow Hinton's 0.1 CE / 0.9 KD; feature and relation methods keep CE at 1
#: and their RepDistiller loss scale (built into each method's `beta`).
OBJECTIVES: dict[str, tuple[float, float, dict[str, Any]]] = {
    "none": (1.0, 1.0, {}),
    "kd": (0.1, 0.9, {"temperature": 4.0}),
    "dkd": (1.0, 1.0, {"warmup": 1.0}),
    "dist": (1.0, 1.0, {"temperature": 4.0, "beta": 2.0, "gamma": 2.0}),
    "bdkd": (0.1, 0.9, {}),
    "multi_teacher": (0.1, 0.9, {"weighting": "confidence"}),
    "ban": (0.1, 0.9, {"generations": 2, "temperature": 4.0}),
    "takd": (0.1, 0.9, {"assistants": [ASSISTANT]}),
    "fitnet": (1.0, 1.0, {}),
    "at": (1.0, 1.0, {}),
    "nst": (1.0, 1.0, {}),
    "cat_kd": (1.0, 1.0, {}),
    "vkd": (1.0, 1.0, {}),
    "dml": (1.0, 1.0, {}),
    "ema": (1.0, 1.0, {"momentum": 0.99}),
    "sp": (1.0, 1.0, {}),
    "pkt": (1.0, 1.0, {}),
    "rkd": (1.0, 1.0, {}),
    "crd": (1.0, 1.0, {}),
    "rdd": (0.1, 0.9, {}),
}

DATASETS = {
    "fashion-mnist": {
        "data": {"dataset": "fashion-mnist", "batch_size": 64},
        "teacher": "shipped:fashion-mnist",
    },
    "shapes": {
        "data": {"dataset": "shapes", "batch_size": 64, "options": {"confounding": 0.9, "seed": 0}},
        "teacher": "shipped:shapes",
    },
}


def method_entry(name: str) -> dict[str, Any]:
    """The `distill` section of one method's trial."""
    ce, weight, params = OBJECTIVES[name]
    return {"ce_weight": ce, "methods": [{"name": name, "weight": weight, "params": params}]}


def base_config(dataset: str, epochs: int) -> dict[str, Any]:
    """The run config every trial on ``dataset`` shares (all but the `distill` section and seed)."""
    spec = DATASETS[dataset]
    return {
        "kind": "distill",
        "data": spec["data"],
        "model": STUDENT,
        "teachers": [{"source": spec["teacher"]}],
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 0.2},
        "train": {"epochs": epochs, "snapshot_every_epoch": False},
    }


def sweep_for(
    dataset: str, methods: list[str], epochs: int, seeds: list[int], backend: str, workers: int
) -> SweepSpec:
    return SweepSpec(
        name=f"methods-{dataset}",
        config=base_config(dataset, epochs),
        grid={"distill": [method_entry(m) for m in methods]},
        seeds=seeds,
        backend=backend,  # type: ignore[arg-type]
        workers=workers,
    )


def _pct(mean: float, std: float) -> str:
    return "-" if mean != mean else f"{100 * mean:.2f} ± {100 * std:.2f}"


HEADER = """# Methods table

Every method of `workbench methods list`, trained by the sweep runner (`workbench.sweep`) with
equal epochs and the same student, teacher, optimiser and schedule; each dataset's section says
the command that wrote it. Student: `cnn` (channels 16-32-64, one conv per stage, 24k
parameters); teachers: the shipped `cnn_large` teachers. SGD (lr 0.05, Nesterov, cosine), batch 64.
Agreement is top-1 agreement with the teacher on the test split; seconds per epoch exclude
evaluation and the one-time teacher cache.
"""


def render(tables: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, str]:
    sections = {}
    for dataset, rows in tables.items():
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
        lines += [
            "| method | objective | test acc (%) | agreement (%) | s / epoch |",
            "|---|---|---|---|---|",
        ]
        base = next((r for r in rows if r["method"] == "none"), None)
        for r in rows:
            ce, w, _ = OBJECTIVES[r["method"]]
            obj = "CE" if r["method"] == "none" else f"{ce:g}·CE + {w:g}·{r['method']}"
            lines.append(
                f"| `{r['method']}` | {obj} | {_pct(r['test_acc_mean'], r['test_acc_std'])} | "
                f"{_pct(r['agreement_mean'], r['agreement_std'])} | {r['sec_per_epoch_mean']:.2f} |"
            )
        if base is not None:
            kd = next((r for r in rows if r["method"] == "kd"), None)
            beat = [
                r["method"]
                for r in rows
                if r["test_acc_mean"] > base["test_acc_mean"] and r["method"] != "none"
            ]
            lines += [""]
            if kd is not None:
                gain = 100 * (kd["test_acc_mean"] - base["test_acc_mean"])
                lines.append(f"`kd` vs `none`: {gain:+.2f} points (mean over seeds).")
            lines.append(f"Methods above `none` on mean accuracy: {', '.join(beat) or 'none'}.")
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
    unknown = [m for m in methods if m not in OBJECTIVES]
    if unknown:
        parser.error(f"no table objective for {unknown}; add them to OBJECTIVES")
    store = RunStore(args.runs)
    tables: dict[str, list[dict[str, Any]]] = {}
    for dataset in args.datasets:
        spec = sweep_for(dataset, methods, args.epochs, args.seeds, args.backend, args.workers)
        outcomes = run_sweep(
            spec,
            store,
            on_trial=lambda o: print(
                f"{o.trial.group[:60]} seed {o.trial.seed}: {o.status} {o.summary.get('test_acc')}",
                flush=True,
            ),
        )
        rows = summarize(outcomes)
        for r in rows:
            r["method"] = r["distill"]["methods"][0]["name"]
        tables[dataset] = rows
    sections = render(tables, args)
    write_sections(sections)
    print("\n\n".join(sections.values()))
    print(f"written: {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
