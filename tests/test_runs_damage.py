"""Runs that are damaged or cannot be written: the Compare page leaves a damaged run out with one line
and compares the rest; a run whose files cannot be written ends ``failed`` with the file and the
operating system's reason, recorded in status.json or, when that cannot be written, beside the run;
``workbench runs list`` and the job that trained it say so."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from app_fixtures import make_app, no_exception
from rich.console import Console
from typer.testing import CliRunner

from workbench.config import validate_config
from workbench.runs import Run, RunStore, RunWriteError, readable_runs
from workbench.runs.failures import failure_path, read_failure, record_failure
from workbench.runs.files import Damage, check_metrics
from workbench.train import run as train
from workbench.train.events import EpochEnded

#: a scratch MLP on digits: three epochs of three steps
CFG = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 512},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 3, "snapshot_every_epoch": False},
}
ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


# ---- metrics.json: the values views read --------------------------------------------------------
@pytest.mark.parametrize(
    ("epochs", "reason"),
    [
        ([{"epoch": float("inf"), "test_acc": 0.5}], "epoch record 1: 'epoch' is inf, not a whole number >= 0"),
        ([{"epoch": 1}, {"epoch": float("nan")}], "epoch record 2: 'epoch' is nan, not a whole number >= 0"),
        ([{"epoch": "one"}], "epoch record 1: 'epoch' is 'one', not a whole number >= 0"),
        ([{"epoch": True}], "epoch record 1: 'epoch' is a boolean, not a whole number >= 0"),
        ([{"epoch": -1}], "epoch record 1: 'epoch' is -1, not a whole number >= 0"),
        ([{"epoch": 1, "test_acc": 10**400}], "epoch record 1: 'test_acc' is too large a number"),
    ],
)
def test_metrics_whose_values_a_view_cannot_read_are_damage(epochs, reason):
    with pytest.raises(Damage) as caught:
        check_metrics({"epochs": epochs, "summary": {}})
    assert str(caught.value) == f"metrics.json: {reason}"


def test_metrics_the_engine_writes_are_not_damage():
    # whole epochs (also as 2.0), non-finite metric values (a NaN loss), text and lists are kept as they are
    obj = {"epochs": [{"epoch": 1, "loss": None, "test_acc": 0.5}, {"epoch": 2.0, "ece": float("nan")}], "summary": {}}
    assert check_metrics(obj)["epochs"] == obj["epochs"]
    with pytest.raises(Damage, match="summary: 'epochs_done' is too large"):
        check_metrics({"epochs": [], "summary": {"epochs_done": 10**400}})


# ---- the Compare page ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds_store(tmp_path_factory) -> dict[str, object]:
    """Three seeds of one scratch MLP on digits (2 epochs of 3 steps): ``root`` and ``ids``."""
    root = tmp_path_factory.mktemp("damage_store") / "runs"
    store = RunStore(root)
    cfg = {**CFG, "train": {**CFG["train"], "epochs": 2}}
    ids = [train(validate_config({**cfg, "seed": s, "name": f"seed{s}"}), store=store).run_id for s in range(3)]
    return {"root": str(root), "ids": ids}


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # cut mid-write: not valid JSON


DAMAGES = {
    "metrics.json truncated": (lambda d: _truncate(d / "metrics.json"), "metrics.json: not valid JSON"),
    "status.json truncated": (lambda d: _truncate(d / "status.json"), "status.json: not valid JSON"),
    "config.yaml unreadable": (
        lambda d: ((d / "config.yaml").unlink(), (d / "config.yaml").mkdir()),
        "config.yaml: a directory where a file should be",
    ),
    "an epoch of infinity": (
        lambda d: (d / "metrics.json").write_text('{"epochs": [{"epoch": Infinity, "test_acc": 0.5}], "summary": {}}'),
        "metrics.json: epoch record 1: 'epoch' is inf",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_compare_leaves_out_a_damaged_run_and_compares_the_rest(monkeypatch, seeds_store, tmp_path, damage):
    root = tmp_path / "runs"
    shutil.copytree(seeds_store["root"], root)
    victim, *healthy = seeds_store["ids"]
    spoil, reason = DAMAGES[damage]
    spoil(root / victim)
    at = make_app(monkeypatch, str(root), "views/compare.py", runs=",".join(seeds_store["ids"]))
    at.run()
    no_exception(at)
    notes = [c.value for c in at.caption if victim in c.value]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith(f"run {victim}: skipped (damaged: {reason}")
    table = at.dataframe[0].value
    assert list(table["n"]) == [2] and list(table["seeds"][0]) == [1, 2]  # the two healthy seeds, one group
    assert not any(h in n for h in healthy for n in (c.value for c in at.caption) if "skipped" in n)


def test_compare_says_so_when_every_run_is_damaged(monkeypatch, seeds_store, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(seeds_store["root"], root)
    for run_id in seeds_store["ids"]:
        _truncate(root / run_id / "metrics.json")
    at = make_app(monkeypatch, str(root), "views/compare.py", runs=",".join(seeds_store["ids"]))
    at.run()
    no_exception(at)
    assert sum("skipped (damaged: metrics.json" in c.value for c in at.caption) == 3
    assert [i.value for i in at.info] == ["None of these runs can be read; pick others."]
    assert not at.dataframe


def test_readable_runs_reads_each_run_on_its_own(seeds_store, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(seeds_store["root"], root)
    a, b, c = seeds_store["ids"]
    (root / b / "status.json").write_text('{"status": "running"')
    store = RunStore(root)
    readable, left_out = readable_runs([store.load(i) for i in (a, b, c)])
    assert [r.id for r in readable] == [a, c]
    assert left_out == [(b, "damaged: status.json: not valid JSON (line 1, column 21)")]


# ---- a run that cannot write its files ----------------------------------------------------------
@pytest.fixture
def refusing_disk(monkeypatch):
    """A full disk in the folders of the returned set, from when a folder is added to it: the
    operating system refuses the atomic writes' temp files there with ``ENOSPC``, as a read-only
    folder refuses them with ``EACCES``."""
    real = tempfile.mkstemp
    refused: set[Path] = set()

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own keyword
        if dir is not None and Path(dir).resolve() in refused:
            raise OSError(errno.ENOSPC, ENOSPC, str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return refused


def _refuse_after_epoch_1(refused: set[Path], root: Path, folder: str = ""):
    """A subscriber that makes the run's folder (or its ``folder`` inside) refuse writes once epoch 1
    has been written."""

    def subscriber(event):
        if isinstance(event, EpochEnded) and event.epoch == 1:
            refused.add((root / event.run_id / folder).resolve())

    return subscriber


def _runs_list(root: Path, monkeypatch) -> str:
    from workbench import cli

    monkeypatch.setattr(cli, "out", Console(width=1000))  # one line per run, however long its status
    res = CliRunner().invoke(cli.app, ["runs", "list", "--runs", str(root)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_run_that_cannot_write_its_status_ends_failed_and_says_why(tmp_path, refusing_disk, monkeypatch):
    root = tmp_path / "runs"
    with pytest.raises(RunWriteError) as caught:
        train(validate_config(CFG), store=RunStore(root), subscribers=[_refuse_after_epoch_1(refusing_disk, root)])
    (run,) = RunStore(root).list()
    reason = f"cannot write {run.id}/metrics.json: {ENOSPC}"  # the first write of epoch 2 in the run's folder
    assert str(caught.value) == reason
    assert json.loads((run.path / "status.json").read_text())["status"] == "running"  # it could not say more
    status = run.status
    assert (status["status"], status["error"]) == ("failed", reason)  # read from the record beside the run
    assert json.loads(failure_path(root, run.id).read_text())["error"] == reason
    assert run.metrics["summary"]["epochs_done"] == 1  # the epoch it wrote is kept
    assert [r.id for r in RunStore(root).list(status="failed")] == [run.id]
    assert f"failed: {reason}" in _runs_list(root, monkeypatch)

    # the folder writable again: the run resumes from epoch 1 and the old failure no longer applies
    refusing_disk.clear()
    resumed = train(validate_config(CFG), store=RunStore(root), resume=run.id)
    assert resumed.status == "completed" and run.status["status"] == "completed"
    assert not failure_path(root, run.id).exists()


def test_a_failure_status_json_can_still_hold_is_recorded_there(tmp_path, refusing_disk):
    root = tmp_path / "runs"
    spoiler = _refuse_after_epoch_1(refusing_disk, root, "checkpoints")
    with pytest.raises(RunWriteError, match=r"checkpoints/\w+\.safetensors: No space left on device$"):
        train(validate_config(CFG), store=RunStore(root), subscribers=[spoiler])
    (run,) = RunStore(root).list()
    recorded = json.loads((run.path / "status.json").read_text())
    assert recorded["status"] == "failed"
    assert recorded["error"].startswith(f"cannot write {run.id}/checkpoints/")
    assert recorded["failure"]["epoch"] == 2  # it failed writing epoch 2's checkpoint
    assert not failure_path(root, run.id).exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_run_whose_folder_becomes_read_only_ends_failed(tmp_path, monkeypatch):
    root = tmp_path / "runs"

    def read_only_after_epoch_1(event):
        if isinstance(event, EpochEnded) and event.epoch == 1:
            os.chmod(root / event.run_id, 0o555)

    try:
        with pytest.raises(RunWriteError):
            train(validate_config(CFG), store=RunStore(root), subscribers=[read_only_after_epoch_1])
        (run,) = RunStore(root).list()
        reason = f"cannot write {run.id}/metrics.json: Permission denied"
        assert (run.status["status"], run.status["error"]) == ("failed", reason)
        assert f"failed: {reason}" in _runs_list(root, monkeypatch)
    finally:
        for folder in root.iterdir():
            os.chmod(folder, 0o755)


def test_the_job_of_a_run_that_cannot_write_records_why(tmp_path, monkeypatch):
    """The job's worker records the run's one-line failure as the job's error."""
    from workbench.jobs import JobQueue
    from workbench.jobs import queue as jq
    from workbench.jobs.worker import run_job

    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: os.getpid())
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    queue = JobQueue(tmp_path, max_jobs=1, warm=False)
    job = queue.submit(CFG)
    queue.pump()
    data = json.loads((queue.dir / f"{job.id}.json").read_text())
    run_dir, real, full = (tmp_path / data["run_id"]).resolve(), tempfile.mkstemp, []

    def mkstemp(*args, dir=None, prefix="", **kwargs):  # noqa: A002 - tempfile's own keyword
        if full and dir is not None and Path(dir).resolve() == run_dir:
            raise OSError(errno.ENOSPC, ENOSPC, str(dir))
        if prefix.startswith(".resume.safetensors."):  # the end of epoch 1: the disk is full from here on
            full.append(True)
        return real(*args, dir=dir, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert run_job(tmp_path, job.id, data["token"], pump_after=False) == "failed"
    reason = f"cannot write {data['run_id']}/metrics.json: {ENOSPC}"
    done = queue.get(job.id)
    assert done.state == "failed" and reason in (done.error or "")
    assert RunStore(tmp_path).load(data["run_id"]).status["error"] == reason


# ---- the failure record -------------------------------------------------------------------------
def test_a_failure_record_names_its_process_and_goes_with_its_run(tmp_path):
    store = RunStore(tmp_path / "runs")
    writer = store.create(validate_config(CFG), run_id="r1")
    status = writer.status
    assert record_failure(writer.path, status, "cannot write r1/status.json: Permission denied", "2030-01-01")
    assert read_failure(writer.path, status) == {
        "error": "cannot write r1/status.json: Permission denied",
        "finished": "2030-01-01",
    }
    assert Run("r1", writer.path).status["status"] == "failed"
    # a status of another process (a resumed run) is not the one that failed
    assert read_failure(writer.path, {**status, "pid": status["pid"] + 1}) is None
    assert store.gc() == []  # the run is still here: its record stays
    store.remove("r1", force=True)
    assert not failure_path(store.root, "r1").exists()
    assert record_failure(tmp_path / "runs" / "gone", {}, "x", "2030-01-01") is not None
    assert store.gc(min_age_s=0) == [failure_path(store.root, "gone")]
