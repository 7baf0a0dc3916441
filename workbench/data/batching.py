"""In-memory batching with vectorized augmentation.

A :class:`BatchLoader` moves one split's ``uint8`` images to the device once; a batch is an index
slice, augmented as a whole (random crop, horizontal flip, Mixup, CutMix) and normalized on the
device. Randomness comes from generators seeded with ``seed + epoch``, so the same seed and epoch
give the same batches, whatever the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from workbench.data.core import Dataset
from workbench.data.errors import DataError


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation; every field off (the default) means a deterministic pipeline.

    ``crop_padding``: random crop of the original size from the image zero-padded (black) by this
    many pixels on each side (the CIFAR recipe of He et al. 2016). ``hflip``: mirror left-right with
    probability 0.5. ``mixup_alpha``: Mixup (Zhang et al. 2018), ``x = lam x_i + (1 - lam) x_j`` with
    ``lam ~ Beta(alpha, alpha)`` per batch. ``cutmix_alpha``: CutMix (Yun et al. 2019), a box of area
    fraction ``1 - lam`` pasted from the partner image, ``lam`` then set to the kept area. When both
    are on, each batch uses one of the two with probability 0.5.
    """

    crop_padding: int = 0
    hflip: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, int)
            or self.crop_padding < 0
        ):
            raise DataError(f"augment crop_padding: expected an integer >= 0, got {self.crop_padding!r}")
        if not isinstance(self.hflip, bool):
            raise DataError(f"augment hflip: expected true or false, got {self.hflip!r}")
        for key in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise DataError(f"augment {key}: expected a finite number >= 0 (0 = off), got {value!r}")

    @property
    def deterministic(self) -> bool:
        """True when every augmentation is off, so a sample always yields the same input."""
        return not (self.crop_padding or self.hflip or self.mixup_alpha or self.cutmix_alpha)


@dataclass
class Batch:
    """One batch: normalized inputs and labels on the device, split positions for caches.

    Under Mixup/CutMix the target is ``lam * onehot(y) + (1 - lam) * onehot(y_mix)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    y_mix: torch.Tensor | None = None
    lam: float | None = None


def random_crop(images: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Crop ``(B, C, H, W)`` images from their zero-padded version at per-sample ``offsets`` ``(B, 2)``.

    ``offsets[:, 0]`` is the row offset and ``offsets[:, 1]`` the column offset in the padded image,
    each in ``[0, 2 * padding]``; an offset of ``padding`` returns the image unchanged. One padded
    copy of the batch is gathered from with advanced indexing, no per-sample loop.
    """
    if padding == 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = offsets.to(images.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    gathered = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return gathered.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right each image ``(B, C, H, W)`` whose entry in the bool vector ``flip`` is set."""
    return torch.where(flip.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def cutmix_box(
    height: int, width: int, lam: float, centre_y: float, centre_x: float
) -> tuple[int, int, int, int]:
    """The CutMix box (Yun et al. 2019): side ratio ``sqrt(1 - lam)`` around a centre in [0, 1), clipped.

    Returns ``(y0, y1, x0, x1)`` with ``y1``/``x1`` exclusive.
    """
    cut = math.sqrt(max(0.0, 1.0 - lam))
    ch, cw = int(height * cut), int(width * cut)
    cy, cx = int(centre_y * height), int(centre_x * width)
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
    return y0, y1, x0, x1


def as_augment(spec: object) -> Augment:
    """An :class:`Augment` from ``None`` (all off), an ``Augment``, or any object or mapping with its fields.

    Lets a typed configuration section (for example a pydantic model with ``crop_padding``,
    ``hflip``, ``mixup_alpha``, ``cutmix_alpha``) be passed as is.
    """
    if spec is None:
        return Augment()
    if isinstance(spec, Augment):
        return spec
    names = ("crop_padding", "hflip", "mixup_alpha", "cutmix_alpha")
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(names))
        if unknown:
            raise DataError(f"augment: unknown field {unknown[0]!r}; known: {', '.join(names)}")
        return Augment(**spec)
    if all(hasattr(spec, name) for name in names):
        return Augment(**{name: getattr(spec, name) for name in names})
    raise DataError(
        f"augment: expected an Augment or an object with {', '.join(names)}, got {type(spec).__name__}"
    )


class BatchLoader:
    """Iterate over a split in batches of normalized tensors on ``device``.

    ``split``: ``"train"`` or ``"test"``; ``indices``: optional positions within the split to use
    (``Batch.index`` always reports positions in the full split); ``shuffle``: permute each
    epoch with a generator seeded by ``seed + epoch`` (see :meth:`set_epoch`); ``augment``:
    :class:`Augment` (a horizontal flip on a dataset with ``hflip_ok=False`` raises :class:`DataError`).
    Iterating twice without :meth:`set_epoch` gives the same batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: str = "train",
        batch_size: int = 128,
        shuffle: bool = True,
        augment: Augment | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        indices: torch.Tensor | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise DataError(f"split: unknown name {split!r}; known: test, train")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DataError(f"seed: expected an integer >= 0, got {seed!r}")
        augment = as_augment(augment)
        if augment.hflip and not dataset.hflip_ok:
            raise DataError(f"augment hflip: dataset {dataset.name!r} is not flip-invariant (hflip_ok=False)")
        if augment.crop_padding > min(dataset.image_shape[1:]):
            raise DataError(
                f"augment crop_padding: {augment.crop_padding} exceeds the image size "
                f"{dataset.image_shape[1:]}"
            )
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise DataError(f"device: {device!r} is not a torch device ({err})") from None
        data = dataset.train if split == "train" else dataset.test
        n_split = len(data)
        if indices is None:
            positions = torch.arange(n_split, dtype=torch.int64)
            images, labels = data.images, data.labels
        else:
            positions = torch.as_tensor(indices).to("cpu")
            if positions.dtype == torch.bool:
                positions = torch.nonzero(positions).flatten()
            positions = positions.to(torch.int64).flatten()
            if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= n_split):
                raise DataError(
                    f"indices: positions must lie in [0, {n_split}) of the {split} split, got "
                    f"[{int(positions.min())}, {int(positions.max())}]"
                )
            images, labels = data.images[positions], data.labels[positions]
        self.dataset, self.split, self.batch_size = dataset, split, batch_size
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, augment, seed, drop_last
        self.positions = positions
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        n = int(self.positions.numel())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Number of samples iterated per epoch (before ``drop_last``)."""
        return int(self.positions.numel())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration uses: order and augmentation drawn from ``seed + epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise DataError(f"epoch: expected an integer >= 0, got {epoch!r}")
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """The sample order (positions into this loader's samples) of the current epoch."""
        n = self.num_samples
        if not self.shuffle:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=gen)

    def __iter__(self) -> Iterator[Batch]:
        order = self.order()
        n = order.numel()
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        aug = self.augment
        rng = None if aug.deterministic else np.random.default_rng([self.seed + self.epoch, 0x5EED])
        for start in range(0, stop, self.batch_size):
            local = order[start : start + self.batch_size]
            local_dev = local.to(self.device)
            images = self.images[local_dev]
            y = self.labels[local_dev]
            index = self.positions[local]
            if rng is None:
                yield Batch(x=self.dataset.normalize(images), y=y, index=index)
                continue
            yield self._augmented(images, y, index, rng)

    def _augmented(
        self, images: torch.Tensor, y: torch.Tensor, index: torch.Tensor, rng: np.random.Generator
    ) -> Batch:
        aug, b = self.augment, images.shape[0]
        _, h, w = self.dataset.image_shape
        if aug.crop_padding:
            offsets = torch.from_numpy(rng.integers(0, 2 * aug.crop_padding + 1, size=(b, 2)))
            images = random_crop(images, aug.crop_padding, offsets)
        if aug.hflip:
            images = random_hflip(images, torch.from_numpy(rng.random(b) < 0.5))
        x = self.dataset.normalize(images)
        mix = None
        if aug.mixup_alpha and aug.cutmix_alpha:
            mix = "mixup" if rng.random() < 0.5 else "cutmix"
        elif aug.mixup_alpha:
            mix = "mixup"
        elif aug.cutmix_alpha:
            mix = "cutmix"
        if mix is None:
            return Batch(x=x, y=y, index=index)
        partner = torch.from_numpy(rng.permutation(b)).to(self.device)
        if mix == "mixup":
            lam = float(rng.beta(aug.mixup_alpha, aug.mixup_alpha))
            x = lam * x + (1.0 - lam) * x[partner]
        else:
            lam = float(rng.beta(aug.cutmix_alpha, aug.cutmix_alpha))
            y0, y1, x0, x1 = cutmix_box(h, w, lam, float(rng.random()), float(rng.random()))
            x[:, :, y0:y1, x0:x1] = x[partner, :, y0:y1, x0:x1]  # right side is a copy: no aliasing
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return Batch(x=x, y=y, index=index, y_mix=y[partner], lam=lam)
