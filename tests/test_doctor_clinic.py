"""A fast subset of the doctor clinic (benchmarks/doctor_clinic.py): real short runs through the
engine on the 8x8 digits, each with one planted fault, diagnosed from the run store. Each fault's
signature must be the doctor's top finding; the healthy controls must get no warning; verifying
the advice must move the finding's own metric the right way."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.data.core import Split
from workbench.diagnosis import VerifyResult, diagnose, verify
from workbench.runs import RunStore
from workbench.train import run
from workbench.validate import validate_run_config


def _teacher(store: RunStore, digits, name: str, steps: int | None, epochs: int = 6) -> str:
    cfg = validate_run_config(
        {
            "kind": "teacher",
            "name": name,
            "seed": 0,
            "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 512},
            "model": {"name": "mlp", "kwargs": {"hidden": [64, 32]}},
            "optim": {"name": "sgd", "lr": 0.1},
            "train": {"epochs": epochs, "max_steps": steps, "device": "cpu", "snapshot_every_epoch": False},
        }
    )
    return run(cfg, store=store, dataset=digits).run_id


@pytest.fixture(scope="module")
def clinic(digits, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("clinic") / "runs")
    good = _teacher(store, digits, "teacher", None)
    barely = _teacher(store, digits, "barely", 1, epochs=1)
    return store, good, barely


def _student(clinic, digits, *, fault: dict | None = None, seed: int = 0, dataset=None) -> str:
    store, good, barely = clinic
    cfg = {
        "kind": "distill",
        "name": f"s-{seed}",
        "seed": seed,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 512},
        "model": {"name": "mlp", "kwargs": {"hidden": [32, 16]}},
        "teachers": [{"source": f"run:{good}"}],
        "distill": {"methods": "0.9*kd", "ce_weight": 0.1},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        "train": {"epochs": 3, "device": "cpu", "snapshot_every_epoch": False},
    }
    for path, value in (fault or {}).items():
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    if cfg["teachers"] == [{"source": "barely"}]:
        cfg["teachers"] = [{"source": f"run:{barely}"}]
    from workbench.train import TrainingFailed

    try:
        return run(validate_run_config(cfg), store=store, dataset=dataset or digits).run_id
    except TrainingFailed:
        return next(r.id for r in store.list() if r.status.get("status") == "failed")


def _noisy(digits, rate: float):
    gen = torch.Generator().manual_seed(7)
    n = len(digits.train)
    flip = torch.rand(n, generator=gen) < rate
    labels = digits.train.labels.clone()
    labels[flip] = (labels[flip] + torch.randint(1, 10, (n,), generator=gen)[flip]) % 10
    tr = digits.train
    return dataclasses.replace(digits, train=Split(tr.images, labels))


def _kd(temperature: float) -> list[dict]:
    return [{"name": "kd", "weight": 0.9, "params": {"temperature": temperature}}]


FAULTS = {
    "capacity_gap": {"model.kwargs.hidden": [2]},
    "temperature_low": {"distill.methods": _kd(0.1)},
    "temperature_high": {"distill.methods": _kd(100.0)},
    "kd_dominates": {"distill.methods": "100*kd"},
    "kd_vanishes": {"distill.methods": "0.0001*kd", "distill.ce_weight": 1.0},
    "wrong_teacher": {"teachers": [{"source": "barely"}]},
    "lr_high": {"optim.lr": 20.0},
    "lr_low": {"optim.lr": 0.0003},
    "too_short": {"train.max_steps": 3, "train.epochs": 1},
    "hint_miswired": {
        "distill.methods": [
            {"name": "kd", "weight": 0.9},
            {
                "name": "fitnet",
                "weight": 1.0,
                "params": {"student_layers": ["layers.0"], "teacher_layers": ["layers.1"]},
            },
        ]
    },
}


@pytest.mark.parametrize("seed", [0, 1])
def test_healthy_controls_get_no_warning(clinic, digits, seed):
    store = clinic[0]
    rid = _student(clinic, digits, seed=seed)
    report = diagnose(rid, store=store.root, n_samples=300, device="cpu")
    assert report.healthy, report.to_text()
    assert report.evidence["kd_share"] > 0.5  # the T²-scaled KD term drives most of the gradient ...
    assert report.evidence["temperature"] == 4.0  # ... by design, and that is not a finding


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_planted_fault_is_the_top_finding(clinic, digits, fault):
    store = clinic[0]
    rid = _student(clinic, digits, fault=FAULTS[fault])
    report = diagnose(rid, store=store.root, n_samples=300, device="cpu")
    assert report.top is not None and report.top.rule == fault, report.to_text()
    assert report.top.level == "warning" and report.top.experiment is not None
    assert report.top.experiment.overrides and report.top.params


def test_label_noise_is_read_from_the_training_labels(clinic, digits):
    store = clinic[0]
    noisy = _noisy(digits, 0.4)
    rid = _student(clinic, digits, dataset=noisy)
    report = diagnose(rid, store=store.root, dataset=noisy, n_samples=300, device="cpu")
    assert report.top is not None and report.top.rule == "label_noise", report.to_text()
    ev = report.evidence
    # the teacher, right on most test images, contradicts about 40 % of the training labels
    assert ev["teacher_acc"] - ev["teacher_train_label_acc"] > 0.25
    # without the noisy data the doctor sees clean labels: it says so rather than guessing
    clean = diagnose(rid, store=store.root, n_samples=300, device="cpu")
    assert clean.evidence["teacher_acc"] - clean.evidence["teacher_train_label_acc"] < 0.1


def test_verify_runs_the_experiment_and_measures_it(clinic, digits):
    store = clinic[0]
    rid = _student(clinic, digits, fault=FAULTS["kd_vanishes"])
    report = diagnose(rid, store=store.root, n_samples=300, device="cpu")
    calls: list[int] = []
    res = verify(
        rid,
        report,
        store=store.root,
        n_samples=300,
        device="cpu",
        progress=lambda d, t, m: calls.append(d),
    )
    assert isinstance(res, VerifyResult) and res.finding == "kd_vanishes" and res.metric == "kd_share"
    assert res.helped and res.after["kd_share"] > res.before["kd_share"] + 0.3
    assert calls == sorted(calls) and calls[-1] == 300
    new = store.load(res.verify_run_id)
    assert new.config.links["verifies"] == rid and new.config.seed == 0
    assert new.config.distill.methods[0].weight == 0.9 and new.config.distill.ce_weight == 0.1
    assert "kd_vanishes" not in res.after_findings
    assert "helped" in res.to_text() and res.to_dict()["experiment"]["metric"] == "kd_share"


@pytest.mark.slow
def test_shortcut_on_confounded_shapes(tmp_path):
    store = RunStore(tmp_path / "runs")
    ids = {}
    for confounding in (0.0, 1.0):
        cfg = validate_run_config(
            {
                "kind": "distill",
                "name": f"shapes-{confounding}",
                "data": {
                    "dataset": "shapes",
                    "options": {"n_train": 1000, "n_test": 400, "confounding": confounding, "seed": 0},
                    "batch_size": 64,
                    "eval_batch_size": 400,
                },
                "model": {"name": "cnn", "kwargs": {"channels": [8, 16, 32]}},
                "teachers": [{"source": "shipped:shapes"}],
                "distill": {"methods": "0.9*kd", "ce_weight": 0.1},
                "train": {"epochs": 3, "device": "cpu", "snapshot_every_epoch": False},
            }
        )
        ids[confounding] = run(cfg, store=store).run_id
    shortcut = diagnose(ids[1.0], store=store.root, n_samples=400, device="cpu")
    assert shortcut.top is not None and shortcut.top.rule == "shortcut", shortcut.to_text()
    assert "background, not the shape" in shortcut.top.title
    assert shortcut.evidence["confounding"] == 1.0
    control = diagnose(ids[0.0], store=store.root, n_samples=400, device="cpu")
    assert "shortcut" not in [f.rule for f in control.warnings], control.to_text()
    assert shortcut.evidence["context_follow"] > control.evidence["context_follow"]
