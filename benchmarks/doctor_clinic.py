"""The doctor clinic: students that really fail, trained through the engine, and what the doctor says.

Every case is a short run through :func:`workbench.train.run` with one fault planted (or none, for
the healthy controls), on two dataset/architecture pairs and at two severities per fault. The
doctor diagnoses each finished run; the clinic tabulates the planted fault against the doctor's
top finding (a confusion table), top-1 and top-3 accuracy over the faulty runs, and the
false-alarm rate (any warning-level finding) over the healthy runs. With ``--verify`` it also
runs each faulty run's suggested experiment (:func:`workbench.diagnosis.verify`) and counts how
often the finding's own metric improved.

Phases, each cached in the clinic store (``--store``, default ``.clinic`` in the working folder):

1. train: one run per case (skipped when the case's run exists and finished);
2. evidence: the doctor's measurements per run, saved as ``evidence/<case>.json`` (skipped when
   present and made by the same doctor version), so tuning the rules never re-runs the analyses;
3. rules: the rules applied to the cached evidence, the table, docs/doctor.md and the "Doctor
   clinic" section of docs/benchmarks.md.

    python benchmarks/doctor_clinic.py [--quick] [--verify] [--store DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

#: dataset / student pairs: data section, model section, shipped teacher
PAIRS: dict[str, dict[str, Any]] = {
    "mnist/cnn_small": {
        "data": {"dataset": "mnist", "train_subset": 2000},
        "model": {"name": "cnn_small"},
        "teacher": "shipped:mnist",
        "other_teacher": "shipped:fashion-mnist",
    },
    "fashion/cnn_tiny": {
        "data": {"dataset": "fashion-mnist", "train_subset": 2000},
        "model": {"name": "cnn", "kwargs": {"channels": [8, 16, 32]}},
        "teacher": "shipped:fashion-mnist",
        "other_teacher": "shipped:mnist",
    },
    "shapes/cnn_small": {
        "data": {"dataset": "shapes", "options": {"n_train": 2000, "n_test": 1000, "seed": 0}},
        "model": {"name": "cnn_small"},
        "teacher": "shipped:shapes",
        "other_teacher": None,
    },
    "shapes/cnn_tiny": {
        "data": {"dataset": "shapes", "options": {"n_train": 2000, "n_test": 1000, "seed": 0}},
        "model": {"name": "cnn", "kwargs": {"channels": [8, 16, 32]}},
        "teacher": "shipped:shapes",
        "other_teacher": None,
    },
}

#: the fault families; each maps a severity ("mild", "severe") to what is planted
FAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "capacity_gap": {
        "mild": {"model": {"name": "mlp", "kwargs": {"hidden": [8]}}},
        "severe": {"model": {"name": "mlp", "kwargs": {"hidden": [4]}}},
    },
    "temperature_low": {
        "mild": {"temperature": 0.5},
        "severe": {"temperature": 0.1},
    },
    "temperature_high": {
        "mild": {"temperature": 30.0},
        "severe": {"temperature": 100.0},
    },
    "kd_dominates": {
        "mild": {"methods": "20*kd", "ce_weight": 0.1},
        "severe": {"methods": "100*kd", "ce_weight": 0.1},
    },
    "kd_vanishes": {
        "mild": {"methods": "0.01*kd", "ce_weight": 1.0},
        "severe": {"methods": "0.0001*kd", "ce_weight": 1.0},
    },
    "shortcut": {
        "mild": {"confounding": 0.9},
        "severe": {"confounding": 1.0},
    },
    "hint_miswired": {
        "mild": {"hint": ("features.1", "features.2")},
        "severe": {"hint": ("features.0", "features.2")},
    },
    "label_noise": {
        "mild": {"noise": 0.25},
        "severe": {"noise": 0.45},
    },
    "wrong_teacher": {
        "mild": {"teacher": "barely"},
        "severe": {"teacher": "other"},
    },
    "lr_high": {
        "mild": {"lr": 1.5},
        "severe": {"lr": 8.0},
    },
    "lr_low": {
        "mild": {"lr": 0.002},
        "severe": {"lr": 0.0003},
    },
    "too_short": {
        "mild": {"max_steps": 12},
        "severe": {"max_steps": 4},
    },
}

#: healthy recipes: method expression, ce weight, extra method params by method index
RECIPES: dict[str, dict[str, Any]] = {
    "kd": {"methods": "0.9*kd", "ce_weight": 0.1},
    "dkd": {"methods": [{"name": "dkd", "weight": 1.0, "params": {"warmup": 1.0}}], "ce_weight": 1.0},
    "fitnet": {"methods": "0.9*kd + fitnet", "ce_weight": 0.1},
    "rkd": {"methods": "0.9*kd + rkd", "ce_weight": 0.1},
}

FAULT_PAIRS = ["mnist/cnn_small", "fashion/cnn_tiny"]
SHAPES_PAIRS = ["shapes/cnn_small", "shapes/cnn_tiny"]


@dataclass
class Case:
    """One clinic run: the fault planted (``healthy`` for a control), its severity, the pair, the seed."""

    fault: str
    severity: str
    pair: str
    seed: int = 0
    recipe: str = "kd"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A unique, file-safe name of the case."""
        pair = self.pair.replace("/", "-")
        return f"{self.fault}-{self.severity}-{pair}-{self.recipe}-s{self.seed}"


def cases(quick: bool) -> list[Case]:
    """The clinic's cases. ``quick``: one pair per fault (both severities), fewer healthy seeds."""
    out: list[Case] = []
    seeds = [0] if quick else [0, 1]
    for recipe in RECIPES:
        for pair in FAULT_PAIRS:
            for seed in seeds:
                out.append(Case("healthy", recipe, pair, seed, recipe))
    for pair in SHAPES_PAIRS[: 1 if quick else 2]:
        for seed in seeds:
            out.append(Case("healthy", "kd", pair, seed, "kd"))
    for fault, levels in FAULTS.items():
        pairs = SHAPES_PAIRS if fault == "shortcut" else FAULT_PAIRS
        for i, pair in enumerate(pairs):
            for severity in levels:
                if quick and (i + (severity == "severe")) % 2 == 1:
                    continue  # quick: mild on the first pair, severe on the second
                out.append(Case(fault, severity, pair, 0, "kd", dict(levels[severity])))
    return out


# ---- building a case's run ------------------------------------------------------------------------
def base_config(case: Case) -> dict[str, Any]:
    """The case's run config as a mapping: the pair's data and student, the recipe, the fault."""
    pair = PAIRS[case.pair]
    data = {"batch_size": 64, "eval_batch_size": 1000, **json.loads(json.dumps(pair["data"]))}
    recipe = RECIPES[case.recipe]
    methods = json.loads(json.dumps(recipe["methods"]))
    cfg: dict[str, Any] = {
        "kind": "distill",
        "name": f"clinic-{case.key}"[:60],
        "seed": case.seed,
        "data": data,
        "model": json.loads(json.dumps(pair["model"])),
        "teachers": [{"source": pair["teacher"]}],
        "distill": {"methods": methods, "ce_weight": recipe["ce_weight"], "teacher_cache": True},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "cosine"},
        "train": {"epochs": 3, "device": "cpu", "snapshot_every_epoch": False},
    }
    x = case.extra
    if "model" in x:
        cfg["model"] = x["model"]
    if "temperature" in x:
        cfg["distill"]["methods"] = [
            {"name": "kd", "weight": 0.9, "params": {"temperature": x["temperature"]}}
        ]
    if "methods" in x:
        cfg["distill"]["methods"] = x["methods"]
        cfg["distill"]["ce_weight"] = x["ce_weight"]
    if "confounding" in x:
        cfg["data"]["options"]["confounding"] = x["confounding"]
    if "hint" in x:
        s, t = x["hint"]
        cfg["distill"]["methods"] = [
            {"name": "kd", "weight": 0.9, "params": {}},
            {"name": "fitnet", "weight": 1.0, "params": {"student_layers": [s], "teacher_layers": [t]}},
        ]
    if "lr" in x:
        cfg["optim"]["lr"] = x["lr"]
    if "max_steps" in x:
        cfg["train"]["max_steps"] = x["max_steps"]
        cfg["train"]["epochs"] = 1
    return cfg


def noisy_dataset(cfg: dict[str, Any], rate: float, seed: int) -> Any:
    """The case's dataset with ``rate`` of its training labels moved to another class, uniformly."""
    from workbench.data import load_dataset
    from workbench.data.core import Split

    d = cfg["data"]
    data = load_dataset(d["dataset"], **d.get("options", {}))
    gen = torch.Generator().manual_seed(1000 + seed)
    n = len(data.train)
    flip = torch.rand(n, generator=gen) < rate
    shift = torch.randint(1, data.num_classes, (n,), generator=gen)
    labels = data.train.labels.clone()
    labels[flip] = (labels[flip] + shift[flip]) % data.num_classes
    tr = data.train
    train = Split(tr.images, labels, masks=tr.masks, boxes=tr.boxes, context=tr.context)
    return dataclasses.replace(data, train=train)


def barely_trained_teacher(store: Any, pair: str) -> str:
    """A teacher of the pair's data trained for a handful of steps (cached in the store): ``run:ID``."""
    from workbench.train import run
    from workbench.validate import validate_run_config

    name = f"clinic-barely-teacher-{pair.replace('/', '-')}"
    for r in store.list():
        if r.status.get("name") == name and r.status.get("status") == "completed":
            return f"run:{r.id}"
    p = PAIRS[pair]
    cfg = validate_run_config(
        {
            "kind": "teacher",
            "name": name,
            "seed": 0,
            "data": {"batch_size": 64, "eval_batch_size": 1000, **p["data"]},
            "model": {"name": "cnn_large"},
            "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "train": {"epochs": 1, "max_steps": 6, "device": "cpu", "snapshot_every_epoch": False},
        }
    )
    res = run(cfg, store=store)
    return f"run:{res.run_id}"


def train_case(case: Case, store: Any) -> str | None:
    """Train the case's run into ``store`` unless a run of that name exists; its id (None: failed to set up)."""
    from workbench.train import TrainingFailed, run
    from workbench.validate import validate_run_config

    cfg_map = base_config(case)
    for r in store.list():
        if r.status.get("name") == cfg_map["name"] and r.status.get("status") in ("completed", "failed"):
            return r.id
    if case.extra.get("teacher") == "other":
        cfg_map["teachers"] = [{"source": PAIRS[case.pair]["other_teacher"]}]
    elif case.extra.get("teacher") == "barely":
        cfg_map["teachers"] = [{"source": barely_trained_teacher(store, case.pair)}]
    cfg = validate_run_config(cfg_map)
    dataset = noisy_dataset(cfg_map, case.extra["noise"], case.seed) if "noise" in case.extra else None
    try:
        res = run(cfg, store=store, dataset=dataset)
        return res.run_id
    except TrainingFailed:
        for r in store.list():
            if r.status.get("name") == cfg_map["name"]:
                return r.id
    return None


def case_dataset(case: Case) -> Any:
    """The dataset the case trained on when it is not the config's own (label noise), else None."""
    if "noise" not in case.extra:
        return None
    return noisy_dataset(base_config(case), case.extra["noise"], case.seed)


# ---- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one pair per fault and severity, one healthy seed")
    ap.add_argument("--store", default=".clinic", help="the clinic's run store (cached runs)")
    ap.add_argument("--phase", choices=["train", "evidence", "verify", "rules", "all"], default="all")
    ap.add_argument("--verify", action="store_true", help="also verify the top finding of each faulty run")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write docs")
    ap.add_argument("--only", default=None, help="only cases whose key contains this text")
    ap.add_argument("--reverse", action="store_true", help="verify in reverse order (a second worker)")
    ap.add_argument(
        "--part", default=None, help="I/N: train only every N-th case from the I-th (parallel workers)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from workbench.runs import RunStore

    store = RunStore(Path(args.store) / "runs")
    todo = [c for c in cases(args.quick) if args.only is None or args.only in c.key]
    if args.phase in ("train", "all"):
        quick_keys = {c.key for c in cases(True)}
        mine = sorted(todo, key=lambda c: c.key not in quick_keys)  # the quick subset first
        if args.part:
            i0, n = (int(v) for v in args.part.split("/"))
            mine = mine[i0::n]
        for i, case in enumerate(mine, 1):
            t0 = time.perf_counter()
            rid = train_case(case, store)
            print(f"[{i}/{len(mine)}] train {case.key}: {rid} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.phase in ("evidence", "all"):
        run_evidence(todo, store, Path(args.store))
    if args.phase == "verify":
        rows = [
            (c, json.loads(p.read_text())["evidence"])
            for c in todo
            if c.fault != "healthy" and (p := Path(args.store) / "evidence" / f"{c.key}.json").exists()
        ]
        if args.part:
            i0, n = (int(v) for v in args.part.split("/"))
            rows = rows[i0::n]
        run_verify(rows[::-1] if args.reverse else rows, store, Path(args.store))
        return
    if args.phase in ("rules", "all"):
        run_rules(
            todo, store, Path(args.store), verify=args.verify, write=not args.no_write, quick=args.quick
        )


def run_id_of(case: Case, store: Any) -> str | None:
    """The id of the case's finished (or failed) run in ``store``."""
    name = base_config(case)["name"]
    for r in store.list():
        if r.status.get("name") == name and r.status.get("status") in ("completed", "failed"):
            return r.id
    return None


def run_evidence(todo: list[Case], store: Any, root: Path) -> None:
    """Measure the doctor's evidence of every case's run once (cached as JSON)."""
    from workbench.diagnosis import DOCTOR_VERSION, measure_run

    folder = root / "evidence"
    folder.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(todo, 1):
        path = folder / f"{case.key}.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("doctor_version") == DOCTOR_VERSION:
                continue
        rid = run_id_of(case, store)
        if rid is None:
            print(f"[{i}/{len(todo)}] evidence {case.key}: no run", flush=True)
            continue
        t0 = time.perf_counter()
        ev = measure_run(
            store.load(rid),
            store=store,
            dataset=case_dataset(case),
            device="cpu",
            n_samples=500,
        )
        ev["doctor_version"] = DOCTOR_VERSION
        ev["run_id"] = rid
        path.write_text(json.dumps(ev, indent=1))
        print(f"[{i}/{len(todo)}] evidence {case.key}: {time.perf_counter() - t0:.1f} s", flush=True)


#: each threshold: (evidence name or function, the fault it detects, "high" if the fault lies above)
def _noise_gap(ev: dict[str, Any]) -> float | None:
    a, b = ev.get("teacher_acc"), ev.get("teacher_train_label_acc")
    return None if a is None or b is None else a - b


def _follow_gap(ev: dict[str, Any]) -> float | None:
    a, b, acc = ev.get("context_follow"), ev.get("teacher_context_follow"), ev.get("student_acc") or 1.0
    k = round(1 / ev.get("chance", 0.1))
    return None if a is None or b is None else a - (1 - acc) / (k - 1) - b


THRESHOLDS: dict[str, tuple[Any, str, str, bool]] = {
    # name: (evidence, fault, side, geometric midpoint)
    "param_ratio": ("param_ratio", "capacity_gap", "high", True),
    "soft_low": ("teacher_soft_entropy", "temperature_low", "low", False),
    "soft_high": ("teacher_soft_entropy", "temperature_high", "high", False),
    "kd_weight_high": ("kd_weight", "kd_dominates", "high", True),
    "kd_share_low": ("kd_share", "kd_vanishes", "low", False),
    "shortcut": (_follow_gap, "shortcut", "high", False),
    "hint_depth": ("hint_depth_gap", "hint_miswired", "high", False),
    "label_noise": (_noise_gap, "label_noise", "high", False),
    "teacher_acc": ("teacher_acc", "wrong_teacher", "low", False),
    "lr_high": ("lr_scale", "lr_high", "high", True),
    "lr_low": ("lr_scale", "lr_low", "low", True),
    "passes_low": ("passes", "too_short", "low", False),
    "gap": ("gap", "lr_low|too_short|capacity_gap", "high", False),
}


def _value(ev: dict[str, Any], key: Any) -> float | None:
    v = key(ev) if callable(key) else ev.get(key)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def margins(rows: list[tuple[Case, dict[str, Any]]]) -> list[dict[str, Any]]:
    """For every threshold: the value nearest the threshold among the runs with its fault, the
    value nearest it among the healthy runs, and the midpoint between them (geometric for ratios).
    Other faults may share a signature (a barely trained teacher also gives nearly uniform soft
    labels); which of two firing rules leads is the ranking's job, measured by the confusion table."""
    import math

    from workbench.analysis.doctor import DoctorThresholds

    th = DoctorThresholds()
    out = []
    for name, (key, fault, side, geometric) in THRESHOLDS.items():
        faults = set(fault.split("|"))
        inside = [v for c, ev in rows if c.fault in faults and (v := _value(ev, key)) is not None]
        outside = [v for c, ev in rows if c.fault == "healthy" and (v := _value(ev, key)) is not None]
        worst_fault = (min(inside) if side == "high" else max(inside)) if inside else None
        best_other = (max(outside) if side == "high" else min(outside)) if outside else None
        mid = None
        if worst_fault is not None and best_other is not None:
            if geometric and worst_fault > 0 and best_other > 0:
                mid = math.sqrt(worst_fault * best_other)
            else:
                mid = (worst_fault + best_other) / 2
        out.append(
            {
                "threshold": name,
                "value": getattr(th, name),
                "fault": fault,
                "fires": ">=" if side == "high" else "<=",
                "closest_fault": worst_fault,
                "closest_other": best_other,
                "midpoint": mid,
                "separates": worst_fault is not None
                and (
                    best_other is None
                    or (worst_fault > best_other if side == "high" else worst_fault < best_other)
                ),
            }
        )
    return out


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _cached_evidence(todo: list[Case], root: Path) -> list[tuple[Case, dict[str, Any]]]:
    """``(case, evidence)`` of every case in ``todo`` whose evidence is cached under ``root``."""
    rows: list[tuple[Case, dict[str, Any]]] = []
    for case in todo:
        path = root / "evidence" / f"{case.key}.json"
        if path.exists():
            rows.append((case, json.loads(path.read_text())["evidence"]))
    return rows


def _top_findings(rows: list[tuple[Case, dict[str, Any]]]) -> tuple[dict[str, Counter[str]], int, int, list[str]]:
    """The rules on every run: ``(planted fault -> count of top findings, top-1 hits, top-3 hits,
    one table line per run)``."""
    from workbench.analysis.doctor import apply_rules

    confusion: dict[str, Counter[str]] = {}
    top1 = top3 = 0
    lines_cases = []
    for c, ev in rows:
        found = apply_rules(ev)
        warn = [f.rule for f in found if f.level == "warning"]
        top = warn[0] if warn else "(none)"
        confusion.setdefault(c.fault, Counter())[top] += 1
        if c.fault != "healthy":
            top1 += top == c.fault
            top3 += c.fault in warn[:3]
        lines_cases.append(
            f"| {c.fault} | {c.severity} | {c.pair} | {c.seed} | {top} | {', '.join(warn[1:3]) or '–'} | "
            f"{_f(ev.get('student_acc'))} | {_f(ev.get('teacher_acc'))} |"
        )
    return confusion, top1, top3, lines_cases


def _confusion_table(confusion: dict[str, Counter[str]]) -> list[str]:
    """The planted fault (rows) against the top finding (columns, "(none)" last), as table lines."""
    cols = sorted({k for v in confusion.values() for k in v}, key=lambda k: (k == "(none)", k))
    head = "| planted \\ top finding | " + " | ".join(cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    table = [head, sep]
    for fault in list(FAULTS) + ["healthy"]:
        if fault in confusion:
            table.append(
                f"| **{fault}** | " + " | ".join(str(confusion[fault].get(k, "")) for k in cols) + " |"
            )
    return table


def _margins_table(marg: list[dict[str, Any]]) -> list[str]:
    """The :func:`margins` as table lines."""
    mtable = [
        "| threshold | value | fires when | fault | nearest faulty run | nearest healthy run | midpoint |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in marg:
        mtable.append(
            f"| `{m['threshold']}` | {_f(m['value'])} | {m['fires']} | {m['fault']} | {_f(m['closest_fault'])} | "
            f"{_f(m['closest_other'])} | {_f(m['midpoint'])} |"
        )
    return mtable


def _print_tables(body: str, mtable: list[str], lines_cases: list[str]) -> None:
    """Print the clinic's section, the margins and every run's line."""
    print(body)
    print()
    print("\n".join(mtable))
    print()
    print(
        "\n".join(
            [
                "| fault | severity | pair | seed | top finding | next | student acc | teacher acc |",
                "|---|---|---|---|---|---|---|---|",
                *lines_cases,
            ]
        )
    )


def run_rules(todo: list[Case], store: Any, root: Path, *, verify: bool, write: bool, quick: bool) -> None:
    """Apply the rules to the cached evidence; print and (with ``write``) record the tables."""
    from workbench.analysis.doctor import apply_rules

    rows = _cached_evidence(todo, root)
    faulty = [(c, ev) for c, ev in rows if c.fault != "healthy"]
    healthy = [(c, ev) for c, ev in rows if c.fault == "healthy"]
    confusion, top1, top3, lines_cases = _top_findings(rows)
    false_alarms = sum(1 for c, ev in healthy if any(f.level == "warning" for f in apply_rules(ev)))
    table = _confusion_table(confusion)
    n_f, n_h = len(faulty), len(healthy)
    summary = (
        f"top-1 {top1}/{n_f} = {100 * top1 / max(n_f, 1):.0f}%, top-3 {top3}/{n_f} = {100 * top3 / max(n_f, 1):.0f}% "
        f"of faulty runs; false alarms {false_alarms}/{n_h} = {100 * false_alarms / max(n_h, 1):.0f}% of healthy runs"
    )
    marg = margins(rows)
    mtable = _margins_table(marg)
    verify_lines = run_verify(faulty, store, root, run_missing=verify)
    cmd = (
        "python benchmarks/doctor_clinic.py" + (" --quick" if quick else "") + (" --verify" if verify else "")
    )
    body = "\n".join(
        [
            "## Doctor clinic",
            "",
            f"`{cmd}` — {machine()}. {len(rows)} runs trained through the engine "
            f"({n_f} with a planted fault, {n_h} healthy controls).",
            "",
            f"**{summary}.**",
            "",
            *table,
            "",
            *verify_lines,
        ]
    )
    _print_tables(body, mtable, lines_cases)
    out = root / "clinic.json"
    out.write_text(
        json.dumps(
            {"summary": summary, "confusion": {k: dict(v) for k, v in confusion.items()}, "margins": marg},
            indent=1,
        )
    )
    if write:
        write_section("doctor-clinic", body)
        write_doctor_doc(body, mtable, lines_cases)


def run_verify(
    faulty: list[tuple[Case, dict[str, Any]]], store: Any, root: Path, *, run_missing: bool = True
) -> list[str]:
    """Verify the top finding of every faulty run (cached as ``verify/<case>.json``); with
    ``run_missing=False`` only the cached verifications are tabulated."""
    from workbench.analysis.doctor import DoctorReport, DoctorThresholds, apply_rules
    from workbench.diagnosis import verify
    from workbench.errors import one_line

    folder = root / "verify"
    folder.mkdir(parents=True, exist_ok=True)
    helped = judged = 0
    rows = []
    for c, ev in faulty:
        path = folder / f"{c.key}.json"
        found = apply_rules(ev)
        warn = [f for f in found if f.level == "warning" and f.experiment is not None]
        if not warn:
            continue
        res = json.loads(path.read_text()) if path.exists() else None
        if res is not None and res.get("finding") != warn[0].rule:
            res = None  # the rules changed their mind: verify the new top finding
        if res is None and not run_missing:
            continue
        if res is None:
            rid = run_id_of(c, store)
            if rid is None:
                continue
            report = DoctorReport(found, ev, {}, DoctorThresholds())
            t0 = time.perf_counter()
            try:
                r = verify(
                    rid,
                    report,
                    store=store,
                    dataset=case_dataset(c),
                    device="cpu",
                    n_samples=500,
                )
            except Exception as err:  # noqa: BLE001 - a clinic records what went wrong and goes on
                res = {"finding": warn[0].rule, "error": one_line(err)}
            else:
                res = r.to_dict()
            path.write_text(json.dumps(res, indent=1))
            print(f"verify {c.key}: {res.get('helped')} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if "error" in res:
            rows.append(
                f"| {c.fault} | {c.severity} | {c.pair} | {res['finding']} | error: {res['error']} | | |"
            )
            continue
        fixable = c.fault == res["finding"]
        judged += fixable
        helped += fixable and res["helped"]
        m = res["metric"]
        rows.append(
            f"| {c.fault} | {c.severity} | {c.pair} | {res['finding']} | {m}: {_f(res['before'].get(m))} -> "
            f"{_f(res['after'].get(m))} | {_f(res['before'].get('student_acc'))} -> {_f(res['after'].get('student_acc'))} "
            f"| {'yes' if res['helped'] else 'no'} |"
        )
    if not rows:
        return []
    return [
        "`--verify` (run with `--quick --verify`: the top finding of each faulty run of the quick subset):",
        "",
        f"**--verify: the named metric improved on {helped}/{judged} = {100 * helped / max(judged, 1):.0f}% "
        "of the verified faulty runs whose top finding named the planted fault** (the verification "
        "run trains the experiment for as many epochs as the run, from the same seed).",
        "",
        "| fault | severity | pair | verified finding | its metric | student acc | helped |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def write_doctor_doc(body: str, mtable: list[str], lines_cases: list[str]) -> None:
    """Replace the clinic section of docs/doctor.md (between its markers) with the tables."""
    import re

    doc = Path(__file__).resolve().parent.parent / "docs" / "doctor.md"
    text = doc.read_text(encoding="utf-8")
    start, end = "<!-- clinic:start -->", "<!-- clinic:end -->"
    block = "\n".join(
        [
            start,
            body.replace("## Doctor clinic", "### Results").strip(),
            "",
            "### Thresholds and their margins",
            "",
            "For each threshold: the value the rules use, the fault it detects, the run with that fault "
            "nearest the threshold and the healthy run nearest it; the threshold lies between them. "
            "`gap` only gates the under-training and capacity rules (which also need their config "
            "evidence), so it does not separate healthy runs (short healthy runs end well below their "
            "teacher) and is not meant to.",
            "",
            *mtable,
            "",
            "### Every run",
            "",
            "| fault | severity | pair | seed | top finding | next | student acc | teacher acc |",
            "|---|---|---|---|---|---|---|---|",
            *lines_cases,
            end,
        ]
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
