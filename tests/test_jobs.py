"""The job queue without real training: scheduling, fairness, limits, stop, recovery, locking, CLI.

Workers are replaced by a fake launcher here (no process trains); tests/test_jobs_workers.py runs
real worker processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime

import pytest
from typer.testing import CliRunner

import workbench.jobs.queue as jq
import workbench.jobs.state as js
from workbench.jobs import (
    Job,
    JobError,
    JobQueue,
    default_max_jobs,
    pick_next,
    queue_order,
    thread_budget,
    thread_env,
    with_positions,
)
from workbench.jobs.cli import jobs_app
from workbench.runs import RunStore

CFG = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}


def _job(id, seq, ws=None, state="queued", start_seq=None):
    return Job(id=id, state=state, config={}, seq=seq, created="2025-01-01T00:00:00+00:00",
               workspace=ws, start_seq=start_seq)


# ---- pure scheduling -----------------------------------------------------------------------------
def test_fifo_within_one_workspace():
    jobs = [_job("c", 3), _job("a", 1), _job("b", 2)]
    assert pick_next(jobs).id == "a"
    assert [j.id for j in queue_order(jobs)] == ["a", "b", "c"]
    assert pick_next([_job("x", 1, state="running", start_seq=1)]) is None


def test_round_robin_across_workspaces():
    # alice queued three jobs before bob and carol queued one each
    jobs = [
        _job("a1", 1, "alice"), _job("a2", 2, "alice"), _job("a3", 3, "alice"),
        _job("b1", 4, "bob"), _job("c1", 5, "carol"),
    ]
    assert [j.id for j in queue_order(jobs)] == ["a1", "b1", "c1", "a2", "a3"]


def test_workspace_that_started_least_recently_goes_first():
    # bob started a job most recently (start_seq 7), alice earlier (5): alice's turn,
    # even though bob's queued job is older
    jobs = [
        _job("a0", 1, "alice", state="finished", start_seq=5),
        _job("b0", 2, "bob", state="running", start_seq=7),
        _job("b1", 3, "bob"),
        _job("a1", 4, "alice"),
    ]
    assert pick_next(jobs).id == "a1"
    # a workspace that never started anything beats both
    assert pick_next([*jobs, _job("n1", 9, None)]).id == "n1"


def test_positions_listing_order():
    jobs = [
        _job("a1", 1, "alice"), _job("a2", 2, "alice"), _job("b1", 3, "bob"),
        _job("r", 0, "bob", state="running", start_seq=1),
        Job(id="f", state="finished", config={}, seq=0, created="x", finished="2025-01-02", start_seq=1),
    ]
    placed = with_positions(jobs)
    # alice never started: a1 first; then bob (last start 1) before alice (now 2)
    assert [j.id for j in placed] == ["r", "a1", "b1", "a2", "f"]
    assert [j.position for j in placed] == [None, 1, 2, 3, None]


def test_thread_budget_arithmetic():
    assert thread_budget(1, cores=2) == 1  # 2 cores, server keeps 1
    assert thread_budget(1, cores=8) == 7
    assert thread_budget(2, cores=8) == 3  # (8 - 1) // 2
    assert thread_budget(4, cores=16, reserve=0) == 4
    assert thread_budget(4, cores=16, reserve=4) == 3
    assert thread_budget(8, cores=4) == 1  # never below one
    assert thread_budget(1, cores=1) == 1
    with pytest.raises(JobError, match="max_jobs"):
        thread_budget(0, cores=4)
    with pytest.raises(JobError, match="reserve"):
        thread_budget(1, cores=4, reserve=-1)
    env = thread_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_default_max_jobs():
    assert [default_max_jobs(c) for c in (1, 2, 4, 5, 8, 16, 64)] == [1, 1, 1, 1, 2, 4, 16]
    assert default_max_jobs() >= 1


def test_job_dict_round_trip():
    job = Job(id="ab12cd34", state="failed", config={"name": "x"}, seq=3, created="t", error="boom",
              extra={"token": "secret"})
    d = job.to_dict()
    assert d["name"] == "x" and d["done"] is True and "extra" not in d
    back = Job.from_dict({**{k: v for k, v in d.items() if k not in ("name", "done")}, "token": "t"})
    assert back.id == job.id and back.error == "boom" and back.extra == {"token": "t"}


# ---- the queue with a fake launcher ---------------------------------------------------------------
@pytest.fixture
def fake_launch(monkeypatch):
    """Workers that never run: a launch records the job and reports this process's pid."""
    launched: list[str] = []

    def launch(self, job_id, token):
        launched.append(job_id)
        return os.getpid()

    monkeypatch.setattr(JobQueue, "_launch", launch)
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    return launched


def _finish(root, job_id, state="finished"):
    with js.state_lock(root):
        js.update_job_file(root, job_id, state=state, finished="2030-01-01T00:00:00+00:00")


def test_submit_validates(tmp_path):
    q = JobQueue(tmp_path, max_jobs=1)
    with pytest.raises(ValueError, match="optim.lr"):
        q.submit({**CFG, "optim": {"lr": -1}})
    with pytest.raises(ValueError, match="model.name: unknown name 'nope'"):
        q.submit({**CFG, "model": {"name": "nope"}})  # the registries are checked at submit
    with pytest.raises(JobError, match="workspace"):
        q.submit(CFG, workspace="")
    with pytest.raises(JobError, match="max_jobs"):
        JobQueue(tmp_path, max_jobs=0)
    assert q.list() == []


def test_job_ids_exact_prefix_empty_ambiguous(tmp_path, monkeypatch):
    hexes = iter(["abc11111" + "0" * 24, "abc22222" + "0" * 24, "f0000000" + "0" * 24])
    monkeypatch.setattr(jq.uuid, "uuid4", lambda: type("U", (), {"hex": next(hexes)})())
    q = JobQueue(tmp_path, max_jobs=1)
    a, b, c = q.submit(CFG), q.submit(CFG), q.submit(CFG)
    assert (a.id, b.id, c.id) == ("abc11111", "abc22222", "f0000000")
    assert q.get("abc22222").id == b.id
    assert q.get("abc1").id == a.id and q.get("f").id == c.id
    with pytest.raises(JobError, match="empty"):
        q.get("  ")
    with pytest.raises(JobError, match="'zzzz': not found"):
        q.get("zzzz")
    with pytest.raises(JobError, match="'abc': ambiguous, matches abc11111, abc22222"):
        q.stop("abc")
    with pytest.raises(JobError, match="not found"):
        q.get("../abc11111")  # a path never reaches a file outside the queue


def test_concurrency_limit_and_queue_positions(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1)
    first, second = q.submit(CFG, label="one"), q.submit(CFG, label="two")
    assert [j.position for j in q.list()] == [1, 2]
    assert [j.id for j in q.pump()] == [first.id]
    assert q.pump() == []  # the slot is taken
    assert fake_launch == [first.id]
    running, waiting = q.list()
    assert (running.id, running.state, running.pid, running.host) == (first.id, "running", os.getpid(),
                                                                      socket.gethostname())
    assert running.run_id and running.position is None
    assert (waiting.id, waiting.state, waiting.position) == (second.id, "queued", 1)
    _finish(tmp_path, first.id)
    assert [j.id for j in q.pump()] == [second.id]
    assert fake_launch == [first.id, second.id]


def test_fair_start_order_through_the_queue(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1)
    a = [q.submit(CFG, workspace="alice") for _ in range(3)]
    b = q.submit(CFG, workspace="bob")
    for _ in range(4):
        started = q.pump()
        assert len(started) == 1
        _finish(tmp_path, started[0].id)
    assert fake_launch == [a[0].id, b.id, a[1].id, a[2].id]
    assert [j.position for j in q.list(workspace="alice")] == [None] * 3


def test_stop_queued_and_running(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1)
    run, wait = q.submit(CFG), q.submit(CFG)
    q.pump()
    stopped = q.stop(wait.id)
    assert stopped.state == "stopped" and stopped.finished
    assert not (q.dir / f"{wait.id}.stop").exists()
    asked = q.stop(run.id)
    assert asked.state == "running" and asked.stop_requested
    assert (q.dir / f"{run.id}.stop").exists()  # what the worker's CancelToken watches
    _finish(tmp_path, run.id, "stopped")
    assert q.pump() == []  # the stopped queued job never starts
    assert fake_launch == [run.id]
    assert q.stop(wait.id).state == "stopped"  # a final job is returned unchanged


def test_restart_sees_queued_jobs(tmp_path, fake_launch):
    first = JobQueue(tmp_path, max_jobs=1)
    ids = [first.submit(CFG, workspace=w).id for w in ("x", "y")]
    del first
    again = JobQueue(tmp_path, max_jobs=2)
    assert [(j.id, j.state, j.position) for j in again.list()] == [(ids[0], "queued", 1), (ids[1], "queued", 2)]
    assert sorted(j.id for j in again.pump()) == sorted(ids)


def test_dead_worker_marked_failed_and_run_interrupted(tmp_path, monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: its pid is gone
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: proc.pid)
    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    q.pump()
    run_id = q.get(job.id).run_id
    # the worker had created its run and finished one epoch before it died
    (tmp_path / run_id).mkdir()
    status = {"id": run_id, "status": "running", "epoch": 1, "pid": proc.pid, "host": socket.gethostname()}
    (tmp_path / run_id / "status.json").write_text(json.dumps(status))
    q.pump()
    dead = q.get(job.id)
    assert dead.state == "failed"
    assert f"pid {proc.pid}" in dead.error and "1 completed epoch" in dead.error
    assert "\n" not in dead.error
    assert json.loads((tmp_path / run_id / "status.json").read_text())["status"] == "interrupted"


def test_heartbeat_decides_for_workers_on_other_hosts(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1, heartbeat_timeout=30)
    job = q.submit(CFG)
    q.pump()
    with js.state_lock(tmp_path):
        js.update_job_file(tmp_path, job.id, host="elsewhere", pid=1)
    (q.dir / f"{job.id}.beat").touch()
    q.pump()
    assert q.get(job.id).state == "running"  # fresh heartbeat
    old = datetime.now().timestamp() - 120
    os.utime(q.dir / f"{job.id}.beat", (old, old))
    q.pump()
    assert q.get(job.id).state == "failed" and "heartbeat" in q.get(job.id).error


def _pump_in_process(root, record):
    launched = []

    def launch(self, job_id, token):
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (job_id + "\n").encode())
        os.close(fd)
        return os.getppid()

    JobQueue._launch = launch
    jq._is_our_worker = lambda pid, job_id: True
    for _ in range(5):
        launched += JobQueue(root, max_jobs=2).pump()


def test_concurrent_pumps_never_start_a_job_twice(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=2)
    ids = [q.submit(CFG, workspace=f"w{i % 2}").id for i in range(5)]
    barrier = threading.Barrier(6)
    results: list[list[Job]] = []

    def pump():
        barrier.wait()
        results.append(JobQueue(tmp_path, max_jobs=2).pump())

    threads = [threading.Thread(target=pump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_launch) == 2 and len(set(fake_launch)) == 2
    assert sum(len(r) for r in results) == 2
    assert {j.state for j in q.list()} == {"running", "queued"}
    # the same across processes: free the slots, then 4 processes race for the 3 remaining jobs
    for i in fake_launch:
        _finish(tmp_path, i)
    record = tmp_path / "launched.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_pump_in_process, args=(tmp_path, record)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    started = record.read_text().split()
    assert len(started) == 2 and len(set(started)) == 2
    assert set(started) <= set(ids) - set(fake_launch)


def test_remove_only_final_jobs(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    with pytest.raises(JobError, match="still queued"):
        q.remove(job.id)
    q.stop(job.id)
    assert q.remove(job.id[:5]) == job.id
    assert q.list() == []


def test_worker_launch_is_detached_with_a_thread_budget(tmp_path, monkeypatch):
    seen = {}

    class FakePopen:
        pid = 424242

        def __init__(self, cmd, **kw):
            seen.update(cmd=cmd, **kw)

        def poll(self):
            return None

    monkeypatch.setattr(jq.subprocess, "Popen", FakePopen)
    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    q.pump()
    assert seen["cmd"][1:3] == ["-m", "workbench.jobs.worker"] and job.id in seen["cmd"]
    assert seen["start_new_session"] is True  # a rerun or Ctrl-C of the caller does not kill it
    assert seen["env"]["OMP_NUM_THREADS"] == str(q.threads) == str(thread_budget(1))
    assert seen["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert seen["env"]["WORKBENCH_RUNS"] == str(tmp_path.resolve())
    token = json.loads((q.dir / f"{job.id}.json").read_text())["token"]
    assert seen["cmd"][seen["cmd"].index("--token") + 1] == token
    assert q.get(job.id).pid == 424242
    jq._CHILDREN.pop(424242, None)


def test_worker_refuses_a_job_it_was_not_started_for(tmp_path, fake_launch):
    from workbench.jobs.worker import run_job

    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    assert run_job(tmp_path, job.id, "any", pump_after=False) == "skipped"  # still queued
    q.pump()
    assert run_job(tmp_path, job.id, "wrong-token", pump_after=False) == "skipped"
    assert q.get(job.id).state == "running"


def test_stop_before_training_leaves_no_run(tmp_path, fake_launch):
    from workbench.jobs.worker import run_job

    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    q.pump()
    q.stop(job.id)
    token = json.loads((q.dir / f"{job.id}.json").read_text())["token"]
    assert run_job(tmp_path, job.id, token, pump_after=False) == "stopped"
    done = q.get(job.id)
    assert (done.state, done.run_id, done.error) == ("stopped", None, None)
    assert RunStore(tmp_path).ids() == []  # cancelled during set-up: nothing left behind
    assert not (q.dir / f"{job.id}.stop").exists()


def test_submit_demo_queues_the_demo_pair(tmp_path):
    from workbench.demo import demo_configs
    from workbench.jobs import submit_demo

    q = JobQueue(tmp_path, max_jobs=1)
    jobs = submit_demo(q, workspace="class")
    assert [j.label for j in jobs] == ["demo-scratch", "demo-kd"]
    assert [j.config for j in jobs] == [c.model_dump(mode="json") for c in demo_configs()]
    assert {j.workspace for j in jobs} == {"class"} and [j.position for j in q.list()] == [1, 2]
    kd = jobs[1].config
    assert kd["teachers"][0]["source"] == "shipped:mnist" and kd["distill"]["methods"][0]["name"] == "kd"


def test_progress_reads_the_run_status(tmp_path, fake_launch):
    q = JobQueue(tmp_path, max_jobs=1)
    job = q.submit(CFG)
    assert q.progress(job.id) is None
    q.pump()
    run_id = q.get(job.id).run_id
    assert q.progress(job.id) is None  # the worker has not created its run yet
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / "status.json").write_text(
        json.dumps({"status": "running", "step": 5, "total_steps": 20, "epoch": 1, "epochs": 4})
    )
    assert q.progress(job.id) == {"status": "running", "step": 5, "total_steps": 20, "epoch": 1, "epochs": 4}


# ---- the CLI -------------------------------------------------------------------------------------
def test_cli_submit_list_stop(tmp_path, fake_launch):
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(CFG))
    root = tmp_path / "runs"
    runner = CliRunner()
    res = runner.invoke(
        jobs_app,
        ["submit", "--config", str(cfg), "--set", "train.max_steps=3", "--runs", str(root), "--workspace", "ann",
         "--no-start"],
    )
    assert res.exit_code == 0, res.output
    job_id = res.output.split()[1].rstrip(":")
    assert "position 1" in res.output
    q = JobQueue(root, max_jobs=1)
    assert q.get(job_id).config["train"]["max_steps"] == 3
    assert q.get(job_id).workspace == "ann"
    res = runner.invoke(jobs_app, ["list", "--runs", str(root), "--json"])
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    rows = listing["jobs"]
    assert [(r["id"], r["state"], r["position"]) for r in rows] == [(job_id, "queued", 1)]
    assert listing["damaged"] == [] and listing["settings"]["cap"] is None
    res = runner.invoke(jobs_app, ["list", "--runs", str(root)])
    assert job_id in res.output and "queued" in res.output
    res = runner.invoke(jobs_app, ["stop", job_id[:4], "--runs", str(root)])
    assert res.exit_code == 0 and "stopped" in res.output
    assert q.get(job_id).state == "stopped"
    (q.dir / f"{job_id}.log").write_text("Traceback: boom\n")
    res = runner.invoke(jobs_app, ["log", job_id, "--runs", str(root)])
    assert res.exit_code == 0 and "Traceback: boom" in res.output
    res = runner.invoke(jobs_app, ["stop", "nosuch", "--runs", str(root)])
    assert res.exit_code == 2 and "job 'nosuch': not found" in res.output
    res = runner.invoke(jobs_app, ["submit", "--config", str(cfg), "--set", "model.name=nope", "--runs", str(root)])
    assert res.exit_code == 2 and "model.name" in res.output


def test_cli_worker_until_idle_starts_queued(tmp_path, fake_launch):
    root = tmp_path / "runs"
    q = JobQueue(root, max_jobs=1)
    job = q.submit(CFG)
    state = {"n": 0}
    real_pump = JobQueue.pump

    def pump(self):  # finish the fake worker's job one pass after it started
        started = real_pump(self)
        state["n"] += 1
        if state["n"] == 2:
            _finish(root, job.id)
        return started

    import unittest.mock as um

    with um.patch.object(JobQueue, "pump", pump):
        res = CliRunner().invoke(jobs_app, ["worker", "--runs", str(root), "-j", "1", "--interval", "0.05",
                                            "--until-idle"])
    assert res.exit_code == 0, res.output
    assert f"job {job.id}" in res.output and "running" in res.output and "finished" in res.output
    assert fake_launch == [job.id]
