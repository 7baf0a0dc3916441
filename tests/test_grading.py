"""Graded lessons: nbgrader's solution markers and hidden checks in every lesson, student versions
without answers, a grader that scores a right, a wrong, an unanswered, a broken and an unreadable
collected notebook, its CSV, and the link that opens the app on a lesson's run.

Grading executes notebooks, so the behaviour is checked on a tiny lesson built here with the lessons'
conventions (a few kernel starts); one real lesson is graded end to end in a slow test. The lessons
themselves are executed, hidden checks included, by tests/test_notebooks.py.
"""

from __future__ import annotations

import ast
import copy
import csv
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from workbench import grading  # noqa: E402
from workbench.grading import (  # noqa: E402
    GradingError,
    grade_folder,
    lesson_exercises,
    lessons_dir,
    solution_lines,
    strip_solutions,
    student_version,
    write_student_versions,
)
from workbench.lessons import APP_PAGES, DEFAULT_APP_URL, app_link, app_link_markdown  # noqa: E402

LESSONS = sorted(lessons_dir().glob("[0-9][0-9]_*.ipynb"))


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _code_lines(source: str) -> set[str]:
    return {line.strip() for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")}


# ---- the markers ---------------------------------------------------------------------------------


def test_strip_solutions_replaces_each_region_at_its_indentation():
    source = (
        "def f(x):\n"
        "    ### BEGIN SOLUTION\n"
        "    y = x + 1\n"
        "    return y\n"
        "    ### END SOLUTION\n"
        "\n"
        "given = 3\n"
        "### BEGIN SOLUTION\n"
        "answer = f(given)\n"
        "### END SOLUTION"
    )
    assert strip_solutions(source) == (
        "def f(x):\n"
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()\n"
        "\n"
        "given = 3\n"
        "# YOUR CODE HERE\n"
        "raise NotImplementedError()"
    )
    assert solution_lines(source) == ["    y = x + 1", "    return y", "answer = f(given)"]
    assert strip_solutions("x = 1\ny = 2") == "x = 1\ny = 2"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("### BEGIN SOLUTION\nx = 1\n", "line 1 without '### END SOLUTION'"),
        ("x = 1\n### END SOLUTION\n", "line 2 without '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "line 2 inside another solution"),
    ],
)
def test_unbalanced_markers_are_one_line_errors(source: str, words: str):
    with pytest.raises(GradingError) as e:
        strip_solutions(source, where="lesson 9, cell 4")
    assert str(e.value).startswith("lesson 9, cell 4: ") and words in str(e.value) and "\n" not in str(e.value)


# ---- the seven lessons ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_marks_its_solutions_points_and_hidden_checks(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["workbench"]["lesson"] == path.stem
    exercises = lesson_exercises(nb, lesson=path.stem)
    answers = [c for c in nb.cells if "exercise" in _tags(c)]
    assert [e.id for e in exercises] == [c.metadata["exercise"] for c in answers] and len(exercises) >= 1
    for exercise, cell in zip(exercises, answers, strict=True):
        assert exercise.points > 0
        assert _code_lines("\n".join(solution_lines(cell.source))), f"{path.stem} {exercise.id}: empty solution"
        compile(exercise.hidden, f"{path.stem}:hidden-check[{exercise.id}]", "exec")
        assert re.search(r"^\s*assert ", exercise.hidden, re.M), f"{path.stem} {exercise.id}: a hidden check asserts"


def test_student_versions_hold_no_answers_but_keep_the_public_checks(tmp_path: Path):
    written = write_student_versions(lessons_dir(), tmp_path / "student")
    assert [p.name for p in written] == [p.name for p in LESSONS]
    for source, target in zip(LESSONS, written, strict=True):
        teacher, student = nbformat.read(source, as_version=4), nbformat.read(target, as_version=4)
        nbformat.validate(student)
        name = source.stem
        assert student.metadata["workbench"]["lesson"] == name and "jupytext" not in student.metadata
        assert not [c for c in student.cells if {"hidden-check", "wrong-answer"} & set(_tags(c))]
        text = "\n".join(c.source for c in student.cells)
        assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text
        # no line of a solution survives, unless the instructor version has it outside the solutions too
        solutions = set().union(*(_code_lines("\n".join(solution_lines(c.source))) for c in teacher.cells))
        kept = [c for c in teacher.cells if not {"hidden-check", "wrong-answer"} & set(_tags(c))]
        elsewhere = set().union(*(_code_lines(strip_solutions(c.source)) for c in kept if c.cell_type == "code"))
        leaked = (solutions - elsewhere) & set().union(*(_code_lines(c.source) for c in student.cells))
        assert not leaked, f"{name}: solution lines in the student version: {sorted(leaked)}"
        # the same cells otherwise: every answer cell stubbed, with its id and points; checks unchanged
        assert [c.source if c.cell_type != "code" else strip_solutions(c.source) for c in kept] == [
            c.source for c in student.cells
        ]
        for t, s in zip(kept, student.cells, strict=True):
            assert s.metadata == t.metadata
            if s.cell_type == "code":
                assert s.outputs == [] and s.execution_count is None
            if "exercise" in _tags(s):
                assert "raise NotImplementedError()" in s.source
        checks = [c.source for c in kept if c.cell_type == "code" and re.search(r"\bcheck\(", c.source)]
        assert len(checks) >= len(lesson_exercises(teacher, lesson=name))


def test_student_versions_never_overwrite_the_instructor_versions(tmp_path: Path):
    with pytest.raises(GradingError, match="--out: .* the instructor versions' folder"):
        write_student_versions(lessons_dir(), lessons_dir())
    with pytest.raises(GradingError, match="no lessons"):
        write_student_versions(tmp_path, tmp_path / "out")


# ---- a tiny lesson with the same conventions -------------------------------------------------------


def _cell(kind: str, source: str, *tags: str, **meta):
    make = {"code": nbformat.v4.new_code_cell, "raw": nbformat.v4.new_raw_cell, "markdown": nbformat.v4.new_markdown_cell}
    metadata = dict(meta)
    if tags:
        metadata["tags"] = list(tags)
    return make[kind](source, metadata=metadata)


def _tiny_lesson():
    """Two exercises: ``square`` (2 points) and ``double`` (1 point), each with a wrong answer, a
    hidden check and a public check."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["workbench"] = {"lesson": "01_tiny"}
    nb.cells = [
        _cell("markdown", "# Tiny lesson\n\nLearning goals: squares and doubles."),
        _cell("code", "from workbench.lessons import check\n\nbase = 3"),
        _cell("code", "### BEGIN SOLUTION\nsquare = base ** 2\n### END SOLUTION", "exercise", exercise="1", points=2),
        _cell("raw", "square = base * 2", "wrong-answer", exercise="1"),
        _cell("raw", 'assert square == 9, f"square = {square}, expected 9"', "hidden-check", exercise="1"),
        _cell("code", 'check(square == 9, "9 it is", "square the base")'),
        _cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
              "exercise", exercise="2", points=1),
        _cell("raw", "def double(x):\n    return x + 2", "wrong-answer", exercise="2"),
        _cell("raw", 'assert double(21) == 42, "double(21) should be 42"', "hidden-check", exercise="2"),
        _cell("code", 'check(double(5) == 10, "doubled", "twice x")'),
    ]
    return nb


def _answer(nb, exercise: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if "exercise" in _tags(c) and c.metadata["exercise"] == exercise)


def _wrong(nb, exercise: str) -> str:
    return next(c.source for c in nb.cells if "wrong-answer" in _tags(c) and c.metadata["exercise"] == exercise)


def test_bad_instructor_notebooks_are_one_line_errors():
    nb = _tiny_lesson()
    del nb.cells[_answer(nb, "1")].metadata["points"]
    with pytest.raises(GradingError, match=r"^tiny, exercise 1: cell metadata 'points' must be a positive number"):
        lesson_exercises(nb, lesson="tiny")
    nb = _tiny_lesson()
    nb.cells = [c for c in nb.cells if not ("hidden-check" in _tags(c) and c.metadata["exercise"] == "2")]
    with pytest.raises(GradingError, match=r"^tiny, exercise 2: expected one 'hidden-check' cell, found 0$"):
        lesson_exercises(nb, lesson="tiny")
    nb = _tiny_lesson()
    nb.cells[_answer(nb, "2")].source = "def double(x):\n    return 2 * x"
    with pytest.raises(GradingError, match=r"^tiny, exercise 2: no '### BEGIN SOLUTION'"):
        lesson_exercises(nb, lesson="tiny")


def _write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_grading_a_class(tmp_path: Path):
    """One folder, one CSV: right, unanswered, wrong, a deleted cell beside a failing one, a cell that
    runs too long, an unreadable file named after its lesson and one named after none."""
    teacher = _tiny_lesson()
    lessons = _write(tmp_path / "lessons" / "01_tiny.ipynb", teacher)
    handed_out = student_version(teacher)
    wrong = copy.deepcopy(teacher)
    wrong.cells[_answer(wrong, "1")].source = _wrong(teacher, "1")
    deleted = copy.deepcopy(teacher)
    del deleted.cells[_answer(deleted, "2")]
    deleted.cells.insert(2, _cell("code", "1 / 0"))  # a failing cell that is no exercise
    slow = copy.deepcopy(teacher)
    slow.cells[_answer(slow, "1")].source = "import time\ntime.sleep(120)\nsquare = 9"

    collected = tmp_path / "collected"
    _write(collected / "alice" / "01_tiny.ipynb", teacher)
    _write(collected / "bob" / "01_tiny.ipynb", handed_out)
    _write(collected / "carol-lesson-one.ipynb", wrong)  # renamed: the metadata names the lesson
    _write(collected / "dave" / "01_tiny.ipynb", deleted)
    _write(collected / "erin" / "01_tiny.ipynb", slow)
    (collected / "frank").mkdir()
    (collected / "frank" / "01_tiny.ipynb").write_text("{ not json", encoding="utf-8")
    (collected / "grace").mkdir()
    (collected / "grace" / "scratch.ipynb").write_text("{ not json", encoding="utf-8")

    out = grade_folder(collected, out_csv=tmp_path / "grades.csv", source=lessons.parent, timeout=6)
    assert out == tmp_path / "grades.csv"
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(grading.CSV_COLUMNS)
    table = {(r["student"], r["exercise"]): (r["points"], r["max_points"], r["reason"]) for r in rows}
    assert len(rows) == 6 * 3 + 1, rows  # six notebooks of the lesson (2 exercises + total), one of none

    assert table[("alice", "1")] == ("2", "2", "") and table[("alice", "2")] == ("1", "1", "")
    assert table[("alice", "total")] == ("3", "3", "")
    not_answered = "not answered: the cell still raises NotImplementedError"
    assert table[("bob", "1")] == ("0", "2", not_answered) and table[("bob", "2")] == ("0", "1", not_answered)
    assert table[("bob", "total")] == ("0", "3", "2 of 2 exercises without points")
    assert table[("carol-lesson-one", "1")] == ("0", "2", "hidden check failed: square = 6, expected 9")
    assert table[("carol-lesson-one", "2")] == ("1", "1", "")
    assert table[("dave", "1")] == ("2", "2", "")  # graded although an earlier cell raised
    assert table[("dave", "2")][:2] == ("0", "1") and table[("dave", "2")][2].startswith("no answer cell")
    assert table[("erin", "1")][:2] == ("0", "2") and "longer than 6 s" in table[("erin", "1")][2]
    assert table[("erin", "2")] == ("1", "1", "")  # the kernel goes on after the stopped cell
    for exercise in ("1", "2"):
        points, _, reason = table[("frank", exercise)]
        assert points == "0" and reason.startswith("the notebook could not be read:"), reason
    points, most, reason = table[("grace", "total")]
    assert (points, most) == ("0", "0") and "cannot tell which lesson" in reason and "\n" not in reason
    assert {r["lesson"] for r in rows if r["student"] != "grace"} == {"01_tiny"}
    assert {r["notebook"] for r in rows if r["student"] == "alice"} == {"alice/01_tiny.ipynb"}


def test_grading_an_empty_folder_says_so(tmp_path: Path):
    with pytest.raises(GradingError, match="no collected notebooks"):
        grade_folder(tmp_path, source=lessons_dir())
    with pytest.raises(GradingError, match="not a folder"):
        grade_folder(tmp_path / "missing", source=lessons_dir())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grading_a_real_lesson_right_and_wrong(tmp_path: Path):
    """Lesson 7 end to end, once: with exercise 2's stored wrong answer in place of its answer, the
    collected notebook scores 0 on exercise 2 and full marks on exercise 1 (its reference answer).
    That every instructor version passes its hidden checks is tests/test_notebooks.py's part."""
    path = next(p for p in LESSONS if p.stem.startswith("07_"))
    teacher = nbformat.read(path, as_version=4)
    wrong = copy.deepcopy(teacher)
    wrong.cells[_answer(wrong, "2")].source = _wrong(teacher, "2")
    _write(tmp_path / "in" / "wrong" / path.name, wrong)
    out = grade_folder(tmp_path / "in", out_csv=tmp_path / "grades.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        table = {(r["student"], r["exercise"]): r for r in csv.DictReader(fh)}
    points = {e.id: e.points for e in lesson_exercises(teacher, lesson=path.stem)}
    assert set(points) == {"1", "2"}
    assert float(table[("wrong", "1")]["points"]) == points["1"] and table[("wrong", "1")]["reason"] == ""
    assert table[("wrong", "2")]["points"] == "0"
    assert table[("wrong", "2")]["reason"] == (
        "hidden check failed: ensemble_probs is not the mean of the generations' probabilities"
    )
    assert float(table[("wrong", "total")]["points"]) == points["1"]
    assert float(table[("wrong", "total")]["max_points"]) == sum(points.values())


# ---- the link into the app -------------------------------------------------------------------------


def test_app_link_spells_the_apps_url(monkeypatch):
    monkeypatch.delenv("WORKBENCH_APP_URL", raising=False)
    assert DEFAULT_APP_URL == "http://127.0.0.1:8501"
    assert app_link("kd-cnn_small-1") == "http://127.0.0.1:8501/training?run=kd-cnn_small-1"
    assert app_link("r1", page="compare", runs=["r1", "r2"], checkpoint=None, over=True, n_samples=500) == (
        "http://127.0.0.1:8501/compare?run=r1&runs=r1,r2&over=1&n_samples=500"
    )
    assert app_link("r 1", page="cams", layer="features.3") == "http://127.0.0.1:8501/cams?run=r%201&layer=features.3"
    monkeypatch.setenv("WORKBENCH_APP_URL", "https://class.example.org:9000/")
    assert app_link("r1", page="doctor", workspace="alice") == "https://class.example.org:9000/doctor?run=r1&workspace=alice"

    class Stored:
        id = "teacher-run"

    assert app_link(Stored(), page="home").endswith("/home?run=teacher-run")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"page": "nowhere"}, "page: 'nowhere' is not a page of the app"),
        ({"Bad Name": 1}, "'Bad Name': not a URL parameter"),
        ({"seed": object()}, "seed: expected a string, a number, a flag or a list"),
    ],
)
def test_app_link_rejects_bad_input_in_one_line(kwargs, words):
    with pytest.raises(ValueError) as e:
        app_link("r1", **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="run: expected a run"):
        app_link("  ")


def test_app_pages_are_the_apps_pages():
    """``APP_PAGES`` lists the url paths of ``app/main.py``'s ``PAGES``, in order (read from the source)."""
    tree = ast.parse((Path(__file__).resolve().parent.parent / "app" / "main.py").read_text(encoding="utf-8"))
    pages = next(
        node.value for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "PAGES"
    )
    assert APP_PAGES == tuple(url for *_, url in ast.literal_eval(pages))


def test_app_link_markdown_needs_the_run_in_the_store(tmp_path: Path, monkeypatch):
    pytest.importorskip("IPython")
    monkeypatch.delenv("WORKBENCH_APP_URL", raising=False)
    (tmp_path / "runs" / "kd-1").mkdir(parents=True)
    text = app_link_markdown("kd-1", store=tmp_path / "runs", page="similarity").data
    assert "(http://127.0.0.1:8501/similarity?run=kd-1)" in text
    assert f"workbench app --runs {(tmp_path / 'runs').resolve()}" in text
    with pytest.raises(ValueError, match=r"run kd-2: not in the run store .*; the app opens the runs of the store it serves"):
        app_link_markdown("kd-2", store=tmp_path / "runs")


def test_preset_link_opens_home_with_the_runs_settings(monkeypatch):
    from urllib.parse import parse_qs, urlsplit

    from workbench.lessons import preset_link

    monkeypatch.delenv("WORKBENCH_APP_URL", raising=False)
    config = {
        "data": {"dataset": "digits"},
        "model": {"name": "mlp"},
        "teachers": [{"source": "shipped:mnist"}],
        "distill": {"methods": [{"name": "kd", "weight": 0.9, "params": {"temperature": 2.0}}], "ce_weight": 0.1},
        "train": {"epochs": 3},
    }
    url = urlsplit(preset_link(config))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.netloc, url.path) == ("127.0.0.1:8501", "/")
    assert {k: query[k] for k in ("dataset", "student", "teacher", "methods", "epochs", "ce")} == {
        "dataset": "digits", "student": "mlp", "teacher": "shipped:mnist", "methods": "kd", "epochs": "3", "ce": "0.1"
    }
    assert query["w.kd"] == "0.9" and query["p.kd.temperature"] == "2.0"


# ---- the command -----------------------------------------------------------------------------------


def test_the_command_writes_student_versions_and_refuses_bad_folders(tmp_path: Path):
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["lessons", "student", str(lessons_dir()), "--out", str(tmp_path / "handout")])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "handout").iterdir()) == [p.name for p in LESSONS]
    assert f"{len(LESSONS)} student versions in" in done.output
    bad = runner.invoke(app, ["lessons", "grade", str(tmp_path / "nothing-here")])
    assert bad.exit_code == 2 and "not a folder of collected notebooks" in bad.output


@pytest.mark.slow
def test_the_command_grades_a_folder(tmp_path: Path):
    from typer.testing import CliRunner

    from workbench.cli import app

    teacher = _tiny_lesson()
    _write(tmp_path / "lessons" / "01_tiny.ipynb", teacher)
    _write(tmp_path / "in" / "alice" / "01_tiny.ipynb", teacher)
    done = CliRunner().invoke(
        app, ["lessons", "grade", str(tmp_path / "in"), "--lessons", str(tmp_path / "lessons"), "--timeout", "60"]
    )
    assert done.exit_code == 0, done.output
    with open(tmp_path / "in" / "grades.csv", newline="", encoding="utf-8") as fh:
        totals = [r for r in csv.DictReader(fh) if r["exercise"] == "total"]
    assert [(r["student"], r["points"], r["max_points"]) for r in totals] == [("alice", "3", "3")]
    assert "3 / 3" in done.output
