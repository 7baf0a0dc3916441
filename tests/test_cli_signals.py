"""Ctrl-C and SIGTERM stop a CLI training run after the current step: the run is left `stopped`,
with the summary of its completed epochs kept and its checkpoints loadable (never `failed`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """
kind: student
name: signal-test
seed: 0
data: {dataset: digits, batch_size: 16}
model: {name: mlp}
train: {epochs: 400, device: cpu}
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_run_and_keeps_its_epochs(tmp_path: Path, sig: int) -> None:
    from workbench.runs import RunStore

    cfg = tmp_path / "run.yaml"
    cfg.write_text(CONFIG)
    runs = tmp_path / "runs"
    env = {**os.environ, "WORKBENCH_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "train", "student", "--config", str(cfg), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until at least one epoch is on disk
            metrics = list(runs.glob("*/metrics.json"))
            if metrics:
                try:
                    if len(json.loads(metrics[0].read_text()).get("epochs", [])) >= 1:
                        break
                except ValueError:
                    pass
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("no epoch was written in time")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    (run,) = RunStore(runs).list()
    assert run.status["status"] == "stopped", run.status
    summary = run.metrics.get("summary", {})
    assert summary.get("epochs_done", 0) >= 1 and "test_acc" in summary
    assert "final" in run.checkpoints() or "epoch_001" in run.checkpoints()
    run.load_model("epoch_001")  # the completed epoch loads
