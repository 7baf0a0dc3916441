"""Training: the one entry point ``run``, the engine, its events, the teacher cache, teachers.

``run(config, store=..., subscribers=..., progress=..., cancel=...)`` is what every face calls
(CLI, demo, sweeps, jobs); it trains one run or a chain of linked runs (``ban``, ``takd``).
"""

from workbench.train.chains import ChainError, chain_length, chain_plan, is_chain, run_chain
from workbench.train.engine import (
    CACHE_MODES,
    SETUP_UNITS,
    Trainer,
    TrainingFailed,
    TrainResult,
    lr_factor,
    new_run_id,
    seed_everything,
    teacher_warning_threshold,
    train,
    training_state,
)
from workbench.train.entry import run
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
from workbench.train.resume import ResumeError
from workbench.train.teachers import TeacherError, list_shipped_teachers, load_shipped_teacher, load_teacher

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
    "TeacherError",
    "TrainResult",
    "Trainer",
    "TrainingFailed",
    "chain_length",
    "chain_plan",
    "is_chain",
    "list_shipped_teachers",
    "load_shipped_teacher",
    "load_teacher",
    "lr_factor",
    "new_run_id",
    "run",
    "run_chain",
    "seed_everything",
    "teacher_warning_threshold",
    "train",
    "training_state",
]
