from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from workbench.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_lists_work():
    for args in (
        ("data", "list"),
        ("methods", "list"),
        ("models", "list", "--dataset", "digits"),
        ("teachers", "list"),
    ):
        res = _run(*args)
        assert res.exit_code == 0, res.output
    assert "kd" in _run("methods", "list").output
    assert "shapes" in _run("data", "list").output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("train", "student", "--set", "data.dataset=mnits"), "data.dataset: unknown name 'mnits'"),
        (("train", "student", "--set", "train.epochs=0"), "train.epochs"),
        (("train", "student", "--config", "nope.yaml"), "nope.yaml: not found"),
        (("train", "distill", "--set", "distill.methods=kd"), "teachers"),
        (("runs", "show", "no-such-run"), "not found"),
        (("models", "list", "--dataset", "imagenet"), "--dataset: unknown name"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, expected):
    res = runner.invoke(app, list(args))
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert expected in lines[0]
    assert "Traceback" not in res.output


def test_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "train", "teacher", "--set", "model.name=resnet9000"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: model.name: unknown name 'resnet9000'")
    assert "Traceback" not in proc.stderr


def test_train_list_show_rm(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal, so that tables print whole ids
    ws = str(tmp_path / "ws")
    res = _run(
        "train", "student", "--config", "configs/digits_quick.yaml", "--set", "train.epochs=2", "--runs", ws, "-q"
    )
    assert res.exit_code == 0, res.output
    assert "completed" in res.output
    from workbench.runs import RunStore

    (run,) = RunStore(ws).list()
    assert run.config.train.epochs == 2
    listed = _run("runs", "list", "--runs", ws)
    assert run.id in listed.output
    shown = _run("runs", "show", run.id, "--runs", ws)
    assert "epoch_002" in shown.output and "completed" in shown.output
    removed = _run("runs", "rm", run.id, "--runs", ws, "--yes")
    assert removed.exit_code == 0 and RunStore(ws).list() == []


@pytest.mark.slow
def test_doctor_on_a_distilled_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    ws = str(tmp_path / "ws")
    common = [
        "--set",
        "data.dataset=digits",
        "--set",
        "model.name=mlp",
        "--set",
        "train.epochs=2",
        "--runs",
        ws,
        "-q",
    ]
    assert _run("train", "teacher", "--set", "name=t", *common).exit_code == 0
    from workbench.runs import RunStore

    (teacher,) = RunStore(ws).list(kind="teacher")
    res = _run(
        "train",
        "distill",
        "--set",
        f"teachers=[{{source: 'run:{teacher.id}'}}]",
        "--set",
        "distill.methods=kd",
        *common,
    )
    assert res.exit_code == 0, res.output
    (student,) = RunStore(ws).list(kind="distill")
    res = _run("doctor", student.id, "--runs", ws, "--n-samples", "200", "--json")
    assert res.exit_code == 0, res.output
    import json

    report = json.loads(res.output)
    assert "findings" in report
    for f in report["findings"]:
        assert f["explanation"] and f["suggestion"] and f["view"]


def test_train_distill_chain_prints_every_link(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    ws = str(tmp_path / "ws")
    common = [
        "--set",
        "data.dataset=digits",
        "--set",
        "model.name=mlp",
        "--set",
        "train.max_steps=3",
        "--runs",
        ws,
        "-q",
    ]
    assert _run("train", "teacher", "--set", "name=t", *common).exit_code == 0
    from workbench.runs import RunStore

    (teacher,) = RunStore(ws).list(kind="teacher")
    res = _run(
        "train",
        "distill",
        "--set",
        f"teachers=[{{source: 'run:{teacher.id}'}}]",
        "--set",
        "distill.methods=[{name: ban, params: {generations: 2}}]",
        *common,
    )
    assert res.exit_code == 0, res.output
    links = RunStore(ws).list(kind="distill")
    assert len(links) == 2
    lines = [line for line in res.output.splitlines() if line.startswith("run ")]
    assert [line.split()[1] for line in lines] == [r.id for r in links]
    assert all(" completed: test acc " in line for line in lines)


def test_demo_trains_through_the_one_entry_with_a_progress_bar(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import workbench.demo as demo
    from workbench.config import validate_config

    def tiny(epochs, seed):
        base = {"data": {"dataset": "digits", "train_subset": 128}, "model": {"name": "mlp"}, "seed": seed}
        return [
            validate_config({**base, "kind": "student", "name": "demo-scratch", "train": {"epochs": epochs}}),
            validate_config({**base, "kind": "student", "name": "demo-other", "train": {"epochs": epochs}}),
        ]

    monkeypatch.setattr(demo, "demo_configs", tiny)
    buf = io.StringIO()
    rows = demo.run_demo(epochs=2, store=tmp_path / "ws", console=Console(file=buf, width=200))
    assert [r["method"] for r in rows] == ["shipped", "none", "none"]
    from workbench.runs import RunStore

    stored = {r.id for r in RunStore(tmp_path / "ws").list(status="completed")}
    assert {rows[1]["run_id"], rows[2]["run_id"]} == stored
    assert buf.getvalue().count("epoch 2: train acc") == 2


def test_demo_does_not_import_the_cli():
    code = "import sys, workbench.demo; assert 'workbench.cli' not in sys.modules, 'cycle'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _one_error_line(res):
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_resume_a_stopped_run_from_the_cli(tmp_path):
    from workbench.runs import RunStore
    from workbench.train import StepEnded, Trainer
    from workbench.validate import load_config

    ws = tmp_path / "ws"
    cfg = load_config("configs/digits_quick.yaml", ["train.epochs=2", "data.train_subset=256"])
    holder = {}

    def stop(event):
        if isinstance(event, StepEnded) and event.step == 4:  # end of epoch 1 (256 / 64)
            holder["t"].request_stop()

    holder["t"] = Trainer(cfg, store=RunStore(ws), subscribers=[stop])
    first = holder["t"].run()
    assert first.status == "stopped"
    # a different learning rate is refused, naming the field
    line = _one_error_line(
        runner.invoke(
            app, ["train", "student", "--resume", first.run_id, "--runs", str(ws), "--set", "optim.lr=0.1", "-q"]
        )
    )
    assert "optim.lr" in line and "only train.epochs may change" in line
    # the run's own config (no --config), with more epochs
    res = _run("train", "student", "--resume", first.run_id, "--runs", str(ws), "--set", "train.epochs=3", "-q")
    assert res.exit_code == 0, res.output
    assert f"run {first.run_id} completed" in res.output
    run = RunStore(ws).load(first.run_id)
    assert [e["epoch"] for e in run.metrics["epochs"]] == [1, 2, 3]
    # a completed run cannot be resumed
    line = _one_error_line(runner.invoke(app, ["train", "student", "--resume", first.run_id, "--runs", str(ws)]))
    assert "completed" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cudaXYZ", "mps"])
def test_a_device_this_machine_lacks_is_one_line(device, tmp_path):
    import torch

    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    res = runner.invoke(
        app,
        [
            "train",
            "student",
            "--config",
            "configs/digits_quick.yaml",
            "--set",
            f"train.device={device}",
            "--runs",
            str(tmp_path / "ws"),
            "-q",
        ],
    )
    assert "train.device" in _one_error_line(res)
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_a_teacher_near_chance_is_a_one_line_warning(tmp_path):
    import torch
    from safetensors.torch import save_file

    from workbench.models import create_model

    net = create_model("mlp", num_classes=10, in_channels=1, image_size=8, hidden=[16])
    zeros = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}  # predicts class 0 for all
    weights = tmp_path / "blank.safetensors"
    save_file(zeros, str(weights))
    res = _run(
        "train",
        "distill",
        "--config",
        "configs/digits_quick.yaml",
        "--runs",
        str(tmp_path / "ws"),
        "-q",
        "--set",
        "kind=distill",
        "--set",
        "train.epochs=1",
        "--set",
        "distill.methods=kd",
        "--set",
        f"teachers=[{{source: '{weights}', model: {{name: mlp, kwargs: {{hidden: [16]}}}}}}]",
    )
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "near chance" in warnings[0] and "teachers[0]" in warnings[0]
    from workbench.runs import RunStore

    (run,) = RunStore(tmp_path / "ws").list()
    assert run.status["status"] == "completed" and run.status["warnings"] == [warnings[0][len("warning: ") :]]
