"""``workbench lessons``: hand the lessons out as assignments and grade the collected notebooks.

``student DIR`` writes the student versions of the instructor notebooks in ``DIR`` (the answers
replaced by nbgrader's stub, the hidden checks and stored wrong answers left out); ``grade DIR``
executes every collected notebook under ``DIR``, runs each exercise's hidden check and writes a CSV of
scores (:mod:`workbench.grading`).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from workbench.console import friendly

lessons_app = typer.Typer(
    no_args_is_help=True,
    help="Lessons as assignments: write the student versions, grade the collected notebooks into a CSV.",
)
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, soft_wrap=True)


@lessons_app.command("student")
@friendly
def lessons_student(
    folder: Path | None = typer.Argument(
        None, help="the instructor versions (default: the workbench's lessons folder)", show_default=False
    ),
    out: Path = typer.Option(Path("student"), "--out", "-o", help="where the student versions go"),
) -> None:
    """Write the student version of every lesson in FOLDER to --out.

    Each solution becomes `raise NotImplementedError()`; hidden checks, wrong answers and outputs go.
    """
    from workbench.grading import lessons_dir, write_student_versions

    written = write_student_versions(folder if folder is not None else lessons_dir(), out)
    for path in written:
        _out.print(str(path))
    _out.print(f"{len(written)} student version{'s' if len(written) != 1 else ''} in {out}")


@lessons_app.command("grade")
@friendly
def lessons_grade(
    folder: Path = typer.Argument(..., help="the collected notebooks: one file or one sub-folder per student"),
    csv_file: Path | None = typer.Option(None, "--csv", help="the CSV of scores (default FOLDER/grades.csv)"),
    lessons: Path | None = typer.Option(
        None, "--lessons", help="the instructor versions, a folder or one notebook (default: the workbench's lessons)"
    ),
    timeout: int = typer.Option(300, "--timeout", min=1, help="seconds one cell may run before it is stopped"),
) -> None:
    """Grade the collected notebooks under FOLDER into a CSV of scores.

    Each notebook runs in a fresh kernel (WORKBENCH_FAST=1, a temporary run store) with each exercise's
    hidden check after the student's answer: one CSV row per notebook and exercise, and a total per
    notebook. A missing or failing cell costs only its exercise.
    """
    from workbench.grading import TOTAL, grade_folder

    def progress(done: int, total: int, message: str) -> None:
        if done:
            _err.print(f"graded {done}/{total}: {message}")

    path = grade_folder(folder, out_csv=csv_file, source=lessons, timeout=timeout, progress=progress)
    table = Table("student", "notebook", "lesson", "points", "reason")
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["exercise"] == TOTAL:
                table.add_row(row["student"], row["notebook"], row["lesson"],
                              f"{row['points']} / {row['max_points']}", row["reason"])
    _out.print(table)
    _out.print(f"scores written to {path}")
