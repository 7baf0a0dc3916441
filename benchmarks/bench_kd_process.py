"""One KD run of the demo recipe as a whole process, as a user runs it, against a standalone script of
the PyTorch knowledge-distillation tutorial's loop.

Each side is a fresh ``python`` process timed from launch to exit, on the embedded MNIST subset with
the shipped MNIST teacher, the demo student, batch 64 and the same number of epochs:

* ``workbench train distill -c <demo KD config>`` with a new, empty run store: the teacher's
  outputs are computed in the first epoch and stored (cache cold, the first run from a teacher);
* the same command with a store that already holds the teacher's outputs (a later run from it:
  no teacher forward at all);
* the same command with ``distill.teacher_cache=false``, a new store each time: the teacher runs on
  every batch and nothing is stored (the work a one-epoch run did before outputs were kept);
* the tutorial loop (``tutorial_kd`` of ``bench_training.py``: DataLoader over a TensorDataset,
  teacher forward every batch, then a test pass) in a script that loads the same data and teacher.
  That script also imports ``bench_training`` (and with it the workbench's engine), which a
  standalone tutorial would not: those import seconds are measured in the script and taken off
  its time.

A fifth side runs the stored-outputs run in a fresh process without the command line, its events
timed, for the arithmetic of where its seconds go. Each figure is the median of ``--pairs``
interleaved rounds (the order rotates every round); ratios are taken within each round. The sizes of
the stored outputs (and of the features a method could ask for) close the section.

    python benchmarks/bench_kd_process.py [--pairs 4] [--epochs 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


# ---- the tutorial's side, in its own process ----------------------------------------------------


def tutorial_child(epochs: int) -> None:
    """Run the tutorial loop as a standalone script would, printing one JSON line of timings:
    seconds since the interpreter started when the script's own imports were done, the data and
    the teacher loaded, ``bench_training``'s extra imports, and the loop's figures."""
    import torch
    from safetensors.torch import load_file

    from workbench.data import load_dataset
    from workbench.models import create_model
    from workbench.paths import teachers_dir

    started = _process_start()
    t_imports = time.time()
    ds = load_dataset("mnist")
    card = json.loads((teachers_dir() / "mnist.json").read_text())
    teacher = create_model(
        card["model"]["name"],
        num_classes=card["num_classes"],
        in_channels=card["in_channels"],
        image_size=card["image_size"],
        **card["model"].get("kwargs", {}),
    )
    teacher.load_state_dict(load_file(str(teachers_dir() / "mnist.safetensors")))
    teacher.eval()
    t_loaded = time.time()
    from bench_training import tutorial_kd  # the loop itself; its module imports the engine too

    t_extra = time.time()
    out = tutorial_kd(epochs, ds, teacher)
    print(
        json.dumps(
            {
                "imports": t_imports - started,
                "load": t_loaded - t_imports,
                "extra_imports": t_extra - t_loaded,
                "epoch": out["epoch"],
                "loop_wall": out["wall"],
                "acc": out["acc"],
                "threads": torch.get_num_threads(),
            }
        )
    )


def instrumented_child(config: Path, store: Path) -> None:
    """A stored-outputs run of ``config`` into ``store`` in this fresh process, as the command runs
    it but with its events timed; prints one JSON line: seconds from the process's start to the
    imports done, then each part of the run (see :func:`instrumented_run`)."""
    started = _process_start()
    import workbench.runs  # noqa: F401  (what the command imports before the run starts)
    import workbench.train  # noqa: F401
    from workbench.validate import load_config

    t_imports = time.time()
    parts = instrumented_run(load_config(config), store)
    print(json.dumps({"imports": t_imports - started, **parts}))


def _process_start() -> float:
    """This process's start time (epoch seconds), from /proc where there is one."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


# ---- timing whole processes -------------------------------------------------------------------


#: the environment of every timed process (``--threads`` sets the thread count of each side alike)
CHILD_ENV = dict(os.environ)


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=CHILD_ENV)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, proc.stdout


def workbench_process(config: Path, store: Path, *overrides: str) -> dict[str, float]:
    """``workbench train distill`` in a fresh process: wall seconds, the run's epoch seconds and
    test accuracy (read back from the store)."""
    from workbench.runs import RunStore

    sets = [x for o in overrides for x in ("--set", o)]
    cmd = [sys.executable, "-m", "workbench.cli", "train", "distill", "-c", str(config), "--runs", str(store), "-q"]
    wall, stdout = _timed([*cmd, *sets])
    run_id = stdout.split()[1]
    run = RunStore(store).load(run_id)
    history = run.metrics["epochs"]
    return {"wall": wall, "epoch": sum(h["seconds"] for h in history), "acc": run.summary()["test_acc"]}


def tutorial_process(epochs: int) -> dict[str, float]:
    """The tutorial script in a fresh process: its wall seconds less ``bench_training``'s extra
    imports (``wall``), the raw wall, and the script's own timings."""
    raw, stdout = _timed([sys.executable, str(Path(__file__)), "--tutorial-child", "--epochs", str(epochs)])
    child = json.loads(stdout.strip().splitlines()[-1])
    return {**child, "raw_wall": raw, "wall": raw - child["extra_imports"]}


def rounds(pairs: int, epochs: int, config: Path, work: Path) -> tuple[dict[str, list[dict]], list[float]]:
    """``pairs`` interleaved rounds of the five sides (order rotating), after one untimed run that
    fills the warm store (and warms the file cache for every side's imports); also returns the
    1-minute load average at the start of each round."""
    warm = work / "warm"
    counter = iter(range(10**6))
    me = [sys.executable, str(Path(__file__))]
    sides = {
        "cold": lambda: workbench_process(config, work / f"cold-{next(counter)}"),
        "warm": lambda: workbench_process(config, warm),
        "off": lambda: workbench_process(config, work / f"off-{next(counter)}", "distill.teacher_cache=false"),
        "tutorial": lambda: tutorial_process(epochs),
        "parts": lambda: _child_json([*me, "--instrumented-child", str(config), str(warm)]),
    }
    sides["warm"]()
    out: dict[str, list[dict]] = {k: [] for k in sides}
    loads = []
    names = list(sides)
    for i in range(pairs):
        loads.append(os.getloadavg()[0])
        for name in names[i % len(names) :] + names[: i % len(names)]:
            out[name].append(sides[name]())
            print(f"round {i + 1}/{pairs} {name}: {out[name][-1]['wall']:.2f} s", file=sys.stderr)
    return out, loads


def _child_json(cmd: list[str]) -> dict:
    wall, stdout = _timed(cmd)
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall": wall}


# ---- where the seconds go ---------------------------------------------------------------------


def interpreter_seconds(repeats: int = 3) -> float:
    """Median wall seconds of a bare ``python -c pass``."""
    return statistics.median(_timed([sys.executable, "-c", "pass"])[0] for _ in range(repeats))


def instrumented_run(config_obj, store_root: Path) -> dict[str, float | str]:
    """A run in this process, timed phase by phase from its events (seconds per part, and which
    stored outputs it used)."""
    from workbench.runs import RunStore
    from workbench.train import EpochEnded, EvalEnded, RunStarted, SetupProgress, Trainer

    marks: dict[str, float] = {}

    def listen(event) -> None:
        now = time.perf_counter()
        if isinstance(event, SetupProgress):
            marks.setdefault(event.phase, now)
        elif isinstance(event, (RunStarted, EvalEnded, EpochEnded)):
            marks.setdefault(type(event).__name__, now)

    t0 = time.perf_counter()
    trainer = Trainer(config_obj, store=RunStore(store_root), subscribers=[listen])
    result = trainer.run()
    end = time.perf_counter()
    epoch = sum(h["seconds"] for h in result.history)
    return {
        "data": marks["models"] - t0,
        "models": marks["teachers"] - marks["models"],
        "teachers": marks["teacher cache"] - marks["teachers"],
        "outputs": marks["teacher test logits"] - marks["teacher cache"],
        "optimizer": marks["ready"] - marks["optimizer"],
        "rest of set-up": (marks["optimizer"] - marks["teacher test logits"]) + (marks["RunStarted"] - marks["ready"]),
        "epoch": epoch,
        "eval": marks["EvalEnded"] - marks["RunStarted"] - epoch,
        "writing": (marks["EpochEnded"] - marks["EvalEnded"]) + (end - marks["EpochEnded"]),
        "used": ", ".join(f"{k} {v}" for k, v in sorted(trainer.stored_outputs.used.items())),
        "total": end - t0,
    }


def key_and_write_seconds(config_obj) -> dict[str, float]:
    """What storing costs a cold run: the keys' parts (data fingerprints, the teacher's hash) and
    writing both entries, measured on fresh objects in a temporary store."""
    import torch

    from workbench.data import load_dataset
    from workbench.runs import RunStore
    from workbench.runs.teachers import load_shipped_teacher
    from workbench.train.cache import TeacherCache
    from workbench.train.output_store import stored_teacher_outputs

    ds, teacher = load_dataset("mnist"), load_shipped_teacher("mnist")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = stored_teacher_outputs(
            RunStore(tmp), config_obj, ds, [teacher], [], fixed=True, dtype=None, channels_last=True, device="cpu"
        )
        t0 = time.perf_counter()
        outputs.parts("train"), outputs.parts("test")
        t1 = time.perf_counter()
        outputs.save_train(TeacherCache(logits=[torch.randn(len(ds.train), 10)], features=[{}]))
        outputs.test_logits(lambda: (torch.randn(len(ds.test), 10), [torch.randn(len(ds.test), 10)]), "cpu")
        t2 = time.perf_counter()
    return {"key": t1 - t0, "write": t2 - t1}


def feature_sizes() -> list[tuple[str, tuple[int, ...], int]]:
    """Per stage of the shipped MNIST teacher: the feature map's shape per image and the bytes its
    float32 features take over the 12,000 embedded training images."""
    import torch

    from workbench.models.taps import FeatureTaps
    from workbench.runs.teachers import load_shipped_teacher

    teacher = load_shipped_teacher("mnist")
    stages = list(getattr(teacher, "stages", []))
    with torch.no_grad(), FeatureTaps(teacher, stages) as taps:
        teacher(torch.zeros(1, 1, 28, 28))
    return [(p, tuple(taps.features[p].shape[1:]), taps.features[p][0].numel() * 4 * 12_000) for p in stages]


# ---- the report -------------------------------------------------------------------------------


def _med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _report(args, load_before: float, res, loads, start_s: float, cost, entries, features) -> str:
    from _report import load_note, machine

    ratios = sorted(t["wall"] / w["wall"] for t, w in zip(res["tutorial"], res["warm"], strict=True))
    cold_vs_off = sorted(c["wall"] / o["wall"] for c, o in zip(res["cold"], res["off"], strict=True))
    cold_ratios = sorted(t["wall"] / c["wall"] for t, c in zip(res["tutorial"], res["cold"], strict=True))
    speedup, cold_cost = statistics.median(ratios), statistics.median(cold_vs_off)
    threads = f" --threads {args.threads}" if args.threads else ""
    lines = [
        "## A KD run as a whole process",
        "",
        f"`python benchmarks/bench_kd_process.py --pairs {args.pairs} --epochs {args.epochs}{threads}` — the "
        f"demo's KD recipe (shipped MNIST teacher `cnn_large`, student `cnn_small`, batch 64, {args.epochs} "
        "epoch), each side a fresh `python` process timed from launch to exit, on the embedded MNIST subset "
        f"(12,000 train / 2,000 test images). {args.pairs} interleaved rounds (the order rotates every round) "
        "after one untimed run that stores the teacher's outputs for the warm side.",
        f"Machine: {machine()}. {load_note(load_before)} 1-minute load average at the start of each round: "
        f"{', '.join(f'{x:.1f}' for x in loads)}.",
        "",
        "| process | seconds (median) | rounds | test acc |",
        "|---|---|---|---|",
    ]
    labels = {
        "cold": "`workbench train distill`, new store: first run from the teacher (outputs computed, stored)",
        "warm": "`workbench train distill`, the teacher's outputs already stored (no teacher forward)",
        "off": "`workbench train distill --set distill.teacher_cache=false` (teacher every batch, nothing stored)",
        "tutorial": "PyTorch-tutorial KD script (DataLoader, teacher every batch, test pass)",
    }
    for key, label in labels.items():
        walls = ", ".join(f"{r['wall']:.2f}" for r in res[key])
        acc = statistics.median(r["acc"] for r in res[key])
        lines.append(f"| {label} | {_med(res[key], 'wall'):.2f} | {walls} | {100 * acc:.2f}% |")
    extra = _med(res["tutorial"], "extra_imports")
    lines += [
        "",
        f"The tutorial script's seconds exclude {extra:.2f} s of importing `bench_training` (and the engine "
        f"with it), which a standalone tutorial does not do (raw: {_med(res['tutorial'], 'raw_wall'):.2f} s).",
        "",
        "| target | figure: median of the rounds' ratios (each round's) | |",
        "|---|---|---|",
        f"| stored outputs: >= 1.8x the tutorial script's speed | {speedup:.2f}x "
        f"({', '.join(f'{r:.2f}' for r in ratios)}) | {'met' if speedup >= 1.8 else 'NOT met'} |",
        f"| first run (cold) no slower than a run that stores nothing | cold / off = {cold_cost:.3f} "
        f"({', '.join(f'{r:.3f}' for r in cold_vs_off)}) | {'met' if cold_cost <= 1.02 else 'NOT met'} |",
        f"| ... what storing adds, measured in-process | keys (data fingerprints, teacher hash) "
        f"{1000 * cost['key']:.0f} ms, writing both entries {1000 * cost['write']:.0f} ms | |",
        f"| cold run: tutorial / workbench | {statistics.median(cold_ratios):.2f}x "
        f"({', '.join(f'{r:.2f}' for r in cold_ratios)}) | |",
        "",
        "A round's sides run within a couple of minutes of each other, so a ratio within a round holds up better "
        "than a ratio of medians when other work comes and goes.",
    ]
    lines += _arithmetic(res, start_s)
    lines += _sizes(entries, features)
    return "\n".join(lines) + "\n"


def _arithmetic(res, start_s: float) -> list[str]:
    parts = {k: _med(res["parts"], k) for k in res["parts"][0] if k != "used"}
    tut = {k: _med(res["tutorial"], k) for k in ("imports", "load", "epoch", "loop_wall", "wall")}
    warm = _med(res["warm"], "wall")
    rows = [
        ("interpreter start (`python -c pass`)", start_s),
        ("imports (engine, config checks, run store)", parts["imports"] - start_s),
        ("data (embedded MNIST loaded, on the device)", parts["data"]),
        ("student built", parts["models"]),
        ("teacher loaded and checked", parts["teachers"]),
        ("teacher outputs (inference copy, keys, stored outputs read)", parts["outputs"]),
        ("optimizer (its first construction imports `torch._dynamo`) and model description", parts["optimizer"]),
        ("rest of set-up (test images on the device, run directory)", parts["rest of set-up"]),
        ("the epoch (student steps reading stored teacher logits)", parts["epoch"]),
        ("evaluation (student on the test split; teacher test logits read)", parts["eval"]),
        ("writing (epoch checkpoint and snapshot, final weights, metrics)", parts["writing"]),
    ]
    total = parts["imports"] + parts["total"]
    fixed = total - parts["epoch"]
    # the command's own share, round by round: the command's process less the same run without it
    share = statistics.median(w["wall"] - p["wall"] for w, p in zip(res["warm"], res["parts"], strict=True))
    return [
        "",
        "### Where a stored-outputs run's seconds go",
        "",
        "A fifth side of every round: the same stored-outputs run in a fresh process without the command line, "
        "its events timed (medians over the rounds). Stored outputs used: "
        f"{res['parts'][-1]['used']}.",
        "",
        "| part | seconds |",
        "|---|---|",
        *[f"| {name} | {secs:.2f} |" for name, secs in rows],
        f"| sum of the parts | {total:.2f} |",
        f"| that process, launch to exit (the rest: the interpreter's exit) | {_med(res['parts'], 'wall'):.2f} |",
        f"| `workbench train distill`, the same run | {warm:.2f} |",
        f"| the command's own share (typer, config validation, output, exit; median of the rounds' differences) "
        f"| {share:.2f} |",
        "",
        "| tutorial script part (medians of the rounds) | seconds |",
        "|---|---|",
        f"| interpreter start and its imports (torch, the data and model code) | {tut['imports']:.2f} |",
        f"| data and teacher loaded | {tut['load']:.2f} |",
        f"| the epoch (teacher forward + student step per batch) | {tut['epoch']:.2f} |",
        f"| the rest of the loop (optimizer, DataLoader, test pass) | {tut['loop_wall'] - tut['epoch']:.2f} |",
        f"| whole process (less the extra imports) | {tut['wall']:.2f} |",
        "",
        f"At 1.8x the tutorial script's {tut['wall']:.2f} s, a stored-outputs run would have to end in "
        f"{tut['wall'] / 1.8:.2f} s. Its student epoch takes {parts['epoch']:.2f} s and everything else "
        f"{fixed + share:.2f} s (imports {parts['imports'] - start_s:.2f} s, the first optimizer "
        f"{parts['optimizer']:.2f} s, evaluation {parts['eval']:.2f} s, the command's own share {share:.2f} s); "
        f"without the command line the same run takes {total:.2f} s, {tut['wall'] / total:.2f}x the tutorial's "
        "speed. The tutorial pays the same student steps plus a teacher forward per batch, and the same "
        "first-optimizer import.",
    ]


def _sizes(entries: list[tuple[str, int, str]], features) -> list[str]:
    lines = [
        "",
        "### Stored outputs: sizes",
        "",
        "| entry (`<store>/.cache/teacher-outputs/`) | bytes |",
        "|---|---|",
        *[f"| {what} (`{name}`) | {size:,} |" for name, size, what in entries],
        "",
        "Features, were a method to read them from the shipped MNIST teacher (float32, 12,000 train images):",
        "",
        "| teacher stage | shape per image | bytes over the split |",
        "|---|---|---|",
        *[f"| `{path}` | {' x '.join(map(str, shape))} | {size / 2**20:,.0f} MiB |" for path, shape, size in features],
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="interleaved rounds (at least 4)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of every side (default: torch's own choice); 1 keeps timings meaningful on a "
        "machine whose cores other work shares, where threads of one process wait on each other",
    )
    parser.add_argument("--tutorial-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--instrumented-child", nargs=2, metavar=("CONFIG", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        CHILD_ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.tutorial_child:
        tutorial_child(args.epochs)
        return 0
    if args.instrumented_child:
        instrumented_child(Path(args.instrumented_child[0]), Path(args.instrumented_child[1]))
        return 0
    load_before = os.getloadavg()[0]

    from _report import write_section

    from workbench.config import config_to_yaml
    from workbench.demo import demo_configs

    kd = demo_configs(epochs=args.epochs)[1]
    with tempfile.TemporaryDirectory(prefix="bench-kd-process-") as tmp:
        work = Path(tmp)
        config = work / "demo-kd.yaml"
        config.write_text(config_to_yaml(kd))
        res, loads = rounds(max(args.pairs, 1), args.epochs, config, work)
        folder = work / "warm" / ".cache" / "teacher-outputs"
        entries = []
        for meta in sorted(folder.glob("*.json")):
            info = json.loads(meta.read_text())
            tensors = meta.with_suffix(".safetensors")
            what = f"{info['data']['split']} split, {info['rows']:,} x logits"
            entries.append((tensors.name, tensors.stat().st_size, what))
    start_s = interpreter_seconds()
    cost = key_and_write_seconds(kd)
    body = _report(args, load_before, res, loads, start_s, cost, entries, feature_sizes())
    write_section("kd-process", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
