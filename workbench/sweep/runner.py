"""Run a sweep: each trial trains on a backend through :func:`workbench.train.run`, which writes
the trial's run to the store itself, under the trial's deterministic run id. Workers hand back
only ``(run_id, status, summary)``; the driver collects the outcomes (and the CLI writes the
summary CSV). Trials already completed in the store are skipped, so a killed sweep resumes.

Sweeps started more than once on one store share the work: a trial is trained only by the
process holding its claim, an exclusive ``fcntl.flock`` on ``<store>/.sweeps/<name>/<trial
key>.lock`` (the file names the holder's pid and host). The kernel drops the lock of a process
that died, so a stale claim is taken over by the next sweep that asks. A trial another sweep is
training is left to it and waited for at the end (then read from the store, or trained here if
that sweep died before completing it).

Backends:

* ``local``: in this process (``workers=1``) or a process pool (``workers>1``) whose workers
  end when the driver does (a killed driver leaves no worker training);
* ``ray``: Ray tasks on a local Ray instance (default) or a cluster (``address``; the run store
  must then be a folder every node sees at the same path).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.config import validate_config
from workbench.runs import RunStore, RunStoreError, atomic_write_text
from workbench.sweep.spec import SweepError, SweepSpec, Trial, check_name, expand_trials

#: ``run_trial`` statuses besides a run's own: the trial is claimed by another live sweep
#: (``busy``), or was completed by another sweep while this one waited (``completed elsewhere``)
BUSY = "busy"
ELSEWHERE = "completed elsewhere"


@dataclass
class TrialOutcome:
    """One trial's row in the summary."""

    trial: Trial
    run_id: str
    status: str
    summary: dict[str, Any]
    skipped: bool


def trial_run_id(trial: Trial) -> str:
    """The deterministic run id of a trial: ``<sweep name slug>-<trial key>`` (for a chain, the
    id of its first link)."""
    sweep = str(trial.config.links.get("sweep", "sweep"))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", sweep).strip("-.")[:40] or "sweep"
    return f"{slug}-{trial.key}"


def claim_path(store: RunStore, sweep: str, key: str) -> Path:
    """Where the claim (lock file) of trial ``key`` of sweep ``sweep`` lives in ``store``."""
    check_name(sweep, "name")
    if not re.fullmatch(r"[A-Za-z0-9]+", key):
        raise SweepError(f"trial key {key!r}: expected letters and digits")
    return store.root / ".sweeps" / sweep / f"{key}.lock"


@contextlib.contextmanager
def claim_trial(store: RunStore, sweep: str, key: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold the claim of one trial for the duration of the block; yields whether it was obtained.

    The claim is an exclusive ``fcntl.flock`` on the trial's lock file, so it is released when
    the block ends or the process dies (a stale claim is taken over by the next caller). With
    ``wait`` the call blocks until the holder releases it; otherwise it yields False at once
    when another process holds it. The file records the holder's pid, host and start time.
    """
    path = claim_path(store, sweep, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _completed_run(store: RunStore, sweep: str, key: str) -> Any:
    done = completed_trials(store, sweep)
    return store.load(done[key]) if key in done else None


def run_trial(
    config_data: dict[str, Any],
    threads: int = 0,
    runs_root: str | None = None,
    run_id: str | None = None,
    *,
    wait: bool = False,
) -> tuple[str, str, dict[str, Any]]:
    """Train one trial into the run store at ``runs_root`` and return ``(run_id, status, summary)``.

    Teachers given as ``run:<id>`` are read from that store too.

    Runs in the driver, a pool process or a Ray task; trains through :func:`workbench.train.run`,
    so the stored run (checkpoints included) is exactly what any other face would write. A
    non-finite loss is a ``failed`` trial (recorded as such in the store), not an error.

    A trial of a sweep (``links`` naming ``sweep`` and ``trial``) is trained only under its claim
    (:func:`claim_trial`): when another process holds it the status is :data:`BUSY` (or, with
    ``wait``, the call waits for it); when the trial turns out completed in the store once the
    claim is held, its stored outcome comes back with status :data:`ELSEWHERE`. Leftovers of
    earlier attempts of the trial (failed, stopped, interrupted runs) are removed under the
    claim before it trains again.
    """
    import torch

    from workbench.train import TrainingFailed, run

    if threads:
        torch.set_num_threads(threads)
    config = validate_config(config_data)
    store = RunStore(runs_root)
    sweep, key = config.links.get("sweep"), config.links.get("trial")
    claim = claim_trial(store, sweep, key, wait=wait) if sweep and key else contextlib.nullcontext(True)
    with claim as held:
        if not held:
            return run_id or "", BUSY, {}
        if sweep and key:
            done = _completed_run(store, sweep, key)
            if done is not None:
                return done.id, ELSEWHERE, dict(done.metrics.get("summary", {}))
            _clear_leftovers(store, sweep, {key})
        try:
            result = run(config, store=store, run_id=run_id)
        except TrainingFailed:
            return run_id or "", "failed", {}
        return result.run_id or "", result.status, dict(result.summary)


@dataclass(frozen=True)
class TrialRun:
    """One stored run of a sweep's trial: the run, its status (``completed``, ``failed``,
    ``interrupted``, ...) and whether it is the last link of its chain (a plain run is)."""

    run: Any
    status: str
    last_link: bool


def trial_runs(store: RunStore, sweeps: set[str] | None = None) -> dict[str, dict[str, list[TrialRun]]]:
    """``sweep name -> trial key -> its runs`` for every run of the store that a sweep trained
    (of the sweeps named in ``sweeps`` only, when given), in the store's id order. Runs whose
    config cannot be read are left out. One pass over the store."""
    from workbench.train import chain_length

    out: dict[str, dict[str, list[TrialRun]]] = {}
    for run_id in store.ids():
        run = store.load(run_id)
        try:
            links = run.config.links
            last = int(links.get("chain_step", 0)) == chain_length(run.config) - 1
        except ValueError:
            continue
        sweep, key = links.get("sweep"), links.get("trial")
        if not sweep or not key or (sweeps is not None and sweep not in sweeps):
            continue
        status = str(run.status.get("status"))
        out.setdefault(sweep, {}).setdefault(key, []).append(TrialRun(run, status, last))
    return out


def completed_of(runs: dict[str, list[TrialRun]]) -> dict[str, str]:
    """``trial key -> run id`` of the completed trials among ``runs`` (one sweep's entry of
    :func:`trial_runs`): a trial is completed when a run of it that is the last link of its chain
    completed; the id is that run's."""
    done: dict[str, str] = {}
    for key, items in runs.items():
        for item in items:
            if item.status == "completed" and item.last_link:
                done[key] = item.run.id
    return done


def completed_trials(store: RunStore, sweep: str) -> dict[str, str]:
    """``trial key -> run id`` of the trials of ``sweep`` already completed in the store (for a
    chain trial, only when its last link completed; the id is that link's)."""
    return completed_of(trial_runs(store, {sweep}).get(sweep, {}))


def _clear_leftovers(store: RunStore, sweep: str, keys: set[str]) -> None:
    """Remove what earlier attempts of the trials ``keys`` left (failed, stopped, interrupted
    runs, incomplete chains), so each trial trains again under its own id. Called with the
    trials' claims held, so no live process is writing them."""
    for run in store.list():
        try:
            links = run.config.links
            status = run.status.get("status")
        except ValueError:
            continue
        if links.get("sweep") == sweep and links.get("trial") in keys and status != "running":
            try:
                store.delete(run.id)
            except RunStoreError:
                pass


def _watch_parent(parent: int) -> None:
    """In a pool worker: end this process as soon as the driver that started it is gone."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="watch-driver", daemon=True).start()


def _pool_results(
    trials: list[Trial], workers: int, root: str
) -> Iterator[tuple[Trial, tuple[str, str, dict[str, Any]]]]:
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_watch_parent,
        initargs=(os.getpid(),),
    )
    finished = False
    try:
        pending = {
            pool.submit(run_trial, t.config.model_dump(mode="json"), threads, root, trial_run_id(t)): t
            for t in trials
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # interrupted or failed: no worker goes on training
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                if proc.is_alive():
                    proc.terminate()
            for proc in processes:
                proc.join(timeout=5)


def _ray_results(
    trials: list[Trial], workers: int, address: str | None, root: str
) -> Iterator[tuple[Trial, tuple[str, str, dict[str, Any]]]]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "backend 'ray': Ray is not installed; pip install 'kd-workbench[distributed]'"
        ) from None
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
        ray.init(**kwargs)
        started_here = True
    refs: dict[Any, Trial] = {}
    try:
        threads = max(1, (os.cpu_count() or 1) // workers)
        remote = ray.remote(num_cpus=1)(run_trial)
        refs = {
            remote.remote(t.config.model_dump(mode="json"), threads, root, trial_run_id(t)): t for t in trials
        }
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                yield refs.pop(ref), ray.get(ref)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def run_sweep(
    spec: SweepSpec,
    store: RunStore | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
) -> list[TrialOutcome]:
    """Run every trial of ``spec`` not yet completed in ``store``; returns one outcome per trial
    (skipped ones included, in grid order). Each trial's run lands in the store as it finishes,
    so whatever happens to the driver, finished trials are kept."""
    store = store or RunStore()
    trials = expand_trials(spec)
    done = completed_trials(store, spec.name)
    outcomes: dict[str, TrialOutcome] = {}
    todo: list[Trial] = []
    queued: set[str] = set()
    for t in trials:
        if t.key in done:
            run = store.load(done[t.key])
            o = TrialOutcome(t, run.id, "completed", run.metrics.get("summary", {}), skipped=True)
            outcomes[t.key] = o
            if on_trial:
                on_trial(o)
        elif t.key not in queued:
            queued.add(t.key)
            todo.append(t)
    root = str(store.root.resolve())
    if spec.backend == "ray":
        results = _ray_results(todo, spec.workers, spec.address, root)
    elif spec.workers > 1 and len(todo) > 1:
        results = _pool_results(todo, spec.workers, root)
    else:
        results = ((t, run_trial(t.config.model_dump(mode="json"), 0, root, trial_run_id(t))) for t in todo)
    busy: list[Trial] = []

    def record(trial: Trial, run_id: str, status: str, summary: dict[str, Any]) -> None:
        elsewhere = status == ELSEWHERE
        o = TrialOutcome(trial, run_id, "completed" if elsewhere else status, summary, skipped=elsewhere)
        outcomes[trial.key] = o
        if on_trial:
            on_trial(o)

    for trial, (run_id, status, summary) in results:
        if status == BUSY:  # another sweep is training it: collected at the end
            busy.append(trial)
            continue
        record(trial, run_id, status, summary)
    for trial in busy:  # wait for the other sweep's claim; train it here if that sweep died first
        record(
            trial, *run_trial(trial.config.model_dump(mode="json"), 0, root, trial_run_id(trial), wait=True)
        )
    return [outcomes[t.key] for t in trials if t.key in outcomes]


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(outcomes: list[TrialOutcome]) -> list[dict[str, Any]]:
    """Group trials by grid point: mean ± std over seeds of test accuracy, teacher agreement and
    seconds per epoch, with the number of seeds and failures."""
    groups: dict[str, list[TrialOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.trial.group, []).append(o)
    rows = []
    for group, items in groups.items():
        ok = [o for o in items if o.status == "completed"]

        def vals(key: str, items: list[TrialOutcome] = ok) -> list[float]:
            return [float(o.summary[key]) for o in items if o.summary.get(key) is not None]

        per_epoch = [
            o.summary["seconds"] / max(o.summary.get("epochs_done") or 1, 1)
            for o in ok
            if "seconds" in o.summary
        ]
        acc, acc_sd = _mean_std(vals("test_acc"))
        agr, agr_sd = _mean_std(vals("agreement"))
        sec, sec_sd = _mean_std(per_epoch)
        rows.append(
            {
                "group": group,
                **items[0].trial.params,
                "seeds": len(ok),
                "failed": len(items) - len(ok),
                "test_acc_mean": acc,
                "test_acc_std": acc_sd,
                "agreement_mean": agr,
                "agreement_std": agr_sd,
                "sec_per_epoch_mean": sec,
                "sec_per_epoch_std": sec_sd,
                "runs": " ".join(o.run_id for o in items),
            }
        )
    return rows


def summary_csv(rows: list[dict[str, Any]]) -> str:
    """The summary rows as CSV text."""
    if not rows:
        return ""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: (r.get(k) if not isinstance(r.get(k), (dict, list)) else str(r.get(k))) for k in fields}
        )
    return buf.getvalue()


def write_summary_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the summary CSV atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, summary_csv(rows))
    return path
