"""Fixtures of the app tests: a small run store (a teacher, a scratch student and a KD student, MLPs on
``digits``) and an AppTest of ``app/main.py`` pointed at it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app" / "main.py"
if str(APP.parent.parent) not in sys.path:  # `import app` from the project root, however pytest is started
    sys.path.insert(0, str(APP.parent.parent))
TIMEOUT = 120


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> dict[str, str]:
    """Three completed runs on digits (2 epochs each): ``root``, ``teacher``, ``scratch``, ``kd`` ids."""
    from workbench.config import validate_config
    from workbench.runs import RunStore
    from workbench.train import Trainer

    root = tmp_path_factory.mktemp("app_store") / "runs"
    store = RunStore(root)
    base = {
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64},
        "model": {"name": "mlp"},
        "train": {"epochs": 2, "device": "cpu"},
    }
    teacher = Trainer(validate_config({**base, "kind": "teacher", "name": "tiny-teacher"}), store=store).run()
    source = [{"source": f"run:{teacher.run_id}"}]
    scratch = Trainer(
        validate_config({**base, "kind": "student", "name": "tiny-scratch", "teachers": source}), store=store
    ).run()
    kd = Trainer(
        validate_config(
            {
                **base,
                "kind": "distill",
                "name": "tiny-kd",
                "teachers": source,
                "distill": {"methods": "0.9*kd", "ce_weight": 0.1},
            }
        ),
        store=store,
    ).run()
    return {"root": str(root), "teacher": teacher.run_id, "scratch": scratch.run_id, "kd": kd.run_id}


@pytest.fixture
def store_copy(tiny_store, tmp_path) -> dict[str, str]:
    """A private copy of :func:`tiny_store` for tests that change the store."""
    root = tmp_path / "runs_copy"
    shutil.copytree(tiny_store["root"], root)
    return {**tiny_store, "root": str(root)}


def make_app(monkeypatch, root: str, page: str | None = None, **params: str):
    """An AppTest of the app on store ``root``, run once on Home, then switched to ``page`` with the
    query ``params`` (not run yet when a page is given)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", root)
    monkeypatch.setenv("WORKBENCH_MAX_JOBS", "1")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(page)
        for key, value in params.items():
            at.query_params[key] = value
    return at


def stop_all_jobs(root) -> None:
    """Stop every job a test's clicks queued in the store at ``root`` and wait for running ones."""
    from workbench.jobs import JobQueue

    queue = JobQueue(root, max_jobs=1)
    for job in queue.list():
        if not job.done:
            queue.stop(job.id)
    for job in queue.list():
        if job.state == "running":
            queue.wait(job.id, timeout=120, pump=False)


def no_exception(at) -> None:
    """Assert the last run raised nothing and showed no error line."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def figures(at) -> list[dict]:
    """The plotly figures of the last run, as dictionaries."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _decode(value: object) -> object:
    """Plotly's typed arrays (``{"dtype", "bdata", "shape"}``) as lists of numbers, recursively."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            return (arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr).tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def decoded_figures(at) -> list[dict]:
    """:func:`figures` with plotly's typed arrays decoded into lists of numbers."""
    return [_decode(fig) for fig in figures(at)]


#: the base config of the experiments the app tests train: an MLP on digits, a few steps per run
GRID_BASE = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"name": "mlp"},
    "train": {"epochs": 2, "device": "cpu", "max_steps": 30},
}


@pytest.fixture(scope="session")
def grid_store(tiny_store, tmp_path_factory) -> dict[str, str]:
    """:func:`tiny_store`'s runs and two experiments trained in this process and recorded as the app
    submits them (a submit after the runs exist queues nothing): ``lr-grid`` (2 learning rates x 2
    seeds of a scratch MLP) and a leaderboard (``none`` and ``kd`` from the digits teacher run, 2
    seeds). ``root``, the tiny store's ids, ``grid`` and ``board`` (the experiments' names) and
    ``board_params`` (the Leaderboard page's URL for it)."""
    from workbench.experiments.leaderboard import leaderboard_spec
    from workbench.jobs import JobQueue
    from workbench.runs import RunStore
    from workbench.sweep import SweepSpec, run_sweep, submit_experiment

    root = tmp_path_factory.mktemp("grid_store") / "runs"
    shutil.copytree(tiny_store["root"], root)
    store, queue = RunStore(root), JobQueue(root, max_jobs=1)
    spec = SweepSpec(name="lr-grid", config=GRID_BASE, grid={"optim.lr": [0.05, 0.2]}, seeds=[0, 1])
    board = leaderboard_spec(
        "leaderboard-digits-mlp-1ep-30steps", dataset="digits", student="mlp", teacher=f"run:{tiny_store['teacher']}",
        epochs=1, methods=["kd"], seeds=[0, 1], ce_weight=0.1, weight=0.9, max_steps=30,
    )
    for one in (spec, board):
        assert all(o.status == "completed" for o in run_sweep(one, store))
        assert submit_experiment(one, queue).queued == 0
    params = {"dataset": "digits", "student": "mlp", "teacher": f"run:{tiny_store['teacher']}", "methods": "kd",
              "epochs": "1", "seeds": "2", "max_steps": "30"}
    return {**tiny_store, "root": str(root), "grid": spec.name, "board": board.name, "board_params": params}


@pytest.fixture
def grid_copy(grid_store, tmp_path) -> dict[str, str]:
    """A private copy of :func:`grid_store` for tests that change the store."""
    root = tmp_path / "grid_copy"
    shutil.copytree(grid_store["root"], root)
    return {**grid_store, "root": str(root)}
