"""The run store under damage: ids resolve safely, one bad file never hides or breaks the other
runs, removal is atomic and final, leftovers are collected, dead processes read as interrupted,
and checkpoints that do not fit are one-line errors."""

from __future__ import annotations

import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import torch

from workbench.config import validate_config
from workbench.models import create_model
from workbench.procs import process_start
from workbench.runs import Run, RunDeletedError, RunStore, RunStoreError, RunWriter, process_gone

SPEC = {"student": {"name": "mlp", "kwargs": {}, "num_classes": 10, "in_channels": 1, "image_size": 8}}


def _cfg(name: str = "t"):
    return validate_config(
        {"kind": "teacher", "name": name, "data": {"dataset": "digits"}, "model": {"name": "mlp"}}
    )


def _healthy(store: RunStore, run_id: str, status: str = "completed") -> Run:
    """A complete small run: config, status, model spec, metrics, a final checkpoint."""
    w = store.create(_cfg(run_id), run_id=run_id)
    w.write_model_spec(SPEC)
    model = w.run.build_model()
    w.save_checkpoint("final", {f"student.{k}": v for k, v in model.state_dict().items()})
    w.write_metrics({"epochs": [{"epoch": 1, "test_acc": 0.5}], "summary": {"test_acc": 0.5, "epochs_done": 1}})
    w.update_status(status=status)
    return w.run


# ---- resolve -------------------------------------------------------------------------------------
def test_resolve_exact_prefix_and_errors(tmp_path):
    store = RunStore(tmp_path / "store")
    for rid in ("abc", "abc-2", "abd-1", "xyz"):
        store.create(_cfg(), run_id=rid)
    assert store.resolve("abc") == "abc"  # exact wins over being a prefix of abc-2
    assert store.resolve("abc-") == "abc-2"
    assert store.resolve("x") == "xyz"
    assert store.load("abd").id == "abd-1"
    with pytest.raises(RunStoreError, match=r"ambiguous.*abc, abc-2, abd-1"):
        store.resolve("ab")
    with pytest.raises(RunStoreError, match="not found"):
        store.resolve("yz")  # a substring that is not a prefix
    for empty in ("", "   "):
        with pytest.raises(RunStoreError, match="empty"):
            store.resolve(empty)
    with pytest.raises(RunStoreError, match="expected text"):
        store.resolve(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["../outside-1", "..", ".", "/etc", "a/b", "abc\x00", "abc\n", ".staging-x", "sub\\x", "~"]
)
def test_resolve_refuses_paths(tmp_path, bad):
    store = RunStore(tmp_path / "store")
    store.create(_cfg(), run_id="abc")
    RunStore(tmp_path).create(_cfg(), run_id="outside-1")  # a run one level above the store root
    with pytest.raises(RunStoreError, match="not a plain run name") as info:
        store.load(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(RunStoreError):
        store.remove(bad)
    assert (tmp_path / "outside-1").is_dir() and (tmp_path / "store" / "abc").is_dir()


def test_run_teacher_source_stays_in_the_store(tmp_path):
    from workbench.config import TeacherSpec
    from workbench.runs.teachers import TeacherError, load_teacher

    _healthy(RunStore(tmp_path), "outside-1")
    (tmp_path / "store").mkdir()
    with pytest.raises(TeacherError, match="not a plain run name"):
        load_teacher(TeacherSpec(source="run:../outside-1"), 10, (1, 8, 8), runs_root=str(tmp_path / "store"))


def test_remove_empty_id_deletes_nothing(tmp_path):
    store = RunStore(tmp_path)
    _healthy(store, "only")
    with pytest.raises(RunStoreError, match="empty"):
        store.remove("")
    assert store.ids() == ["only"]


# ---- damaged runs --------------------------------------------------------------------------------
def _random_bytes(n: int = 200) -> bytes:
    return bytes(random.Random(0).randrange(128, 256) for _ in range(n))  # never valid UTF-8 start


DAMAGE = [
    ("status.json", _random_bytes(), "status.json: not UTF-8 text"),
    ("status.json", b"[1, 2, 3]", "status.json: expected a JSON object, got a list"),
    ("status.json", b'{"status": "compl', "status.json: not valid JSON"),
    ("status.json", b'{"status": 3}', "status.json: no 'status' text field"),
    ("status.json", b'{"status": "zombie"}', "status.json: unknown status"),
    ("status.json", b"", "status.json: not valid JSON"),
    ("metrics.json", b'{"epochs": {"1": 0.5}, "summary": {}}', "metrics.json: 'epochs' is not a list"),
    ("metrics.json", b'{"epochs": [1, 2], "summary": {}}', "metrics.json: 'epochs' is not a list"),
    ("metrics.json", b'{"epochs": [], "summary": [0.5]}', "metrics.json: 'summary' is a list"),
    ("metrics.json", b"null", "metrics.json: expected a JSON object, got null"),
    ("metrics.json", "{\"epochs\": []}".encode("utf-16"), "metrics.json: not UTF-8 text"),
    ("config.yaml", b"\x00\x01\xff\xfe binary", "config.yaml: not UTF-8 text"),
    ("config.yaml", b"kind: [teacher,\n", "config.yaml: not valid YAML"),
    ("config.yaml", b"- 1\n- 2\n", "config.yaml: expected a mapping"),
    ("config.yaml", b"train:\n  epochs: -3\n", "config.yaml: invalid"),
    ("model.json", b'{"student": 5}', "model.json: 'student' is not a network description"),
    ("model.json", b'{"student": {"name": "mlp"', "model.json: not valid JSON"),
]


@pytest.mark.parametrize(("name", "data", "reason"), DAMAGE, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)])
def test_one_damaged_file_marks_only_its_run(tmp_path, name, data, reason):
    store = RunStore(tmp_path)
    _healthy(store, "a-good")
    bad = _healthy(store, "b-bad")
    _healthy(store, "c-good")
    (bad.path / name).write_bytes(data)

    runs = store.list()
    assert [r.id for r in runs] == ["a-good", "b-bad", "c-good"]  # nothing vanishes
    rows = {r.id: r.summary() for r in runs}
    assert rows["a-good"]["status"] == rows["c-good"]["status"] == "completed"
    assert rows["a-good"]["damage"] is None and rows["a-good"]["test_acc"] == 0.5
    assert rows["b-bad"]["status"] == "damaged"
    assert rows["b-bad"]["damage"].startswith(reason), rows["b-bad"]["damage"]
    assert "\n" not in rows["b-bad"]["damage"]
    assert store.load("b-bad").damage == rows["b-bad"]["damage"]
    assert store.load("b-bad").status["status"] == "damaged"
    assert [r.id for r in store.list(status="damaged")] == ["b-bad"]
    assert [r.id for r in store.list(status="completed")] == ["a-good", "c-good"]

    # the loader that needs the file says which run and which file, in one line
    loader = {
        "config.yaml": lambda r: r.config,
        "metrics.json": lambda r: r.metrics,
        "model.json": lambda r: r.load_model("final"),
    }.get(name)
    if loader is not None:
        with pytest.raises(RunStoreError, match=rf"^run b-bad: {name}"):
            loader(store.load("b-bad"))

    assert store.remove("b-bad") == "b-bad"
    assert store.ids() == ["a-good", "c-good"]
    assert not any(p.name.startswith(".trash") for p in tmp_path.iterdir())


def test_file_where_a_directory_should_be(tmp_path):
    store = RunStore(tmp_path)
    _healthy(store, "a-good")
    bad = _healthy(store, "b-bad")
    ckpts = bad.path / "checkpoints"
    for p in ckpts.iterdir():
        p.unlink()
    ckpts.rmdir()
    ckpts.write_bytes(b"oops")
    dir_status = _healthy(store, "c-bad")
    (dir_status.path / "status.json").unlink()
    (dir_status.path / "status.json").mkdir()
    (tmp_path / "d-file").write_text("a file where a run directory might be")  # not a run
    (tmp_path / "sweeps").mkdir()  # another folder of the workspace, not a run
    (tmp_path / "sweeps" / "s.csv").write_text("x\n")

    rows = {r.id: r.summary() for r in store.list()}
    assert set(rows) == {"a-good", "b-bad", "c-bad"}
    assert rows["b-bad"]["damage"] == "checkpoints: a file where a directory should be"
    assert rows["c-bad"]["damage"] == "status.json: a directory where a file should be"
    assert store.load("b-bad").checkpoints() == []
    with pytest.raises(RunStoreError, match=r"run b-bad: no checkpoint 'final' \(have: none\)"):
        store.load("b-bad").load_model("final")
    writer = RunWriter(store.load("b-bad"))
    with pytest.raises(RunStoreError, match="run b-bad: checkpoints is a file, not a directory"):
        writer.save_checkpoint("x", {"student.w": torch.zeros(1)})
    for rid in ("b-bad", "c-bad"):
        store.remove(rid)
    assert store.ids() == ["a-good"]


def test_unreadable_run_directory(tmp_path, monkeypatch):
    """A run whose files cannot be read (permission denied, simulated: tests may run as root, where
    file modes do not block reading) is listed as damaged; the others list normally."""
    store = RunStore(tmp_path)
    _healthy(store, "a-good")
    bad = _healthy(store, "b-locked")
    real_read, real_stat = pathlib.Path.read_bytes, pathlib.Path.stat

    def locked(path):
        return bad.path in path.parents

    def read_bytes(self):
        if locked(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    def stat(self, *args, **kwargs):
        if locked(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    monkeypatch.setattr(pathlib.Path, "stat", stat)
    rows = {r.id: r.summary() for r in store.list()}
    assert rows["a-good"]["status"] == "completed"
    assert rows["b-locked"]["status"] == "damaged"
    assert rows["b-locked"]["damage"] == "status.json: unreadable (Permission denied)"
    monkeypatch.undo()
    assert store.load("b-locked").damage is None  # readable again: healthy again


def test_unreadable_store_root_is_one_line(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    _healthy(store, "a")

    def scandir(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(RunStoreError, match=r"run store .*: cannot be read \(Permission denied\)"):
        store.list()


# ---- removal -------------------------------------------------------------------------------------
def test_remove_refuses_a_live_run_and_a_late_write_never_recreates_it(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(_cfg())  # status running, pid = this (alive) process
    w.write_model_spec(SPEC)
    with pytest.raises(RunStoreError, match=rf"run {w.id}: still running \(pid {os.getpid()} on .*stop it first"):
        store.remove(w.id)
    (w.path / "metrics.json").write_text("[]")  # damaged, but its process is alive: still refused
    assert store.load(w.id).status["status"] == "damaged"
    with pytest.raises(RunStoreError, match="still running"):
        store.remove(w.id)
    assert store.ids() == [w.id]
    assert store.remove(w.id[:12], force=True) == w.id
    assert store.ids() == [] and not w.path.exists()
    state = {"student.w": torch.zeros(2)}
    for write in (
        lambda: w.update_status(epoch=1),
        lambda: w.write_metrics({"epochs": [], "summary": {}}),
        lambda: w.write_model_spec(SPEC),
        lambda: w.save_checkpoint("epoch_001", state),
    ):
        with pytest.raises(RunDeletedError, match=rf"run {w.id}: its directory is gone"):
            write()
        assert not w.path.exists()
    assert list(tmp_path.iterdir()) == []  # no trash, no temp files, no recreated run


def test_remove_of_a_dead_running_run_is_allowed(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(_cfg())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    w.update_status(pid=proc.pid)
    assert store.load(w.id).status["status"] == "interrupted"
    assert store.remove(w.id) == w.id


def test_remove_is_a_rename_first(tmp_path, monkeypatch):
    """The run leaves the listing by one rename; a failed delete leaves only a .trash-* folder,
    which gc collects."""
    import shutil

    store = RunStore(tmp_path)
    _healthy(store, "a")
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)
    store.remove("a")
    monkeypatch.undo()
    assert store.ids() == []
    (trash,) = [p for p in tmp_path.iterdir()]
    assert trash.name.startswith(".trash-a-") and (trash / "status.json").exists()
    assert store.gc() == [trash] and not trash.exists()


# ---- gc ------------------------------------------------------------------------------------------
def _age(path: pathlib.Path, seconds: float) -> None:
    when = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (when, when))


def test_gc_removes_stale_leftovers_and_spares_fresh_ones(tmp_path):
    store = RunStore(tmp_path)
    run = _healthy(store, "live", status="running")
    keep = sorted(p for p in tmp_path.rglob("*"))

    stale_staging = tmp_path / ".staging-x-123456"
    stale_staging.mkdir()
    (stale_staging / "config.yaml").write_text("kind: teacher\n")
    fresh_staging = tmp_path / ".staging-y-abcdef"
    fresh_staging.mkdir()
    trash = tmp_path / ".trash-z-000000"
    (trash / "checkpoints").mkdir(parents=True)
    stale = [
        tmp_path / ".x.json.aaaa.tmp",
        run.path / ".status.json.bbbb.tmp",
        run.path / "checkpoints" / ".final.safetensors.cccc.tmp",
        run.path / "checkpoints" / "download.part",
    ]
    fresh = [run.path / ".metrics.json.dddd.tmp", run.path / "checkpoints" / ".best.safetensors.eeee.tmp"]
    for p in stale + fresh:
        p.write_bytes(b"half")
    for p in [*stale, stale_staging]:
        _age(p, 3600)
    _age(fresh_staging, 5)
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "old.tmp").write_bytes(b"not the store's")  # not a run: left alone
    _age(tmp_path / "sweeps" / "old.tmp", 3600)

    expected = sorted([*stale, stale_staging, trash])
    assert sorted(store.gc(dry_run=True)) == expected
    assert all(p.exists() for p in expected)  # a dry run removes nothing
    assert sorted(store.gc()) == expected
    assert not any(p.exists() for p in expected)
    assert all(p.exists() for p in [*fresh, fresh_staging, *keep, tmp_path / "sweeps" / "old.tmp"])
    assert store.load("live").load_model("final") is not None
    assert store.gc() == []  # nothing stale is left
    assert sorted(store.gc(min_age_s=0)) == sorted([*fresh, fresh_staging])


# ---- liveness ------------------------------------------------------------------------------------
def _stamp(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def test_running_status_liveness(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(_cfg())
    w.write_metrics({"epochs": [{"epoch": 1, "test_acc": 0.7}], "summary": {"test_acc": 0.7, "epochs_done": 1}})
    assert store.load(w.id).status["status"] == "running"  # this process: alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    w.update_status(pid=proc.pid)
    run = store.load(w.id)
    assert run.status["status"] == "interrupted"
    assert run.summary()["test_acc"] == 0.7 and run.summary()["epochs"] == 1  # completed epochs stay
    assert [r.id for r in store.list(status="interrupted")] == [w.id]

    w.update_status(host="another-host")  # a dead pid on another machine cannot be checked here
    assert store.load(w.id).status["status"] == "running"

    status = json.loads((w.path / "status.json").read_text())
    for key in ("pid", "pid_start", "host"):
        status.pop(key, None)  # a status of an older store, without pid
    status["updated"] = _stamp(3 * 3600)
    (w.path / "status.json").write_text(json.dumps(status))
    assert store.load(w.id).status["status"] == "interrupted"
    status["updated"] = _stamp(10)
    (w.path / "status.json").write_text(json.dumps(status))
    assert store.load(w.id).status["status"] == "running"


def test_unreaped_killed_process_reads_as_interrupted(tmp_path):
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc here")
    store = RunStore(tmp_path)
    w = store.create(_cfg())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        w.update_status(pid=proc.pid, pid_start=process_start(proc.pid))
        assert store.load(w.id).status["status"] == "running"
        proc.kill()
        for _ in range(100):  # not reaped: a zombie until wait()
            if open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        assert store.load(w.id).status["status"] == "interrupted"
    finally:
        proc.kill()
        proc.wait()


def test_reused_pid_reads_as_interrupted():
    start = process_start(os.getpid())
    if start is None:
        pytest.skip("no /proc here")
    info = {"status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    assert not process_gone({**info, "pid_start": start})
    assert process_gone({**info, "pid_start": start - 600})  # the pid belonged to an older process


# ---- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_that_does_not_fit_is_one_line(tmp_path):
    store = RunStore(tmp_path)
    run = _healthy(store, "r1")
    other = create_model("mlp", num_classes=10, in_channels=1, image_size=8, hidden=[7])
    RunWriter(run).save_checkpoint("best", {f"student.{k}": v for k, v in other.state_dict().items()})
    with pytest.raises(RunStoreError) as info:
        run.load_model("best")
    msg = str(info.value)
    assert msg.startswith("run r1: checkpoint 'best' does not fit the run's student network")
    assert "another shape" in msg and "[7," in msg and "\n" not in msg
    with pytest.raises(RunStoreError, match=r"run r1: no checkpoint 'epoch_009' \(have: best, final\)"):
        run.load_model("epoch_009")
    with pytest.raises(RunStoreError, match=r"no checkpoint '\.\./config'"):
        run.load_state("../config")
    (run.path / "checkpoints" / "final.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(RunStoreError, match=r"^run r1: checkpoint 'final': not a valid safetensors"):
        run.load_model("final")


# ---- processes killed or runs removed while training ---------------------------------------------
TRAIN = """
import sys
from workbench.config import validate_config
from workbench.runs import RunStore
from workbench.train import EpochEnded, Trainer
cfg = validate_config({"kind": "teacher", "data": {"dataset": "digits", "batch_size": 64},
                       "model": {"name": "mlp"}, "train": {"epochs": 40, "snapshot_every_epoch": True}})
def tell(event):
    if isinstance(event, EpochEnded):
        print("epoch", event.epoch, event.run_id, flush=True)
Trainer(cfg, store=RunStore(sys.argv[1]), subscribers=[tell]).run()
"""


def _start(tmp_path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert line.startswith("epoch 1 "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split()[2]


@pytest.mark.slow
def test_killed_training_reads_interrupted_with_its_epochs(tmp_path):
    proc, run_id = _start(tmp_path)  # the store writer has written epoch 1 before we hear of it
    proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    store = RunStore(tmp_path)
    (run,) = store.list()
    assert run.id == run_id
    assert run.damage is None
    assert run.status["status"] == "interrupted"
    epochs = run.metrics["epochs"]
    assert len(epochs) >= 1 and [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
    assert run.metrics["summary"]["epochs_done"] == len(epochs)
    assert "epoch_001" in run.checkpoints() and "final" not in run.checkpoints()
    assert all(not n.startswith(".") and not n.endswith(".tmp") for n in run.checkpoints())
    for name in run.checkpoints():
        model = run.load_model(name)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    visible = {p.name for p in run.path.iterdir() if not p.name.startswith(".")}
    assert visible <= {"config.yaml", "status.json", "model.json", "metrics.json", "steps.jsonl", "checkpoints"}
    store.gc(min_age_s=0)
    assert [r.id for r in store.list(status="interrupted")] == [run_id]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_removed_while_training_is_never_recreated(tmp_path):
    proc, run_id = _start(tmp_path)
    store = RunStore(tmp_path)
    try:
        with pytest.raises(RunStoreError, match="still running"):
            store.remove(run_id)
        assert store.remove(run_id, force=True) == run_id
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert f"RunDeletedError: run {run_id}: its directory is gone" in err
    assert store.ids() == [] and not (tmp_path / run_id).exists()
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".trash-")]


def test_empty_root_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunStoreError, match="empty path"):
        RunStore("")
    monkeypatch.setenv("WORKBENCH_RUNS", "")
    assert RunStore().root == pathlib.Path("runs")  # an empty variable means the default, not "."
