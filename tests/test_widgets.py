"""The Jupyter panels, driven from plain Python: set a control, read the state and the figure."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("ipywidgets")

from workbench.config import validate_config  # noqa: E402
from workbench.runs import RunStore  # noqa: E402
from workbench.train import run as train_run  # noqa: E402
from workbench.widgets import (  # noqa: E402
    AgreementExplorer,
    CamExplorer,
    CompareRuns,
    DarkKnowledge,
    DoctorPanel,
    LandscapeExplorer,
    SimilarityExplorer,
    TrainPanel,
)
from workbench.widgets.base import figure_bundle  # noqa: E402

DATA = {"dataset": "digits", "batch_size": 64, "train_subset": 320}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny teacher run and a KD student run of it on digits (a few steps each, per-epoch snapshots)."""
    store = RunStore(tmp_path_factory.mktemp("widget-runs"))
    train = {"epochs": 2, "snapshot_every_epoch": True}
    teacher = train_run(
        validate_config({"kind": "teacher", "data": DATA, "model": {"name": "cnn_small"}, "train": train}),
        store=store,
    )
    student = train_run(
        validate_config(
            {
                "kind": "distill",
                "data": DATA,
                "model": {"name": "cnn_small"},
                "teachers": [{"source": f"run:{teacher.run_id}"}],
                "distill": {"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
                "train": train,
            }
        ),
        store=store,
    )
    return store, teacher.run_id, student.run_id


def _two_class(w: list[list[float]]) -> nn.Module:
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w))
    return net


def _z(fig) -> list[np.ndarray]:
    return [np.asarray(t.z, dtype=float) for t in fig.data if getattr(t, "z", None) is not None]


# ---- dark knowledge ------------------------------------------------------------------------------
def test_dark_knowledge_kd_loss_matches_hand_computed_two_class_value():
    # one sample x = (1, 0): teacher logits (2, 0), student logits (0, 1)
    teacher, student = _two_class([[2.0, 0.0], [0.0, 0.0]]), _two_class([[0.0, 0.0], [1.0, 0.0]])
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    panel = DarkKnowledge(teacher, x, y, student=student, temperature=2.0)
    assert panel.error is None
    pt = np.array([1.0, math.exp(-1.0)]) / (1.0 + math.exp(-1.0))  # softmax((2, 0) / 2)
    ps = np.array([math.exp(-0.5), 1.0]) / (1.0 + math.exp(-0.5))  # softmax((0, 1) / 2)
    expected = 4.0 * float((pt * np.log(pt / ps)).sum())
    assert panel.kd_loss == pytest.approx(expected, rel=1e-9)
    assert panel.soft_labels == pytest.approx(pt)
    panel.set(temperature=1.0)
    pt1 = np.array([1.0, math.exp(-2.0)]) / (1.0 + math.exp(-2.0))
    ps1 = np.array([math.exp(-1.0), 1.0]) / (1.0 + math.exp(-1.0))
    assert panel.kd_loss == pytest.approx(float((pt1 * np.log(pt1 / ps1)).sum()), rel=1e-9)
    # the figure shows both models' soft labels of the drawn sample
    assert [list(t.y) for t in panel.figure.data] == [pytest.approx(pt1), pytest.approx(ps1[::-1][::-1])]


def test_dark_knowledge_entropy_grows_with_temperature_and_bad_values_set_error(trained):
    store, _, student_id = trained
    panel = DarkKnowledge.from_run(student_id, store=store, n_samples=16)
    entropies = []
    for t in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        panel.set(temperature=t)
        assert panel.error is None
        entropies.append(panel.entropy)
    assert all(b > a for a, b in zip(entropies, entropies[1:], strict=False))
    assert entropies[-1] <= math.log(10) + 1e-9
    before = panel.kd_loss
    panel.set(temperature=-1.0)  # no exception: one line in the panel, the old state kept
    assert panel.error is not None and "temperature" in panel.error and "\n" not in panel.error
    assert panel.value("temperature") == 16.0 and panel.kd_loss == before
    panel.set(sample=3)
    assert panel.error is None and panel.result.samples[3] == 3


# ---- CAMs ------------------------------------------------------------------------------------------
def test_cam_explorer_method_changes_the_maps_and_a_bad_layer_sets_error(trained):
    store, _, student_id = trained
    panel = CamExplorer.from_run(student_id, store=store, n_samples=64, n_images=4)
    assert panel.error is None and panel.figure is not None
    assert len(panel.indices) == 4
    z_grad = _z(panel.figure)
    panel.set(method="eigencam")
    assert panel.error is None and panel.result.method == "eigencam"
    z_eigen = _z(panel.figure)
    assert len(z_grad) == len(z_eigen) and any(not np.allclose(a, b) for a, b in zip(z_grad, z_eigen, strict=True))
    panel.set(layer="no.such.layer")
    assert panel.error is not None and "layer" in panel.error
    assert panel.value("layer") == "default"  # None, the method's default layer, is kept
    panel.set(layer=None, pick="class", **{"class": 3})
    assert panel.error is None
    assert (panel.labels[torch.as_tensor(panel.indices)] == 3).all()


# ---- agreement, similarity -------------------------------------------------------------------------
def test_agreement_explorer_views(trained):
    store, _, student_id = trained
    panel = AgreementExplorer.from_run(student_id, store=store, n_samples=64)
    assert panel.error is None and panel.result.n_samples == 64
    assert {t.type for t in panel.figure.data} == {"heatmap"}
    panel.set(view="per_class")
    assert panel.error is None and "bar" in {t.type for t in panel.figure.data}
    panel.set(view="nope")
    assert panel.error.startswith("view: unknown 'nope'")


def test_similarity_explorer_epoch_slider_uses_the_snapshots(trained):
    store, _, student_id = trained
    panel = SimilarityExplorer.from_run(student_id, store=store, n_samples=64)
    assert panel.error is None
    assert panel.controls["epoch"].options == (0, 1, 2)
    final = panel.result.matrix.copy()
    panel.set(epoch=1)
    assert panel.error is None
    assert panel.result is not None and panel.result.matrix.shape == final.shape
    assert not np.allclose(panel.result.matrix, final)
    panel.set(view="embedding")
    assert panel.error is None and panel.figure.data
    panel.set(epoch=7)
    assert panel.error is not None and "epoch" in panel.error


# ---- landscape -------------------------------------------------------------------------------------
def test_landscape_fills_in_row_by_row(trained):
    store, _, student_id = trained
    panel = LandscapeExplorer.from_run(student_id, store=store, n_samples=32, steps=5)
    assert panel.figure is None and not panel.done
    seen: list[int] = []
    panel._draw_orig = panel._draw

    def spy(result):
        values = next(iter(result.values.values()))
        seen.append(int(np.isfinite(values).sum()))
        panel._draw_orig(result)

    panel._draw = spy
    panel.start()
    panel.wait(120)
    assert panel.done and panel.error is None
    assert panel.rows >= 2 and seen == sorted(seen) and seen[0] < seen[-1] == 25
    assert np.isfinite(_z(panel.figure)[0]).all()


def test_landscape_kd_objective_uses_the_given_temperature():
    # teacher logits (2, 0), student logits (0, 1) on x = (1, 0): at the grid's centre the kd
    # objective is T^2 * KL(softmax(t/T) || softmax(s/T)) at the panel's temperature, not T=4
    teacher, student = _two_class([[2.0, 0.0], [0.0, 0.0]]), _two_class([[0.0, 0.0], [1.0, 0.0]])
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    panel = LandscapeExplorer(teacher, student, x, y, objective="kd", mode="1d", steps=3, temperature=2.0)
    result = panel.start().wait(60)
    assert panel.done and panel.error is None
    pt = np.array([1.0, math.exp(-1.0)]) / (1.0 + math.exp(-1.0))
    ps = np.array([math.exp(-0.5), 1.0]) / (1.0 + math.exp(-0.5))
    expected = 4.0 * float((pt * np.log(pt / ps)).sum())
    (values,) = result.values.values()
    assert float(np.asarray(values)[1]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(Exception, match="temperature"):
        LandscapeExplorer(teacher, student, x, y, temperature=-1.0)


def test_landscape_from_a_run_takes_the_runs_kd_temperature(trained):
    from workbench.runs.inspect import kd_temperature

    store, _, student_id = trained
    panel = LandscapeExplorer.from_run(student_id, store=store, n_samples=16, steps=3)
    assert panel.temperature == kd_temperature(store.load(student_id))


def test_landscape_stop_cancels(trained):
    store, _, student_id = trained
    panel = LandscapeExplorer.from_run(student_id, store=store, n_samples=64, steps=41)
    panel.start()
    panel.stop()
    panel.wait(60)
    assert not panel.running and panel.cancelled and not panel.done


# ---- runs: doctor, compare -------------------------------------------------------------------------
def test_doctor_report_and_unknown_run(trained):
    store, _, student_id = trained
    panel = DoctorPanel(student_id, store=store, n_samples=64)
    report = panel.wait(300)
    assert panel.error is None and report is not None and panel.done
    assert panel.figure is not None and panel.findings == list(report.findings)
    bad = DoctorPanel("no-such-run", store=store)
    assert bad.error is not None and "no-such-run" in bad.error and bad.result is None


def test_compare_runs_overlays_and_rejects_unknown_ids(trained):
    store, teacher_id, student_id = trained
    panel = CompareRuns([teacher_id, student_id], store=store)
    assert panel.error is None
    assert [row["n"] for row in panel.group_rows] == [1, 1]  # grouped over seeds: two settings, one seed each
    panel.set(group=False)  # one line per run
    assert panel.error is None
    assert [t.name for t in panel.figure.data] == [teacher_id, student_id]
    assert [row["id"] for row in panel.table] == [teacher_id, student_id]
    panel.set(runs=["missing-run"])
    assert panel.error is not None and "missing-run" in panel.error
    assert list(panel.value("runs")) == [teacher_id, student_id]


def test_from_run_with_unknown_id_names_it(trained):
    from workbench.runs import RunStoreError

    store, _, _ = trained
    with pytest.raises(RunStoreError, match="nope"):
        CamExplorer.from_run("nope", store=store)


# ---- display ---------------------------------------------------------------------------------------
def test_figures_are_shown_as_plotly_mime_bundles(trained):
    store, _, student_id = trained
    panel = AgreementExplorer.from_run(student_id, store=store, n_samples=32)
    outputs = panel.view.output.outputs
    assert len(outputs) == 1 and "application/vnd.plotly.v1+json" in outputs[0]["data"]
    assert outputs[0]["data"] == figure_bundle(panel.figure)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ---- training --------------------------------------------------------------------------------------
def test_train_panel_form_from_the_schemas(trained):
    store, teacher_id, _ = trained
    panel = TrainPanel(store=store, dataset="digits", teacher=f"run:{teacher_id}", student="mlp", methods="kd",
                       epochs=1, train={"max_steps": 3})
    assert panel.error is None and panel.config is not None
    assert {"kd.weight", "kd.temperature"} <= set(panel.controls)
    panel.set(methods=["kd", "dkd"], **{"dkd.beta": 2.0, "kd.temperature": 2.0})
    assert panel.error is None
    by_name = {m.name: m for m in panel.config.distill.methods}
    assert by_name["kd"].params["temperature"] == 2.0 and by_name["dkd"].params["beta"] == 2.0
    assert panel.config.train.max_steps == 3
    assert panel.config.distill.teacher_precision == "float32"  # exact by default
    panel.set(teacher_precision="bfloat16")
    assert panel.error is None and panel.config.distill.teacher_precision == "bfloat16"
    panel.set(student="no_such_model")
    assert panel.error is not None and "no_such_model" in panel.error
    panel.set(**{"kd.temperature": -3.0})
    assert panel.error is not None and "kd.temperature" in panel.error


@pytest.mark.slow
def test_train_panel_trains_in_a_worker_and_returns_the_run(trained):
    store, teacher_id, _ = trained
    panel = TrainPanel(store=store, dataset="digits", teacher=f"run:{teacher_id}", student="mlp", methods="kd",
                       epochs=2, data={"train_subset": 320}, poll=0.2)
    job = panel.start()
    assert job is not None and panel.error is None
    run = panel.wait(timeout=300)
    assert panel.error is None, panel.error
    assert run is not None and run.status["status"] == "completed" and panel.run.id == run.id
    assert run.config.distill.methods[0].name == "kd"
    assert len(run.metrics["epochs"]) == 2
    assert panel.figure is not None and panel.figure.data  # the curves
    assert panel.progress_bar.value == 1.0


@pytest.mark.slow
def test_train_panel_stop_stops_a_running_job(trained):
    store, teacher_id, _ = trained
    panel = TrainPanel(store=store, dataset="digits", teacher=f"run:{teacher_id}", student="mlp", methods="kd",
                       epochs=200, data={"train_subset": 320}, poll=0.2)
    panel.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until it trains
        prog = panel.queue.progress(panel.job.id)
        if prog and prog.get("status") == "running" and (prog.get("epoch") or 0) >= 1:
            break
        time.sleep(0.2)
    panel.stop()
    run = panel.wait(timeout=120)
    assert panel.job.state == "stopped"
    assert run is not None and run.status["status"] == "stopped"
    assert 1 <= len(run.metrics["epochs"]) < 200
