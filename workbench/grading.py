"""Graded lessons: student versions without the answers, and a grader that runs hidden checks.

The lessons follow nbgrader's conventions (docs/teaching.md, "Graded lessons"):

* An **exercise** is a code cell tagged ``exercise`` whose cell metadata holds its id
  (``exercise``: ``"1"``, unique in the lesson) and its ``points`` (a positive number). The reference
  answer sits between the lines ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the student version
  replaces each such region by nbgrader's stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``)
  and keeps the rest of the cell (a function's signature, given constants).
* Its **hidden check** is a raw cell tagged ``hidden-check`` with the same ``exercise`` id: Python that
  raises (an ``assert`` with a message) when the answer in the kernel is wrong. It is raw, so a lesson
  run for self-study never runs it; the student version drops it; the grader runs the instructor's
  copy right after the student's answer cell. The public check cell that follows every exercise
  (``workbench.lessons.check``) stays for self-study.
* A notebook names its lesson in its metadata (``workbench.lesson``), so a collected copy is matched
  to its instructor version whatever the file was renamed to.

:func:`grade_notebook` executes a collected notebook in a fresh kernel of this interpreter (in a temporary
folder, ``WORKBENCH_FAST=1``, its runs in a temporary store), inserting each exercise's hidden check
after the student's answer cell. An exercise scores its points when its answer cell and its hidden
check both run without an error, else 0 with a one-line reason; a missing cell, a cell that raises, a
cell that runs too long or a notebook that cannot be read costs only the exercises it touches.
:func:`grade_folder` grades every notebook of a folder into one CSV.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import one_line
from workbench.runtime import Cancelled, CancelToken, Tracker

#: nbgrader's solution markers (a line holding only the marker, any indentation)
BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
#: what a solution region becomes in the student version (nbgrader's default stub), at its indentation
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
EXERCISE_TAG = "exercise"
HIDDEN_TAG = "hidden-check"
WRONG_TAG = "wrong-answer"
#: cell metadata: the exercise a cell belongs to, and an exercise's points
EXERCISE_KEY = "exercise"
POINTS_KEY = "points"
#: notebook metadata ``workbench.lesson``: the lesson a notebook is a version of
LESSON_KEY = "lesson"
#: seconds one cell may run while grading before it is interrupted
DEFAULT_TIMEOUT_S = 300
#: the CSV's columns, in order
CSV_COLUMNS = ("student", "notebook", "lesson", "exercise", "points", "max_points", "reason")
TOTAL = "total"

_KERNEL = "workbench-grader"
_NOT_ANSWERED = "not answered: the cell still raises NotImplementedError"
_TIMEOUT = "Timeout"


class GradingError(ValueError):
    """A lesson, a collected notebook or a folder cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of an instructor notebook: its lesson, id, points and hidden check."""

    lesson: str
    id: str
    points: float
    hidden: str


@dataclass(frozen=True)
class Lesson:
    """An instructor notebook: its name (``workbench.lesson``), file and exercises in order."""

    name: str
    path: Path
    exercises: tuple[Exercise, ...]


@dataclass(frozen=True)
class ExerciseScore:
    """The grade of one exercise of one collected notebook: ``points`` of ``max_points`` (all or
    nothing) and, below full marks, the one-line ``reason``."""

    notebook: str
    lesson: str
    exercise: str
    points: float
    max_points: float
    reason: str = ""

    @property
    def passed(self) -> bool:
        """Whether the exercise earned its points."""
        return self.points >= self.max_points

    def to_dict(self) -> dict[str, Any]:
        """The score as a plain dict (the CSV's fields but ``student``)."""
        return asdict(self)


# ---- notebooks -------------------------------------------------------------------------------------


def _nbformat() -> Any:
    try:
        import nbformat
    except ImportError:  # pragma: no cover - the notebook extras are part of the test environment
        raise GradingError(
            "grading needs the notebook extras: pip install 'kd-workbench[notebooks]'"
        ) from None
    return nbformat


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _exercise_of(cell: Mapping[str, Any]) -> str | None:
    value = cell.get("metadata", {}).get(EXERCISE_KEY)
    return str(value) if value is not None else None


def is_answer(cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` is an exercise's answer cell (a code cell tagged ``exercise``)."""
    return cell.get("cell_type") == "code" and EXERCISE_TAG in _tags(cell)


def read_notebook(path: str | Path) -> Any:
    """The notebook at ``path`` (nbformat 4).

    Raises:
        GradingError: the file is missing or is not a notebook (one line naming it).
    """
    nbformat = _nbformat()
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise GradingError(f"{path}: not a notebook ({one_line(e)})") from None
    return nb


def lesson_name(notebook: Any, path: str | Path | None = None) -> str:
    """The lesson ``notebook`` is a version of: its metadata ``workbench.lesson``, else ``path``'s stem."""
    meta = notebook.get("metadata", {}).get("workbench", {})
    name = meta.get(LESSON_KEY) if isinstance(meta, Mapping) else None
    if isinstance(name, str) and name:
        return name
    if path is None:
        raise GradingError(f"notebook: no metadata workbench.{LESSON_KEY} naming its lesson")
    return Path(path).stem


# ---- solutions -------------------------------------------------------------------------------------


def _regions(source: str, where: str) -> list[tuple[int, int]]:
    """``(begin, end)`` line indices of the solution regions of ``source`` (markers included)."""
    out: list[tuple[int, int]] = []
    begin: int | None = None
    for i, line in enumerate(source.splitlines()):
        mark = line.strip()
        if mark == BEGIN_SOLUTION:
            if begin is not None:
                raise GradingError(f"{where}: {BEGIN_SOLUTION!r} at line {i + 1} inside another solution")
            begin = i
        elif mark == END_SOLUTION:
            if begin is None:
                raise GradingError(f"{where}: {END_SOLUTION!r} at line {i + 1} without {BEGIN_SOLUTION!r}")
            out.append((begin, i))
            begin = None
    if begin is not None:
        raise GradingError(f"{where}: {BEGIN_SOLUTION!r} at line {begin + 1} without {END_SOLUTION!r}")
    return out


def solution_lines(source: str, *, where: str = "cell") -> list[str]:
    """The lines of ``source`` between nbgrader's solution markers (markers excluded), as written.

    Raises:
        GradingError: unbalanced markers (naming ``where`` and the line).
    """
    lines = source.splitlines()
    return [line for begin, end in _regions(source, where) for line in lines[begin + 1 : end]]


def strip_solutions(source: str, *, where: str = "cell") -> str:
    """``source`` with every solution region (markers included) replaced by nbgrader's stub
    (:data:`STUB`) at the indentation of its ``### BEGIN SOLUTION`` line; the rest is kept as is.

    Raises:
        GradingError: unbalanced markers (naming ``where`` and the line).
    """
    lines = source.splitlines()
    out: list[str] = []
    last = 0
    for begin, end in _regions(source, where):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        out.extend(lines[last:begin])
        out.extend(indent + stub for stub in STUB)
        last = end + 1
    out.extend(lines[last:])
    return "\n".join(out)


# ---- instructor and student versions ------------------------------------------------------------


def _points(cell: Mapping[str, Any], where: str) -> float:
    value = cell.get("metadata", {}).get(POINTS_KEY)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise GradingError(f"{where}: cell metadata {POINTS_KEY!r} must be a positive number, got {value!r}")
    return float(value)


def lesson_exercises(notebook: Any, *, lesson: str = "lesson") -> tuple[Exercise, ...]:
    """The graded exercises of an instructor notebook, in order.

    Every answer cell (code, tagged ``exercise``) needs an ``exercise`` id unique in the notebook,
    positive ``points``, at least one solution region, and exactly one raw ``hidden-check`` cell with
    its id; ``lesson`` names the notebook in errors.

    Raises:
        GradingError: the first rule broken, in one line naming the lesson and the exercise.
    """
    hidden: dict[str, list[str]] = {}
    for cell in notebook.cells:
        if HIDDEN_TAG in _tags(cell):
            name = _exercise_of(cell)
            if cell.cell_type != "raw" or name is None:
                raise GradingError(
                    f"{lesson}: a {HIDDEN_TAG!r} cell must be a raw cell with an {EXERCISE_KEY!r} id"
                )
            hidden.setdefault(name, []).append(cell.source)
    out: list[Exercise] = []
    for cell in notebook.cells:
        if EXERCISE_TAG not in _tags(cell):
            continue
        name = _exercise_of(cell)
        where = f"{lesson}, exercise {name}"
        if cell.cell_type != "code" or not name:
            raise GradingError(f"{lesson}: an {EXERCISE_TAG!r} cell must be a code cell with an {EXERCISE_KEY!r} id")
        if any(e.id == name for e in out):
            raise GradingError(f"{where}: the id is used twice")
        points = _points(cell, where)
        if not _regions(cell.source, where):
            raise GradingError(f"{where}: no {BEGIN_SOLUTION!r} ... {END_SOLUTION!r} in the answer cell")
        checks = hidden.pop(name, [])
        if len(checks) != 1:
            raise GradingError(f"{where}: expected one {HIDDEN_TAG!r} cell, found {len(checks)}")
        out.append(Exercise(lesson, name, points, checks[0]))
    if hidden:
        raise GradingError(f"{lesson}: {HIDDEN_TAG!r} cells for no exercise: {', '.join(sorted(hidden))}")
    return tuple(out)


def student_version(notebook: Any) -> Any:
    """The student version of an instructor notebook (a new notebook; ``notebook`` is unchanged).

    Solution regions become nbgrader's stub (:func:`strip_solutions`), ``hidden-check`` and
    ``wrong-answer`` cells are dropped, outputs and execution counts are cleared, and the jupytext
    pairing is left out of the metadata (a student's copy is a plain notebook). Exercise ids, points,
    the public check cells and ``workbench.lesson`` are kept, so the grader can match the copy.

    Raises:
        GradingError: unbalanced solution markers (one line naming the cell).
    """
    out = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(out.cells):
        tags = _tags(cell)
        if HIDDEN_TAG in tags or WRONG_TAG in tags:
            continue
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"cell {index}")
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("jupytext", None)
    return out


def _notebooks(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise GradingError(f"{folder}: not a folder of {what}")
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise GradingError(f"{folder}: no {what} (*.ipynb) in it")
    return found


def write_student_versions(src_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the student version (:func:`student_version`) of every notebook of ``src_dir`` (the
    instructor versions, e.g. the lessons folder) to ``out_dir`` under the same names; returns the
    files written. Each file is written atomically; ``out_dir`` must not be ``src_dir``.

    Raises:
        GradingError: a missing or empty ``src_dir``, ``out_dir`` equal to it, or a notebook whose
            exercises break the conventions (:func:`lesson_exercises`).
    """
    from workbench.runs.atomic import atomic_write_text

    src, out = Path(src_dir), Path(out_dir)
    sources = _notebooks(src, "lessons")
    if out.resolve() == src.resolve():
        raise GradingError(f"--out: {out} is the instructor versions' folder; give another folder")
    nbformat = _nbformat()
    written = []
    for path in sources:
        nb = read_notebook(path)
        lesson_exercises(nb, lesson=path.stem)  # the conventions hold before anything is written
        target = out / path.relative_to(src)
        atomic_write_text(target, nbformat.writes(student_version(nb)) + "\n")
        written.append(target)
    return written


def load_lessons(source: str | Path | None = None) -> dict[str, Lesson]:
    """The instructor versions a grader reads, by lesson name: the notebooks of the folder ``source``
    (default :func:`lessons_dir`), or the one notebook ``source``.

    Raises:
        GradingError: a missing source, or a lesson that breaks the conventions.
    """
    root = Path(source) if source is not None else lessons_dir()
    paths = [root] if root.is_file() else _notebooks(root, "lessons")
    out: dict[str, Lesson] = {}
    for path in paths:
        nb = read_notebook(path)
        name = lesson_name(nb, path)
        out[name] = Lesson(name, path, lesson_exercises(nb, lesson=name))
    return out


def lessons_dir() -> Path:
    """The lessons' instructor versions: the ``notebooks/`` folder beside the package."""
    return Path(__file__).resolve().parent.parent / "notebooks"


# ---- grading -------------------------------------------------------------------------------------


def _match_lesson(nb: Any, path: Path, lessons: Mapping[str, Lesson]) -> Lesson:
    """The lesson a collected notebook answers: its metadata's, else the one named in its file name."""
    if nb is not None:
        meta = nb.get("metadata", {}).get("workbench", {})
        name = meta.get(LESSON_KEY) if isinstance(meta, Mapping) else None
        if name in lessons:
            return lessons[name]
    named = [lesson for name, lesson in lessons.items() if name in path.name]
    if len(named) == 1:
        return named[0]
    raise GradingError(
        f"{path}: cannot tell which lesson it answers (no workbench.{LESSON_KEY} in its metadata and "
        f"no lesson name in the file name); known lessons: {', '.join(sorted(lessons))}"
    )


def _grading_notebook(collected: Any, lesson: Lesson) -> tuple[Any, dict[int, str], dict[int, str]]:
    """The collected notebook with each exercise's hidden check inserted after its (last) answer
    cell; also the indices of the answer cells and of the hidden checks, by exercise id."""
    nbformat = _nbformat()
    nb = copy.deepcopy(collected)
    nb.cells = [c for c in nb.cells if HIDDEN_TAG not in _tags(c)]
    last = {_exercise_of(c): i for i, c in enumerate(nb.cells) if is_answer(c)}
    hidden = {e.id: e.hidden for e in lesson.exercises}
    cells, answers, checks = [], {}, {}
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        name = _exercise_of(cell) if is_answer(cell) else None
        if name in hidden and last.get(name) == i:
            answers[len(cells) - 1] = name
            check = nbformat.v4.new_code_cell(hidden[name], metadata={"tags": [HIDDEN_TAG], EXERCISE_KEY: name})
            cells.append(check)
            checks[len(cells) - 1] = name
    nb.cells = cells
    return nb, answers, checks


def _write_kernel_spec(folder: Path) -> Path:
    """A kernel spec for this interpreter (the one that has the workbench) under ``folder/kernels``."""
    spec = folder / "kernels" / _KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (workbench grader)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return spec.parent


def _reason(ename: str, evalue: str, part: str) -> str:
    if ename == "NotImplementedError":
        return _NOT_ANSWERED
    if ename == _TIMEOUT:
        return f"the {part} {evalue}"
    if part == "hidden check" and ename == "AssertionError":
        return f"hidden check failed: {one_line(evalue) or 'an assertion did not hold'}"
    return f"the {part} raised {ename}: {one_line(evalue)}"[:300]


@dataclass
class _Outcome:
    """What happened to each exercise while one notebook executed."""

    reasons: dict[str, str] = field(default_factory=dict)
    passed: set[str] = field(default_factory=set)
    first_error: str = ""


def _execute(
    nb: Any,
    answers: Mapping[int, str],
    checks: Mapping[int, str],
    *,
    timeout: int,
    workdir: Path,
    tracker: Tracker,
) -> _Outcome:
    """Run ``nb`` cell by cell in a fresh kernel, going on after a cell that raises; an answer or a
    hidden check that raises fails its exercise; a dead kernel fails every exercise not yet graded."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    ksm = KernelSpecManager(kernel_dirs=[str(_write_kernel_spec(workdir))])
    km = AsyncKernelManager(kernel_name=_KERNEL, kernel_spec_manager=ksm)
    client = NotebookClient(
        nb, km=km, timeout=timeout, allow_errors=False, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT, "evalue": f"ran longer than {timeout} s and was stopped"},
        resources={"metadata": {"path": str(workdir)}},
    )
    env = {**os.environ, "WORKBENCH_FAST": "1", "WORKBENCH_STRICT_CHECKS": "0",
           "WORKBENCH_RUNS": str(workdir / "runs")}
    outcome = _Outcome()
    index = 0
    try:
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                tracker.check()
                if cell.cell_type != "code":
                    continue
                name = answers.get(index) or checks.get(index)
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as e:
                    _record_error(outcome, _cell_number(index, checks), name, index in answers, e.ename, e.evalue)
                except CellTimeoutError:
                    why = f"ran longer than {timeout} s"
                    _record_error(outcome, _cell_number(index, checks), name, index in answers, _TIMEOUT, why)
                else:
                    if index in checks and name not in outcome.reasons:
                        outcome.passed.add(name)
                tracker.report(index + 1, f"cell {index + 1} of {len(nb.cells)}")
    except Cancelled:
        raise
    except DeadKernelError as e:
        _fail_rest(outcome, answers, f"the kernel died at cell {_cell_number(index, checks)} ({one_line(e)})")
    except (RuntimeError, OSError, TimeoutError) as e:
        _fail_rest(outcome, answers, f"the notebook did not execute: {one_line(e)}")
    return outcome


def _cell_number(index: int, checks: Mapping[int, str]) -> int:
    """The 1-based number, in the collected notebook, of cell ``index`` of the grading notebook
    (which holds the inserted hidden checks too)."""
    return index + 1 - sum(1 for i in checks if i < index)


def _record_error(outcome: _Outcome, number: int, name: str | None, answer: bool, ename: str, evalue: str) -> None:
    if name is None:
        if not outcome.first_error:
            outcome.first_error = f"cell {number} raised {ename}: {one_line(evalue)}"[:200]
        return
    if name in outcome.reasons:
        return
    reason = _reason(ename, evalue, "answer cell" if answer else "hidden check")
    if outcome.first_error and ename == "NameError":  # a missing name usually comes from a cell that failed
        reason = f"{reason} (earlier, {outcome.first_error})"
    outcome.reasons[name] = reason


def _fail_rest(outcome: _Outcome, answers: Mapping[int, str], reason: str) -> None:
    for name in answers.values():
        if name not in outcome.passed:
            outcome.reasons.setdefault(name, reason)


def grade_notebook(
    path: str | Path,
    *,
    source: str | Path | Mapping[str, Lesson] | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> list[ExerciseScore]:
    """Grade one collected notebook against the hidden checks of its lesson's instructor version.

    ``source`` holds the instructor versions: a folder or a notebook (:func:`load_lessons`; default
    the lessons folder), or what :func:`load_lessons` returned;
    ``timeout`` is the seconds one cell may run before it is stopped. The notebook runs in a fresh
    kernel of this interpreter, in a temporary folder, with ``WORKBENCH_FAST=1`` and a temporary run
    store, each hidden check right after the student's answer cell. Returns one score per exercise
    of the lesson, in order: full points, or 0 with the reason (the answer cell is missing, raises,
    or is still the stub; the hidden check fails; the notebook cannot be read or its kernel died).

    Raises:
        GradingError: bad instructor versions, or a collected notebook that names no known lesson.
        workbench.runtime.Cancelled: ``cancel`` was set (nothing is kept).
    """
    path = Path(path)
    lessons = source if isinstance(source, Mapping) else load_lessons(source)
    try:
        collected, unreadable = read_notebook(path), ""
    except GradingError as e:
        collected, unreadable = None, str(e).split(": ", 1)[-1]
    lesson = _match_lesson(collected, path, lessons)

    def scores(outcome: _Outcome) -> list[ExerciseScore]:
        return [
            ExerciseScore(str(path), lesson.name, e.id, e.points if e.id in outcome.passed else 0.0, e.points,
                          "" if e.id in outcome.passed else outcome.reasons.get(e.id, "not graded"))
            for e in lesson.exercises
        ]

    if collected is None:
        return scores(_Outcome(reasons={e.id: f"the notebook could not be read: {unreadable}" for e in lesson.exercises}))
    nb, answers, checks = _grading_notebook(collected, lesson)
    missing = {e.id for e in lesson.exercises} - set(answers.values())
    tracker = Tracker(progress, cancel, total=len(nb.cells), label=path.name)
    tracker.start()
    with tempfile.TemporaryDirectory(prefix="workbench-grade-", ignore_cleanup_errors=True) as tmp:
        outcome = _execute(nb, answers, checks, timeout=timeout, workdir=Path(tmp), tracker=tracker)
    for name in missing:
        outcome.reasons[name] = (
            f"no answer cell: the code cell tagged {EXERCISE_TAG!r} with {EXERCISE_KEY}={name!r} is missing"
        )
    return scores(outcome)


def _student(path: Path, folder: Path) -> str:
    """Who handed ``path`` in: its first folder under ``folder``, else its file name's stem."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else path.stem


def scores_csv(rows: Iterable[tuple[str, ExerciseScore]]) -> str:
    """The CSV text of ``(student, score)`` rows (:data:`CSV_COLUMNS`), with a ``total`` row after
    each notebook's exercises (a notebook graded as a whole, exercise ``total``, keeps its one row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    by_notebook: dict[tuple[str, str, str], list[ExerciseScore]] = {}
    for student, score in rows:
        by_notebook.setdefault((student, score.notebook, score.lesson), []).append(score)
    for (student, notebook, lesson), scores in by_notebook.items():
        if any(s.exercise == TOTAL for s in scores):  # a notebook that could not be graded: its one line
            for s in scores:
                writer.writerow([student, notebook, lesson, TOTAL, f"{s.points:g}", f"{s.max_points:g}", s.reason])
            continue
        for s in scores:
            writer.writerow([student, notebook, lesson, s.exercise, f"{s.points:g}", f"{s.max_points:g}", s.reason])
        failed = sum(not s.passed for s in scores)
        writer.writerow([
            student, notebook, lesson, TOTAL, f"{sum(s.points for s in scores):g}",
            f"{sum(s.max_points for s in scores):g}", f"{failed} of {len(scores)} exercises without points" if failed else "",
        ])
    return buffer.getvalue()


def grade_folder(
    folder: str | Path,
    *,
    out_csv: str | Path | None = None,
    source: str | Path | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Grade every collected notebook under ``folder`` (``*.ipynb``, sub-folders included; one
    sub-folder per student, or one file per student) and write the CSV ``out_csv`` (default
    ``folder/grades.csv``, written atomically): one row per notebook and exercise, then the
    notebook's ``total`` (:func:`scores_csv`). A notebook that names no known lesson gets one
    ``total`` row of 0 with the reason; the others are graded. Returns the CSV's path.

    ``progress(done, total, message)`` counts notebooks; ``source`` and ``timeout`` as for
    :func:`grade_notebook`.

    Raises:
        GradingError: no notebooks in ``folder``, or bad instructor versions.
        workbench.runtime.Cancelled: ``cancel`` was set (no CSV is written).
    """
    from workbench.runs.atomic import atomic_write_text

    root = Path(folder)
    out = Path(out_csv) if out_csv is not None else root / "grades.csv"
    paths = _notebooks(root, "collected notebooks")
    lessons = load_lessons(source)
    tracker = Tracker(progress, cancel, total=len(paths), label="grading")
    tracker.start()
    rows: list[tuple[str, ExerciseScore]] = []
    for path in paths:
        student = _student(path, root)
        shown = path.relative_to(root).as_posix()
        try:
            graded = grade_notebook(path, source=lessons, timeout=timeout, cancel=cancel)
        except GradingError as e:
            graded = [ExerciseScore(shown, "", TOTAL, 0.0, 0.0, str(e))]
        rows.extend((student, _renamed(s, shown)) for s in graded)
        tracker.advance(message=shown)
    atomic_write_text(out, scores_csv(rows))
    return out


def _renamed(score: ExerciseScore, notebook: str) -> ExerciseScore:
    return ExerciseScore(notebook, score.lesson, score.exercise, score.points, score.max_points, score.reason)


__all__ = [
    "BEGIN_SOLUTION",
    "CSV_COLUMNS",
    "DEFAULT_TIMEOUT_S",
    "END_SOLUTION",
    "EXERCISE_KEY",
    "EXERCISE_TAG",
    "HIDDEN_TAG",
    "POINTS_KEY",
    "STUB",
    "WRONG_TAG",
    "Exercise",
    "ExerciseScore",
    "GradingError",
    "Lesson",
    "grade_folder",
    "grade_notebook",
    "is_answer",
    "lesson_exercises",
    "lesson_name",
    "lessons_dir",
    "load_lessons",
    "read_notebook",
    "scores_csv",
    "solution_lines",
    "strip_solutions",
    "student_version",
    "write_student_versions",
]
