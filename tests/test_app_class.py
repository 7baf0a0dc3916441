"""The app in class mode (an instructor token set): each student session bound to its own workspace,
the instructor's link opening every one, and every doubt failing closed."""

from __future__ import annotations

import json
from pathlib import Path

from app_fixtures import make_app, store_copy, tiny_store  # noqa: F401 - fixtures

TOKEN = "teach-3rd-period"


def _own(root: str, run_id: str, workspace: str, seq: int) -> None:
    """A finished job of ``workspace`` that trained ``run_id`` (what a student's queued run leaves)."""
    folder = Path(root) / ".jobs"
    folder.mkdir(parents=True, exist_ok=True)
    job_id = f"{seq:08x}"
    record = {
        "id": job_id, "state": "finished", "config": {"kind": "student", "model": {"name": "mlp"}},
        "seq": seq, "created": "2026-01-01T00:00:00", "workspace": workspace, "label": run_id,
        "backend": "local", "started": "2026-01-01T00:00:01", "finished": "2026-01-01T00:01:00",
        "start_seq": seq, "run_id": run_id,
    }
    (folder / f"{job_id}.json").write_text(json.dumps(record))


def _class_store(store_copy, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WORKBENCH_INSTRUCTOR_TOKEN", TOKEN)
    _own(store_copy["root"], store_copy["scratch"], "alice", 1)
    _own(store_copy["root"], store_copy["kd"], "bob", 2)
    return store_copy


def _shown_runs(at) -> set[str]:
    """The run ids of the Home page's runs table."""
    tables = [df.value for df in at.dataframe if "id" in getattr(df.value, "columns", [])]
    return set(tables[0]["id"]) if tables else set()


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in (at.warning, at.error, at.info, at.caption) for e in kind)


def test_a_student_claims_a_workspace_and_sees_only_its_runs(store_copy, monkeypatch):  # noqa: F811
    s = _class_store(store_copy, monkeypatch)
    first = make_app(monkeypatch, s["root"], "views/home.py", workspace="alice")
    first.run()
    assert not first.exception
    key = first.query_params["wskey"]
    assert key and _shown_runs(first) == {s["scratch"]}  # alice's run only: not bob's, not the teacher

    other = make_app(monkeypatch, s["root"], "views/home.py", workspace="alice")  # typed in another browser
    other.run()
    assert not other.exception and _shown_runs(other) == set()
    assert "taken by another session" in _texts(other)

    back = make_app(monkeypatch, s["root"], "views/home.py", workspace="alice", wskey=key)  # her own link
    back.run()
    assert _shown_runs(back) == {s["scratch"]}


def test_a_student_cannot_open_another_workspace_s_run_by_its_link(store_copy, monkeypatch):  # noqa: F811
    s = _class_store(store_copy, monkeypatch)
    at = make_app(monkeypatch, s["root"], "views/training.py", workspace="alice", run=s["kd"])
    at.run()
    assert not at.exception
    assert "not found in the run store" in _texts(at)
    assert at.query_params["run"] == s["scratch"]  # falls back to her own run, never bob's


def test_a_student_sees_nothing_with_star_no_workspace_or_a_wrong_token(store_copy, monkeypatch):  # noqa: F811
    s = _class_store(store_copy, monkeypatch)
    for params, words in (
        ({"workspace": "*"}, "only the instructor sees every workspace"),
        ({}, "type your workspace name"),
        ({"workspace": "*", "token": "not-the-token"}, "instructor token: not accepted"),
        ({"workspace": "../etc"}, "use letters"),
    ):
        at = make_app(monkeypatch, s["root"], "views/home.py", **params)
        at.run()
        assert not at.exception and _shown_runs(at) == set(), params
        text = _texts(at)
        assert words in text and "bob" not in text and "alice" not in text


def test_the_instructor_link_opens_every_workspace(store_copy, monkeypatch):  # noqa: F811
    s = _class_store(store_copy, monkeypatch)
    at = make_app(monkeypatch, s["root"], "views/home.py", workspace="*", token=TOKEN)
    at.run()
    assert not at.exception
    assert _shown_runs(at) == {s["scratch"], s["kd"], s["teacher"]}
    at = make_app(monkeypatch, s["root"], "views/home.py", workspace="bob", token=TOKEN)
    at.run()
    assert _shown_runs(at) == {s["kd"]} and "wskey" not in at.query_params  # no claim for the instructor


def test_store_wide_changes_are_the_instructor_s(store_copy, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    s = _class_store(store_copy, monkeypatch)
    monkeypatch.setenv("WORKBENCH_RUNS", s["root"])

    def script():
        from app.lib import layout, state

        with layout.guard():
            state.require_store_change("adding a dataset")
            import streamlit as st

            st.success("allowed")

    student = AppTest.from_function(script, default_timeout=60)
    student.query_params["workspace"] = "erin"
    student.run()
    assert [e.value for e in student.error] == [
        "adding a dataset: only the instructor can change what the whole class shares"
    ]
    teacher = AppTest.from_function(script, default_timeout=60)
    teacher.query_params["token"] = TOKEN
    teacher.run()
    assert not teacher.error and teacher.success[0].value == "allowed"
    monkeypatch.delenv("WORKBENCH_INSTRUCTOR_TOKEN")
    solo = AppTest.from_function(script, default_timeout=60)
    solo.run()
    assert solo.success[0].value == "allowed"  # no class mode: one user, who may change the store
