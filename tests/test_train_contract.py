"""The training side of the runtime contract: progress, cancellation, events as data, weight
snapshots, one training entry (chains included) and sweeps that train through it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from workbench.config import validate_config
from workbench.runs import RunStore, load_weights
from workbench.runtime import Cancelled, CancelToken
from workbench.train import (
    SETUP_UNITS,
    ChainError,
    EpochEnded,
    EvalEnded,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    SetupProgress,
    SnapshotError,
    StepEnded,
    Trainer,
    TrainingFailed,
    run,
    training_state,
)

MLP = {"name": "mlp", "kwargs": {"hidden": [32]}}
CNN_T = {"name": "cnn", "kwargs": {"channels": [8, 16]}}


@pytest.fixture(scope="module")
def small(digits):
    """320 training and 128 test digits (5 steps of 64 per epoch)."""
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(320)), test=digits.test.subset(torch.arange(128))
    )


def _cfg(**over):
    base = {
        "kind": "student",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 64},
        "model": MLP,
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 3},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return validate_config(base)


def _kd(**over):
    return _cfg(
        kind="distill", distill={"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1}, **over
    )


@pytest.fixture(scope="module")
def teacher(small):
    torch.manual_seed(0)
    from workbench.models import create_model

    return create_model("cnn", num_classes=10, in_channels=1, image_size=8, **CNN_T["kwargs"]).eval()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---- progress --------------------------------------------------------------------------------


def test_progress_is_one_monotone_count_over_setup_and_steps(small, teacher, tmp_path):
    calls, setup = [], []

    def progress(done, total, message):
        calls.append((done, total, message))

    def listen(event):
        if isinstance(event, SetupProgress):
            setup.append(event)

    result = run(
        _kd(),
        store=RunStore(tmp_path),
        dataset=small,
        teachers=[teacher],
        progress=progress,
        subscribers=[listen],
        teacher_cache="eager",
    )
    steps = result.summary["steps"]
    assert steps == 3 * math.ceil(320 / 64)
    dones = [d for d, _, _ in calls]
    fractions = [d / t for d, t, _ in calls]
    assert dones == sorted(dones) and fractions == sorted(fractions)
    assert all(0 <= d <= t for d, t, _ in calls)
    assert calls[-1][0] == calls[-1][1] == SETUP_UNITS + steps
    assert calls[0][0] == 0 and calls[0][2].startswith("set-up")
    assert sum(m.startswith("epoch 3/3") for _, _, m in calls) == 5
    # set-up events: monotone in their own units, every phase in order, ending at the total
    assert [e.done for e in setup] == sorted(e.done for e in setup)
    assert setup[-1].done == setup[-1].total == SETUP_UNITS
    phases = list(dict.fromkeys(e.phase for e in setup))
    assert phases == [
        "data",
        "models",
        "teachers",
        "teacher cache",
        "teacher test logits",
        "optimizer",
        "ready",
    ]
    # the eager teacher cache reports per batch (320 images / 64 = 5 batches)
    assert sum(e.phase == "teacher cache" for e in setup) >= 1 + 5
    assert result.summary["teacher_cache"] is True
    assert all(e.run_id == result.run_id for e in setup)


# ---- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phase", ["data", "models", "teachers", "teacher cache", "teacher test logits", "optimizer"]
)
def test_cancel_during_setup_raises_and_leaves_nothing(phase, small, teacher, tmp_path):
    token = CancelToken()
    seen = []
    hooks_before = (len(teacher._forward_hooks), teacher.training)

    def listen(event):
        seen.append(event)
        if isinstance(event, SetupProgress) and event.phase == phase:
            token.cancel()

    store = RunStore(tmp_path / "runs")
    with pytest.raises(Cancelled, match="set-up"):
        run(_kd(), store=store, dataset=small, teachers=[teacher], subscribers=[listen], cancel=token)
    assert _leftovers(tmp_path / "runs") == []  # no run directory, no staging folder
    assert not any(isinstance(e, RunStarted) for e in seen)
    assert (len(teacher._forward_hooks), teacher.training) == hooks_before


def test_cancel_in_the_middle_of_the_teacher_cache(small, teacher, tmp_path):
    token = CancelToken()
    batches = []

    def listen(event):
        if isinstance(event, SetupProgress) and event.phase == "teacher cache" and "/" in event.message:
            batches.append(event.message)
            if event.message == "teacher cache 2/5":
                token.cancel()

    with pytest.raises(Cancelled):
        run(
            _kd(),
            store=RunStore(tmp_path),
            dataset=small,
            teachers=[teacher],
            subscribers=[listen],
            cancel=token,
            teacher_cache="eager",
        )
    # counted per batch, stopped before the third of five batches
    assert batches == ["teacher cache 0/5", "teacher cache 1/5", "teacher cache 2/5"]
    assert _leftovers(tmp_path) == [] and len(teacher._forward_hooks) == 0


def test_cancel_mid_training_leaves_a_stopped_loadable_run(small, tmp_path):
    token = CancelToken()

    def listen(event):
        if isinstance(event, StepEnded) and event.step == 7:  # epoch 2 of 3, 2 steps in
            token.cancel()

    store = RunStore(tmp_path)
    result = run(_cfg(), store=store, dataset=small, subscribers=[listen], cancel=token)
    assert result.status == "stopped" and result.summary["steps"] == 7
    assert len(result.history) == 1 and result.summary["epochs_done"] == 1  # only completed epochs
    stored = store.load(result.run_id)
    assert stored.status["status"] == "stopped" and stored.status["step"] == 7
    assert stored.metrics["summary"]["epochs_done"] == 1 and len(stored.metrics["epochs"]) == 1
    model = stored.load_model("final")
    for k, v in result.student.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_stop_request_is_cleared_when_run_starts_again(small, tmp_path):
    store = RunStore(tmp_path)
    trainer = Trainer(_cfg(), store=store, dataset=small)

    def stop_at_2(event):
        if isinstance(event, StepEnded) and event.step == 2:
            trainer.request_stop()

    trainer.subscribers.append(stop_at_2)
    first = trainer.run()
    assert first.status == "stopped" and first.summary["steps"] == 2
    trainer.subscribers.remove(stop_at_2)
    second = trainer.run()
    assert second.status == "completed" and second.summary["steps"] == 15
    assert first.run_id != second.run_id
    assert [store.load(r).status["status"] for r in (first.run_id, second.run_id)] == ["stopped", "completed"]
    assert trainer.subscribers == []  # the store writer of a run does not stay attached
    # a stop requested before run() belongs to the previous run: cleared, the run completes
    trainer.request_stop()
    assert trainer.run().status == "completed"


def test_request_stop_during_setup_is_a_cancel(small, tmp_path):
    trainer = Trainer(_cfg(), store=RunStore(tmp_path), dataset=small)

    def listen(event):
        if isinstance(event, SetupProgress) and event.phase == "models":
            trainer.request_stop()

    trainer.subscribers.append(listen)
    with pytest.raises(Cancelled, match="stop requested"):
        trainer.run()
    assert _leftovers(tmp_path) == []


# ---- events as data --------------------------------------------------------------------------


def _all_kinds_of_events(small, tmp_path):
    """Events of a completed run, a stopped run and a failed run."""
    events: list = []
    run(
        _cfg(train={"eval_every": 1}),
        store=RunStore(tmp_path / "a"),
        dataset=small,
        subscribers=[events.append],
    )
    stopped: list = []
    token = CancelToken()

    def stop(event):
        stopped.append(event)
        if isinstance(event, StepEnded) and event.step == 8:
            token.cancel()

    run(_cfg(), dataset=small, subscribers=[stop], cancel=token)
    failed: list = []
    trainer = Trainer(_cfg(), dataset=small, subscribers=[failed.append])

    def inject(terms, step):
        if step == 6:  # the second step of epoch 2
            terms["ce"] = terms["ce"] * float("nan")

    trainer.term_hook = inject
    with pytest.raises(TrainingFailed) as err:
        trainer.run()
    return events, stopped, failed, err.value


def test_epochs_are_counted_from_one_in_every_event(small, tmp_path):
    events, stopped, failed, err = _all_kinds_of_events(small, tmp_path)
    spe = 5
    for e in events + stopped + failed:
        if hasattr(e, "epoch"):
            assert 1 <= e.epoch <= 3, e
        if isinstance(e, StepEnded):
            assert e.epoch == math.ceil(e.step / spe)  # steps 1..5 are epoch 1, 6..10 epoch 2
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [1, 2, 3]
    assert [e.epoch for e in events if isinstance(e, EvalEnded)] == [1, 2, 3]
    assert [e.metrics["epoch"] for e in events if isinstance(e, EpochEnded)] == [1, 2, 3]
    (fin,) = [e for e in events if isinstance(e, RunFinished)]
    assert fin.epoch == 3 and fin.step == 15
    (stop,) = [e for e in stopped if isinstance(e, RunStopped)]
    assert stop.epoch == 2 and stop.step == 8
    (fail,) = [e for e in failed if isinstance(e, RunFailed)]
    assert fail.epoch == 2 and err.epoch == 2 and "(epoch 2)" in str(err)


def test_run_failed_records_the_same_epoch_in_the_store(small, tmp_path):
    store = RunStore(tmp_path)
    trainer = Trainer(_cfg(), dataset=small, store=store)

    def inject(terms, step):
        if step == 6:
            terms["ce"] = terms["ce"] * float("nan")

    trainer.term_hook = inject
    with pytest.raises(TrainingFailed):
        trainer.run()
    (stored,) = store.list()
    assert stored.status["failure"]["epoch"] == 2 and stored.status["failure"]["step"] == 6


def test_every_event_is_immutable_json_data(small, tmp_path):
    events, stopped, failed, _ = _all_kinds_of_events(small, tmp_path)
    everything = events + stopped + failed
    kinds = {type(e) for e in everything}
    assert kinds == {
        SetupProgress,
        RunStarted,
        StepEnded,
        EvalEnded,
        EpochEnded,
        RunFinished,
        RunStopped,
        RunFailed,
    }
    for e in everything:
        d = e.to_dict()
        text = json.dumps(d, allow_nan=False)  # strict JSON: NaN terms become null
        assert json.loads(text)["type"] == type(e).__name__
        assert "snapshot" not in d
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.step = 0  # type: ignore[misc]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert validate_config(started.to_dict()["config"]) == started.config
    fail = next(e for e in failed if isinstance(e, RunFailed))
    assert fail.to_dict()["terms"]["ce"] is None
    # a later epoch does not change what an earlier event holds
    first, last = [e for e in events if isinstance(e, EpochEnded)][::2]
    assert len(first.history) == 1 and len(last.history) == 3


# ---- weight snapshots ------------------------------------------------------------------------


class _Keeper(list):
    """Keeps every event to read later: declares it wants the weights copied at emission."""

    wants_state = True

    def __call__(self, event):
        self.append(event)


def test_epoch_snapshot_read_after_the_run_holds_that_epochs_weights(small):
    copies = {}
    trainer = Trainer(_cfg(), dataset=small)

    def copy_now(event):  # the reference: weights copied while the event is emitted
        if isinstance(event, EpochEnded):
            copies[event.epoch] = {
                k: v.detach().clone() for k, v in training_state(trainer.student, trainer.method).items()
            }

    keeper = _Keeper()
    trainer.subscribers += [copy_now, keeper]
    result = trainer.run()
    epochs = [e for e in keeper if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    first = epochs[0].snapshot.state()
    assert set(first) == set(copies[1]) and all(k.startswith("student.") for k in first)
    for k, v in copies[1].items():
        assert torch.equal(first[k], v), k
        assert first[k].device.type == "cpu"
    final = {f"student.{k}": v for k, v in result.student.state_dict().items()}
    assert any(not torch.equal(first[k], final[k]) for k in final)  # epoch 1 is not the final model
    (fin,) = [e for e in keeper if isinstance(e, RunFinished)]
    for k, v in final.items():
        assert torch.equal(fin.snapshot.state()[k], v)
    # a snapshot never aliases the live model
    w = next(k for k in final if k.endswith("weight"))
    assert fin.snapshot.state()[w].data_ptr() != result.student.state_dict()[w[len("student.") :]].data_ptr()


def test_no_copy_unless_asked_and_never_a_wrong_late_read(small):
    kept = []  # keeps events but did not declare wants_state
    run(_cfg(), dataset=small, subscribers=[kept.append])
    epochs = [e for e in kept if isinstance(e, EpochEnded)]
    assert epochs and not any(e.snapshot.available for e in epochs)  # no copy was made
    with pytest.raises(SnapshotError, match="wants_state"):
        epochs[0].snapshot.state()


def test_a_snapshot_read_during_emission_is_kept(small):
    read = {}
    kept = []

    def reader(event):
        kept.append(event)
        if isinstance(event, EpochEnded) and event.epoch == 1:
            read["during"] = event.snapshot.state()

    run(_cfg(), dataset=small, subscribers=[reader])
    first = next(e for e in kept if isinstance(e, EpochEnded))
    later = [e for e in kept if isinstance(e, EpochEnded)][1:]
    after = first.snapshot.state()
    assert all(torch.equal(after[k], v) for k, v in read["during"].items())
    assert not any(e.snapshot.available for e in later)


# ---- one training entry: chains --------------------------------------------------------------


def _chain_cfg(teacher_id: str, method: dict):
    return _cfg(
        kind="distill",
        name="chain",
        model={"name": "cnn", "kwargs": {"channels": [4, 8]}},
        teachers=[{"source": f"run:{teacher_id}"}],
        distill={"methods": [method]},
        train={"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
    )


def test_chains_train_through_run(small, tmp_path):
    store = RunStore(tmp_path)
    t = run(
        _cfg(kind="teacher", model=CNN_T, train={"epochs": 1, "max_steps": 3}), store=store, dataset=small
    )
    assert t.link_ids == [t.run_id]
    calls = []
    result = run(
        _chain_cfg(t.run_id, {"name": "ban", "params": {"generations": 2}}),
        store=store,
        dataset=small,
        run_id="my-chain",
        progress=lambda d, n, m: calls.append((d, n, m)),
    )
    assert len(result.link_ids) == 2 and result.link_ids[0] == "my-chain"
    assert result.run_id == result.link_ids[-1] != "my-chain"
    runs = [store.load(i) for i in result.link_ids]
    assert [r.status["status"] for r in runs] == ["completed", "completed"]
    assert [r.config.links["chain_role"] for r in runs] == ["gen1", "gen2"]
    assert runs[1].config.teachers[0].source == "run:my-chain"
    fractions = [d / n for d, n, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("gen1" in m for *_, m in calls) and any("gen2" in m for *_, m in calls)
    with pytest.raises(ChainError, match="store"):
        run(_chain_cfg(t.run_id, {"name": "ban"}), dataset=small)


def test_a_chain_stops_at_a_stopped_link(small, tmp_path):
    store = RunStore(tmp_path)
    t = run(
        _cfg(kind="teacher", model=CNN_T, train={"epochs": 1, "max_steps": 3}), store=store, dataset=small
    )
    token = CancelToken()

    def stop(event):
        if isinstance(event, StepEnded):
            token.cancel()

    cfg = _chain_cfg(t.run_id, {"name": "ban", "params": {"generations": 3}})
    result = run(cfg, store=store, dataset=small, subscribers=[stop], cancel=token)
    assert result.status == "stopped" and len(result.link_ids) == 1
    assert len(store.list(kind="distill")) == 1


# ---- sweeps train through the same entry -----------------------------------------------------

SWEEP_BASE = {
    "kind": "distill",
    "data": {"dataset": "digits", "batch_size": 64, "train_subset": 256},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "distill": {"methods": [{"name": "dml", "params": {"peers": 2}}]},
    "optim": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 2, "snapshot_every_epoch": True},
}


def _sweep(tmp_path: Path, **extra) -> Path:
    spec = {"name": "contract", "config": SWEEP_BASE, "seeds": [0], **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_dml_checkpoint_equals_the_engines(tmp_path):
    from workbench.sweep import expand_trials, load_sweep, run_sweep, trial_run_id

    spec = load_sweep(_sweep(tmp_path))
    (trial,) = expand_trials(spec)
    swept = RunStore(tmp_path / "sweep")
    (outcome,) = run_sweep(spec, swept)
    assert outcome.status == "completed" and outcome.run_id == trial_run_id(trial)
    direct = RunStore(tmp_path / "direct")
    result = run(trial.config, store=direct)
    a, b = swept.load(outcome.run_id), direct.load(result.run_id)
    assert a.checkpoints() == b.checkpoints() == ["best", "epoch_001", "epoch_002", "final"]
    for name in a.checkpoints():
        sa = load_weights(a.path / "checkpoints" / f"{name}.safetensors")
        sb = load_weights(b.path / "checkpoints" / f"{name}.safetensors")
        assert set(sa) == set(sb)
        assert any(k.startswith("peer0.") for k in sa) and any(k.startswith("peer1.") for k in sa)
        for k, v in sa.items():
            assert torch.equal(v, sb[k]), (name, k)
    assert a.metrics["summary"]["test_acc"] == b.metrics["summary"]["test_acc"]
    assert a.model_spec == b.model_spec


def test_sweep_resumes_over_leftovers_of_a_killed_attempt(tmp_path):
    from workbench.sweep import expand_trials, load_sweep, run_sweep, trial_run_id

    spec = load_sweep(_sweep(tmp_path, seeds=[0, 1]))
    trials = expand_trials(spec)
    store = RunStore(tmp_path / "runs")
    # an earlier driver died while trial 0 trained: its run is left "running" with a dead pid
    writer = store.create(trials[0].config, run_id=trial_run_id(trials[0]))
    writer.update_status(pid=2**22 + 12345)
    assert store.load(writer.id).status["status"] == "interrupted"
    outcomes = run_sweep(spec, store)
    assert [o.status for o in outcomes] == ["completed", "completed"]
    assert sorted(store.ids()) == sorted(trial_run_id(t) for t in trials)


def test_sweep_chain_trial_completes_only_with_its_last_link(tmp_path, small):
    from workbench.sweep import completed_trials, expand_trials, load_sweep, run_sweep

    store = RunStore(tmp_path / "runs")
    t = run(_cfg(kind="teacher", model=CNN_T, train={"epochs": 1, "max_steps": 3}), store=store)
    cfg = {
        **SWEEP_BASE,
        "model": {"name": "cnn", "kwargs": {"channels": [4, 8]}},
        "teachers": [{"source": f"run:{t.run_id}"}],
        "distill": {"methods": [{"name": "ban", "params": {"generations": 2}}]},
        "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
    }
    spec = load_sweep(_sweep(tmp_path, config=cfg))
    (outcome,) = run_sweep(spec, store)
    assert outcome.status == "completed"
    last = store.load(outcome.run_id)
    assert last.config.links["chain_role"] == "gen2"
    (trial,) = expand_trials(spec)
    assert completed_trials(store, "contract") == {trial.key: outcome.run_id}
    # without its last link, the chain trial is not complete and is trained again
    store.delete(outcome.run_id)
    assert completed_trials(store, "contract") == {}
    (again,) = run_sweep(spec, store)
    assert again.status == "completed" and not again.skipped
    assert len(store.list(kind="distill")) == 2


_POOL_SCRIPT = """
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
from workbench.runs import RunStore
from workbench.sweep import load_sweep, run_sweep
outcomes = run_sweep(load_sweep(sys.argv[1]), RunStore(sys.argv[2]))
print("STATUSES", " ".join(o.status for o in outcomes), flush=True)
"""


@pytest.mark.slow
def test_pool_sweep_under_a_low_open_file_limit_lands_every_trial(tmp_path):
    base = {**SWEEP_BASE, "train": {"epochs": 4, "snapshot_every_epoch": True}}
    path = _sweep(tmp_path, config=base, seeds=[0, 1, 2], grid={"optim.lr": [0.05, 0.1]}, workers=2)
    root = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-c", _POOL_SCRIPT, str(path), str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUSES " + " ".join(["completed"] * 6) in proc.stdout
    store = RunStore(root)
    runs = store.list()
    assert len(runs) == 6 and all(r.status["status"] == "completed" for r in runs)
    for r in runs:
        assert r.checkpoints() == ["best", "epoch_001", "epoch_002", "epoch_003", "epoch_004", "final"]
        assert any(k.startswith("peer1.") for k in r.load_state("final"))


_KILL_SCRIPT = """
import sys
from workbench.runs import RunStore
from workbench.sweep import load_sweep, run_sweep
run_sweep(load_sweep(sys.argv[1]), RunStore(sys.argv[2]))
"""


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return "State:\tZ" in state


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_driver_leaves_no_worker_training(tmp_path):
    base = {**SWEEP_BASE, "data": {**SWEEP_BASE["data"], "train_subset": None}, "train": {"epochs": 200}}
    path = _sweep(tmp_path, config=base, seeds=[0, 1], workers=2)
    root = tmp_path / "runs"
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILL_SCRIPT), str(path), str(root)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    pids: set[int] = set()
    deadline = time.monotonic() + 240
    try:
        while len(pids) < 2 and time.monotonic() < deadline:
            for status in root.glob("*/status.json"):
                try:
                    pids.add(json.loads(status.read_text())["pid"])
                except (ValueError, KeyError, OSError):
                    pass
            time.sleep(0.2)
        assert len(pids) == 2, "workers did not start training"
        assert driver.pid not in pids
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 30
    while not all(_dead(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_dead(p) for p in pids), "a worker kept training after its driver was killed"


# ---- teacher sanity ---------------------------------------------------------------------------


def test_warning_threshold_by_hand():
    from workbench.train import teacher_warning_threshold

    assert teacher_warning_threshold(10) == pytest.approx(0.2)  # max(2/10, 0.1 + 0.1)
    assert teacher_warning_threshold(100) == pytest.approx(0.11)  # max(0.02, 0.01 + 0.1)
    assert teacher_warning_threshold(4) == pytest.approx(0.5)  # max(0.5, 0.35)
    assert teacher_warning_threshold(2) == pytest.approx(0.75)  # capped halfway between chance and 1


def test_a_teacher_near_chance_warns_and_the_run_goes_on(small, tmp_path):
    from workbench.models import create_model
    from workbench.train import RunWarning

    blank = create_model("mlp", num_classes=10, in_channels=1, image_size=8, hidden=[8])
    with torch.no_grad():
        for p in blank.parameters():
            p.zero_()  # every image gets class 0: accuracy = the share of zeros in the test split
    events = []
    store = RunStore(tmp_path)
    result = run(_kd(), store=store, dataset=small, teachers=[blank], subscribers=[events.append])
    share = float((small.test.labels == 0).float().mean())
    assert result.status == "completed" and result.summary["teacher_test_acc"] == pytest.approx(share)
    warnings = [e for e in events if isinstance(e, RunWarning)]
    assert len(warnings) == 1 and warnings[0].code == "teacher_near_chance" and warnings[0].epoch == 1
    assert "\n" not in warnings[0].message and f"{100 * share:.1f}%" in warnings[0].message
    assert result.warnings == [warnings[0].message]
    stored = store.load(result.run_id)
    assert stored.status["warnings"] == [warnings[0].message]
    assert stored.metrics["teacher"]["teacher_test_acc"] == pytest.approx(share)


def test_a_good_teacher_gives_no_warning(small, tmp_path):
    from workbench.train import RunWarning, Trainer

    teacher_cfg = _cfg(
        kind="teacher",
        model={"name": "mlp", "kwargs": {"hidden": [64]}},
        optim={"name": "adamw", "lr": 0.01},
        train={"epochs": 10},
    )
    good = Trainer(teacher_cfg, dataset=small).run().student
    events = []
    result = run(_kd(), dataset=small, teachers=[good], subscribers=[events.append])
    assert result.summary["teacher_test_acc"] > 0.5
    assert not any(isinstance(e, RunWarning) for e in events) and result.warnings == []
