"""Tags and notes on runs and experiments (workbench.runs.annotations): the library, the search every
run picker uses, the CLI, the panels and the app, and round trips between the faces."""
# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)

from __future__ import annotations

import json

import pytest
from app_fixtures import make_app, no_exception, store_copy, tiny_store  # noqa: F401
from typer.testing import CliRunner

from workbench.cli import app as cli
from workbench.config import validate_config
from workbench.runs import (
    AnnotationError,
    Annotations,
    RunStore,
    add_tags,
    annotate,
    experiment_target,
    matches,
    parse_tags,
    read_annotations,
    remove_tags,
    set_note,
    set_tags,
)
from workbench.runs.annotations import MAX_NOTE_CHARS, MAX_TAGS, check_experiment_name

runner = CliRunner()


def _make(store: RunStore, name: str, kind: str = "student", methods: str | None = None, model: str = "mlp"):
    """A run as the store creates it (status running, this process), no training."""
    cfg = {"kind": kind, "name": name, "data": {"dataset": "digits"}, "model": {"name": model}}
    if methods:
        cfg["teachers"] = [{"source": "shipped:mnist"}]
        cfg["distill"] = {"methods": methods}
    return store.load(store.create(validate_config(cfg)).id)


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


# ---- the library -------------------------------------------------------------------------------
def test_tags_and_note_round_trip_in_their_own_file(store):
    run = _make(store, "scratchy")
    before = {name: (run.path / name).read_bytes() for name in ("status.json", "config.yaml")}
    assert read_annotations(run) == Annotations()
    assert add_tags(run, "baseline, lr:0.1 Baseline").tags == ("baseline", "lr:0.1")  # case: one tag
    assert add_tags(run, ["seed-0", "LR:0.1"]).tags == ("baseline", "lr:0.1", "seed-0")
    assert set_note(run, "  first try\n\nsecond line \n").note == "first try\n\nsecond line"
    assert remove_tags(run, ["BASELINE", "never-there"]).tags == ("lr:0.1", "seed-0")
    got = read_annotations(run)
    assert got == Annotations(("lr:0.1", "seed-0"), "first try\n\nsecond line")
    assert json.loads((run.path / "annotations.json").read_text()) == {
        "tags": ["lr:0.1", "seed-0"], "note": "first try\n\nsecond line"
    }
    assert run.summary()["tags"] == ["lr:0.1", "seed-0"]
    assert set_tags(run, []).tags == () and read_annotations(run).note == "first try\n\nsecond line"  # note kept
    assert annotate(run, tags="a b", note="").to_dict() == {"tags": ["a", "b"], "note": "", "damage": None}
    # config and status are never touched; the run (still "running") stays healthy
    assert before == {name: (run.path / name).read_bytes() for name in before}
    assert run.damage is None and run.status["status"] == "running"
    assert not list(run.path.glob("*.tmp"))


def test_experiments_are_annotated_beside_the_runs(store):
    target = experiment_target(store, "grid-1")
    assert target.file == store.root / "experiments" / "grid-1.annotations.json"
    assert read_annotations(target) == Annotations()
    annotate(target, tags=["dkd-vs-kd"], note="5 seeds")
    assert read_annotations(experiment_target(str(store.root), "grid-1")) == Annotations(("dkd-vs-kd",), "5 seeds")
    # the store as a folder's Path (whose own .root is "/") names the same file
    assert experiment_target(store.root, "grid-1").file == target.file
    assert store.ids() == []  # the experiments folder is not a run
    for bad in ("../x", "", "a/b", ".hidden", "x" * 81, None):
        with pytest.raises(AnnotationError, match="not a plain name"):
            experiment_target(store, bad)
    assert check_experiment_name("fashion-methods.v2") == "fashion-methods.v2"


@pytest.mark.parametrize("bad", ["a b", "", "x" * 41, "é", "a/b", "a,b;c", "#1"])
def test_a_bad_tag_is_one_line_naming_it(store, bad):
    run = _make(store, "r")
    with pytest.raises(AnnotationError) as info:
        add_tags(run, [bad])
    message = str(info.value)
    assert "\n" not in message and message.startswith("tag ") and repr(bad)[:20] in message
    assert not (run.path / "annotations.json").exists()


def test_limits_on_tags_and_notes(store):
    run = _make(store, "r")
    assert len(set_tags(run, [f"t{i}" for i in range(MAX_TAGS)]).tags) == MAX_TAGS
    with pytest.raises(AnnotationError, match=f"at most {MAX_TAGS}"):
        add_tags(run, ["one-more"])
    with pytest.raises(AnnotationError, match="at most 10,000"):
        set_note(run, "x" * (MAX_NOTE_CHARS + 1))
    with pytest.raises(AnnotationError, match="expected text"):
        set_note(run, None)
    with pytest.raises(AnnotationError, match="tag int"):
        parse_tags([3])
    assert len(read_annotations(run).tags) == MAX_TAGS  # nothing was written by the refused calls
    assert set_note(run, "y" * MAX_NOTE_CHARS).note == "y" * MAX_NOTE_CHARS


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "annotations.json: not valid JSON (line 1, column 2)"),
        ("[1, 2]", "annotations.json: expected a JSON object, got a list"),
        ('{"tags": "a"}', "annotations.json: 'tags' is not a list of plain tags"),
        ('{"tags": ["a b"]}', "annotations.json: 'tags' is not a list of plain tags"),
        ('{"note": 3}', "annotations.json: 'note' is not text"),
        (b"\xff\xfe", "annotations.json: not UTF-8 text"),
    ],
)
def test_a_damaged_file_reads_as_empty_with_a_reason(store, content, reason):
    run = _make(store, "r")
    other = _make(store, "healthy")
    data = content if isinstance(content, bytes) else content.encode()
    (run.path / "annotations.json").write_bytes(data)
    got = read_annotations(run)
    assert got.tags == () and got.note == "" and got.damage is not None and got.damage.startswith(reason)
    # never fatal: the listing, the summary and the search go on; the next write replaces the file
    assert {r.id for r in store.list()} == {run.id, other.id}
    assert run.summary()["tags"] == [] and run.damage is None
    assert matches(run, "r") and not matches(run, "tag:a")
    assert add_tags(run, "fixed") == Annotations(("fixed",), "")
    assert read_annotations(run).damage is None


def test_a_removed_run_is_not_recreated(store):
    run = _make(store, "r")
    store.remove(run.id, force=True)
    with pytest.raises(AnnotationError, match="directory is gone"):
        set_tags(run, ["x"])
    assert not run.path.exists()


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("", True),
        ("   ", True),
        ("kd", True),  # the method
        ("KD", True),  # case ignored
        ("tiny-KD", True),  # the name
        ("digits", True),  # the dataset
        ("distill", True),  # the kind
        ("cnn_small", True),  # the model
        ("shipped", False),  # the teacher is not searched
        ("tag:baseline", True),
        ("tag:BASELINE", True),
        ("tag:base", False),  # a tag matches whole
        ("base", True),  # a word matches part of a tag
        ("tag:", True),  # any tag
        ("warm-up", True),  # part of the note
        ("kd warm-up tag:lr:0.1", True),  # every word must match
        ("kd resnet", False),
        ("zzz", False),
    ],
)
def test_matches_truth_table(store, search, found):
    run = _make(store, "tiny-kd", "distill", "0.9*kd", "cnn_small")
    annotate(run, tags=["baseline", "lr:0.1"], note="Long warm-up; see the teacher")
    assert matches(run, search) is found
    assert matches(run, search, summary=run.summary()) is found


def test_matches_the_id_and_runs_without_tags(store):
    run = _make(store, "plain")
    assert matches(run, run.id[-4:]) and matches(run, run.id.upper())
    assert not matches(run, "tag:")
    with pytest.raises(AnnotationError, match="search: expected text"):
        matches(run, None)


# ---- the CLI -----------------------------------------------------------------------------------
def _cli(*args: str, input: str | None = None):
    return runner.invoke(cli, list(args), input=input)


def test_cli_tag_note_and_list(store):
    kd = _make(store, "tiny-kd", "distill", "0.9*kd")
    scratch = _make(store, "tiny-scratch")
    root = str(store.root)
    res = _cli("runs", "tag", kd.id[:-2], "baseline", "lr:0.1", "--runs", root)  # a prefix names the run
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"{kd.id}: tags baseline lr:0.1"
    removed = _cli("runs", "tag", kd.id, "lr:0.1", "--remove", "--runs", root)
    assert removed.output.strip() == f"{kd.id}: tags baseline"
    assert _cli("runs", "note", kd.id, "-", "--runs", root, input="from stdin\nline two\n").exit_code == 0
    assert read_annotations(kd).note == "from stdin\nline two"
    assert _cli("runs", "note", kd.id, "--runs", root).output.strip() == "from stdin\nline two"
    assert _cli("runs", "note", scratch.id, "quick [b]look[/b] :x:", "--runs", root).exit_code == 0
    assert _cli("runs", "note", scratch.id, "--runs", root).output.strip() == "quick [b]look[/b] :x:"

    listed = _cli("runs", "list", "--runs", root)
    assert listed.exit_code == 0 and "tags" in listed.output and "baseline" in listed.output
    only = _cli("runs", "list", "--tag", "baseline", "--runs", root).output
    assert kd.id in only and scratch.id not in only
    found = _cli("runs", "list", "--search", "quick scratch", "--runs", root).output
    assert scratch.id in found and kd.id not in found
    assert _cli("runs", "list", "--tag", "nope", "--runs", root).output.strip() == "no runs"

    assert _cli("runs", "note", kd.id, "--clear", "--runs", root).output.strip() == f"{kd.id}: note cleared"
    assert read_annotations(kd) == Annotations(("baseline",), "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("runs", "tag", "RUN", "a b"), "error: tag 'a b': not a plain tag"),
        (("runs", "tag", "RUN", "x" * 41), "error: tag 'xxxx"),
        (("runs", "list", "--tag", "a/b"), "error: tag 'a/b'"),
        (("runs", "note", "RUN", "text", "--clear"), "error: runs note: give a note or --clear"),
        (("runs", "tag", "no-such-run", "a"), "error: run 'no-such-run': not found"),
    ],
)
def test_cli_bad_input_is_one_line(store, args, expected):
    run = _make(store, "r")
    res = _cli(*[run.id if a == "RUN" else a for a in args], "--runs", str(store.root))
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), res.output


def test_cli_note_of_a_damaged_file_says_so(store):
    run = _make(store, "r")
    (run.path / "annotations.json").write_text("{")
    res = _cli("runs", "note", run.id, "--runs", str(store.root))
    assert res.exit_code == 0 and "damaged: annotations.json: not valid JSON" in res.output
    assert "no note" in res.output


# ---- the panels --------------------------------------------------------------------------------
def test_compare_runs_search_filters_the_runs_offered(store):
    from workbench.widgets import CompareRuns

    kd = _make(store, "tiny-kd", "distill", "0.9*kd")
    scratch = _make(store, "tiny-scratch")
    add_tags(kd, "baseline")
    panel = CompareRuns(store=store)
    assert set(panel.controls["runs"].options) == {kd.id, scratch.id}
    panel.set(search="tag:baseline")
    assert panel.error is None and list(panel.controls["runs"].options) == [kd.id]
    panel.controls["search"].value = "scratch"  # as typed in the browser
    assert list(panel.controls["runs"].options) == [scratch.id]
    panel.set(runs=[kd.id])  # a chosen run stays offered whatever the search
    assert panel.error is None and set(panel.controls["runs"].options) == {kd.id, scratch.id}
    assert panel.table[0]["tags"] == ["baseline"]
    panel.set(search="")
    assert set(panel.controls["runs"].options) == {kd.id, scratch.id}
    assert CompareRuns(store=store, search="nothing-matches").controls["runs"].options == ()
    panel.set(search=3)
    assert panel.error == "search: expected text of at most 200 characters, got '3'"


def test_run_notes_panel_edits_and_saves(store):
    from workbench.widgets import RunNotes

    run = _make(store, "r")
    other = _make(store, "other")
    annotate(run, tags=["old"], note="was here")
    panel = RunNotes(run.id, store=store)
    assert panel.error is None and panel.value("tags") == "old" and panel.value("note") == "was here"
    panel.set(tags="old, new", note="edited")
    assert read_annotations(run).tags == ("old",)  # an edit waits for save
    panel.save()
    assert panel.error is None and "saved" in panel.status.value
    assert read_annotations(run) == Annotations(("old", "new"), "edited") == panel.result
    panel.set(tags="bad tag!")
    panel.save()
    assert panel.error.startswith("tag 'tag!'") and read_annotations(run).tags == ("old", "new")
    panel.set(run=other.id)  # another run: its own (empty) tags and note are loaded
    assert panel.value("tags") == "" and panel.value("note") == ""
    panel.save_button.click()
    assert read_annotations(other) == Annotations()
    panel.set(run="no-such-run")
    assert "no-such-run" in panel.error


# ---- the app -----------------------------------------------------------------------------------
def _by_label(elements, label: str):
    return next(e for e in elements if e.label == label)


def test_tags_round_trip_between_the_app_and_the_cli(monkeypatch, store_copy):
    root, kd = store_copy["root"], store_copy["kd"]
    at = make_app(monkeypatch, root, "views/home.py", run=kd)
    at.run()
    no_exception(at)
    _by_label(at.text_input, "Tags").set_value("baseline, from-app")
    _by_label(at.text_area, "Note").set_value("saved in the app")
    at.button(key=f"save_notes:run {kd}").click().run()
    no_exception(at)
    assert any("Saved run" in t.value for t in at.toast)
    table = at.dataframe[0].value
    assert list(table.loc[table["id"] == kd, "tags"].iloc[0]) == ["baseline", "from-app"]
    shown = _cli("runs", "list", "--tag", "from-app", "--runs", root).output
    assert kd in shown and store_copy["scratch"] not in shown
    assert _cli("runs", "note", kd, "--runs", root).output.strip() == "saved in the app"

    # the other way: the CLI writes, the app shows it (the inputs follow the file)
    assert _cli("runs", "tag", kd, "from-cli", "--runs", root).exit_code == 0
    assert _cli("runs", "note", kd, "written by the CLI", "--runs", root).exit_code == 0
    at.run()
    no_exception(at)
    assert _by_label(at.text_input, "Tags").value == "baseline, from-app, from-cli"
    assert _by_label(at.text_area, "Note").value == "written by the CLI"

    _by_label(at.text_input, "Tags").set_value("no spaces/slashes")
    at.button(key=f"save_notes:run {kd}").click().run()
    assert any("tag 'spaces/slashes'" in e.value for e in at.error)
    assert read_annotations(RunStore(root).load(kd)).tags == ("baseline", "from-app", "from-cli")

    at.text_input(key="qp:search").set_value("tag:from-cli").run()  # the runs table is searched too
    no_exception(at)
    assert list(at.dataframe[0].value["id"]) == [kd]


def _offered(at) -> set[str]:
    """The last four characters of the ids the run picker offers (its labels end with ``(abcd)``)."""
    return {o[-5:-1] for o in at.selectbox(key="qp:run").options}


def test_run_picker_search_is_bound_to_the_url(monkeypatch, store_copy):
    root, scratch, kd = store_copy["root"], store_copy["scratch"], store_copy["kd"]
    teacher = store_copy["teacher"]
    add_tags(RunStore(root).load(scratch), "baseline")
    at = make_app(monkeypatch, root, "views/training.py", search="tag:baseline", run=kd)
    at.run()
    no_exception(at)
    assert at.text_input(key="qp:search").value == "tag:baseline"
    assert any("1 of 3 runs match 'tag:baseline'" in c.value for c in at.caption)
    # the match, and the run the page shows (a search never changes it); not the teacher
    assert _offered(at) == {scratch[-4:], kd[-4:]} and at.selectbox(key="qp:run").value == kd
    at.selectbox(key="qp:run").set_value(scratch).run()
    assert _offered(at) == {scratch[-4:]}

    at.text_input(key="qp:search").set_value("nothing-like-this").run()
    no_exception(at)
    assert at.query_params["search"] == "nothing-like-this"
    assert any("0 of 3 runs match" in c.value for c in at.caption)
    assert _offered(at) == {scratch[-4:]} and at.selectbox(key="qp:run").value == scratch

    at.text_input(key="qp:search").set_value("").run()
    assert _offered(at) == {scratch[-4:], kd[-4:], teacher[-4:]}
    assert not any("runs match" in c.value for c in at.caption)
