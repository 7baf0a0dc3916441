"""Warm job workers (workbench.jobs.warm): processes that train job after job.

The first part drives the scheduler's side with stand-in worker processes (no training): jobs handed
to free warm workers round-robin, the pool kept at ``max_jobs``, dead workers replaced, the lease,
the worker's output switched to each job's log. The second part runs real warm workers on tiny
``digits`` jobs (marked slow): two jobs in one process, a stopped job followed by the next, a
killed worker, recycling; and a ``workbench train`` process that imports no app or science stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from job_configs import LONG, QUICK, until

import workbench.jobs.queue as jq
from workbench import serve
from workbench.jobs import JobError, JobQueue
from workbench.jobs.pool import (
    OWNER_GRACE,
    all_workers,
    check_worker_id,
    lease_expired,
    new_worker_id,
    read_worker,
    renew_lease,
    workers_dir,
    write_worker,
)
from workbench.jobs.state import finish_job, read_job_file, state_lock
from workbench.procs import pid_alive
from workbench.runs import RunStore


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the scheduler's side, with stand-in workers ---------------------------------------------------
@pytest.fixture
def stand_ins(monkeypatch):
    """Warm worker processes that never run: each start records the worker id and reports this
    process's pid (alive, and taken for a worker)."""
    started: list[str] = []

    def popen_warm(self, worker_id):
        started.append(worker_id)
        return os.getpid()

    monkeypatch.setattr(JobQueue, "_popen_warm", popen_warm)
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, tag: True)
    return started


def _set_worker(root, worker_id, **fields):
    with state_lock(root):
        write_worker(root, {**read_worker(root, worker_id), **fields})


def test_worker_ids_and_records(tmp_path):
    wid = new_worker_id()
    assert check_worker_id(wid) == wid and len(wid) == 9
    for bad in ("../etc", "w123", "x12345678", 7, None):
        with pytest.raises(JobError, match="worker id"):
            check_worker_id(bad)
    assert all_workers(tmp_path) == [] and read_worker(tmp_path, wid) is None


def test_an_idle_scheduler_keeps_max_jobs_warm_workers_ready(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=2, warm=True)
    assert q.pump() == []
    assert len(stand_ins) == 2
    records = q.workers()
    assert {r["id"] for r in records} == set(stand_ins)
    assert all(r["state"] == "starting" and r["job"] is None and r["pid"] == os.getpid() for r in records)
    assert all(r["threads"] == q.threads and r["max_jobs"] == 2 for r in records)
    q.pump()
    assert len(stand_ins) == 2  # the pool is full: nothing more starts


def test_jobs_go_to_free_warm_workers_round_robin(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=2, warm=True)
    q.pump()
    ready, starting = stand_ins
    _set_worker(tmp_path, ready, state="idle")
    a1, a2 = q.submit(QUICK, workspace="alice"), q.submit(QUICK, workspace="alice")
    b = q.submit(QUICK, workspace="bob")
    assert [j.id for j in q.pump()] == [a1.id, b.id]  # round-robin: alice, then bob
    ja, jb = q.get(a1.id), q.get(b.id)
    assert (ja.worker, jb.worker) == (ready, starting)  # a ready worker first
    assert ja.pid == jb.pid == os.getpid() and ja.extra["threads"] == q.threads
    for job in (ja, jb):
        record = read_worker(tmp_path, job.worker)
        assert record["job"] == job.id and record["token"] == job.extra["token"]
    assert q.get(a2.id).position == 1 and len(stand_ins) == 2
    # a1 ends: its worker frees its record in the same locked step that records the outcome
    record = read_worker(tmp_path, ready)

    def free():
        assert q.get(a1.id).state == "finished"  # under the lock, right after the outcome
        write_worker(tmp_path, {**record, "job": None, "token": None, "state": "idle", "jobs_done": 1})

    finish_job(tmp_path, a1.id, ja.extra["token"], "finished", None, ja.run_id, then=free)
    assert [j.id for j in q.pump()] == [a2.id]
    assert q.get(a2.id).worker == ready and read_worker(tmp_path, ready)["job"] == a2.id
    assert len(stand_ins) == 2


def test_a_job_with_no_free_worker_starts_a_worker_that_stays_warm(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=1, warm=True)
    job = q.submit(QUICK)  # queued before any warm worker exists
    q.pump()
    assert stand_ins == [f"w{job.id}"]
    record = read_worker(tmp_path, f"w{job.id}")
    assert record["job"] == job.id and record["token"] == q.get(job.id).extra["token"]
    assert q.get(job.id).worker == f"w{job.id}"


def test_dead_warm_workers_are_replaced_and_their_job_fails_keeping_epochs(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=1, warm=True)
    q.pump()
    (first,) = stand_ins
    _set_worker(tmp_path, first, state="idle", pid=_dead_pid())  # died while idle
    q.pump()
    assert read_worker(tmp_path, first) is None and len(stand_ins) == 2  # forgotten and replaced
    second = stand_ins[1]
    _set_worker(tmp_path, second, state="idle")
    job = q.submit(LONG)
    q.pump()
    running = q.get(job.id)
    assert running.worker == second
    # the worker had created the run and finished an epoch, then died mid-job
    (tmp_path / running.run_id).mkdir()
    status = {"id": running.run_id, "status": "running", "epoch": 1}
    (tmp_path / running.run_id / "status.json").write_text(json.dumps(status))
    (workers_dir(tmp_path) / f"{second}.log").write_text("Segmentation fault\n")
    dead = _dead_pid()
    _set_worker(tmp_path, second, pid=dead)
    with state_lock(tmp_path):
        data = read_job_file(tmp_path, job.id)
        data["pid"] = dead
        (q.dir / f"{job.id}.json").write_text(json.dumps(data))
    q.pump()
    failed = q.get(job.id)
    assert failed.state == "failed" and f"pid {dead}" in failed.error and "1 completed epoch" in failed.error
    assert json.loads((tmp_path / running.run_id / "status.json").read_text())["status"] == "interrupted"
    assert "Segmentation fault" in q.log(job.id)  # the worker's last words land in the job's log
    assert read_worker(tmp_path, second) is None and len(stand_ins) == 3


def test_a_job_its_warm_worker_dropped_fails(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=1, warm=True)
    job = q.submit(QUICK)
    q.pump()
    _set_worker(tmp_path, f"w{job.id}", job=None, token=None, state="idle")
    q.pump()
    assert q.get(job.id).state == "failed" and "no longer holds the job" in q.get(job.id).error


def test_retired_workers_are_not_given_jobs(tmp_path, stand_ins):
    q = JobQueue(tmp_path, max_jobs=1, warm=True)
    q.pump()
    assert q.retire_workers() == stand_ins
    assert read_worker(tmp_path, stand_ins[0])["retire"] is True
    job = q.submit(QUICK)
    q.pump()
    assert q.get(job.id).worker == f"w{job.id}"  # not the leaving one


def test_warm_setting_and_its_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WARM_WORKERS", "1")
    assert JobQueue(tmp_path, max_jobs=1).warm is True
    assert JobQueue(tmp_path, max_jobs=1, warm=False).warm is False
    assert JobQueue(tmp_path, max_jobs=1, ray_address="local").warm is False  # the Ray backend as it is
    monkeypatch.setenv("WORKBENCH_WARM_WORKERS", "0")
    assert JobQueue(tmp_path, max_jobs=1).warm is False
    for kwargs, field in (({"recycle_after": 0}, "recycle_after"), ({"idle_timeout": -1}, "idle_timeout"),
                          ({"memory_mark_mb": "big"}, "memory_mark_mb")):
        with pytest.raises(JobError, match=field):
            JobQueue(tmp_path, max_jobs=1, **kwargs)
    assert serve.build_env(base={})["WORKBENCH_WARM_WORKERS"] == "1"  # the app's server keeps warm workers
    assert serve.build_env(base={}, warm=False)["WORKBENCH_WARM_WORKERS"] == "0"
    assert serve.build_env(base={"WORKBENCH_WARM_WORKERS": "0"})["WORKBENCH_WARM_WORKERS"] == "0"


def test_lease_holds_while_its_scheduler_lives(tmp_path):
    assert lease_expired(tmp_path, 600) == "no scheduler keeps warm workers"
    renew_lease(tmp_path)
    assert lease_expired(tmp_path, 600) is None
    lease = workers_dir(tmp_path) / ".lease"
    old = time.time() - 30
    os.utime(lease, (old, old))
    assert lease_expired(tmp_path, 600) is None  # this process lives: only the idle timeout counts
    assert "no scheduler pass for 30 s" in lease_expired(tmp_path, 20)
    dead = _dead_pid()
    lease.write_text(f"{dead} {socket.gethostname()}\n")
    assert lease_expired(tmp_path, 600) is None  # renewed just now: within the grace
    old = time.time() - OWNER_GRACE - 1
    os.utime(lease, (old, old))
    assert lease_expired(tmp_path, 600) == f"the scheduler (pid {dead}) ended"


def test_output_to_sends_the_process_output_to_the_file_and_back(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("before\n")
    code = (
        "import os, sys\n"
        "from workbench.procs import output_to\n"
        f"with output_to({str(log)!r}):\n"
        "    print('from python')\n"
        "    print('from stderr', file=sys.stderr)\n"
        "    os.system('echo from a child process')\n"
        "print('after')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert log.read_text() == "before\nfrom python\nfrom stderr\nfrom a child process\n"
    assert res.stdout == "after\n" and res.stderr == ""


# ---- real warm workers -------------------------------------------------------------------------------


def _run_status(root, run_id):
    try:
        return json.loads((root / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture
def warm_queues():
    """Make warm queues; afterwards their workers are asked to leave and waited for (killed if
    they have not left after a minute)."""
    made: list[JobQueue] = []
    pids: set[int] = set()

    def make(root, **kwargs):
        q = JobQueue(root, max_jobs=1, warm=True, **kwargs)
        made.append(q)
        return q

    yield make, pids
    for q in made:
        pids.update(w["pid"] for w in q.workers())
        q.retire_workers()
    deadline = time.monotonic() + 60
    for pid in pids:
        while jq._child_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if jq._child_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _wait(q, job_id, pids):
    def done():
        job = q.get(job_id)
        if job.pid:
            pids.add(job.pid)
        return job.done and job

    return until(lambda: (q.pump(), done())[1], what=f"job {job_id}")


@pytest.mark.slow
def test_a_warm_worker_trains_two_jobs_in_a_row_in_one_process(tmp_path, warm_queues):
    make, pids = warm_queues
    q = make(tmp_path)
    a, b = q.submit(QUICK, label="a"), q.submit(QUICK, label="b")
    ja, jb = _wait(q, a.id, pids), _wait(q, b.id, pids)
    assert (ja.state, jb.state) == ("finished", "finished"), (ja.error, jb.error, q.log(a.id), q.log(b.id))
    assert ja.pid == jb.pid and ja.worker == jb.worker == f"w{a.id}"  # one process, one worker
    assert f"job {a.id}: finished" in q.log(a.id) and b.id not in q.log(a.id)  # each job its own log
    assert f"job {b.id}: finished" in q.log(b.id) and a.id not in q.log(b.id)
    store = RunStore(tmp_path)
    for job in (ja, jb):
        run = store.load(job.run_id)
        assert run.status["status"] == "completed" and run.status["pid"] == ja.pid
        assert run.metrics["summary"]["steps"] == QUICK["train"]["max_steps"] == 3
    record = until(lambda: (w := read_worker(tmp_path, ja.worker)) and w["state"] == "idle" and w, what="idle")
    assert record["jobs_done"] == 2 and record["job"] is None


@pytest.mark.slow
def test_a_stopped_job_on_a_warm_worker_and_the_next_one(tmp_path, warm_queues):
    make, pids = warm_queues
    q = make(tmp_path)
    long, quick = q.submit(LONG), q.submit(QUICK)
    q.pump()
    run_id = q.get(long.id).run_id
    until(lambda: (_run_status(tmp_path, run_id).get("step") or 0) > 0, what="the run to take steps")
    assert JobQueue(tmp_path, max_jobs=1).stop(long.id).stop_requested  # from "another session"
    stopped, after = _wait(q, long.id, pids), _wait(q, quick.id, pids)
    assert stopped.state == "stopped" and stopped.error is None, q.log(long.id)
    run = RunStore(tmp_path).load(run_id)
    assert run.status["status"] == "stopped"
    run.load_model("final")
    assert after.state == "finished" and after.pid == stopped.pid, q.log(quick.id)


@pytest.mark.slow
def test_a_killed_warm_worker_fails_its_job_and_the_next_job_gets_a_new_worker(tmp_path, warm_queues):
    make, pids = warm_queues
    q = make(tmp_path)
    job, nxt = q.submit(LONG), q.submit(QUICK)
    q.pump()
    running = q.get(job.id)
    pids.add(running.pid)
    until(lambda: (_run_status(tmp_path, running.run_id).get("epoch") or 0) >= 1, what="an epoch")
    os.kill(running.pid, signal.SIGKILL)
    dead = _wait(q, job.id, pids)
    assert dead.state == "failed"
    assert f"pid {running.pid}" in dead.error and "completed epoch" in dead.error
    run = RunStore(tmp_path).load(running.run_id)
    assert run.status["status"] == "interrupted"
    assert run.epoch_checkpoints()[0] == (1, "epoch_001")
    run.load_model("epoch_001")
    done = _wait(q, nxt.id, pids)
    assert done.state == "finished" and done.pid != running.pid, q.log(nxt.id)


@pytest.mark.slow
def test_a_warm_worker_is_recycled_after_its_jobs(tmp_path, warm_queues):
    make, pids = warm_queues
    q = make(tmp_path, recycle_after=1)
    a, b = q.submit(QUICK), q.submit(QUICK)
    ja, jb = _wait(q, a.id, pids), _wait(q, b.id, pids)
    assert (ja.state, jb.state) == ("finished", "finished"), (ja.error, jb.error)
    assert ja.pid != jb.pid
    until(lambda: not pid_alive(ja.pid), what="the recycled worker to exit")
    assert read_worker(tmp_path, ja.worker) is None


@pytest.mark.slow
def test_a_failed_job_recycles_its_warm_worker(tmp_path, warm_queues):
    make, pids = warm_queues
    q = make(tmp_path)
    broken = {**QUICK, "kind": "distill", "teachers": [{"source": "run:no-such-run"}],
              "distill": {"methods": [{"name": "kd"}]}}
    bad, good = q.submit(broken), q.submit(QUICK)
    failed, done = _wait(q, bad.id, pids), _wait(q, good.id, pids)
    assert failed.state == "failed" and "teachers[0]" in failed.error, q.log(bad.id)
    assert done.state == "finished" and done.pid != failed.pid, q.log(good.id)
    until(lambda: not pid_alive(failed.pid), what="the failed job's worker to exit")


DRIVER = """
import json, os, sys
import workbench.cli as cli
import workbench.train as train

real, out = train.run, sys.argv[1]

def run(*args, subscribers=(), **kwargs):
    def first_step(event):
        if isinstance(event, train.StepEnded):
            with open(out, "w") as fh:
                json.dump(sorted(sys.modules), fh)
            os._exit(0)
    return real(*args, subscribers=[*subscribers, first_step], **kwargs)

train.run = run
sys.argv = ["workbench", *sys.argv[2:]]
cli.main()
"""


@pytest.mark.slow
def test_a_cli_training_run_imports_no_app_or_science_stack(tmp_path):
    """`workbench train distill` on the demo's KD run, up to its first step: none of the app's and
    analyses' heavy libraries is imported (they cost start-up time and a training run needs none)."""
    driver, seen = tmp_path / "driver.py", tmp_path / "modules.json"
    driver.write_text(DRIVER)
    cmd = [sys.executable, str(driver), str(seen), "train", "distill", "-c", "configs/mnist_kd.yaml",
           "--set", "train.max_steps=1", "--runs", str(tmp_path / "runs"), "-q"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and seen.exists(), res.stderr[-3000:]
    modules = set(json.loads(seen.read_text()))
    assert "workbench.train.engine" in modules and "torch" in modules  # it did train
    heavy = {"plotly", "pandas", "streamlit", "scipy", "sklearn", "matplotlib", "ipywidgets"}
    assert not {m.split(".")[0] for m in modules} & heavy
