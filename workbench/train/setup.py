"""Building a run's pieces from its config: the data, the student, the teachers, the method's
context, the optimizer and the description of the networks a run directory records.

Each builder is one step of :meth:`workbench.train.Trainer.run`'s set-up; the engine calls them in
a fixed order, so a seed gives the same numbers (the RNG is drawn from in that order).
"""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.config import OptimSpec, RunConfig
from workbench.data import Dataset, load_dataset
from workbench.distill import MethodContext, MethodStack
from workbench.models import create_model, model_info
from workbench.models.copies import frozen_copy
from workbench.runs import RunStore, load_teacher

#: set-up progress units: data, models, teachers, teacher cache (10), teacher test logits, optimizer
SETUP_UNITS = 15
#: the set-up units the teacher cache spans (it starts at the first, the test logits at the second)
CACHE_UNITS = (3, 13)
#: how the teacher cache is filled: during the first epoch (lazy) or by a pass before it (eager)
CACHE_MODES = ("lazy", "eager")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def new_run_id(label: str) -> str:
    """A fresh run id in the run store's format: ``<YYYYmmdd-HHMMSS>-<label slug>-<4 hex>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40] or "run"
    return f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


def load_run_data(config: RunConfig, dataset: Dataset | None = None) -> Dataset:
    """``dataset``, else the dataset ``config.data`` names (loaded), cut to the first
    ``config.data.train_subset`` training samples when that is set and smaller."""
    spec = config.data
    data = dataset or load_dataset(spec.dataset, root=spec.root, download=spec.download, **spec.options)
    if spec.train_subset is not None and spec.train_subset < len(data.train):
        data = dataclasses.replace(data, train=data.train.subset(torch.arange(spec.train_subset)))
    return data


def build_student(config: RunConfig, data: Dataset) -> nn.Module:
    """A freshly initialised student of ``config.model`` for ``data``'s classes and image shape
    (drawing from torch's RNG as it is)."""
    shape = tuple(data.image_shape)
    return create_model(
        config.model.name,
        num_classes=data.num_classes,
        in_channels=shape[0],
        image_size=shape[1],
        **config.model.kwargs,
    )


def build_teachers(
    config: RunConfig,
    data: Dataset,
    device: torch.device,
    store: RunStore | None,
    given: list[nn.Module] | None,
) -> list[nn.Module]:
    """The run's teachers on ``device``: frozen copies of the ``given`` modules (the caller's stay
    as they are: device, flags, hooks), else those ``config.teachers`` names, loaded (``run:``
    sources from ``store``) and checked against ``data``."""
    if given is not None:
        return [frozen_copy(t, device) for t in given]
    return [
        load_teacher(
            t,
            data.num_classes,
            tuple(data.image_shape),  # type: ignore[arg-type]
            device,
            runs_root=store and str(store.root),
            field=f"teachers[{i}]",
        )
        for i, t in enumerate(config.teachers)
    ]


def method_context(
    config: RunConfig,
    data: Dataset,
    student: nn.Module,
    teachers: list[nn.Module],
    device: torch.device,
    *,
    epochs: int,
    steps_per_epoch: int,
) -> MethodContext:
    """What the methods see at set-up: the modules, the data's shape and size, the budget, the
    seed, a sample batch of 8 normalised training images and a builder of fresh students."""
    return MethodContext(
        student=student,
        teachers=teachers,
        num_classes=data.num_classes,
        input_shape=tuple(data.image_shape),  # type: ignore[arg-type]
        device=device,
        sample=data.normalize(data.train.images[:8].to(device)),
        train_size=len(data.train),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        seed=config.seed,
        make_student=lambda: build_student(config, data),
    )


def build_optimizer(spec: OptimSpec, student: nn.Module, method: MethodStack) -> torch.optim.Optimizer:
    """The optimizer ``spec`` names over the trainable parameters of ``student`` and ``method``
    (each parameter once, in that order)."""
    params = [p for p in student.parameters() if p.requires_grad]
    params += [p for p in method.parameters() if p.requires_grad]
    params = list({id(p): p for p in params}.values())
    if spec.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov and spec.momentum > 0,
            weight_decay=spec.weight_decay,
        )
    return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def describe_models(
    config: RunConfig, data: Dataset, student: nn.Module, method: MethodStack, *, from_config: bool
) -> dict[str, Any]:
    """The run's model description (model.json): how to rebuild the student (registry name when
    it was built ``from_config``, else its class name), its size and FLOPs, the data's name and
    classes, and the number of peers."""
    shape = tuple(data.image_shape)
    info = model_info(student, shape)  # type: ignore[arg-type]
    return {
        "student": {
            "name": config.model.name if from_config else type(student).__name__,
            "kwargs": config.model.kwargs,
            "num_classes": data.num_classes,
            "in_channels": shape[0],
            "image_size": shape[1],
            "params": info.params,
            "flops": info.flops,
        },
        "dataset": data.name,
        "class_names": list(data.class_names),
        "peers": len(method.peers()),
    }


def module_device(module: nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (None for a module without tensors)."""
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return None
