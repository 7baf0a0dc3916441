"""Run a sweep: trials execute on a backend, results come back to the driver, which writes the
run store. Trials already completed in the store are skipped, so a killed sweep resumes.

Backends:

* ``local``: in this process (``workers=1``) or a process pool (``workers>1``);
* ``ray``: Ray tasks on a local Ray instance (default) or a cluster (``address``).

Workers never touch the store: they return plain data (config, metrics, checkpoints as CPU
tensors) and the driver writes each finished trial atomically, as it arrives.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.config import validate_config
from workbench.runs import RunStore, atomic_write_text, utc_now
from workbench.sweep.spec import SweepSpec, Trial, expand_trials


@dataclass
class TrialOutcome:
    """One trial's row in the summary."""

    trial: Trial
    run_id: str
    status: str
    summary: dict[str, Any]
    skipped: bool


def run_trial(config_data: dict[str, Any], threads: int = 0, runs_root: str | None = None) -> dict[str, Any]:
    """Train one trial without a store and return everything the driver needs to write it.

    Runs in a worker (a pool process or a Ray task); the result holds only plain data and CPU
    tensors.
    """
    from workbench.train import EpochEnded, RunStarted, Trainer, TrainingFailed

    if threads:
        torch.set_num_threads(threads)
    if runs_root:
        os.environ["WORKBENCH_RUNS"] = runs_root  # teachers given as run:<id> resolve here
    config = validate_config(config_data)
    checkpoints: dict[str, dict[str, torch.Tensor]] = {}
    started: dict[str, Any] = {}

    def collect(event: Any) -> None:
        if isinstance(event, RunStarted):
            started["model_spec"] = event.model_spec
            started["teacher"] = event.teacher_metrics
        elif isinstance(event, EpochEnded):
            state = {k: v.detach().cpu().clone() for k, v in event.state().items()}
            if config.train.snapshot_every_epoch:
                checkpoints[f"epoch_{event.epoch:03d}"] = state
            if event.is_best:
                checkpoints["best"] = state

    trainer = Trainer(config, subscribers=[collect])
    try:
        result = trainer.run()
    except TrainingFailed as err:
        return {
            "status": "failed",
            "error": str(err),
            "failure": {"step": err.step, "epoch": err.epoch + 1, "terms": err.terms},
            **started,
        }
    from workbench.runs import checkpoint_state

    extras = result.method if any(True for _ in result.method.state_dict()) else None
    checkpoints["final"] = {
        k: v.detach().cpu().clone() for k, v in checkpoint_state(result.student, extras).items()
    }
    return {
        "status": result.status,
        "history": result.history,
        "summary": result.summary,
        "checkpoints": checkpoints,
        **started,
    }


def write_trial(store: RunStore, trial: Trial, outcome: dict[str, Any]) -> str:
    """Write a finished trial's result as a run in ``store``; returns the run id."""
    writer = store.create(trial.config)
    if "model_spec" in outcome:
        writer.write_model_spec(outcome["model_spec"])
    teacher = outcome.get("teacher", {})
    for name, state in outcome.get("checkpoints", {}).items():
        writer.save_checkpoint(name, state)
    writer.write_metrics(
        {"epochs": outcome.get("history", []), "summary": outcome.get("summary", {}), "teacher": teacher}
    )
    fields: dict[str, Any] = {"status": outcome["status"], "finished": utc_now()}
    if outcome["status"] == "failed":
        fields.update(error=outcome.get("error"), failure=outcome.get("failure"))
    else:
        fields.update(step=outcome["summary"].get("steps"), epoch=outcome["summary"].get("epochs_done"))
    writer.update_status(**fields)
    return writer.id


def completed_trials(store: RunStore, sweep: str) -> dict[str, str]:
    """``trial key -> run id`` of the trials of ``sweep`` already completed in the store."""
    done: dict[str, tuple[int, str]] = {}
    for run in store.list(status="completed"):
        try:
            links = run.config.links
        except ValueError:
            continue
        if links.get("sweep") == sweep and "trial" in links:
            # a chain trial (ban, takd) is several linked runs: its result is the last link
            step = int(links.get("chain_step", 0))
            if links["trial"] not in done or step > done[links["trial"]][0]:
                done[links["trial"]] = (step, run.id)
    return {key: run_id for key, (_, run_id) in done.items()}


def is_chain(trial: Trial) -> bool:
    """Whether the trial trains a chain of linked runs (``ban``, ``takd``)."""
    from workbench.distill.chains import CHAIN_METHODS

    return any(m.name in CHAIN_METHODS for m in trial.config.distill.methods)


def _chain_results(trials: list[Trial], store: RunStore) -> Iterator[tuple[Trial, str, dict[str, Any]]]:
    """Chains run in the driver: each link is a run that the next link reads as its teacher."""
    from workbench.train.chains import run_chain

    for trial in trials:
        results = run_chain(trial.config, store)
        last = results[-1]
        yield trial, last.run_id or "", {"status": last.status, "summary": last.summary}


def _pool_results(trials: list[Trial], workers: int, root: str) -> Iterator[tuple[Trial, dict[str, Any]]]:
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(run_trial, t.config.model_dump(mode="json"), threads, root): t for t in trials}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()


def _ray_results(
    trials: list[Trial], workers: int, address: str | None, root: str
) -> Iterator[tuple[Trial, dict[str, Any]]]:
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
    try:
        threads = max(1, (os.cpu_count() or 1) // workers)
        remote = ray.remote(num_cpus=1)(run_trial)
        refs = {remote.remote(t.config.model_dump(mode="json"), threads, root): t for t in trials}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                yield refs.pop(ref), ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    spec: SweepSpec,
    store: RunStore | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
) -> list[TrialOutcome]:
    """Run every trial of ``spec`` not yet completed in ``store``; returns one outcome per trial
    (skipped ones included, in grid order)."""
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
    for trial, run_id, result in _chain_results([t for t in todo if is_chain(t)], store):
        o = TrialOutcome(trial, run_id, result["status"], result["summary"], skipped=False)
        outcomes[trial.key] = o
        if on_trial:
            on_trial(o)
    todo = [t for t in todo if not is_chain(t)]
    if spec.backend == "ray":
        results = _ray_results(todo, spec.workers, spec.address, root)
    elif spec.workers > 1 and len(todo) > 1:
        results = _pool_results(todo, spec.workers, root)
    else:
        results = ((t, run_trial(t.config.model_dump(mode="json"), 0, root)) for t in todo)
    for trial, result in results:
        run_id = write_trial(store, trial, result)
        o = TrialOutcome(trial, run_id, result["status"], result.get("summary", {}), skipped=False)
        outcomes[trial.key] = o
        if on_trial:
            on_trial(o)
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
