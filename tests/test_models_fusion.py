"""BatchNorm folding: zoo nets compute the same logits with the expected number of pairs folded,
the arithmetic by hand, the pairs that must be left alone (residual use, keep, shared modules,
hooks, batch statistics, untraceable models), and an untouched original."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from workbench.models import create_model
from workbench.models.fusion import fold_batchnorm
from workbench.models.wrn import WideBasic

ATOL = RTOL = 1e-5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
def test_zoo_models_fold_to_the_same_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    _give_bn_statistics(model, (3, 32, 32))
    expected = _expected_folds(name, model)
    folded, n = fold_batchnorm(model)
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


def test_original_is_left_alone_and_copy_is_folded():
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

    folded, n = fold_batchnorm(model)

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
def test_folding_by_hand(conv_bias, affine, weight, bias):
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
    folded, n = fold_batchnorm(model)
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


class _DataDependent(_ConvBN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.bn(self.conv(x))
        return -self.bn(self.conv(x))


@pytest.mark.parametrize("cls", [_Residual, _TwoOutputs, _CalledTwice, _SharedPaths, _ReadsWeight])
def test_pairs_whose_conv_or_bn_is_used_elsewhere_are_not_folded(cls):
    torch.manual_seed(0)
    model = cls()
    _give_bn_statistics(model, (4, 6, 6))
    folded, n = fold_batchnorm(model)
    assert n == 0
    assert isinstance(folded.bn, nn.BatchNorm2d) and folded.conv.bias is not None
    x = torch.randn(2, 4, 6, 6, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=ATOL, rtol=RTOL)


def test_untraceable_model_is_copied_unfolded():
    torch.manual_seed(0)
    model = _DataDependent()
    _give_bn_statistics(model, (4, 6, 6))
    model.train()
    folded, n = fold_batchnorm(model)
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
def test_keep_protects_only_its_pair(keep, kept_bn, folded_bn):
    model = _two_pairs()
    folded, n = fold_batchnorm(model, keep=keep)
    assert n == 1
    assert isinstance(folded.get_submodule(kept_bn), nn.BatchNorm2d)
    assert type(folded.get_submodule(folded_bn)) is nn.Identity
    _same_outputs(model, folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
    assert fold_batchnorm(model, keep=["0", "4"])[1] == 0
    assert fold_batchnorm(model)[1] == 2


def test_batch_statistics_bn_and_hooked_conv_are_not_folded():
    model = _two_pairs()
    model[1] = nn.BatchNorm2d(4, track_running_stats=False)  # normalises with batch statistics
    handle = model[3].register_forward_hook(lambda m, i, o: o * 2.0)  # rewrites the conv output
    folded, n = fold_batchnorm(model)
    assert n == 0
    _same_outputs(model.eval(), folded, torch.randn(2, 3, 6, 6, generator=_gen(1)))
    handle.remove()
    assert fold_batchnorm(model)[1] == 1  # without the hook, the running-stats pair folds


@pytest.mark.parametrize(("channels", "groups", "out"), [(8, 8, 8), (4, 4, 8)])
def test_depthwise_conv_folds(channels, groups, out):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, out, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(out), nn.ReLU()
    )
    _give_bn_statistics(model, (channels, 5, 5))
    folded, n = fold_batchnorm(model)
    assert n == 1 and folded[0].weight.shape == (out, 1, 3, 3)
    _same_outputs(model, folded, torch.randn(3, channels, 5, 5, generator=_gen(1)))


def test_float64_model_folds_in_float64():
    model = _two_pairs().double()
    folded, n = fold_batchnorm(model)
    assert n == 2 and {p.dtype for p in folded.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 6, 6, generator=_gen(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-12, rtol=1e-12)


def test_hook_at_a_folded_bn_path_sees_the_bn_output():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3, image_size=32)
    _give_bn_statistics(model, (3, 32, 32))
    folded, n = fold_batchnorm(model)
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


def test_folder_sync_follows_in_place_changes_of_the_source():
    from workbench.models.fusion import BatchNormFolder

    torch.manual_seed(3)
    source = create_model("resnet8", num_classes=10, in_channels=3, image_size=16)
    _give_bn_statistics(source, (3, 16, 16), seed=3)
    folder = BatchNormFolder(source)
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
