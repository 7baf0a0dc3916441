"""The first epoch: the lazy teacher cache, the inference copy of the teacher, the teacher's test
logits taken once at the first evaluation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from workbench.config import validate_config
from workbench.models import create_model
from workbench.train import RunStarted, Trainer
from workbench.train.cache import LazyTeacherCache, build_teacher_cache, inference_teachers


@pytest.fixture(scope="module")
def small(digits):
    """320 training and 128 test digits (5 steps of 64 per epoch)."""
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(320)), test=digits.test.subset(torch.arange(128))
    )


@pytest.fixture(scope="module")
def teacher(small):
    """A conv teacher with BatchNorm whose running statistics are not the defaults."""
    torch.manual_seed(0)
    net = create_model("cnn", num_classes=10, in_channels=1, image_size=8, channels=[8, 16])
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(small.normalize(small.train.images[:128]))
    return net.eval()


def _kd(epochs=3, methods=None, **over):
    base = {
        "kind": "distill",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 64},
        "model": {"name": "cnn", "kwargs": {"channels": [4, 8]}},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": epochs},
        "distill": {"methods": methods or [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
    }
    base.update(over)
    return validate_config(base)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


FITNET = [{"name": "kd", "weight": 0.9}, {"name": "fitnet", "weight": 0.5}]


@pytest.mark.parametrize(
    "methods", [None, pytest.param(FITNET, marks=pytest.mark.slow)], ids=["kd", "kd+fitnet"]
)
def test_lazy_and_eager_caches_give_the_same_trajectory(methods, small, teacher):
    eager = Trainer(_kd(methods=methods), dataset=small, teachers=[teacher], teacher_cache="eager")
    lazy = Trainer(_kd(methods=methods), dataset=small, teachers=[teacher], teacher_cache="lazy")
    a, b = eager.run(), lazy.run()
    assert eager.cache is not None and lazy.lazy_cache is not None and lazy.lazy_cache.complete
    for k, v in a.student.state_dict().items():
        assert torch.allclose(v.float(), b.student.state_dict()[k].float(), atol=1e-6, rtol=0), k
    for ha, hb in zip(a.history, b.history, strict=True):
        for key in ha:
            if key != "seconds":
                assert ha[key] == pytest.approx(hb[key], abs=1e-6), key
    # the cached outputs themselves agree
    for t_e, t_l in zip(eager.cache.logits, lazy.lazy_cache.cache.logits, strict=True):
        assert torch.allclose(t_e, t_l, atol=1e-5, rtol=1e-5)


def test_the_first_epoch_fills_the_cache_and_later_epochs_only_read(small, teacher):
    seen = {}
    trainer = Trainer(_kd(), dataset=small, teachers=[teacher])

    def listen(event):
        if isinstance(event, RunStarted):  # set-up ran no teacher forward over the train split
            seen["forwards_at_start"] = trainer.lazy_cache.forwards
            seen["stored_at_start"] = trainer.lazy_cache.cache

    trainer.subscribers.append(listen)
    result = trainer.run()
    assert seen == {"forwards_at_start": 0, "stored_at_start": None}
    assert trainer.lazy_cache.forwards == trainer.steps_per_epoch == 5  # epoch 1 only, one per batch
    assert trainer.lazy_cache.complete and result.summary["teacher_cache"] is True


def test_teacher_test_logits_are_computed_once_at_the_first_evaluation(small, teacher, monkeypatch):
    calls = []
    original = Trainer._teacher_test_logits

    def counting(self):
        calls.append(self.teacher_test_logits)
        return original(self)

    monkeypatch.setattr(Trainer, "_teacher_test_logits", counting)
    trainer = Trainer(_kd(), dataset=small, teachers=[teacher])
    result = trainer.run()
    assert len(calls) == 1 and calls[0] is None  # computed once, when nothing was there yet
    assert all("agreement" in h for h in result.history)
    expected = float((trainer.teacher_test_logits.argmax(1) == trainer.test_labels).float().mean())
    assert result.summary["teacher_test_acc"] == pytest.approx(expected)
    with torch.no_grad():
        direct = teacher(small.normalize(small.test.images))
    assert torch.allclose(trainer.teacher_test_logits, direct, atol=1e-4)


def test_the_inference_copy_is_folded_channels_last_and_leaves_the_teacher_alone(small, teacher):
    before = _state(teacher)
    hooks, training = len(teacher._forward_hooks), teacher.training
    (copy,) = inference_teachers([teacher], channels_last=True)
    assert copy is not teacher
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())  # folded away
    assert any(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())
    convs = [m for m in copy.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not any(p.requires_grad for p in copy.parameters()) and not copy.training
    x = small.normalize(small.train.images[:64])
    with torch.no_grad():
        assert torch.allclose(copy(x.contiguous(memory_format=torch.channels_last)), teacher(x), atol=1e-4)
    after = _state(teacher)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (len(teacher._forward_hooks), teacher.training) == (hooks, training)


def test_a_feature_path_of_the_method_is_not_folded_away(teacher):
    bn_paths = [n for n, m in teacher.named_modules() if isinstance(m, nn.BatchNorm2d)]
    conv_paths = [n for n, m in teacher.named_modules() if isinstance(m, nn.Conv2d)]
    (copy,) = inference_teachers([teacher], keep=[conv_paths[0]])
    assert isinstance(copy.get_submodule(bn_paths[0]), nn.BatchNorm2d)  # the kept pair stays
    assert isinstance(copy.get_submodule(bn_paths[-1]), nn.Identity)


def test_lazy_cache_over_budget_stores_nothing_and_still_answers(small, teacher):
    (copy,) = inference_teachers([teacher])
    cache = LazyTeacherCache([copy], [], n=len(small.train), budget_mb=0)
    x = small.normalize(small.train.images[:64])
    logits, _ = cache.get(x, torch.arange(64))
    assert cache.disabled and cache.cache is None
    with torch.no_grad():
        assert torch.allclose(logits[0], teacher(x), atol=1e-4)
    logits[0].sum()  # a normal tensor, usable outside inference mode


def test_lazy_rows_equal_the_eager_pass(small, teacher):
    (copy,) = inference_teachers([teacher])
    images = small.train.images
    eager = build_teacher_cache([copy], images, small.normalize, [], 64, 1024)
    lazy = LazyTeacherCache([copy], [], n=len(images), budget_mb=1024)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(images), 64):
        idx = order[start : start + 64]
        lazy.get(small.normalize(images[idx]), idx)
    assert lazy.complete and lazy.forwards == 5
    assert torch.allclose(lazy.cache.logits[0], eager.logits[0], atol=1e-5, rtol=1e-5)
    # a second pass reads only
    lazy.get(small.normalize(images[:64]), torch.arange(64))
    assert lazy.forwards == 5
