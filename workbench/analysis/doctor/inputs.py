"""The doctor's data: :class:`DoctorInputs`, the images (and what is known about them) a student is
examined on, built from a dataset by :func:`dataset_inputs` and checked by :func:`check_inputs`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench.analysis._common import AnalysisError, check_images, check_labels, check_positive_int
from workbench.analysis.doctor.findings import DoctorError
from workbench.vocabulary import DOCTOR_N_SAMPLES

__all__ = ["INPUT_FIELDS", "DoctorInputs", "check_inputs", "dataset_inputs"]


@dataclass(frozen=True)
class DoctorInputs:
    """The data a student is examined on.

    Attributes:
        images: normalized test inputs ``(N, C, H, W)``. labels: their classes, int64 ``(N,)``.
        masks, boxes: object masks ``(N, H, W)`` / boxes ``(N, 4)`` of ``images`` (or ``None``).
        class_names: the dataset's classes (or ``None``).
        train_images, train_labels: training images and the labels the run trained on (the
            label-noise evidence), or ``None``.
        context: per test image a context id (e.g. its background), or ``None``.
        context_classes: per context id the class it co-occurs with most in training (``-1`` for a
            context never seen), or ``None``.
        context_purity: the share of training images whose context is their class's most frequent
            one (how strongly context predicts the class in training), or ``None``.
        train_size: the number of training images (passes over the data), or ``None``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | np.ndarray | None = None
    boxes: torch.Tensor | np.ndarray | None = None
    class_names: Sequence[str] | None = None
    train_images: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    context: torch.Tensor | None = None
    context_classes: torch.Tensor | None = None
    context_purity: float | None = None
    train_size: int | None = None

    def __len__(self) -> int:
        return int(len(self.labels))


#: the names of :class:`DoctorInputs`' fields
INPUT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DoctorInputs))


def _subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    from workbench.data import seeded_subset

    return seeded_subset(n_total, n, seed)


def _context_table(dataset: Any, context: torch.Tensor, train: Any) -> tuple[torch.Tensor, float]:
    """Per context id the class it co-occurs with most in the training split (``-1`` when never
    seen there), and the share of training images whose context is their class's most frequent one."""
    k = int(dataset.num_classes)
    train_context = train.context
    n_ctx = int(max(int(train_context.max()), int(context.max()))) + 1
    table = torch.zeros(n_ctx, k, dtype=torch.int64)
    table.index_put_((train_context, train.labels), torch.ones_like(train.labels), accumulate=True)
    classes = torch.where(table.sum(1) > 0, table.argmax(1), torch.full((n_ctx,), -1))
    purity = float(table.max(1).values.sum()) / max(len(train), 1)
    return classes, purity


def dataset_inputs(
    dataset: Any, *, n_samples: int = DOCTOR_N_SAMPLES, n_train: int | None = None, seed: int = 0
) -> DoctorInputs:
    """The doctor's data from a :class:`workbench.data.Dataset`: a seeded random subset of
    ``n_samples`` test images (all of them when the split is smaller), normalized, with labels,
    object masks and boxes when the dataset has them, and the class names; a seeded subset of
    ``n_train`` training images with *their* labels (default ``n_samples``; the label-noise
    evidence); and, when the dataset records a context per image (the background of ``shapes``),
    the test images' contexts with the class each context co-occurs with most in the training split.

    Returns:
        :class:`DoctorInputs`, ready to be passed on as
        ``diagnose_models(teacher, student, inputs=dataset_inputs(data))``.

    Raises:
        DoctorError: ``dataset`` is not a workbench dataset. AnalysisError: ``n_samples`` or
            ``n_train`` is not a whole number >= 1.
    """
    for attr in ("test", "normalize", "class_names"):
        if not hasattr(dataset, attr):
            raise DoctorError(
                f"dataset: expected a workbench Dataset (with {attr!r}), got {type(dataset).__name__}"
            )
    n = check_positive_int(n_samples, "n_samples")
    split = dataset.test
    idx = _subset(len(split), n, seed)
    masks = getattr(split, "masks", None)
    boxes = getattr(split, "boxes", None)
    train = dataset.train
    n_tr = check_positive_int(n_samples if n_train is None else n_train, "n_train")
    tidx = _subset(len(train), n_tr, seed + 1)
    context = getattr(split, "context", None)
    context_classes = context_purity = None
    if context is not None and getattr(train, "context", None) is not None and len(train):
        context_classes, context_purity = _context_table(dataset, context, train)
    return DoctorInputs(
        images=dataset.normalize(split.images[idx]),
        labels=split.labels[idx],
        masks=None if masks is None else masks[idx],
        boxes=None if boxes is None else boxes[idx],
        class_names=[str(c) for c in dataset.class_names],
        train_images=dataset.normalize(train.images[tidx]),
        train_labels=train.labels[tidx],
        context=None if context is None or context_classes is None else context[idx],
        context_classes=context_classes,
        context_purity=context_purity,
        train_size=len(train),
    )


def check_inputs(inputs: DoctorInputs) -> DoctorInputs:
    """``inputs`` checked: float images with a batch dimension, one int64 label each (likewise the
    training images and labels), one mask, box and context id per image, the class names as strings.

    Raises:
        DoctorError: one line naming the field that is wrong.
    """
    if not isinstance(inputs, DoctorInputs):
        raise DoctorError(f"inputs: expected DoctorInputs (see dataset_inputs), got {type(inputs).__name__}")
    train_images, train_labels = inputs.train_images, inputs.train_labels
    try:
        images = check_images(inputs.images)
        labels = check_labels(inputs.labels, int(images.shape[0]))
        if train_images is not None:
            train_images = check_images(train_images, "train_images")
            train_labels = check_labels(train_labels, int(train_images.shape[0]), "train_labels")
    except AnalysisError as err:
        raise DoctorError(str(err)) from None
    except TypeError:
        raise DoctorError("train_images: expected normalized images (N, C, H, W) with train_labels") from None
    n = int(images.shape[0])
    for name, what in (("masks", "masks"), ("boxes", "boxes"), ("context", "context ids")):
        value = getattr(inputs, name)
        if value is not None and len(value) != n:
            raise DoctorError(f"{name}: expected {n} {what}, one per image, got {len(value)}")
    classes = None if inputs.class_names is None else [str(c) for c in inputs.class_names]
    return dataclasses.replace(
        inputs, images=images, labels=labels, train_images=train_images, train_labels=train_labels,
        class_names=classes,
    )
