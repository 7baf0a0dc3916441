"""Config-time registry checks (workbench.validate) and a fuzz of hostile configs."""

from __future__ import annotations

import copy
import math
import random
import string
from pathlib import Path

import pytest
import yaml

from workbench.config import ConfigError, validate_config
from workbench.distill import list_methods, method_schema, parse_params
from workbench.validate import (
    check_config,
    check_method_params,
    load_config,
    methods_needing_teacher,
    validate_run_config,
)

ROOT = Path(__file__).resolve().parent.parent

KD = {
    "kind": "distill",
    "teachers": [{"source": "shipped:mnist"}],
    "distill": {"methods": [{"name": "kd", "weight": 0.9, "params": {"temperature": 4.0}}]},
}


def _one_line_error(data, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_run_config(data, **kw)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def _with(base: dict, **changes) -> dict:
    out = copy.deepcopy(base)
    out.update(copy.deepcopy(changes))
    return out


def test_misspelt_method_parameter_fails_at_load_config(tmp_path):
    path = tmp_path / "kd.yaml"
    path.write_text(
        "kind: distill\nteachers: [{source: 'shipped:mnist'}]\n"
        "distill:\n  methods:\n    - name: kd\n      params: {temprature: 4}\n"
    )
    validate_config(yaml.safe_load(path.read_text()))  # the schema alone lets it through
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("distill.methods[0].params.temprature: unknown parameter"), msg
    assert "(did you mean 'temperature'?)" in msg, msg


def test_valid_configs_pass_unchanged():
    cfg = validate_run_config(KD)
    assert cfg == validate_config(KD)
    assert check_config(cfg) is cfg


def test_example_configs_load():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "configs/ holds example run configs"
    loaded = [load_config(f) for f in files if not f.name.startswith("sweep")]
    assert len(loaded) == len(files) - 1
    assert (
        load_config(ROOT / "configs" / "mnist_kd.yaml", ["train.epochs=3"], kind="student").train.epochs == 3
    )


# ---- data ---------------------------------------------------------------------------------------


def test_dataset_names():
    assert validate_run_config({"data": {"dataset": "digits"}}).data.dataset == "digits"
    msg = _one_line_error({"data": {"dataset": "mnits"}})
    assert msg.startswith("data.dataset: unknown name 'mnits' (did you mean 'mnist'?)"), msg
    assert "fashion-mnist" in msg


def test_dataset_options():
    cfg = validate_run_config({"data": {"dataset": "digits", "options": {"seed": 3, "test_fraction": 0.3}}})
    assert cfg.data.options == {"seed": 3, "test_fraction": 0.3}
    msg = _one_line_error({"data": {"dataset": "digits", "options": {"seeed": 3}}})
    assert msg.startswith("data.options.seeed: unknown option of dataset 'digits' (did you mean 'seed'?)"), (
        msg
    )
    msg = _one_line_error({"data": {"dataset": "mnist", "options": {"n_train": 3}}})
    assert msg.startswith("data.options.n_train:") and "accepted: checksums, mirror" in msg, msg


def test_datasets_read_from_files_need_a_root():
    assert validate_run_config({"data": {"dataset": "cifar10", "root": "somewhere"}}).data.root == "somewhere"
    assert _one_line_error({"data": {"dataset": "cifar10"}}).startswith("data.root:")
    assert _one_line_error({"data": {"dataset": "imagefolder", "root": "  "}}).startswith("data.root:")


# ---- models -------------------------------------------------------------------------------------


def test_model_names_and_kwargs():
    assert validate_run_config({"model": {"name": "resnet", "kwargs": {"depth": 14}}}).model.kwargs == {
        "depth": 14
    }
    assert (
        validate_run_config({"model": {"name": "resnet20", "kwargs": {"depth": 20}}}).model.name == "resnet20"
    )
    msg = _one_line_error({"model": {"name": "resnet9000"}})
    assert msg.startswith("model.name: unknown name 'resnet9000'") and "resnet20" in msg, msg
    msg = _one_line_error({"model": {"name": "resnet", "kwargs": {"dept": 14}}})
    assert msg.startswith("model.kwargs.dept: unknown argument of model 'resnet' (did you mean 'depth'?)"), (
        msg
    )
    msg = _one_line_error({"model": {"name": "resnet20", "kwargs": {"depth": 32}}})
    assert msg.startswith("model.kwargs.depth: model 'resnet20' fixes depth=20"), msg


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"name": "resnet", "kwargs": {"depth": 15}}, "model.kwargs.depth"),  # not 6n+2
        ({"name": "cnn", "kwargs": {"channels": "wide"}}, "model.kwargs.channels"),
        ({"name": "mlp", "kwargs": {"dropout": 1.5}}, "model.kwargs.dropout"),
        ({"name": "vit_tiny", "kwargs": {"patch_size": 5}}, "model.kwargs.patch_size"),  # 28 % 5 != 0
        ({"name": "vit_tiny", "kwargs": {"dim": 30, "heads": 4}}, "model.kwargs.heads"),
    ],
)
def test_model_argument_values_are_checked_by_the_factory(model, field):
    msg = _one_line_error({"model": model})
    assert msg.startswith(field), msg


def test_model_check_allocates_nothing_and_keeps_the_rng():
    import torch

    state = torch.random.get_rng_state()
    validate_run_config({"model": {"name": "wrn_40_2"}, "data": {"dataset": "shapes"}})
    assert torch.equal(state, torch.random.get_rng_state())


def test_the_input_shape_comes_from_the_dataset():
    # patch 4 divides 32 (shapes) but not 28 (mnist)
    assert validate_run_config(
        {"data": {"dataset": "shapes"}, "model": {"name": "vit_tiny", "kwargs": {"patch_size": 4}}}
    )
    assert _one_line_error({"model": {"name": "vit_tiny", "kwargs": {"patch_size": 8}}}).startswith(
        "model.kwargs.patch_size"
    )


# ---- teachers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "teacher",
    [
        {"source": "shipped:mnist"},
        {"source": "run:20260101-kd-ab12"},
        {"source": "teacher:my-resnet.v2"},
        {"source": "weights/teacher.safetensors", "model": {"name": "cnn_large"}},
        {"source": "teacher.PT", "model": {"name": "resnet", "kwargs": {"depth": 8}}},
    ],
)
def test_good_teacher_sources(teacher):
    assert validate_run_config(_with(KD, teachers=[teacher])).teachers[0].source == teacher["source"]


@pytest.mark.parametrize(
    ("teacher", "field", "expected"),
    [
        ({"source": "shipped:mnsit"}, "teachers[0].source", "did you mean 'mnist'?"),
        ({"source": "shipped:"}, "teachers[0].source", "needs a teacher name"),
        ({"source": "run:"}, "teachers[0].source", "run id"),
        ({"source": "run:../../etc"}, "teachers[0].source", "run id"),
        ({"source": "teacher:../x"}, "teachers[0].source", "name of a teacher of the run store"),
        ({"source": "teacher:"}, "teachers[0].source", "name of a teacher of the run store"),
        ({"source": "teacher.txt", "model": {"name": "cnn"}}, "teachers[0].source", ".safetensors"),
        ({"source": "t.pt", "model": {"name": "cnnn"}}, "teachers[0].model.name", "did you mean 'cnn'?"),
        (
            {"source": "t.pt", "model": {"name": "cnn", "kwargs": {"chanels": [8]}}},
            "teachers[0].model.kwargs.chanels",
            "channels",
        ),
    ],
)
def test_bad_teacher_sources(teacher, field, expected):
    msg = _one_line_error(_with(KD, teachers=[teacher]))
    assert msg.startswith(field) and expected in msg, msg


# ---- methods ------------------------------------------------------------------------------------


def test_method_names():
    msg = _one_line_error(_with(KD, distill={"methods": "kdd"}))
    assert msg.startswith("distill.methods[0].name: unknown name 'kdd' (did you mean 'kd'?)"), msg
    assert validate_run_config(_with(KD, distill={"methods": "0.5*kd + at"})).distill.methods[1].name == "at"


@pytest.mark.parametrize(
    ("method", "field", "expected"),
    [
        (
            {"name": "kd", "params": {"temperature": -1}},
            "params.temperature",
            "expected a positive number, got -1",
        ),
        ({"name": "kd", "params": {"temperature": 0}}, "params.temperature", "expected a positive number"),
        ({"name": "kd", "params": {"temperature": 101}}, "params.temperature", "expected a number <= 100"),
        (
            {"name": "kd", "params": {"temperature": "hot"}},
            "params.temperature",
            "expected a number, got 'hot'",
        ),
        ({"name": "kd", "params": {"temperature": float("nan")}}, "params.temperature", "expected a number"),
        ({"name": "kd", "params": {"temperature": True}}, "params.temperature", "expected a number"),
        ({"name": "at", "params": {"beta": float("inf")}}, "params.beta", "expected a number, got inf"),
        ({"name": "at", "params": {"beta": -3}}, "params.beta", "expected a non-negative number"),
        ({"name": "ban", "params": {"generations": 2.5}}, "params.generations", "expected an integer"),
        ({"name": "ban", "params": {"generations": 0}}, "params.generations", "expected an integer >= 1"),
        (
            {"name": "multi_teacher", "params": {"weighting": "max"}},
            "params.weighting",
            "one of 'mean', 'confidence'",
        ),
        ({"name": "bdkd", "params": {"adaptive": "yes please"}}, "params.adaptive", "true or false"),
        ({"name": "fitnet", "params": {"student_layers": []}}, "params.student_layers", "at least 1"),
        ({"name": "fitnet", "params": {"student_layers": [3]}}, "params.student_layers[0]", "a string"),
        (
            {"name": "fitnet", "params": {"student_layers": "stage1"}},
            "params.student_layers",
            "a list or null",
        ),
        ({"name": "crd", "params": {"nce_k": 0}}, "params.nce_k", "expected an integer >= 1"),
        ({"name": "ema", "params": {"momentum": 1.0}}, "params.momentum", "expected a number < 1"),
        ({"name": "takd", "params": {}}, "params.assistants", "required parameter of method 'takd'"),
        (
            {"name": "takd", "params": {"assistants": [{"model": "cnn", "kwarg": {}}]}},
            "params.assistants[0].kwarg",
            "'kwargs'",
        ),
        ({"name": "kd", "params": {"temprature": 4}}, "params.temprature", "(did you mean 'temperature'?)"),
        ({"name": "none", "params": {"temperature": 4}}, "params.temperature", "accepted: none"),
    ],
)
def test_method_params_against_the_schema(method, field, expected):
    msg = _one_line_error(_with(KD, distill={"methods": [method]}))
    assert msg.startswith(f"distill.methods[0].{field}:"), msg
    assert expected in msg, msg


def test_good_method_params_pass():
    for method in (
        {"name": "kd", "params": {"temperature": 100}},
        {"name": "kd", "params": {"temperature": "1e-3"}},  # how PyYAML reads 1e-3
        {"name": "fitnet", "params": {"student_layers": None}},
        {"name": "fitnet", "params": {"student_layers": ["features.0"], "teacher_layers": ["features.0"]}},
        {"name": "ban", "params": {"generations": 2.0}},
        {"name": "crd", "params": {"nce_k": None, "nce_t": 0.1}},
        {"name": "takd", "params": {"assistants": [{"model": "cnn", "kwargs": {"channels": [8, 16]}}]}},
    ):
        assert (
            validate_run_config(_with(KD, distill={"methods": [method]})).distill.methods[0].name
            == method["name"]
        )


def test_every_method_with_default_params_passes():
    for name in list_methods():
        if name == "takd":
            continue  # its assistants are required
        check_method_params(name, {}, field="p")


_CANDIDATES = [-1, 0, 1, 2, 0.5, 0.999, 1.0, 7.5, 64, 101, 1e4, 1e7, "x", "mean", "kl", None, [], ["a"], {}]


def test_schema_check_agrees_with_the_method_on_sensible_values():
    """What the method accepts (finite, non-boolean values) the check accepts; what it refuses,
    the check refuses naming the parameter."""
    compared = 0
    for name in list_methods():
        for key in method_schema(name).get("properties", {}):
            for value in _CANDIDATES:
                params = {key: value}
                if name == "takd" and key != "assistants":
                    params["assistants"] = [{"model": "cnn"}]
                try:
                    parse_params(name, params)
                    method_ok = True
                except ValueError:
                    method_ok = False
                try:
                    check_method_params(name, params, field="p")
                    check_ok, msg = True, ""
                except ConfigError as err:
                    check_ok, msg = False, str(err)
                assert check_ok == method_ok, (name, key, value, msg)
                if not check_ok:
                    assert msg.startswith(f"p.{key}"), msg
                compared += 1
    assert compared > 500


def test_methods_needing_a_teacher():
    assert methods_needing_teacher(validate_config(KD)) == ["kd"]
    ema = validate_config({"kind": "distill", "distill": {"methods": "ema + kd"}})
    assert methods_needing_teacher(ema) == []  # ema brings its own mean teacher
    assert (
        validate_run_config({"kind": "distill", "distill": {"methods": "ema"}}).distill.methods[0].name
        == "ema"
    )
    assert (
        validate_run_config({"kind": "distill", "distill": {"methods": "dml"}}).distill.methods[0].name
        == "dml"
    )
    no_teacher = _with(KD, teachers=[])
    msg = _one_line_error(no_teacher)
    assert msg.startswith("teachers: method 'kd' needs a teacher"), msg
    assert validate_run_config(no_teacher, require_teacher=False).teachers == []


# ---- fuzz ---------------------------------------------------------------------------------------

_NUMERIC = [
    "seed", "data.batch_size", "data.eval_batch_size", "data.train_subset", "data.augment.crop_padding",
    "data.augment.mixup_alpha", "data.augment.cutmix_alpha", "distill.ce_weight", "distill.cache_budget_mb",
    "optim.lr", "optim.momentum", "optim.weight_decay", "schedule.warmup_epochs", "schedule.gamma",
    "schedule.min_lr", "train.epochs", "train.max_steps", "train.label_smoothing", "train.grad_clip",
    "train.eval_every",
]  # fmt: skip
_BOOLS = [
    "data.download",
    "data.augment.hflip",
    "optim.nesterov",
    "distill.teacher_cache",
    "train.snapshot_every_epoch",
]
_CHOICES = ["kind", "train.device", "train.memory_format", "optim.name", "schedule.name"]
_NAMES = ["data.dataset", "model.name"]
_FREE_TEXT = ["name", "data.root"]
_DICTS = ["data.options", "model.kwargs", "links"]
_SECTIONS = ["data", "model", "distill", "optim", "schedule", "train", "data.augment"]


def _junk(rng: random.Random, n: int | None = None) -> str:
    n = n or rng.randint(1, 30)
    return "#" + "".join(rng.choice(string.ascii_letters + string.digits + " _-:") for _ in range(n))


def _set(data: dict, path: str, value) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _bad_number(rng: random.Random):
    return rng.choice(
        [math.nan, math.inf, -math.inf, 1e400, 10**30, -5, -1e-9, True, _junk(rng), [1], {"a": 1}, 1e308 * 10]
    )


def _random_deletion(rng: random.Random, data: dict) -> None:
    """Delete a random key anywhere (may or may not make the config invalid)."""
    node, parent_key = data, None
    for _ in range(rng.randint(1, 3)):
        if not isinstance(node, dict) or not node:
            break
        parent_key = rng.choice(sorted(node, key=str))
        if isinstance(node[parent_key], dict) and node[parent_key] and rng.random() < 0.5:
            node = node[parent_key]
        else:
            break
    if isinstance(node, dict) and parent_key in node:
        del node[parent_key]


def _bad_dict(rng: random.Random, base: dict) -> dict:
    """One config that is certainly wrong: random deletions first, then one sure mutation."""
    data = copy.deepcopy(base)
    for _ in range(rng.randint(0, 2)):
        _random_deletion(rng, data)
    kind = rng.randrange(14)
    if kind == 0:
        _set(data, rng.choice(_NUMERIC), _bad_number(rng))
    elif kind == 1:
        _set(data, rng.choice(_BOOLS), rng.choice([5, _junk(rng), [], {"x": 1}, 0.5]))
    elif kind == 2:
        _set(data, rng.choice(_CHOICES), rng.choice([_junk(rng), 7, [], {"a": "b"}, None]))
    elif kind == 3:
        _set(data, rng.choice(_NAMES), rng.choice([_junk(rng), _junk(rng, 5000), 3, [], None]))
    elif kind == 4:
        _set(data, rng.choice(_FREE_TEXT), rng.choice([[], {"a": 1}, 3.5, [_junk(rng)]]))
    elif kind == 5:
        path = rng.choice(_DICTS)
        _set(data, path, rng.choice([_junk(rng), [1, 2], 7]) if path != "links" else {"a": [1]})
    elif kind == 6:  # an unknown key at a section (options/kwargs get them checked by the registries)
        section = rng.choice([*_SECTIONS, "data.options", "model.kwargs", ""])
        key = "zz" + _junk(rng, 6)
        _set(data, f"{section}.{key}" if section else key, rng.choice([1, "x", None]))
    elif kind == 7:
        _set(data, rng.choice(_SECTIONS), rng.choice([_junk(rng), 3, [1, 2], True]))
    elif kind == 8:  # a method with bad hyperparameters, or a bad method list
        data["kind"] = "distill"
        data["teachers"] = [{"source": "shipped:mnist"}]
        choice = rng.randrange(5)
        if choice == 0:
            methods = [{"name": "kd", "params": {"temperature": _bad_number(rng)}}]
        elif choice == 1:
            methods = [{"name": rng.choice(["kd", "at", "dkd"]), "params": {_junk(rng, 8): 1}}]
        elif choice == 2:
            methods = [{"name": "kd", "weight": _bad_number(rng)}]
        elif choice == 3:
            methods = rng.choice(["kd + ", "x*kd", "inf*kd", "", "kd + + at", "1e999*kd", _junk(rng)])
        else:
            methods = rng.choice([[], [3], ["kd"], {"name": "kd"}, [{"name": "kd", "params": [1]}]])
        _set(data, "distill.methods", methods)
    elif kind == 9:  # a teacher with a bad source
        data["kind"] = "distill"
        _set(data, "distill.methods", "kd")
        data["teachers"] = [
            rng.choice(
                [
                    {"source": "shipped:" + _junk(rng)},
                    {"source": "shipped:"},
                    {"source": "run:" + rng.choice(["", "../x", "/abs", " id"])},
                    {"source": _junk(rng) + ".txt", "model": {"name": "cnn"}},
                    {"source": "t.safetensors"},
                    {"source": 5},
                    {},
                    "shipped:mnist",
                ]
            )
        ]
    elif kind == 10:  # a distillation method needing a teacher, none given
        data["kind"] = "distill"
        _set(data, "distill.methods", rng.choice(["kd", "at", "0.5*kd + sp"]))
        data["teachers"] = []
    elif kind == 11:  # cross-field inconsistencies
        if rng.random() < 0.5:
            _set(data, "optim.lr", 0.01)
            _set(data, "schedule.min_lr", rng.choice([0.02, 1.0, 5]))
        else:
            data["kind"] = rng.choice(["teacher", "student"])
            _set(data, "distill.methods", "kd")
    elif kind == 12:  # optimizer betas and seeds
        if rng.random() < 0.5:
            _set(
                data,
                "optim.betas",
                rng.choice([[1.0, 0.5], [0.9], "x", [math.nan, 0.9], [0.9, 0.9, 0.9], None]),
            )
        else:
            data["seed"] = rng.choice([2**63, 2**64 + 1, -1, 10**100, 0.5, "s", None])
    else:  # model kwargs the zoo refuses
        data["model"] = rng.choice(
            [
                {"name": "resnet", "kwargs": {"depth": rng.choice([7, 9, 15, -2, "deep"])}},
                {"name": "resnet20", "kwargs": {"depth": 56}},
                {"name": "cnn", "kwargs": {_junk(rng, 6): 1}},
                {"name": "mlp", "kwargs": {"hidden": rng.choice([[], "x", [0], [-4]])}},
                {"name": "vit_tiny", "kwargs": {"heads": 0}},
            ]
        )
        data["data"] = {"dataset": "mnist"}
    return data


def _deep(rng: random.Random) -> str:
    depth = rng.randint(51, 400)
    if rng.random() < 0.5:
        return "data:\n  options:\n    x: " + "[" * depth + "1" + "]" * depth + "\n"
    lines, indent = ["links:"], "  "
    for i in range(depth):
        lines.append(f"{indent * (i + 1)}k{i}:")
    lines.append(f"{indent * (depth + 1)}v")
    return "\n".join(lines) + "\n"


def _bomb(rng: random.Random) -> str:
    levels, width = rng.randint(5, 12), rng.randint(6, 12)
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"links: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _bad_text(rng: random.Random, good: str) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return _bomb(rng).encode()
    if kind == 1:
        return _deep(rng).encode()
    if kind == 2:
        return rng.choice(
            ["- a\n- b\n", "42\n", "just words\n", "3.5\n", "[1, 2]\n", "'quoted'\n", "true\n"]
        ).encode()
    if kind == 3:  # not UTF-8
        raw = bytearray(good.encode())
        raw.insert(rng.randrange(len(raw) + 1), rng.choice([0xFF, 0xFE, 0xC3, 0x80, 0xE9]))
        return bytes(raw)
    if kind == 4:  # broken syntax
        return rng.choice(
            [
                good + "\ntrain: [unclosed\n",
                good.replace("\nkind:", "\nkind", 1),
                "a: 1\n---\nb: 2\n",
                "\tkind: x\n",
                "{a: b\n",
            ]
        ).encode()
    if kind == 5:
        return rng.choice(["links: &a [*a]\n", "data: &d {options: *d}\n", "x: &m {<<: *m}\n"]).encode()
    if kind == 6:  # random bytes around a mapping entry that cannot be right
        noise = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 200)))
        return (f"zz{_junk(rng, 4)}: 1\n" + noise).encode()
    if kind == 7:  # tags and scalars SafeLoader would refuse or could not build
        return rng.choice(
            [
                "x: !!python/object/apply:os.system ['true']\n",
                "when: 2001-13-45\n",
                "x: !custom 3\n",
                "seed: !!int abc\n",
            ]
        ).encode()
    return good.replace("kind:", "kind: " + _junk(rng) + "\nkind_:", 1).encode()


def test_fuzz_hostile_configs_give_one_line_config_errors(tmp_path):
    rng = random.Random(20260808)
    bases = [
        yaml.safe_load(f.read_text())
        for f in sorted((ROOT / "configs").glob("*.yaml"))
        if "sweep" not in f.name
    ]
    bases.append(copy.deepcopy(KD))
    goods = [f.read_text() for f in sorted((ROOT / "configs").glob("*.yaml")) if "sweep" not in f.name]
    path = tmp_path / "config.yaml"
    counts = {"dict": 0, "file": 0, "text": 0, "override": 0}
    for i in range(1000):
        mode = rng.random()
        try:
            if mode < 0.4:
                data = _bad_dict(rng, rng.choice(bases))
                counts["dict"] += 1
                validate_run_config(data)
            elif mode < 0.6:
                data = _bad_dict(rng, rng.choice(bases))
                counts["file"] += 1
                path.write_text(yaml.safe_dump(data, allow_unicode=True))
                load_config(path)
            elif mode < 0.9:
                counts["text"] += 1
                path.write_bytes(_bad_text(rng, rng.choice(goods)))
                load_config(path)
            else:
                counts["override"] += 1
                override = rng.choice(
                    [
                        "train.epochs",
                        "=3",
                        "train..epochs=3",
                        "optim.lr=.nan",
                        "optim.lr=1.0e400",
                        "seed=" + "9" * 30,
                        "links=" + _bomb(rng).replace("\n", " ; "),
                        "links=" + "[" * 80 + "]" * 80,
                        "data.dataset=" + _junk(rng),
                        "distill.methods=kd",
                        "model.kwargs." + _junk(rng, 5).replace(".", "") + "=1",
                        ".".join(["a"] * 60) + "=1",
                    ]
                )
                load_config(None, [override])
        except ConfigError as err:
            msg = str(err)
            assert "\n" not in msg and "\r" not in msg, (i, msg)
            assert 0 < len(msg) < 400, (i, msg)
            continue
        except Exception as err:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {i}: {type(err).__name__} instead of a ConfigError: {str(err)[:300]}")
        pytest.fail(
            f"case {i} ({mode:.2f}) was accepted: {str(data)[:300] if mode < 0.6 else path.read_bytes()[:300]}"
        )
    assert all(n > 50 for n in counts.values()), counts
