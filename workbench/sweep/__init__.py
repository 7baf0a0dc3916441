"""Grid sweeps over run configs and seeds, on a local or a Ray backend."""

from workbench.sweep.runner import (
    TrialOutcome,
    completed_trials,
    run_sweep,
    run_trial,
    summarize,
    summary_csv,
    trial_run_id,
    write_summary_csv,
)
from workbench.sweep.spec import SweepError, SweepSpec, Trial, expand_trials, load_sweep, trial_key

__all__ = [
    "SweepError",
    "SweepSpec",
    "Trial",
    "TrialOutcome",
    "completed_trials",
    "expand_trials",
    "load_sweep",
    "run_sweep",
    "run_trial",
    "summarize",
    "summary_csv",
    "trial_key",
    "trial_run_id",
    "write_summary_csv",
]
