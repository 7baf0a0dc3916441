"""CIFAR recipes: configs that validate with the published schedule, the published accuracies as the
papers print them, matching a run to them, a recipe that trains, and the CLI faces."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.config import validate_config
from workbench.recipes import (
    METHOD_OBJECTIVES,
    REFERENCES,
    RecipeError,
    compare_with_references,
    get_recipe,
    list_recipes,
    method_key,
    reference_for,
    scaled_milestones,
)
from workbench.runs import RunStore
from workbench.validate import validate_run_config


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar(root: Path, n_train: int = 64, n_test: int = 16) -> Path:
    """CIFAR-10 and CIFAR-100 folders in the standard python-pickle layout, random pixels."""
    rng = np.random.default_rng(0)
    ten = root / "cifar-10-batches-py"
    ten.mkdir(parents=True)
    per = n_train // 5
    for i in range(1, 6):
        _dump(
            ten / f"data_batch_{i}", {b"data": _images(rng, per), b"labels": list(rng.integers(0, 10, per))}
        )
    _dump(ten / "test_batch", {b"data": _images(rng, n_test), b"labels": list(rng.integers(0, 10, n_test))})
    _dump(ten / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    hundred = root / "cifar-100-python"
    hundred.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        _dump(
            hundred / split,
            {
                b"data": _images(rng, n),
                b"fine_labels": list(rng.integers(0, 100, n)),
                b"coarse_labels": list(rng.integers(0, 20, n)),
            },
        )
    _dump(
        hundred / "meta",
        {
            b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
        },
    )
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"))


# ---- configs ----------------------------------------------------------------------------------------


def _check_student(cfg, recipe, method: str) -> None:
    assert cfg.data.dataset == recipe.dataset and cfg.model.name == recipe.student
    assert cfg.data.batch_size == 64 and cfg.train.epochs == 240
    assert (cfg.data.augment.crop_padding, cfg.data.augment.hflip) == (4, True)
    assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (cfg.schedule.name, cfg.schedule.milestones, cfg.schedule.gamma) == ("step", [150, 180, 210], 0.1)
    assert cfg.kind == ("student" if method == "none" else "distill")
    if method != "none":
        assert cfg.teachers[0].source == "run:t-1" and cfg.teachers[0].model.name == recipe.teacher


def test_every_recipe_and_method_validates_with_the_published_schedule(root: Path) -> None:
    names = {r.name for r in list_recipes()}
    for pair in (
        "resnet56-resnet20",
        "resnet110-resnet32",
        "resnet32x4-resnet8x4",
        "wrn_40_2-wrn_16_2",
        "wrn_40_2-wrn_40_1",
        "vgg13-vgg8",
        "resnet20-resnet8",
    ):
        assert f"cifar100-{pair}" in names
    assert "cifar10-resnet20-resnet8" in names
    for recipe in list_recipes():
        teacher = validate_run_config(recipe.teacher_config(root=str(root)))
        assert (teacher.kind, teacher.model.name, teacher.optim.lr) == ("teacher", recipe.teacher, 0.05)
        _check_student(validate_run_config(recipe.config(root=str(root), teacher="run:t-1")), recipe, "kd")
    recipe = get_recipe("cifar100-wrn_40_2-wrn_16_2")
    for method in METHOD_OBJECTIVES:  # every objective's names and hyperparameters pass the registries
        cfg = validate_run_config(recipe.config(root=str(root), method=method, teacher="run:t-1"))
        _check_student(cfg, recipe, method)


def test_objectives_and_learning_rates_are_the_authors() -> None:
    kd = validate_config(get_recipe("cifar100-resnet32x4-resnet8x4").config(method="kd", teacher="run:t"))
    assert kd.distill.ce_weight == 0.1
    assert (kd.distill.methods[0].name, kd.distill.methods[0].weight) == ("kd", 0.9)
    assert kd.distill.methods[0].params == {"temperature": 4.0}
    betas = {
        "cifar100-resnet32x4-resnet8x4": 8.0,
        "cifar100-resnet56-resnet20": 2.0,
        "cifar100-vgg13-vgg8": 6.0,
    }
    for name, beta in betas.items():
        dkd = get_recipe(name).config(method="dkd", teacher="run:t")["distill"]
        assert dkd["ce_weight"] == 1.0
        assert dkd["methods"][0]["params"] == {"alpha": 1.0, "temperature": 4.0, "warmup": 20.0, "beta": beta}
    mobile = get_recipe("cifar100-vgg13-mobilenetv2")
    assert mobile.config(teacher="run:t")["optim"]["lr"] == 0.01
    assert mobile.config(method="none")["optim"]["lr"] == 0.05  # train_teacher.py has no per-model rule
    assert get_recipe("cifar100-resnet56-resnet20").config(teacher="run:t")["optim"]["lr"] == 0.05


def test_shorter_runs_scale_the_milestones_and_the_dkd_warmup() -> None:
    assert scaled_milestones(240) == [150, 180, 210]
    assert scaled_milestones(24) == [15, 18, 21]
    assert scaled_milestones(1) == [1, 1, 1]  # never reached in one epoch; three decays once it is
    cfg = get_recipe("cifar100-resnet56-resnet20").config(epochs=24, method="dkd", teacher="run:t")
    assert cfg["schedule"]["milestones"] == [15, 18, 21]
    assert cfg["distill"]["methods"][0]["params"]["warmup"] == pytest.approx(2.0)


def test_bad_recipe_arguments_are_one_line_errors() -> None:
    with pytest.raises(
        RecipeError, match=r"recipe 'cifar100-resnet32x4-resnet8': unknown name \(did you mean"
    ):
        get_recipe("cifar100-resnet32x4-resnet8")
    recipe = get_recipe("cifar10-resnet20-resnet8")
    with pytest.raises(RecipeError, match="method: 'ban' has no published recipe objective"):
        recipe.config(method="ban")
    with pytest.raises(RecipeError, match="epochs: expected a whole number from 1 to 10000, got 0"):
        recipe.config(epochs=0)
    with pytest.raises(RecipeError, match="seed: expected a whole number >= 0"):
        recipe.teacher_config(seed=-1)
    with pytest.raises(RecipeError, match="teacher: expected 'run:RUN_ID' or a weights file"):
        recipe.config(teacher="  ")


# ---- the published numbers --------------------------------------------------------------------------


def _value(teacher: str | None, model: str, method: str, source: str) -> list[float]:
    return [
        r.top1
        for r in REFERENCES
        if (r.teacher, r.model, r.method, r.source, r.dataset) == (teacher, model, method, source, "cifar100")
    ]


def test_the_table_holds_the_published_values() -> None:
    # CRD (Tian et al. 2020) Table 1 / RepDistiller README
    assert _value("resnet32x4", "resnet8x4", "kd", "crd") == [73.33]
    assert _value("wrn_40_2", "wrn_16_2", "kd", "crd") == [74.92]
    assert _value("resnet56", "resnet20", "crd", "crd") == [71.16]
    assert _value("resnet110", "resnet20", "kd", "crd") == [70.67]
    assert _value("vgg13", "vgg8", "fitnet", "crd") == [71.02]
    assert _value(None, "resnet32x4", "none", "crd") == [79.42]
    assert _value(None, "resnet8x4", "none", "crd") == [72.50]
    assert _value(None, "resnet20", "none", "crd") == [69.06]  # one row, though two columns print it
    assert _value("wrn_40_2", "wrn_40_1", "fsp", "crd") == []  # printed 0.00: not a result
    # CRD Table 2: vgg13 -> MobileNetV2
    assert _value("vgg13", "mobilenetv2", "crd", "crd") == [69.73]
    assert _value(None, "mobilenetv2", "none", "crd") == [64.60]
    # DKD (Zhao et al. 2022) / mdistiller README
    assert _value("resnet32x4", "resnet8x4", "dkd", "dkd") == [76.32]
    assert _value("wrn_40_2", "wrn_16_2", "dkd", "dkd") == [76.23]
    assert _value("resnet110", "resnet32", "dkd", "dkd") == [74.11]
    assert _value("vgg13", "mobilenetv2", "dkd", "dkd") == [69.71]
    assert _value("resnet32x4", "resnet8x4", "kd", "dkd") == [73.33]
    assert len(REFERENCES) == len(set(REFERENCES))
    assert all(r.dataset == "cifar100" and 50.0 < r.top1 < 80.0 for r in REFERENCES)


def test_reference_for_matches_pair_dataset_and_method() -> None:
    recipe = get_recipe("cifar100-resnet32x4-resnet8x4")
    kd = reference_for(recipe.config(method="kd", teacher="run:t"))
    assert sorted((r.source, r.top1) for r in kd) == [("crd", 73.33), ("dkd", 73.33)]
    assert [r.top1 for r in reference_for(recipe.config(method="dkd", teacher="run:t"))] == [76.32]
    assert [r.top1 for r in reference_for(recipe.config(method="crd", teacher="run:t"))] == [75.51]
    assert [r.top1 for r in reference_for(recipe.teacher_config())] == [79.42]
    assert [r.top1 for r in reference_for(recipe.config(method="none"))] == [72.50]
    # a validated RunConfig works as well as its mapping
    assert reference_for(validate_config(recipe.config(method="dkd", teacher="run:t")))[0].top1 == 76.32


def test_reference_for_refuses_what_differs() -> None:
    # another dataset
    assert reference_for(get_recipe("cifar10-resnet56-resnet20").config(teacher="run:t")) == []
    # another pair: the same student from another teacher, and a pair no table lists
    r110 = get_recipe("cifar100-resnet110-resnet20")
    assert [r.top1 for r in reference_for(r110.config(teacher="run:t"))] == [70.67]
    assert reference_for(r110.config(method="dkd", teacher="run:t")) == []  # the DKD tables skip it
    assert reference_for(get_recipe("cifar100-resnet20-resnet8").config(teacher="run:t")) == []
    # another method, and a combination no row has
    cfg = get_recipe("cifar100-vgg13-vgg8").config(teacher="run:t")
    assert reference_for({**cfg, "distill": {"methods": [{"name": "dist"}]}}) == []
    both = {**cfg, "distill": {"methods": [{"name": "kd"}, {"name": "at"}]}}
    assert method_key(both) == "at+kd" and reference_for(both) == []
    # the teacher's model: from the caller (read off the teacher run) over the config's; unknown -> none
    assert [r.top1 for r in reference_for(cfg, teacher_model="vgg13")] == [72.98, 72.98]
    assert reference_for(cfg, teacher_model="resnet56") == []
    assert reference_for({**cfg, "teachers": [{"source": "run:t"}]}) == []
    # coarse labels and non-default model arguments are other tasks and other models
    coarse = {**cfg, "data": {**cfg["data"], "options": {"label_mode": "coarse"}}}
    assert reference_for(coarse) == []
    assert reference_for({**cfg, "model": {"name": "vgg8", "kwargs": {"width": 2.0}}}) == []


def test_compare_with_references_gives_the_difference() -> None:
    cfg = get_recipe("cifar100-wrn_40_2-wrn_16_2").config(method="dkd", teacher="run:t")
    (row,) = compare_with_references(cfg, 0.75)
    assert (row["top1"], row["run"], row["difference"]) == (76.23, 75.0, -1.23)
    assert row["citation"].startswith("Zhao") and "mdistiller" in row["url"]
    (row,) = compare_with_references(cfg, None)
    assert row["run"] is None and row["difference"] is None


# ---- training and the CLI ---------------------------------------------------------------------------


def _cli(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_lists_and_shows_recipes() -> None:
    listed = _cli("recipes", "list")
    assert listed.exit_code == 0, listed.output
    assert "cifar100-resnet32x4-resnet8x4" in listed.output and "76.32" in listed.output
    shown = _cli("recipes", "show", "cifar100-resnet32x4-resnet8x4")
    assert shown.exit_code == 0, shown.output
    for text in ("79.42", "72.50", "73.33", "75.51", "76.32", "Tian, Krishnan & Isola", "0.1*CE + 0.9*kd"):
        assert text in shown.output, text
    as_json = json.loads(_cli("recipes", "show", "cifar100-vgg13-mobilenetv2", "--json").output)
    assert as_json["lr"] == 0.01 and as_json["objectives"]["dkd"]["params"]["alpha"] == 1.0
    bad = _cli("recipes", "show", "cifar100-resnet8x4")
    assert bad.exit_code == 2 and "unknown name" in bad.output


def test_a_recipe_trains_from_the_cli_and_shows_the_published_rows(root: Path, tmp_path: Path) -> None:
    store = tmp_path / "runs"
    name = "cifar100-resnet20-resnet8"
    # 64 images: one step per epoch; two epochs put the scaled milestones at [1, 2, 2]
    short = ("--epochs", "2", "--set", "train.snapshot_every_epoch=false")
    missing = _cli("train", "distill", "--recipe", name, "--root", root, "--runs", store, "-q", *short)
    assert missing.exit_code == 2 and "no completed resnet20 teacher on cifar100" in missing.output
    assert _cli("train", "teacher", "--root", root, "--runs", store).exit_code == 2  # --root needs --recipe
    one = ("--epochs", "1", "--set", "train.snapshot_every_epoch=false")
    teach = _cli("train", "teacher", "--recipe", name, "--root", root, "--runs", store, "-q", *one)
    assert teach.exit_code == 0, teach.output
    (teacher,) = RunStore(store).list(kind="teacher")
    distil = _cli("train", "distill", "--recipe", name, "--root", root, "--runs", store, "-q", *short)
    assert distil.exit_code == 0, distil.output
    (student,) = RunStore(store).list(kind="distill")
    cfg = student.config
    assert cfg.teachers[0].source == f"run:{teacher.id}" and cfg.teachers[0].checkpoint == "final"
    assert (cfg.data.augment.crop_padding, cfg.data.augment.hflip, cfg.data.batch_size) == (4, True, 64)
    assert student.status["status"] == "completed" and student.summary()["epochs"] == 2
    assert cfg.schedule.milestones == [1, 2, 2]
    steps = student.step_metrics().records
    assert [s["step"] for s in steps] == [1, 2]
    assert [s["lr"] for s in steps] == [pytest.approx(0.05), pytest.approx(0.005)]  # x0.1 from epoch 1
    # the teacher's model on its dataset is a published "vanilla" row: resnet20 on CIFAR-100, 69.06
    shown = _cli("runs", "show", teacher.id, "--runs", store)
    assert "published: vanilla resnet20 on cifar100: 69.06%" in shown.output
    published = json.loads(_cli("runs", "show", teacher.id, "--runs", store, "--json").output)["published"]
    assert [p["top1"] for p in published] == [69.06]
    assert json.loads(_cli("runs", "show", student.id, "--runs", store, "--json").output)["published"] == []
    wrong = _cli(
        "train",
        "distill",
        "--recipe",
        "cifar100-resnet56-resnet20",
        "--root",
        root,
        "--runs",
        store,
        "--teacher",
        f"run:{teacher.id}",
        *short,
    )
    assert wrong.exit_code == 2 and "needs a resnet56 on cifar100" in wrong.output
