"""The run store: the only state shared between processes and users, and the teachers a run names
(shipped cards, runs of the store, weight files)."""

from workbench.runs.atomic import (
    WeightsError,
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from workbench.runs.files import RECORDED_STATUSES
from workbench.runs.inspect import kd_temperature, logged_metrics
from workbench.runs.store import (
    GC_MIN_AGE_S,
    STALE_RUNNING_S,
    STATUSES,
    Run,
    RunDeletedError,
    RunStore,
    RunStoreError,
    RunWriter,
    checkpoint_state,
    default_root,
    process_gone,
    split_state,
    utc_now,
)
from workbench.runs.teachers import (
    TeacherError,
    freeze,
    list_shipped_teachers,
    load_shipped_teacher,
    load_teacher,
    shipped_teacher_card,
)

__all__ = [
    "TeacherError",
    "freeze",
    "kd_temperature",
    "logged_metrics",
    "list_shipped_teachers",
    "load_shipped_teacher",
    "load_teacher",
    "shipped_teacher_card",
    "GC_MIN_AGE_S",
    "RECORDED_STATUSES",
    "STALE_RUNNING_S",
    "STATUSES",
    "Run",
    "RunDeletedError",
    "RunStore",
    "RunStoreError",
    "RunWriter",
    "WeightsError",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_state",
    "default_root",
    "load_weights",
    "process_gone",
    "split_state",
    "utc_now",
]
