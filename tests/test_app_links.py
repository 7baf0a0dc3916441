"""Prepared links: ``hide=`` and ``lock=`` in a page's URL, the sidebar's "Copy link for the class" and
its round trip into a fresh session (AppTest)."""
# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from app_fixtures import make_app, no_exception, stop_all_jobs, store_copy, tiny_store  # noqa: F401

pytest.importorskip("streamlit")

NO_TEACHER = "none (train from scratch)"


def _class_link(at, hide: list[str], lock: list[str]) -> tuple[str, dict[str, str]]:
    """Choose ``hide`` and ``lock`` in the sidebar's form, build the link; its path and its query."""
    form = {m.label: m for m in at.sidebar.multiselect}
    form["Hide"].set_value(hide)
    form["Lock"].set_value(lock)
    at.button(key="class_link_build").click().run()
    no_exception(at)
    link = at.sidebar.code[0].value
    parts = urlsplit(link)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.path, query


def _query(at) -> dict[str, str]:
    return {k: v if isinstance(v, str) else v[-1] for k, v in at.query_params.items()}


def test_every_bound_control_can_be_hidden_or_locked(monkeypatch, tmp_path):
    """Each kind of bound control, hidden: not drawn, its value the URL's; locked: drawn disabled with the
    URL's value; unknown names are ignored; a preset leaves a locked value alone."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))

    def script():
        import streamlit as st

        from app.lib import bindings as b

        values = [
            b.bound_selectbox("Student", "student", ["cnn_small", "mlp"]),
            b.bound_number("Epochs", "epochs", 2, min_value=1, max_value=200),
            b.bound_checkbox("Flag", "flag", False),
            b.bound_multiselect("Methods", "methods", ["kd", "dkd", "at"], default=["kd"]),
            b.bound_text("Name", "name", ""),
            b.bound_slider("Temperature T", "temperature", 4.0, min_value=0.5, max_value=20.0),
            b.bound_select_slider("Checkpoint", "checkpoint", ["epoch_001", "final"]),
        ]
        st.write(repr(values))
        st.write(repr(sorted(b.bound_params())))
        if st.button("preset", key="preset"):
            b.apply_preset({"epochs": 9, "name": "preset"})

    def opened(**params: str) -> AppTest:
        at = AppTest.from_function(script, default_timeout=60)
        for k, v in params.items():
            at.query_params[k] = v
        return at.run()

    link = {"student": "mlp", "epochs": "5", "flag": "1", "methods": "dkd,at", "name": "x", "temperature": "2.5",
            "checkpoint": "epoch_001"}
    hidden = opened(**link, hide="student,epochs,flag,methods,name,temperature,checkpoint,nope")
    no_exception(hidden)
    assert not hidden.warning
    assert not (hidden.selectbox or hidden.number_input or hidden.checkbox or hidden.multiselect
                or hidden.text_input or hidden.slider or hidden.select_slider)
    assert hidden.markdown[0].value == repr(["mlp", 5, True, ["dkd", "at"], "x", 2.5, "epoch_001"])
    assert eval(hidden.markdown[1].value) == sorted(link)  # noqa: S307 - our own repr of a list of strings
    hidden.run()  # the values stay through a rerun though nothing draws them
    assert hidden.markdown[0].value == repr(["mlp", 5, True, ["dkd", "at"], "x", 2.5, "epoch_001"])
    assert _query(hidden) == {**link, "hide": "student,epochs,flag,methods,name,temperature,checkpoint,nope"}

    locked = opened(**link, lock="student,epochs,flag,methods,name,temperature,checkpoint,zzz", hide="nope")
    no_exception(locked)
    controls = [locked.selectbox[0], locked.number_input[0], locked.checkbox[0], locked.multiselect[0],
                locked.text_input[0], locked.slider[0], locked.select_slider[0]]
    assert all(c.disabled for c in controls)
    assert [c.value for c in controls] == ["mlp", 5, True, ["dkd", "at"], "x", 2.5, "epoch_001"]
    locked.button(key="preset").click().run()
    assert locked.number_input[0].value == 5 and locked.text_input[0].value == "x"

    plain = opened(**link, hide="nope", lock="zzz")  # names the page does not have change nothing
    no_exception(plain)
    assert not plain.warning and not plain.selectbox[0].disabled and not plain.number_input[0].disabled
    plain.button(key="preset").click().run()
    assert plain.number_input[0].value == 9 and plain.text_input[0].value == "preset"


def test_home_class_link_round_trip(monkeypatch, store_copy):
    """The instructor hides Student and locks Epochs in the form; the link, opened in a fresh session,
    shows the same form without Student and with Epochs fixed, starts a job with the link's student and
    epochs, carries hide/lock into its links and keeps them after a switch from the menu."""
    from workbench.jobs import JobQueue

    monkeypatch.delenv("WORKBENCH_APP_URL", raising=False)
    root = store_copy["root"]
    state = {"dataset": "digits", "student": "mlp", "teacher": NO_TEACHER, "methods": "none", "epochs": "3",
             "seed": "7", "workspace": "*"}
    at = make_app(monkeypatch, root, "views/home.py", **state)
    at.run()
    no_exception(at)
    assert {"Student", "Dataset"} <= {s.label for s in at.selectbox}
    path, query = _class_link(at, ["student"], ["epochs"])
    assert len(at.sidebar.code) == 1  # no full link: the server does not know the class's address
    assert path == "home" and query["hide"] == "student" and query["lock"] == "epochs"
    assert "workspace" not in query  # each student keeps their own
    assert {k: query[k] for k in state if k != "workspace"} == {k: v for k, v in state.items() if k != "workspace"}
    assert not at.selectbox(key="qp:student").disabled  # the instructor's own view is unchanged

    fresh = make_app(monkeypatch, root, "views/home.py", **query)
    fresh.run()
    no_exception(fresh)
    labels = {s.label for s in fresh.selectbox}
    assert "Student" not in labels and {"Dataset", "Teacher", "Run"} <= labels
    epochs = fresh.number_input(key="qp:epochs")
    assert epochs.disabled and epochs.value == 3
    assert not fresh.number_input(key="qp:seed").disabled and fresh.number_input(key="qp:seed").value == 7
    assert _query(fresh) == query  # the same state, hide and lock included
    opened = [parse_qs(link.proto.query_string) for link in fresh.get("page_link")]
    assert opened and all(q["hide"] == ["student"] and q["lock"] == ["epochs"] for q in opened)

    fresh.button(key="start").click().run()
    no_exception(fresh)
    try:
        (job,) = JobQueue(root, max_jobs=1).list()
        assert job.config["model"]["name"] == "mlp"  # the hidden student is the link's, not cnn_small
        assert job.config["train"]["epochs"] == 3 and job.config["seed"] == 7
    finally:
        stop_all_jobs(root)

    fresh.query_params.clear()  # a switch from the menu drops the URL's parameters
    fresh.switch_page("views/agreement.py")
    fresh.run()
    no_exception(fresh)
    assert _query(fresh)["hide"] == "student" and _query(fresh)["lock"] == "epochs"
    _, query = _class_link(fresh, [], [])
    assert query["hide"] == "student" and query["lock"] == "epochs"  # kept for the pages that have them


def test_agreement_hidden_run_and_locked_samples(monkeypatch, tiny_store):
    """On an analysis page a hidden run and a locked sample count compute exactly what the visible page
    computes with the same URL, and the class link reproduces it in a fresh session."""
    state = {"run": tiny_store["scratch"], "checkpoint": "final", "n_samples": "100", "seed": "3"}
    monkeypatch.setenv("WORKBENCH_APP_URL", "http://class.example:8501/")
    at = make_app(monkeypatch, tiny_store["root"], "views/agreement.py", **state, workspace="*")
    at.run()
    no_exception(at)
    assert at.selectbox(key="qp:run").value == tiny_store["scratch"]
    shown = {m.label: m.value for m in at.metric}
    assert any("mean of 100" in label for label in shown)
    path, query = _class_link(at, ["run"], ["n_samples"])
    assert path == "agreement" and "workspace" not in query
    assert at.sidebar.code[1].value == "http://class.example:8501/" + at.sidebar.code[0].value  # the full link
    assert {k: query[k] for k in state} == state and query["hide"] == "run" and query["lock"] == "n_samples"

    fresh = make_app(monkeypatch, tiny_store["root"], "views/agreement.py", **query)
    fresh.run()
    no_exception(fresh)
    assert "Run" not in {s.label for s in fresh.selectbox}
    assert not [t for t in fresh.text_input if t.key == "qp:search"]  # a hidden run needs no search box
    n_samples = fresh.number_input(key="qp:n_samples")
    assert n_samples.disabled and n_samples.value == 100
    assert {m.label: m.value for m in fresh.metric} == shown
    assert _query(fresh) == query
