"""Your own architectures: ``register_model`` as a decorator, plugins (an entry point and
``WORKBENCH_PLUGINS``), a broken plugin, the analyses on a model without the zoo's conventions, and
config-time refusal of a model that does not fit the dataset's shape.

Plugins are loaded once per process, so everything about loading them runs in one subprocess (its
report is shared by several tests); the in-process tests register a plugin module's models
directly and put the registry back afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models import (
    ModelError,
    capture,
    create_model,
    describe_models,
    list_models,
    penultimate_layer,
    register_model,
    stage_layers,
)
from workbench.models import registry as model_registry

#: models without ``stages``/``pool``/``fc``, registered the three ways the decorator allows
TINY_PLUGIN = '''
"""Models for the plugin tests."""
from torch import nn

from workbench.models import register_model


class TinyNet(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, image_size=28, width=6):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.body(x))


@register_model(description="tiny conv net without the zoo's conventions")
def tiny_net(num_classes=10, in_channels=1, image_size=28, width=6):
    return TinyNet(num_classes, in_channels, image_size, width)


register_model(tiny_net, name="tiny_net_wide", description="tiny_net, four times wider", width=24)


@register_model
def needs_16px(num_classes=10, in_channels=1, image_size=28, width=4):
    """A net for images of at least 16 pixels.

    The builder refuses smaller ones."""
    if image_size < 16:
        raise ValueError(f"image_size={image_size}: needs at least 16 pixels")
    return TinyNet(num_classes, in_channels, image_size, width)


@register_model
def flat_28(num_classes=10, in_channels=1, image_size=28):
    """A linear classifier that assumes 28x28 images whatever it is told."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))
'''

#: a class registered by the decorator, its classifier a 1x1 convolution (no nn.Linear)
ENTRY_POINT_PLUGIN = """
from torch import nn

from workbench.models import register_model


@register_model(name="conv_head", description="conv net with a 1x1-convolution classifier")
class ConvHead(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, image_size=28, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.classify(self.features(x)).mean(dim=(2, 3))
"""

BROKEN_PLUGIN = 'raise RuntimeError("broken on purpose\\nsecond line")\n'

#: what the subprocess reports, as JSON on its last line of output
REPORT = """
import json

import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.models import broken_plugins, create_model, describe_models, list_models, load_plugins
from workbench.validate import validate_run_config


def config_error(model, dataset="digits"):
    try:
        validate_run_config({"data": {"dataset": dataset}, "model": model})
    except ValueError as err:
        return str(err)
    return None


specs = {s.name: s for s in describe_models()}
conv_head = create_model("conv_head", num_classes=10, in_channels=1, image_size=8)
cli = CliRunner().invoke(app, ["models", "list", "--dataset", "digits", "--source", "wb_tinyplug"])
broken_cli = CliRunner().invoke(app, ["models", "list", "--dataset", "digits", "--source", "epnets"])
report = {
    "names": list_models(),
    "specs": {
        n: {"family": s.family, "description": s.description, "defaults": s.defaults,
            "fixed": list(s.fixed), "source": s.source, "builder": s.builder}
        for n, s in specs.items() if s.source != "zoo"
    },
    "plugins": [[p.name, p.target, p.origin, p.error] for p in load_plugins()],
    "broken": broken_plugins(),
    "conv_head_logits": list(conv_head(torch.zeros(2, 1, 8, 8)).shape),
    "errors": {
        "needs_16px": config_error({"name": "needs_16px"}),
        "needs_16px_on_shapes": config_error({"name": "needs_16px"}, "shapes"),
        "flat_28": config_error({"name": "flat_28"}),
        "tiny_net": config_error({"name": "tiny_net", "kwargs": {"width": 3}}),
        "tiny_net_wide": config_error({"name": "tiny_net_wide", "kwargs": {"width": 3}}),
        "unknown": config_error({"name": "tiny_nett"}),
    },
    "cli": [cli.exit_code, cli.output],
    "cli_epnets": [broken_cli.exit_code, broken_cli.output],
}
print(json.dumps(report))
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """One process with two plugins by ``WORKBENCH_PLUGINS`` (one of them broken) and one by an entry
    point (a ``.dist-info`` folder on ``PYTHONPATH``), reporting the registry, the config checks and
    ``workbench models list``."""
    root = tmp_path_factory.mktemp("plugins")
    _write(root / "wb_tinyplug.py", TINY_PLUGIN)
    _write(root / "wb_brokenplug.py", BROKEN_PLUGIN)
    _write(root / "wb_epplug" / "__init__.py", "")
    _write(root / "wb_epplug" / "nets.py", ENTRY_POINT_PLUGIN)
    info = root / "wb_epplug-0.1.dist-info"
    _write(info / "METADATA", "Metadata-Version: 2.1\nName: wb-epplug\nVersion: 0.1\n")
    _write(info / "entry_points.txt", "[workbench.models]\nepnets = wb_epplug.nets:ConvHead\n")
    script = _write(root / "report.py", REPORT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "WORKBENCH_PLUGINS": "wb_tinyplug, wb_brokenplug",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=root, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- plugins, in a process of their own ------------------------------------------------------------
def test_plugin_models_are_listed_with_their_kwargs_defaults_and_source(report):
    names = report["names"]
    zoo = [n for n in names if n not in report["specs"]]
    assert "resnet20" in zoo and names[: len(zoo)] == zoo  # the zoo first, then the plugins' models
    specs = report["specs"]
    assert set(specs) == {"tiny_net", "tiny_net_wide", "needs_16px", "flat_28", "conv_head"}
    assert specs["tiny_net"] == {
        "family": "tiny_net",
        "description": "tiny conv net without the zoo's conventions",
        "defaults": {"width": 6},
        "fixed": [],
        "source": "wb_tinyplug",
        "builder": "wb_tinyplug.tiny_net",
    }
    assert specs["tiny_net_wide"]["family"] == "tiny_net"
    assert specs["tiny_net_wide"]["defaults"] == {"width": 24} and specs["tiny_net_wide"]["fixed"] == [
        "width"
    ]
    # the description defaults to the first paragraph of the docstring, on one line
    assert specs["needs_16px"]["description"] == "A net for images of at least 16 pixels."
    assert specs["flat_28"]["defaults"] == {}
    # the entry point's name is the source of the models its import registered
    assert specs["conv_head"]["source"] == "epnets" and specs["conv_head"]["defaults"] == {"width": 8}
    assert specs["conv_head"]["builder"] == "wb_epplug.nets.ConvHead"
    assert report["conv_head_logits"] == [2, 10]


def test_a_broken_plugin_is_listed_with_its_one_line_error_and_the_rest_works(report):
    assert report["broken"] == [["wb_brokenplug", "RuntimeError: broken on purpose"]]
    assert report["plugins"] == [
        ["epnets", "wb_epplug.nets:ConvHead", "entry point", None],
        ["wb_tinyplug", "wb_tinyplug", "WORKBENCH_PLUGINS", None],
        ["wb_brokenplug", "wb_brokenplug", "WORKBENCH_PLUGINS", "RuntimeError: broken on purpose"],
    ]
    # a model name that is not found says which plugins failed (the model may be in one of them)
    unknown = report["errors"]["unknown"]
    assert unknown.startswith("model.name: unknown name 'tiny_nett' (did you mean 'tiny_net'?)"), unknown
    assert "broken plugins: wb_brokenplug (RuntimeError: broken on purpose)" in unknown
    assert "\n" not in unknown


def test_models_list_shows_plugin_models_and_broken_plugins(report):
    code, out = report["cli"]
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert {"tiny_net", "tiny_net_wide", "needs_16px", "flat_28"} <= set(rows)
    assert "conv_head" not in rows and "resnet20" not in rows  # --source keeps one source's models
    cells = [c.strip() for c in rows["tiny_net"].split("│")[1:-1]]
    # 6*(1*9+1) + 12*(6*9+1) + 10*(12+1) parameters: two 3x3 convs and the linear head, with biases
    assert cells[:4] == ["tiny_net", "tiny_net", "wb_tinyplug", f"{60 + 660 + 130:,}"]
    # a model that cannot be built for digits' 8x8 images is listed as such, not a crash
    assert "not for digits" in rows["needs_16px"] and "not for digits" in rows["flat_28"]
    assert "wb_brokenplug" in out and "RuntimeError: broken on purpose" in out
    code, out = report["cli_epnets"]
    assert code == 0 and "conv_head" in out and "epnets" in out, out


def test_a_model_that_does_not_fit_the_dataset_fails_at_config_time(report):
    errors = report["errors"]
    # the builder raises for 8-pixel images: named at model.name, with the builder's own reason
    msg = errors["needs_16px"]
    assert msg == (
        "model.name: model 'needs_16px' cannot be built for 1x8x8 inputs and 10 classes "
        "(ValueError: image_size=8: needs at least 16 pixels)"
    ), msg
    assert errors["needs_16px_on_shapes"] is None  # 32-pixel images fit
    # the forward pass fails on a (1, 1, 8, 8) input
    msg = errors["flat_28"]
    assert msg.startswith(
        "model.name: model 'flat_28' fails a forward pass on a 1x8x8 input (RuntimeError: "
    ), msg
    assert "\n" not in msg
    assert errors["tiny_net"] is None  # its own argument changed: still fine
    msg = errors["tiny_net_wide"]
    assert msg.startswith("model.kwargs.width: model 'tiny_net_wide' fixes width=24"), msg


# ---- registering in this process (the registry is put back after each test) ------------------------
@pytest.fixture
def restore_registry():
    """Put the registry back as it was after the test."""
    models, families = dict(model_registry._REGISTRY), dict(model_registry.FAMILIES)
    yield
    model_registry._REGISTRY.clear()
    model_registry._REGISTRY.update(models)
    model_registry.FAMILIES.clear()
    model_registry.FAMILIES.update(families)


def _import_source(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_plugin(tmp_path, restore_registry):
    """The tiny plugin's module, imported here (its models registered with it as their source)."""
    return _import_source(_write(tmp_path / "wb_tinyplug.py", TINY_PLUGIN), "wb_tinyplug")


def test_register_model_forms(restore_registry):
    @register_model
    def plain_net(num_classes=10, in_channels=1, image_size=28, depth=2, act="relu"):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))

    assert register_model(plain_net, name="plain_net_deep", depth=5) is plain_net  # returned unchanged
    specs = {s.name: s for s in describe_models()}
    assert specs["plain_net"].defaults == {"depth": 2, "act": "relu"} and specs["plain_net"].fixed == ()
    assert specs["plain_net_deep"].defaults == {"depth": 5, "act": "relu"}
    assert specs["plain_net_deep"].family == "plain_net" and specs["plain_net"].source == __name__
    assert list_models()[-2:] == ["plain_net", "plain_net_deep"]
    model = create_model("plain_net", num_classes=3, in_channels=2, image_size=4, act="gelu")
    assert model[1].in_features == 2 * 16 and model[1].out_features == 3
    with pytest.raises(ModelError, match=r"argument depth=3 is fixed by the name \(depth=5\)"):
        create_model("plain_net_deep", depth=3)
    with pytest.raises(ModelError, match="unknown argument 'width'; allowed: depth, act"):
        create_model("plain_net", width=3)


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda: register_model(lambda num_classes, in_channels: None, family="x"), "must take num_classes"),
        (
            lambda: register_model(lambda num_classes, in_channels, image_size, width: None, family="x"),
            "argument 'width' of .* has no default",
        ),
        (lambda: register_model(dict, name="x"), "expected an nn.Module class or a function"),
        (lambda: register_model("my_net"), "pass the name as name="),
        (lambda: register_model(nn.Linear, name="bad name"), "name='bad name': expected letters"),
        (lambda: register_model(lambda **kw: None), "family='<lambda>': expected letters.*pass family="),
        (
            lambda: register_model(model_registry.FAMILIES["cnn"], name="x", widht=3),
            "has no argument 'widht'",
        ),
    ],
)
def test_bad_registrations_are_refused_in_one_line(restore_registry, register, message):
    with pytest.raises(ModelError, match=message) as info:
        register()
    assert "\n" not in str(info.value)


def test_a_name_taken_by_other_code_is_refused_and_a_reimport_is_fine(tmp_path, tiny_plugin):
    def tiny_net(num_classes=10, in_channels=1, image_size=28):
        return nn.Linear(1, 1)

    with pytest.raises(
        ModelError, match=r"model 'tiny_net': family 'tiny_net' is already wb_tinyplug\.tiny_net"
    ):
        register_model(tiny_net)
    with pytest.raises(
        ModelError, match=r"model 'resnet20': already registered by .*CifarResNet \(source 'zoo'\)"
    ):
        register_model(tiny_net, name="resnet20", family="mine")
    from workbench.models.resnet import CifarResNet

    with pytest.raises(
        ModelError, match=r"model 'resnet20': already registered by .*CifarResNet \(source 'zoo'\)"
    ):
        register_model(CifarResNet, name="resnet20", family="resnet", depth=32)
    # a variant of a zoo family under a name of its own is fine, and listed as this module's
    register_model(CifarResNet, name="resnet26", family="resnet", description="ResNet-26", depth=26)
    spec = next(s for s in describe_models() if s.name == "resnet26")
    assert spec.source == __name__ and spec.defaults["depth"] == 26 and spec.family == "resnet"
    # the same module imported again (new objects, same code): its entries are replaced, no error
    again = _import_source(tmp_path / "wb_tinyplug.py", "wb_tinyplug")
    assert again.tiny_net is not tiny_plugin.tiny_net
    assert model_registry.FAMILIES["tiny_net"] is again.tiny_net
    assert list_models().count("tiny_net") == 1


# ---- the analyses on a model without stages/pool/fc ---------------------------------------------
@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A Trainer run of the tiny plugin's ``tiny_net`` on digits (1 epoch, 3 steps)."""
    from workbench.train import Trainer
    from workbench.validate import validate_run_config

    models, families = dict(model_registry._REGISTRY), dict(model_registry.FAMILIES)
    path = _write(tmp_path_factory.mktemp("inproc") / "wb_tinyplug.py", TINY_PLUGIN)
    try:
        module = _import_source(path, "wb_tinyplug")
        cfg = validate_run_config(
            {
                "kind": "student",
                "seed": 0,
                "data": {"dataset": "digits", "batch_size": 64},
                "model": {"name": "tiny_net", "kwargs": {"width": 4}},
                "optim": {"name": "sgd", "lr": 0.1},
                "train": {"epochs": 1, "max_steps": 3},
            }
        )
        result = Trainer(cfg, dataset=digits).run()
    finally:
        model_registry._REGISTRY.clear()
        model_registry._REGISTRY.update(models)
        model_registry.FAMILIES.clear()
        model_registry.FAMILIES.update(families)
    return module, result


def test_a_plugin_model_trains(trained):
    module, result = trained
    model = result.student
    assert isinstance(model, module.TinyNet) and model.body[0].out_channels == 4  # kwargs reached it
    assert len(result.history) == 1 and math.isfinite(result.history[-1]["train_loss"])


def _on_device(model: nn.Module, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """``tensors`` on the device the trained model lives on (CUDA where present)."""
    device = next(model.parameters()).device
    return [t.to(device) for t in tensors]


def test_taps_and_default_layers_by_module_path(trained, digits):
    model = trained[1].student.eval()
    (x,) = _on_device(model, digits.normalize(digits.test.images[:16]))
    # stages: the last module of each run of same-shaped outputs before pooling (the max-pool alone dropped)
    assert stage_layers(model, (1, 8, 8)) == ["body.1", "body.4"]
    assert penultimate_layer(model) == "head.2:input"
    logits, feats = capture(model, x, ["body.4", "head.2:input"])
    assert feats["body.4"].shape == (16, 8, 4, 4)
    torch.testing.assert_close(feats["head.2:input"], feats["body.4"].mean(dim=(2, 3)))
    with torch.inference_mode():
        torch.testing.assert_close(model.head[2](feats["head.2:input"]), logits)


def test_a_cam_of_a_plugin_model(trained, digits):
    from workbench.analysis.cam import compute_cams

    model = trained[1].student.eval()
    (x,) = _on_device(model, digits.normalize(digits.test.images[:8]))
    result = compute_cams(model, x, method="cam")
    assert result.layer == "body" and result.raw.shape == (8, 4, 4) and result.maps.shape == (8, 8, 8)
    # CAM (Zhou et al. 2016): the mean of the class's map plus its bias is the class's logit
    with torch.inference_mode():
        logits = model(x)
    t = torch.as_tensor(result.targets)
    expected = (logits.cpu()[torch.arange(8), t] - model.head[2].bias.detach().cpu()[t]).float()
    torch.testing.assert_close(torch.as_tensor(result.raw).mean(dim=(1, 2)), expected, rtol=1e-4, atol=1e-4)


def test_cka_and_a_landscape_on_a_plugin_model(trained, digits):
    from workbench.analysis.landscape import landscape_1d
    from workbench.analysis.similarity import cka_matrix

    model = trained[1].student.eval()
    x, y = _on_device(model, digits.normalize(digits.test.images[:64]), digits.test.labels[:64])
    result = cka_matrix(model, model, x, y)
    assert result.student_layers == result.teacher_layers == ["body.1", "body.4", "head.2:input"]
    torch.testing.assert_close(torch.as_tensor(result.matrix).diagonal(), torch.ones(3, dtype=torch.float64))
    line = landscape_1d(None, model, x, y, steps=3)
    with torch.inference_mode():
        loss = F.cross_entropy(model(x), y).item()
    assert line.alphas[1] == 0.0 and line.values["cross_entropy"][1] == pytest.approx(loss, rel=1e-4)


def test_a_model_without_linear_layers_gets_a_penultimate_default(digits):
    from workbench.analysis.similarity import default_layers

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    # the input of the last module with parameters: the 1x1 convolution that classifies
    assert penultimate_layer(model) == "2:input"
    assert default_layers(model, (1, 8, 8))[-1] == "2:input"
    with pytest.raises(ModelError, match="no layer with parameters"):
        penultimate_layer(nn.Sequential(nn.Flatten()))


def test_check_model_tries_the_forward_pass_and_falls_back_to_real_tensors(restore_registry):
    from workbench.models import check_model

    class ReadsAValue(nn.Module):
        """Reads a tensor's value in forward, which the meta device cannot do."""

        def __init__(self, num_classes=10, in_channels=1, image_size=28):
            super().__init__()
            self.fc = nn.Linear(in_channels * image_size**2, num_classes)

        def forward(self, x):
            scale = 1.0 + float(x.abs().max().item())
            return self.fc(x.flatten(1)) / scale

    @register_model
    def one_too_many(num_classes=10, in_channels=1, image_size=28):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes + 1))

    register_model(ReadsAValue, name="reads_a_value")
    state = torch.random.get_rng_state()
    check_model("reads_a_value", num_classes=3, in_channels=1, image_size=8)  # built for real: fine
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(
        ModelError, match=r"model 'one_too_many': returns shape \(1, 4\) .* expected logits of shape \(1, 3\)"
    ):
        check_model("one_too_many", num_classes=3, in_channels=1, image_size=8)
