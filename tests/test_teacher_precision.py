"""Teacher precision (``distill.teacher_precision``) and the CPU inference chunk of evaluations.

float32 (the default) keeps the teacher's outputs exact; bfloat16 autocasts the fixed teachers'
forwards and stores float32 outputs that stay within bfloat16 rounding of the exact ones; auto
picks bfloat16 only where the device computes it natively."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from workbench.config import ConfigError, validate_config
from workbench.devices import CPU_INFERENCE_CHUNK, inference_chunk, native_bfloat16
from workbench.models import create_model
from workbench.train import Trainer
from workbench.train import cache as cache_mod
from workbench.train.cache import inference_teachers, precision_name, teacher_dtype, teacher_forward
from workbench.validate import load_config


@pytest.fixture(scope="module")
def small(digits):
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(320)), test=digits.test.subset(torch.arange(300))
    )


@pytest.fixture(scope="module")
def teacher(small):
    """A briefly trained conv teacher (confident logits, so rounding is visible but small)."""
    torch.manual_seed(0)
    net = create_model("cnn", num_classes=10, in_channels=1, image_size=8, channels=[8, 16])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = small.normalize(small.train.images), small.train.labels
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def _kd(precision=None, **over):
    distill = {"methods": [{"name": "kd", "weight": 0.9}], "ce_weight": 0.1}
    if precision is not None:
        distill["teacher_precision"] = precision
    base = {
        "kind": "distill",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 64},
        "model": {"name": "cnn", "kwargs": {"channels": [4, 8]}},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 2, "device": "cpu"},
        "distill": distill,
    }
    base.update(over)
    return validate_config(base)


def test_precision_names_resolve_to_autocast_dtypes(monkeypatch):
    assert teacher_dtype("float32", "cpu") is None
    assert teacher_dtype("bfloat16", "cpu") is torch.bfloat16
    monkeypatch.setattr(cache_mod, "native_bfloat16", lambda device: True)
    assert teacher_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(cache_mod, "native_bfloat16", lambda device: False)
    assert teacher_dtype("auto", "cpu") is None  # emulated bf16 would be slower: stay exact
    assert (precision_name(None), precision_name(torch.bfloat16)) == ("float32", "bfloat16")
    with pytest.raises(ValueError, match="teacher_precision"):
        teacher_dtype("half", "cpu")
    with pytest.raises(ValueError, match="teacher_precision.*mps"):
        teacher_dtype("bfloat16", "mps")


def test_native_bfloat16_follows_the_hardware():
    flags = [torch.cpu._is_avx512_bf16_supported(), torch.cpu._is_amx_tile_supported()]
    assert native_bfloat16("cpu") is any(flags)
    assert native_bfloat16("meta") is False
    if not torch.cuda.is_available():
        assert native_bfloat16("cuda") is False


def test_the_default_is_float32_and_a_bad_name_is_one_line(tmp_path):
    assert validate_config({"kind": "student"}).distill.teacher_precision == "float32"
    path = tmp_path / "run.yaml"
    path.write_text("kind: student\ndistill:\n  teacher_precision: half\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg and "teacher_precision" in msg


def test_bfloat16_forwards_round_but_stay_close(small, teacher, device):
    (copy,) = inference_teachers([teacher.to(device)])
    teacher.cpu()
    x = small.normalize(small.train.images[:128].to(device))
    path = [n for n, _ in copy.named_modules() if n][-2]  # a feature of the last block
    with torch.inference_mode():
        (exact,), (exact_f,) = teacher_forward([copy], x, [path])
        (mixed,), (mixed_f,) = teacher_forward([copy], x, [path], dtype=torch.bfloat16)
    assert mixed.dtype == torch.float32 and mixed_f[path].dtype == torch.float32
    assert not torch.equal(mixed, exact)  # autocast really ran in bfloat16
    # bfloat16 keeps 8 significant bits: errors scale with the logits' magnitude
    scale = exact.abs().max()
    assert (mixed - exact).abs().max() <= 2**-6 * scale
    assert (mixed.argmax(1) == exact.argmax(1)).float().mean() >= 0.98
    p, q = F.log_softmax(exact / 4, 1), F.log_softmax(mixed / 4, 1)
    assert float((p.exp() * (p - q)).sum(1).mean()) < 1e-3  # the soft targets at T=4 barely move
    assert (mixed_f[path] - exact_f[path]).abs().max() <= 2**-6 * exact_f[path].abs().max()


def test_a_bfloat16_run_records_it_and_caches_the_rounded_teacher(small, teacher):
    exact_run = Trainer(_kd(), dataset=small, teachers=[teacher])
    mixed_run = Trainer(_kd("bfloat16"), dataset=small, teachers=[teacher])
    a, b = exact_run.run(), mixed_run.run()
    assert a.summary["teacher_precision"] == "float32" and b.summary["teacher_precision"] == "bfloat16"
    assert exact_run.teacher_dtype is None and mixed_run.teacher_dtype is torch.bfloat16
    x = exact_run.inputs(small.train.images)
    with torch.inference_mode():
        (direct,), _ = teacher_forward(exact_run.run_teachers, x, [])
        (rounded,), _ = teacher_forward(mixed_run.run_teachers, x, [], dtype=torch.bfloat16)
    assert torch.allclose(exact_run.lazy_cache.cache.logits[0], direct, atol=1e-4)
    assert torch.allclose(mixed_run.lazy_cache.cache.logits[0], rounded, atol=1e-4)
    assert not torch.allclose(mixed_run.lazy_cache.cache.logits[0], direct, atol=1e-4)
    # the teacher's test logits come from the same precision; its accuracy barely moves
    assert abs(a.summary["teacher_test_acc"] - b.summary["teacher_test_acc"]) <= 0.01
    # the students trained on either teacher end close
    assert abs(a.summary["test_acc"] - b.summary["test_acc"]) <= 0.05


def test_a_run_without_teachers_records_no_precision(small):
    result = Trainer(_kd(kind="student", distill={"methods": [{"name": "none"}]}), dataset=small).run()
    assert "teacher_precision" not in result.summary


def test_inference_chunk_caps_cpu_passes_only():
    assert inference_chunk("cpu", 1000) == CPU_INFERENCE_CHUNK
    assert inference_chunk("cpu", 32) == 32
    assert inference_chunk("cpu", 0) == 1
    assert inference_chunk("cuda", 1000) == 1000


def test_evaluation_does_not_depend_on_the_eval_batch(small, teacher):
    """Chunked CPU evaluation equals one big batch: per-sample outputs do not depend on it."""
    big = Trainer(_kd(data={"dataset": "digits", "batch_size": 64, "eval_batch_size": 1000}),
                  dataset=small, teachers=[teacher]).run()
    tiny = Trainer(_kd(data={"dataset": "digits", "batch_size": 64, "eval_batch_size": 7}),
                   dataset=small, teachers=[teacher]).run()
    for ha, hb in zip(big.history, tiny.history, strict=True):
        for key in ("test_acc", "test_loss", "ece", "agreement"):
            assert ha[key] == pytest.approx(hb[key], abs=1e-5), key
