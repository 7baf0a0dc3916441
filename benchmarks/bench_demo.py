"""`workbench demo` from start to printed table, timed as a user would see it (a fresh process),
with the shipped MNIST teacher's accuracy and the KD student's accuracy and size.

    python benchmarks/bench_demo.py

Targets: at most 60 s; teacher >= 99.0 %; KD student (<= 100k parameters) >= 98.0 %.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

from workbench.runs import RunStore  # noqa: E402
from workbench.runs.teachers import (
    load_shipped_teacher,  # noqa: E402
    shipped_teacher_card,  # noqa: E402
)


def main() -> int:
    with tempfile.TemporaryDirectory() as ws:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "demo", "--quiet", "--runs", ws],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - t0
        runs = {r.config.name: r for r in RunStore(ws).list()}
        kd = runs["demo-kd"].metrics["summary"]
        scratch = runs["demo-scratch"].metrics["summary"]
    card = shipped_teacher_card("mnist")
    load_shipped_teacher("mnist")  # the weights load

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    body = f"""## Demo

`python benchmarks/bench_demo.py` — `workbench demo` in a fresh process, embedded MNIST subset
(12,000 train / 2,000 test). Machine: {machine()}.

| | figure | target | |
|---|---|---|---|
| `workbench demo`, start to printed table | {seconds:.1f} s | <= 60 s | {ok(seconds <= 60)} |
| shipped teacher `{card["model"]["name"]}` ({card["params"]:,} params) test accuracy | {100 * card["test_acc"]:.2f}% | >= 99.0% | {ok(card["test_acc"] >= 0.99)} |
| KD student ({kd["params"]:,} params) test accuracy | {100 * kd["test_acc"]:.2f}% | >= 98.0%, <= 100k params | {ok(kd["test_acc"] >= 0.98 and kd["params"] <= 100_000)} |
| scratch student, same architecture and budget | {100 * scratch["test_acc"]:.2f}% | (reference) | |
| KD student agreement with the teacher | {100 * kd["agreement"]:.2f}% (scratch: {100 * scratch["agreement"]:.2f}%) | | |

```
{proc.stdout.strip()}
```
"""
    write_section("demo", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
