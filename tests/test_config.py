from __future__ import annotations

import pytest

from workbench.config import (
    ConfigError,
    RunConfig,
    config_to_yaml,
    load_config,
    parse_method_expression,
    validate_config,
)


def test_defaults_validate():
    cfg = validate_config({})
    assert cfg.kind == "student"
    assert [m.name for m in cfg.distill.methods] == ["none"]


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"data": {"dataset": "mnits"}}, "data.dataset", "mnist"),
        ({"model": {"name": "resnet9000"}}, "model.name", "resnet20"),
        (
            {"kind": "distill", "teachers": [{"source": "shipped:mnist"}], "distill": {"methods": "kdd"}},
            "distill.methods.0.name",
            "kd",
        ),
        ({"optim": {"lr": -1}}, "optim.lr", "greater than 0"),
        ({"train": {"epochs": 0}}, "train.epochs", "greater than or equal to 1"),
        ({"train": {"device": "tpu"}}, "train.device", "cuda"),
        ({"trian": {}}, "trian", "unknown field"),
        ({"kind": "student", "distill": {"methods": "kd"}}, "distill.methods", "cross-entropy only"),
        ({"teachers": [{"source": "weights.safetensors"}]}, "teachers.0", "'model'"),
    ],
)
def test_bad_values_give_one_line_naming_the_field(data, field, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(field), msg
    assert expected in msg, msg


def test_unknown_names_list_known_ones():
    with pytest.raises(ConfigError, match=r"known: .*fashion-mnist.*mnist"):
        validate_config({"data": {"dataset": "nope"}})


def test_method_expression_parsing():
    assert parse_method_expression("kd") == [{"name": "kd", "weight": 1.0}]
    assert parse_method_expression("0.9*kd + 1000*at") == [
        {"name": "kd", "weight": 0.9},
        {"name": "at", "weight": 1000.0},
    ]
    with pytest.raises(ValueError, match="not a number"):
        parse_method_expression("x*kd")


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = validate_config({"kind": "teacher", "seed": 3, "model": {"name": "cnn_small"}})
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg
    changed = load_config(path, ["train.epochs=7", "optim.name=adamw", "data.augment.hflip=false", "name=x"])
    assert changed.train.epochs == 7 and changed.optim.name == "adamw" and changed.name == "x"
    assert isinstance(changed, RunConfig)


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"^train.epochs:"):
        load_config(None, ["train.epochs=many"])


def test_example_configs_validate():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    assert files, "configs/ holds example run configs"
    for f in files:
        if f.name.startswith("sweep"):
            continue
        load_config(f)
