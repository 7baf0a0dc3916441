"""Step-level metrics: what the engine records every ``train.step_log_every`` steps, how the run
store appends them to ``steps.jsonl`` and how a torn or damaged step log reads."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.config import ConfigError, validate_config
from workbench.models import create_model
from workbench.runs import RunStore
from workbench.runs.steps import STEP_LOG_FILE, StepLog, read_step_log
from workbench.train import StepEnded, Trainer, lr_factor, run
from workbench.train.steplog import step_log_interval
from workbench.vocabulary import LOSS_TERM_PREFIX, STEP_METRICS

MLP = {"name": "mlp", "kwargs": {"hidden": [32]}}
FIXED = {"step", "epoch", "time", *STEP_METRICS}


def _cfg(**over):
    base = {
        "kind": "student",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 512},
        "model": MLP,
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 2},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return validate_config(base)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return create_model("mlp", num_classes=10, in_channels=1, image_size=8, hidden=[48]).eval()


def _records(store, run_id):
    log = store.load(run_id).step_metrics()
    assert log.damage is None
    return log.records


def _expected_steps(every, spe, total):
    return [s for s in range(1, total + 1) if s % every == 0 or s % spe == 0 or s == total]


# ---- what is recorded ------------------------------------------------------------------------


def test_about_fifty_points_per_epoch_with_increasing_steps(digits, tmp_path):
    store = RunStore(tmp_path)
    result = run(_cfg(data={"batch_size": 16}), store=store, dataset=digits)  # 90 steps per epoch
    records = _records(store, result.run_id)
    spe = 90
    every = step_log_interval(None, spe)
    assert every == 2
    assert [r["step"] for r in records] == _expected_steps(every, spe, 2 * spe)
    per_epoch = [sum(r["epoch"] == e for r in records) for e in (1, 2)]
    assert per_epoch == [45, 45]
    assert [r["epoch"] for r in records] == [math.ceil(r["step"] / spe) for r in records]
    for r in records:
        assert set(r) == FIXED | {"loss/ce"}
        assert 0.0 <= r["batch_acc"] <= 1.0 and r["images_per_s"] > 0 and r["loss"] == r["loss/ce"]
    times = [r["time"] for r in records]
    assert times == sorted(times) and times[0] > 0
    # the last step of every epoch is recorded: its step is the epoch record's
    assert {r["step"] for r in records} >= {h["step"] for h in result.history}


def test_every_step_when_an_epoch_has_fewer_than_fifty(digits, tmp_path):
    store = RunStore(tmp_path)
    result = run(_cfg(), store=store, dataset=digits)  # 23 steps per epoch
    assert [r["step"] for r in _records(store, result.run_id)] == list(range(1, 47))


def test_every_n_steps_and_each_epochs_last(digits, tmp_path):
    store = RunStore(tmp_path)
    result = run(_cfg(train={"step_log_every": 5}), store=store, dataset=digits)
    assert [r["step"] for r in _records(store, result.run_id)] == _expected_steps(5, 23, 46)
    assert _expected_steps(5, 23, 46)[:6] == [5, 10, 15, 20, 23, 25]


def test_kd_terms_sum_to_the_loss_and_lr_follows_the_schedule(digits, teacher, tmp_path):
    store = RunStore(tmp_path)
    cfg = _cfg(
        kind="distill",
        distill={"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
        schedule={"name": "cosine", "warmup_epochs": 0.5},
        train={"epochs": 2, "step_log_every": 3},
    )
    result = run(cfg, store=store, dataset=digits, teachers=[teacher])
    records = _records(store, result.run_id)
    epoch_terms = {k for h in result.history for k in h if k.startswith(LOSS_TERM_PREFIX)}
    assert epoch_terms == {"loss/ce", "loss/kd"}
    spe, total = 23, 46
    for r in records:
        terms = {k for k in r if k.startswith(LOSS_TERM_PREFIX)}
        assert terms == epoch_terms
        assert sum(r[k] for k in terms) == pytest.approx(r["loss"], rel=1e-5, abs=1e-6)
        expected_lr = cfg.optim.lr * lr_factor(r["step"] - 1, total, spe, cfg.schedule, cfg.optim.lr)
        assert r["lr"] == pytest.approx(expected_lr, rel=1e-12)
    lrs = [r["lr"] for r in records]
    assert lrs[0] < lrs[2] and lrs[-1] < lrs[len(lrs) // 2]  # warm-up, then the cosine decay


def test_step_metrics_leave_the_epoch_metrics_as_they_are(digits, tmp_path):
    on = run(_cfg(), store=RunStore(tmp_path / "on"), dataset=digits)
    off_store = RunStore(tmp_path / "off")
    off = run(_cfg(train={"step_log_every": 0}), store=off_store, dataset=digits)

    def plain(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert plain(on.history) == plain(off.history)
    assert not (off_store.load(off.run_id).path / STEP_LOG_FILE).exists()  # 0 = off: no file
    assert off_store.load(off.run_id).step_metrics() == StepLog([], None)


def test_steps_ended_carry_the_record_only_on_recorded_steps(digits):
    seen = []
    Trainer(
        _cfg(data={"batch_size": 16}, train={"epochs": 1}), dataset=digits, subscribers=[seen.append]
    ).run()
    steps = [e for e in seen if isinstance(e, StepEnded)]
    recorded = [e.step for e in steps if e.metrics is not None]
    assert len(steps) == 90 and recorded == _expected_steps(2, 90, 90)
    json.dumps(steps[1].to_dict(), allow_nan=False)


def test_a_bad_step_log_every_is_one_line():
    for bad, why in ((-1, "greater than or equal to 0"), ("often", "valid integer"), (2.5, "fractional")):
        with pytest.raises(ConfigError) as err:
            validate_config({"train": {"step_log_every": bad}})
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("train.step_log_every: ") and why in msg, msg


# ---- reading a torn or damaged step log ------------------------------------------------------


@pytest.fixture(scope="module")
def stored(digits, tmp_path_factory):
    """A finished run with its step log (46 records)."""
    store = RunStore(tmp_path_factory.mktemp("stored"))
    result = run(_cfg(), store=store, dataset=digits)
    return store, result.run_id


def _copy_run(stored, tmp_path):
    import shutil

    store, run_id = stored
    shutil.copytree(store.root / run_id, tmp_path / run_id)
    return RunStore(tmp_path), run_id


def test_a_missing_step_log_is_empty(tmp_path):
    assert read_step_log(tmp_path / STEP_LOG_FILE) == StepLog([], None)


def test_a_torn_last_line_is_ignored(stored, tmp_path):
    store, run_id = _copy_run(stored, tmp_path)
    whole = store.load(run_id).step_metrics().records
    path = store.load(run_id).path / STEP_LOG_FILE
    with open(path, "ab") as fh:
        fh.write(b'{"step":47,"epoch":3,"lo')  # a kill in the middle of a write
    log = store.load(run_id).step_metrics()
    assert log.damage is None and log.records == whole and len(whole) == 46


@pytest.mark.parametrize(
    "line, why",
    [
        ("this is not json", "not JSON"),
        ("[1, 2, 3]", "not a JSON object"),
        ('{"step": "seven", "loss": 1.0}', "step is not a number"),
        ('{"loss": 1.0}', "step is not a number"),
    ],
)
def test_a_damaged_middle_line_is_named_and_the_run_still_loads(stored, tmp_path, line, why):
    store, run_id = _copy_run(stored, tmp_path)
    path = store.load(run_id).path / STEP_LOG_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(10, line + "\n")
    path.write_text("".join(lines))
    loaded = store.load(run_id)
    log = loaded.step_metrics()
    assert log.damage is not None and "\n" not in log.damage
    assert log.damage.startswith(f"{STEP_LOG_FILE} line 11: {why}"), log.damage
    assert [r["step"] for r in log.records] == list(range(1, 11))  # the records before it
    assert len(loaded.metrics["epochs"]) == 2 and loaded.damage is None  # epoch metrics still load
    assert loaded.status["status"] == "completed"
    shown = CliRunner().invoke(app, ["runs", "show", run_id, "--runs", str(store.root)])
    assert shown.exit_code == 0, shown.output
    (said,) = [x for x in shown.output.splitlines() if x.startswith("step metrics:")]
    assert said.startswith(f"step metrics: damaged: {STEP_LOG_FILE} line 11: {why}")


def test_runs_show_counts_the_step_records(stored):
    store, run_id = stored
    shown = CliRunner().invoke(app, ["runs", "show", run_id, "--runs", str(store.root)])
    assert shown.exit_code == 0 and "step metrics: 46 records" in shown.output, shown.output
    as_json = CliRunner().invoke(app, ["runs", "show", run_id, "--runs", str(store.root), "--json"])
    assert json.loads(as_json.output)["step_metrics"] == {"records": 46, "damage": None}


# ---- resume ----------------------------------------------------------------------------------


def _stop_at(step, **kwargs):
    holder = {}

    def listen(event):
        if isinstance(event, StepEnded) and event.step == step:
            holder["trainer"].request_stop()

    holder["trainer"] = Trainer(subscribers=[listen], **kwargs)
    return holder["trainer"]


@pytest.mark.parametrize("killed", [False, True], ids=["stopped", "killed-mid-write"])
def test_resume_appends_after_the_resume_point(digits, tmp_path, killed):
    cfg = _cfg(train={"epochs": 3})
    store = RunStore(tmp_path)
    straight = _records(store, run(cfg, store=store, dataset=digits).run_id)

    first = _stop_at(30, config=cfg, store=store, dataset=digits).run()  # epoch 2, 7 steps in
    assert first.status == "stopped" and len(first.history) == 1
    path = store.load(first.run_id).path / STEP_LOG_FILE
    before = path.read_bytes()
    assert [r["step"] for r in read_step_log(path).records] == list(range(1, 31))
    if killed:
        with open(path, "ab") as fh:
            fh.write(b'{"step":31,"epoch":2,"loss":0.')

    resumed = run(cfg, store=store, dataset=digits, resume=first.run_id)
    assert resumed.status == "completed"
    raw = path.read_bytes()
    assert raw.startswith(before)  # appended, never rewritten
    lines = raw.decode().splitlines()
    assert len(lines) == 30 + (69 - 23)  # the old records and the resumed run's
    assert all(isinstance(json.loads(x)["step"], int) for x in lines)  # no torn line left inside
    records = _records(store, first.run_id)
    assert [r["step"] for r in records] == [r["step"] for r in straight] == list(range(1, 70))
    for a, b in zip(records, straight, strict=True):
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["batch_acc"] == b["batch_acc"]
    times = [r["time"] for r in records]
    assert times == sorted(times)  # the clock continues from the resume point
