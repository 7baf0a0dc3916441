"""The config schema: types, ranges, finite numbers, consistency, YAML limits, one-line errors.

Registry checks (names, options, method hyperparameters) are in tests/test_validate.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.config import (
    MAX_SEED,
    ConfigError,
    RunConfig,
    apply_overrides,
    config_to_yaml,
    parse_config,
    parse_method_expression,
    shown,
    validate_config,
)

ROOT = Path(__file__).resolve().parent.parent


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < 400, msg
    return msg


def test_defaults_validate():
    cfg = validate_config({})
    assert cfg.kind == "student"
    assert [m.name for m in cfg.distill.methods] == ["none"]


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"optim": {"lr": -1}}, "optim.lr", "greater than 0"),
        ({"train": {"epochs": 0}}, "train.epochs", "greater than or equal to 1"),
        ({"train": {"device": "tpu"}}, "train.device", "cuda"),
        ({"train": {"device": "cudaX"}}, "train.device", "cuda:N"),
        ({"trian": {}}, "trian", "unknown field"),
        ({"kind": "student", "distill": {"methods": "kd"}}, "distill.methods", "cross-entropy only"),
        ({"teachers": [{"source": "weights.safetensors"}]}, "teachers[0]", "'model'"),
        ({"teachers": [{}]}, "teachers[0].source", "required field is missing"),
        ({"kind": "distill", "distill": {"methods": []}}, "distill.methods", "at least one method"),
        (
            {"kind": "distill", "distill": {"methods": [{"name": "kd", "weight": -1}]}},
            "distill.methods[0].weight",
            "0",
        ),
    ],
)
def test_bad_values_give_one_line_naming_the_field(data, field, expected):
    msg = _error(data)
    assert msg.startswith(field), msg
    assert expected in msg, msg


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"optim": {"lr": float("inf")}}, "optim.lr"),
        ({"optim": {"lr": "1e400"}}, "optim.lr"),  # PyYAML reads 1e400 as a string; pydantic makes it inf
        ({"optim": {"lr": float("nan")}}, "optim.lr"),
        ({"optim": {"weight_decay": float("inf")}}, "optim.weight_decay"),
        ({"optim": {"weight_decay": float("nan")}}, "optim.weight_decay"),
        ({"distill": {"ce_weight": float("inf")}}, "distill.ce_weight"),
        ({"distill": {"ce_weight": 1e300}}, "distill.ce_weight"),
        (
            {"kind": "distill", "distill": {"methods": [{"name": "kd", "weight": float("nan")}]}},
            "distill.methods[0].weight",
        ),
        ({"kind": "distill", "distill": {"methods": "1e400*kd"}}, "distill.methods"),
        ({"kind": "distill", "distill": {"methods": "nan*kd"}}, "distill.methods"),
        ({"schedule": {"warmup_epochs": float("inf")}}, "schedule.warmup_epochs"),
        ({"schedule": {"min_lr": float("nan")}}, "schedule.min_lr"),
        ({"data": {"augment": {"mixup_alpha": float("inf")}}}, "data.augment.mixup_alpha"),
        ({"train": {"grad_clip": float("inf")}}, "train.grad_clip"),
        ({"train": {"label_smoothing": float("nan")}}, "train.label_smoothing"),
    ],
)
def test_non_finite_and_huge_numbers_are_refused(data, field):
    msg = _error(data)
    assert msg.startswith(field), msg


def test_min_lr_above_lr_is_refused_and_equal_is_fine():
    msg = _error({"optim": {"lr": 0.01}, "schedule": {"min_lr": 0.1}})
    assert msg.startswith("schedule.min_lr:") and "optim.lr" in msg, msg
    assert validate_config({"optim": {"lr": 0.01}, "schedule": {"min_lr": 0.01}}).schedule.min_lr == 0.01


@pytest.mark.parametrize(
    "betas", [[1.0, 0.9], [0.9, -0.1], [float("nan"), 0.9], [0.9], [0.9, 0.9, 0.9], "fast", [True, 0.9]]
)
def test_bad_betas(betas):
    assert _error({"optim": {"betas": betas}}).startswith("optim.betas")


def test_betas_in_range_pass():
    assert validate_config({"optim": {"betas": [0.0, 0.99]}}).optim.betas == (0.0, 0.99)


@pytest.mark.parametrize("seed", [MAX_SEED + 1, 2**64, 10**40, -1, True, 1.5, "many"])
def test_bad_seeds(seed):
    assert _error({"seed": seed}).startswith("seed:")


def test_largest_seed_passes():
    assert validate_config({"seed": MAX_SEED}).seed == MAX_SEED


def test_booleans_are_not_numbers():
    for data, field in (
        ({"train": {"epochs": True}}, "train.epochs"),
        ({"optim": {"lr": True}}, "optim.lr"),
        ({"data": {"batch_size": False}}, "data.batch_size"),
    ):
        assert _error(data).startswith(field)


def test_schema_alone_does_not_know_the_registries():
    # names are checked by workbench.validate, one layer up; the schema accepts any string
    cfg = validate_config({"data": {"dataset": "mnits"}, "model": {"name": "resnet9000"}})
    assert cfg.data.dataset == "mnits" and cfg.model.name == "resnet9000"


def test_error_messages_show_values_shortened():
    msg = _error({"train": {"device": "x" * 1_000_000}})
    assert msg.startswith("train.device:") and "..." in msg and len(msg) < 200, msg
    msg = _error({"seed": 10**4000})  # beyond what repr may print whole
    assert msg.startswith("seed:") and len(msg) < 200, msg
    msg = _error({"name": "a\nb" * 1000})
    assert msg.startswith("name:") and len(msg) < 400, msg
    msg = _error({"bad\nkey" * 100: 1})
    assert msg.endswith("unknown field") and len(msg) < 200, msg


def test_shown_is_short_and_safe():
    loop: list = []
    loop.append(loop)
    assert len(shown("x" * 10_000)) <= 60
    assert len(shown(list(range(10_000)))) <= 60
    assert shown(loop)  # a self-referencing list does not recurse forever
    assert "\n" not in shown("a\nb")


def test_structures_no_config_has_are_refused():
    deep: dict = {}
    node = deep
    for _ in range(60):
        node["x"] = {}
        node = node["x"]
    assert "nested deeper than 50" in _error({"data": {"options": deep}})
    loop: dict = {}
    loop["self"] = loop
    assert "contains itself" in _error({"model": {"kwargs": loop}})
    assert "more than" in _error({"links": {str(i): "x" for i in range(200_000)}})
    assert _error(["kind", "teacher"]).startswith("config: expected a mapping")


def test_method_expression_parsing():
    assert parse_method_expression("kd") == [{"name": "kd", "weight": 1.0}]
    assert parse_method_expression("0.9*kd + 1000*at") == [
        {"name": "kd", "weight": 0.9},
        {"name": "at", "weight": 1000.0},
    ]
    with pytest.raises(ValueError, match="not a number"):
        parse_method_expression("x*kd")
    with pytest.raises(ValueError, match="not a finite number"):
        parse_method_expression("inf*kd")
    with pytest.raises(ValueError, match="empty term"):
        parse_method_expression("kd + ")
    with pytest.raises(ValueError) as info:
        parse_method_expression("y" * 5000 + "*kd")
    assert len(str(info.value)) < 200


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    cfg = validate_config({"kind": "teacher", "seed": 3, "model": {"name": "cnn_small"}})
    path.write_text(config_to_yaml(cfg))
    again = parse_config(path)
    assert again == cfg
    changed = parse_config(path, ["train.epochs=7", "optim.name=adamw", "data.augment.hflip=false", "name=x"])
    assert changed.train.epochs == 7 and changed.optim.name == "adamw" and changed.name == "x"
    assert isinstance(changed, RunConfig)
    assert parse_config(None, ["optim.lr=1e-3"]).optim.lr == pytest.approx(1e-3)
    assert parse_config(None, kind="teacher").kind == "teacher"


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        parse_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        parse_config(bad)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_config(None, ["train..epochs=3"])
    with pytest.raises(ConfigError, match=r"^train.epochs:"):
        parse_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="is not a section"):
        parse_config(None, ["train.epochs=3", "train.epochs.x=1"])


def _file_error(tmp_path, content: bytes | str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        parse_config(path)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"name: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def test_hostile_yaml_is_refused_in_one_line(tmp_path):
    assert "aliases" in _file_error(tmp_path, _alias_bomb(12, 10))  # 110 aliases
    # few aliases, but the expansion explodes: 7 levels x 6 aliases = 36 aliases, 6**7 leaves
    assert "size limit" in _file_error(tmp_path, _alias_bomb(7, 6))
    assert "alias to itself" in _file_error(tmp_path, "links: &a [*a]\n")
    assert "nested deeper than 50" in _file_error(
        tmp_path, "data:\n  options: " + "[" * 200 + "]" * 200 + "\n"
    )
    assert "nested deeper than 50" in _file_error(tmp_path, "x: " + "{a: " * 5000 + "1" + "}" * 5000)
    msg = _file_error(tmp_path, "name: caf\xe9\n".encode("latin-1"))
    assert msg.endswith("config.yaml: not UTF-8 text"), msg
    assert "top level" in _file_error(tmp_path, "- kind\n- teacher\n")
    assert "top level" in _file_error(tmp_path, "just text\n")
    assert "top level" in _file_error(tmp_path, "42\n")
    assert "bytes is larger than" in _file_error(tmp_path, "name: " + "x" * 1_100_000 + "\n")
    assert "not valid YAML" in _file_error(tmp_path, "a: 1\n---\nb: 2\n")
    assert "not valid YAML" in _file_error(tmp_path, "x: !!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in _file_error(tmp_path, "when: 2001-13-45\n")
    assert "not valid YAML" in _file_error(tmp_path, "name: a\x00b\n")


def test_a_document_with_modest_aliases_still_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: &o {lr: 0.01}\nlinks: {a: x, b: x}\n")
    assert parse_config(path).optim.lr == 0.01


def test_override_values_obey_the_yaml_limits():
    with pytest.raises(ConfigError, match="aliases") as info:
        apply_overrides({}, ["links=" + _alias_bomb(12, 10).replace("\n", "\n")])
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="nested deeper"):
        apply_overrides({}, ["links=" + "[" * 100 + "]" * 100])
    # a value that is not valid YAML is kept as text, as before
    assert apply_overrides({}, ["name=a: b: c"]) == {"name": "a: b: c"}


def test_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert parse_config(path) == validate_config({})


def test_config_imports_nothing_above_it():
    code = (
        "import sys, json, workbench.config; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('workbench'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == ["workbench", "workbench.config"], loaded
    # and not lazily either: no import of the workbench anywhere in the module
    tree = ast.parse((ROOT / "workbench" / "config.py").read_text(encoding="utf-8"))
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [m for m in imported if m and m.startswith("workbench")], imported
