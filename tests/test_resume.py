"""Resuming a stopped run: the same result as an uninterrupted one, and the refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.config import ConfigError, validate_config
from workbench.models import create_model
from workbench.runs import RunStore
from workbench.train import ResumeError, StepEnded, Trainer, run
from workbench.train.resume import RESUME_CHECKPOINT

CNN_T = {"name": "cnn", "kwargs": {"channels": [8, 16]}}


@pytest.fixture(scope="module")
def small(digits):
    """320 training and 128 test digits (5 steps of 64 per epoch)."""
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(320)), test=digits.test.subset(torch.arange(128))
    )


@pytest.fixture(scope="module")
def teacher(small):
    torch.manual_seed(0)
    return create_model("cnn", num_classes=10, in_channels=1, image_size=8, **CNN_T["kwargs"]).eval()


def _cfg(epochs=3, **over):
    base = {
        "kind": "student",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 64},
        "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": epochs},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return validate_config(base)


def _methods(*methods):
    return {"methods": [{"name": m, "weight": w, "params": p} for m, w, p in methods], "ce_weight": 0.1}


CASES = {
    # KD from the teacher cache, AdamW (per-parameter moments and step counters), a cosine schedule
    "kd-adamw": dict(
        kind="distill",
        distill=_methods(("kd", 0.9, {})),
        optim={"name": "adamw", "lr": 0.01},
        schedule={"name": "cosine"},
    ),
    # random crops and mixup: no cache, the loader's per-epoch augmentation stream
    "kd-augmented": dict(
        kind="distill",
        distill=_methods(("kd", 0.9, {})),
        data={"augment": {"crop_padding": 1, "mixup_alpha": 0.2}},
    ),
    # the method's own state: an EMA teacher and its update counter
    "ema": dict(kind="distill", distill=_methods(("ema", 1.0, {"momentum": 0.9}))),
    # memory banks (non-persistent buffers), normalisation constants, a negatives generator
    "crd": dict(
        kind="distill",
        model={"name": "cnn", "kwargs": {"channels": [4, 8], "dropout": 0.2}},
        distill=_methods(("crd", 0.8, {"nce_k": 64, "feat_dim": 16})),
    ),
    # peers training beside the student
    "dml": dict(kind="distill", distill=_methods(("dml", 1.0, {"peers": 1}))),
}


def _stop_at(step):
    holder = {}

    def listen(event):
        if isinstance(event, StepEnded) and event.step == step:
            holder["trainer"].request_stop()

    return holder, listen


def _history(result):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]


def _assert_same(a, b):
    sa, sb = a.student.state_dict(), b.student.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6, rtol=0), k
    assert _history(a) == _history(b)


@pytest.mark.parametrize(
    "case", [c if c == "kd-adamw" else pytest.param(c, marks=pytest.mark.slow) for c in CASES]
)
def test_stop_after_one_epoch_then_resume_equals_three_straight(case, small, teacher, tmp_path):
    cfg = _cfg(**CASES[case])
    teachers = [teacher] if case.startswith(("kd", "crd")) else None
    store = RunStore(tmp_path)
    straight = run(cfg, store=store, dataset=small, teachers=teachers)
    assert straight.status == "completed"

    holder, listen = _stop_at(5)  # the last step of epoch 1
    holder["trainer"] = Trainer(cfg, store=store, dataset=small, teachers=teachers, subscribers=[listen])
    first = holder["trainer"].run()
    assert first.status == "stopped" and len(first.history) == 1
    stored = store.load(first.run_id)
    assert RESUME_CHECKPOINT in stored.checkpoints()

    resumed = run(cfg, store=store, dataset=small, teachers=teachers, resume=first.run_id)
    assert resumed.status == "completed" and resumed.run_id == first.run_id
    _assert_same(straight, resumed)
    if case == "dml":
        (pa,), (pb,) = straight.method.peers(), resumed.method.peers()
        for k, v in pa.state_dict().items():
            assert torch.allclose(v, pb.state_dict()[k], atol=1e-6, rtol=0)
    # the store holds the whole history, a completed status and no resume point any more
    again = store.load(first.run_id)
    assert [e["epoch"] for e in again.metrics["epochs"]] == [1, 2, 3]
    assert again.status["status"] == "completed"
    assert RESUME_CHECKPOINT not in again.checkpoints()
    final = again.load_state("final")
    for k, v in resumed.student.state_dict().items():
        assert torch.equal(final[f"student.{k}"], v.cpu())


def test_a_stop_mid_epoch_resumes_from_the_last_finished_epoch(small, teacher, tmp_path):
    cfg = _cfg(**CASES["kd-adamw"])
    store = RunStore(tmp_path)
    straight = run(cfg, dataset=small, teachers=[teacher])
    holder, listen = _stop_at(8)  # inside epoch 2
    holder["trainer"] = Trainer(cfg, store=store, dataset=small, teachers=[teacher], subscribers=[listen])
    first = holder["trainer"].run()
    assert first.status == "stopped" and [h["epoch"] for h in first.history] == [1]
    resumed = run(cfg, store=store, dataset=small, teachers=[teacher], resume=first.run_id[:-2])
    _assert_same(straight, resumed)


def test_only_the_latest_resume_point_is_kept(small, tmp_path):
    store = RunStore(tmp_path)
    holder, listen = _stop_at(10)
    holder["trainer"] = Trainer(_cfg(), store=store, dataset=small, subscribers=[listen])
    result = holder["trainer"].run()
    folder = store.load(result.run_id).path / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert [n for n in names if n.startswith(RESUME_CHECKPOINT)] == [f"{RESUME_CHECKPOINT}.safetensors"]
    assert not [n for n in names if n.endswith(".tmp")]
    from safetensors import safe_open

    with safe_open(str(folder / f"{RESUME_CHECKPOINT}.safetensors"), "pt") as fh:
        import json

        meta = json.loads(fh.metadata()["resume"])
    assert meta["epoch"] == 2 and meta["step"] == 10 and len(meta["history"]) == 2


def test_epochs_may_grow_on_resume(small, tmp_path):
    store = RunStore(tmp_path)
    holder, listen = _stop_at(5)
    holder["trainer"] = Trainer(_cfg(epochs=2), store=store, dataset=small, subscribers=[listen])
    first = holder["trainer"].run()
    resumed = run(_cfg(epochs=3), store=store, dataset=small, resume=first.run_id)
    assert resumed.status == "completed" and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert store.load(first.run_id).config.train.epochs == 3


def test_a_completed_run_cannot_be_resumed(small, tmp_path):
    store = RunStore(tmp_path)
    done = run(_cfg(epochs=1), store=store, dataset=small)
    with pytest.raises(ResumeError, match="completed") as info:
        run(_cfg(epochs=2), store=store, dataset=small, resume=done.run_id)
    assert "\n" not in str(info.value)


def test_a_changed_config_is_refused_naming_the_field(small, tmp_path):
    store = RunStore(tmp_path)
    holder, listen = _stop_at(5)
    holder["trainer"] = Trainer(_cfg(), store=store, dataset=small, subscribers=[listen])
    first = holder["trainer"].run()
    with pytest.raises(ConfigError, match=r"^optim\.lr: 0\.05 differs .* only train\.epochs may change"):
        run(_cfg(optim={"lr": 0.05}), store=store, dataset=small, resume=first.run_id)
    with pytest.raises(ConfigError, match=r"^seed: 1 differs"):
        run(_cfg(seed=1), store=store, dataset=small, resume=first.run_id)
    # nothing was changed by the refusals: the run still resumes
    assert run(_cfg(), store=store, dataset=small, resume=first.run_id).status == "completed"


def test_resume_needs_a_store_and_an_existing_run(small, tmp_path):
    with pytest.raises(ResumeError, match="run store"):
        Trainer(_cfg(), dataset=small, resume="x")
    with pytest.raises(ValueError, match="not found|no run"):
        run(_cfg(), store=RunStore(tmp_path), dataset=small, resume="no-such-run")
