"""The run store: the only state shared between processes and users."""

from workbench.runs.atomic import (
    WeightsError,
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from workbench.runs.inspect import kd_temperature
from workbench.runs.store import (
    GC_MIN_AGE_S,
    RECORDED_STATUSES,
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

__all__ = [
    "kd_temperature",
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
