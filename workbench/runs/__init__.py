"""The run store: the only state shared between processes and users."""

from workbench.runs.atomic import (
    WeightsError,
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from workbench.runs.store import (
    STATUSES,
    Run,
    RunStore,
    RunStoreError,
    RunWriter,
    checkpoint_state,
    default_root,
    split_state,
    utc_now,
)

__all__ = [
    "STATUSES",
    "Run",
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
    "split_state",
    "utc_now",
]
