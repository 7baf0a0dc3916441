"""The analysis pages of the Streamlit app (CAMs, similarity, landscape, agreement) on a tiny run store.

Each page is run with ``streamlit.testing.v1.AppTest``: it renders without an exception, its
controls exist, changing a control changes what is drawn, and a bad value shows one message.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "app" / "pages"
TIMEOUT = 90


@pytest.fixture(scope="session")
def app_store(tmp_path_factory):
    """A run store with a digits teacher, a KD student and a scratch student (cnn_small, two epochs,
    per-epoch snapshots), an MLP KD student, and a KD student on confounded ``shapes`` from the
    shipped shapes teacher. Returns ``{"root": path, name: run id}``."""
    from workbench.config import validate_config
    from workbench.runs import RunStore
    from workbench.train import Trainer

    root = tmp_path_factory.mktemp("app_runs")
    store = RunStore(root)
    ids: dict[str, str] = {"root": str(root)}
    digits = {"dataset": "digits", "batch_size": 64}
    budget = {"epochs": 2, "max_steps": 30, "device": "cpu"}
    optim = {"name": "adamw", "lr": 0.003}

    def train(name: str, **cfg: object) -> str:
        config = validate_config({"name": name, "optim": optim, **cfg})
        result = Trainer(config, store=store).run()
        assert result.status == "completed"
        ids[name] = result.run_id
        return result.run_id

    teacher = train("teacher", kind="teacher", data=digits, model={"name": "cnn_small"}, train=budget)
    from_teacher = [{"source": f"run:{teacher}"}]
    train(
        "kd",
        kind="distill",
        data=digits,
        model={"name": "cnn_small"},
        teachers=from_teacher,
        distill={"methods": "0.9*kd", "ce_weight": 0.1},
        train=budget,
    )
    train(
        "scratch",
        kind="student",
        data=digits,
        model={"name": "cnn_small"},
        teachers=from_teacher,
        train=budget,
    )
    train(
        "mlp",
        kind="distill",
        data=digits,
        model={"name": "mlp"},
        teachers=from_teacher,
        distill={"methods": "kd"},
        train=budget,
    )
    train(
        "shapes",
        kind="distill",
        data={
            "dataset": "shapes",
            "batch_size": 64,
            "options": {"n_train": 256, "n_test": 64, "confounding": 0.9},
        },
        model={"name": "cnn_small"},
        teachers=[{"source": "shipped:shapes"}],
        distill={"methods": "kd"},
        train={"epochs": 1, "max_steps": 4, "device": "cpu"},
    )
    return ids


@pytest.fixture()
def store(app_store, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RUNS", app_store["root"])
    return app_store


def page(name: str, **params: object) -> AppTest:
    """An AppTest of one page file with the URL parameters ``params``, run once."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not errors(at), errors(at)


def figures(at: AppTest) -> list[dict]:
    """The plotly figures drawn, as JSON dicts."""
    out = []
    for el in at.get("plotly_chart"):
        out.append(json.loads(el.proto.spec))
    return out


def param(at: AppTest, key: str) -> str:
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value


def widget(at: AppTest, kind: str, label: str):
    found = [w for w in getattr(at, kind) if w.label.startswith(label)]
    assert found, f"no {kind} labelled {label!r}: {[w.label for w in getattr(at, kind)]}"
    return found[0]


# ---- agreement ----------------------------------------------------------------------------------------
def test_agreement_page_renders_and_reacts(store):
    at = page("agreement", run=store["kd"], n=200)
    assert_clean(at)
    for label in ("Run", "Checkpoint"):
        widget(at, "selectbox", label)
    for label in ("Samples", "Seed", "Images shown", "Sample"):
        widget(at, "number_input", label)
    slider = widget(at, "slider", "Temperature")
    assert slider.value == 4.0  # the run's kd temperature
    figs = figures(at)
    assert len(figs) == 6
    kd_before = [m.value for m in at.metric if m.label.startswith("KD loss of the student")]
    slider.set_value(1.0).run()
    assert_clean(at)
    kd_after = [m.value for m in at.metric if m.label.startswith("KD loss of the student")]
    assert kd_before != kd_after
    assert param(at, "T") == "1.0"  # the URL holds the view


def test_agreement_page_unknown_run_shows_one_message(store):
    at = page("agreement", run="no-such-run")
    assert not at.exception
    assert any("not found" in w.value for w in at.warning)


def test_agreement_page_run_without_teacher_says_so(store):
    at = page("agreement", run=store["teacher"])
    # a teacher run is not offered: the picker falls back to a run with a teacher
    assert not at.exception
    assert at.selectbox[0].value != store["teacher"]
