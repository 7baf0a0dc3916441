from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workbench.config import validate_config
from workbench.runs import RunStore
from workbench.train import (
    EpochEnded,
    EvalEnded,
    RunFinished,
    RunStarted,
    SetupProgress,
    StepEnded,
    Trainer,
    TrainingFailed,
    lr_factor,
)

MLP = {"name": "mlp", "kwargs": {"hidden": [64]}}


def _cfg(**over):
    base = {
        "kind": "student",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 512},
        "model": MLP,
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return validate_config(base)


@pytest.fixture(scope="module")
def teacher(digits):
    cfg = _cfg(kind="teacher", model={"name": "mlp", "kwargs": {"hidden": [128]}}, train={"epochs": 4})
    result = Trainer(cfg, dataset=digits).run()
    return result.student


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_numbers(digits):
    a = Trainer(_cfg(), dataset=digits).run()
    b = Trainer(_cfg(), dataset=digits).run()
    assert a.history[-1]["test_acc"] == b.history[-1]["test_acc"]
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    for k, v in _weights(a.student).items():
        assert torch.equal(v, b.student.state_dict()[k])
    c = Trainer(_cfg(seed=1), dataset=digits).run()
    assert any(not torch.equal(v, c.student.state_dict()[k]) for k, v in _weights(a.student).items())


def test_teacher_learns_digits(teacher, digits):
    with torch.no_grad():
        acc = (teacher(digits.normalize(digits.test.images)).argmax(1) == digits.test.labels).float().mean()
    assert acc > 0.85


def test_events_in_order_and_metrics(digits):
    seen = []
    result = Trainer(_cfg(), dataset=digits, subscribers=[seen.append]).run()
    kinds = [type(e) for e in seen]
    # set-up progress first, then the run's own events
    start = kinds.index(RunStarted)
    assert start > 0 and set(kinds[:start]) == {SetupProgress} and SetupProgress not in kinds[start:]
    assert kinds[-1] is RunFinished
    steps = [e.step for e in seen if isinstance(e, StepEnded)]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) == seen[start].total_steps == 2 * math.ceil(len(digits.train) / 64)
    assert kinds.count(EpochEnded) == 2 and kinds.count(EvalEnded) == 2
    m = result.history[-1]
    for key in ("train_acc", "test_acc", "test_loss", "ece", "loss/ce", "lr", "seconds"):
        assert key in m
    assert "agreement" not in m  # no teacher


def test_kd_with_cache_equals_without_and_teacher_untouched(digits, teacher):
    before = _weights(teacher)
    over = {
        "kind": "distill",
        "distill": {"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
    }
    cached = Trainer(_cfg(**over), dataset=digits, teachers=[teacher]).run()
    no_cache = {"kind": "distill", "distill": {**over["distill"], "teacher_cache": False}}
    fresh = Trainer(_cfg(**no_cache), dataset=digits, teachers=[teacher]).run()
    assert cached.summary["teacher_cache"] is True and fresh.summary["teacher_cache"] is False
    for k, v in _weights(cached.student).items():
        assert torch.allclose(v, fresh.student.state_dict()[k], atol=1e-5)
    for k, v in before.items():
        assert torch.equal(v, teacher.state_dict()[k])
    assert not teacher.training
    m = cached.history[-1]
    assert 0.0 <= m["agreement"] <= 1.0 and m["kl_teacher_student"] >= 0.0
    assert "loss/kd" in m and "loss/ce" in m


def test_augmentation_disables_cache(digits, teacher):
    cfg = _cfg(
        kind="distill", distill={"methods": "kd"}, data={"augment": {"crop_padding": 1, "mixup_alpha": 0.2}}
    )
    result = Trainer(cfg, dataset=digits, teachers=[teacher]).run()
    assert result.summary["teacher_cache"] is False
    assert math.isfinite(result.history[-1]["train_loss"])


def test_nan_fails_run_with_step_named(digits, tmp_path):
    store = RunStore(tmp_path)
    trainer = Trainer(_cfg(), dataset=digits, store=store)

    def inject(terms, step):
        if step == 3:
            terms["ce"] = terms["ce"] * float("nan")

    trainer.term_hook = inject
    with pytest.raises(TrainingFailed, match=r"step 3 .*ce=nan"):
        trainer.run()
    run = store.list()[0]
    assert run.status["status"] == "failed"
    assert run.status["failure"]["step"] == 3
    assert run.status["failure"]["terms"]["ce"] is None  # NaN written as null in JSON
    assert "step 3" in run.status["error"]


def test_stop_request_leaves_loadable_run(digits, tmp_path):
    store = RunStore(tmp_path)
    trainer = Trainer(_cfg(train={"epochs": 5}), dataset=digits, store=store)

    def stop_at_5(event):
        if isinstance(event, StepEnded) and event.step == 5:
            trainer.request_stop()

    trainer.subscribers.append(stop_at_5)
    result = trainer.run()
    assert result.status == "stopped"
    run = store.load(result.run_id)
    assert run.status["status"] == "stopped" and run.status["step"] == 5
    model = run.load_model("final")
    for k, v in result.student.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_store_holds_epoch_snapshots_best_and_final(digits, tmp_path):
    store = RunStore(tmp_path)
    result = Trainer(_cfg(train={"epochs": 3}), dataset=digits, store=store).run()
    run = store.load(result.run_id)
    assert run.status["status"] == "completed"
    assert set(run.checkpoints()) == {"best", "final", "epoch_001", "epoch_002", "epoch_003"}
    assert [e for e, _ in run.epoch_checkpoints()] == [1, 2, 3]
    assert len(run.metrics["epochs"]) == 3
    final = run.load_model("final")
    for k, v in result.student.state_dict().items():
        assert torch.equal(final.state_dict()[k], v)


def test_any_user_module_is_accepted(digits, teacher):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(self.body(x))

    result = Trainer(
        _cfg(kind="distill", distill={"methods": "kd"}), dataset=digits, student=Tiny(), teachers=[teacher]
    ).run()
    assert result.history[-1]["test_acc"] > 0.5


def test_lr_schedule_values():
    from workbench.config import ScheduleSpec

    cos = ScheduleSpec(name="cosine", warmup_epochs=1)
    # warm-up: linear over the first epoch (10 steps), then cosine to zero
    assert lr_factor(0, 100, 10, cos, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, cos, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, cos, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, cos, 0.1) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, cos, 0.1) == pytest.approx(0.0, abs=1e-12)
    step = ScheduleSpec(name="step", milestones=[2, 4], gamma=0.1)
    assert lr_factor(19, 100, 10, step, 0.1) == 1.0
    assert lr_factor(20, 100, 10, step, 0.1) == pytest.approx(0.1)
    assert lr_factor(45, 100, 10, step, 0.1) == pytest.approx(0.01)


def test_max_steps_budget(digits):
    result = Trainer(_cfg(train={"epochs": 10, "max_steps": 7}), dataset=digits).run()
    assert result.summary["steps"] == 7


def test_engine_ece_agrees_with_the_analysis_ece():
    """The engine's per-epoch ECE and the analysis' reliability-diagram ECE use one bin rule."""
    from workbench.analysis import expected_calibration_error as analysis_ece
    from workbench.train.metrics import expected_calibration_error as engine_ece

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 7, generator=gen, dtype=torch.float64), 1)
    labels = torch.randint(0, 7, (500,), generator=gen)
    assert engine_ece(probs, labels, 15) == pytest.approx(
        analysis_ece(probs.numpy(), labels.numpy(), 15), abs=1e-12
    )
    # hand-made: two samples at confidence 0.9, one right one wrong -> |0.5 - 0.9| = 0.4
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1]], dtype=torch.float64)
    assert engine_ece(p, torch.tensor([0, 1]), 10) == pytest.approx(0.4)


CNN = {"name": "cnn_small", "kwargs": {}}


def test_channels_last_training_matches_nchw_and_hands_back_a_contiguous_model(digits, tmp_path):
    def run(fmt, store=None):
        cfg = _cfg(model=CNN, train={"epochs": 1, "max_steps": 6, "memory_format": fmt})
        return Trainer(cfg, dataset=digits, store=store).run()

    store = RunStore(tmp_path)
    nhwc, nchw = run("channels_last", store), run("contiguous")
    assert nhwc.summary["test_acc"] == pytest.approx(nchw.summary["test_acc"], abs=0.01)
    for k, v in nchw.student.state_dict().items():
        assert torch.allclose(nhwc.student.state_dict()[k], v, atol=1e-4), k
    assert all(p.is_contiguous() for p in nhwc.student.parameters())
    final = store.load(nhwc.run_id).load_model("final")
    for k, v in nhwc.student.state_dict().items():
        assert torch.equal(final.state_dict()[k], v)
    again = run("channels_last")
    for k, v in nhwc.student.state_dict().items():
        assert torch.equal(again.student.state_dict()[k], v)  # same seed, same numbers


def test_bad_memory_format_is_a_one_line_config_error():
    from workbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.memory_format") as err:
        _cfg(train={"memory_format": "nhwc"})
    assert "\n" not in str(err.value)


def test_auto_layout_is_channels_last_for_conv_students_on_cpu_only(digits):
    seen = []

    def spy(event):
        if isinstance(event, StepEnded) and not seen:
            seen.append(conv.weight.is_contiguous(memory_format=torch.channels_last))

    cnn = Trainer(_cfg(model=CNN, train={"max_steps": 2}), dataset=digits, subscribers=[spy])
    conv = None
    cnn._setup()
    conv = next(m for m in cnn.student.modules() if isinstance(m, nn.Conv2d))
    assert cnn.channels_last is True
    cnn.run()
    assert seen == [True] and conv.weight.is_contiguous()
    mlp = Trainer(_cfg(train={"max_steps": 2}), dataset=digits)
    mlp._setup()
    assert mlp.channels_last is False
