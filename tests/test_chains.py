"""Chains of linked runs: teacher-assistant KD and born-again generations in a run store."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.config import validate_config
from workbench.runs import RunStore
from workbench.train import Trainer
from workbench.train.chains import ChainError, chain_plan, run_chain

BASE = {
    "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 64},
    "optim": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}


@pytest.fixture(scope="module")
def small(digits):
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(128)), test=digits.test.subset(torch.arange(64))
    )


def _config(**fields):
    return validate_config({**BASE, **fields})


@pytest.fixture
def store_with_teacher(tmp_path, small):
    store = RunStore(tmp_path / "runs")
    cfg = _config(kind="teacher", name="teacher", model={"name": "cnn", "kwargs": {"channels": [8, 16, 16]}})
    result = Trainer(cfg, store=store, dataset=small).run()
    return store, result.run_id


def _distill(teacher_id: str, method: dict, model: dict | None = None):
    return _config(
        kind="distill",
        name="chain",
        model=model or {"name": "cnn", "kwargs": {"channels": [4, 8]}},
        teachers=[{"source": f"run:{teacher_id}"}],
        distill={"methods": [method]},
    )


def test_takd_trains_assistant_then_student_as_linked_runs(store_with_teacher, small):
    store, teacher_id = store_with_teacher
    assistant = {"model": "cnn", "kwargs": {"channels": [6, 12]}}
    cfg = _distill(teacher_id, {"name": "takd", "params": {"assistants": [assistant]}})
    seen = []
    results = run_chain(cfg, store, subscribers=[seen.append], dataset=small)
    assert [r.status for r in results] == ["completed", "completed"]
    first, second = (store.load(r.run_id) for r in results)
    # the assistant is taught by the given teacher, the student by the assistant
    assert first.config.model.name == "cnn" and first.config.model.kwargs == {"channels": [6, 12]}
    assert first.config.teachers[0].source == f"run:{teacher_id}"
    assert second.config.model.kwargs == {"channels": [4, 8]}
    assert second.config.teachers[0].source == f"run:{first.id}"
    assert first.config.links == {
        "chain": first.id,
        "chain_step": "0",
        "chain_role": "assistant1",
        "teacher_run": teacher_id,
    }
    assert second.config.links == {
        "chain": first.id,
        "chain_step": "1",
        "chain_role": "student",
        "teacher_run": first.id,
    }
    assert first.status["status"] == second.status["status"] == "completed"
    # subscribers hear both runs
    assert {getattr(e, "run_id", None) for e in seen} >= {first.id, second.id}


def test_ban_generations_share_the_architecture(store_with_teacher, small):
    store, teacher_id = store_with_teacher
    cfg = _distill(teacher_id, {"name": "ban", "params": {"generations": 2}})
    results = run_chain(cfg, store, dataset=small)
    runs = [store.load(r.run_id) for r in results]
    assert [r.config.links["chain_role"] for r in runs] == ["gen1", "gen2"]
    assert all(r.config.model == cfg.model for r in runs)
    assert [r.config.seed for r in runs] == [cfg.seed, cfg.seed + 1]
    assert runs[1].config.teachers[0].source == f"run:{runs[0].id}"
    assert runs[1].config.links["teacher_run"] == runs[0].id
    # the second generation learnt from the first one's final weights, which differ from its own start
    w0 = results[0].student.state_dict()
    w1 = results[1].student.state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_chain_plan_lists_the_links():
    cfg = _distill(
        "t",
        {
            "name": "takd",
            "params": {"assistants": [{"model": "cnn"}, {"model": "cnn", "kwargs": {"channels": [4]}}]},
        },
    )
    plan = chain_plan(cfg)
    assert [role for _, role in plan] == ["assistant1", "assistant2", "student"]
    assert plan[1][0].kwargs == {"channels": [4]} and plan[2][0] == cfg.model


@pytest.mark.parametrize(
    "methods",
    [[{"name": "kd"}], [{"name": "ban"}, {"name": "takd", "params": {"assistants": [{"model": "cnn"}]}}]],
    ids=["none", "two"],
)
def test_chain_needs_exactly_one_chain_method(methods, tmp_path):
    cfg = _config(kind="distill", teachers=[{"source": "run:t"}], distill={"methods": methods})
    with pytest.raises(ChainError, match="distill.methods"):
        run_chain(cfg, RunStore(tmp_path))


def test_chain_needs_a_store():
    cfg = _distill("t", {"name": "ban"})
    with pytest.raises(ChainError, match="store"):
        run_chain(cfg, None)  # type: ignore[arg-type]


def test_chain_length_counts_the_runs_a_config_trains():
    from workbench.train import chain_length, is_chain

    takd = _distill("t", {"name": "takd", "params": {"assistants": [{"model": "cnn"}, {"model": "cnn"}]}})
    ban = _distill("t", {"name": "ban", "params": {"generations": 4}})
    kd = _distill("t", {"name": "kd"})
    assert [is_chain(c) for c in (takd, ban, kd)] == [True, True, False]
    assert [chain_length(c) for c in (takd, ban, kd)] == [3, 4, 1]
