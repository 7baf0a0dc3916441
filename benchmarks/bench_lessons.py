"""Time every lesson in notebooks/ end to end, as a fresh kernel runs it (nbclient), at full size and
under ``WORKBENCH_FAST=1`` (the size the test suite runs), and write the "Lessons" section of
docs/benchmarks.md.

    python benchmarks/bench_lessons.py                 # every lesson, both sizes
    python benchmarks/bench_lessons.py --fast-only     # only the WORKBENCH_FAST=1 size
    python benchmarks/bench_lessons.py 05_loss_landscapes.ipynb   # some lessons (section lists these)

Targets: at most 180 s per lesson at full size and 30 s under ``WORKBENCH_FAST=1`` on a 2-core CPU.
Each lesson runs in its own temporary workspace (``WORKBENCH_RUNS``) and exercise checks are strict
(``WORKBENCH_STRICT_CHECKS=1``), so a lesson whose reference answer fails its check fails here too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FULL_TARGET_S = 180.0
FAST_TARGET_S = 30.0


def time_lesson(path: Path, *, fast: bool, timeout: int = 1800) -> float:
    """Seconds to execute ``path`` in a fresh ``python3`` kernel (kernel start included).

    Raises ``nbclient.exceptions.CellExecutionError`` when a cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in ("WORKBENCH_FAST", "WORKBENCH_STRICT_CHECKS", "WORKBENCH_RUNS")}
    with tempfile.TemporaryDirectory(prefix="bench-lessons-") as ws:
        os.environ["WORKBENCH_STRICT_CHECKS"] = "1"
        os.environ["WORKBENCH_RUNS"] = ws
        if fast:
            os.environ["WORKBENCH_FAST"] = "1"
        else:
            os.environ.pop("WORKBENCH_FAST", None)
        try:
            client = NotebookClient(
                nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}}
            )
            t0 = time.perf_counter()
            client.execute()
            return time.perf_counter() - t0
        finally:
            for k, v in env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    """Time the lessons and write the section; returns 0, or 1 when a lesson failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="notebook file names in notebooks/ (default: all)")
    parser.add_argument("--fast-only", action="store_true", help="skip the full-size runs")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / n for n in args.lessons] if args.lessons else sorted(NOTEBOOKS.glob("*.ipynb"))
    rows: list[tuple[str, float | None, float | None]] = []
    failed = False
    for path in paths:
        timings: list[float | None] = []
        for fast in (False, True):
            if not fast and args.fast_only:
                timings.append(None)
                continue
            label = "fast" if fast else "full"
            print(f"== {path.name} ({label})", flush=True)
            try:
                seconds = time_lesson(path, fast=fast)
            except Exception as err:  # noqa: BLE001 - reported, the other lessons still run
                print(f"   failed: {str(err).strip().splitlines()[-1] if str(err).strip() else err!r}", flush=True)
                failed = True
                timings.append(None)
                continue
            print(f"   {seconds:.1f} s", flush=True)
            timings.append(seconds)
        rows.append((path.name, timings[0], timings[1]))

    def cell(seconds: float | None, target: float) -> str:
        if seconds is None:
            return "-"
        return f"{seconds:.1f} s" + ("" if seconds <= target else " (over target)")

    command = "python benchmarks/bench_lessons.py" + (" --fast-only" if args.fast_only else "")
    if args.lessons:
        command += " " + " ".join(args.lessons)
    table = "\n".join(
        f"| `{name}` | {cell(full, FULL_TARGET_S)} | {cell(fast, FAST_TARGET_S)} |" for name, full, fast in rows
    )
    body = f"""## Lessons

`{command}` — each lesson executed end to end in a fresh kernel with nbclient (kernel start
included), in a temporary workspace, with strict exercise checks; full size and under
`WORKBENCH_FAST=1` (the size the test suite runs). Targets: <= {FULL_TARGET_S:.0f} s at full size,
<= {FAST_TARGET_S:.0f} s fast. Machine: {machine()}; other jobs may have shared it.

| lesson | full size | `WORKBENCH_FAST=1` |
|---|---|---|
{table}
"""
    write_section("lessons", body)
    print(body)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
