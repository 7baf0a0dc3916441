"""Registry, Split/Dataset containers and normalization of workbench.data."""

from __future__ import annotations

import pytest
import torch

from workbench.data import (
    DataError,
    Dataset,
    DatasetInfo,
    Split,
    channel_stats,
    dataset_options,
    list_datasets,
    load_dataset,
    prepare_dataset,
)

NAMES = ["mnist", "fashion-mnist", "cifar10", "cifar100", "digits", "shapes", "imagefolder"]


def _toy(mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.25,), n: int = 6) -> Dataset:
    images = torch.arange(n * 4, dtype=torch.uint8).view(n, 1, 2, 2)
    labels = torch.arange(n) % 3
    split = Split(images=images, labels=labels)
    return Dataset("toy", split, split.subset([0, 1]), ["a", "b", "c"], mean, std, True, "hand-made")


def test_registry_lists_the_seven_datasets() -> None:
    infos = list_datasets()
    assert [i.name for i in infos] == NAMES
    assert all(isinstance(i, DatasetInfo) for i in infos)
    by_name = {i.name: i for i in infos}
    assert by_name["shapes"].has_masks and not by_name["mnist"].has_masks
    assert by_name["cifar10"].needs_root and not by_name["mnist"].needs_root
    assert by_name["mnist"].image_shape == (1, 28, 28) and by_name["cifar100"].num_classes == 100
    assert by_name["imagefolder"].image_shape == (0, 0, 0) and by_name["imagefolder"].num_classes == 0
    assert not by_name["imagefolder"].shape_known and by_name["mnist"].shape_known


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError) as err:
        load_dataset("mnits")
    message = str(err.value)
    assert "'mnits'" in message and "\n" not in message
    for name in NAMES:
        assert name in message


def test_unknown_option_is_named() -> None:
    with pytest.raises(DataError, match="unknown option 'n_trian'.*n_train"):
        load_dataset("shapes", n_trian=10)
    with pytest.raises(DataError, match="unknown option 'label_mode'"):
        load_dataset("cifar10", root="nowhere", label_mode="fine")


def test_dataset_options_lists_defaults() -> None:
    assert dataset_options("shapes") == {"n_train": 10000, "n_test": 2000, "confounding": 0.0, "seed": 0}
    assert dataset_options("cifar100")["label_mode"] == "fine"


def test_root_required_and_download_needs_root() -> None:
    with pytest.raises(DataError, match="cifar10.*root"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="imagefolder.*root"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="download=True needs root"):
        load_dataset("mnist", download=True)


def test_prepare_dataset_returns_a_checked_dataset() -> None:
    ds = prepare_dataset("digits")
    assert ds.name == "digits" and len(ds.train) > 0 and len(ds.test) > 0


def test_split_validates_shapes_and_dtypes() -> None:
    images = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(DataError, match="split images"):
        Split(images=images.float(), labels=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="split labels"):
        Split(images=images, labels=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(DataError, match="split masks"):
        Split(
            images=images,
            labels=torch.zeros(3, dtype=torch.int64),
            masks=torch.zeros(3, 2, 3, dtype=torch.bool),
        )
    with pytest.raises(DataError, match="split boxes"):
        Split(
            images=images,
            labels=torch.zeros(3, dtype=torch.int64),
            boxes=torch.zeros(3, 4, dtype=torch.int64),
        )
    split = Split(images=images, labels=torch.tensor([0, 1, 2], dtype=torch.int32))
    assert split.labels.dtype == torch.int64 and len(split) == 3


def test_subset_keeps_all_fields_aligned() -> None:
    n = 5
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    split = Split(
        images=images,
        labels=torch.arange(n),
        masks=torch.arange(n).view(n, 1, 1).expand(n, 2, 2) % 2 == 0,
        boxes=torch.arange(n, dtype=torch.float32).view(n, 1).expand(n, 4).clone(),
        context=torch.arange(n) * 10,
    )
    sub = split.subset(torch.tensor([4, 1]))
    assert sub.labels.tolist() == [4, 1]
    assert sub.images[:, 0, 0, 0].tolist() == [4, 1]
    assert sub.context.tolist() == [40, 10]
    assert sub.boxes[:, 0].tolist() == [4.0, 1.0]
    assert sub.masks[:, 0, 0].tolist() == [True, False]
    by_mask = split.subset(split.labels >= 3)
    assert by_mask.labels.tolist() == [3, 4]
    with pytest.raises(DataError, match="subset index"):
        split.subset([7])


def test_dataset_properties() -> None:
    ds = _toy()
    assert ds.image_shape == (1, 2, 2)
    assert ds.num_classes == 3 and ds.in_channels == 1 and ds.image_size == 2


def test_dataset_rejects_labels_beyond_class_names() -> None:
    split = Split(images=torch.zeros(2, 1, 2, 2, dtype=torch.uint8), labels=torch.tensor([0, 5]))
    with pytest.raises(DataError, match="label 5 is out of range"):
        Dataset("bad", split, split, ["a", "b"], (0.5,), (0.5,), True, "test")


def test_normalize_hand_values() -> None:
    ds = _toy(mean=(0.5,), std=(0.25,))
    pixels = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3)
    out = ds.normalize(pixels)
    assert out.dtype == torch.float32
    # (0/255 - 0.5)/0.25 = -2 ; (1 - 0.5)/0.25 = 2 ; (0.2 - 0.5)/0.25 = -1.2
    torch.testing.assert_close(out.flatten(), torch.tensor([-2.0, 2.0, -1.2]))
    with pytest.raises(DataError, match="uint8"):
        ds.normalize(pixels.float())


def test_normalize_denormalize_round_trip_rgb() -> None:
    split = Split(
        images=torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8),
        labels=torch.zeros(4, dtype=torch.int64),
    )
    ds = Dataset("rgb", split, split, ["only"], (0.1, 0.5, 0.9), (0.2, 0.3, 0.4), True, "test")
    back = ds.denormalize(ds.normalize(split.images))
    torch.testing.assert_close(back, split.images.float() / 255.0, atol=1e-6, rtol=0)
    assert float(ds.denormalize(torch.full((3, 2, 2), 100.0)).max()) == 1.0


def test_channel_stats_hand_computed() -> None:
    # channel 0: values 0 and 255 in equal numbers -> mean 0.5, std 0.5; channel 1: constant 51 -> mean 0.2
    images = torch.zeros(2, 2, 1, 2, dtype=torch.uint8)
    images[:, 0, 0, 1] = 255
    images[:, 1] = 51
    mean, std = channel_stats(images, chunk=1)
    assert mean == pytest.approx((0.5, 0.2))
    assert std[0] == pytest.approx(0.5)
    assert std[1] == pytest.approx(1 / 255)  # a constant channel gets the one-grey-level floor
    assert channel_stats(images) == (mean, std)
