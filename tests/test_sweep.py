from __future__ import annotations

import statistics

import pytest
import yaml
from typer.testing import CliRunner

from workbench.runs import RunStore
from workbench.sweep import SweepError, expand_trials, load_sweep, run_sweep, summarize, summary_csv
from workbench.sweep.runner import TrialOutcome

BASE = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
    "optim": {"name": "adamw", "lr": 0.003},
    "train": {"epochs": 1, "snapshot_every_epoch": False},
}


def _sweep_file(tmp_path, **extra):
    spec = {"name": "t", "config": BASE, "grid": {"optim.lr": [0.003, 0.01]}, "seeds": [0, 1], **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expand_grid_times_seeds(tmp_path):
    trials = expand_trials(load_sweep(_sweep_file(tmp_path)))
    assert len(trials) == 4
    assert len({t.key for t in trials}) == 4
    assert sorted((t.params["optim.lr"], t.seed) for t in trials) == [
        (0.003, 0),
        (0.003, 1),
        (0.01, 0),
        (0.01, 1),
    ]
    assert all(t.config.links == {"sweep": "t", "trial": t.key} for t in trials)
    assert {t.config.optim.lr for t in trials} == {0.003, 0.01}


def test_bad_sweeps_name_the_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"config": BASE, "grid": {"optim.lr": []}}))
    with pytest.raises(SweepError, match="grid: grid field 'optim.lr' has no values"):
        load_sweep(path)
    path.write_text(yaml.safe_dump({"config": BASE, "grid": {"optim.lr": [-1]}}))
    with pytest.raises(SweepError, match=r"optim.lr=-1.*optim.lr"):
        expand_trials(load_sweep(path))
    path.write_text(yaml.safe_dump({"config": BASE, "backnd": "ray"}))
    with pytest.raises(SweepError, match="backnd: unknown field"):
        load_sweep(path)


def test_local_sweep_writes_runs_and_resumes(tmp_path):
    store = RunStore(tmp_path / "runs")
    spec = load_sweep(_sweep_file(tmp_path))
    first = run_sweep(spec, store)
    assert [o.skipped for o in first] == [False] * 4
    assert len(store.list(status="completed")) == 4
    # a killed sweep: one trial's run is gone; the rerun trains only that one
    store.delete(first[2].run_id)
    again = run_sweep(spec, store)
    assert [o.skipped for o in again] == [True, True, False, True]
    assert len(store.list()) == 4
    rows = summarize(again)
    assert [r["seeds"] for r in rows] == [2, 2]
    assert "test_acc_mean" in summary_csv(rows).splitlines()[0]


def test_summary_mean_and_std_by_hand():
    class T:
        def __init__(self, group, seed):
            self.group, self.seed, self.params = group, seed, {"x": group}

    accs = {("a", 0): 0.5, ("a", 1): 0.7, ("b", 0): 0.9}
    outcomes = [
        TrialOutcome(
            T(g, s), f"r{g}{s}", "completed", {"test_acc": v, "seconds": 4.0, "epochs_done": 2}, False
        )
        for (g, s), v in accs.items()
    ]
    outcomes.append(TrialOutcome(T("b", 1), "rb1", "failed", {}, False))
    rows = {r["group"]: r for r in summarize(outcomes)}
    assert rows["a"]["test_acc_mean"] == pytest.approx(0.6)
    assert rows["a"]["test_acc_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert rows["b"]["seeds"] == 1 and rows["b"]["failed"] == 1 and rows["b"]["test_acc_std"] == 0.0
    assert rows["a"]["sec_per_epoch_mean"] == pytest.approx(2.0)


@pytest.mark.slow
def test_process_pool_backend(tmp_path):
    store = RunStore(tmp_path / "runs")
    outcomes = run_sweep(load_sweep(_sweep_file(tmp_path, workers=2)), store)
    assert [o.status for o in outcomes] == ["completed"] * 4
    for run in store.list():
        run.load_model("final")


@pytest.mark.slow
def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    store = RunStore(tmp_path / "runs")
    path = _sweep_file(tmp_path, backend="ray", workers=2, seeds=[0])
    outcomes = run_sweep(load_sweep(path), store)
    assert [o.status for o in outcomes] == ["completed", "completed"]
    runs = store.list()
    assert len(runs) == 2 and all(r.status["status"] == "completed" for r in runs)
    for run in runs:
        run.load_model("final")
    # each trial's worker wrote its own run (the driver only collected ids), under the trial's id
    import os

    assert os.getpid() not in {r.status["pid"] for r in runs}
    assert sorted(o.run_id for o in outcomes) == sorted(r.id for r in runs)


def test_cli_sweep(tmp_path):
    from workbench.cli import app

    res = CliRunner().invoke(
        app,
        [
            "sweep",
            str(_sweep_file(tmp_path, seeds=[0])),
            "-w",
            str(tmp_path / "ws"),
            "--csv",
            str(tmp_path / "s.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.csv").read_text().count("\n") == 3  # header + 2 grid points
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
