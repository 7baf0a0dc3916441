from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from workbench.config import validate_config
from workbench.runs import (
    RunStore,
    RunStoreError,
    WeightsError,
    atomic_save_safetensors,
    atomic_write_json,
    load_weights,
)


def test_atomic_json_replaces_whole_file(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1, "nan": float("nan")})
    atomic_write_json(p, {"x": 2})
    assert p.read_text().strip().startswith("{")
    import json

    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]  # no temp files left behind


def test_create_list_load_delete(tmp_path):
    store = RunStore(tmp_path)
    cfg = validate_config(
        {"kind": "teacher", "name": "t1", "data": {"dataset": "digits"}, "model": {"name": "mlp"}}
    )
    w = store.create(cfg)
    w.write_model_spec(
        {"student": {"name": "mlp", "kwargs": {}, "num_classes": 10, "in_channels": 1, "image_size": 8}}
    )
    model = w.run.build_model()
    state = {f"student.{k}": v for k, v in model.state_dict().items()}
    w.save_checkpoint("final", state)
    w.update_status(status="completed")
    run = store.load(w.id[:-3])  # a unique prefix of the id is enough
    assert run.id == w.id
    with pytest.raises(RunStoreError, match="not found"):
        store.load(w.id[-6:])  # a part of the id that is not its start names no run
    assert run.status["status"] == "completed"
    assert run.config == cfg
    loaded = run.load_model("final")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert [r.id for r in store.list(kind="teacher")] == [w.id]
    assert store.list(kind="distill") == []
    with pytest.raises(RunStoreError, match="no checkpoint 'best'"):
        run.load_state("best")
    store.delete(w.id)
    assert store.ids() == []
    with pytest.raises(RunStoreError, match="not found"):
        store.load(w.id)


def test_dead_running_process_reads_as_interrupted(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(validate_config({}))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    w.update_status(pid=proc.pid)
    assert store.load(w.id).status["status"] == "interrupted"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weight": _Evil()}, fh)
    with pytest.raises(WeightsError, match=r"evil\.pt: refused"):
        load_weights(path)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_plain_pt_and_safetensors_load(tmp_path):
    t = {"a": torch.arange(6.0).reshape(2, 3)}
    torch.save(t, tmp_path / "w.pt")
    assert torch.equal(load_weights(tmp_path / "w.pt")["a"], t["a"])
    atomic_save_safetensors(tmp_path / "w.safetensors", t)
    assert torch.equal(load_weights(tmp_path / "w.safetensors")["a"], t["a"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_weights(tmp_path / "junk.safetensors")
    moved = Path(tmp_path / "w.pt").rename(tmp_path / "w.npy")
    with pytest.raises(WeightsError, match="unknown format"):
        load_weights(moved)


@pytest.mark.slow
def test_kill_mid_checkpoint_leaves_loadable_store(tmp_path):
    """A training process killed at moments when it is writing checkpoints (large ones, so most
    of its time is spent writing) never leaves a run that cannot be listed and loaded."""
    script = textwrap.dedent(
        f"""
        import sys
        from workbench.config import validate_config
        from workbench.runs import RunStore
        from workbench.train import EpochEnded, Trainer
        cfg = validate_config({{"kind": "teacher", "data": {{"dataset": "digits", "batch_size": 256}},
                                "model": {{"name": "mlp", "kwargs": {{"hidden": [1024, 1024]}}}}, "train": {{"epochs": 50}}}})
        def tell(event):
            if isinstance(event, EpochEnded):
                print("epoch", event.epoch, flush=True)
        Trainer(cfg, store=RunStore({str(tmp_path)!r}), subscribers=[tell]).run()
        """
    )
    for epochs_seen, extra_delay in ((1, 0.0), (2, 0.05), (2, 0.15), (3, 0.01)):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        seen = 0
        while seen < epochs_seen:
            line = proc.stdout.readline()
            assert line, "training process ended early"
            seen += line.startswith("epoch")
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    store = RunStore(tmp_path)
    runs = store.list()
    assert len(runs) == 4
    for run in runs:
        assert run.status["status"] == "interrupted"
        assert run.config.model.kwargs["hidden"] == [1024, 1024]
        assert run.checkpoints(), "at least the first epoch's snapshot is complete"
        for name in run.checkpoints():
            run.load_model(name)
        assert isinstance(run.metrics["epochs"], list)
