"""Training: the one entry point ``run``, the engine, its events, the teacher cache.

``run(config, store=..., subscribers=..., progress=..., cancel=...)`` is what every face calls
(CLI, demo, sweeps, jobs); it trains one run or a chain of linked runs (``ban``, ``takd``).
"""

from workbench.train.chains import ChainError, chain_length, chain_plan, is_chain, run_chain
from workbench.train.engine import Trainer, train
from workbench.train.entry import run
from workbench.train.evaluation import teacher_warning_threshold
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    SetupProgress,
    SnapshotError,
    StateSnapshot,
    StepEnded,
    Subscriber,
)
from workbench.train.objective import lr_factor
from workbench.train.results import TrainingFailed, TrainResult, training_state
from workbench.train.resume import ResumeError
from workbench.train.setup import CACHE_MODES, SETUP_UNITS, new_run_id, seed_everything

__all__ = [
    "CACHE_MODES",
    "SETUP_UNITS",
    "ChainError",
    "EpochEnded",
    "EvalEnded",
    "Event",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "RunStopped",
    "RunWarning",
    "ResumeError",
    "SetupProgress",
    "SnapshotError",
    "StateSnapshot",
    "StepEnded",
    "Subscriber",
    "TrainResult",
    "Trainer",
    "TrainingFailed",
    "chain_length",
    "chain_plan",
    "is_chain",
    "lr_factor",
    "new_run_id",
    "run",
    "run_chain",
    "seed_everything",
    "teacher_warning_threshold",
    "train",
    "training_state",
]
