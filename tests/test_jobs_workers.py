"""The job queue with real worker processes (tiny runs on ``digits``): limits, restart recovery,
stop of a running job, a killed worker, the CLI scheduler loop, and the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime

import pytest
from job_configs import LONG, QUICK, until
from typer.testing import CliRunner

from workbench.jobs import JobQueue
from workbench.jobs.cli import jobs_app
from workbench.runs import RunStore

pytestmark = pytest.mark.slow


def _run_status(root, run_id):
    try:
        return json.loads((root / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def test_limit_and_restart_recovery(tmp_path):
    # a first "server" queues two jobs and goes away before starting either
    first = JobQueue(tmp_path, max_jobs=1)
    a = first.submit(QUICK, workspace="alice", label="a")
    b = first.submit(QUICK, workspace="bob", label="b")
    del first
    queue = JobQueue(tmp_path, max_jobs=1)  # the restarted server
    assert [(j.id, j.state, j.position) for j in queue.list()] == [(a.id, "queued", 1), (b.id, "queued", 2)]
    assert [j.id for j in queue.pump()] == [a.id]
    assert queue.get(b.id).state == "queued" and queue.get(b.id).position == 1
    most = 0
    while not queue.get(b.id).done:  # never two at once
        states = [j.state for j in queue.list()]
        most = max(most, states.count("running"))
        queue.pump()
        time.sleep(0.1)
    assert most == 1
    ja, jb = queue.get(a.id), queue.get(b.id)
    assert (ja.state, jb.state) == ("finished", "finished"), (ja.error, jb.error, queue.log(a.id))
    # b started only after a finished (status times are cut to whole seconds)
    assert jb.extra["started_ts"] >= datetime.fromisoformat(ja.finished).timestamp()
    store = RunStore(tmp_path)
    for job in (ja, jb):
        run = store.load(job.run_id)
        assert run.status["status"] == "completed"
        assert run.metrics["summary"]["steps"] == 3
        run.load_model("final")
    assert not list(queue.dir.glob("*.stop")) and not list(queue.dir.glob("*.beat"))


def test_stop_running_job_leaves_a_stopped_loadable_run(tmp_path):
    queue = JobQueue(tmp_path, max_jobs=1)
    job = queue.submit(LONG)
    queue.pump()
    run_id = queue.get(job.id).run_id
    until(lambda: (_run_status(tmp_path, run_id).get("step") or 0) > 0, what="the run to take steps")
    asked = JobQueue(tmp_path, max_jobs=1).stop(job.id[:5])  # from "another session"
    assert asked.stop_requested
    done = queue.wait(job.id, timeout=120, poll=0.2)
    assert done.state == "stopped" and done.error is None, queue.log(job.id)
    run = RunStore(tmp_path).load(run_id)
    assert run.status["status"] == "stopped"
    assert 0 < run.status["step"] < 10000 * 12
    model = run.load_model("final")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_killed_worker_fails_the_job_and_keeps_epochs(tmp_path):
    queue = JobQueue(tmp_path, max_jobs=1)
    job = queue.submit(LONG)
    queue.pump()
    running = queue.get(job.id)
    until(lambda: (_run_status(tmp_path, running.run_id).get("epoch") or 0) >= 1, what="an epoch")
    os.kill(running.pid, signal.SIGKILL)
    dead = until(lambda: (j := (queue.pump(), queue.get(job.id))[1]).done and j, what="the job to fail")
    assert dead.state == "failed"
    assert f"pid {running.pid}" in dead.error and "completed epoch" in dead.error
    run = RunStore(tmp_path).load(running.run_id)
    assert run.status["status"] == "interrupted"
    epochs = run.epoch_checkpoints()
    assert epochs and epochs[0] == (1, "epoch_001")
    run.load_model("epoch_001")
    assert len(run.metrics["epochs"]) >= 1


def test_cli_worker_runs_the_queue(tmp_path):
    root = tmp_path / "runs"
    queue = JobQueue(root, max_jobs=1)
    job = queue.submit(QUICK)
    res = CliRunner().invoke(
        jobs_app, ["worker", "--runs", str(root), "-j", "1", "--interval", "0.2", "--until-idle"]
    )
    assert res.exit_code == 0, res.output
    assert queue.get(job.id).state == "finished"
    assert f"job {job.id}" in res.output and "finished" in res.output


def test_ray_backend_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        queue = JobQueue(tmp_path, max_jobs=1, ray_address="local")
        a, b = queue.submit(QUICK), queue.submit(LONG)
        assert [j.id for j in queue.pump()] == [a.id]
        assert queue.get(a.id).backend == "ray"
        done = queue.wait(a.id, timeout=300, poll=0.2)
        assert done.state == "finished", done.error
        assert done.host and isinstance(done.pid, int) and done.pid != os.getpid()
        assert RunStore(tmp_path).load(done.run_id).status["status"] == "completed"
        # the second starts when the first is done; stop works through the same stop file
        run_id = until(lambda: (queue.pump(), queue.get(b.id))[1].run_id, what="b to start")
        until(lambda: (_run_status(tmp_path, run_id).get("step") or 0) > 0, timeout=300, what="b's steps")
        queue.stop(b.id)
        assert queue.wait(b.id, timeout=120, poll=0.2).state == "stopped"
        assert RunStore(tmp_path).load(run_id).status["status"] == "stopped"
    finally:
        ray.shutdown()
