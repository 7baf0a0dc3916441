"""Run every benchmark in turn; each rewrites its own section of docs/benchmarks.md.

python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_demo.py",
    "bench_training.py",
    "bench_analysis.py",
    "bench_app.py",
    "bench_class.py",
    "bench_lessons.py",
    "bench_gpu.py",
    "bench_step_metrics.py",
    "bench_fixed_cost.py",
    "bench_kd_process.py",
    "bench_dataset_folder.py",
    "bench_cifar.py",
    "leaderboard.py",
]


def main() -> int:
    for name in SCRIPTS:
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / name)])
        if code:
            return code
    print("methods table: python benchmarks/methods_table.py (long; writes docs/methods.md)")
    print("rdd weights:   python benchmarks/rdd_weighting.py (writes its section of docs/methods.md)")
    print("doctor clinic: python benchmarks/doctor_clinic.py (long; writes docs/doctor.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
