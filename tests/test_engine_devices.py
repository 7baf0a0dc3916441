"""Modules passed to the engine come back on the device they were given on; teachers are never
touched; a device this machine lacks is a one-line error before anything trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.config import ConfigError, validate_config
from workbench.devices import DeviceError
from workbench.models import create_model
from workbench.train import Trainer, TrainingFailed

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def small(digits):
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(192)), test=digits.test.subset(torch.arange(64))
    )


def _cfg(device, **over):
    base = {
        "kind": "distill",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 64},
        "model": {"name": "cnn", "kwargs": {"channels": [4, 8]}},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 1, "device": device},
        "distill": {"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1},
    }
    base.update(over)
    return validate_config(base)


def _nets(home):
    torch.manual_seed(0)
    student = create_model("cnn", num_classes=10, in_channels=1, image_size=8, channels=[4, 8]).to(home)
    teacher = create_model("cnn", num_classes=10, in_channels=1, image_size=8, channels=[8, 16]).to(home)
    return student, teacher.train()  # a teacher left in training mode by its owner stays so


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("home", DEVICES)
@pytest.mark.parametrize("device", DEVICES)
def test_modules_come_back_on_the_device_they_were_given_on(home, device, small):
    student, teacher = _nets(home)
    before_s, before_t = _snapshot(student), _snapshot(teacher)
    grads_t = [p.requires_grad for p in teacher.parameters()]
    result = Trainer(_cfg(device), dataset=small, student=student, teachers=[teacher]).run()
    assert result.student is student
    assert {p.device.type for p in student.parameters()} == {torch.device(home).type}
    assert all(p.is_contiguous() for p in student.parameters())  # NCHW, as given
    # trained: the weights moved; comparable with tensors on the caller's device
    after = student.state_dict()
    assert any(not torch.equal(before_s[k], after[k]) for k in before_s)
    # the teacher: same device, same weights and buffers, same flags
    assert {p.device.type for p in teacher.parameters()} == {torch.device(home).type}
    assert all(torch.equal(before_t[k], v) for k, v in teacher.state_dict().items())
    assert teacher.training and [p.requires_grad for p in teacher.parameters()] == grads_t


@pytest.mark.parametrize("device", DEVICES)
def test_a_student_built_from_the_config_comes_back_on_the_cpu(device, small):
    result = Trainer(
        _cfg(device, kind="student", distill={"methods": [{"name": "none"}]}), dataset=small
    ).run()
    assert {p.device.type for p in result.student.parameters()} == {"cpu"}
    with torch.no_grad():  # usable with CPU tensors straight away
        result.student(small.normalize(small.test.images[:4]))


@pytest.mark.parametrize("device", DEVICES)
def test_a_failed_run_also_sends_the_student_home(device, small):
    student, teacher = _nets("cpu")
    trainer = Trainer(_cfg(device), dataset=small, student=student, teachers=[teacher])

    def poison(terms, step):
        terms["kd"] = terms["kd"] * float("nan")

    trainer.term_hook = poison
    with pytest.raises(TrainingFailed):
        trainer.run()
    assert {p.device.type for p in student.parameters()} == {"cpu"}


@gpu
@needs_cuda
def test_a_cuda_teacher_stays_on_cuda_when_training_on_the_cpu(small):
    student, teacher = _nets("cpu")
    teacher = teacher.cuda()
    Trainer(_cfg("cpu"), dataset=small, student=student, teachers=[teacher]).run()
    assert {p.device.type for p in teacher.parameters()} == {"cuda"}
    assert {p.device.type for p in student.parameters()} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_at_construction():
    with pytest.raises(
        DeviceError, match=r"^train\.device: 'cuda' requested but CUDA is not available"
    ) as info:
        Trainer(_cfg("cuda"))
    assert "\n" not in str(info.value)


def test_unknown_devices_are_refused_before_training():
    with pytest.raises(ConfigError, match="train.device"):
        _cfg("cudaXYZ")
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        with pytest.raises(DeviceError, match=r"^train\.device: 'mps' requested"):
            Trainer(_cfg("mps"))
