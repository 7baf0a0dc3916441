"""``shapes``: procedural 32x32 RGB images of ten geometric shapes on ten textured backgrounds.

Every image holds one shape of random position, size, small rotation and colour, painted over
one of ten background textures; the exact per-pixel mask of the shape and its tight bounding box
are returned with it, and the background type is returned as ``context``. Rendering is fully
vectorized in numpy: per-sample parameters are drawn as arrays and broadcast against one
coordinate grid, in chunks of 1,024 images to bound memory, with Python loops only over the ten
shape classes and ten background types, never over images.

Confounding (a controlled version of the "fish and water" co-occurrence of natural images): each
class ``k`` is paired with background type ``PAIRED_BACKGROUND[k]``. In the train split a sample
gets its class's paired background with probability ``confounding`` and a uniformly random one
otherwise, so the paired background occurs with probability ``confounding + (1 - confounding) / 10``;
in the test split backgrounds are always uniformly random. A model that learns the background
instead of the shape then loses accuracy on test, and attribution maps show where it looked.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.data.core import Dataset, Split, channel_stats
from workbench.data.errors import DataError
from workbench.data.limits import over_budget

IMAGE_SIZE = 32
SHAPE_CLASSES = ["circle", "square", "triangle", "plus", "cross", "ring", "diamond", "ellipse", "bar", "star"]
BACKGROUNDS = [
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checker",
    "dots",
    "noise",
    "linear gradient",
    "radial gradient",
    "grid",
    "waves",
]
PAIRED_BACKGROUND = list(range(len(SHAPE_CLASSES)))
"""Background paired with each class under confounding: class k <-> ``BACKGROUNDS[PAIRED_BACKGROUND[k]]``."""

OPTIONS: dict[str, Any] = {"n_train": 10000, "n_test": 2000, "confounding": 0.0, "seed": 0}

_MAX_SAMPLES = 2_000_000
_CHUNK = 1024
_RADIUS = (6.0, 11.0)  # shape radius in pixels
_MAX_ROTATION = math.radians(12.0)


def _shape_mask(k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of the points ``(u, v)`` (shape-normalized, v pointing down) in shape class ``k``."""
    au, av = np.abs(u), np.abs(v)
    if k == 0:  # circle
        return u * u + v * v <= 1.0
    if k == 1:  # square
        return np.maximum(au, av) <= 0.8
    if k == 2:  # triangle, apex up
        return (v <= 0.75) & (au <= 0.95 * (v + 1.0) / 1.75)
    if k == 3:  # plus
        return ((au <= 0.28) & (av <= 1.0)) | ((av <= 0.28) & (au <= 1.0))
    if k == 4:  # cross (diagonal)
        a, b = np.abs(u + v) * 0.7071068, np.abs(u - v) * 0.7071068
        return ((a <= 0.25) & (b <= 1.0)) | ((b <= 0.25) & (a <= 1.0))
    if k == 5:  # ring
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if k == 6:  # diamond
        return au + av <= 1.0
    if k == 7:  # ellipse, wide
        return u * u + (v * 2.0) ** 2 <= 1.0
    if k == 8:  # bar, upright
        return (au <= 0.25) & (av <= 1.0)
    if k == 9:  # five-pointed star: radius swings from 0.4 between points to 1.0 at the points
        t = np.remainder(np.arctan2(u, -v) * (5.0 / (2.0 * math.pi)), 1.0)
        edge = 0.4 + 0.6 * np.abs(2.0 * t - 1.0)
        return u * u + v * v <= edge * edge
    raise DataError(f"shape class {k}: expected 0..{len(SHAPE_CLASSES) - 1}")


def _background_field(
    kind: int, x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Texture in [0, 1] of background type ``kind`` on the pixel grid ``x``/``y``, per-sample parameters."""
    period, ox, oy, phase = p["period"], p["offset_x"], p["offset_y"], p["phase"]
    if kind == 0:  # horizontal stripes
        return np.remainder((y + oy) / period, 1.0) < 0.5
    if kind == 1:  # vertical stripes
        return np.remainder((x + ox) / period, 1.0) < 0.5
    if kind == 2:  # diagonal stripes
        return np.remainder(((x + y) * 0.7071068 + ox) / period, 1.0) < 0.5
    if kind == 3:  # checker
        cell = 0.6 * period
        return np.remainder(np.floor((x + ox) / cell) + np.floor((y + oy) / cell), 2.0)
    if kind == 4:  # dots on a square lattice
        spacing = period + 2.0
        dx = np.remainder(x + ox, spacing) - spacing / 2
        dy = np.remainder(y + oy, spacing) - spacing / 2
        return dx * dx + dy * dy <= (0.3 * spacing) ** 2
    if kind == 5:  # blocky noise, 2x2 pixel cells
        half = IMAGE_SIZE // 2
        noise = rng.random((period.shape[0], half, half), dtype=np.float32)
        return noise.repeat(2, axis=1).repeat(2, axis=2)
    if kind == 6:  # linear gradient in a random direction
        c = IMAGE_SIZE / 2
        proj = (x - c) * np.cos(phase) + (y - c) * np.sin(phase)
        return np.clip(proj / (c * math.sqrt(2.0)) * 0.5 + 0.5, 0.0, 1.0)
    if kind == 7:  # radial gradient around a random centre
        d = np.sqrt((x - p["centre_x"]) ** 2 + (y - p["centre_y"]) ** 2)
        return np.clip(d / (0.75 * IMAGE_SIZE), 0.0, 1.0)
    if kind == 8:  # grid lines
        spacing = period + 2.0
        return (np.remainder(x + ox, spacing) < 1.5) | (np.remainder(y + oy, spacing) < 1.5)
    if kind == 9:  # waves
        arg = 2 * math.pi * x / (1.5 * period) + 2.0 * np.sin(2 * math.pi * y / IMAGE_SIZE + phase) + phase
        return 0.5 + 0.5 * np.sin(arg)
    raise DataError(f"background type {kind}: expected 0..{len(BACKGROUNDS) - 1}")


def render_shapes(n: int, confounding: float, seed: int, stream: int) -> dict[str, torch.Tensor]:
    """Draw ``n`` shape images; ``stream`` separates independent splits made from one ``seed``.

    Returns ``images`` uint8 (n, 3, 32, 32), ``labels`` int64 (n,) (exactly balanced when n is a
    multiple of 10), ``masks`` bool (n, 32, 32), ``boxes`` float32 (n, 4) and ``context`` int64 (n,)
    (background type). Same arguments, same tensors, on any machine (numpy PCG64 streams).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k)
    random_bg = rng.integers(0, len(BACKGROUNDS), n)
    use_pair = rng.random(n) < confounding
    context = np.where(use_pair, np.asarray(PAIRED_BACKGROUND)[labels], random_bg)

    def uniform(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, (n, *shape)).astype(np.float32)

    radius = uniform(*_RADIUS)
    margin = radius + 1.0
    cx = margin + (IMAGE_SIZE - 2 * margin) * uniform(0.0, 1.0)
    cy = margin + (IMAGE_SIZE - 2 * margin) * uniform(0.0, 1.0)
    theta = uniform(-_MAX_ROTATION, _MAX_ROTATION)
    light = (rng.random(n) < 0.5)[:, None]
    shape_rgb = np.where(light, uniform(0.65, 1.0, 3), uniform(0.0, 0.35, 3))
    low_bg = np.where(light, uniform(0.0, 0.2, 3), uniform(0.55, 0.775, 3))
    high_bg = np.where(light, uniform(0.2, 0.45, 3), uniform(0.775, 1.0, 3))
    params = {
        "period": uniform(4.0, 9.0),
        "offset_x": uniform(0.0, 16.0),
        "offset_y": uniform(0.0, 16.0),
        "phase": uniform(0.0, 2 * math.pi),
        "centre_x": uniform(0.0, IMAGE_SIZE),
        "centre_y": uniform(0.0, IMAGE_SIZE),
    }

    coords = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5
    gx, gy = coords.reshape(1, 1, IMAGE_SIZE), coords.reshape(1, IMAGE_SIZE, 1)
    images = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    masks = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        cos_t = np.cos(theta[sl]).reshape(-1, 1, 1) / radius[sl].reshape(-1, 1, 1)
        sin_t = np.sin(theta[sl]).reshape(-1, 1, 1) / radius[sl].reshape(-1, 1, 1)
        dx, dy = gx - cx[sl].reshape(-1, 1, 1), gy - cy[sl].reshape(-1, 1, 1)
        u = cos_t * dx + sin_t * dy
        v = cos_t * dy - sin_t * dx
        mask = masks[sl]
        lab = labels[sl]
        for cls in range(k):
            sel = np.flatnonzero(lab == cls)
            if sel.size:
                mask[sel] = _shape_mask(cls, u[sel], v[sel])
        field = np.empty(mask.shape, dtype=np.float32)
        ctx = context[sl]
        for kind in range(len(BACKGROUNDS)):
            sel = np.flatnonzero(ctx == kind)
            if sel.size:
                p = {name: value[sl][sel].reshape(-1, 1, 1) for name, value in params.items()}
                field[sel] = _background_field(kind, gx, gy, p, rng)
        t = field[:, None]
        low, high = low_bg[sl][:, :, None, None], high_bg[sl][:, :, None, None]
        rgb = np.where(mask[:, None], shape_rgb[sl][:, :, None, None], low + (high - low) * t)
        images[sl] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    masks_t = torch.from_numpy(masks)
    return {
        "images": torch.from_numpy(images),
        "labels": torch.from_numpy(labels.astype(np.int64)),
        "masks": masks_t,
        "boxes": boxes_from_masks(masks_t),
        "context": torch.from_numpy(context.astype(np.int64)),
    }


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x0, y0, x1, y1)`` (x1/y1 exclusive) of bool masks ``(N, H, W)``; empty mask: zeros."""
    n, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    xs, ys = torch.arange(w), torch.arange(h)
    big = max(h, w) + 1
    x0 = torch.where(cols, xs, big).amin(dim=1)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1)
    y0 = torch.where(rows, ys, big).amin(dim=1)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return torch.where(cols.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))


#: bytes one sample takes in memory: uint8 image, bool mask, float32 box, int64 context and label
SAMPLE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE + IMAGE_SIZE * IMAGE_SIZE + 16 + 8 + 8
#: per-sample temporaries while rendering (parameter arrays, box search)
_RENDER_BYTES = 1024
#: sets up to this many samples (train + test) are kept in a small cache and handed out as copies;
#: larger ones are rendered on each call and never held twice
_CACHE_MAX_SAMPLES = 100_000


@lru_cache(maxsize=4)
def _cached(n_train: int, n_test: int, confounding: float, seed: int) -> tuple[dict[str, torch.Tensor], ...]:
    return render_shapes(n_train, confounding, seed, 0), render_shapes(n_test, 0.0, seed, 1)


def estimate_shapes(options: dict[str, Any]) -> int:
    """Peak bytes of loading ``shapes`` with ``options`` (both splits, their copies out of the cache
    for small sets, and the rendering temporaries). Raises :class:`DataError` naming the option
    when the options are invalid or the set would not fit the memory budget
    (:mod:`workbench.data.limits`); the option maximum stays 2,000,000 samples, which fits
    machines with enough memory."""
    n_train, n_test, _, _ = _validate({**OPTIONS, **options})
    n = n_train + n_test
    copies = 2 if n <= _CACHE_MAX_SAMPLES else 1
    total = n * (copies * SAMPLE_BYTES + _RENDER_BYTES)
    problem = over_budget(total)
    if problem:
        raise DataError(
            f"option n_train: the set of {n_train} train + {n_test} test samples {problem}; lower n_train or n_test"
        )
    return total


def _validate(options: dict[str, Any]) -> tuple[int, int, float, int]:
    for key in ("n_train", "n_test"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_SAMPLES:
            raise DataError(f"option {key}: expected an integer in [1, {_MAX_SAMPLES}], got {value!r}")
    conf = options["confounding"]
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= float(conf) <= 1.0:
        raise DataError(f"option confounding: expected a number in [0, 1], got {conf!r}")
    seed = options["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"option seed: expected a non-negative integer, got {seed!r}")
    return options["n_train"], options["n_test"], float(conf), seed


def load_shapes(name: str, root: str | Path | None, download: bool, options: dict[str, Any]) -> Dataset:
    """Registry entry for ``shapes``: options ``n_train``, ``n_test``, ``confounding`` in [0, 1], ``seed``."""
    n_train, n_test, confounding, seed = _validate(options)
    if root is not None or download:
        raise DataError("dataset 'shapes': is generated on the fly; root and download are not used")
    estimate_shapes(options)
    if n_train + n_test <= _CACHE_MAX_SAMPLES:
        train_t, test_t = _cached(n_train, n_test, confounding, seed)
        train = Split(**{key: value.clone() for key, value in train_t.items()})
        test = Split(**{key: value.clone() for key, value in test_t.items()})
    else:
        train = Split(**render_shapes(n_train, confounding, seed, 0))
        test = Split(**render_shapes(n_test, 0.0, seed, 1))
    mean, std = channel_stats(train.images)
    return Dataset(
        name=name,
        train=train,
        test=test,
        class_names=list(SHAPE_CLASSES),
        mean=mean,
        std=std,
        hflip_ok=True,
        source=f"procedural shapes (n_train={n_train}, n_test={n_test}, "
        f"confounding={confounding}, seed={seed})",
    )
