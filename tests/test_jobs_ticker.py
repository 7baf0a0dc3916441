"""The scheduler on a timer: a :class:`Ticker` pumps the queue with no other caller, survives a pass
that raises, and moves the queue on after a worker is killed (a real worker process, SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from job_configs import LONG, QUICK, until

import workbench.jobs.queue as jq
from workbench.jobs import JobError, JobQueue, Ticker, start_ticker
from workbench.runs import RunStore


class _Counting:
    """A queue stand-in whose second pass raises."""

    def __init__(self):
        self.calls = 0
        self.threads: set[str] = set()

    def pump(self):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls == 2:
            raise RuntimeError("disk full\nTraceback lines that must not show")
        return []


def test_a_pass_that_raises_is_recorded_and_the_ticker_goes_on():
    fake = _Counting()
    with Ticker(fake, every=0.01) as ticker:
        assert ticker.alive
        until(lambda: fake.calls >= 4, what="four passes")
        assert ticker.alive  # the error of pass 2 did not end the thread
    assert not ticker.alive
    assert ticker.last_error == "RuntimeError: disk full"
    assert ticker.errors == 1 and ticker.passes >= 4
    assert fake.threads == {"job-ticker"}
    calls = fake.calls
    time.sleep(0.05)
    assert fake.calls == calls  # stopped: no more passes
    assert ticker.start() is ticker and ticker.alive  # it can start again
    assert ticker.stop() is True


def test_bad_arguments_are_one_line():
    with pytest.raises(JobError, match="every: expected a number of seconds > 0, got 0"):
        Ticker(_Counting(), every=0)
    with pytest.raises(JobError, match="queue: expected a job queue with pump"):
        Ticker(object())


def test_the_ticker_starts_queued_jobs_and_replaces_a_dead_worker(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pids = iter([dead.pid, os.getpid()])  # the first worker is dead at once, the second lives
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: next(pids))
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    q = JobQueue(tmp_path, max_jobs=1, warm=False)
    first, second = q.submit(QUICK), q.submit(QUICK)
    ticker = start_ticker(q, every=0.05)
    try:
        until(lambda: q.get(second.id).state == "running", what="the second job to start")
    finally:
        assert ticker.stop()
    failed = q.get(first.id)
    assert failed.state == "failed" and f"pid {dead.pid}" in failed.error
    assert ticker.last_error is None


def _run_status(root, run_id):
    try:
        return json.loads((root / run_id / "status.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_a_killed_worker_s_job_fails_and_the_next_starts_with_only_the_ticker(tmp_path):
    q = JobQueue(tmp_path, max_jobs=1, warm=False)
    long_job, quick_job = q.submit(LONG, label="long"), q.submit(QUICK, label="quick")
    with Ticker(q, every=0.5) as ticker:
        running = until(lambda: (j := q.get(long_job.id)).pid and j, what="the first worker")
        until(lambda: (_run_status(tmp_path, running.run_id).get("epoch") or 0) >= 1, timeout=120,
               what="an epoch")
        os.kill(running.pid, signal.SIGKILL)
        # no pump here: q.get only reads the files
        until(lambda: q.get(long_job.id).state == "failed", timeout=30, what="the killed job to fail")
        done = until(lambda: (j := q.get(quick_job.id)).done and j, timeout=120, what="the next job")
    assert ticker.last_error is None
    dead = q.get(long_job.id)
    assert f"pid {running.pid}" in dead.error and "completed epoch" in dead.error
    assert RunStore(tmp_path).load(running.run_id).status["status"] == "interrupted"
    assert done.state == "finished", q.log(quick_job.id)
    assert RunStore(tmp_path).load(done.run_id).status["status"] == "completed"
