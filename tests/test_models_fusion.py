"""BatchNorm folding: zoo nets compute the same logits with the expected number of pairs folded,
the arithmetic by hand, the pairs that must be left alone (residual use, keep, shared modules,
hooks, batch statistics, untraceable models), and an untouched original; each with both ways of
finding the pairs (a forward probe on an example batch, and torch.fx tracing), and the probe
safe while another thread runs forwards."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import fx, nn

from workbench.models import create_model
from workbench.models.fusion import BatchNormFolder, fold_batchnorm
from workbench.models.wrn import WideBasic

ATOL = RTOL = 1e-5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


DISCOVERY = ["example", "fx"]


@pytest.fixture(params=DISCOVERY)
def discovery(request) -> str:
    """How the pairs are found: ``"example"`` (forward probe on a small batch) or ``"fx"``."""
    return request.param


def _example(shape: tuple[int, ...], discovery: str) -> torch.Tensor | None:
    """Two random inputs of ``shape`` for the probe (seeded apart from the test inputs), or None."""
    return torch.randn(2, *shape, generator=_gen(7)) if discovery == "example" else None


def _fold(model: nn.Module, discovery: str, shape: tuple[int, ...], keep=()) -> tuple[nn.Module, int]:
    return fold_batchnorm(model, keep, example=_example(shape, discovery))


def _give_bn_statistics(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> None:
    """Non-trivial running statistics (a few train-mode passes on random data, cumulative average so
    eval activations stay of order one) and random affine parameters; leaves ``model`` in eval."""
    gen = _gen(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape, generator=gen))
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.5)
    model.eval()


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), atol=ATOL, rtol=RTOL)


def _bn_paths(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def _expected_folds(name: str, model: nn.Module) -> set[str]:
    """The BN paths that should fold, worked out from the architecture (not from the graph)."""
    if name == "wrn_16_2":
        # Pre-activation blocks: each block's bn2 directly follows its conv1 (6 blocks); a block's
        # bn1 reads the block input, which is a residual sum except for block1.0, whose input is
        # the stem conv's output used by nothing else (16 -> 32 channels, so the shortcut is a
        # 1x1 conv of the activated input, not the raw input); the final bn reads a residual sum.
        blocks = [p for p, m in model.named_modules() if isinstance(m, WideBasic)]
        first = model.get_submodule("block1.0")
        assert first.shortcut is not None
        return {f"{p}.bn2" for p in blocks} | {"block1.0.bn1"}
    # cnn_small / vgg8 / mobilenetv2: every BN sits right after a conv in conv-BN(-ReLU); the
    # residual ResNet / MobileNet blocks add the BN output (never the raw conv output) to the
    # shortcut, and projection shortcuts are conv-BN too. So every BatchNorm2d qualifies.
    return set(_bn_paths(model))


ZOO = ["cnn_small", "resnet8", "resnet20", "wrn_16_2", "vgg8", "mobilenetv2"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_fold_to_the_same_logits(name, discovery):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    _give_bn_statistics(model, (3, 32, 32))
    expected = _expected_folds(name, model)
    folded, n = _fold(model, discovery, (3, 32, 32))
    assert n == len(expected) > 0
    assert set(_bn_paths(folded)) == set(_bn_paths(model)) - expected
    for path in expected:
        assert type(folded.get_submodule(path)) is nn.Identity
    assert isinstance(folded, type(model)) and not folded.training
    x = torch.randn(4, 3, 32, 32, generator=_gen(1))
    with torch.no_grad():
        ref = model(x)
    assert ref.abs().max() > 1e-2  # the comparison is not between two near-zero tensors
    _same_outputs(model, folded, x)


def test_zoo_models_trace_only_with_the_leaf_tracer():
    # the zoo's GlobalAvgPool checks its input rank, which plain symbolic_trace cannot follow;
    # fold_batchnorm traces conv/BN-free modules as single calls, so it still folds
    model = create_model("cnn_small", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(Exception, match="control flow"):
        fx.symbolic_trace(model)
    assert fold_batchnorm(model)[1] == 6


def test_original_is_left_alone_and_copy_is_folded(discovery):
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32)
    _give_bn_statistics(model, (3, 32, 32))
    model.train()
    fired: list[int] = []
    model.fc.register_forward_hook(lambda m, i, o: fired.append(1))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    flags = {k: m.training for k, m in model.named_modules()}
    bn_paths = _bn_paths(model)
    # in resnet8 each BN follows the conv registered just before it (conv1/bn1, conv2/bn2,
    # downsample.0/downsample.1)
    conv_of: dict[str, str] = {}
    last_conv = ""
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            last_conv = path
        elif isinstance(m, nn.BatchNorm2d):
            conv_of[path] = last_conv

    flags_rg = {k: v.requires_grad for k, v in model.named_parameters()}
    folded, n = _fold(model, discovery, (3, 32, 32))

    assert n == len(bn_paths) == 9
    assert not folded.training and all(not m.training for m in folded.modules())
    for bn_path, conv_path in conv_of.items():
        assert type(folded.get_submodule(bn_path)) is nn.Identity
        conv = folded.get_submodule(conv_path)
        assert isinstance(conv.bias, nn.Parameter) and conv.bias.shape == (conv.out_channels,)
        assert not torch.equal(conv.weight, params[f"{conv_path}.weight"])
        assert model.get_submodule(conv_path).bias is None
    # the original: same modules, bitwise the same tensors, same flags, hook still there
    assert _bn_paths(model) == bn_paths
    assert model.training
    assert {k: m.training for k, m in model.named_modules()} == flags
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
    assert set(dict(model.named_parameters())) == set(params)
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert len(model.fc._forward_hooks) == 1
    assert {k: v.requires_grad for k, v in model.named_parameters()} == flags_rg
    assert all(
        not m._forward_pre_hooks and not m._forward_hooks for m in model.modules() if m is not model.fc
    )
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=_gen(1))
    _same_outputs(model, folded, x)
    assert fired  # the original's hook still fires


@pytest.mark.parametrize(
    ("conv_bias", "affine", "weight", "bias"),
    [
        # s = gamma / sqrt(var + eps) = (4 / sqrt(3 + 1), 0.5 / sqrt(0 + 1)) = (2, 0.5)
        # W' = W * s = (2 * 2, -1 * 0.5); b' = (0 - mu) * s + beta = (-1 * 2 + 0.5, 2 * 0.5 - 3)
        (None, True, [4.0, -0.5], [-1.5, -2.0]),
        # with conv bias (1, 3): b' = ((1 - 1) * 2 + 0.5, (3 + 2) * 0.5 - 3)
        ([1.0, 3.0], True, [4.0, -0.5], [0.5, -0.5]),
        # no affine: s = (1 / 2, 1 / 1); W' = (2 * 0.5, -1 * 1); b' = (-1 * 0.5, 2 * 1)
        (None, False, [1.0, -1.0], [-0.5, 2.0]),
    ],
)
def test_folding_by_hand(conv_bias, affine, weight, bias, discovery):
    conv = nn.Conv2d(1, 2, 1, bias=conv_bias is not None)
    bn = nn.BatchNorm2d(2, eps=1.0, affine=affine)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        if conv_bias is not None:
            conv.bias.copy_(torch.tensor(conv_bias))
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([3.0, 0.0]))
        if affine:
            bn.weight.copy_(torch.tensor([4.0, 0.5]))
            bn.bias.copy_(torch.tensor([0.5, -3.0]))
    model = nn.Sequential(conv, bn)
    folded, n = _fold(model, discovery, (1, 4, 4))
    assert n == 1
    assert type(folded[1]) is nn.Identity
    torch.testing.assert_close(folded[0].weight.detach(), torch.tensor(weight).view(2, 1, 1, 1))
    torch.testing.assert_close(folded[0].bias.detach(), torch.tensor(bias))
    assert folded[0].weight.requires_grad and folded[0].bias.requires_grad
    _same_outputs(model.eval(), folded, torch.randn(3, 1, 4, 4, generator=_gen()))


class _ConvBN(nn.Module):
    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)


class _Residual(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        return self.bn(z) + z


class _TwoOutputs(_ConvBN):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.conv(x)
        return self.bn(z), z


class _CalledTwice(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.bn(self.conv(x))))


class _SharedPaths(_ConvBN):
    def __init__(self) -> None:
        super().__init__()
        self.conv_again = self.conv  # the same module object at a second path, called there too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv_again(x)


class _ReadsWeight(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv.weight.sum()


class _ComparesRawOutput(_ConvBN):
    """The raw conv output feeds a comparison: no autograd edge, but a use all the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        return self.bn(z) * (z > 0)


class _ReturnsDetached(_ConvBN):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.conv(x)
        return self.bn(z), z.detach()


class _ChangedInPlace(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        z.mul_(2.0)
        return self.bn(z)


class _ReadsStatisticsWithoutGrad(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            shift = self.bn.running_mean.mean()
        return self.bn(self.conv(x)) + shift


class _NeverCalled(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


class _DataDependent(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.bn(self.conv(x))
        return -self.bn(self.conv(x))


USED_ELSEWHERE = [
    _Residual,
    _TwoOutputs,
    _CalledTwice,
    _SharedPaths,
    _ReadsWeight,
    _ComparesRawOutput,
    _ReturnsDetached,
    _ChangedInPlace,
    _ReadsStatisticsWithoutGrad,
    _NeverCalled,
]


@pytest.mark.parametrize("cls", USED_ELSEWHERE)
def test_pairs_whose_conv_or_bn_is_used_elsewhere_are_not_folded(cls, discovery):
    torch.manual_seed(0)
    model = cls()
    if cls is _ReadsStatisticsWithoutGrad and discovery == "fx":
        # fx computes ``self.bn.running_mean.mean()`` eagerly during the trace (a buffer is no proxy),
        # so the graph shows a constant and no read of the BN: a known gap of the fx path
        pytest.xfail("fx does not see eager reads of a buffer")
    _give_bn_statistics(model, (4, 6, 6))
    folded, n = _fold(model, discovery, (4, 6, 6))
    assert n == 0
    assert isinstance(folded.bn, nn.BatchNorm2d) and folded.conv.bias is not None
    x = torch.randn(2, 4, 6, 6, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=ATOL, rtol=RTOL)


def test_untraceable_model_is_copied_unfolded(discovery):
    # fx cannot trace the branch; the probe sees ``x.sum() > 0`` become a Python bool, so the
    # branch not taken on the example is unseen and nothing is folded either
    torch.manual_seed(0)
    model = _DataDependent()
    _give_bn_statistics(model, (4, 6, 6))
    model.train()
    folded, n = _fold(model, discovery, (4, 6, 6))
    assert n == 0
    assert folded is not model and type(folded) is _DataDependent
    assert not folded.training and model.training
    assert isinstance(folded.bn, nn.BatchNorm2d)
    model.eval()
    for sign in (1.0, -1.0):
        x = sign * torch.rand(2, 4, 6, 6, generator=_gen(1))
        _same_outputs(model, folded, x)


def _two_pairs() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5)
    )
    _give_bn_statistics(model, (3, 6, 6))
    return model


@pytest.mark.parametrize(("keep", "kept_bn", "folded_bn"), [(["0"], "1", "4"), (["4"], "4", "1")])
def test_keep_protects_only_its_pair(keep, kept_bn, folded_bn, discovery):
    model = _two_pairs()
    folded, n = _fold(model, discovery, (3, 6, 6), keep=keep)
    assert n == 1
    assert isinstance(folded.get_submodule(kept_bn), nn.BatchNorm2d)
    assert type(folded.get_submodule(folded_bn)) is nn.Identity
    _same_outputs(model, folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
    assert _fold(model, discovery, (3, 6, 6), keep=["0", "4"])[1] == 0
    assert _fold(model, discovery, (3, 6, 6), keep="0")[1] == 1  # one path given as a string
    assert _fold(model, discovery, (3, 6, 6))[1] == 2


def test_batch_statistics_bn_and_hooked_conv_are_not_folded(discovery):
    model = _two_pairs()
    model[1] = nn.BatchNorm2d(4, track_running_stats=False)  # normalises with batch statistics
    handle = model[3].register_forward_hook(lambda m, i, o: o * 2.0)  # rewrites the conv output
    folded, n = _fold(model, discovery, (3, 6, 6))
    assert n == 0
    assert len(folded[3]._forward_hooks) == 1  # the copy keeps the user's hook and only that one
    assert all(not m._forward_pre_hooks for m in folded.modules())
    _same_outputs(model.eval(), folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
    handle.remove()
    assert _fold(model, discovery, (3, 6, 6))[1] == 1  # without the hook, the running-stats pair folds


@pytest.mark.parametrize(("channels", "groups", "out"), [(8, 8, 8), (4, 4, 8)])
def test_depthwise_conv_folds(channels, groups, out, discovery):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, out, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(out), nn.ReLU()
    )
    _give_bn_statistics(model, (channels, 5, 5))
    folded, n = _fold(model, discovery, (channels, 5, 5))
    assert n == 1 and folded[0].weight.shape == (out, 1, 3, 3)
    _same_outputs(model, folded, torch.randn(3, channels, 5, 5, generator=_gen(1)))


def test_float64_model_folds_in_float64(discovery):
    model = _two_pairs().double()
    folded, n = _fold(model, discovery, (3, 6, 6))  # a float32 example is cast to the model's dtype
    assert n == 2 and {p.dtype for p in folded.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 6, 6, generator=_gen(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-12, rtol=1e-12)


def test_hook_at_a_folded_bn_path_sees_the_bn_output(discovery):
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32)
    _give_bn_statistics(model, (3, 32, 32))
    folded, n = _fold(model, discovery, (3, 32, 32))
    assert n == 9
    seen: dict[str, torch.Tensor] = {}
    for path in ("layer1.0.bn1", "layer2.0.downsample.1"):
        assert type(folded.get_submodule(path)) is nn.Identity
        model.get_submodule(path).register_forward_hook(lambda m, i, o, p=path: seen.update({f"o{p}": o}))
        folded.get_submodule(path).register_forward_hook(lambda m, i, o, p=path: seen.update({f"f{p}": o}))
    x = torch.randn(2, 3, 32, 32, generator=_gen(1))
    with torch.no_grad():
        model(x)
        folded(x)
    assert len(seen) == 4
    for path in ("layer1.0.bn1", "layer2.0.downsample.1"):
        torch.testing.assert_close(seen[f"f{path}"], seen[f"o{path}"], atol=ATOL, rtol=RTOL)


def test_folder_sync_follows_in_place_changes_of_the_source(discovery):
    torch.manual_seed(3)
    source = create_model("resnet8", num_classes=10, in_channels=3, image_size=16)
    _give_bn_statistics(source, (3, 16, 16), seed=3)
    folder = BatchNormFolder(source, example=_example((3, 16, 16), discovery))
    assert len(folder.pairs) == len(_bn_paths(source))  # resnet8: every BN follows its conv
    x = torch.randn(4, 3, 16, 16, generator=_gen(4))
    _same_outputs(source, folder.model, x)
    before = {k: v.clone() for k, v in folder.model.state_dict().items()}
    with torch.no_grad():  # perturb every parameter and the BN statistics, as a landscape does
        for p in source.parameters():
            p.add_(torch.randn(p.shape, generator=_gen(5)) * 0.1)
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.add_(0.3)
                m.running_var.mul_(1.5)
    with torch.no_grad():
        stale = folder.model(x)
    assert not torch.allclose(stale, source(x), atol=1e-3)  # the copy does not follow by itself
    folder.sync()
    _same_outputs(source, folder.model, x)
    assert any(not torch.equal(v, folder.model.state_dict()[k]) for k, v in before.items())
    # the copy's own tensors are updated in place: a channels-last copy stays channels-last
    conv = (
        folder.model.conv1
        if hasattr(folder.model, "conv1")
        else next(m for m in folder.model.modules() if isinstance(m, nn.Conv2d))
    )
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    folder.sync()
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _same_outputs(source, folder.model, x)


BASE_ZOO = ["cnn", "resnet", "wrn", "vgg", "mobilenetv2", "vit_tiny"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BASE_ZOO)
def test_zoo_models_fold_the_same_pairs_with_both_discoveries(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=16)
    _give_bn_statistics(model, (3, 16, 16))
    by_fx = BatchNormFolder(model)
    by_probe = BatchNormFolder(model, example=torch.randn(2, 3, 16, 16, generator=_gen(2)))
    assert sorted(by_probe.pairs) == sorted(by_fx.pairs)
    # the vision transformer's patch embedding is a conv without a BN: nothing to fold
    assert (len(by_fx.pairs) == 0) == (name == "vit_tiny")
    _same_outputs(model, by_probe.model, torch.randn(2, 3, 16, 16, generator=_gen(1)))


@pytest.mark.parametrize("frozen", [False, True])
def test_probe_leaves_no_hooks_and_the_requires_grad_flags(frozen):
    model = _two_pairs()
    for p in model.parameters():
        p.requires_grad_(not frozen)
    folded, n = fold_batchnorm(model, example=torch.randn(2, 3, 6, 6, generator=_gen(2)))
    assert n == 2
    for m in folded.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks
    # the folded conv's new Parameters take the copy's flag, which the probe restored
    assert {p.requires_grad for p in folded.parameters()} == {not frozen}
    assert {p.requires_grad for p in model.parameters()} == {not frozen}
    assert all(p.grad is None for p in folded.parameters())


def test_probe_that_fails_gives_an_unfolded_copy():
    model = _two_pairs()
    model.train()
    folded, n = fold_batchnorm(model, example=torch.randn(2, 5, 6, 6))  # 5 channels, the conv wants 3
    assert n == 0
    assert isinstance(folded[1], nn.BatchNorm2d) and isinstance(folded[4], nn.BatchNorm2d)
    assert not folded.training and model.training
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in folded.modules())
    assert all(p.requires_grad for p in folded.parameters())
    _same_outputs(model.eval(), folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
    with pytest.raises(TypeError, match="example"):
        fold_batchnorm(model, example=[torch.randn(2, 3, 6, 6)])


class _CheckedHead(nn.Module):
    """A conv/BN-free module with a data-dependent check, like fx's leaf modules."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(x).all()):
            raise ValueError("non-finite features")
        return x.mean(dim=(2, 3))


def test_value_checks_inside_conv_free_modules_do_not_stop_folding(discovery):
    model = _two_pairs()
    model.append(_CheckedHead())
    folded, n = _fold(model, discovery, (3, 6, 6))
    assert n == 2
    _same_outputs(model, folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))


def test_probe_is_safe_while_another_thread_runs_forwards():
    """A forward in another thread while the pairs are found.

    The fx path patches ``nn.Module.__call__`` / ``__getattr__`` for the whole process while it
    traces, so a forward in another thread at that moment can fail with ``NameError: module is not
    installed as a submodule`` (timing-dependent, so not asserted here); the probe only adds hooks
    to its own copy and uses thread-local grad and torch-function modes.
    """
    runner = create_model("resnet8", num_classes=10, in_channels=3, image_size=16).eval()
    model = _two_pairs()
    example = torch.randn(2, 3, 6, 6, generator=_gen(2))
    x = torch.randn(2, 3, 16, 16, generator=_gen(3))
    with torch.no_grad():
        expected = runner(x)
    errors: list[BaseException] = []
    stop = threading.Event()
    runs = [0]

    def forwards() -> None:
        try:
            while not stop.is_set():
                with torch.no_grad():
                    torch.testing.assert_close(runner(x), expected)
                runs[0] += 1
        except BaseException as err:  # reported to the main thread
            errors.append(err)

    worker = threading.Thread(target=forwards, daemon=True)
    worker.start()
    try:
        counts = [fold_batchnorm(model, example=example)[1] for _ in range(20)]
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert not errors, errors[0]
    assert runs[0] > 0
    assert counts == [2] * 20
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in runner.modules())


def test_probe_runs_no_user_hook_and_respects_what_hooks_see():
    # the inner block's output is the raw conv output; a hook there (a feature tap) would see the
    # BN output after folding, so the probe keeps the pair (fx does not look at such hooks)
    model = _two_pairs()
    tapped = nn.Sequential(nn.Sequential(model[0]), model[1], model[2], model[3], model[4])
    calls: list[str] = []
    tapped[0].register_forward_hook(lambda m, i, o: calls.append("tap"))
    tapped[2].register_forward_pre_hook(lambda m, i: calls.append("relu"))
    folded, n = fold_batchnorm(tapped, example=torch.randn(2, 3, 6, 6, generator=_gen(2)))
    assert calls == []  # the probe ran none of the caller's hooks (their copies share the lambdas)
    assert n == 1 and type(folded[4]) is nn.Identity and isinstance(folded[1], nn.BatchNorm2d)
    assert len(folded[0]._forward_hooks) == 1 and len(folded[2]._forward_pre_hooks) == 1
    assert all(not m._forward_hooks for m in folded.modules() if m is not folded[0])
    _same_outputs(tapped, folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
