"""A run's step log: ``<run>/steps.jsonl``, one JSON object per recorded training step.

The engine's run-store subscriber appends one line per record (:class:`StepLogAppender`) and
flushes it; the file is never rewritten during a run, so a process killed mid-write leaves at most
a torn last line. A record holds ``step`` (global, from 1), ``epoch`` (from 1), ``loss`` (the total
objective of that step), ``loss/<term>`` per weighted loss term, ``lr``, ``batch_acc``,
``images_per_s`` and ``time`` (seconds since training started); non-finite numbers are written as
``null``.

Resume: a resumed run appends after the records of its earlier life. Those written past the resume
point (the steps of an epoch that did not finish) are dropped when reading: a record whose step is
not above the one before it starts the resumed part, and every earlier record from that step on
is left out. The only change to an existing file is made when a writer opens it again (a resume):
a torn last line left by a killed process is cut off, so that the new records start on a line of
their own.

:func:`read_step_log` never raises for a damaged file: a torn last line is ignored silently; a
damaged line elsewhere stops the reading there and is named in :attr:`StepLog.damage`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: the step log's file name inside a run directory
STEP_LOG_FILE = "steps.jsonl"


@dataclass(frozen=True)
class StepLog:
    """The step records of a run, in step order, and why reading stopped early, if it did.

    ``records``: one dict per recorded step (``step``, ``epoch``, ``loss``, ``loss/<term>``,
    ``lr``, ``batch_acc``, ``images_per_s``, ``time``). ``damage``: ``None``, or one line naming the
    file and the line that could not be read (the records before it are kept).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    damage: str | None = None

    def __len__(self) -> int:
        return len(self.records)


def _plain_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_line(record: dict[str, Any]) -> str:
    """One record as a line of the step log (compact JSON, non-finite numbers as ``null``, with
    its newline)."""
    clean = {str(k): _plain_number(v) for k, v in record.items()}
    return json.dumps(clean, separators=(",", ":"), allow_nan=False) + "\n"


def _line_problem(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """The record a line holds, or why it is not one."""
    try:
        value = json.loads(line)
    except ValueError as err:
        reason = getattr(err, "msg", None) or "unreadable"
        return None, f"not JSON ({reason})"
    if not isinstance(value, dict):
        return None, f"not a JSON object (a {type(value).__name__})"
    step = value.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
        return None, f"step is not a number ({json.dumps(step)[:40]})"
    return value, None


def _keep(records: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """Add ``record``; one whose step is not above the last kept one starts a resumed part and
    drops the records it replaces."""
    step = record["step"]
    while records and records[-1]["step"] >= step:
        records.pop()
    records.append(record)


def read_step_log(path: str | Path) -> StepLog:
    """Read the step log at ``path`` (a run's ``steps.jsonl``).

    Returns a :class:`StepLog`: an empty one for a missing file; a torn last line (the file does
    not end with a newline and its last line is no record) is ignored silently; at a damaged line
    elsewhere (not JSON, not an object, a step that is not a number) reading stops, the records
    before it are kept and ``damage`` says ``"steps.jsonl line N: <why>"``. Blank lines are
    skipped. Never raises: an unreadable file is damage too.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return StepLog()
    except OSError as err:
        return StepLog([], f"{path.name}: unreadable ({err.strerror or type(err).__name__})")
    lines = data.decode("utf-8", errors="replace").split("\n")
    torn = lines.pop()  # "" when the file ends with a newline, else the unterminated last line
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record, problem = _line_problem(line)
        if problem is not None:
            return StepLog(records, f"{path.name} line {number}: {problem}")
        _keep(records, record)  # type: ignore[arg-type]
    if torn.strip():
        record, problem = _line_problem(torn)
        if problem is None:  # a complete record that only lost its newline
            _keep(records, record)  # type: ignore[arg-type]
    return StepLog(records, None)


def _cut_torn_tail(path: Path) -> None:
    """Cut an unterminated last line (left by a killed writer) off the file at ``path``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                fh.truncate(start + at + 1)
                return
            end = start
        fh.truncate(0)


class StepLogAppender:
    """Appends records to a run's step log, one flushed line each.

    The file is opened on the first :meth:`append` (in append mode; a torn last line of an earlier
    writer is cut off first) and kept open until :meth:`close`. Opening never creates the run
    directory: a missing directory raises :class:`FileNotFoundError`.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / STEP_LOG_FILE
        self._fh: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line and flush it to the operating system."""
        if self._fh is None:
            if not self.path.parent.is_dir():
                raise FileNotFoundError(os.fspath(self.path.parent))
            _cut_torn_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across records
        self._fh.write(record_line(record))
        self._fh.flush()

    def close(self) -> None:
        """Close the file (a later :meth:`append` opens it again)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()


def metric_names(rows: Any, known: tuple[str, ...]) -> list[str]:
    """The numeric keys of ``rows`` (mappings: epoch or step records) in the order views offer them:
    those of ``known`` first, in its order, then the ``loss/<term>`` entries in the order they first
    appear. The one ordering of :func:`logged_step_metrics` and :func:`workbench.runs.logged_metrics`."""
    from workbench.vocabulary import LOSS_TERM_PREFIX

    seen: set[str] = set()
    terms: list[str] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                seen.add(key)
                if key.startswith(LOSS_TERM_PREFIX) and key not in terms:
                    terms.append(key)
    return [m for m in known if m in seen] + terms


def logged_step_metrics(records: Any) -> list[str]:
    """The step metrics ``records`` hold: :data:`workbench.vocabulary.STEP_METRICS` first, then the
    ``loss/<term>`` entries in the order they first appear (what a step-curve view offers)."""
    from workbench.vocabulary import STEP_METRICS

    return metric_names(records, STEP_METRICS)


__all__ = [
    "STEP_LOG_FILE",
    "StepLog",
    "StepLogAppender",
    "logged_step_metrics",
    "metric_names",
    "read_step_log",
    "record_line",
]
