"""In-memory datasets: :class:`Split` (tensors of one split) and :class:`Dataset` (train + test + metadata).

Images are kept as ``uint8`` tensors of shape ``(N, C, H, W)`` on the CPU; they are turned into
normalized ``float32`` only when a batch is formed (see :mod:`workbench.data.batching`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.data.errors import DataError


@dataclass
class Split:
    """One split of a dataset, all tensors on the CPU and aligned on the first axis.

    ``images``: ``uint8`` ``(N, C, H, W)``; ``labels``: ``int64`` ``(N,)``; ``masks``: optional
    ``bool`` ``(N, H, W)`` per-pixel object masks; ``boxes``: optional ``float32`` ``(N, 4)`` pixel
    boxes ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive; ``context``: optional ``int64`` ``(N,)``
    side information (for example the background type of a ``shapes`` image).
    Shapes and dtypes are checked on construction; a mismatch raises :class:`DataError`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    context: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.images, torch.Tensor)
            or self.images.dtype != torch.uint8
            or self.images.dim() != 4
        ):
            raise DataError(
                f"split images: expected a uint8 tensor (N, C, H, W), got {_describe(self.images)}"
            )
        n, _, h, w = self.images.shape
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1 or self.labels.shape[0] != n:
            raise DataError(f"split labels: expected a tensor of shape ({n},), got {_describe(self.labels)}")
        if self.labels.dtype != torch.int64:
            if self.labels.dtype.is_floating_point or self.labels.dtype == torch.bool:
                raise DataError(
                    f"split labels: expected integer class indices, got dtype {self.labels.dtype}"
                )
            self.labels = self.labels.to(torch.int64)
        if n and int(self.labels.min()) < 0:
            raise DataError(f"split labels: expected class indices >= 0, found {int(self.labels.min())}")
        if self.masks is not None and (
            self.masks.dtype != torch.bool or tuple(self.masks.shape) != (n, h, w)
        ):
            raise DataError(
                f"split masks: expected a bool tensor of shape ({n}, {h}, {w}), got {_describe(self.masks)}"
            )
        if self.boxes is not None and (
            self.boxes.dtype != torch.float32 or tuple(self.boxes.shape) != (n, 4)
        ):
            raise DataError(
                f"split boxes: expected a float32 tensor of shape ({n}, 4), got {_describe(self.boxes)}"
            )
        if self.context is not None and (
            self.context.dtype != torch.int64 or tuple(self.context.shape) != (n,)
        ):
            raise DataError(
                f"split context: expected an int64 tensor of shape ({n},), got {_describe(self.context)}"
            )
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | Sequence[int]) -> Split:
        """A new :class:`Split` of the samples at ``index`` (positions or a bool mask), in that order."""
        if isinstance(index, torch.Tensor):
            idx = index.to("cpu")
            if idx.dtype != torch.bool:
                idx = idx.to(torch.int64)
        else:
            idx = torch.as_tensor(list(index), dtype=torch.int64)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise DataError(
                    f"subset index: a bool mask must have shape ({len(self)},), got {tuple(idx.shape)}"
                )
        elif idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise DataError(
                f"subset index: positions must lie in [0, {len(self)}), "
                f"got min {int(idx.min())} max {int(idx.max())}"
            )

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx].contiguous()

        return Split(
            images=self.images[idx].contiguous(),
            labels=self.labels[idx].contiguous(),
            masks=take(self.masks),
            boxes=take(self.boxes),
            context=take(self.context),
        )


@dataclass
class Dataset:
    """A dataset held in memory: two splits plus what is needed to feed and describe them.

    ``mean``/``std`` are per-channel statistics in ``[0, 1]`` pixel units (from the train split);
    ``hflip_ok`` says whether horizontal flips preserve the label; ``source`` is one line saying
    where the data came from.
    """

    name: str
    train: Split
    test: Split
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip_ok: bool
    source: str
    _stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(
                f"dataset {self.name!r}: train images {tuple(self.train.images.shape[1:])} and test images "
                f"{tuple(self.test.images.shape[1:])} differ in shape"
            )
        c = self.in_channels
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(
                f"dataset {self.name!r}: mean/std need {c} values (one per channel), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise DataError(f"dataset {self.name!r}: std must be positive and finite, got {self.std}")
        k = len(self.class_names)
        for split_name, split in (("train", self.train), ("test", self.test)):
            if len(split) and int(split.labels.max()) >= k:
                raise DataError(
                    f"dataset {self.name!r}: {split_name} label {int(split.labels.max())} "
                    f"is out of range for "
                    f"{k} class names"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, c, h, w = self.train.images.shape
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """Number of image channels ``C``."""
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        """Image height ``H`` (images are square in every shipped loader except ``imagefolder``)."""
        return self.image_shape[1]

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._stats:
            shape = (len(self.mean), 1, 1)
            mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(shape)
            std = torch.tensor(self.std, dtype=torch.float32, device=device).view(shape)
            self._stats[key] = (mean, std)
        return self._stats[key]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``uint8`` images ``(..., C, H, W)`` on any device to ``float32`` ``(x / 255 - mean) / std``."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() < 3:
            raise DataError(
                f"normalize images: expected a uint8 tensor (..., C, H, W), got {_describe(images)}"
            )
        if images.shape[-3] != self.in_channels:
            raise DataError(
                f"normalize images: expected {self.in_channels} channels at dim -3, "
                f"got shape {tuple(images.shape)}"
            )
        mean, std = self._mean_std(images.device)
        return (images.to(torch.float32) / 255.0 - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`normalize`: normalized float ``(..., C, H, W)`` -> float in ``[0, 1]`` (clamped)."""
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.dim() < 3:
            raise DataError(f"denormalize x: expected a float tensor (..., C, H, W), got {_describe(x)}")
        if x.shape[-3] != self.in_channels:
            raise DataError(
                f"denormalize x: expected {self.in_channels} channels at dim -3, got shape {tuple(x.shape)}"
            )
        mean, std = self._mean_std(x.device)
        return (x * std.to(x.dtype) + mean.to(x.dtype)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset before loading it.

    ``image_shape`` is ``(C, H, W)``; it and ``num_classes`` are zeros where they depend on the
    files and are known only after loading (``imagefolder``; see :attr:`shape_known`).
    ``needs_root``: the dataset cannot be loaded without ``root=FOLDER``.
    """

    name: str
    description: str
    image_shape: tuple[int, int, int]
    num_classes: int
    has_masks: bool
    needs_root: bool

    @property
    def shape_known(self) -> bool:
        """True when ``image_shape`` and ``num_classes`` are fixed before loading (not zeros)."""
        return self.num_classes > 0 and all(d > 0 for d in self.image_shape)


def channel_stats(
    images: torch.Tensor, chunk: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``uint8`` images ``(N, C, H, W)``, in [0, 1] pixel units.

    Sums and sums of squares are accumulated exactly in 64-bit integers over chunks of ``chunk``
    images (default: about 4 M pixels per chunk), so the result does not depend on chunking and no
    float copy of the whole set is made. A std below one grey level (1/255, a constant channel) is
    raised to 1/255 so that normalizing never divides by zero. Returns ``(mean, std)`` of length C.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(
            f"channel_stats images: expected a uint8 tensor (N, C, H, W), got {_describe(images)}"
        )
    n, c, h, w = images.shape
    if n == 0:
        raise DataError("channel_stats images: expected at least one image, got an empty split")
    array = images.detach().to("cpu").numpy()
    step = chunk if chunk is not None else max(1, (1 << 22) // max(1, c * h * w))
    total = np.zeros(c, dtype=np.int64)
    total_sq = np.zeros(c, dtype=np.int64)
    for start in range(0, n, step):
        part = array[start : start + step]
        total += part.sum(axis=(0, 2, 3), dtype=np.int64)
        squares = part.astype(np.uint16)
        squares *= squares  # 255 ** 2 = 65025 fits in uint16
        total_sq += squares.sum(axis=(0, 2, 3), dtype=np.int64)
    count = float(n * h * w)
    mean = total.astype(np.float64) / count
    var = np.maximum(total_sq.astype(np.float64) / count - mean * mean, 0.0)
    mean_01 = tuple(float(m) / 255.0 for m in mean)
    std_01 = tuple(max(float(s) / 255.0, 1.0 / 255.0) for s in np.sqrt(var))
    return mean_01, std_01


def seeded_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """Sorted positions of ``n`` of ``n_total`` samples drawn by a permutation seeded with ``seed``
    (all of them, in order, when ``n >= n_total``): the evaluation subset every face and the doctor
    draw, so the same ``(n, seed)`` means the same images everywhere."""
    if n >= n_total:
        return torch.arange(n_total)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=gen)[:n].sort().values


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: about ``round(n_c * test_fraction)`` of each class c go to test.

    The count per class is clamped to ``[1, n_c - 1]`` for classes with at least two samples (a
    class with a single sample stays in train), so every class keeps a training sample. Which
    samples go is fixed by ``seed``. Returns ``(train_index, test_index)``, each sorted ascending.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = np.ones(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = members.size
        k = min(max(int(round(n * test_fraction)), 1), n - 1) if n >= 2 else 0
        keep[rng.permutation(members)[:k]] = False
    return np.flatnonzero(keep), np.flatnonzero(~keep)


def images_from_numpy(array: np.ndarray, what: str) -> torch.Tensor:
    """Turn a ``uint8`` array ``(N, H, W)`` or ``(N, C, H, W)`` into a contiguous ``(N, C, H, W)`` tensor.

    ``what`` names the source in the error message.
    """
    if array.dtype != np.uint8:
        raise DataError(f"{what}: expected uint8 pixels, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{what}: expected images of shape (N, H, W) or (N, C, H, W), got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__
