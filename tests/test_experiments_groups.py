"""Grouping stored runs over seeds: real digits runs (2 learning rates × 2 seeds), damaged and
unfinished runs skipped with their reason, tables, bands, baseline differences and export."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.config import validate_config
from workbench.experiments import (
    ResultsError,
    baseline_comparison,
    config_fields,
    epoch_bands,
    group_runs,
    group_table,
    groups_csv,
    groups_json,
    run_table,
    run_value,
    step_bands,
)
from workbench.runs import RunStore

LRS = (0.05, 0.1)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    """Four completed runs on digits: an MLP at two learning rates, two seeds each, 2 epochs of 4 steps."""
    from workbench.train import Trainer

    root = tmp_path_factory.mktemp("experiments") / "runs"
    store = RunStore(root)
    for lr in LRS:
        for seed in SEEDS:
            config = validate_config(
                {
                    "seed": seed,
                    "name": f"lr{lr}-seed{seed}",
                    "data": {"dataset": "digits", "batch_size": 64, "train_subset": 256},
                    "model": {"name": "mlp"},
                    "optim": {"lr": lr},
                    "train": {"epochs": 2, "max_steps": 8, "device": "cpu"},
                }
            )
            Trainer(config, store=store).run()
    return root


@pytest.fixture
def store_copy(store_root, tmp_path) -> RunStore:
    root = tmp_path / "runs"
    shutil.copytree(store_root, root)
    return RunStore(root)


def _last(run) -> float:
    return float(run.metrics["epochs"][-1]["test_acc"])


# ---- grouping real runs ----------------------------------------------------------------------------
def test_two_settings_two_seeds_make_two_groups(store_root):
    store = RunStore(store_root)
    groups = group_runs(store.list())
    assert len(groups) == 2 and groups.skipped == [] and groups.varied == ["optim.lr"]
    assert [g.key for g in groups] == [{"optim.lr": 0.05}, {"optim.lr": 0.1}]
    assert [g.label for g in groups] == ["lr=0.05", "lr=0.1"]
    for group, lr in zip(groups, LRS, strict=True):
        assert group.seeds == [0, 1] and len(group.runs) == 2
        assert all(r.config.optim.lr == lr for r in group.runs)
        assert group.params["optim.lr"] == lr and "seed" not in group.params and "name" not in group.params


def test_damaged_and_unfinished_runs_are_skipped_with_a_reason(store_copy):
    source = store_copy.root / store_copy.ids()[0]
    broken = store_copy.root / "zz-broken"
    shutil.copytree(source, broken)
    (broken / "metrics.json").write_text("{", encoding="utf-8")
    stopped = store_copy.root / "zz-stopped"
    shutil.copytree(source, stopped)
    status = json.loads((stopped / "status.json").read_text(encoding="utf-8"))
    (stopped / "status.json").write_text(json.dumps({**status, "status": "stopped"}), encoding="utf-8")

    groups = group_runs(store_copy.list())
    assert [len(g.runs) for g in groups] == [2, 2]
    reasons = dict(groups.skipped)
    assert set(reasons) == {"zz-broken", "zz-stopped"}
    assert reasons["zz-broken"].startswith("damaged: metrics.json: not valid JSON")
    assert reasons["zz-stopped"] == "stopped: not finished"
    assert "\n" not in reasons["zz-broken"]
    # an unfinished run joins its setting when asked for (live curves); the damaged one never does
    # (here it repeats a completed run's seed, so the completed one counts and it is the repeat)
    live = group_runs(store_copy.list(), finished_only=False)
    assert dict(live.skipped)["zz-stopped"] == f"seed 0 repeats run {source.name} of the same setting"
    assert dict(live.skipped)["zz-broken"] == reasons["zz-broken"]


def test_a_repeated_seed_keeps_the_run_finished_last(store_copy):
    source = store_copy.root / store_copy.ids()[0]
    again = store_copy.root / "zz-again"
    shutil.copytree(source, again)
    status = json.loads((again / "status.json").read_text(encoding="utf-8"))
    (again / "status.json").write_text(json.dumps({**status, "finished": "2999-01-01T00:00:00+00:00"}))
    groups = group_runs(store_copy.list())
    assert [len(g.runs) for g in groups] == [2, 2]
    assert "zz-again" in groups[0].ids
    assert groups.skipped == [(source.name, "seed 0 repeats run zz-again of the same setting")]


def test_group_table_last_and_best(store_root):
    groups = group_runs(RunStore(store_root).list())
    rows = group_table(groups, "test_acc", which="last")
    for row, group in zip(rows, groups, strict=True):
        last = [_last(r) for r in group.runs]
        assert row["group"] == group.label and row["optim.lr"] == group.key["optim.lr"]
        assert row["mean"] == pytest.approx(np.mean(last))
        assert row["std"] == pytest.approx(np.std(last, ddof=1))
        assert (row["min"], row["max"]) == (min(last), max(last))
        assert (row["n"], row["dropped"], row["missing"]) == (2, 0, 0)
        assert row["which"] == "last" and row["measure"] == "test_acc, last epoch"
        assert row["better"] == "higher" and row["seeds"] == [0, 1] and row["runs"] == group.ids
    best = group_table(groups, "test_acc", which="best")
    for row, group in zip(best, groups, strict=True):
        tops = [max(e["test_acc"] for e in r.metrics["epochs"]) for r in group.runs]
        assert row["mean"] == pytest.approx(np.mean(tops)) and row["measure"] == "test_acc, best epoch"
    lowest = group_table(groups, "test_loss", which="best")[0]
    losses = [min(e["test_loss"] for e in r.metrics["epochs"]) for r in groups[0].runs]
    assert lowest["min"] == pytest.approx(min(losses)) and lowest["better"] == "lower"
    with pytest.raises(ResultsError, match="which"):
        group_table(groups, "test_acc", which="first")
    with pytest.raises(ResultsError, match="no best epoch"):
        group_table(groups, "lr", which="best")


def test_epoch_bands_align_runs_by_epoch(store_root):
    group = group_runs(RunStore(store_root).list())[1]
    band = epoch_bands(group, "test_acc", smoothing=0.5)
    per_run = np.array([[e["test_acc"] for e in r.metrics["epochs"]] for r in group.runs])
    assert band.x.tolist() == [1.0, 2.0] and band.n.tolist() == [2, 2] and band.axis == "epoch"
    assert band.mean == pytest.approx(per_run.mean(axis=0))
    assert band.std == pytest.approx(per_run.std(axis=0, ddof=1))
    # EMA of the mean, weight 0.5: m1, then (0.25 m1 + 0.5 m2) / 0.75
    m1, m2 = band.mean
    assert band.smoothed == pytest.approx([m1, (0.25 * m1 + 0.5 * m2) / 0.75])
    assert band.runs == group.ids and json.dumps(band.to_dict())


def test_baseline_comparison_pairs_by_seed(store_root):
    groups = group_runs(RunStore(store_root).list())
    out = baseline_comparison(groups, "lr=0.05", "test_acc")
    assert list(out) == ["lr=0.1"]
    diff = out["lr=0.1"]
    expected = [_last(a) - _last(b) for a, b in zip(groups[1].runs, groups[0].runs, strict=True)]
    assert diff.seeds == (0, 1) and diff.n == 2
    assert diff.differences == pytest.approx(expected)
    assert diff.mean == pytest.approx(np.mean(expected))
    assert "over 2 seeds" in diff.sentence("lr=0.1", "lr=0.05", "test_acc")
    assert list(baseline_comparison(groups, groups[1], "test_acc")) == ["lr=0.05"]
    with pytest.raises(ResultsError, match="no group labelled 'kd'.*'lr=0.05'"):
        baseline_comparison(groups, "kd", "test_acc")


def test_export_csv_and_json(store_root):
    groups = group_runs(RunStore(store_root).list())
    rows = group_table(groups, "test_acc")
    table = list(csv.DictReader(io.StringIO(groups_csv(rows))))
    assert [r["group"] for r in table] == ["lr=0.05", "lr=0.1"]
    assert float(table[0]["mean"]) == rows[0]["mean"] and table[0]["n"] == "2"
    assert table[0]["seeds"] == "0 1" and table[0]["runs"] == " ".join(groups[0].ids)
    data = groups_json(groups, "test_acc")
    json.dumps(data, allow_nan=False)
    assert data["varied"] == ["optim.lr"] and data["which"] == ["last", "best"]
    first = data["groups"][0]
    assert first["label"] == "lr=0.05" and first["seeds"] == [0, 1]
    assert [r["id"] for r in first["runs"]] == groups[0].ids
    assert first["stats"]["last"]["mean"] == pytest.approx(rows[0]["mean"])
    assert groups_csv([]) == ""
    with pytest.raises(ResultsError, match="rows"):
        groups_csv("mean,std")


# ---- grouping without training: configs and values -------------------------------------------------
@dataclass
class FakeRun:
    """What group_runs reads of a run: id, status, config and metrics."""

    id: str
    config_data: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    state: str = "completed"

    @property
    def status(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.state, "finished": "2026-01-01T00:00:00+00:00"}

    @property
    def config(self):
        return validate_config(self.config_data)

    @property
    def metrics(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "summary": {}}


def _kd(weight: float, temperature: float, seed: int, acc: float) -> FakeRun:
    data = {
        "seed": seed,
        "teachers": [{"source": "shipped:mnist-cnn"}],
        "distill": {"methods": [{"name": "kd", "weight": weight, "params": {"temperature": temperature}}]},
    }
    return FakeRun(f"kd-{weight}-{temperature}-{seed}", data, [{"epoch": 1, "test_acc": acc}])


def test_config_fields_flatten_methods_and_lists():
    cfg = validate_config(
        {
            "teachers": [{"source": "shipped:mnist-cnn"}],
            "distill": {"methods": "0.9*kd + dist"},
            "schedule": {"milestones": [3, 6]},
            "model": {"kwargs": {"width": 32}},
        }
    )
    fields = config_fields(cfg)
    assert fields["distill.methods"] == "0.9*kd + dist" and fields["kind"] == "distill"
    assert fields["teachers[0].source"] == "shipped:mnist-cnn"
    assert fields["schedule.milestones"] == [3, 6] and fields["model.kwargs.width"] == 32
    assert "seed" not in fields and "name" not in fields and not any(k.startswith("links") for k in fields)
    assert "distill.teacher_cache" not in fields and "train.snapshot_every_epoch" not in fields  # bookkeeping
    with_params = config_fields(
        validate_config(
            {
                **cfg.model_dump(),
                "distill": {
                    "methods": [{"name": "kd", "params": {"temperature": 2}}, {"name": "kd", "weight": 0.5}]
                },
            }
        )
    )
    assert with_params["distill.methods"] == "kd + 0.5*kd" and with_params["distill.kd.temperature"] == 2


def test_labels_name_every_varied_field():
    runs = [_kd(w, t, s, 0.5 + 0.1 * s) for w in (0.5, 1.0) for t in (2.0, 4.0) for s in (0, 1)]
    groups = group_runs(runs)
    assert groups.varied == ["distill.methods", "distill.kd.temperature"]
    assert [g.label for g in groups] == [
        "methods=0.5*kd, temperature=2",
        "methods=0.5*kd, temperature=4",
        "methods=kd, temperature=2",
        "methods=kd, temperature=4",
    ]
    assert groups[0].key == {"distill.methods": "0.5*kd", "distill.kd.temperature": 2.0}
    rows = run_table(groups, "test_acc")
    assert len(rows) == 8 and rows[1] == {
        "run": "kd-0.5-2.0-1",
        "group": "methods=0.5*kd, temperature=2",
        "seed": 1,
        "distill.methods": "0.5*kd",
        "distill.kd.temperature": 2.0,
        "test_acc": 0.6,
    }
    one = group_runs(runs[:2])
    assert one.varied == [] and one[0].key == {} and one[0].label == "distill cnn_small, 0.5*kd"


def test_groups_sort_by_their_setting_not_by_run_order():
    """Numbers sort by size (0.5 before 10, not by text), whatever order the runs come in."""
    runs = [_kd(1.0, t, s, 0.5) for t in (10.0, 0.5, 2.0) for s in (0, 1)]
    for order in (runs, runs[::-1], runs[2:] + runs[:2]):
        groups = group_runs(order)
        assert [g.label for g in groups] == ["temperature=0.5", "temperature=2", "temperature=10"]


def test_a_chains_students_group_over_seeds_though_each_has_its_own_assistant():
    """TAKD's student of seed s is taught by seed s's own assistant run (links.teacher_run): the run id
    differs per seed but the setting is the same; a first link taught by a user's teacher run keeps it."""

    def student(seed: int, acc: float, step: str = "1", teacher: str | None = None) -> FakeRun:
        assistant = teacher or f"sweep-takd-{seed}"
        data = {
            "seed": seed,
            "teachers": [{"source": f"run:{assistant}"}],
            "links": {"chain": f"sweep-takd-{seed}", "chain_step": step, "teacher_run": assistant},
            "distill": {"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
        }
        return FakeRun(f"student-{seed}-{step}-{assistant}", data, [{"epoch": 1, "test_acc": acc}])

    groups = group_runs([student(0, 0.6), student(1, 0.7)])
    assert len(groups) == 1 and groups[0].seeds == [0, 1] and groups.skipped == []
    firsts = group_runs([student(0, 0.6, "0", "teacher-a"), student(1, 0.7, "0", "teacher-b")])
    assert len(firsts) == 2 and firsts.varied == ["teachers[0].source"]


def test_unreadable_config_is_skipped_not_fatal():
    bad = FakeRun("bad", {"optim": {"lr": -1}})
    groups = group_runs([bad, _kd(1.0, 4.0, 0, 0.9)])
    assert len(groups) == 1 and groups.skipped[0][0] == "bad" and "optim.lr" in groups.skipped[0][1]


def test_non_finite_values_are_counted_not_averaged():
    runs = [_kd(1.0, 4.0, 0, 0.9), _kd(1.0, 4.0, 1, float("nan")), _kd(1.0, 4.0, 2, 0.7)]
    runs.append(FakeRun("no-acc", runs[0].config_data | {"seed": 3}, [{"epoch": 1, "test_loss": 1.0}]))
    row = group_table(group_runs(runs), "test_acc")[0]
    assert (row["n"], row["dropped"], row["missing"]) == (2, 1, 1)
    assert row["mean"] == pytest.approx(0.8) and row["seeds"] == [0, 2]


def test_run_value_last_and_best():
    epochs = [{"test_acc": 0.5, "test_loss": 2.0}, {"test_acc": 0.9, "test_loss": 1.0}, {"test_acc": 0.7}]
    assert run_value(epochs, "test_acc", "last") == 0.7
    assert run_value(epochs, "test_acc", "best") == 0.9
    assert run_value(epochs, "test_loss", "last") == 1.0 and run_value(epochs, "test_loss", "best") == 1.0
    assert run_value(epochs, "ece") is None
    assert math.isnan(run_value([{"loss/kd": float("nan")}], "loss/kd", "last"))
    assert run_value([{"loss/kd": float("nan")}], "loss/kd", "best") is None


# ---- step bands on made-up step records ------------------------------------------------------------
def _records(steps: list[int], values: list[float]) -> list[dict[str, float]]:
    return [
        {"step": s, "epoch": 1, "loss": v, "lr": 0.1, "time": float(s)}
        for s, v in zip(steps, values, strict=True)
    ]


def _two_run_group():
    return group_runs([_kd(1.0, 4.0, 0, 0.9), _kd(1.0, 4.0, 1, 0.8)])[0]


def test_step_bands_same_steps():
    group = _two_run_group()
    logs = {
        group.ids[0]: _records([10, 20, 30], [3.0, 2.0, 1.0]),
        group.ids[1]: _records([10, 20, 30], [1.0, 2.0, 3.0]),
    }
    band = step_bands(group, "loss", logs)
    # mean per step: (3+1)/2 = 2, (2+2)/2 = 2, (1+3)/2 = 2; std: sqrt(((3-2)^2 + (1-2)^2) / 1) = sqrt(2), 0, sqrt(2)
    assert band.alignment == "same steps" and band.x.tolist() == [10, 20, 30]
    assert band.mean.tolist() == [2.0, 2.0, 2.0] and band.std == pytest.approx(
        [math.sqrt(2), 0.0, math.sqrt(2)]
    )
    assert band.n.tolist() == [2, 2, 2] and band.smoothed is None


def test_step_bands_interpolate_on_the_union_of_steps():
    group = _two_run_group()

    class StepLog:  # what Run.step_metrics() returns: records plus a damage note
        def __init__(self, records):
            self.records, self.damage = records, None

    a = StepLog(_records([0, 10, 20], [4.0, 2.0, 0.0]))
    b = StepLog(_records([5, 15], [1.0, 3.0]))
    band = step_bands(group, "loss", [a, b], smoothing=0.5)
    # union 0 5 10 15 20; run a: 4, 3, 2, 1, 0 (interpolated at 5 and 15); run b covers 5..15 only:
    # 1, 2 (midway at 10), 3. mean: 4, (3+1)/2 = 2, (2+2)/2 = 2, (1+3)/2 = 2, 0; n: 1 2 2 2 1
    assert band.alignment == "interpolated on the union of steps"
    assert band.x.tolist() == [0, 5, 10, 15, 20] and band.n.tolist() == [1, 2, 2, 2, 1]
    assert band.mean.tolist() == [4.0, 2.0, 2.0, 2.0, 0.0]
    assert math.isnan(band.std[0]) and band.std[2] == 0.0
    # smoothed (weight 0.5): 4, then (0.5*0.5*4 + 0.5*2) / 0.75 = 2 / 0.75
    assert band.smoothed[:2] == pytest.approx([4.0, 2.0 / 0.75])


def test_step_bands_missing_logs_and_bad_input():
    group = _two_run_group()
    only = step_bands(group, "loss", {group.ids[1]: _records([1, 2], [0.5, 0.25])})
    assert only.runs == [group.ids[1]] and only.n.tolist() == [1, 1]
    torn = _records([1, 2], [0.5, 0.25]) + [{"step": 3}]  # a record without the metric is left out
    assert step_bands(group, "loss", [torn, None]).x.tolist() == [1, 2]
    empty = step_bands(group, "batch_acc", [torn, torn])
    assert empty.x.size == 0 and empty.runs == []
    with pytest.raises(ResultsError, match="expected 2 step logs"):
        step_bands(group, "loss", [torn])
    with pytest.raises(ResultsError, match="smoothing"):
        step_bands(group, "loss", [torn, torn], smoothing=1.0)
