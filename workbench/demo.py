"""The demo: on the embedded MNIST subset, distil the shipped teacher into a small student and
compare it with the same student trained from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.config import RunConfig
from workbench.runs import RunStore
from workbench.runs.teachers import shipped_teacher_card
from workbench.runtime import CancelToken
from workbench.train import run
from workbench.validate import validate_run_config as validate_config

DEMO_EPOCHS = 2
DEMO_STUDENT = "cnn_small"


def demo_configs(epochs: int = DEMO_EPOCHS, seed: int = 0) -> list[RunConfig]:
    """The two runs of the demo: scratch student and KD student (Hinton et al. 2015)."""
    base: dict[str, Any] = {
        "seed": seed,
        "data": {"dataset": "mnist", "batch_size": 64},
        "model": {"name": DEMO_STUDENT},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
        "schedule": {"name": "cosine", "warmup_epochs": 0.2},
        "train": {"epochs": epochs},
    }
    # the scratch run lists the teacher too: for reference metrics (agreement), not in its loss
    scratch = validate_config(
        {**base, "kind": "student", "name": "demo-scratch", "teachers": [{"source": "shipped:mnist"}]}
    )
    kd = validate_config(
        {
            **base,
            "kind": "distill",
            "name": "demo-kd",
            "teachers": [{"source": "shipped:mnist"}],
            "distill": {
                "methods": [{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}],
                "ce_weight": 0.1,
            },
        }
    )
    return [scratch, kd]


def run_demo(
    epochs: int = DEMO_EPOCHS,
    store: str | Path | None = None,
    progress: bool = True,
    console: Any = None,
    seed: int = 0,
    *,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Train both demo students into the run store ``store`` (a RunStore or its folder; default
    ``$WORKBENCH_RUNS`` or ``./runs``) and return one comparison row per model
    (the shipped teacher first): model, method, params, test_acc, agreement, KL, ECE, seconds.

    ``progress`` draws a progress bar on ``console`` (a rich console; default stderr); ``cancel``
    stops the demo (see :func:`workbench.train.run`)."""
    card = shipped_teacher_card("mnist")
    rows: list[dict[str, Any]] = [
        {
            "model": card["model"]["name"] + " (teacher)",
            "method": "shipped",
            "params": card["params"],
            "test_acc": card["test_acc"],
            "seconds": 0.0,
            "run_id": "shipped:mnist",
        }
    ]
    runs = store if isinstance(store, RunStore) else RunStore(store)
    for cfg in demo_configs(epochs, seed):
        subs = []
        if progress:
            from workbench.console import ProgressBar

            subs.append(ProgressBar(console))
        try:
            result = run(cfg, store=runs, subscribers=subs, cancel=cancel)
        finally:
            for s in subs:
                s.close()
        s = result.summary
        rows.append(
            {
                "model": cfg.model.name,
                "method": "+".join(m.name for m in cfg.distill.methods),
                "params": s["params"],
                "test_acc": s.get("test_acc"),
                "agreement": s.get("agreement"),
                "kl_teacher_student": s.get("kl_teacher_student"),
                "ece": s.get("ece"),
                "seconds": s["seconds"],
                "run_id": result.run_id,
            }
        )
    return rows
