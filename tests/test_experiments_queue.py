"""Experiments through the job queue: a grid queued as one job per trial, states, re-submit, stop,
limits, repeat with seeds, the CLI. Jobs train in this process (the queue's worker body,
:func:`workbench.jobs.worker.run_job`), on tiny digits configs of 2 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

import workbench.jobs.queue as jq
import workbench.jobs.state as js
from workbench.jobs import JobQueue
from workbench.jobs.worker import run_job
from workbench.runs import RunStore
from workbench.sweep import (
    ExperimentError,
    SweepError,
    SweepSpec,
    estimate_seconds,
    expand_trials,
    experiment_path,
    experiment_status,
    list_experiments,
    repeat_with_seeds,
    run_sweep,
    stop_experiment,
    submit_experiment,
    trial_run_id,
)

BASE = {
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "optim": {"name": "adamw", "lr": 0.003},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}
GRID = {"optim.lr": [0.003, 0.01], "model.kwargs.hidden": [[8], [16]]}


def _spec(name="exp", grid=GRID, seeds=(0, 1), **extra):
    return SweepSpec(name=name, config=BASE, grid=grid, seeds=list(seeds), **extra)


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """A queue whose workers are not launched: :func:`_drain` trains started jobs in this process."""
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: os.getpid())
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    return JobQueue(tmp_path / "runs", max_jobs=2)


def _token(q, job_id):
    return json.loads((q.dir / f"{job_id}.json").read_text())["token"]


def _drain(q):
    """Start and train queued jobs until none is left, as the workers would."""
    while True:
        started = q.pump()
        if not started:
            return
        for job in started:
            run_job(q.root, job.id, _token(q, job.id), pump_after=False)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- submit, train, re-submit -------------------------------------------------------------------
def test_a_2x2_grid_with_2_seeds_is_8_jobs_that_train_into_the_trials_runs(queue):
    spec = _spec()
    sub = submit_experiment(spec, queue, workspace="ann")
    assert (sub.trials, sub.queued, sub.completed, sub.pending) == (8, 8, 0, 0)
    assert sub.line().startswith("experiment exp: 8 trials, 8 queued; about ")
    trials = {t.key: t for t in expand_trials(spec)}
    jobs = queue.list()
    assert len(jobs) == 8 and {j.state for j in jobs} == {"queued"}
    assert {j.experiment for j in jobs} == {"exp"} and {j.workspace for j in jobs} == {"ann"}
    assert {j.trial for j in jobs} == set(trials)
    assert all(j.run_id == trial_run_id(trials[j.trial]) for j in jobs)
    # the record: spec, trial keys, job ids, created, workspace
    record = json.loads(experiment_path(queue.root, "exp").read_text())
    assert record["workspace"] == "ann" and record["created"] and record["spec"]["grid"] == GRID
    assert {t["key"] for t in record["trials"]} == set(trials)
    assert sorted(i for ids in record["jobs"].values() for i in ids) == sorted(j.id for j in jobs)
    assert experiment_status(queue.root, "exp").counts["queued"] == 8

    _drain(queue)
    status = experiment_status(queue.root, "exp")
    assert status.counts["completed"] == 8 and not status.active
    assert sorted(status.run_ids()) == sorted(trial_run_id(t) for t in trials.values())
    runs = RunStore(queue.root).list(status="completed")
    assert len(runs) == 8 and {r.config.links["sweep"] for r in runs} == {"exp"}
    # `workbench sweep` on the same spec sees every trial done, and re-submitting queues nothing
    assert all(o.skipped for o in run_sweep(spec, RunStore(queue.root)))
    again = submit_experiment(spec, queue, workspace="ann")
    assert (again.queued, again.completed) == (0, 8) and len(queue.list()) == 8
    assert [e.name for e in list_experiments(queue.root)] == ["exp"]
    assert list_experiments(queue.root, workspace="bob") == []


def test_resubmit_trains_only_the_failed_and_the_deleted_trials(queue):
    spec = _spec()
    submit_experiment(spec, queue)
    first, second = queue.pump()
    with js.state_lock(queue.root):  # the first one's worker dies before reporting
        js.update_job_file(queue.root, first.id, pid=_dead_pid())
    run_job(queue.root, second.id, _token(queue, second.id), pump_after=False)
    _drain(queue)  # the dead worker's job fails; the other trials still train
    status = experiment_status(queue.root, "exp")
    by_state = {s: [t for t in status.trials if t.state == s] for s in ("completed", "failed")}
    assert (len(by_state["completed"]), len(by_state["failed"])) == (7, 1)
    failed = by_state["failed"][0]
    assert failed.job_id == first.id and "ended without reporting" in failed.error
    deleted = by_state["completed"][0]
    RunStore(queue.root).delete(deleted.run_id)
    assert {t.key: t.state for t in experiment_status(queue.root, "exp").trials}[deleted.key] == "missing"

    sub = submit_experiment(spec, queue)
    assert (sub.queued, sub.completed) == (2, 6)
    assert sorted(j.trial for j in sub.jobs) == sorted([failed.key, deleted.key])
    assert sorted(j.run_id for j in sub.jobs) == sorted([failed.run_id, deleted.run_id])
    _drain(queue)
    assert experiment_status(queue.root, "exp").counts["completed"] == 8
    record = json.loads(experiment_path(queue.root, "exp").read_text())
    assert len(record["jobs"][failed.key]) == 2 and record["submissions"] == 2


def test_a_queued_trial_waits_for_no_one_but_never_trains_a_trial_a_sweep_holds(queue):
    """The job takes the same claim `workbench sweep` takes: held elsewhere, the job fails in one line
    naming the trial and no run is written; once released, re-submitting trains it."""
    from workbench.sweep import claim_trial

    spec = _spec(grid={"optim.lr": [0.003]}, seeds=(0,))
    submit_experiment(spec, queue)
    (job,) = queue.pump()
    with claim_trial(RunStore(queue.root), "exp", job.trial) as held:
        assert held
        assert run_job(queue.root, job.id, _token(queue, job.id), pump_after=False) == "failed"
    (done,) = queue.list()
    assert f"trial {job.trial} of experiment 'exp'" in done.error and "\n" not in done.error
    assert not (queue.root / job.run_id).exists()
    assert submit_experiment(spec, queue).queued == 1
    _drain(queue)
    assert experiment_status(queue.root, "exp").counts["completed"] == 1


def test_stop_stops_queued_and_running_trials_and_keeps_finished_runs(queue):
    queue.max_jobs = 1
    submit_experiment(_spec(), queue)
    other = submit_experiment(_spec(name="other", seeds=[5]), queue)
    done = queue.pump()[0]
    run_job(queue.root, done.id, _token(queue, done.id), pump_after=False)
    running = queue.pump()[0]
    stopped = stop_experiment(queue, running.experiment)
    assert len(stopped) == 7 and [j.state for j in stopped][-1] == "running"
    assert run_job(queue.root, running.id, _token(queue, running.id), pump_after=False) == "stopped"
    counts = experiment_status(queue.root, done.experiment).counts
    assert (counts["completed"], counts["stopped"], counts["queued"]) == (1, 7, 0)
    assert (
        RunStore(queue.root)
        .load(trial_run_id(next(t for t in expand_trials(_spec()) if t.key == done.trial)))
        .status["status"]
        == "completed"
    )
    # the other experiment is untouched and a re-submit queues the stopped trials again
    assert experiment_status(queue.root, "other").counts["queued"] == other.queued
    assert submit_experiment(_spec(), queue).queued == 7


def test_a_grid_above_the_limits_is_refused_with_the_count_and_nothing_queued(queue):
    big = _spec(grid={"optim.lr": [0.001 * (i + 1) for i in range(167)]}, seeds=[0, 1, 2])
    with pytest.raises(
        ExperimentError, match=r"exp: 501 trials \(167 optim.lr x 3 seeds\) is above the limit of 500"
    ):
        submit_experiment(big, queue)
    with pytest.raises(ExperimentError, match="above the bound of 1e-06 h") as info:
        submit_experiment(_spec(), queue, max_hours=1e-6)
    assert "8 trials to train would take about " in str(info.value) and "\n" not in str(info.value)
    assert queue.list() == [] and not experiment_path(queue.root, "exp").exists()


def test_a_bad_field_value_names_the_field_and_the_trial(queue):
    with pytest.raises(SweepError, match=r"trial \[optim.lr=-1\] seed 0: optim.lr") as info:
        submit_experiment(_spec(grid={"optim.lr": [0.01, -1]}), queue)
    assert "\n" not in str(info.value)
    with pytest.raises(SweepError, match="optim.lrr"):
        submit_experiment(_spec(grid={"optim.lrr": [0.01]}), queue)
    with pytest.raises(SweepError, match=r"model.name"):
        submit_experiment(_spec(grid={"model.name": ["mlp", "nosuchnet"]}), queue)
    assert queue.list() == []


def test_a_method_parameter_by_index_and_a_method_expression_are_grid_fields():
    base = {
        **BASE,
        "data": {"dataset": "mnist"},
        "teachers": [{"source": "shipped:mnist"}],
        "distill": {"methods": "0.9*kd"},
    }
    spec = SweepSpec(name="t", config=base, grid={"distill.methods[0].params.temperature": [2.0, 4.0]})
    assert [t.config.distill.methods[0].params for t in expand_trials(spec)] == [
        {"temperature": 2.0},
        {"temperature": 4.0},
    ]
    spec = SweepSpec(name="t", config=base, grid={"distill.methods": ["none", "0.9*kd + 1*at"]})
    kinds = [(t.config.kind, [m.name for m in t.config.distill.methods]) for t in expand_trials(spec)]
    assert kinds == [("student", ["none"]), ("distill", ["kd", "at"])]
    with pytest.raises(SweepError, match=r"distill.methods has 1 entries, no index 3"):
        expand_trials(SweepSpec(name="t", config=base, grid={"distill.methods[3].weight": [1.0]}))


def test_another_workspace_cannot_resubmit_an_experiment(queue):
    submit_experiment(_spec(seeds=[0]), queue, workspace="ann")
    with pytest.raises(ExperimentError, match="belongs to workspace 'ann'"):
        submit_experiment(_spec(seeds=[0]), queue, workspace="bob")
    with pytest.raises(ExperimentError, match="experiment nope: not found"):
        experiment_status(queue.root, "nope")


def test_an_old_job_file_without_the_new_fields_still_loads(tmp_path):
    q = JobQueue(tmp_path, max_jobs=1)
    old = {
        "id": "0123abcd",
        "state": "finished",
        "config": BASE,
        "seq": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "workspace": None,
        "label": "old",
        "run_id": "r1",
        "token": "t",
    }
    q.dir.mkdir(parents=True)
    (q.dir / "0123abcd.json").write_text(json.dumps(old))
    job = q.get("0123abcd")
    assert (job.experiment, job.trial, job.run_id, job.state) == (None, None, "r1", "finished")
    assert job.to_dict()["experiment"] is None


def test_estimate_from_flops_then_from_measured_runs(queue):
    spec = _spec()
    est = estimate_seconds(spec, queue.root, max_jobs=2)
    assert len(est.per_trial) == 8 and est.measured == 0 and all(s > 0 for s in est.per_trial.values())
    assert est.total == pytest.approx(sum(est.per_trial.values()) / 2)
    submit_experiment(spec, queue)
    _drain(queue)
    measured = estimate_seconds(spec, queue.root, max_jobs=1)
    assert measured.measured == 8 and "from measured runs" in measured.text()


def test_repeat_with_seeds_takes_the_runs_config(queue):
    submit_experiment(_spec(seeds=[0], grid={}), queue)
    _drain(queue)
    (run,) = RunStore(queue.root).list()
    spec = repeat_with_seeds(run.id, [0, 1, 2], store=queue.root)
    assert spec.grid == {} and spec.seeds == [0, 1, 2] and spec.name == f"repeat-{run.id}"
    trials = expand_trials(spec)
    assert [t.seed for t in trials] == [0, 1, 2]
    assert trials[0].config.model_dump(exclude={"name", "links"}) == run.config.model_dump(
        exclude={"name", "links"}
    )
    assert submit_experiment(spec, queue).queued == 3
    with pytest.raises(ExperimentError, match="seeds: 1 appears more than once"):
        repeat_with_seeds(run, [1, 1])
    with pytest.raises(ExperimentError, match="seeds: give at least one seed"):
        repeat_with_seeds(run, [])


# ---- the CLI -------------------------------------------------------------------------------------
def test_cli_submit_list_show_stop_repeat(queue, tmp_path):
    from workbench.cli import app

    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump({"name": "cli", "config": BASE, "grid": {"optim.lr": [0.003, 0.01]}, "seeds": [0, 1]})
    )
    runs = str(queue.root)
    cli = CliRunner()
    res = cli.invoke(
        app, ["experiments", "submit", str(path), "--runs", runs, "--workspace", "ann", "--no-start"]
    )
    assert res.exit_code == 0, res.output
    assert "experiment cli: 4 trials, 4 queued; about " in res.output
    res = cli.invoke(app, ["experiments", "list", "--runs", runs, "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert (row["name"], row["workspace"], row["counts"]["queued"]) == ("cli", "ann", 4)
    res = cli.invoke(app, ["experiments", "list", "--runs", runs])
    assert res.exit_code == 0 and "cli" in res.output
    res = cli.invoke(app, ["experiments", "show", "cli", "--runs", runs])
    assert res.exit_code == 0 and "4 trials: 4 queued" in res.output and "optim.lr=0.01" in res.output
    res = cli.invoke(app, ["experiments", "stop", "cli", "--runs", runs])
    assert res.exit_code == 0 and "4 queued job(s) stopped" in res.output
    res = cli.invoke(app, ["experiments", "show", "cli", "--runs", runs, "--json"])
    assert [t["state"] for t in json.loads(res.output)["trials"]] == ["stopped"] * 4
    res = cli.invoke(
        app, ["experiments", "submit", str(path), "--runs", runs, "--workspace", "ann", "--no-start"]
    )
    assert "4 queued" in res.output
    _drain(queue)
    run_id = experiment_status(runs, "cli").run_ids()[0]
    res = cli.invoke(app, ["experiments", "repeat", run_id, "--seeds", "0,1,2", "--runs", runs, "--no-start"])
    assert res.exit_code == 0, res.output
    assert f"experiment repeat-{run_id}: 3 trials, 3 queued" in res.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["submit", "missing.yaml"], "not found"),
        (["show", "nope"], "experiment nope: not found"),
        (["stop", "nope"], "experiment nope: not found"),
        (["show", "../x"], "not a plain name"),
        (["repeat", "nope", "--seeds", "0,x"], "--seeds: 'x' is not a whole number"),
        (["repeat", "nope", "--seeds", "0,1"], "run 'nope': not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, says, tmp_path):
    from workbench.cli import app

    res = CliRunner().invoke(app, ["experiments", *args, "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], res.output


def test_cli_refuses_501_trials_with_the_count(tmp_path):
    from workbench.cli import app

    path = tmp_path / "big.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "big",
                "config": BASE,
                "grid": {"optim.lr": [0.001 * (i + 1) for i in range(167)]},
                "seeds": [0, 1, 2],
            }
        )
    )
    res = CliRunner().invoke(app, ["experiments", "submit", str(path), "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "501 trials" in res.output and "limit of 500" in res.output
    res = CliRunner().invoke(
        app,
        [
            "experiments",
            "submit",
            str(path),
            "--runs",
            str(tmp_path / "runs"),
            "--max-trials",
            "600",
            "--max-hours",
            "0.0001",
        ],
    )
    assert res.exit_code == 2 and "above the bound of 0.0001 h" in res.output
