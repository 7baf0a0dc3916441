"""Teachers added to the run store from a safetensors checkpoint: the checks on the way in (format,
size, architecture, classes, accuracy, name), ``teacher:NAME`` in a distillation run, the listing and
removal, and the ``workbench teachers`` commands."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from workbench.config import TeacherSpec, validate_config
from workbench.data import DataError
from workbench.models import ModelError, create_model
from workbench.runs import RunStore
from workbench.runs import teacher_store as ts
from workbench.runs.teacher_store import (
    TeacherCard,
    add_teacher,
    list_store_teachers,
    remove_teacher,
    teacher_choices,
)
from workbench.runs.teachers import TeacherError, load_teacher

KWARGS = {"hidden": [32]}


def _trained_mlp(digits, num_classes: int = 10, steps: int = 30) -> torch.nn.Module:
    """An MLP trained full-batch on digits' train split for a few Adam steps (well above chance)."""
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=num_classes, in_channels=1, image_size=8, **KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    x, y = digits.normalize(digits.train.images), digits.train.labels % num_classes
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _accuracy(model: torch.nn.Module, digits) -> tuple[int, int]:
    """Top-1 hits on digits' test split, computed here in one forward on the CPU."""
    with torch.no_grad():
        pred = model.cpu()(digits.normalize(digits.test.images)).argmax(1)
    return int((pred == digits.test.labels).sum()), len(digits.test.labels)


@pytest.fixture(scope="module")
def teacher(digits, tmp_path_factory):
    """A trained MLP and its state dict saved as safetensors."""
    model = _trained_mlp(digits)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def _assert_clean(root, names=()) -> None:
    """The store's teachers folder holds exactly ``names``: no staging, trash or half-written teacher."""
    folder = root / "teachers"
    entries = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert entries == sorted(names)
    for name in names:
        assert sorted(p.name for p in (folder / name).iterdir()) == ["card.json", "weights.safetensors"]


def test_round_trip_add_list_distill_remove(teacher, digits, tmp_path):
    model, path = teacher
    root = tmp_path / "runs"
    correct, n = _accuracy(model, digits)
    assert correct / n > 0.5  # the premise: a real teacher

    card = add_teacher(root, "tiny", path, model="mlp", kwargs=KWARGS, dataset="digits", device="cpu")

    assert card.source == "teacher:tiny"
    assert (card.n_test, card.test_acc) == (n, correct / n)
    assert card.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card.params == 64 * 32 + 32 + 32 * 10 + 10
    assert (card.num_classes, card.in_channels, card.image_size) == (10, 1, 8)
    assert card.model == {"name": "mlp", "kwargs": KWARGS} and card.dataset == "digits"
    _assert_clean(root, ["tiny"])
    assert (root / "teachers" / "tiny" / "weights.safetensors").read_bytes() == path.read_bytes()
    assert TeacherCard.from_dict(json.loads((root / "teachers" / "tiny" / "card.json").read_text())) == card
    assert [c.name for c in list_store_teachers(root)] == ["tiny"]
    assert ("teacher:tiny", "tiny · store teacher · mlp · " + f"{correct / n:.2%}") in teacher_choices(
        root, "digits"
    )
    assert all(not s.startswith("teacher:") for s, _ in teacher_choices(root, "mnist"))

    loaded = load_teacher(TeacherSpec(source="teacher:tiny"), 10, (1, 8, 8), runs_root=str(root))
    x = digits.normalize(digits.test.images[:16])
    assert torch.allclose(loaded(x), model(x))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training

    from workbench.train import Trainer

    cfg = validate_config(
        {
            "kind": "distill",
            "seed": 0,
            "data": {"dataset": "digits", "batch_size": 64},
            "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
            "teachers": [{"source": "teacher:tiny"}],
            "distill": {"methods": "0.9*kd", "ce_weight": 0.1},
            "train": {"epochs": 1, "max_steps": 3, "device": "cpu"},
        }
    )
    result = Trainer(cfg, store=RunStore(root)).run()
    assert result.status == "completed"
    assert RunStore(root).load(result.run_id).config.teachers[0].source == "teacher:tiny"

    with pytest.raises(TeacherError, match=rf"named by 1 run\(s\) \({result.run_id}\)"):
        remove_teacher(root, "tiny")
    _assert_clean(root, ["tiny"])
    assert remove_teacher(root, "tiny", force=True) == "tiny"
    _assert_clean(root)
    assert list_store_teachers(root) == []
    with pytest.raises(TeacherError, match="store teacher 'tiny': not found"):
        load_teacher(TeacherSpec(source="teacher:tiny"), 10, (1, 8, 8), runs_root=str(root))


def _refusal(root, weights, match, *, error=TeacherError, name="t", **kw) -> str:
    kw = {"model": "mlp", "kwargs": KWARGS, "dataset": "digits", "device": "cpu", **kw}
    with pytest.raises(error, match=match) as info:
        add_teacher(root, name, weights, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_a_pickle_is_refused_unopened(teacher, tmp_path, monkeypatch):
    model, _ = teacher
    pt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), pt)

    def no_unpickling(*a, **k):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", no_unpickling)
    root = tmp_path / "runs"
    _refusal(root, pt, r"weights tiny\.pt: a pickle checkpoint \(\.pt\), refused")
    _refusal(root, pt.read_bytes(), r"weights \(uploaded\): a PyTorch pickle checkpoint, refused")
    named = io.BytesIO(pt.read_bytes())
    named.name = "upload.pt"
    _refusal(root, named, r"weights upload\.pt: a pickle checkpoint \(\.pt\), refused")
    _refusal(root, b"this is not a tensor file at all", "not a safetensors file")
    _assert_clean(root)


def test_unknown_model_and_dataset(teacher, tmp_path):
    root = tmp_path / "runs"
    _refusal(root, teacher[1], "model 'mlpp': unknown name", error=ModelError, model="mlpp")
    _refusal(root, teacher[1], "dataset 'digitz'", error=DataError, dataset="digitz")
    _refusal(root, teacher[1], "'num_classes' comes from the dataset", kwargs={**KWARGS, "num_classes": 10})
    _assert_clean(root)


def test_weights_of_another_architecture_name_the_first_mismatch(digits, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cnn.safetensors"
    save_file(create_model("cnn_small", 10, 1, 8).state_dict(), str(path))
    msg = _refusal(tmp_path / "runs", path, "do not fit model 'mlp' built for digits")
    assert "missing parameter 'layers.0.0.weight'" in msg  # the MLP's first parameter
    wide = tmp_path / "wide.safetensors"
    save_file(create_model("mlp", 10, 1, 8, hidden=[48]).state_dict(), str(wide))
    msg = _refusal(tmp_path / "runs", wide, "do not fit")
    assert "parameter 'layers.0.0.weight' has shape (48, 64) in the file, the model wants (32, 64)" in msg
    _assert_clean(tmp_path / "runs")


def test_weights_for_another_number_of_classes(digits, tmp_path):
    path = tmp_path / "five.safetensors"
    save_file(create_model("mlp", 5, 1, 8, **KWARGS).state_dict(), str(path))
    msg = _refusal(
        tmp_path / "runs", path, r"'fc\.weight' has shape \(5, 32\) in the file, the model wants \(10, 32\)"
    )
    assert "the file's classifier has 5 outputs, digits has 10 classes" in msg
    _assert_clean(tmp_path / "runs")


def test_a_teacher_near_chance_is_refused(digits, tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp", 10, 1, 8, **KWARGS).eval()  # random init
    correct, n = _accuracy(model, digits)
    assert correct / n < 1.5 / 10  # the premise: near chance
    path = tmp_path / "random.safetensors"
    save_file(model.state_dict(), str(path))
    msg = _refusal(tmp_path / "runs", path, "near chance")
    assert f"test accuracy {correct / n:.2%} on digits ({n} test images)" in msg
    assert "at least 1.5 x chance = 1.5/10 = 15.00%" in msg
    _assert_clean(tmp_path / "runs")


class _Unreadable(io.BytesIO):
    def read(self, *a):
        raise AssertionError("read before the size was checked")


def test_a_file_over_the_cap_is_refused_before_reading(teacher, tmp_path, monkeypatch):
    size = teacher[1].stat().st_size
    monkeypatch.setattr(ts, "MAX_TEACHER_BYTES", size - 1)
    root = tmp_path / "runs"
    _refusal(root, teacher[1], r"more than a teacher may be")
    _refusal(
        root,
        _Unreadable(teacher[1].read_bytes()),
        r"weights \(uploaded\): .*bytes, more than a teacher may be",
    )
    _refusal(root, teacher[1].read_bytes(), r"more than a teacher may be")
    monkeypatch.setattr(ts, "MAX_TEACHER_BYTES", size)
    assert add_teacher(root, "fits", teacher[1], model="mlp", kwargs=KWARGS, dataset="digits", device="cpu")
    _assert_clean(root, ["fits"])


@pytest.mark.parametrize("name", ["", "../evil", ".hidden", "a/b", "x" * 65, "tab\tname"])
def test_bad_names(teacher, tmp_path, name):
    _refusal(tmp_path / "runs", teacher[1], "teacher name .*: expected a letter or digit", name=name)
    _assert_clean(tmp_path / "runs")
    with pytest.raises(TeacherError, match="teacher name"):
        load_teacher(TeacherSpec(source=f"teacher:{name}"), 10, (1, 8, 8), runs_root=str(tmp_path / "runs"))


def test_a_taken_name_and_a_failed_write_leave_the_store_as_it_was(teacher, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    first = add_teacher(root, "tiny", teacher[1].read_bytes(), model="mlp", kwargs=KWARGS, dataset="digits")
    _refusal(root, teacher[1], "teacher 'tiny': the name is taken", name="tiny")
    assert list_store_teachers(root) == [first]

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ts, "atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        add_teacher(root, "other", teacher[1], model="mlp", kwargs=KWARGS, dataset="digits", device="cpu")
    _assert_clean(root, ["tiny"])


def test_changed_weights_are_caught_on_load(teacher, tmp_path):
    root = tmp_path / "runs"
    add_teacher(root, "tiny", teacher[1], model="mlp", kwargs=KWARGS, dataset="digits", device="cpu")
    weights = root / "teachers" / "tiny" / "weights.safetensors"
    state = {k: v + 1 for k, v in teacher[0].state_dict().items()}
    save_file(state, str(weights))
    with pytest.raises(
        TeacherError, match="teachers\\[0\\]: store teacher 'tiny': .*does not match its card's sha256"
    ):
        load_teacher(TeacherSpec(source="teacher:tiny"), 10, (1, 8, 8), runs_root=str(root))
    with pytest.raises(TeacherError, match="predicts 10 classes, the dataset has 3"):
        save_file(teacher[0].state_dict(), str(weights))
        load_teacher(TeacherSpec(source="teacher:tiny"), 3, (1, 8, 8), runs_root=str(root))


def test_cli_add_list_remove(teacher, digits, tmp_path):
    from workbench.cli import app

    runner = CliRunner()
    root = str(tmp_path / "runs")
    add = [
        "teachers",
        "add",
        "tiny",
        str(teacher[1]),
        "--model",
        "mlp",
        "-k",
        "hidden=[32]",
        "--dataset",
        "digits",
        "--device",
        "cpu",
        "--runs",
        root,
    ]
    res = runner.invoke(app, add)
    assert res.exit_code == 0, res.output
    correct, n = _accuracy(teacher[0], digits)
    assert (
        f"added teacher:tiny: mlp on digits, test accuracy {100 * correct / n:.2f}% ({n} test images)"
        in res.output
    )
    card = list_store_teachers(root)[0]
    assert card.model == {"name": "mlp", "kwargs": {"hidden": [32]}}

    res = runner.invoke(app, ["teachers", "list", "--runs", root])
    assert res.exit_code == 0 and "teacher:tiny" in res.output and "shipped:mnist" in res.output

    res = runner.invoke(app, add)  # the name is taken now
    assert (
        res.exit_code == 2
        and res.output.count("\n") == 1
        and "error: teacher 'tiny': the name is taken" in res.output
    )
    pt = tmp_path / "t.pt"
    torch.save(teacher[0].state_dict(), pt)
    res = runner.invoke(app, [*add[:2], "other", str(pt), *add[4:]])
    assert res.exit_code == 2 and "error: weights t.pt: a pickle checkpoint" in res.output
    res = runner.invoke(
        app,
        [
            *add[:2],
            "other",
            str(teacher[1]),
            "--model",
            "mlp",
            "--kwargs",
            "[1]",
            "--dataset",
            "digits",
            "--runs",
            root,
        ],
    )
    assert res.exit_code == 2 and "error: --kwargs: expected a JSON object" in res.output

    res = runner.invoke(app, ["teachers", "remove", "tiny", "--runs", root])
    assert res.exit_code == 0 and "removed teacher:tiny" in res.output
    res = runner.invoke(app, ["teachers", "list", "--runs", root])
    assert "teacher:tiny" not in res.output
    _assert_clean(tmp_path / "runs")


def test_a_dataset_with_files_is_named_by_its_data_section(tmp_path):
    """Dark and light 8x8 images in two class folders: a data section with root and options."""
    from PIL import Image

    from workbench.data import load_dataset

    folder = tmp_path / "images"
    rng = torch.Generator().manual_seed(0)
    for cls, base in (("dark", 30), ("light", 220)):
        (folder / cls).mkdir(parents=True)
        for i in range(10):
            pixels = (base + torch.randint(-20, 20, (8, 8), generator=rng)).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / cls / f"{i}.png")
    section = {"dataset": "imagefolder", "root": str(folder), "options": {"test_fraction": 0.3}}
    data = load_dataset("imagefolder", root=folder, test_fraction=0.3)
    model = create_model("mlp", 2, 1, 8, hidden=[4])
    with torch.no_grad():  # brightness decides: light minus dark on the mean pixel
        model.layers[0][0].weight.fill_(1 / 64)
        model.layers[0][0].bias.zero_()
        model.fc.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
        model.fc.bias.zero_()
    path = tmp_path / "bright.safetensors"
    save_file(model.state_dict(), str(path))
    assert _accuracy(model, data) == (len(data.test), len(data.test))  # the premise: every test image right

    card = add_teacher(
        tmp_path / "runs", "bright", path, model="mlp", kwargs={"hidden": [4]}, dataset=section
    )
    assert card.test_acc == 1.0 and card.n_test == len(data.test) == 6
    assert card.data == {
        "dataset": "imagefolder",
        "root": str(folder.resolve()),
        "options": {"test_fraction": 0.3},
    }
    assert [s for s, _ in teacher_choices(tmp_path / "runs", "imagefolder")] == ["teacher:bright"]
    with pytest.raises(TeacherError, match="data_options: give the options inside the data section"):
        add_teacher(tmp_path / "runs", "b2", path, model="mlp", dataset=section, data_options={"seed": 1})
    _assert_clean(tmp_path / "runs", ["bright"])
    # the same files added to the store as a dataset: the teacher is named by it and offered for it
    from workbench.runs.datasets import add_dataset

    add_dataset(tmp_path / "runs", "shades", folder, options={"test_fraction": 0.3})
    named = add_teacher(tmp_path / "runs", "bright2", path, model="mlp", kwargs={"hidden": [4]}, dataset="shades")
    assert named.dataset == "shades" and named.data["name"] == "shades" and named.test_acc == 1.0
    assert [s for s, _ in teacher_choices(tmp_path / "runs", "shades")] == ["teacher:bright2"]
