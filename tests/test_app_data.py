"""The Data and teachers page, clicked as a newcomer would: from an empty store, preview a built-in
dataset, add a folder of images through the form, see it previewed and offered on Home, and a teacher
added from a checkpoint listed and removable. Streamlit's AppTest cannot upload files; the zip and
safetensors upload routes are the library's (tests/test_data_store.py, tests/test_teachers_from_checkpoint.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")

from app_fixtures import make_app, no_exception, stop_all_jobs  # noqa: E402

from workbench.jobs import JobQueue  # noqa: E402


def _folder(root: Path, counts: dict[str, int]) -> None:
    """``root/<class>/<i>.png``: 8x8 RGB images, one red level per class."""
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = np.zeros((8, 8, 3), dtype=np.uint8)
            pixels[..., 0], pixels[..., 1] = 60 * k, 7 * i
            Image.fromarray(pixels).save(root / cls / f"{i:02d}.png")


def test_preview_of_a_built_in_dataset(monkeypatch, tmp_path):
    at = make_app(monkeypatch, str(tmp_path / "runs"), "views/data.py", dataset="digits")
    at.run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image shape"] == "1×8×8" and metrics["Classes"] == "10"
    train, test = (int(x.replace(",", "")) for x in metrics["Images (train / test)"].split(" / "))
    assert train + test == 1797  # scikit-learn's digits, split by the loader
    assert at.get("plotly_chart")


def test_add_a_folder_then_train_on_it_from_home(monkeypatch, tmp_path):
    _folder(tmp_path / "pets", {"cat": 12, "dog": 4})  # 3:1: the preview warns about the imbalance
    root = str(tmp_path / "runs")
    at = make_app(monkeypatch, root, "views/data.py")
    at.run()
    at.text_input(key="new_dataset").input("pets")
    at.radio(key="from").set_value("a folder on the server")
    at.text_input(key="folder").input(str(tmp_path / "pets"))
    at.button(key="add").click().run()
    no_exception(at)
    assert any(s.value.startswith("Added pets:") and "2 classes" in s.value for s in at.success)
    at.run()  # the page now previews the new dataset (the link names it)
    no_exception(at)
    assert at.query_params["dataset"] == ["pets"] or at.query_params["dataset"] == "pets"
    assert any("imbalance" in w.value or "times" in w.value for w in at.warning), [w.value for w in at.warning]
    assert {m.label: m.value for m in at.metric}["Image shape"] == "3×8×8"
    # Home offers it (marked as yours) and its New-run form takes it
    home = make_app(monkeypatch, root)
    assert "pets (yours)" in home.selectbox(key="qp:dataset").options
    home.selectbox(key="qp:dataset").set_value("pets").run()
    no_exception(home)
    assert home.query_params["dataset"] in ("pets", ["pets"])
    assert home.selectbox(key="qp:teacher").options == ["train one first", "none (train from scratch)"]
    home.selectbox(key="qp:teacher").set_value("train one first").run()
    home.button(key="start").click().run()
    no_exception(home)
    try:
        (job,) = JobQueue(root, max_jobs=1).list()
        assert job.config["kind"] == "teacher" and job.config["data"]["name"] == "pets"
        assert job.config["data"]["dataset"] == "imagefolder" and job.config["data"]["root"] == str(tmp_path / "pets")
    finally:
        stop_all_jobs(root)
    # a second add under the same name is one line, nothing replaced
    at.text_input(key="new_dataset").input("pets")
    at.button(key="add").click().run()
    assert at.error and "pets" in at.error[0].value and "\n" not in at.error[0].value


def test_a_bad_folder_is_one_line_and_nothing_is_added(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    root = tmp_path / "runs"
    at = make_app(monkeypatch, str(root), "views/data.py")
    at.run()
    at.text_input(key="new_dataset").input("empty")
    at.radio(key="from").set_value("a folder on the server")
    at.text_input(key="folder").input(str(tmp_path / "empty"))
    at.button(key="add").click().run()
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert not list((root / "datasets").glob("*.json")) if (root / "datasets").exists() else True


def test_a_store_teacher_is_listed_and_removed(monkeypatch, tmp_path):
    import torch
    from safetensors.torch import save

    from workbench.data import load_dataset
    from workbench.models import create_model
    from workbench.runs.teacher_store import add_teacher, list_store_teachers

    torch.manual_seed(0)
    data = load_dataset("digits")
    model = create_model("mlp", num_classes=10, in_channels=1, image_size=8)
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    x = data.normalize(data.train.images)
    for _ in range(30):  # a few full-batch steps: well above chance on digits
        optim.zero_grad()
        torch.nn.functional.cross_entropy(model(x), data.train.labels).backward()
        optim.step()
    root = tmp_path / "runs"
    card = add_teacher(root, "mine", save(model.state_dict()), model="mlp", dataset="digits")
    at = make_app(monkeypatch, str(root), "views/data.py", dataset="digits")
    at.run()
    no_exception(at)
    table = at.dataframe[0].value
    assert list(table["teacher"]) == ["teacher:mine"] and table["test acc"][0] == pytest.approx(card.test_acc)
    at.selectbox(key="remove_teacher").set_value("mine").run()
    at.button(key="remove_teacher_button").click().run()
    no_exception(at)
    assert list_store_teachers(root) == []


def test_models_tab_lists_the_zoo_and_says_where_each_model_comes_from(monkeypatch, tmp_path):
    at = make_app(monkeypatch, str(tmp_path / "runs"), "views/data.py", dataset="digits")
    at.run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert {"resnet20", "cnn_small", "vit_tiny"} <= set(table["model"]) and set(table["from"]) == {"zoo"}
