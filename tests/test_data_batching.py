"""BatchLoader: coverage, determinism, and the vectorized augmentations."""

from __future__ import annotations

import pytest
import torch

from workbench.data import Augment, BatchLoader, DataError, Dataset, Split
from workbench.data.batching import cutmix_box, random_crop, random_hflip


def _dataset(n: int = 103, size: int = 6, hflip_ok: bool = True, channels: int = 1) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    split = Split(images=images, labels=torch.arange(n) % 5)
    return Dataset(
        "toy",
        split,
        split.subset(torch.arange(min(n, 7))),
        list("abcde"),
        (0.5,) * channels,
        (0.25,) * channels,
        hflip_ok,
        "test",
    )


def _constant_dataset(n: int = 16, size: int = 8) -> Dataset:
    """Image k is constant 10 * k, with mean 0 and std 1 so that x = pixel / 255."""
    values = (torch.arange(n) * 10).to(torch.uint8)
    images = values.view(n, 1, 1, 1).expand(n, 1, size, size).contiguous()
    split = Split(images=images, labels=torch.arange(n) % 4)
    return Dataset("const", split, split, list("abcd"), (0.0,), (1.0,), True, "test")


def _indices(loader: BatchLoader) -> list[int]:
    return torch.cat([b.index for b in loader]).tolist()


def test_every_index_once_per_epoch() -> None:
    loader = BatchLoader(_dataset(), batch_size=10, seed=1)
    assert len(loader) == 11
    batches = list(loader)
    assert [len(b.y) for b in batches] == [10] * 10 + [3]
    seen = _indices(loader)
    assert sorted(seen) == list(range(103)) and seen != list(range(103))


def test_drop_last() -> None:
    loader = BatchLoader(_dataset(), batch_size=10, drop_last=True)
    assert len(loader) == 10
    seen = _indices(loader)
    assert len(seen) == 100 and len(set(seen)) == 100


def test_same_seed_same_batches_and_epochs_differ() -> None:
    ds = _dataset()
    a, b = BatchLoader(ds, batch_size=16, seed=3), BatchLoader(ds, batch_size=16, seed=3)
    assert _indices(a) == _indices(b)
    assert _indices(a) == _indices(a)  # iterating again without set_epoch repeats the epoch
    first = _indices(a)
    a.set_epoch(1)
    assert _indices(a) != first and sorted(_indices(a)) == sorted(first)
    # the permutation comes from seed + epoch: seed 3 epoch 1 equals seed 4 epoch 0
    assert _indices(a) == _indices(BatchLoader(ds, batch_size=16, seed=4))


def test_batches_are_normalized_slices() -> None:
    ds = _dataset()
    loader = BatchLoader(ds, split="test", batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch.index.tolist() == [0, 1, 2, 3]
    expected = (ds.test.images[:4].float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(batch.x, expected)
    assert batch.y.tolist() == ds.test.labels[:4].tolist() and batch.y.dtype == torch.int64
    assert batch.y_mix is None and batch.lam is None


def test_indices_subset_reports_split_positions() -> None:
    ds = _dataset()
    chosen = torch.tensor([5, 17, 42, 99, 100])
    loader = BatchLoader(ds, batch_size=2, indices=chosen, seed=0)
    assert len(loader) == 3
    batches = list(loader)
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == chosen.tolist()
    for b in batches:
        torch.testing.assert_close(b.x, ds.normalize(ds.train.images[b.index]))
        assert b.y.tolist() == ds.train.labels[b.index].tolist()
    with pytest.raises(DataError, match="indices: positions must lie in \\[0, 103\\)"):
        BatchLoader(ds, indices=torch.tensor([103]))


def test_random_crop_hand_made() -> None:
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    batch = image.expand(3, 1, 4, 4).contiguous()
    out = random_crop(batch, 1, torch.tensor([[1, 1], [0, 0], [2, 1]]))
    assert out.shape == (3, 1, 4, 4)
    assert torch.equal(out[0], image[0])  # offset == padding: unchanged
    # offset (0, 0): content moves down-right by one pixel, a zero row and column enter at top-left
    assert out[1, 0, 0].tolist() == [0, 0, 0, 0] and out[1, 0, :, 0].tolist() == [0, 0, 0, 0]
    assert torch.equal(out[1, 0, 1:, 1:], image[0, 0, :3, :3])
    # offset (2, 1): content moves up by one row, the last row is zero padding
    assert torch.equal(out[2, 0, :3], image[0, 0, 1:]) and out[2, 0, 3].tolist() == [0, 0, 0, 0]


def test_loader_crop_produces_shifted_copies() -> None:
    ds = _dataset(n=40, size=6)
    pad = 2
    loader = BatchLoader(ds, batch_size=40, shuffle=False, augment=Augment(crop_padding=pad), seed=5)
    batch = next(iter(loader))
    assert batch.x.shape == (40, 1, 6, 6)
    originals = ds.train.images.float()
    padded = torch.nn.functional.pad(originals, (pad,) * 4)
    # each output equals the original shifted by some (dy, dx) in [-pad, pad] with zero fill
    candidates = torch.stack(
        [padded[:, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)], 1
    )
    pixels = ds.denormalize(batch.x) * 255
    match = ((candidates - pixels[:, None]).abs() < 1e-3).flatten(2).all(2)  # (N, 25)
    assert bool(match.any(1).all())
    shifts = match.float().argmax(1)
    assert len(set(shifts.tolist())) > 3  # several different offsets were drawn


def test_hflip_mirrors() -> None:
    image = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3)
    both = torch.cat([image, image])
    out = random_hflip(both, torch.tensor([True, False]))
    assert out[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert torch.equal(out[1], image[0])
    ds = _dataset(n=64)
    batch = next(iter(BatchLoader(ds, batch_size=64, shuffle=False, augment=Augment(hflip=True))))
    plain, mirrored = ds.normalize(ds.train.images), ds.normalize(ds.train.images.flip(-1))
    is_plain = (batch.x == plain).flatten(1).all(1)
    is_mirror = (batch.x == mirrored).flatten(1).all(1)
    assert bool((is_plain | is_mirror).all()) and 10 < int(is_mirror.sum()) < 54


def test_hflip_refused_for_digits_like_data() -> None:
    with pytest.raises(DataError, match="hflip.*hflip_ok=False"):
        BatchLoader(_dataset(hflip_ok=False), augment=Augment(hflip=True))


def test_mixup_labels_and_lambda_are_consistent() -> None:
    ds = _constant_dataset()
    loader = BatchLoader(ds, batch_size=16, shuffle=False, augment=Augment(mixup_alpha=0.4), seed=2)
    batch = next(iter(loader))
    lam = batch.lam
    assert lam is not None and 0.0 <= lam <= 1.0 and batch.y_mix is not None
    own = torch.arange(16) * 10.0
    value = batch.x[:, 0, 0, 0] * 255
    assert bool((batch.x * 255 - value.view(-1, 1, 1, 1)).abs().max() < 1e-3)  # still flat images
    partner_value = (value - lam * own) / (1 - lam)
    partner = (partner_value / 10).round().long()
    torch.testing.assert_close(partner_value, partner * 10.0, atol=1e-2, rtol=0)
    assert sorted(partner.tolist()) == list(range(16))  # partners form a permutation
    assert batch.y_mix.tolist() == ds.train.labels[partner].tolist()


def test_cutmix_area_matches_lambda() -> None:
    ds = _constant_dataset(size=16)
    loader = BatchLoader(ds, batch_size=16, shuffle=False, augment=Augment(cutmix_alpha=1.0), seed=11)
    checked = 0
    for epoch in range(4):
        loader.set_epoch(epoch)
        batch = next(iter(loader))
        assert batch.lam is not None and 0.0 <= batch.lam <= 1.0 and batch.y_mix is not None
        pixels = (batch.x[:, 0] * 255).round()
        for i in range(16):
            own = pixels[i] == 10.0 * i
            if bool(own.all()):
                continue  # paired with itself, or an empty box
            # pixels not its own come from one partner, whose label is y_mix; the kept area is lam
            partner_values = torch.unique(pixels[i][~own])
            assert partner_values.numel() == 1
            partner = int(partner_values.item()) // 10
            assert batch.y_mix[i].item() == ds.train.labels[partner].item()
            assert own.float().mean().item() == pytest.approx(batch.lam, abs=1e-6)
            checked += 1
    assert checked > 10


def test_cutmix_box_hand_values() -> None:
    # lam = 0.75 -> side ratio sqrt(0.25) = 0.5 -> an 8x8 box on a 16x16 image, centred at (8, 8)
    assert cutmix_box(16, 16, 0.75, 0.5, 0.5) == (4, 12, 4, 12)
    # near the corner the box is clipped
    assert cutmix_box(16, 16, 0.75, 0.0, 0.0) == (0, 4, 0, 4)


def test_augment_validation_and_determinism_flag() -> None:
    assert Augment().deterministic
    assert not Augment(crop_padding=4).deterministic and not Augment(mixup_alpha=0.2).deterministic
    with pytest.raises(DataError, match="augment crop_padding"):
        Augment(crop_padding=-1)
    with pytest.raises(DataError, match="augment mixup_alpha"):
        Augment(mixup_alpha=float("nan"))
    with pytest.raises(DataError, match="split: unknown name 'val'"):
        BatchLoader(_dataset(), split="val")
    with pytest.raises(DataError, match="batch_size"):
        BatchLoader(_dataset(), batch_size=0)


def test_augmented_batches_repeat_with_the_seed() -> None:
    ds = _dataset(n=50, channels=3)
    aug = Augment(crop_padding=2, hflip=True, mixup_alpha=0.3, cutmix_alpha=0.3)
    a = list(BatchLoader(ds, batch_size=8, augment=aug, seed=9))
    b = list(BatchLoader(ds, batch_size=8, augment=aug, seed=9))
    assert all(torch.equal(x.x, y.x) and x.lam == y.lam for x, y in zip(a, b, strict=True))
    assert all(x.x.shape[1:] == (3, 6, 6) for x in a)


def test_augment_from_config_like_objects() -> None:
    from types import SimpleNamespace

    from workbench.data.batching import as_augment

    spec = SimpleNamespace(crop_padding=2, hflip=True, mixup_alpha=0.0, cutmix_alpha=0.5)
    assert as_augment(spec) == Augment(crop_padding=2, hflip=True, cutmix_alpha=0.5)
    assert as_augment({"hflip": True}) == Augment(hflip=True)
    assert as_augment(None).deterministic
    with pytest.raises(DataError, match="augment: unknown field 'flip'"):
        as_augment({"flip": True})
    loader = BatchLoader(_dataset(), augment=spec)
    assert loader.augment == Augment(crop_padding=2, hflip=True, cutmix_alpha=0.5)
