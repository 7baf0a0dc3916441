"""The class overview: one row per workspace (runs, jobs, last activity, best run, the doctor's finding
read from what the newest student recorded), its CLI and the instructor's page."""

# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import typer
from app_fixtures import make_app, no_exception, tiny_store  # noqa: F401
from typer.testing import CliRunner

from workbench.class_overview import (
    NO_WORKSPACE,
    class_overview,
    overview_table,
    recorded_evidence,
    recorded_finding,
)
from workbench.commands.classroom import class_app
from workbench.config import config_to_yaml, validate_config
from workbench.jobs import JobQueue
from workbench.runs import Run, RunStore

TOKEN = "teach-3rd-period"
DAY = "2025-03-01T"
#: the tiny job config of the fixture's jobs (a real one: a job that starts trains a few steps)
JOB_CONFIG = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"name": "mlp"},
    "train": {"epochs": 1, "max_steps": 2, "device": "cpu"},
}


# ---- the class store: hand-set accuracies, times and jobs over tiny real runs --------------------
def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _record(run_dir: Path, *, finished: str | None, test_acc: float, teacher_acc: float | None = None,
            train_acc: float | None = None, status: str = "completed") -> None:
    """Set a run's status, finished time and its recorded accuracies (two epochs of 23 steps)."""
    _edit_json(run_dir / "status.json", id=run_dir.name, status=status, finished=finished, total_steps=46, epochs=2)
    train = test_acc if train_acc is None else train_acc
    epochs = [
        {"epoch": 1, "step": 23, "train_acc": train - 0.1, "test_acc": test_acc - 0.05, "train_loss": 1.2},
        {"epoch": 2, "step": 46, "train_acc": train, "test_acc": test_acc, "train_loss": 0.9},
    ]
    summary = {"epochs_done": 2, "steps": 46, "test_acc": test_acc, "best_test_acc": test_acc}
    if teacher_acc is not None:
        summary["teacher_test_acc"] = teacher_acc
    _edit_json(run_dir / "metrics.json", epochs=epochs, summary=summary)


def _configure(run_dir: Path, **changes) -> None:
    """Rewrite a run's config with ``changes`` (top-level sections replaced or updated)."""
    data = Run(run_dir.name, run_dir).config.model_dump(mode="json")
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    (run_dir / "config.yaml").write_text(config_to_yaml(validate_config(data)))


def _job(root: Path, seq: int, state: str, workspace: str | None, run_id: str | None, **times) -> str:
    job_id = f"{seq:08x}"
    record = {"id": job_id, "state": state, "config": JOB_CONFIG, "seq": seq, "workspace": workspace,
              "label": f"job {seq}", "backend": "local", "run_id": run_id, **times}
    folder = root / ".jobs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job_id}.json").write_text(json.dumps(record))
    return job_id


def _copy_run(root: Path, source: str, new_id: str) -> Path:
    shutil.copytree(root / source, root / new_id)
    return root / new_id


@pytest.fixture(scope="module")
def class_store(tiny_store, tmp_path_factory) -> dict[str, str]:
    """The tiny store's runs in a class:

    * alice: the teacher T (test acc 0.91, finished 08:59) and the KD student K (0.85, its teacher
      recorded at 0.30, finished 09:02:59) from finished jobs; a run D whose metrics.json is cut short
      from a failed job; a queued job created at 09:10 (written without a zone).
    * bob: the scratch student S (0.70, its teacher at 0.95, learning rate 0.6 = 12x SGD's usual 0.05,
      finished 11:00) from a finished job; a copy S2 (0.99) still running on another host.
    * no workspace: L, a student without a teacher (0.50, finished 07:00), trained by no job.
    * a job file cut short (``0000000a``): damaged, in no workspace.
    """
    root = tmp_path_factory.mktemp("class_store") / "runs"
    shutil.copytree(tiny_store["root"], root)
    t, s, k = tiny_store["teacher"], tiny_store["scratch"], tiny_store["kd"]
    _record(root / t, finished=f"{DAY}08:59:00+00:00", test_acc=0.91)
    _record(root / k, finished=f"{DAY}09:02:59+00:00", test_acc=0.85, teacher_acc=0.30, train_acc=0.86)
    damaged = _copy_run(root, k, "damaged-run")
    text = (damaged / "metrics.json").read_text()
    (damaged / "metrics.json").write_text(text[: len(text) // 2])
    _configure(root / s, optim={"lr": 0.6})
    _record(root / s, finished=f"{DAY}11:00:00+00:00", test_acc=0.70, teacher_acc=0.95, train_acc=0.72)
    s2 = _copy_run(root, s, "bob-second")
    _record(s2, finished=None, test_acc=0.99, teacher_acc=0.95, status="running")
    loner = _copy_run(root, s, "loner")
    _configure(loner, teachers=[])
    _record(loner, finished=f"{DAY}07:00:00+00:00", test_acc=0.50)

    _job(root, 1, "finished", "alice", t, created=f"{DAY}09:00:00+00:00", started=f"{DAY}09:00:05+00:00",
         finished=f"{DAY}09:01:00+00:00")
    _job(root, 2, "finished", "alice", k, created=f"{DAY}09:02:00+00:00", started=f"{DAY}09:02:01+00:00",
         finished=f"{DAY}09:03:00+00:00")
    _job(root, 3, "failed", "alice", "damaged-run", created=f"{DAY}09:04:00+00:00",
         started=f"{DAY}09:04:01+00:00", finished=f"{DAY}09:05:00+00:00", error="worker ended")
    _job(root, 4, "queued", "alice", None, created=f"{DAY}09:10:00")
    _job(root, 5, "finished", "bob", s, created=f"{DAY}08:00:00+00:00", started=f"{DAY}08:00:01+00:00",
         finished=f"{DAY}08:01:00+00:00")
    _job(root, 6, "running", "bob", "bob-second", created=f"{DAY}08:05:00+00:00",
         started=f"{DAY}08:05:01+00:00", host="lab-node-2", pid=4242)
    (root / ".jobs" / "0000000a.json").write_text('{"id": "0000000a", "state": "queued", "work')
    return {"root": str(root), "teacher": t, "scratch": s, "kd": k}


def _alive(root: str, job_id: str = "00000006") -> None:
    """The heartbeat of the job running on another host, fresh now (its worker counts as alive)."""
    beat = Path(root) / ".jobs" / f"{job_id}.beat"
    beat.write_text("")
    now = time.time()
    os.utime(beat, (now, now))


@pytest.fixture
def class_copy(class_store, tmp_path) -> dict[str, str]:
    """A private copy of :func:`class_store` for a test that changes it."""
    root = tmp_path / "class_runs"
    shutil.copytree(class_store["root"], root)
    return {**class_store, "root": str(root)}


def _rows(root: str):
    _alive(root)
    return {row.workspace: row for row in class_overview(RunStore(root), JobQueue(root))}


# ---- the rows ----------------------------------------------------------------------------------------
def test_one_row_per_workspace_with_its_runs_and_jobs(class_store):
    rows = _rows(class_store["root"])
    assert list(rows) == ["alice", "bob", NO_WORKSPACE]
    alice, bob, none = rows["alice"], rows["bob"], rows[NO_WORKSPACE]
    assert (alice.runs, alice.queued, alice.running, alice.failed, alice.damaged) == (3, 1, 0, 1, 1)
    assert (bob.runs, bob.queued, bob.running, bob.failed, bob.damaged) == (2, 0, 1, 0, 0)
    assert (none.runs, none.queued, none.running, none.failed, none.damaged) == (1, 0, 0, 0, 0)


def test_last_activity_is_the_latest_job_or_run_time(class_store):
    rows = _rows(class_store["root"])
    assert rows["alice"].last_activity == f"{DAY}09:10:00+00:00"  # the queued job, written without a zone
    assert rows["bob"].last_activity == f"{DAY}11:00:00+00:00"  # its run finished after its jobs
    assert rows[NO_WORKSPACE].last_activity == f"{DAY}07:00:00+00:00"


def test_best_run_is_the_completed_run_with_the_highest_test_accuracy(class_store):
    rows = _rows(class_store["root"])
    alice, bob = rows["alice"].best, rows["bob"].best
    assert (alice.run_id, alice.kind, alice.test_acc) == (class_store["teacher"], "teacher", 0.91)
    # bob's running copy recorded 0.99 but is not completed
    assert (bob.run_id, bob.kind, bob.test_acc) == (class_store["scratch"], "student", 0.70)
    assert rows[NO_WORKSPACE].best.run_id == "loner"


def test_doctor_finding_of_the_newest_student_from_what_it_recorded(class_store):
    rows = _rows(class_store["root"])
    kd = rows["alice"].finding  # its teacher recorded 0.30 < 0.6: the teacher is wrong for the data
    assert (kd.run_id, kd.rule, kd.level) == (class_store["kd"], "wrong_teacher", "warning")
    assert kd.severity == pytest.approx(0.5 + 0.5 * (0.6 - 0.30) / (0.6 - 0.1))  # chance 1/10
    scratch = rows["bob"].finding  # lr 0.6 = 12x SGD's 0.05 and 0.25 below its teacher
    assert (scratch.run_id, scratch.rule) == (class_store["scratch"], "lr_high")
    assert scratch.severity == pytest.approx(1 - 8.0 / (2 * 12.0))
    loner = rows[NO_WORKSPACE].finding
    assert loner.rule is None and loner.text.startswith("no finding: the run has no teacher")


def test_recorded_evidence_reads_the_run_record(class_store):
    store = RunStore(class_store["root"])
    ev = recorded_evidence(store.load(class_store["scratch"]), store)
    assert ev["gap"] == pytest.approx(0.95 - 0.70)
    assert ev["lr_scale"] == pytest.approx(12.0)
    assert ev["chance"] == pytest.approx(0.1)
    assert ev["passes"] == pytest.approx(2.0)  # 46 steps of 46 / 2 per epoch
    assert ev["param_ratio"] == pytest.approx(1.0)  # the teacher run is the same MLP


def test_passes_where_a_step_limit_cut_the_run(class_copy):
    root = Path(class_copy["root"])
    _configure(root / "loner", train={"max_steps": 30})
    _edit_json(root / "loner" / "status.json", total_steps=30)
    store = RunStore(root)
    two = [{"epoch": 1, "step": 23, "test_acc": 0.4}, {"epoch": 2, "step": 30, "test_acc": 0.5}]
    _edit_json(root / "loner" / "metrics.json", epochs=two)
    assert recorded_evidence(store.load("loner"), store)["passes"] == pytest.approx(30 / 23)
    _edit_json(root / "loner" / "metrics.json", epochs=two[:1])  # stopped inside its first epoch: unknown
    ev = recorded_evidence(store.load("loner"), store)
    assert "passes" not in ev and "first epoch" in ev["why_missing"]["passes"]


def test_overview_table_flattens_the_rows(class_store):
    table = overview_table(class_overview(RunStore(class_store["root"]), JobQueue(class_store["root"])))
    alice = table[0]
    assert alice["workspace"] == "alice" and alice["best run"] == class_store["teacher"]
    assert alice["kind"] == "teacher" and alice["test_acc (%)"] == 91.0
    assert alice["doctor run"] == class_store["kd"]
    assert alice["doctor"].startswith("The teacher is wrong for this data") and alice["doctor"].endswith("(warning)")
    assert table[-1]["workspace"] == NO_WORKSPACE


def test_finding_is_cached_until_the_run_changes(class_copy):
    store = RunStore(class_copy["root"])
    run = store.load(class_copy["kd"])
    first = recorded_finding(run, store)
    assert recorded_finding(run, store) is first  # the same files: examined once
    metrics = Path(class_copy["root"]) / class_copy["kd"] / "metrics.json"
    _edit_json(metrics, summary={"test_acc": 0.85, "teacher_test_acc": 0.95})
    later = time.time() + 5
    os.utime(metrics, (later, later))
    again = recorded_finding(run, store)  # a right teacher 0.10 above the student, at the usual lr
    assert again.rule is None and again.reason.startswith("none of the")


def test_a_run_that_cannot_be_read_counts_as_damaged(class_copy, monkeypatch):
    broken = class_copy["teacher"]
    real = Run.status.fget

    def status(run):
        if run.id == broken:
            raise PermissionError(13, "Permission denied")
        return real(run)

    monkeypatch.setattr(Run, "status", property(status))
    rows = _rows(class_copy["root"])
    assert (rows["alice"].runs, rows["alice"].damaged) == (3, 2)  # the unreadable teacher and the cut file
    assert rows["alice"].best.run_id == class_copy["kd"]  # the others read as usual
    assert rows["bob"].best.run_id == class_copy["scratch"]


def test_no_jobs_and_no_runs_no_rows(tmp_path):
    assert class_overview(RunStore(tmp_path / "runs"), JobQueue(tmp_path / "runs")) == []


# ---- the command -------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(class_app, name="class")
    return app


def test_cli_prints_the_table_and_json(class_store):
    _alive(class_store["root"])
    out = CliRunner().invoke(_cli(), ["class", "overview", "--runs", class_store["root"], "--json"])
    assert out.exit_code == 0, out.output
    rows = {row["workspace"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"alice", "bob", NO_WORKSPACE}
    assert (rows["alice"]["queued"], rows["alice"]["failed"], rows["alice"]["damaged"]) == (1, 1, 1)
    assert rows["bob"]["best"] == {"run_id": class_store["scratch"], "kind": "student", "test_acc": 0.70}
    assert rows["bob"]["finding"]["rule"] == "lr_high"
    table = CliRunner().invoke(_cli(), ["class", "overview", "--runs", class_store["root"]])
    assert table.exit_code == 0, table.output
    for text in ("alice", "bob", NO_WORKSPACE, "91.00", "70.00", "no finding"):
        assert text in table.stdout


def test_cli_names_a_missing_store(tmp_path):
    out = CliRunner().invoke(_cli(), ["class", "overview", "--runs", str(tmp_path / "nowhere")])
    assert out.exit_code == 2
    assert "error: --runs" in out.output and "no such folder" in out.output


# ---- the page -------------------------------------------------------------------------------------------
def _page(monkeypatch, root: str, **params: str):
    JobQueue(root).pause()  # the page pumps the queue: nothing starts, alice's job stays queued
    _alive(root)
    at = make_app(monkeypatch, root, "views/classroom.py", **params)
    at.run()
    return at


def test_page_shows_every_workspace_to_the_instructor(class_copy, monkeypatch):
    monkeypatch.setenv("WORKBENCH_INSTRUCTOR_TOKEN", TOKEN)
    at = _page(monkeypatch, class_copy["root"], token=TOKEN)
    no_exception(at)
    table = at.dataframe[0].value
    assert list(table["workspace"]) == ["alice", "bob", NO_WORKSPACE]
    assert list(table["runs"]) == [3, 2, 1]
    links = {el.proto.label: parse_qs(el.proto.query_string) for el in at.get("page_link")}
    for name in ("alice", "bob"):
        assert links[name]["workspace"] == [name] and links[name]["token"] == [TOKEN]
    assert NO_WORKSPACE not in links
    jobs = at.dataframe[1].value
    assert set(jobs["workspace"]) == {"alice", "bob"} and len(jobs) == 6
    assert any(b.label == "Resume the queue" for b in at.button)  # the queue is paused
    damaged = at.dataframe[2].value
    assert list(damaged["id"]) == ["0000000a"] and "0000000a.json" in damaged["path"][0]


def test_page_controls_change_the_class_queue(class_copy, monkeypatch):
    root = class_copy["root"]
    _job(Path(root), 7, "queued", "alice", None, created=f"{DAY}09:20:00+00:00")
    monkeypatch.setenv("WORKBENCH_INSTRUCTOR_TOKEN", TOKEN)
    at = _page(monkeypatch, root, token=TOKEN)
    no_exception(at)
    queue = JobQueue(root)
    assert queue.get("00000007").position == 2  # alice's second queued job waits behind her first
    at.selectbox(key="class_job_pick").set_value("00000007").run()
    at.button(key="class_move_first").click().run()
    assert queue.get("00000007").position == 1
    assert at.checkbox(key="queue_no_cap").value  # a store never served to a class has no cap
    at.checkbox(key="queue_no_cap").uncheck().run()
    at.number_input(key="queue_cap").set_value(2).run()
    at.button(key="queue_set_cap").click().run()
    assert queue.settings().cap == 2
    for job_id in ("00000004", "00000007"):
        at.selectbox(key="class_job_pick").set_value(job_id).run()
        at.button(key="class_stop_job").click().run()
        assert queue.get(job_id).state == "stopped"
    assert [d.id for d in queue.damaged()] == ["0000000a"]
    at.button(key="class_remove_damaged").click().run()
    assert queue.damaged() == []
    at.button(key="queue_resume").click().run()  # nothing is left queued to start
    assert not queue.settings().paused
    no_exception(at)


def test_page_refuses_a_student(class_copy, monkeypatch):
    monkeypatch.setenv("WORKBENCH_INSTRUCTOR_TOKEN", TOKEN)
    at = _page(monkeypatch, class_copy["root"], workspace="carol")
    assert not at.exception
    assert [e.value for e in at.error] == ["This page is the instructor's: open it with the instructor link."]
    assert not at.dataframe
