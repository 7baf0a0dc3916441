"""workbench.background: the shared LRU of computed values and the registry of background jobs."""

from __future__ import annotations

import threading
import time

import pytest

from workbench.background import LRU, BackgroundJobs


# ---- LRU ------------------------------------------------------------------------------------------
def test_lru_computes_once_and_evicts_the_least_recently_used():
    calls = []
    cache = LRU(2)
    for key in ("a", "a", "b", "a", "c", "b", "a"):
        cache.get_or_compute(key, lambda k=key: calls.append(k) or k.upper())
    # a, b computed; "a" touched again; "c" evicts "b" (least recent); "b" again evicts "a"; "a" again
    assert calls == ["a", "b", "c", "b", "a"]
    assert len(cache) == 2 and "a" in cache and "b" in cache and "c" not in cache


def test_lru_a_failing_compute_caches_nothing():
    cache = LRU(4)

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        cache.get_or_compute("x", boom)
    assert "x" not in cache
    assert cache.get_or_compute("x", lambda: 1) == 1
    cache.clear()
    assert len(cache) == 0


def test_lru_concurrent_callers_of_one_key_compute_it_once():
    cache = LRU(4)
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(1)
        gate.wait(5)
        return 42

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [42, 42, 42, 42] and calls == [1]


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "2"])
def test_lru_rejects_a_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        LRU(size)


# ---- background jobs ------------------------------------------------------------------------------
def test_job_publishes_progress_and_result_and_is_shared_by_key():
    jobs = BackgroundJobs()
    gate = threading.Event()

    def work(job):
        job.progress(1, 4, "row 1")
        job.publish(rows=[1])
        gate.wait(5)
        job.progress(4, 4, "done")
        return "result"

    job = jobs.start(("landscape", "run-1"), work)
    deadline = time.monotonic() + 5
    while job.snapshot()["done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.running and job.snapshot() == {"rows": [1], "done": 1, "total": 4, "message": "row 1"}
    assert jobs.start(("landscape", "run-1"), work) is job  # the same key: the same job, nothing new
    assert jobs.get(("landscape", "run-1")) is job and jobs.get(("other",)) is None
    gate.set()
    assert jobs.join(5)
    assert not job.running and job.result == "result" and job.error is None and not job.cancelled
    assert job.snapshot()["done"] == 4 and job.elapsed() >= 0
    assert job.thread is not None and job.thread.name == "workbench-landscape"


def test_job_error_is_one_line_and_restart_starts_a_new_job():
    jobs = BackgroundJobs()

    def fail(job):
        raise ValueError("span: expected > 0\nTraceback ...")

    job = jobs.start(("k",), fail)
    assert jobs.join(5)
    assert job.error == "span: expected > 0" and job.result is None
    assert jobs.start(("k",), lambda job: 1) is job  # a failed job stays unless restarted
    again = jobs.start(("k",), lambda job: 1, restart=True)
    assert again is not job and jobs.join(5) and again.result == 1
    assert jobs.start(("k",), lambda job: 2, restart=True) is again  # a finished job is not redone


def test_job_cancel_stops_it_and_keeps_the_partial_values():
    jobs = BackgroundJobs()

    def work(job):
        for i in range(1000):
            job.cancel.raise_if_cancelled("rows")
            job.publish(rows=i)
            time.sleep(0.01)
        return "never"

    job = jobs.start(("slow",), work)
    time.sleep(0.1)
    job.cancel.cancel()
    assert jobs.join(5)
    assert job.cancelled and job.result is None and job.error is None
    assert job.snapshot()["rows"] >= 1


def test_jobs_keep_only_the_most_recent_finished_ones():
    jobs = BackgroundJobs(keep=2)
    for i in range(5):
        jobs.start(("k", i), lambda job, i=i: i)
        assert jobs.join(5)
    # each start drops the oldest finished jobs beyond `keep` (the new one not counted)
    assert [jobs.get(("k", i)) is not None for i in range(5)] == [False, False, True, True, True]
    assert len(jobs) == 3
