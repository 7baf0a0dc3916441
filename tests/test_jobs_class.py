"""A class's queue: per-workspace caps (also for an experiment's batch), pause, moving a job to the
front or the back, the settings file (damaged too), finish estimates against injected times, the
liveness check before listing, and a resumed run's job. Workers are never launched here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import workbench.jobs.queue as jq
import workbench.jobs.state as js
from workbench.jobs import DEFAULT_CAP, Job, JobError, JobQueue, QueueSettings
from workbench.jobs.cli import jobs_app
from workbench.jobs.settings import CLASS_CAP, class_defaults
from workbench.runs import RunStore
from workbench.sweep import ExperimentError, SweepSpec, submit_experiment
from workbench.sweep.waits import queue_times, queue_waits

CFG = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}


@pytest.fixture
def launched(monkeypatch):
    """Workers that never run: a launch records the job and reports this process's pid."""
    out: list[str] = []

    def launch(self, job_id, token):
        out.append(job_id)
        return os.getpid()

    monkeypatch.setattr(JobQueue, "_launch", launch)
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    return out


def _finish(root, job_id, state="finished", finished="2030-01-01T00:00:00+00:00"):
    with js.state_lock(root):
        js.update_job_file(root, job_id, state=state, finished=finished)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- caps ----------------------------------------------------------------------------------------
def test_the_cap_refuses_the_next_submit_with_one_line(tmp_path, launched):
    q = JobQueue(tmp_path, max_jobs=1)
    assert q.settings() == QueueSettings(cap=DEFAULT_CAP, paused=False) and DEFAULT_CAP is None
    assert q.set_cap(2) == QueueSettings(cap=2, paused=False)
    a1 = q.submit(CFG, workspace="alice")
    q.pump()  # a1 running, a2 queued: both count
    q.submit(CFG, workspace="alice")
    b1 = q.submit(CFG, workspace="bob")
    assert (q.room("alice"), q.room("bob"), q.room(None)) == (0, 1, None)
    with pytest.raises(JobError) as err:
        q.submit(CFG, workspace="alice")
    assert str(err.value) == (
        "workspace 'alice' already has 2 jobs queued or running (the class's cap is 2); "
        "wait for one to end or stop one"
    )
    assert "bob" not in str(err.value)
    assert len(q.list(workspace="alice")) == 2  # nothing was queued
    for _ in range(3):
        q.submit(CFG)  # jobs without a workspace are not capped
    _finish(tmp_path, a1.id)  # a final job frees its place
    assert q.room("alice") == 1
    q.submit(CFG, workspace="alice")
    q.stop(b1.id)
    assert q.room("bob") == 2
    q.set_cap(None)
    assert q.room("alice") is None
    q.submit(CFG, workspace="alice")
    with pytest.raises(JobError, match="cap: expected an integer >= 1 or none, got 0"):
        q.set_cap(0)


def test_a_job_whose_worker_died_holds_no_place_under_the_cap(tmp_path, monkeypatch):
    pid = _dead_pid()
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: pid)
    q = JobQueue(tmp_path, max_jobs=1)
    q.set_cap(1)
    job = q.submit(CFG, workspace="alice")
    q.pump()
    assert js.read_job_file(tmp_path, job.id)["state"] == "running"  # its worker is dead already
    again = q.submit(CFG, workspace="alice")
    assert q.get(job.id).state == "failed" and again.state == "queued"


def test_an_experiment_larger_than_the_room_queues_nothing(tmp_path, launched):
    q = JobQueue(tmp_path / "runs", max_jobs=1)
    q.set_cap(3)
    q.submit(CFG, workspace="ann")
    base = {k: v for k, v in CFG.items() if k != "kind"}
    spec = SweepSpec(name="exp", config=base, grid={"optim.lr": [0.003, 0.01]}, seeds=[0, 1])
    with pytest.raises(ExperimentError) as err:
        submit_experiment(spec, q, workspace="ann")
    assert str(err.value) == (
        "experiment exp: 4 trials to queue, but workspace 'ann' may queue only 2 more jobs "
        "(the class's cap is 3); narrow the grid or wait for jobs to end"
    )
    assert len(q.list()) == 1
    small = SweepSpec(name="exp", config=base, grid={"optim.lr": [0.003, 0.01]}, seeds=[0])
    assert submit_experiment(small, q, workspace="ann").queued == 2
    assert q.room("ann") == 0


# ---- pause and moves -----------------------------------------------------------------------------
def test_pause_stops_starts_and_resume_lets_them_go(tmp_path, monkeypatch, launched):
    q = JobQueue(tmp_path, max_jobs=2)
    first = q.submit(CFG)
    assert [j.id for j in q.pump()] == [first.id]
    assert q.pause().paused is True
    second = q.submit(CFG)  # queuing still works
    assert q.pump() == [] and launched == [first.id]
    assert q.get(second.id).state == "queued" and q.get(first.id).state == "running"  # running goes on
    # the dead-worker check still runs while paused
    with js.state_lock(tmp_path):
        js.update_job_file(tmp_path, first.id, pid=_dead_pid())
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    q.pump()
    assert q.get(first.id).state == "failed" and q.get(second.id).state == "queued"
    assert q.resume().paused is False
    assert [j.id for j in q.pump()] == [second.id]


def test_move_first_and_last_change_positions_and_the_start_order(tmp_path, launched):
    q = JobQueue(tmp_path, max_jobs=1)
    a1, a2, a3 = (q.submit(CFG, workspace="alice") for _ in range(3))
    b1 = q.submit(CFG, workspace="bob")
    assert [(j.id, j.position) for j in q.list()] == [(a1.id, 1), (b1.id, 2), (a2.id, 3), (a3.id, 4)]
    moved = q.move(a3.id[:6], "first")
    assert (moved.id, moved.position, moved.priority) == (a3.id, 1, 1)
    # a3 takes alice's turn, so bob (who never started) comes next, then alice's others
    assert [j.id for j in q.list()] == [a3.id, b1.id, a1.id, a2.id]
    assert q.move(a1.id, "last").position == 4
    assert [j.id for j in q.list()] == [a3.id, b1.id, a2.id, a1.id]
    assert q.move(a2.id, "first").position == 1  # a later move to the front goes before an earlier one
    assert [j.id for j in q.list()] == [a2.id, a3.id, b1.id, a1.id]
    order = []
    for _ in range(4):
        (started,) = q.pump()
        order.append(started.id)
        _finish(tmp_path, started.id)
    assert order == [a2.id, a3.id, b1.id, a1.id] == launched
    with pytest.raises(JobError, match=f"job {a1.id}: only a queued job can be moved; it is finished"):
        q.move(a1.id, "first")
    with pytest.raises(JobError, match="where: expected 'first' or 'last', got 'top'"):
        q.move(a1.id, "top")


# ---- the settings file -----------------------------------------------------------------------------
def test_a_damaged_settings_file_means_the_defaults_and_a_warning(tmp_path, launched):
    q = JobQueue(tmp_path, max_jobs=1)
    q.dir.mkdir(parents=True)
    path = q.dir / "settings.json"
    path.write_text('{"cap": 2, "paus')
    settings = q.settings()
    assert (settings.cap, settings.paused) == (None, False)
    assert settings.warning.startswith(".jobs/settings.json: not valid JSON (")
    assert settings.warning.endswith("); using the defaults")
    job = q.submit(CFG, workspace="alice")  # the queue runs on the defaults
    assert [j.id for j in q.pump()] == [job.id]
    path.write_text(json.dumps({"cap": "many", "paused": True}))
    settings = q.settings()
    assert (settings.cap, settings.paused) == (None, True)
    assert settings.warning == (
        '.jobs/settings.json: cap "many" is not an integer >= 1 or null; using the default for it'
    )
    path.write_text("[]")
    assert q.settings().warning == ".jobs/settings.json: expected a JSON mapping; using the defaults"
    assert q.set_cap(3) == QueueSettings(cap=3, paused=False)  # a change writes a healthy file
    assert json.loads(path.read_text()) == {"cap": 3, "paused": False} and q.settings().warning is None
    assert not [p.name for p in q.dir.iterdir() if p.name.endswith(".tmp")]


# ---- estimates -------------------------------------------------------------------------------------
def _job(job_id, state, position=None, seq=0):
    return Job(id=job_id, state=state, config={}, seq=seq, created="t", position=position)


def test_queue_times_fill_two_slots_by_hand(tmp_path):
    jobs = [
        _job("r1", "running"), _job("r2", "running"),
        _job("q1", "queued", 1), _job("q2", "queued", 2), _job("q3", "queued", 3),
        _job("f1", "finished"),
    ]
    left = {"r1": 30.0, "r2": 50.0}
    estimates = {"r1": 100.0, "r2": 100.0, "q1": 40.0, "q2": 10.0, "q3": 20.0}
    times = queue_times(
        jobs, RunStore(tmp_path), 2, estimates=estimates, remaining=lambda j, e: left[j.id], paused=False
    )
    # slots free at 30 and 50: q1 30 -> 70, q2 50 -> 60, q3 60 -> 80
    assert times == {
        "r1": (0.0, 30.0), "r2": (0.0, 50.0), "q1": (30.0, 70.0), "q2": (50.0, 60.0), "q3": (60.0, 80.0)
    }
    waits = queue_waits(jobs, RunStore(tmp_path), 2, estimates=estimates, remaining=lambda j, e: left[j.id],
                        paused=False)
    assert waits == {"q1": 30.0, "q2": 50.0, "q3": 60.0}
    # paused: a queued job's start and finish are unknown, the running ones still finish
    paused = queue_times(jobs, RunStore(tmp_path), 2, estimates=estimates, remaining=lambda j, e: left[j.id],
                         paused=True)
    assert paused == {"r1": (0.0, 30.0), "r2": (0.0, 50.0), "q1": (None, None), "q2": (None, None),
                      "q3": (None, None)}


def test_queue_times_read_the_pause_and_count_slots_with_more_running(tmp_path):
    store = RunStore(tmp_path)
    jobs = [_job("r1", "running"), _job("r2", "running"), _job("r3", "running"), _job("q1", "queued", 1)]
    left = {"r1": 10.0, "r2": 20.0, "r3": 30.0}
    kw = {"estimates": {"q1": 5.0}, "remaining": lambda j, e: left[j.id]}
    # three running on two slots (max_jobs lowered): q1 starts once two of them ended
    assert queue_times(jobs, store, 2, **kw)["q1"] == (20.0, 25.0)
    JobQueue(tmp_path, max_jobs=2).pause()
    assert queue_times(jobs, store, 2, **kw)["q1"] == (None, None)
    assert queue_waits(jobs, store, 2, **kw) == {}


# ---- liveness and a resumed run ------------------------------------------------------------------
def _dead_job(tmp_path, monkeypatch):
    """A queue whose only job started on a worker that is already dead, with a run that finished
    one epoch."""
    pid = _dead_pid()
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: pid)
    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    q.pump()
    run_id = q.get(job.id).run_id
    (tmp_path / run_id).mkdir()
    status = {"id": run_id, "status": "running", "epoch": 1, "pid": pid, "host": socket.gethostname()}
    (tmp_path / run_id / "status.json").write_text(json.dumps(status))
    return q, job.id, run_id, pid


def test_listing_fails_a_dead_worker_s_job_without_starting_anything(tmp_path, monkeypatch):
    q, job_id, run_id, pid = _dead_job(tmp_path, monkeypatch)
    waiting = q.submit(CFG)
    assert q.get(job_id).state == "running"  # get alone looks at no process
    res = CliRunner().invoke(jobs_app, ["list", "--runs", str(tmp_path), "--json"])
    rows = {r["id"]: r for r in json.loads(res.output)["jobs"]}
    assert rows[job_id]["state"] == "failed"
    assert f"pid {pid}" in rows[job_id]["error"] and "keeps its 1 completed epoch(s)" in rows[job_id]["error"]
    assert rows[waiting.id]["state"] == "queued"  # listing started nothing
    assert json.loads((tmp_path / run_id / "status.json").read_text())["status"] == "interrupted"


def test_a_failed_job_whose_run_was_resumed_says_so(tmp_path, monkeypatch):
    q, job_id, run_id, _ = _dead_job(tmp_path, monkeypatch)
    failed = q.list()[0]
    assert (failed.state, failed.run_status, failed.state_text) == ("failed", None, "failed")
    path = tmp_path / run_id / "status.json"
    status = json.loads(path.read_text())
    assert status["status"] == "interrupted"
    _finish(tmp_path, job_id, "failed", finished="2030-01-01T10:00:00+00:00")
    status.update(status="running", finished=None, resumed=[{"at": "2030-01-01T10:05:00+00:00", "epoch": 1}])
    path.write_text(json.dumps(status))
    assert q.get(job_id).run_status == "running"
    status.update(status="completed", finished="2030-01-01T10:09:00+00:00")
    path.write_text(json.dumps(status))
    job = q.get(job_id)
    assert (job.state, job.run_status) == ("failed", "completed")
    assert job.state_text == "failed → run resumed, completed"
    assert job.to_dict()["run_status"] == "completed"
    assert json.loads((q.dir / f"{job_id}.json").read_text())["state"] == "failed"  # the file is unchanged
    res = CliRunner().invoke(jobs_app, ["list", "--runs", str(tmp_path)])
    assert "failed → run resumed, completed" in res.output
    # a run that ended before the job did was not resumed
    status.update(status="interrupted", finished="2030-01-01T09:59:59+00:00", resumed=[])
    path.write_text(json.dumps(status))
    assert q.get(job_id).run_status is None


# ---- the CLI -------------------------------------------------------------------------------------
def test_cli_pause_resume_cap_move_settings(tmp_path, launched):
    root = str(tmp_path)
    runner = CliRunner()
    q = JobQueue(tmp_path, max_jobs=1)
    a, b = q.submit(CFG, workspace="alice"), q.submit(CFG, workspace="bob")
    res = runner.invoke(jobs_app, ["settings", "--runs", root])
    assert res.exit_code == 0 and "no cap; running" in res.output
    assert class_defaults(root).cap == CLASS_CAP == 4  # a store served to a class: 4 until set
    res = runner.invoke(jobs_app, ["settings", "--runs", root])
    assert res.exit_code == 0 and "cap 4 jobs per workspace; running" in res.output
    q.set_cap(None)
    assert class_defaults(root).cap is None  # a cap the instructor set (none included) stays
    res = runner.invoke(jobs_app, ["pause", "--runs", root])
    assert res.exit_code == 0 and "queue paused" in res.output and q.settings().paused
    res = runner.invoke(jobs_app, ["list", "--runs", root])
    assert "the queue is paused: nothing starts until `workbench jobs resume`" in res.output
    res = runner.invoke(jobs_app, ["resume", "--runs", root])
    assert res.exit_code == 0 and not q.settings().paused
    res = runner.invoke(jobs_app, ["cap", "1", "--runs", root])
    assert res.exit_code == 0 and "cap 1 job per workspace; running" in res.output
    assert q.room("alice") == 0
    res = runner.invoke(jobs_app, ["cap", "none", "--runs", root])
    assert res.exit_code == 0 and "no cap; running" in res.output and q.settings().cap is None
    res = runner.invoke(jobs_app, ["cap", "0", "--runs", root])
    assert res.exit_code == 2 and "error: cap: expected a whole number >= 1 or 'none', got '0'" in res.output
    res = runner.invoke(jobs_app, ["move", b.id, "--first", "--runs", root])
    assert res.exit_code == 0 and f"job {b.id}: position 1" in res.output
    res = runner.invoke(jobs_app, ["move", b.id[:5], "--last", "--runs", root])
    assert res.exit_code == 0 and f"job {b.id}: position 2" in res.output
    assert [j.id for j in q.list()] == [a.id, b.id]
    res = runner.invoke(jobs_app, ["settings", "--runs", root, "--json"])
    assert json.loads(res.output) == {"cap": None, "paused": False, "warning": None}
    (q.dir / "settings.json").write_text("{")
    res = runner.invoke(jobs_app, ["settings", "--runs", root])
    assert res.exit_code == 0 and "warning: .jobs/settings.json: not valid JSON" in res.output
    assert "no cap; running" in res.output
