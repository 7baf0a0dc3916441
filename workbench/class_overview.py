"""The class overview: one row per workspace for the instructor — who ran what, when, how well, and
what the student doctor makes of their newest student.

:func:`class_overview` reads the jobs through :meth:`workbench.jobs.JobQueue.list` and the runs of the
run store. A run belongs to the workspace of the job that trained it (as in
:func:`workbench.workspaces.workspace_runs`); a run that no job with a workspace trained is listed under
:data:`NO_WORKSPACE`. A row counts the workspace's runs (``damaged`` ones among them: a run whose files
cannot be read is counted, never stops the others), its queued, running and failed jobs, its last
activity, its best result and the latest doctor finding.

The doctor finding (:func:`recorded_finding`) is the cheap one: the doctor's rules
(:func:`workbench.analysis.doctor.apply_rules`) applied to what the run *recorded* — its config, its
per-epoch history and the test accuracies the engine measured on the whole test split (the student's and
the teacher's) — without loading a network or a dataset. The evidence that only the analyses measure
(agreement on a sample, softness, CKA, CAMs, sharpness) is left out, so the rules that need it are not
checked; the Student doctor page and ``workbench doctor`` run the full examination
(:func:`workbench.diagnosis.diagnose`). Findings are cached per run and per change of its files.

    >>> rows = class_overview(RunStore("runs"), JobQueue("runs"))
    >>> overview_table(rows)[0]["workspace"]
    'alice'
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from workbench.errors import one_line
from workbench.runs.store import Run, RunStore

if TYPE_CHECKING:
    from workbench.jobs import Job, JobQueue

__all__ = [
    "NO_WORKSPACE",
    "BestRun",
    "DoctorNote",
    "StudentRow",
    "class_overview",
    "overview_table",
    "recorded_evidence",
    "recorded_finding",
]

#: the row of the runs that no job with a workspace trained
NO_WORKSPACE = "(none)"
#: the kinds of run the doctor examines
DOCTOR_KINDS = ("student", "distill")
#: findings kept in memory (one per run and state of its files)
_CACHE_SIZE = 1024
#: the run's files whose change makes a new finding
_WATCHED = ("status.json", "metrics.json", "config.yaml", "model.json")
#: why the rules that need the analyses are not checked here
_ANALYSES_ONLY = "measured by the full doctor's analyses (Student doctor page, `workbench doctor`)"
_ANALYSED = (
    "teacher_soft_entropy", "kd_share", "teacher_train_label_acc", "context_follow", "teacher_context_follow",
    "hint_depth_gap", "student_ece", "teacher_ece", "class_rank_correlation", "matched_cka",
    "student_eigenvalue", "scratch_eigenvalue",
)


@dataclass(frozen=True)
class BestRun:
    """A workspace's best result: the completed run with the highest final test accuracy.

    ``run_id``; ``kind`` (``teacher``, ``student`` or ``distill``); ``test_acc`` in ``[0, 1]``.
    """

    run_id: str
    kind: str | None
    test_acc: float


@dataclass(frozen=True)
class DoctorNote:
    """The doctor's top finding on one run, read from what the run recorded.

    ``run_id``: the run examined (``None`` when the workspace has no completed student or distilled
    run); ``rule``, ``title``, ``level`` (``warning`` or ``note``), ``severity``: the top finding, all
    ``None`` when there is none; ``reason``: why there is none (the doctor lacks something, or no rule
    fired); ``checked``: the rules whose evidence the run recorded.
    """

    run_id: str | None
    rule: str | None = None
    title: str | None = None
    level: str | None = None
    severity: float | None = None
    reason: str | None = None
    checked: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """One line for a table: the finding's title (and level), else ``no finding: <reason>``."""
        if self.rule is not None:
            return f"{self.title} ({self.level})"
        return f"no finding: {self.reason}"


@dataclass(frozen=True)
class StudentRow:
    """One workspace of the class.

    ``workspace``: its name, or :data:`NO_WORKSPACE`. ``runs``: the runs of the store it holds, damaged
    ones included; ``damaged``: those whose files cannot be read. ``queued``, ``running``, ``failed``: its
    jobs in those states. ``last_activity``: the latest of its jobs' created, started and finished times
    and its runs' finished times (ISO-8601, UTC), ``None`` when none is recorded. ``best``: its best
    completed run (:class:`BestRun`) or ``None``. ``finding``: the doctor's top finding on its newest
    completed student or distilled run (:class:`DoctorNote`).
    """

    workspace: str
    runs: int = 0
    queued: int = 0
    running: int = 0
    failed: int = 0
    damaged: int = 0
    last_activity: str | None = None
    best: BestRun | None = None
    finding: DoctorNote = field(default_factory=lambda: DoctorNote(None, reason="no completed student run"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``best`` and ``finding`` as mappings (``finding`` with its ``text``)."""
        out = asdict(self)
        out["finding"]["checked"] = list(self.finding.checked)
        out["finding"]["text"] = self.finding.text
        return out


# ---- times ---------------------------------------------------------------------------------------
def _when(stamp: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime (UTC when it names no zone); ``None`` if it is not one."""
    if not isinstance(stamp, str) or not stamp.strip():
        return None
    try:
        when = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _latest(stamps: Iterable[Any]) -> str | None:
    """The latest of ``stamps`` (ISO-8601 text; others ignored) as ISO-8601 UTC, or ``None``."""
    times = [t for t in map(_when, stamps) if t is not None]
    return max(times).astimezone(timezone.utc).isoformat(timespec="seconds") if times else None


# ---- what a run recorded, as the doctor's evidence ----------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _teacher_params(store: RunStore | None, source: str | None) -> int | None:
    """The parameter count of a teacher, from its card or its run's model description, else ``None``."""
    from workbench.runs.teachers import shipped_teacher_card, store_teacher_card

    if not source:
        return None
    kind, _, name = source.partition(":")
    try:
        if kind == "run" and store is not None:
            value = store.load(name).model_spec["student"]["params"]
        elif kind == "shipped":
            value = shipped_teacher_card(name).get("params")
        elif kind == "teacher" and store is not None:
            value = store_teacher_card(store.root, name).get("params")
        else:
            return None
    except (ValueError, OSError, KeyError, TypeError):
        return None
    return int(value) if _number(value) is not None else None


def _passes(run: Run, config: Any, steps: Any) -> float | None:
    """Passes over the training data, ``steps / steps per epoch``, where the run's record fixes the steps
    per epoch: its total steps over its epochs when no step limit cut them, else the step at the end of
    its first recorded epoch over that epoch's number when a later epoch followed (so it was whole).
    ``None`` otherwise (a run stopped inside its first epoch)."""
    status, history = run.status, run.metrics.get("epochs") or []
    total, limit, epochs = status.get("total_steps"), config.train.max_steps, config.train.epochs
    per_epoch: float | None = None
    if isinstance(total, int) and total > 0 and (limit is None or total < limit):
        per_epoch = total / epochs
    elif len(history) >= 2:
        step, epoch = history[0].get("step"), history[0].get("epoch")
        if isinstance(step, int) and isinstance(epoch, int) and step > 0 and epoch > 0:
            per_epoch = step / epoch
    steps = _number(steps)
    return None if per_epoch is None or steps is None else steps / per_epoch


def recorded_evidence(run: Run, store: RunStore | None = None) -> dict[str, Any]:
    """The doctor's evidence that ``run`` recorded, without loading a network or a dataset.

    Its config (:func:`workbench.analysis.doctor.config_evidence`), its per-epoch history
    (:func:`~workbench.analysis.doctor.history_evidence`), chance level (its number of classes), the
    student's and the teacher's test accuracy on the whole test split (``student_acc``, ``teacher_acc``,
    ``gap``; the engine's ``test_acc`` and ``teacher_test_acc``), ``agreement``, the passes over the
    training data where the record fixes them, and the parameter counts (the teacher's from its card or
    its run). ``why_missing`` names what only the analyses measure.

    Args:
        run: a run of the store. store: the store resolving a ``run:ID`` teacher (default: the run's folder).

    Raises:
        RunStoreError: the run's config, metrics or model description cannot be read.
    """
    from workbench.analysis.doctor import config_evidence, history_evidence

    store = store if store is not None else RunStore(run.path.parent)
    config, metrics, status = run.config, run.metrics, run.status
    failure = status.get("failure") if status.get("status") == "failed" else None
    ev = config_evidence(config)
    ev.update(history_evidence(metrics, failure=failure or None))
    summary = metrics.get("summary") or {}
    student, teacher = _number(summary.get("test_acc")), _number(summary.get("teacher_test_acc"))
    if student is not None:
        ev["student_acc"] = student
    if teacher is not None:
        ev["teacher_acc"] = teacher
    if student is not None and teacher is not None:
        ev["gap"] = teacher - student
    if (agreement := _number(summary.get("agreement"))) is not None:
        ev["agreement"] = agreement
    spec = run.model_spec.get("student", {}) if (run.path / "model.json").exists() else {}
    if isinstance(spec.get("num_classes"), int) and spec["num_classes"] > 0:
        ev["chance"] = 1.0 / spec["num_classes"]
    if (passes := _passes(run, config, ev.get("steps"))) is not None:
        ev["passes"] = passes
    ev["student_params"] = spec.get("params")
    ev["teacher_params"] = _teacher_params(store, ev.get("teacher_source"))
    if ev["student_params"] and ev["teacher_params"]:
        ev["param_ratio"] = ev["teacher_params"] / ev["student_params"]
    why = {name: _ANALYSES_ONLY for name in _ANALYSED}
    if passes is None:
        why["passes"] = "the run stopped inside its first epoch, so its record does not fix the passes"
    if teacher is None:
        why["gap"] = "the run recorded no teacher test accuracy"
    ev["why_missing"] = why
    return ev


def _no_teacher_reason(run: Run) -> str | None:
    """Why the doctor cannot examine ``run`` at all (it has no teacher), else ``None``."""
    if not run.config.teachers:
        return "the run has no teacher in its config (the doctor compares a student with its teacher)"
    return None


def _examine(run: Run, store: RunStore | None) -> DoctorNote:
    """The top finding of the rules on :func:`recorded_evidence`, or why there is none."""
    from workbench.analysis.doctor import RULES, apply_rules, missing_evidence

    try:
        lacking = _no_teacher_reason(run)
        if lacking is not None:
            return DoctorNote(run.id, reason=lacking)
        ev = recorded_evidence(run, store)
        findings = apply_rules(ev)
    except Exception as err:  # noqa: BLE001 - a run the doctor cannot read is a reason, never a crash
        return DoctorNote(run.id, reason=one_line(err))
    checked = tuple(rule for rule in RULES if rule not in missing_evidence(ev))
    if findings:
        top = findings[0]
        return DoctorNote(
            run.id, rule=top.rule, title=top.title, level=top.level, severity=float(top.severity), checked=checked
        )
    if not checked:
        return DoctorNote(run.id, reason="the run recorded none of the evidence the rules need", checked=checked)
    return DoctorNote(
        run.id,
        reason=f"none of the {len(checked)} rules the record allows fired "
        f"({len(RULES) - len(checked)} need the full doctor)",
        checked=checked,
    )


_FINDINGS: OrderedDict[tuple[Any, ...], DoctorNote] = OrderedDict()
_FINDINGS_LOCK = threading.Lock()


def _stamp(run: Run) -> tuple[Any, ...]:
    """The state of the run's files the finding depends on: each one's modification time and size."""
    out: list[Any] = [str(run.path)]
    for name in _WATCHED:
        try:
            info = os.stat(run.path / name)
            out.append((info.st_mtime_ns, info.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def recorded_finding(run: Run, store: RunStore | None = None) -> DoctorNote:
    """The doctor's top finding on ``run`` from what it recorded (:func:`recorded_evidence`, then
    :func:`workbench.analysis.doctor.apply_rules`: warnings before notes, by severity), or a
    :class:`DoctorNote` without a rule that says why there is none. Cached per run and per state of its
    files (modification time and size), so a page that reruns examines a run once. Never raises."""
    key = _stamp(run)
    with _FINDINGS_LOCK:
        if key in _FINDINGS:
            _FINDINGS.move_to_end(key)
            return _FINDINGS[key]
    note = _examine(run, store)
    with _FINDINGS_LOCK:
        _FINDINGS[key] = note
        while len(_FINDINGS) > _CACHE_SIZE:
            _FINDINGS.popitem(last=False)
    return note


# ---- the overview --------------------------------------------------------------------------------
@dataclass
class _Tally:
    """What :func:`class_overview` gathers for one workspace before it makes the row."""

    jobs: list[Job] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def _read(run: Run) -> tuple[dict[str, Any] | None, float | None]:
    """The run's status and final test accuracy; ``(None, None)`` for a run that cannot be read."""
    try:
        status = run.status
        if status.get("status") == "damaged":
            return None, None
        return status, _number((run.metrics.get("summary") or {}).get("test_acc"))
    except Exception:  # noqa: BLE001 - one unreadable run counts as damaged and never stops the others
        return None, None


def _best(runs: Sequence[tuple[Run, dict[str, Any] | None, float | None]]) -> BestRun | None:
    """The completed run with the highest final test accuracy (the earlier run id on a tie)."""
    best: BestRun | None = None
    for run, status, acc in sorted(runs, key=lambda item: item[0].id):
        if status is None or status.get("status") != "completed" or acc is None:
            continue
        if best is None or acc > best.test_acc:
            best = BestRun(run.id, status.get("kind"), acc)
    return best


def _newest_student(runs: Sequence[tuple[Run, dict[str, Any] | None, float | None]]) -> Run | None:
    """The newest completed student or distilled run (by finished time, then run id)."""
    done = [
        (run, status)
        for run, status, _ in runs
        if status is not None and status.get("status") == "completed" and status.get("kind") in DOCTOR_KINDS
    ]
    if not done:
        return None
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return max(done, key=lambda item: (_when(item[1].get("finished")) or oldest, item[0].id))[0]


def _row(name: str, tally: _Tally, store: RunStore) -> StudentRow:
    """One workspace's row from its jobs and its runs."""
    read = [(run, *_read(run)) for run in tally.runs]
    states = [job.state for job in tally.jobs]
    stamps: list[Any] = [t for job in tally.jobs for t in (job.created, job.started, job.finished)]
    stamps += [status.get("finished") for _, status, _ in read if status is not None]
    newest = _newest_student(read)
    finding = (
        recorded_finding(newest, store)
        if newest is not None
        else DoctorNote(None, reason="no completed student or distilled run yet")
    )
    return StudentRow(
        workspace=name,
        runs=len(read),
        queued=states.count("queued"),
        running=states.count("running"),
        failed=states.count("failed"),
        damaged=sum(1 for _, status, _ in read if status is None),
        last_activity=_latest(stamps),
        best=_best(read),
        finding=finding,
    )


def class_overview(store: RunStore, queue: JobQueue) -> list[StudentRow]:
    """One :class:`StudentRow` per workspace that has jobs, and one for :data:`NO_WORKSPACE` when some
    run or job has no workspace; sorted by name, :data:`NO_WORKSPACE` last.

    Args:
        store: the run store. queue: its job queue (:class:`workbench.jobs.JobQueue`; its jobs are
            read with ``list()``, which also marks jobs whose worker died as failed).

    Returns:
        The rows. A run whose files cannot be read counts as ``damaged`` in its row; the others are read
        as usual.

    Raises:
        JobError / OSError: the job list cannot be read. RunStoreError: the store's folder cannot be read.
    """
    tallies: dict[str, _Tally] = {}
    owners: dict[str, set[str]] = {}
    for job in queue.list():
        name = job.workspace or NO_WORKSPACE
        tallies.setdefault(name, _Tally()).jobs.append(job)
        if job.run_id:
            owners.setdefault(job.run_id, set()).add(name)
    for run_id in store.ids():
        run = Run(run_id, store.root / run_id)
        for name in sorted(owners.get(run_id) or {NO_WORKSPACE}):
            tallies.setdefault(name, _Tally()).runs.append(run)
    names = sorted((n for n in tallies if n != NO_WORKSPACE), key=lambda n: (n.lower(), n))
    if NO_WORKSPACE in tallies:
        names.append(NO_WORKSPACE)
    return [_row(name, tallies[name], store) for name in names]


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def overview_table(rows: Sequence[StudentRow]) -> list[dict[str, Any]]:
    """The rows for display: one flat mapping each, in order, with the columns ``workspace``, ``runs``,
    ``queued``, ``running``, ``failed``, ``damaged``, ``last activity``, ``best run``, ``kind``,
    ``test_acc (%)`` (the best run's final test accuracy in percent, two decimals), ``doctor run`` and
    ``doctor`` (:attr:`DoctorNote.text`). Missing values are ``None``."""
    out = []
    for row in rows:
        best: Mapping[str, Any] = asdict(row.best) if row.best is not None else {}
        out.append(
            {
                "workspace": row.workspace,
                "runs": row.runs,
                "queued": row.queued,
                "running": row.running,
                "failed": row.failed,
                "damaged": row.damaged,
                "last activity": row.last_activity,
                "best run": best.get("run_id"),
                "kind": best.get("kind"),
                "test_acc (%)": _percent(best.get("test_acc")),
                "doctor run": row.finding.run_id,
                "doctor": row.finding.text,
            }
        )
    return out
