"""Grid sweeps over run configs and seeds, on a local or a Ray backend."""

from workbench.sweep.runner import (
    BUSY,
    ELSEWHERE,
    TrialOutcome,
    claim_path,
    claim_trial,
    completed_trials,
    run_sweep,
    run_trial,
    summarize,
    summary_csv,
    trial_run_id,
    write_summary_csv,
)
from workbench.sweep.spec import (
    SweepError,
    SweepSpec,
    Trial,
    check_name,
    expand_trials,
    load_sweep,
    trial_key,
)

__all__ = [
    "BUSY",
    "ELSEWHERE",
    "SweepError",
    "SweepSpec",
    "Trial",
    "TrialOutcome",
    "check_name",
    "claim_path",
    "claim_trial",
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
