"""Class mode: who may open which workspace (workbench.workspaces.decide_access), failing closed."""

from __future__ import annotations

import json
import threading

import pytest

from workbench.serve import ServeError, build_env, class_lines
from workbench.workspaces import (
    TOKEN_ENV,
    WorkspaceError,
    check_token,
    claim_workspace,
    claims_dir,
    decide_access,
    key_opens,
    release_workspace,
)

TOKEN = "teach-3rd-period"


def _access(root, ws, key=None, token=None, server=TOKEN):
    return decide_access(root, ws, key=key, token=token, instructor_token=server)


def test_without_a_token_a_workspace_is_a_view(tmp_path):
    acc = _access(tmp_path, "alice", server=None)
    assert (acc.workspace, acc.class_mode, acc.instructor, acc.new_key, acc.error) == ("alice", False, False, None, None)
    assert _access(tmp_path, "*", server=None).sees_all and _access(tmp_path, None, server=None).sees_all
    assert not claims_dir(tmp_path).exists()  # nothing is claimed outside class mode


def test_a_malformed_name_sees_nothing_never_everything(tmp_path):
    for server in (None, TOKEN):
        acc = _access(tmp_path, "../x", server=server)
        assert acc.sees_nothing and not acc.sees_all and acc.workspace is None
        assert "use letters" in acc.error and "nothing is shown" in acc.error


def test_the_first_session_claims_a_name_and_only_its_key_opens_it(tmp_path):
    first = _access(tmp_path, "alice")
    assert first.workspace == "alice" and first.new_key and not first.sees_nothing and not first.sees_all
    stored = json.loads((claims_dir(tmp_path) / "alice.json").read_text())
    assert first.new_key not in json.dumps(stored)  # only the hash is kept
    again = _access(tmp_path, "alice", key=first.new_key)
    assert again.workspace == "alice" and again.new_key is None and again.error is None
    for key in (None, "", "wrong-key", first.new_key + "x"):
        other = _access(tmp_path, "alice", key=key)
        assert other.sees_nothing and other.workspace is None
        assert "taken by another session" in other.error
    bob = _access(tmp_path, "bob")
    assert bob.workspace == "bob" and bob.new_key != first.new_key
    assert not key_opens(tmp_path, "bob", first.new_key)  # one workspace's key opens no other


def test_a_student_cannot_see_every_workspace_or_none(tmp_path):
    for ws in ("*", None, ""):
        acc = _access(tmp_path, ws)
        assert acc.sees_nothing and not acc.sees_all and not acc.may_change_store
    assert "only the instructor" in _access(tmp_path, "*").error
    assert "type your workspace name" in _access(tmp_path, None).error


def test_the_token_opens_everything_and_a_wrong_one_nothing(tmp_path):
    alice = _access(tmp_path, "alice")
    teacher = _access(tmp_path, "*", token=TOKEN)
    assert teacher.instructor and teacher.sees_all and teacher.may_change_store
    inside = _access(tmp_path, "alice", token=TOKEN)  # the instructor opens alice without her key
    assert inside.workspace == "alice" and inside.instructor and inside.new_key is None
    wrong = _access(tmp_path, "*", token=TOKEN[:-1] + "X")
    assert wrong.sees_nothing and wrong.error == "instructor token: not accepted; nothing is shown"
    assert "alice" not in wrong.error and alice.new_key
    student = _access(tmp_path, "alice", key=alice.new_key)
    assert not student.may_change_store  # a student changes nothing the whole class shares


def test_a_damaged_claim_opens_for_nobody(tmp_path):
    claim_workspace(tmp_path, "carol")
    (claims_dir(tmp_path) / "carol.json").write_text("{trunc")
    acc = _access(tmp_path, "carol", key="anything")
    assert acc.sees_nothing and "taken by another session" in acc.error


def test_claims_race_one_winner(tmp_path):
    results: list[object] = []

    def claim():
        try:
            results.append(claim_workspace(tmp_path, "dave"))
        except WorkspaceError as err:
            results.append(err)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [r for r in results if isinstance(r, str)]
    assert len(keys) == 1 and key_opens(tmp_path, "dave", keys[0])
    assert all("taken by another session" in str(r) for r in results if not isinstance(r, str))
    assert release_workspace(tmp_path, "dave") and not release_workspace(tmp_path, "dave")
    assert _access(tmp_path, "dave").new_key  # released: the next session claims it again


def test_token_rules_and_the_app_environment():
    assert check_token(None) is None and check_token("  ") is None and check_token(TOKEN) == TOKEN
    for bad in ("short", "has space in it", "semi;colon-token", "ünïcode-token"):
        with pytest.raises(WorkspaceError, match="instructor token: expected at least 8"):
            check_token(bad)
    assert build_env(base={}, instructor_token=TOKEN)[TOKEN_ENV] == TOKEN
    assert TOKEN_ENV not in build_env(base={})
    assert build_env(base={TOKEN_ENV: TOKEN})[TOKEN_ENV] == TOKEN
    with pytest.raises(ServeError, match="^--instructor-token: expected"):
        build_env(base={}, instructor_token="short")
    with pytest.raises(ServeError, match=r"^\$WORKBENCH_INSTRUCTOR_TOKEN: expected"):
        build_env(base={TOKEN_ENV: "x"})
    assert class_lines("http://localhost:8501", None) == []
    lines = class_lines("http://localhost:8501", TOKEN)
    assert lines[1].endswith(f"http://localhost:8501/?token={TOKEN}") and TOKEN not in lines[0]


def test_workbench_app_prints_the_class_links_and_gives_the_store_the_class_cap(tmp_path, monkeypatch, capsys):
    """``serve`` (what ``workbench app`` runs) prints the class's links and gives the store the class's cap."""
    import subprocess
    import sys

    from workbench import serve as serve_module
    from workbench.jobs import JobQueue

    monkeypatch.setattr(serve_module, "start", lambda *a, **k: subprocess.Popen([sys.executable, "-c", "pass"]))
    root = tmp_path / "runs"
    assert serve_module.serve(port=8765, runs=root, max_jobs=2, instructor_token=TOKEN) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:8765/?token={TOKEN}" in out and "cap 4 jobs per workspace" in out
    assert JobQueue(root).settings().cap == 4


def test_the_app_server_s_scheduler_is_built_from_the_app_s_environment(tmp_path):
    from workbench.app_server import queue_ticker

    env = {"WORKBENCH_RUNS": str(tmp_path), "WORKBENCH_MAX_JOBS": "3", "WORKBENCH_WARM_WORKERS": "0",
           "WORKBENCH_TICK_S": "0.5"}
    ticker = queue_ticker(env)
    try:
        assert ticker.every == 0.5 and ticker.queue.max_jobs == 3 and not ticker.queue.warm  # none started here
        assert ticker.queue.root == tmp_path and ticker.alive
    finally:
        assert ticker.stop()
    for name, bad in (("WORKBENCH_TICK_S", "0"), ("WORKBENCH_MAX_JOBS", "two")):
        with pytest.raises(ValueError, match=rf"^\${name}: expected a positive number, got '{bad}'$"):
            queue_ticker({**env, name: bad})


def test_cli_class_release(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    claim_workspace(tmp_path, "alice")
    runner = CliRunner()
    res = runner.invoke(app, ["class", "release", "alice", "--runs", str(tmp_path)])
    assert res.exit_code == 0 and "workspace alice: released" in res.output
    assert not (claims_dir(tmp_path) / "alice.json").exists()
    res = runner.invoke(app, ["class", "release", "alice", "--runs", str(tmp_path)])
    assert res.exit_code == 0 and "was not claimed" in res.output
    for bad in ("../x", "*"):
        res = runner.invoke(app, ["class", "release", bad, "--runs", str(tmp_path)])
        assert res.exit_code == 2 and "workspace" in res.output
