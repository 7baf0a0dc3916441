"""Results people can trust: stored runs grouped over seeds, their spread (mean ± std, n), paired
differences against a baseline with an interval said in words, mean ± std curves, smoothing and
export. The faces (the app's Compare and leaderboard pages, the panels, the CLI) call these and draw
with :mod:`workbench.viz.experiments`.

* :mod:`~workbench.experiments.stats` — :func:`seed_stats`, :func:`paired_difference` (pure numbers)
* :mod:`~workbench.experiments.groups` — :func:`group_runs`, :func:`group_table`, :func:`run_table`,
  :func:`epoch_bands`, :func:`step_bands`, :func:`baseline_comparison`
* :mod:`~workbench.experiments.smoothing` — :func:`ema`, the debiased exponential moving average
* :mod:`~workbench.experiments.export` — :func:`groups_csv`, :func:`groups_json`
"""

from workbench.experiments.export import groups_csv, groups_json
from workbench.experiments.groups import (
    BOOKKEEPING,
    WHICH,
    Band,
    RunGroup,
    RunGroups,
    baseline_comparison,
    config_fields,
    epoch_bands,
    group_runs,
    group_table,
    method_expression,
    run_table,
    run_value,
    step_bands,
)
from workbench.experiments.smoothing import ema
from workbench.experiments.stats import (
    PairedDifference,
    ResultsError,
    SeedStats,
    metric_direction,
    metric_unit,
    paired_difference,
    seed_stats,
)

__all__ = [
    "BOOKKEEPING",
    "WHICH",
    "Band",
    "ResultsError",
    "PairedDifference",
    "RunGroup",
    "RunGroups",
    "SeedStats",
    "baseline_comparison",
    "config_fields",
    "ema",
    "epoch_bands",
    "group_runs",
    "group_table",
    "groups_csv",
    "groups_json",
    "method_expression",
    "metric_direction",
    "metric_unit",
    "paired_difference",
    "run_table",
    "run_value",
    "seed_stats",
    "step_bands",
]
