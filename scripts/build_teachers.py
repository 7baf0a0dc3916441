"""Build the shipped teachers in assets/teachers/: train each with the workbench engine, save
safetensors weights and a JSON card (architecture, data, test accuracy, seed, command).

    python scripts/build_teachers.py            # all of them
    python scripts/build_teachers.py mnist      # one

Writes are atomic; an existing teacher is replaced only when the new one is complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from workbench.config import config_to_yaml, validate_config
from workbench.paths import teachers_dir
from workbench.runs import atomic_save_safetensors, atomic_write_json, atomic_write_text
from workbench.train import EpochEnded, Trainer

_OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}

TEACHERS: dict[str, dict[str, Any]] = {
    "mnist": {
        "data": {"dataset": "mnist", "batch_size": 128, "augment": {"crop_padding": 2}},
        "model": {"name": "cnn_large"},
        "train": {"epochs": 15},
    },
    "fashion-mnist": {
        "data": {
            "dataset": "fashion-mnist",
            "batch_size": 128,
            "augment": {"crop_padding": 2, "hflip": True},
        },
        "model": {"name": "cnn_large"},
        "train": {"epochs": 20},
    },
    "shapes": {
        "data": {
            "dataset": "shapes",
            "batch_size": 128,
            "options": {"seed": 0},
            "augment": {"crop_padding": 2, "hflip": True},
        },
        "model": {"name": "cnn_large"},
        "train": {"epochs": 15},
    },
}


def build(name: str, seed: int = 0) -> dict[str, Any]:
    """Train teacher ``name`` and write its weights and card; returns the card."""
    spec = TEACHERS[name]
    cfg = validate_config(
        {
            "kind": "teacher",
            "name": f"{name}-teacher",
            "seed": seed,
            "optim": _OPTIM,
            "schedule": {"name": "cosine", "warmup_epochs": 0.5},
            **spec,
        }
    )
    t0 = time.perf_counter()
    def progress(event: object) -> None:
        if isinstance(event, EpochEnded):
            m = event.metrics
            print(f"  {name} epoch {event.epoch}: test acc {100 * m.get('test_acc', 0):.2f}% ({m['seconds']:.0f}s)", flush=True)

    result = Trainer(cfg, subscribers=[progress]).run()
    seconds = time.perf_counter() - t0
    model_spec = {"name": cfg.model.name, "kwargs": cfg.model.kwargs}
    s = result.summary
    card = {
        "name": name,
        "model": model_spec,
        "dataset": cfg.data.dataset,
        "data_options": cfg.data.options,
        "params": s["params"],
        "flops": s["flops"],
        "test_acc": s["test_acc"],
        "test_split": "embedded test subset"
        if name in ("mnist", "fashion-mnist")
        else "generated test split",
        "ece": s.get("ece"),
        "seed": seed,
        "epochs": cfg.train.epochs,
        "train_seconds": round(seconds, 1),
        "command": f"python scripts/build_teachers.py {name}",
        "config": config_to_yaml(cfg),
    }
    from workbench.data import load_dataset

    ds = load_dataset(cfg.data.dataset, **cfg.data.options)
    card.update(num_classes=ds.num_classes, in_channels=ds.image_shape[0], image_size=ds.image_shape[1])
    folder = teachers_dir()
    atomic_save_safetensors(folder / f"{name}.safetensors", result.student.state_dict(), {"name": name})
    atomic_write_json(folder / f"{name}.json", card)
    return card


README = teachers_dir().parent / "README.md"
START, END = "<!-- teachers:start (written by scripts/build_teachers.py) -->", "<!-- teachers:end -->"


def write_readme_section() -> None:
    """Rewrite the "Shipped teachers" section of assets/README.md from the cards on disk."""
    import hashlib
    import json

    rows = []
    for card_path in sorted(teachers_dir().glob("*.json")):
        card = json.loads(card_path.read_text(encoding="utf-8"))
        weights = card_path.with_suffix(".safetensors")
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        kwargs = ", ".join(f"{k}={v}" for k, v in card["model"].get("kwargs", {}).items())
        arch = card["model"]["name"] + (f" ({kwargs})" if kwargs else "")
        rows.append(
            f"| `shipped:{card['name']}` | {arch} | {card['params']:,} | {card['dataset']} "
            f"| {100 * card['test_acc']:.2f}% ({card['test_split']}) | {card['seed']} | {card['epochs']} "
            f"| `{card['command']}` | `{digest[:16]}` |"
        )
    body = "\n".join(
        [
            START,
            "## Shipped teachers (`teachers/`)",
            "",
            "Each teacher is a safetensors file plus a JSON card (architecture, data, test accuracy, seed,",
            "the full run config and the command that rebuilt it), trained with the workbench's own engine on",
            "the data above (or the generated `shapes` set) by `scripts/build_teachers.py`.",
            "",
            "| source | architecture | params | data | test accuracy | seed | epochs | command | sha256 (first 16) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            END,
        ]
    )
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    atomic_write_text(README, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"teachers to build: {', '.join(TEACHERS)} (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    unknown = [n for n in args.names if n not in TEACHERS]
    if unknown:
        parser.error(f"unknown teacher {unknown[0]!r}; known: {', '.join(TEACHERS)}")
    for name in args.names or list(TEACHERS):
        card = build(name, args.seed)
        print(
            f"{name}: {card['model']['name']} test acc {100 * card['test_acc']:.2f}% in {card['train_seconds']}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
