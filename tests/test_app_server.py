"""The app's server schedules by itself: with no browser open, a queued job starts, a killed worker's
job is failed within seconds (its run keeps its completed epochs) and the next job starts and finishes."""

from __future__ import annotations

import os
import signal

import pytest
from browser import served_app
from job_configs import LONG, QUICK, until

pytestmark = pytest.mark.slow


def test_a_killed_worker_is_found_and_the_next_job_runs_with_no_browser(tmp_path):
    pytest.importorskip("streamlit")
    from workbench.jobs import JobQueue
    from workbench.runs import RunStore

    queue = JobQueue(tmp_path / "runs", max_jobs=1)
    long_job = queue.submit(LONG, workspace="alice")  # queued only: nobody pumps here
    next_job = queue.submit(QUICK, workspace="bob")
    with served_app(tmp_path) as (_, root):
        # no page is ever requested: the server's own timer starts the job, then its run trains epochs
        running = until(lambda: (j := queue.get(long_job.id)).state == "running" and j.pid and j, 180,
                        "the server to start the first job")
        store = RunStore(root)
        until(lambda: running.run_id in store.ids() and int(store.load(running.run_id).status.get("epoch") or 0) >= 1,
              180, "the first job's first epoch")
        os.kill(running.pid, signal.SIGKILL)
        failed = until(lambda: (j := JobQueue(root, max_jobs=1).get(long_job.id)).done and j, 30,
                       "the killed worker's job to be failed")
        assert failed.state == "failed" and "ended without reporting" in failed.error, failed.error
        assert "keeps its" in failed.error and store.load(running.run_id).status["status"] == "interrupted"
        done = until(lambda: (j := queue.get(next_job.id)).done and j, 180, "the next job to finish")
        assert done.state == "finished", queue.log(next_job.id)
