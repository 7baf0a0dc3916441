"""Training engine, events, teacher cache and teacher loading."""

from workbench.train.engine import (
    Trainer,
    TrainingFailed,
    TrainResult,
    lr_factor,
    resolve_device,
    seed_everything,
    train,
)
from workbench.train.events import (
    EpochEnded,
    EvalEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    StepEnded,
    Subscriber,
)
from workbench.train.teachers import TeacherError, list_shipped_teachers, load_shipped_teacher, load_teacher

__all__ = [
    "EpochEnded",
    "EvalEnded",
    "Event",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "RunStopped",
    "StepEnded",
    "Subscriber",
    "TeacherError",
    "TrainResult",
    "Trainer",
    "TrainingFailed",
    "list_shipped_teachers",
    "load_shipped_teacher",
    "load_teacher",
    "lr_factor",
    "resolve_device",
    "seed_everything",
    "train",
]
