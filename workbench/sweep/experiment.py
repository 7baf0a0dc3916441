"""Experiments: a sweep spec queued as jobs, one per trial that is not trained yet.

An experiment *is* a :class:`~workbench.sweep.SweepSpec` (a base config, a grid of any schema
fields, seeds), trained by the job queue instead of a sweep driver::

    from workbench.jobs import JobQueue
    from workbench.sweep import SweepSpec, submit_experiment, experiment_status, stop_experiment

    spec = SweepSpec(name="temps", config=base, grid={"distill.methods[0].params.temperature": [2, 4]},
                     seeds=[0, 1, 2])
    queue = JobQueue("runs")
    sub = submit_experiment(spec, queue, workspace="alice")   # validates all, queues 6 jobs
    sub.line()                    # "experiment temps: 6 trials, 6 queued; about 2 min ..."
    experiment_status("runs", "temps").counts               # {"queued": 6, ...}
    stop_experiment(queue, "temps")                           # finished runs stay

Each trial's job trains into the run id :func:`~workbench.sweep.trial_run_id` gives, with the
trial's links (``sweep``, ``trial``), so its run is the one ``workbench sweep`` would write: both
recognise each other's completed trials, and re-submitting queues only the trials that are
missing, failed or stopped. The record ``<store>/experiments/<name>.json`` (spec, trials with
their keys and run ids, job ids, created, workspace) is written atomically; the trials' states
are read from the job files and the run store each time (:func:`experiment_status`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.jobs.queue import JobQueue
from workbench.jobs.state import Job, all_job_files, now
from workbench.runs import Run, RunStore, RunStoreError, atomic_write_json
from workbench.sweep.estimate import TimeEstimate, estimate_seconds
from workbench.sweep.runner import TrialRun, claim_trial, completed_of, trial_run_id, trial_runs
from workbench.sweep.spec import (
    SweepError,
    SweepSpec,
    Trial,
    base_config,
    check_name,
    expand_trials,
    trial_count,
)

#: the most trials one experiment may have (a bigger grid is refused at submit)
MAX_TRIALS = 500
#: the folder of the run store holding the experiment records
EXPERIMENTS_DIR = "experiments"
#: a trial's states: its job's while it has an active one, else its runs'
TRIAL_STATES = ("queued", "running", "completed", "failed", "stopped", "missing")
#: the states a re-submit trains again
RETRAIN_STATES = ("failed", "stopped", "missing")
_ACTIVE = ("queued", "running")


class ExperimentError(SweepError):
    """An experiment cannot be submitted, found or changed; one line naming it and the reason."""


# ---- the record ---------------------------------------------------------------------------------
def _store(store: RunStore | str | Path | None) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(store)


def experiment_path(store: RunStore | str | Path | None, name: str) -> Path:
    """Where the record of experiment ``name`` lives: ``<store>/experiments/<name>.json``."""
    return _store(store).root / EXPERIMENTS_DIR / f"{check_name(name, 'experiment')}.json"


def _read_record(store: RunStore, name: str) -> dict[str, Any] | None:
    path = experiment_path(store, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise ExperimentError(f"experiment {name}: {path} cannot be read (not valid JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise ExperimentError(f"experiment {name}: {path} is not an experiment record")
    return data


@contextlib.contextmanager
def _locked(store: RunStore, name: str) -> Iterator[None]:
    """One submit or stop of experiment ``name`` at a time (an ``fcntl.flock`` on a lock file)."""
    folder = store.root / EXPERIMENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _trial_entry(trial: Trial) -> dict[str, Any]:
    return {
        "key": trial.key,
        "group": trial.group,
        "params": trial.params,
        "seed": trial.seed,
        "run_id": trial_run_id(trial),
    }


def _resolved(spec: SweepSpec) -> dict[str, Any]:
    """The spec as the record keeps it: self-contained (a ``base`` file read into ``config``)."""
    return {**spec.model_dump(mode="json"), "base": None, "config": base_config(spec)}


# ---- states -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialStatus:
    """One trial of an experiment: its key, grid point (``group``, ``params``), seed, ``state``
    (one of :data:`TRIAL_STATES`), the run it trains (or trained) into, its latest job and that
    job's one-line error."""

    key: str
    group: str
    params: dict[str, Any]
    seed: int
    state: str
    run_id: str | None
    job_id: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ExperimentStatus:
    """An experiment as the store has it now: its trials with their states, and its record's
    ``spec`` (a :class:`SweepSpec` mapping), ``created``, ``updated`` and ``workspace``."""

    name: str
    trials: list[TrialStatus]
    spec: dict[str, Any]
    created: str | None = None
    updated: str | None = None
    workspace: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many trials are in each state (every state of :data:`TRIAL_STATES`, zeros included)."""
        out = dict.fromkeys(TRIAL_STATES, 0)
        for t in self.trials:
            out[t.state] += 1
        return out

    @property
    def active(self) -> bool:
        """Whether any trial is queued or running."""
        return any(t.state in _ACTIVE for t in self.trials)

    def run_ids(self, state: str = "completed") -> list[str]:
        """The run ids of the trials in ``state`` (grid order)."""
        return [t.run_id for t in self.trials if t.state == state and t.run_id]

    def summary(self) -> str:
        """One line: ``8 trials: 5 completed, 2 running, 1 queued``."""
        parts = [f"{n} {state}" for state, n in self.counts.items() if n]
        return f"{len(self.trials)} trial{'s' * (len(self.trials) != 1)}: {', '.join(parts) or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, ``counts`` added."""
        return {
            "name": self.name,
            "created": self.created,
            "updated": self.updated,
            "workspace": self.workspace,
            "counts": self.counts,
            "spec": self.spec,
            "trials": [t.to_dict() for t in self.trials],
        }


def _latest_jobs(root: Path, names: set[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``experiment -> trial key -> its latest job's raw record`` from the queue's job files."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for data in all_job_files(root):
        name, key = data.get("experiment"), data.get("trial")
        if not name or not key or (names is not None and name not in names):
            continue
        best = out.setdefault(name, {}).get(key)
        if best is None or int(data.get("seq", 0)) > int(best.get("seq", 0)):
            out[name][key] = data
    return out


def _trial_state(
    entry: dict[str, Any], runs: list[TrialRun], done: str | None, job: dict[str, Any] | None
) -> TrialStatus:
    """The state of one trial from its completed run id (``done``), its latest job and its runs."""
    base = {k: entry.get(k) for k in ("key", "group", "params", "seed")}
    job_id = job["id"] if job else None
    if done is not None:
        return TrialStatus(**base, state="completed", run_id=done, job_id=job_id)
    if job is not None and job.get("state") in (*_ACTIVE, "failed", "stopped"):
        state = job["state"]
        return TrialStatus(
            **base,
            state=state,
            run_id=job.get("run_id") or entry.get("run_id"),
            job_id=job_id,
            error=job.get("error") if state == "failed" else None,
        )
    left = [r for r in runs if r.status != "completed"]
    if left:
        last = left[-1]
        state = {"running": "running", "stopped": "stopped"}.get(last.status, "failed")
        error = None if state != "failed" else f"run {last.run.id} is {last.status}"
        return TrialStatus(**base, state=state, run_id=last.run.id, job_id=job_id, error=error)
    return TrialStatus(**base, state="missing", run_id=entry.get("run_id"), job_id=job_id)


def _status(
    record: dict[str, Any],
    runs: dict[str, list[TrialRun]],
    jobs: dict[str, dict[str, Any]],
) -> ExperimentStatus:
    done = completed_of(runs)
    trials = [
        _trial_state(e, runs.get(e["key"], []), done.get(e["key"]), jobs.get(e["key"]))
        for e in record["trials"]
    ]
    return ExperimentStatus(
        name=record["name"],
        trials=trials,
        spec=record.get("spec", {}),
        created=record.get("created"),
        updated=record.get("updated"),
        workspace=record.get("workspace"),
    )


def experiment_status(store: RunStore | str | Path | None, name: str) -> ExperimentStatus:
    """The trials of experiment ``name`` with their states and run ids.

    A trial is ``completed`` when its run (the last link, for a chain) completed in the store;
    else it is in its latest job's state while that job is ``queued``, ``running``, ``failed`` or
    ``stopped``; else its runs say (``running``; ``stopped``; ``failed`` for a failed, interrupted
    or damaged one); else it is ``missing`` (never queued, or its run was deleted).

    Args:
        store: the run store (or its folder) holding the experiment and the queue.
        name: the experiment's name.

    Raises:
        ExperimentError: no such experiment, or its record cannot be read (names the file).
    """
    store = _store(store)
    record = _read_record(store, name)
    if record is None:
        raise ExperimentError(f"experiment {name}: not found in {store.root / EXPERIMENTS_DIR}")
    runs = trial_runs(store, {name}).get(name, {})
    return _status(record, runs, _latest_jobs(store.root, {name}).get(name, {}))


def list_experiments(
    store: RunStore | str | Path | None = None, workspace: str | None = None
) -> list[ExperimentStatus]:
    """Every experiment of the store (of ``workspace`` only, when given) with its trials' states,
    newest first. A record that cannot be read is left out."""
    store = _store(store)
    folder = store.root / EXPERIMENTS_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = _read_record(store, path.stem)
        except (ExperimentError, SweepError):
            continue
        if record is None or record.get("name") != path.stem:
            continue
        if workspace is None or record.get("workspace") == workspace:
            records.append(record)
    names = {r["name"] for r in records}
    runs = trial_runs(store, names) if names else {}
    jobs = _latest_jobs(store.root, names) if names else {}
    out = [_status(r, runs.get(r["name"], {}), jobs.get(r["name"], {})) for r in records]
    return sorted(out, key=lambda s: (s.created or "", s.name), reverse=True)


# ---- submit -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submission:
    """What :func:`submit_experiment` did: ``trials`` in the grid, the ``jobs`` it queued, how
    many trials were already ``completed`` or ``pending`` (queued or running, by a job or a
    ``workbench sweep``) and so not queued again, the ``estimate`` of the queued trials and the
    record's ``path``."""

    name: str
    trials: int
    jobs: list[Job]
    completed: int
    pending: int
    estimate: TimeEstimate
    path: Path

    @property
    def queued(self) -> int:
        """How many trials this submit queued."""
        return len(self.jobs)

    def line(self) -> str:
        """One line for a face: ``experiment t: 8 trials, 8 queued; about 1 min 10 s ...``."""
        skipped = [
            f"{n} {what}" for n, what in ((self.completed, "completed"), (self.pending, "pending")) if n
        ]
        more = f" ({', '.join(skipped)})" if skipped else ""
        est = f"; {self.estimate.text()}" if self.jobs else ""
        return f"experiment {self.name}: {self.trials} trials, {self.queued} queued{more}{est}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return {
            "name": self.name,
            "trials": self.trials,
            "queued": self.queued,
            "jobs": [j.id for j in self.jobs],
            "completed": self.completed,
            "pending": self.pending,
            "estimate": self.estimate.to_dict(),
            "path": str(self.path),
            "line": self.line(),
        }


def _check_size(spec: SweepSpec, max_trials: int) -> None:
    if not isinstance(max_trials, int) or isinstance(max_trials, bool) or max_trials < 1:
        raise ExperimentError(f"max_trials: expected an integer >= 1, got {max_trials!r}")
    count = trial_count(spec)
    if count > max_trials:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in spec.grid.items())
        grid = f"{sizes} x {len(spec.seeds)} seeds" if sizes else f"{len(spec.seeds)} seeds"
        raise ExperimentError(
            f"experiment {spec.name}: {count} trials ({grid}) is above the limit of {max_trials}; "
            "narrow the grid or raise max_trials"
        )


def _unique(trials: list[Trial]) -> list[Trial]:
    seen: set[str] = set()
    out = []
    for t in trials:
        if t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


def _clear(store: RunStore, runs: list[TrialRun]) -> None:
    """Remove what earlier attempts of one trial left (called under the trial's claim)."""
    for item in runs:
        if item.status != "running":
            with contextlib.suppress(RunStoreError):
                store.delete(item.run.id)


def _label(name: str, trial: Trial) -> str:
    text = f"{name}: {trial.group}, seed {trial.seed}"
    return text if len(text) <= 120 else text[:117] + "..."


def submit_experiment(
    spec: SweepSpec,
    queue: JobQueue,
    *,
    workspace: str | None = None,
    max_trials: int = MAX_TRIALS,
    max_hours: float | None = None,
) -> Submission:
    """Queue one job per trial of ``spec`` that is not completed, queued or running yet.

    Every trial's config is validated first (a bad value: one line naming the trial and the
    field, nothing queued); a grid of more than ``max_trials`` trials, or whose queued trials are
    estimated (:func:`~workbench.sweep.estimate_seconds`, with the queue's ``max_jobs``) to take
    more than ``max_hours``, is refused with the count or the estimate. The record
    ``<store>/experiments/<name>.json`` is written atomically before the jobs are queued and
    again with their ids. A trial that failed or was stopped, or whose run was deleted, is queued
    again (what its earlier attempts left is removed first); re-submitting an unchanged,
    finished experiment queues nothing. Re-submitting under the same name with another grid
    (more seeds, say) makes the new grid the experiment's.

    Args:
        spec: the experiment (its ``name`` names it in the store).
        queue: the job queue of the run store the runs go to.
        workspace: whose experiment it is (its jobs run in that workspace); a re-submit must
            give the same.
        max_trials: the most trials accepted.
        max_hours: the longest estimated wall time accepted (``None``: no bound).

    Returns:
        The :class:`Submission` (jobs queued, trials skipped, the estimate). Nothing starts until
        the queue is pumped.

    Raises:
        SweepError: a trial's config is invalid (names the trial and the field).
        ExperimentError: too many trials, more than the workspace may queue under the class's cap
            (:meth:`~workbench.jobs.JobQueue.room`), too long, another workspace's experiment, or a record
            that cannot be read.
    """
    if not isinstance(spec, SweepSpec):
        raise ExperimentError(f"spec: expected a SweepSpec, got {type(spec).__name__}")
    name = check_name(spec.name, "experiment")
    if name.endswith(".annotations"):  # <name>.annotations.json holds an experiment's tags and note
        raise ExperimentError(f"experiment {name}: a name may not end in '.annotations'")
    if workspace is not None and (not isinstance(workspace, str) or not workspace.strip()):
        raise ExperimentError(f"workspace: expected a non-empty string or None, got {workspace!r}")
    if max_hours is not None and (isinstance(max_hours, bool) or not max_hours > 0):
        raise ExperimentError(f"max_hours: expected a number > 0 or None, got {max_hours!r}")
    _check_size(spec, max_trials)
    trials = _unique(expand_trials(spec))
    store = RunStore(queue.root)
    with _locked(store, name):
        old = _read_record(store, name)
        if old is not None and old.get("workspace") != workspace:
            raise ExperimentError(
                f"experiment {name}: belongs to workspace {old.get('workspace')!r}, not {workspace!r}; "
                "choose another name"
            )
        record = {**(old or {}), "name": name, "spec": _resolved(spec), "workspace": workspace}
        record["trials"] = [_trial_entry(t) for t in trials]
        record.setdefault("created", now())
        record.setdefault("jobs", {})
        runs = trial_runs(store, {name}).get(name, {})
        status = _status(record, runs, _latest_jobs(store.root, {name}).get(name, {}))
        states = {t.key: t.state for t in status.trials}
        todo = [t for t in trials if states[t.key] in RETRAIN_STATES]
        room = queue.room(workspace)  # the class's cap: the whole batch fits, or nothing is queued
        if room is not None and len(todo) > room:
            raise ExperimentError(
                f"experiment {name}: {len(todo)} trials to queue, but workspace {workspace!r} may queue only "
                f"{room} more job{'s' * (room != 1)} (the class's cap is {queue.settings().cap}); "
                "narrow the grid or wait for jobs to end"
            )
        estimate = estimate_seconds(todo, store, max_jobs=queue.max_jobs)
        if max_hours is not None and estimate.total > max_hours * 3600:
            raise ExperimentError(
                f"experiment {name}: {len(todo)} trials to train would take {estimate.text()}, "
                f"above the bound of {max_hours:g} h; narrow the grid or raise max_hours"
            )
        record["updated"] = now()
        record["submissions"] = int(record.get("submissions", 0)) + 1
        path = experiment_path(store, name)
        atomic_write_json(path, record)
        jobs = _queue_trials(queue, store, name, todo, runs, workspace)
        for job in jobs:
            record["jobs"].setdefault(job.trial, []).append(job.id)
        atomic_write_json(path, record)
    completed = sum(1 for s in states.values() if s == "completed")
    return Submission(
        name=name,
        trials=len(trials),
        jobs=jobs,
        completed=completed,
        pending=len(trials) - completed - len(jobs),
        estimate=estimate,
        path=path,
    )


def _queue_trials(
    queue: JobQueue,
    store: RunStore,
    name: str,
    todo: list[Trial],
    runs: dict[str, list[TrialRun]],
    workspace: str | None,
) -> list[Job]:
    """Queue a job per trial of ``todo`` (after removing what its earlier attempts left); a
    trial whose claim a live ``workbench sweep`` holds is left to that sweep."""
    jobs: list[Job] = []
    for trial in todo:
        with claim_trial(store, name, trial.key) as held:
            if not held:
                continue
            _clear(store, runs.get(trial.key, []))
        jobs.append(
            queue.submit(
                trial.config,
                workspace=workspace,
                label=_label(name, trial),
                experiment=name,
                trial=trial.key,
                run_id=trial_run_id(trial),
            )
        )
    return jobs


# ---- stop and repeat ----------------------------------------------------------------------------
def stop_experiment(queue: JobQueue, name: str) -> list[Job]:
    """Stop the queued and running jobs of experiment ``name`` (queued ones first, so that none
    starts meanwhile); finished runs are kept, and a running trial's run ends ``stopped``
    (loadable). Returns the jobs stopped or asked to stop.

    Raises:
        ExperimentError: no such experiment in the queue's store.
    """
    store = RunStore(queue.root)
    check_name(name, "experiment")
    with _locked(store, name):
        if _read_record(store, name) is None:
            raise ExperimentError(f"experiment {name}: not found in {store.root / EXPERIMENTS_DIR}")
        mine = [d for d in all_job_files(queue.root) if d.get("experiment") == name]
        order = sorted(
            (d for d in mine if d.get("state") in _ACTIVE),
            key=lambda d: (d.get("state") != "queued", int(d.get("seq", 0))),
        )
        return [queue.stop(d["id"]) for d in order]


def _chain_base(run: Run, store: RunStore | None) -> dict[str, Any]:
    """The config a chain link run was trained from: its first link's, with the chain's student."""
    links = run.config.links
    if store is None:
        raise ExperimentError(f"run {run.id}: a link of chain {links['chain']}; give the store to repeat it")
    try:
        first = store.load(links["chain"]).config
    except RunStoreError:
        raise ExperimentError(
            f"run {run.id}: link {links.get('chain_step')} of chain {links['chain']}, whose first run is gone; "
            "repeat from the chain's config"
        ) from None
    steps: list[tuple[int, Run]] = []
    for other_id in store.ids():
        other = store.load(other_id)
        try:
            other_links = other.config.links
        except ValueError:
            continue
        if other_links.get("chain") == links["chain"]:
            steps.append((int(other_links.get("chain_step", 0)), other))
    data = first.model_dump(mode="json")
    if steps and max(steps, key=lambda s: s[0])[1].config.links.get("chain_role") == "student":
        data["model"] = max(steps, key=lambda s: s[0])[1].config.model.model_dump(mode="json")
    return data


def repeat_with_seeds(
    run: Run | str,
    seeds: Sequence[int],
    *,
    store: RunStore | str | Path | None = None,
    name: str | None = None,
) -> SweepSpec:
    """ "Repeat with N seeds": a spec whose base is ``run``'s config (no grid) over ``seeds``.

    Args:
        run: a stored :class:`~workbench.runs.Run`, or its id (or unique prefix) in ``store``.
        seeds: the seeds, distinct integers >= 0 (e.g. ``[0, 1, 2]``).
        store: the run store (or its folder) ``run`` is read from when given by id, and where a
            link of a chain (``ban``, ``takd``) finds its chain's first run.
        name: the experiment's name (default ``repeat-<run id>``).

    Returns:
        The :class:`SweepSpec`; pass it to :func:`submit_experiment`.

    Raises:
        ExperimentError: no seeds, a repeated or negative seed, or a run that cannot be read.
    """
    if not isinstance(run, Run):
        store = _store(store)
        run = store.load(str(run))
    elif store is not None:
        store = _store(store)
    seeds = list(seeds)
    if not seeds:
        raise ExperimentError("seeds: give at least one seed, e.g. 0,1,2")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ExperimentError(f"seeds: {s!r} is not a whole number >= 0")
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise ExperimentError(f"seeds: {dup} appears more than once")
    config = run.config
    data = _chain_base(run, store) if "chain" in config.links else config.model_dump(mode="json")
    for key in ("name", "links", "seed"):
        data.pop(key, None)
    label = name if name is not None else f"repeat-{run.id}"[:80].rstrip("-.")
    check_name(label, "name")
    return SweepSpec(name=label, config=data, seeds=seeds)
