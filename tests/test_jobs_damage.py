"""Damaged job files read calmly: each kind (truncated, not a mapping, missing fields, wrong types)
is listed as damaged with its file named, skipped by the scheduler and removable, while the healthy
job beside it starts and finishes; no workspace's list ever shows a damaged file's job.

The healthy job trains in this process through the worker's body (:func:`run_job`) on a tiny
digits config of 2 steps; no worker process is started."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import workbench.jobs.queue as jq
from workbench.jobs import Damaged, Job, JobError, JobQueue
from workbench.jobs.cli import jobs_app
from workbench.jobs.state import load_job, scan_job_files
from workbench.jobs.worker import run_job

CFG = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}
# one damaged file of each kind: its id, its text, and the reason the queue must give for it
DAMAGED = {
    "aaaa0001": ('{"id": "aaaa0001", "state": "queued", "config": {"kind": "stu', None),
    "aaaa0002": ("[1, 2, 3]\n", "expected a JSON mapping, got a list"),
    "aaaa0003": (
        json.dumps({"id": "aaaa0003", "state": "queued", "workspace": "alice"}),
        "missing field 'config'",
    ),
    "aaaa0004": (
        json.dumps({"id": "aaaa0004", "state": "queued", "config": {}, "seq": "7", "created": "t",
                    "workspace": "alice"}),
        'field \'seq\': expected an integer, got "7"',
    ),
    "aaaa0005": (
        json.dumps({"id": "aaaa0005", "state": "zombie", "config": {}, "seq": 9, "created": "t",
                    "workspace": "alice"}),
        "field 'state': expected one of queued, running, finished, stopped, failed, got \"zombie\"",
    ),
    "aaaa0006": (
        json.dumps({"id": "aaaa0006", "state": "queued", "config": {}, "seq": 9, "created": "t",
                    "workspace": ["alice"]}),
        'field \'workspace\': expected a non-empty string or null, got ["alice"]',
    ),
    "aaaa0007": (
        json.dumps({"id": "aaaa0007", "state": "queued", "config": {}, "seq": 9, "created": "t",
                    "run_id": "../../etc"}),
        'field \'run_id\': expected a run id or null, got "../../etc"',
    ),
    "aaaa0008": (
        json.dumps({"id": "bbbb0008", "state": "queued", "config": {}, "seq": 9, "created": "t"}),
        "field 'id': 'bbbb0008' does not match the file's name 'aaaa0008'",
    ),
}


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """A queue whose workers are not launched: a started job is trained in this process."""
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: os.getpid())
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    return JobQueue(tmp_path / "runs", max_jobs=1)


def _damage(q: JobQueue) -> None:
    q.dir.mkdir(parents=True, exist_ok=True)
    for job_id, (text, _) in DAMAGED.items():
        (q.dir / f"{job_id}.json").write_text(text)


def _token(q, job_id):
    return json.loads((q.dir / f"{job_id}.json").read_text())["token"]


def test_each_kind_of_damage_is_listed_while_the_healthy_job_starts_and_finishes(queue):
    healthy = queue.submit(CFG, workspace="alice", label="healthy")
    _damage(queue)
    damaged = queue.damaged()
    assert [d.id for d in damaged] == sorted(DAMAGED)
    for d in damaged:
        assert isinstance(d, Damaged) and d.path == queue.dir / f"{d.id}.json"
        assert "\n" not in d.reason
        expected = DAMAGED[d.id][1]
        if expected is None:  # the truncated file
            assert d.reason.startswith("not valid JSON (truncated?): ")
        else:
            assert d.reason == expected
    # listings hold the healthy job alone, in every workspace filter
    assert [j.id for j in queue.list()] == [healthy.id]
    assert [j.id for j in queue.list(workspace="alice")] == [healthy.id]
    assert queue.list(workspace="nobody") == []
    # the scheduler skips the damaged files and starts the healthy job, which trains to the end
    assert [j.id for j in queue.pump()] == [healthy.id]
    assert run_job(queue.root, healthy.id, _token(queue, healthy.id), pump_after=False) == "finished"
    assert queue.pump() == []  # nothing else is startable: the damaged "queued" files never start
    done = queue.get(healthy.id)
    assert (done.state, done.error) == ("finished", None)
    assert [d.id for d in queue.damaged()] == sorted(DAMAGED)  # left as they were


def test_a_damaged_file_is_named_in_errors_and_never_crashes_the_record(queue):
    _damage(queue)
    with pytest.raises(JobError) as err:
        load_job(queue.root, "aaaa0003")
    assert str(err.value) == "job file .jobs/aaaa0003.json: missing field 'config'"
    with pytest.raises(JobError, match=r"job record: field 'seq': expected an integer"):
        Job.from_dict({"id": "aaaa0004", "state": "queued", "config": {}, "seq": "7", "created": "t"})
    # get and stop name the file and say how to remove it; they never say "Job.__init__() missing"
    for call in (queue.get, queue.stop):
        with pytest.raises(JobError) as err:
            call("aaaa0003")
        assert str(err.value) == (
            "job aaaa0003: its file .jobs/aaaa0003.json is damaged: missing field 'config'; "
            "remove it with `workbench jobs remove aaaa0003`"
        )
    # an old job file without the newer optional fields is healthy
    old = {"id": "cccc0001", "state": "finished", "config": {}, "seq": 1, "created": "t"}
    (queue.dir / "cccc0001.json").write_text(json.dumps(old))
    assert queue.get("cccc0001").priority == 0 and queue.get("cccc0001").experiment is None


def test_remove_a_damaged_file_by_exact_id_or_prefix(queue):
    _damage(queue)
    (queue.dir / "aaaa0001.log").write_text("output\n")
    assert queue.log("aaaa0001") == "output\n"  # a damaged job's output stays readable
    assert queue.remove("aaaa0001") == "aaaa0001"
    assert not (queue.dir / "aaaa0001.json").exists() and not (queue.dir / "aaaa0001.log").exists()
    with pytest.raises(JobError, match="ambiguous"):
        queue.remove("aaaa000")
    assert queue.remove("aaaa0002"[:8]) == "aaaa0002"
    (queue.dir / "ffff0009.json").write_text("{")
    assert queue.remove("ffff") == "ffff0009"
    assert [d.id for d in queue.damaged()] == sorted(set(DAMAGED) - {"aaaa0001", "aaaa0002"})


def test_submit_never_reuses_a_damaged_file_s_id(queue, monkeypatch):
    _damage(queue)
    hexes = iter(["aaaa0002" + "0" * 24, "dddd0001" + "0" * 24])
    monkeypatch.setattr(jq.uuid, "uuid4", lambda: type("U", (), {"hex": next(hexes)})())
    job = queue.submit(CFG)
    assert job.id == "dddd0001" and job.seq == 1
    assert (queue.dir / "aaaa0002.json").read_text() == DAMAGED["aaaa0002"][0]


def test_a_workspace_filter_never_shows_another_workspace_or_a_damaged_job(queue):
    a = queue.submit(CFG, workspace="alice")
    b = queue.submit(CFG, workspace="bob")
    _damage(queue)  # aaaa0003..0006 say "alice" inside; their workspace is unknown all the same
    assert [j.id for j in queue.list(workspace="alice")] == [a.id]
    assert [j.id for j in queue.list(workspace="bob")] == [b.id]
    assert queue.list(workspace="carol") == []
    assert healthy_ids(queue) == {a.id, b.id}


def healthy_ids(q: JobQueue) -> set[str]:
    return {d["id"] for d in scan_job_files(q.root)[0]}


def test_cli_lists_damaged_files_and_removes_them(queue):
    job = queue.submit(CFG, workspace="alice")
    _damage(queue)
    runner = CliRunner()
    res = runner.invoke(jobs_app, ["list", "--runs", str(queue.root)])
    assert res.exit_code == 0, res.output
    assert job.id in res.output
    assert (
        "damaged: .jobs/aaaa0003.json: missing field 'config' (remove it with `workbench jobs remove aaaa0003`)"
        in res.output
    )
    assert "damaged: .jobs/aaaa0002.json: expected a JSON mapping, got a list" in res.output
    assert res.output.count("damaged: ") == len(DAMAGED)
    res = runner.invoke(jobs_app, ["list", "--runs", str(queue.root), "--json"])
    listing = json.loads(res.output)
    assert [r["id"] for r in listing["jobs"]] == [job.id]
    assert [d["id"] for d in listing["damaged"]] == sorted(DAMAGED)
    assert listing["damaged"][2] == {
        "id": "aaaa0003", "path": str(queue.dir / "aaaa0003.json"), "reason": "missing field 'config'"
    }
    # a workspace's listing shows neither the damaged files nor their contents
    res = runner.invoke(jobs_app, ["list", "--runs", str(queue.root), "--workspace", "alice"])
    assert job.id in res.output and "damaged" not in res.output and "aaaa" not in res.output
    res = runner.invoke(jobs_app, ["remove", "aaaa0003", "--runs", str(queue.root)])
    assert res.exit_code == 0 and "job aaaa0003: removed" in res.output
    res = runner.invoke(jobs_app, ["remove", job.id, "--runs", str(queue.root)])
    assert res.exit_code == 2 and f"job {job.id}: still queued; stop it first" in res.output
    res = runner.invoke(jobs_app, ["stop", "aaaa0004", "--runs", str(queue.root)])
    assert res.exit_code == 2
    assert "error: job aaaa0004: its file .jobs/aaaa0004.json is damaged" in res.output
