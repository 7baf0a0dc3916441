"""The distillation method library: every registered method through the real engine, gradient
flow, the state methods keep (peers, mean teacher, memory bank), hand-computed method-level
values, and one-line set-up errors for bad hyperparameters."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as TF

from workbench.config import validate_config
from workbench.distill import MethodContext, MethodError, StepOutputs, create_method, list_methods
from workbench.distill import functional as K
from workbench.distill.connectors import ConnectorError, ConvConnector, build_connector
from workbench.distill.logits import confidence_weights
from workbench.distill.relations import nce_loss
from workbench.distill.weighting import relative_weights
from workbench.models import create_model
from workbench.models.taps import FeatureTaps
from workbench.train import Trainer
from workbench.train.cache import teacher_forward

STUDENT = {"name": "cnn", "kwargs": {"channels": [4, 8]}}
TEACHER_KW = {"channels": (8, 16, 16)}
#: methods that cannot run without hyperparameters
REQUIRED = {"takd": {"assistants": [{"model": "cnn", "kwargs": {"channels": [4, 4]}}]}}


@pytest.fixture(scope="module")
def small(digits):
    """160 training and 64 test digits: enough for every method, fast to cache and evaluate."""
    return dataclasses.replace(
        digits, train=digits.train.subset(torch.arange(160)), test=digits.test.subset(torch.arange(64))
    )


def _teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, in_channels=1, image_size=8, **TEACHER_KW).eval()


def _student(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, in_channels=1, image_size=8, **STUDENT["kwargs"])


def _config(methods: list[dict], steps: int = 2) -> object:
    return validate_config(
        {
            "kind": "distill",
            "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 64},
            "model": STUDENT,
            "teachers": [{"source": "run:placeholder"}],
            "distill": {"methods": methods},
            "optim": {"name": "sgd", "lr": 0.05},
            "train": {"epochs": 1, "max_steps": steps},
        }
    )


def _ctx(student, teachers, data, make_student=None) -> MethodContext:
    return MethodContext(
        student=student,
        teachers=teachers,
        num_classes=10,
        input_shape=(1, 8, 8),
        device=torch.device("cpu"),
        sample=data.normalize(data.train.images[:8]),
        train_size=len(data.train),
        epochs=1,
        steps_per_epoch=5,
        seed=0,
        make_student=make_student,
    )


def _step(method, student, teachers, data, n: int = 16, epoch: int = 0, step: int = 0) -> StepOutputs:
    """One batch through the student (with taps) and the teachers, as the engine builds it."""
    x = data.normalize(data.train.images[:n])
    with FeatureTaps(student, method.student_features()) as taps:
        logits = student(x)
    own = method.teacher_models()
    t_logits, t_feats = teacher_forward(own if own is not None else teachers, x, method.teacher_features())
    return StepOutputs(
        x=x,
        y=data.train.labels[:n],
        index=torch.arange(n),
        student_logits=logits,
        student_features=dict(taps.features),
        teacher_logits=t_logits,
        teacher_features=t_feats,
        epoch=epoch,
        step=step,
        total_steps=10,
    )


def num(t: torch.Tensor) -> float:
    """A 0-d tensor as a float, without its autograd graph."""
    return float(t.detach())


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---- every method through the real engine -------------------------------------------------------


@pytest.mark.parametrize("with_kd", [False, True], ids=["alone", "with_kd"])
@pytest.mark.parametrize("name", list_methods())
def test_every_method_trains_two_steps(name, with_kd, small):
    teacher = _teacher()
    before = _snapshot(teacher)
    methods = [{"name": name, "params": REQUIRED.get(name, {})}]
    if with_kd:
        methods.append({"name": "kd", "weight": 0.5})
    trainer = Trainer(_config(methods), dataset=small, teachers=[teacher])
    seen: list[dict[str, float]] = []

    def hook(terms, step):
        assert not teacher.training
        seen.append({k: float(v.detach()) for k, v in terms.items()})

    trainer.term_hook = hook
    result = trainer.run()
    assert result.status == "completed" and len(seen) == 2
    for terms in seen:
        assert all(math.isfinite(v) for v in terms.values()), terms
        if name != "none":
            assert any(k == name or k.startswith(f"{name}.") for k in terms), terms
        if with_kd:
            assert "kd" in terms
    assert math.isfinite(result.history[-1]["train_loss"])
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in _snapshot(teacher).items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", list_methods())
def test_every_method_is_reproducible_from_its_seed(name, small):
    """Two runs of one config give bit-identical students (extra modules, peers and samplers
    included), and another seed gives another student."""

    def train(seed: int) -> dict[str, torch.Tensor]:
        cfg = _config([{"name": name, "params": REQUIRED.get(name, {})}], steps=3).model_copy(update={"seed": seed})
        result = Trainer(cfg, dataset=small, teachers=[_teacher()]).run()
        return {k: v.detach().clone() for k, v in result.student.state_dict().items()}

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


# ---- gradient flow ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_methods() if n != "none"])
def test_gradients_reach_student_and_extras_never_teacher(name, small):
    student, teacher = _student(), _teacher()  # the teacher deliberately keeps requires_grad=True
    method = create_method(name, REQUIRED.get(name, {}), _ctx(student, [teacher], small, _student))
    method.train()
    out = _step(method, student, [teacher], small)
    terms = method.loss(out)
    torch.stack(list(terms.values())).sum().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in student.parameters())
    extras = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    for pname, p in extras:
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert all(p.grad is None for p in teacher.parameters())
    own = method.teacher_models()
    for net in own or []:
        assert not net.training
        assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("name", ["fitnet", "crd", "vkd", "dml"])
def test_methods_with_extras_have_trainable_parameters(name, small):
    method = create_method(name, {}, _ctx(_student(), [_teacher()], small, _student))
    assert sum(p.numel() for p in method.parameters() if p.requires_grad) > 0


# ---- state kept by methods -----------------------------------------------------------------------


def test_dml_updates_every_peer(small):
    trainer = Trainer(_config([{"name": "dml", "params": {"peers": 2}}], steps=3), dataset=small, teachers=[])
    start: dict[int, dict[str, torch.Tensor]] = {}

    def hook(terms, step):
        if step == 0:
            for i, peer in enumerate(trainer.method.peers()):
                start[i] = _snapshot(peer)
                assert peer.training

    trainer.term_hook = hook
    result = trainer.run()
    peers = result.method.peers()
    assert len(peers) == 2
    first = [k for k in start[0] if k.endswith("weight")][0]
    assert not torch.equal(start[0][first], start[1][first])  # peers start from different weights
    for i, peer in enumerate(peers):
        now = peer.state_dict()
        assert any(not torch.equal(now[k], v) for k, v in start[i].items()), f"peer {i} did not train"
    assert result.summary.get("teacher_cache") is False


def test_ema_update_rule_by_hand(small):
    student = _student()
    method = create_method("ema", {"momentum": 0.9}, _ctx(student, [], small))
    student.eval()
    # a fresh mean teacher is a copy of the student: in the same mode there is nothing to distil
    assert num(method.loss(_step(method, student, [], small))["ema"]) == pytest.approx(0.0, abs=1e-6)
    t0 = _snapshot(method.teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    s1 = _snapshot(student)
    assert method.update_teacher(student) == pytest.approx(0.5)  # min(1 - 1/2, 0.9)
    for k, v in method.teacher.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.5 * t0[k] + 0.5 * s1[k], atol=1e-6), k
    t1 = _snapshot(method.teacher)
    assert method.update_teacher(student) == pytest.approx(2.0 / 3.0)  # min(1 - 1/3, 0.9)
    for k, v in method.teacher.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (2 / 3) * t1[k] + (1 / 3) * s1[k], atol=1e-6), k
    for _ in range(20):
        last = method.update_teacher(student)
    assert last == pytest.approx(0.9)


def test_ema_teacher_changes_in_training_and_stays_in_eval(small):
    trainer = Trainer(
        _config([{"name": "ema", "params": {"momentum": 0.5}}], steps=3), dataset=small, teachers=[]
    )
    start: dict[str, torch.Tensor] = {}

    def hook(terms, step):
        (ema,) = trainer.method.teacher_models()
        assert not ema.training
        if step == 0:
            start.update(_snapshot(ema))

    trainer.term_hook = hook
    result = trainer.run()
    (ema,) = result.method.teacher_models()
    assert not ema.training
    assert any(not torch.equal(v, start[k]) for k, v in ema.state_dict().items())
    assert all(not p.requires_grad for p in ema.parameters())


def test_crd_memory_bank_moves_towards_embeddings(small):
    student, teacher = _student(), _teacher()
    method = create_method("crd", {"nce_k": 32, "nce_m": 0.5}, _ctx(student, [teacher], small))
    method.train()
    out = _step(method, student, [teacher], small, n=16)
    old_s, old_t = method.memory_s.clone(), method.memory_t.clone()
    method.loss(out)
    assert bool((method.z > 0).all())
    with torch.no_grad():
        v_s = method.embed_s(out.student_features[method.s_path])
        v_t = method.embed_t(out.teacher_features[0][method.t_path])
    method.after_step(out)
    idx = out.index
    expect_s = TF.normalize(0.5 * old_s[idx] + 0.5 * v_s, dim=1)
    expect_t = TF.normalize(0.5 * old_t[idx] + 0.5 * v_t, dim=1)
    assert torch.allclose(method.memory_s[idx], expect_s, atol=1e-6)
    assert torch.allclose(method.memory_t[idx], expect_t, atol=1e-6)
    rest = torch.ones(len(small.train), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(method.memory_s[rest], old_s[rest]) and torch.equal(method.memory_t[rest], old_t[rest])
    assert "memory_s" not in method.state_dict()  # training state, not written to checkpoints


def test_nce_loss_by_hand():
    n_data, m = 10, 2
    scores = torch.tensor([[0.3, 0.1, 0.4], [2.0, 0.05, 0.2]], dtype=torch.float64)
    pn = m / n_data
    eps = 1e-7
    expected = 0.0
    for row in scores.tolist():
        expected += math.log(row[0] / (row[0] + pn + eps))
        expected += sum(math.log(pn / (v + pn + eps)) for v in row[1:])
    expected = -expected / 2
    assert float(nce_loss(scores, n_data)) == pytest.approx(expected, rel=1e-12)


# ---- method-level values worked out by hand ----------------------------------------------------


def test_dkd_warmup_is_linear_in_epochs(small):
    student, teacher = _student(), _teacher()
    method = create_method("dkd", {"warmup": 4}, _ctx(student, [teacher], small))
    out = _step(method, student, [teacher], small)
    full = K.dkd_loss(out.student_logits, out.teacher_logits[0], out.y, alpha=1.0, beta=8.0, temperature=4.0)
    for epoch, factor in [(0, 0.25), (1, 0.5), (3, 1.0), (10, 1.0)]:
        out.epoch = epoch
        assert num(method.loss(out)["dkd"]) == pytest.approx(factor * num(full), rel=1e-6)


def test_bdkd_weights_each_direction_by_its_share(small):
    student, teacher = _student(), _teacher()
    method = create_method("bdkd", {"temperature": 2.0}, _ctx(student, [teacher], small))
    out = _step(method, student, [teacher], small)
    f = num(K.kd_loss(out.student_logits, out.teacher_logits[0], temperature=2.0))
    r = num(K.reverse_kd_loss(out.student_logits, out.teacher_logits[0], temperature=2.0))
    assert num(method.loss(out)["bdkd"]) == pytest.approx((f * f + r * r) / (f + r), rel=1e-5)
    fixed = create_method("bdkd", {"temperature": 2.0, "adaptive": False}, _ctx(student, [teacher], small))
    assert num(fixed.loss(out)["bdkd"]) == pytest.approx((f + r) / 2, rel=1e-5)


def test_confidence_weights_by_hand():
    # teacher 0 puts log-odds 2 on the label, teacher 1 is uniform: CE_0 = log(1 + e^-2), CE_1 = log 2
    t0 = torch.tensor([[2.0, 0.0]])
    t1 = torch.tensor([[0.0, 0.0]])
    w = confidence_weights([t0, t1], torch.tensor([0]))
    ce0, ce1 = math.log(1 + math.exp(-2)), math.log(2)
    w0 = 1 - math.exp(ce0) / (math.exp(ce0) + math.exp(ce1))
    assert w.shape == (2, 1)
    assert float(w[0, 0]) == pytest.approx(w0, rel=1e-6)
    assert float(w[1, 0]) == pytest.approx(1 - w0, rel=1e-6)
    assert w0 > 0.5  # the teacher that predicts the label better weighs more


def test_multi_teacher_mean_soft_label_by_hand(small):
    student = _student()
    teachers = [_teacher(0), _teacher(5)]
    method = create_method("multi_teacher", {"temperature": 3.0}, _ctx(student, teachers, small))
    out = _step(method, student, teachers, small)
    p = 0.5 * (torch.softmax(out.teacher_logits[0] / 3.0, 1) + torch.softmax(out.teacher_logits[1] / 3.0, 1))
    log_q = torch.log_softmax(out.student_logits / 3.0, 1)
    expected = 9.0 * (p * (p.log() - log_q)).sum(1).mean()
    assert num(method.loss(out)["multi_teacher"]) == pytest.approx(num(expected), rel=1e-5)
    # with one teacher both weightings are plain KD
    single = create_method("multi_teacher", {"weighting": "confidence"}, _ctx(student, teachers[:1], small))
    out1 = _step(single, student, teachers[:1], small)
    kd = K.kd_loss(out1.student_logits, out1.teacher_logits[0], temperature=4.0)
    assert num(single.loss(out1)["multi_teacher"]) == pytest.approx(num(kd), rel=1e-5)


def test_rdd_weights():
    w = relative_weights(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert float(w.mean()) == pytest.approx(1.0)
    assert bool((w[1:] > w[:-1]).all())
    assert torch.allclose(relative_weights(torch.full((5,), 0.7)), torch.ones(5))


def test_rdd_tfe_and_tse_stages(small):
    student, teacher = _student(), _teacher()
    method = create_method("rdd", {"mode": "staged", "switch": 0.5}, _ctx(student, [teacher], small))
    assert method.stage(0, 10) == "tfe" and method.stage(4, 10) == "tfe" and method.stage(5, 10) == "tse"
    out = _step(method, student, [teacher], small)
    rows = K.kd_loss_per_sample(out.student_logits, out.teacher_logits[0], temperature=4.0)
    ce_t = TF.cross_entropy(out.teacher_logits[0], out.y, reduction="none")
    ce_s = TF.cross_entropy(out.student_logits.detach(), out.y, reduction="none")
    n = rows.shape[0]
    out.step = 0
    tfe = (n * torch.softmax(ce_t, 0) * rows).mean()
    assert num(method.loss(out)["rdd"]) == pytest.approx(num(tfe), rel=1e-5)
    out.step = 9
    tse = (n * torch.softmax(ce_s - ce_t, 0) * rows).mean()
    assert num(method.loss(out)["rdd"]) == pytest.approx(num(tse), rel=1e-5)


def test_fitnet_connector_matches_teacher_shape(small):
    student, teacher = _student(), _teacher()
    method = create_method(
        "fitnet",
        {"student_layers": ["features.0"], "teacher_layers": ["features.2"]},
        _ctx(student, [teacher], small),
    )
    out = _step(method, student, [teacher], small)
    mapped = method.connectors[0](out.student_features["features.0"])
    assert mapped.shape == out.teacher_features[0]["features.2"].shape
    assert num(mapped.min()) >= 0.0  # the teacher map is post-ReLU, so the connector ends with a ReLU


def test_connectors_resample_and_reject():
    down = ConvConnector(3, 5, (2, 2))
    up = ConvConnector(3, 5, (8, 8), relu=False)
    x = torch.randn(4, 3, 4, 4)
    assert down(x).shape == (4, 5, 2, 2) and up(x).shape == (4, 5, 8, 8)
    assert build_connector((3, 4, 4), (7,))(x).shape == (4, 7)
    assert build_connector((6,), (9,))(torch.randn(4, 6)).shape == (4, 9)
    with pytest.raises(ConnectorError, match="cannot map"):
        build_connector((6,), (3, 4, 4))
    with pytest.raises(ConnectorError, match="square patch grid"):
        build_connector((5, 6), (4, 6))
    # a conv map onto a 2x2 grid of patch tokens and back
    to_tokens = build_connector((3, 4, 4), (4, 16))
    assert to_tokens(x).shape == (4, 4, 16)
    assert build_connector((4, 16), (3, 8, 8))(torch.randn(4, 4, 16)).shape == (4, 3, 8, 8)
    assert build_connector((16, 5), (4, 7))(torch.randn(4, 16, 5)).shape == (4, 4, 7)


@pytest.mark.parametrize("name", ["fitnet", "at", "nst", "cat_kd", "vkd", "sp", "crd"])
@pytest.mark.parametrize("direction", ["vit_to_cnn", "cnn_to_vit"])
def test_feature_methods_across_conv_nets_and_vits(name, direction, small):
    torch.manual_seed(0)
    vit = create_model("vit_tiny", num_classes=10, in_channels=1, image_size=8, patch_size=4)
    cnn = create_model("cnn", num_classes=10, in_channels=1, image_size=8, channels=(8, 16))
    student, teacher = (vit, cnn) if direction == "vit_to_cnn" else (cnn, vit)
    teacher.eval()
    method = create_method(name, {}, _ctx(student, [teacher], small))
    out = _step(method, student, [teacher], small)
    loss = torch.stack(list(method.loss(out).values())).sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_ema_and_dml_need_no_teacher():
    from workbench.distill import get_method_class

    assert not get_method_class("dml").needs_teacher
    assert not get_method_class("ema").needs_teacher and get_method_class("ema").provides_teacher
    cfg = _config([{"name": "dml"}, {"name": "ema"}])
    assert [m.name for m in cfg.distill.methods] == ["dml", "ema"]


# ---- bad hyperparameters ------------------------------------------------------------------------

BAD = [
    ("kd", {"temperature": -1.0}, "temperature"),
    ("dkd", {"warmup": -1}, "warmup"),
    ("dist", {"temperature": 0.0}, "temperature"),
    ("multi_teacher", {"weighting": "median"}, "weighting"),
    ("fitnet", {"student_layers": ["nope"], "teacher_layers": ["features.1"]}, "student_layers"),
    ("fitnet", {"student_layers": ["features.0"]}, "teacher_layers"),
    ("fitnet", {"student_layers": ["pool"], "teacher_layers": ["features.1"]}, "student_layers"),
    (
        "at",
        {"student_layers": ["features.0", "features.1"], "teacher_layers": ["features.1"]},
        "teacher_layers",
    ),
    ("at", {"student_layers": ["pool"], "teacher_layers": ["pool"]}, "student_layers"),
    ("at", {"p": -2.0}, "p"),
    ("nst", {"student_layers": ["features.0"], "teacher_layers": ["fc"]}, "teacher_layers"),
    ("cat_kd", {"resolution": 0}, "resolution"),
    ("cat_kd", {"student_layer": "features.0"}, "student_layer"),
    ("vkd", {"teacher_layer": "missing.layer"}, "teacher_layer"),
    ("sp", {"student_layer": "features.9"}, "student_layer"),
    ("pkt", {"unknown": 1}, "unknown"),
    ("rkd", {"distance_weight": -1.0}, "distance_weight"),
    ("crd", {"nce_k": 100000}, "nce_k"),
    ("crd", {"nce_m": 1.0}, "nce_m"),
    ("dml", {"peers": 0}, "peers"),
    ("ema", {"momentum": 1.5}, "momentum"),
    ("rdd", {"base": "mse"}, "base"),
    ("ban", {"generations": 0}, "generations"),
    ("takd", {"assistants": [{"model": "no_such_model"}]}, "assistants"),
    ("takd", {}, "assistants"),
]


@pytest.mark.parametrize("name,params,field", BAD, ids=[f"{n}-{f}-{i}" for i, (n, _, f) in enumerate(BAD)])
def test_bad_hyperparameters_fail_at_setup_in_one_line(name, params, field, small):
    ctx = _ctx(_student(), [_teacher()], small, _student)
    with pytest.raises(MethodError) as info:
        create_method(name, params, ctx)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"'{name}'" in msg and field in msg, msg


def test_feature_method_without_teacher_names_teachers(small):
    with pytest.raises(MethodError, match=r"method 'at': teachers:"):
        create_method("at", {}, _ctx(_student(), [], small))


def test_unknown_layer_lists_nearest_names(small):
    with pytest.raises(MethodError) as info:
        create_method("sp", {"student_layer": "feature.1"}, _ctx(_student(), [_teacher()], small))
    assert "features.1" in str(info.value)


def test_setup_restores_modes_and_hooks(small):
    student, teacher = _student(), _teacher()
    student.train()
    teacher.eval()
    for name in ("fitnet", "at", "cat_kd", "vkd", "crd", "sp"):
        create_method(name, {}, _ctx(student, [teacher], small))
        assert student.training and not teacher.training
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in student.modules())
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in teacher.modules())
    clone = copy.deepcopy(student)
    assert clone.training
