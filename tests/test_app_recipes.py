"""Recipes in the app: Home queues a recipe's run on a CIFAR dataset added to the store, and the
Training page shows a finished run beside the published accuracy of its pair (files generated in the
standard CIFAR layout, random pixels, as in tests/test_recipes.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from app_fixtures import make_app, no_exception, stop_all_jobs  # noqa: E402
from test_recipes import write_cifar  # noqa: E402

from workbench.jobs import JobQueue  # noqa: E402
from workbench.runs.datasets import add_dataset  # noqa: E402

RECIPE = "cifar100-resnet20-resnet8"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with the generated CIFAR-100 files added as the dataset ``c100``."""
    files = write_cifar(tmp_path_factory.mktemp("cifar"), n_train=1000, n_test=100)  # every class has images
    root = tmp_path_factory.mktemp("recipes") / "runs"
    entry = add_dataset(root, "c100", files / "cifar-100-python", loader="cifar100")
    return root, entry


def test_home_queues_a_recipes_teacher_on_a_store_dataset(monkeypatch, store):
    root, entry = store
    at = make_app(monkeypatch, str(root))
    at.selectbox(key="recipe").set_value(RECIPE).run()
    assert at.selectbox(key="recipe_files").options[0] == "c100"
    at.selectbox(key="recipe_kind").set_value("teacher")
    at.number_input(key="recipe_epochs").set_value(24)
    at.button(key="recipe_start").click().run()
    no_exception(at)
    try:
        (job,) = JobQueue(root, max_jobs=1).list()
        cfg = job.config
        assert (cfg["kind"], cfg["model"]["name"], cfg["data"]["dataset"]) == ("teacher", "resnet20", "cifar100")
        assert cfg["data"]["root"] == str(entry.root) and cfg["data"]["name"] == "c100" and cfg["train"]["epochs"] == 24
        assert cfg["schedule"]["milestones"] == [15, 18, 21]  # 150/180/210 of 240, scaled
    finally:
        stop_all_jobs(root)


def test_a_distilled_student_without_a_teacher_run_is_one_line(monkeypatch, store):
    root, _ = store
    at = make_app(monkeypatch, str(root))
    at.selectbox(key="recipe").set_value(RECIPE).run()
    at.selectbox(key="recipe_kind").set_value("distill")
    at.button(key="recipe_start").click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "no completed resnet20 teacher on cifar100" in errors[0] and "\n" not in errors[0]


def test_training_shows_the_published_row_beside_a_finished_run(monkeypatch, store, tmp_path):
    import shutil

    from workbench.runs import RunStore
    from workbench.runs.recipe_runs import recipe_config
    from workbench.train import Trainer
    from workbench.validate import validate_run_config

    root = tmp_path / "runs"
    shutil.copytree(store[0], root)
    cfg = recipe_config("teacher", RECIPE, store=root, root=str(store[1].root), epochs=1)
    cfg["train"].update(max_steps=1, device="cpu", snapshot_every_epoch=False)
    Trainer(validate_run_config(cfg), store=RunStore(root)).run()
    (run,) = RunStore(root).list(kind="teacher")
    # the distilled student of the recipe on the store dataset takes that teacher run (found by loader)
    student = recipe_config("distill", RECIPE, store=root, dataset="c100", epochs=1)
    assert student["teachers"][0]["source"] == f"run:{run.id}" and student["data"]["name"] == "c100"
    with pytest.raises(ValueError, match="holds cifar100 files; recipe cifar10-resnet20-resnet8"):
        recipe_config("teacher", "cifar10-resnet20-resnet8", store=root, dataset="c100")
    at = make_app(monkeypatch, str(root), "views/training.py", run=run.id)
    at.run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "top1" in d.value.columns)
    assert list(table["top1"]) == [69.06] and list(table["label"]) == ["vanilla"]  # resnet20 from labels, CRD Table 1


def test_train_panel_from_a_recipe_takes_its_schedule_and_objective(store, tmp_path):
    pytest.importorskip("ipywidgets")
    import shutil

    from workbench.runs import RunStore
    from workbench.runs.recipe_runs import recipe_config
    from workbench.train import Trainer
    from workbench.validate import validate_run_config
    from workbench.widgets import PanelError, TrainPanel

    root, entry = tmp_path / "runs", store[1]
    shutil.copytree(store[0], root)
    with pytest.raises(PanelError, match="teacher: shipped:mnist is not a teacher of dataset 'c100'"):
        TrainPanel.from_recipe(RECIPE, dataset="c100", store=root, teacher="shipped:mnist")
    teach = recipe_config("teacher", RECIPE, store=root, dataset="c100", epochs=1)
    teach["train"].update(max_steps=1, device="cpu", snapshot_every_epoch=False)
    Trainer(validate_run_config(teach), store=RunStore(root)).run()
    (teacher,) = RunStore(root).list(kind="teacher")
    panel = TrainPanel.from_recipe(RECIPE, dataset="c100", kind="distill", method="dkd", epochs=24, store=root)
    assert panel.error is None, panel.error
    cfg = panel.config_dict()
    assert (cfg["model"]["name"], cfg["data"]["name"], cfg["data"]["root"]) == ("resnet8", "c100", str(entry.root))
    assert cfg["teachers"][0]["source"] == f"run:{teacher.id}" and cfg["teachers"][0]["model"]["name"] == "resnet20"
    assert cfg["schedule"]["milestones"] == [15, 18, 21] and cfg["optim"]["lr"] == 0.05
    assert cfg["data"]["augment"]["crop_padding"] == 4 and cfg["data"]["augment"]["hflip"] is True
    (dkd,) = cfg["distill"]["methods"]
    assert dkd["name"] == "dkd" and dkd["params"]["beta"] == 8.0 and cfg["distill"]["ce_weight"] == 1.0
    panel.close()
