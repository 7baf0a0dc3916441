"""Library pieces the faces share about runs: labels (workbench.runs.labels), related runs and logged
metrics (workbench.runs.related), and workspaces (workbench.workspaces). The runs are written by hand
(no training), so every expectation below is checked against the files the test wrote."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import torch

from workbench.config import validate_config
from workbench.runs import RunStore, logged_metrics
from workbench.runs.labels import age, fmt_pct, fmt_value, run_label, teacher_label
from workbench.runs.related import (
    confounded_shapes_run,
    has_checkpoint,
    related_runs,
    view_checkpoints,
)
from workbench.workspaces import ALL_WORKSPACES, WorkspaceError, check_workspace, workspace_runs


def _run(
    store: RunStore,
    run_id: str,
    *,
    kind: str = "distill",
    dataset: str = "digits",
    model: str = "mlp",
    options: dict | None = None,
    teacher: str | None = "shipped:mnist",
    status: str = "completed",
    checkpoints: tuple[str, ...] = ("final",),
    epochs: list[dict] | None = None,
    name: str | None = None,
):
    data = {"dataset": dataset, **({"options": options} if options else {})}
    cfg = {"kind": kind, "name": name or run_id, "data": data, "model": {"name": model}}
    if teacher:
        cfg["teachers"] = [{"source": teacher}]
    if kind == "distill":
        cfg["distill"] = {"methods": "kd"}
    writer = store.create(validate_config(cfg), run_id=run_id)
    for ckpt in checkpoints:
        writer.save_checkpoint(ckpt, {"student.w": torch.zeros(1)})
    writer.write_metrics({"epochs": epochs or [], "summary": {"test_acc": 0.5} if epochs else {}})
    writer.update_status(status=status)
    return store.load(run_id)


# ---- labels ---------------------------------------------------------------------------------------
def test_age_in_one_short_word():
    now = datetime(2025, 1, 10, 12, 0, 0, tzinfo=timezone.utc)

    def ago(**kw):
        return (now - timedelta(**kw)).isoformat()

    assert age(ago(seconds=42), now) == "42 s"
    assert age(ago(seconds=89), now) == "89 s"
    assert age(ago(seconds=90), now) == "1 min"
    assert age(ago(minutes=89), now) == "89 min"
    assert age(ago(minutes=90), now) == "1 h"
    assert age(ago(hours=47), now) == "47 h"
    assert age(ago(days=3, hours=5), now) == "3 d"
    assert age("2025-01-10T11:59:00", now) == "60 s"  # no zone: UTC
    assert age(ago(seconds=-30), now) == "0 s"  # a clock ahead of ours is not negative
    assert age(None, now) == age("", now) == age("yesterday", now) == ""


def test_fmt_value_and_fmt_pct():
    assert fmt_value(0.123456) == "0.1235"
    assert fmt_value(12345.678) == "1.235e+04"
    assert fmt_value(float("nan")) == "n/a"
    assert fmt_value(None) == "-"
    assert fmt_value(True) == "True"
    assert fmt_value(3) == "3"
    assert fmt_value([1, 2.5]) == "[1, 2.5]"
    assert fmt_value(list(range(8))) == "[0, 1, 2, 3, 4, 5, …]"
    assert fmt_value("x" * 200) == "x" * 120
    assert fmt_pct(0.9712) == "97.12%"
    assert fmt_pct(1) == "100.00%"
    assert fmt_pct(None) == fmt_pct(float("inf")) == fmt_pct(True) == fmt_pct("0.5") == "-"


def test_run_and_teacher_labels(tmp_path):
    store = RunStore(tmp_path)
    run = _run(store, "20250101-000001-kd-ab12", name="kd", epochs=[{"test_acc": 0.5}])
    assert run_label(run) == "kd · distill · mlp · kd · completed · 50.00% (ab12)"
    scratch = _run(store, "20250101-000002-scratch-cd34", kind="student", teacher=None, name="scratch")
    assert run_label(scratch) == "scratch · student · mlp · none · completed (cd34)"
    assert teacher_label(run) == "shipped:mnist" and teacher_label(scratch) == "none"
    assert (
        teacher_label(
            SimpleNamespace(
                config=SimpleNamespace(teachers=[SimpleNamespace(source="/weights/big_teacher.safetensors")])
            )
        )
        == "big_teacher.safetensors"
    )


# ---- related runs, checkpoints and metrics ----------------------------------------------------------
def test_view_checkpoints_order_and_resume_left_out(tmp_path):
    store = RunStore(tmp_path)
    run = _run(store, "r-1", checkpoints=("epoch_002", "resume", "best", "epoch_001", "final"))
    assert view_checkpoints(run) == ["final", "best", "epoch_001", "epoch_002"]
    only_resume = _run(store, "r-2", checkpoints=("resume",), status="running")
    assert view_checkpoints(only_resume) == [] and not has_checkpoint(only_resume) and has_checkpoint(run)


def test_related_runs_same_data_and_optionally_same_model(tmp_path):
    store = RunStore(tmp_path)
    kd = _run(store, "r-1-kd")
    scratch = _run(store, "r-2-scratch", kind="student", teacher=None)
    cnn = _run(store, "r-3-cnn", model="cnn_small")
    _run(store, "r-4-mnist", dataset="mnist")  # another dataset
    _run(store, "r-5-noisy", options={"label_noise": 0.2})  # the same dataset, other options
    _run(store, "r-6-training", checkpoints=("resume",), status="running")  # nothing to view yet
    assert [r.id for r in related_runs(kd, store)] == ["r-3-cnn", "r-2-scratch"]  # newest first
    assert [r.id for r in related_runs(kd, store, same_model=True)] == ["r-2-scratch"]
    assert [r.id for r in related_runs(kd, [scratch, cnn, kd])] == [
        "r-2-scratch",
        "r-3-cnn",
    ]  # caller's order


def test_confounded_shapes_run_is_the_newest_completed_one_with_a_teacher(tmp_path):
    store = RunStore(tmp_path)
    assert confounded_shapes_run(store) is None
    _run(store, "r-1", dataset="shapes", options={"confounding": 0.9}, teacher="shipped:shapes")
    _run(store, "r-2", dataset="shapes", options={"confounding": 0.0}, teacher="shipped:shapes")
    _run(store, "r-3", dataset="shapes", options={"confounding": 0.9}, kind="student", teacher=None)
    _run(
        store,
        "r-4",
        dataset="shapes",
        options={"confounding": 0.5},
        teacher="shipped:shapes",
        status="failed",
    )
    assert confounded_shapes_run(store).id == "r-1"
    _run(
        store, "r-5", dataset="shapes", options={"confounding": 0.5}, kind="student", teacher="shipped:shapes"
    )
    assert confounded_shapes_run(store).id == "r-5"


def test_logged_metrics_are_what_the_runs_logged_in_vocabulary_order(tmp_path):
    store = RunStore(tmp_path)
    teacher = _run(
        store,
        "r-1",
        kind="teacher",
        teacher=None,
        epochs=[
            {
                "epoch": 1,
                "train_loss": 1.0,
                "loss/ce": 1.0,
                "test_acc": 0.5,
                "ece": 0.1,
                "lr": 0.1,
                "seconds": 2.0,
            },
        ],
    )
    kd = _run(
        store,
        "r-2",
        epochs=[
            {
                "epoch": 1,
                "loss/kd": 0.3,
                "loss/ce": 0.7,
                "test_acc": 0.6,
                "agreement": 0.8,
                "kl_teacher_student": None,
                "train_acc": 0.7,
            },
        ],
    )
    assert logged_metrics([teacher]) == ["test_acc", "ece", "train_loss", "lr", "seconds", "loss/ce"]
    assert logged_metrics([kd]) == ["test_acc", "agreement", "train_acc", "loss/kd", "loss/ce"]
    assert logged_metrics([teacher, kd]) == [
        "test_acc",
        "agreement",
        "ece",
        "train_acc",
        "train_loss",
        "lr",
        "seconds",
        "loss/ce",
        "loss/kd",
    ]
    assert logged_metrics([]) == [] and logged_metrics([_run(store, "r-3")]) == []


# ---- workspaces -------------------------------------------------------------------------------------
def test_check_workspace():
    assert check_workspace("group-3") == "group-3" and check_workspace("a.b_c") == "a.b_c"
    assert check_workspace(ALL_WORKSPACES) == "*"
    assert check_workspace(None) is None and check_workspace("  ") is None
    for bad in ("../x", "-lead", "a b", "x" * 65, "é"):
        with pytest.raises(WorkspaceError, match="workspace .*: use letters"):
            check_workspace(bad)


def test_workspace_runs_are_the_runs_of_its_jobs(tmp_path):
    store = RunStore(tmp_path)
    for i, kind in enumerate(("teacher", "student", "distill")):
        _run(store, f"r-{i}", kind=kind, teacher=None if kind != "distill" else "shipped:mnist")

    class Queue:  # the part of workbench.jobs.JobQueue a workspace reads
        def list(self, workspace=None):
            jobs = [("alice", "r-1"), ("alice", None), ("bob", "r-2"), ("alice", "gone")]
            return [SimpleNamespace(workspace=w, run_id=r) for w, r in jobs if w == workspace]

    queue = Queue()
    assert [r.id for r in workspace_runs(store, queue=queue)] == ["r-2", "r-1", "r-0"]
    assert [r.id for r in workspace_runs(store, "*", queue=queue, kind=("student", "distill"))] == [
        "r-2",
        "r-1",
    ]
    assert [r.id for r in workspace_runs(store, "alice", queue=queue)] == ["r-1"]
    assert [r.id for r in workspace_runs(store, "bob", queue=queue, status="completed")] == ["r-2"]
    assert workspace_runs(store, "carol", queue=queue) == []
    assert workspace_runs(store, "alice", queue=queue, kind="teacher") == []
    with pytest.raises(WorkspaceError):
        workspace_runs(store, "../x", queue=queue)


def test_workspace_runs_fail_closed_when_the_jobs_cannot_be_read(tmp_path):
    store = RunStore(tmp_path)
    _run(store, "r-1")

    class Broken:
        def list(self, workspace=None):
            raise OSError("jobs folder unreadable")

    with pytest.raises(OSError, match="unreadable"):
        workspace_runs(store, "alice", queue=Broken())
    assert [r.id for r in workspace_runs(store, None, queue=Broken())] == ["r-1"]  # no workspace: every run
