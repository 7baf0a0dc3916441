"""The lessons in notebooks/: jupytext pairs that agree, committed without outputs, executable
headlessly, exercises that tell a right answer from a wrong one.

Each lesson is a pair: ``NN_name.py`` (jupytext percent format, the source) and ``NN_name.ipynb``
(the same cells, no outputs); ``make lessons`` syncs them. An exercise is a code cell tagged
``exercise`` holding the reference answer, with the metadata key ``exercise`` naming it; its
stored wrong answer is a raw cell (it never runs) tagged ``wrong-answer`` with the same
``exercise`` name. The next code cell after the answer is its check.

The answer cells are graded (``workbench.grading``): each has ``points``, its reference answer
between nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines, and a raw ``hidden-check``
cell with the same ``exercise`` name that the grader runs after the answer.

Every lesson is executed once, in a fresh ``python3`` kernel with ``WORKBENCH_FAST=1`` and
``WORKBENCH_STRICT_CHECKS=1``: the instructor version. At each exercise the wrong answer is executed
in place of the answer cell first; its hidden check must fail (the grader's zero) and the following
check cell must fail with ``WrongAnswer``. Then the reference answer is executed, its hidden check must
pass and so must the check cell. The lesson then continues, so one execution per lesson covers the
lesson, every exercise and every hidden check. Its last code cell links to the app on a run the lesson
wrote to its store.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISE_TAG = "exercise"
WRONG_TAG = "wrong-answer"
LINK_KEY = "exercise"  # cell metadata: the exercise a wrong answer belongs to
PAIRING = "ipynb,py:percent"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT_S = 300


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _is_answer(cell) -> bool:
    return EXERCISE_TAG in _tags(cell)


def _wrong_answers(nb) -> dict[str, object]:
    """The wrong-answer cells of ``nb`` by the name of their exercise."""
    return {cell.metadata.get(LINK_KEY): cell for cell in nb.cells if WRONG_TAG in _tags(cell)}


def _code_lines(source: str) -> list[str]:
    """The lines of ``source`` that are code (not blank, not a comment)."""
    return [line.rstrip() for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _next_code_cell(nb, index: int) -> int:
    for j in range(index + 1, len(nb.cells)):
        if nb.cells[j].cell_type == "code":
            return j
    raise AssertionError(f"cell {index}: an exercise answer must be followed by a check cell")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_lessons():
    assert NOTEBOOKS, "no notebooks in notebooks/"
    names = [p.name for p in NOTEBOOKS]
    assert all(re.match(r"^\d\d_[a-z0-9_]+\.ipynb$", n) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    stored = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not stored, f"{path.name}: cells {stored} hold outputs or execution counts; run `make lessons` to clear them"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: cell ids missing or repeated: {ids}"


def test_every_lesson_is_a_pair():
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in sources] == [p.stem for p in NOTEBOOKS], (
        "each lesson is a pair NN_name.py + NN_name.ipynb; run `make lessons` after adding a .py"
    )


def _cell_keys(nb) -> list[tuple]:
    return [(c.cell_type, c.source, _tags(c), c.metadata.get(LINK_KEY)) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_pair_agrees(path: Path):
    """The .ipynb holds the cells of its .py source (types, sources, tags, exercise links)."""
    jupytext = pytest.importorskip("jupytext")
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name}: no paired {source.name}"
    text, nb = jupytext.read(source), _read(path)
    for name, doc in ((source.name, text), (path.name, nb)):
        formats = doc.metadata.get("jupytext", {}).get("formats")
        assert formats == PAIRING, f"{name}: jupytext formats {formats!r}, expected {PAIRING!r}"
    want, have = _cell_keys(text), _cell_keys(nb)
    first = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), min(len(want), len(have)))
    assert want == have, (
        f"{path.name} disagrees with {source.name} from cell {first} on ({len(want)} cells in the .py, "
        f"{len(have)} in the .ipynb); run `make lessons`\n"
        f".py:    {want[first] if first < len(want) else None!r}\n.ipynb: {have[first] if first < len(have) else None!r}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_exercises_are_well_formed(path: Path):
    nb = _read(path)
    answers = [i for i, cell in enumerate(nb.cells) if _is_answer(cell)]
    assert answers, f"{path.name}: no exercise (a code cell tagged {EXERCISE_TAG!r})"
    names = [nb.cells[i].metadata.get(LINK_KEY) for i in answers]
    assert all(isinstance(n, str) and n for n in names), f"{path.name}: an exercise cell without its {LINK_KEY!r} name"
    assert len(set(names)) == len(names), f"{path.name}: exercise names repeat: {names}"
    wrong_cells = [c for c in nb.cells if WRONG_TAG in _tags(c)]
    wrongs = _wrong_answers(nb)
    assert len(wrongs) == len(wrong_cells) and set(wrongs) == set(names), (
        f"{path.name}: every exercise needs exactly one {WRONG_TAG!r} cell with its {LINK_KEY!r} name; "
        f"exercises {names}, wrong answers {[c.metadata.get(LINK_KEY) for c in wrong_cells]}"
    )
    for i, name in zip(answers, names, strict=True):
        cell = nb.cells[i]
        assert cell.cell_type == "code", f"{path.name} cell {i}: an exercise must be a code cell"
        wrong = wrongs[name]
        assert wrong.cell_type == "raw", f"{path.name}: the wrong answer of exercise {name} must be a raw cell (never run)"
        assert _code_lines(wrong.source), f"{path.name}: the wrong answer of exercise {name} is empty"
        assert _code_lines(wrong.source) != _code_lines(cell.source), (
            f"{path.name}: the wrong answer of exercise {name} is the reference answer"
        )
        compile(wrong.source, f"{path.name}:wrong-answer[{name}]", "exec")  # a wrong answer, not a syntax error
        check_cell = nb.cells[_next_code_cell(nb, i)]
        assert re.search(r"\bcheck\(", check_cell.source), f"{path.name} cell {i}: the next code cell does not call check()"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    first_md = nb.cells[0]
    assert first_md.cell_type == "markdown" and "goal" in first_md.source.lower(), (
        f"{path.name}: the first cell must state the learning goals"
    )
    assert nb.cells.index(first_code) > 0
    from workbench.grading import lesson_exercises, lesson_name

    assert lesson_name(nb) == path.stem, f"{path.name}: metadata workbench.lesson must be {path.stem!r}"
    graded = lesson_exercises(nb, lesson=path.stem)  # points, solution markers, one hidden check each
    assert [e.id for e in graded] == names
    for exercise in graded:
        compile(exercise.hidden, f"{path.name}:hidden-check[{exercise.id}]", "exec")
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "app_link_markdown(" in last_code.source, f"{path.name}: the last code cell must link to the app"
    assert "references" in nb.cells[-1].source.lower() or any(
        c.cell_type == "markdown" and c.source.lower().lstrip("# ").startswith("references") for c in nb.cells
    ), f"{path.name}: no references cell"


# ---- execution --------------------------------------------------------------------------------------


def _spec_runs_this_python(argv0: str) -> bool:
    """Whether a kernelspec's interpreter is this one (jupyter_client maps a bare ``python`` /
    ``python3`` / ``python3.X`` to ``sys.executable``)."""
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if argv0 in bare:
        return True
    try:
        return Path(argv0).resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


@pytest.fixture(scope="session")
def python3_kernel(tmp_path_factory):
    """Make sure the ``python3`` kernel runs this interpreter (the one that has the workbench):
    when ``jupyter_client`` finds no such kernelspec, one for ``sys.executable`` is written to a
    temporary ``JUPYTER_PATH`` for the session."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def usable() -> bool:
        try:
            spec = KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            return False
        return bool(spec.argv) and _spec_runs_this_python(spec.argv[0])

    old = os.environ.get("JUPYTER_PATH")
    if not usable():
        root = tmp_path_factory.mktemp("jupyter")
        kernel_dir = root / "kernels" / "python3"
        kernel_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (workbench tests)",
            "language": "python",
        }
        (kernel_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *([old] if old else [])])
        assert usable(), "could not provide a python3 kernelspec for this interpreter"
    yield "python3"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_executes_and_its_checks_tell_right_from_wrong(path: Path, python3_kernel, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("WORKBENCH_FAST", "1")
    monkeypatch.setenv("WORKBENCH_STRICT_CHECKS", "1")
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    from workbench.grading import lesson_exercises

    nb = _read(path)
    wrongs = _wrong_answers(nb)
    hidden = {e.id: e.hidden for e in lesson_exercises(nb, lesson=path.stem)}
    client = NotebookClient(
        nb,
        kernel_name=python3_kernel,
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},  # the lesson's working directory
    )
    exercises = 0
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if _is_answer(cell):
                exercises += 1
                name = cell.metadata[LINK_KEY]
                wrong = copy.deepcopy(cell)
                wrong.source = wrongs[name].source
                client.execute_cell(wrong, index)
                with pytest.raises(CellExecutionError) as graded:
                    client.execute_cell(nbformat.v4.new_code_cell(hidden[name]), index)
                assert graded.value.ename == "AssertionError", (
                    f"{path.name}: the hidden check of exercise {name} failed otherwise than by an assertion "
                    f"on the wrong answer:\n{str(graded.value)[-1500:]}"
                )
                j = _next_code_cell(nb, index)
                with pytest.raises(CellExecutionError) as failed:
                    client.execute_cell(copy.deepcopy(nb.cells[j]), j)
                assert "WrongAnswer" in str(failed.value), (
                    f"{path.name} cell {j}: the wrong answer of cell {index} failed otherwise than by its check:\n"
                    f"{str(failed.value)[-1500:]}"
                )
            client.execute_cell(cell, index)
            if _is_answer(cell):  # the reference answer passes its hidden check (a failure raises here)
                client.execute_cell(nbformat.v4.new_code_cell(hidden[cell.metadata[LINK_KEY]]), index)
    assert exercises >= 1
    # every check cell printed its "Right" line with the reference answers
    for index, cell in enumerate(nb.cells):
        if _is_answer(cell):
            text = _outputs_text(nb.cells[_next_code_cell(nb, index)])
            assert "Right:" in text, f"{path.name}: the check after cell {index} did not pass:\n{text[-800:]}"
    # the last cell links to the app on a run of the lesson's store (the same store the app must serve)
    link = "".join(
        o.get("data", {}).get("text/markdown", "") for o in [c for c in nb.cells if c.cell_type == "code"][-1].outputs
    )
    found = re.search(r"\]\(https?://[^)\s]+/[a-z]+\?run=([^&)\s]+)[^)\s]*\)", link)
    assert found, f"{path.name}: the last cell shows no link to the app:\n{link[:500]}"
    assert (tmp_path / "runs" / found.group(1)).is_dir(), f"{path.name}: the link's run {found.group(1)} is not in the store"
    assert f"--runs {(tmp_path / 'runs').resolve()}" in link, f"{path.name}: the link does not name the lesson's store"
    mimes = {k for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) for k in o.get("data", {})}
    assert WIDGET_MIME in mimes, f"{path.name}: no panel (ipywidgets view) was displayed"
