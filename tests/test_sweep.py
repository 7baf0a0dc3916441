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
            "--runs",
            str(tmp_path / "ws"),
            "--csv",
            str(tmp_path / "s.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.csv").read_text().count("\n") == 3  # header + 2 grid points
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output


# ---- names that become paths -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ".hidden", "x y", "", "a" * 81, "a..b"])
def test_a_sweep_name_that_is_not_a_plain_name_is_refused(name, tmp_path):
    path = _sweep_file(tmp_path, name=name)
    with pytest.raises(SweepError, match=r"name: .* is not a plain name") as info:
        load_sweep(path)
    assert "\n" not in str(info.value)
    from workbench.sweep import SweepSpec, check_name

    with pytest.raises(ValueError):
        SweepSpec(name=name)
    with pytest.raises(SweepError):
        check_name(name)


def test_cli_refuses_a_path_as_sweep_name_and_writes_nothing_outside(tmp_path):
    from workbench.cli import app

    outside = tmp_path / "outside.csv"
    outside.write_text("keep me")
    name = str(tmp_path / "outside")  # an absolute name would have become <name>.csv
    res = CliRunner().invoke(
        app, ["sweep", str(_sweep_file(tmp_path, name=name)), "--runs", str(tmp_path / "ws")]
    )
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a plain name" in lines[0]
    assert outside.read_text() == "keep me" and not (tmp_path / "ws").exists()


# ---- claims: concurrent sweeps share the work ------------------------------------------------------


def test_a_claimed_trial_is_left_to_its_holder_and_a_released_one_is_taken(tmp_path):
    from workbench.sweep import BUSY, claim_path, claim_trial, run_trial, trial_run_id

    store = RunStore(tmp_path / "runs")
    (trial, *_) = expand_trials(load_sweep(_sweep_file(tmp_path, seeds=[0])))
    data, root = trial.config.model_dump(mode="json"), str(store.root)
    with claim_trial(store, "t", trial.key) as held:
        assert held
        assert run_trial(data, 0, root, trial_run_id(trial)) == (trial_run_id(trial), BUSY, {})
        assert store.list() == []
        import json

        owner = json.loads(claim_path(store, "t", trial.key).read_text())
        import os

        assert owner["pid"] == os.getpid()
    run_id, status, _ = run_trial(data, 0, root, trial_run_id(trial))
    assert status == "completed" and [r.id for r in store.list()] == [run_id]


def test_a_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    import json
    import subprocess
    import sys

    from workbench.sweep import claim_path, run_trial, trial_run_id

    store = RunStore(tmp_path / "runs")
    (trial, *_) = expand_trials(load_sweep(_sweep_file(tmp_path, seeds=[0])))
    # a process claims the trial and dies without releasing it
    code = (
        "import os, sys; from workbench.runs import RunStore; from workbench.sweep import claim_trial\n"
        f"c = claim_trial(RunStore({str(store.root)!r}), 't', {trial.key!r}); assert c.__enter__()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    dead = json.loads(claim_path(store, "t", trial.key).read_text())["pid"]
    run_id, status, _ = run_trial(
        trial.config.model_dump(mode="json"), 0, str(store.root), trial_run_id(trial)
    )
    assert status == "completed" and dead != json.loads(claim_path(store, "t", trial.key).read_text())["pid"]


@pytest.mark.slow
def test_two_sweeps_on_one_store_train_each_trial_once(tmp_path):
    import subprocess
    import sys

    path = _sweep_file(tmp_path, grid={"optim.lr": [0.003, 0.01, 0.03]})
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "workbench.cli", "sweep", str(path), "--runs", str(ws)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = [line for _, err in outs for line in err.splitlines() if line.startswith("[")]
    trained = [line for line in lines if ": completed," in line]
    skipped = [line for line in lines if "skipped (completed)" in line]
    assert len(lines) == 12 and len(trained) == 6 and len(skipped) == 6  # each of 6 trials trained once
    runs = RunStore(ws).list()
    assert len(runs) == 6 and all(r.status["status"] == "completed" for r in runs)
    assert len({r.config.links["trial"] for r in runs}) == 6
    pids = {r.status["pid"] for r in runs}
    assert pids <= {p.pid for p in procs}
