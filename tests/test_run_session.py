"""The run adapter (workbench.runs.session), RunConfig's own kind, the New-run form both ways, the
metrics a compare view offers, and the one-line error helper."""

from __future__ import annotations

import pytest
import torch

from workbench.config import RunConfig, validate_config
from workbench.data import seeded_subset
from workbench.errors import one_line
from workbench.run_form import RunForm, config_from_form, form_from_config
from workbench.runs import RunStore, RunStoreError, logged_metrics
from workbench.runs.session import eval_sample, open_run, pick_checkpoint, resolve_run
from workbench.vocabulary import EPOCH_METRICS


@pytest.fixture(scope="module")
def shapes_store(tmp_path_factory) -> dict[str, str]:
    """A teacher and a KD student on ``shapes`` (3 x 32 x 32), a few steps each."""
    from workbench.train import Trainer

    root = tmp_path_factory.mktemp("session") / "runs"
    store = RunStore(root)
    base = {
        "seed": 0,
        "data": {"dataset": "shapes", "batch_size": 64},
        "model": {"name": "mlp"},
        "train": {"epochs": 1, "max_steps": 3, "device": "cpu"},
    }
    teacher = Trainer(validate_config({**base, "kind": "teacher", "name": "shapes-teacher"}), store=store).run()
    kd = Trainer(
        validate_config(
            {**base, "name": "shapes-kd", "teachers": [{"source": f"run:{teacher.run_id}"}],
             "distill": {"methods": "0.9*kd", "ce_weight": 0.1}}
        ),
        store=store,
    ).run()
    return {"root": str(root), "teacher": teacher.run_id, "kd": kd.run_id}


def test_open_run_shapes_the_teacher_from_the_runs_dataset(shapes_store) -> None:
    opened = open_run(shapes_store["kd"], store=shapes_store["root"], n_samples=40, seed=3, device="cpu")
    assert opened.kind == "distill"  # inferred: the config named no kind
    assert opened.config.kind == "distill"
    sample = opened.sample
    assert tuple(sample.images.shape) == (40, 3, 32, 32)  # never the MNIST guess (1, 28, 28)
    expected = seeded_subset(len(opened.dataset.test), 40, 3)
    assert torch.equal(sample.index, expected)
    assert torch.equal(sample.labels, opened.dataset.test.labels[expected])
    with torch.inference_mode():
        t_out = opened.teacher(sample.images)
        s_out = opened.student(sample.images)
    assert t_out.shape == s_out.shape == (40, 10)
    assert not any(p.requires_grad for p in opened.teacher.parameters())
    assert not opened.student.training


def test_open_run_by_prefix_directory_and_run_give_the_same_run(shapes_store) -> None:
    store = RunStore(shapes_store["root"])
    run = store.load(shapes_store["kd"])
    by_prefix = open_run(shapes_store["kd"][:-2], store=store)
    by_dir = open_run(run.path)
    by_run = open_run(run)
    assert by_prefix.id == by_dir.id == by_run.id == run.id
    assert by_dir.store.root == store.root  # a directory's store is its parent folder
    assert resolve_run(str(run.path)).id == run.id


def test_a_run_without_teacher_says_so_in_one_line(shapes_store) -> None:
    opened = open_run(shapes_store["teacher"], store=shapes_store["root"], n_samples=8)
    assert opened.kind == "teacher"
    assert opened.teacher is None and opened.teachers == []
    with pytest.raises(RunStoreError, match="has no teacher") as err:
        opened.require_teacher()
    assert "\n" not in str(err.value)


def test_checkpoints_are_named_and_spelled_in_one_place(shapes_store) -> None:
    run = RunStore(shapes_store["root"]).load(shapes_store["kd"])
    assert run.checkpoint_path("final") == run.path / "checkpoints" / "final.safetensors"
    assert run.checkpoint_path("final").is_file()
    for bad in ("../final", "a/b", ".hidden", ""):
        with pytest.raises(RunStoreError, match="not a checkpoint name"):
            run.checkpoint_path(bad)
    assert pick_checkpoint(run, "epoch_001") == "epoch_001"
    assert pick_checkpoint(run, "epoch_099", fallback=True) == "final"
    with pytest.raises(RunStoreError, match=r"no checkpoint 'epoch_099' \(have: .*final"):
        pick_checkpoint(run, "epoch_099")
    opened = open_run(run, checkpoint="epoch_099")  # opening is free; reading the student names what exists
    with pytest.raises(RunStoreError, match="epoch_099"):
        _ = opened.student


def test_bad_inputs_are_one_line(shapes_store) -> None:
    with pytest.raises(RunStoreError, match="n_samples: expected a whole number >= 1, got 0"):
        open_run(shapes_store["kd"], store=shapes_store["root"], n_samples=0)
    with pytest.raises(RunStoreError, match="not found|no run"):
        open_run("no-such-run", store=shapes_store["root"])
    with pytest.raises(RunStoreError, match="run: expected a Run"):
        resolve_run(42)  # type: ignore[arg-type]
    data = open_run(shapes_store["kd"], store=shapes_store["root"]).dataset
    with pytest.raises(RunStoreError, match="n_samples"):
        eval_sample(data, True)  # type: ignore[arg-type]


def test_eval_sample_takes_the_whole_split_when_asked_for_more(digits) -> None:
    sample = eval_sample(digits, 10_000, seed=1)
    assert len(sample) == len(digits.test)
    assert torch.equal(sample.index, torch.arange(len(digits.test)))
    assert sample.raw.dtype == torch.uint8 and sample.images.dtype == torch.float32


# ---- the kind a config says of itself ------------------------------------------------------------
@pytest.mark.parametrize(
    ("distill", "kind"),
    [
        (None, "student"),
        ({"methods": "none"}, "student"),
        ({"methods": [{"name": "none"}]}, "student"),
        ({"methods": "0.9*kd"}, "distill"),
        ({"methods": "0.5*kd + dkd"}, "distill"),
        ({"methods": [{"name": "fitnet", "weight": 2.0}]}, "distill"),
    ],
)
def test_a_config_without_kind_gets_it_from_its_methods(distill, kind) -> None:
    data = {"teachers": [{"source": "shipped:mnist"}]}
    if distill is not None:
        data["distill"] = distill
    assert validate_config(data).kind == kind


def test_a_named_kind_is_kept_and_checked() -> None:
    assert validate_config({"kind": "teacher"}).kind == "teacher"
    with pytest.raises(ValueError, match="a student run trains with cross-entropy only"):
        validate_config({"kind": "student", "distill": {"methods": "kd"}, "teachers": [{"source": "shipped:mnist"}]})
    assert RunConfig.infer_kind([]) == "student"
    assert RunConfig.infer_kind(["none", "kd"]) == "distill"


# ---- the New-run form ------------------------------------------------------------------------------
def test_the_form_and_the_config_round_trip() -> None:
    form = RunForm(
        dataset="digits",
        teacher="shipped:mnist",
        student="mlp",
        methods=[{"name": "kd", "weight": 0.9, "params": {"temperature": 2.0}}],
        ce_weight=0.1,
        epochs=3,
        seed=7,
        name="kd-t2",
        max_steps=5,
    )
    back = form_from_config(config_from_form(form).model_dump(mode="json"))
    assert back == form
    assert config_from_form(form).kind == "distill"


def test_a_form_without_methods_is_a_student_with_ce_weight_one() -> None:
    cfg = config_from_form(RunForm(methods=[], ce_weight=0.1, teacher=None))
    assert cfg.kind == "student"
    assert [m.name for m in cfg.distill.methods] == ["none"]
    assert cfg.distill.ce_weight == 1.0
    assert cfg.teachers == []


def test_a_bad_form_value_names_its_field() -> None:
    with pytest.raises(ValueError, match=r"^model\.name: unknown"):
        config_from_form(RunForm(student="resnet9000"))


# ---- what a compare view offers --------------------------------------------------------------------------
def test_logged_metrics_are_the_epoch_metrics_runs_logged_then_loss_terms() -> None:
    a = {"epochs": [{"epoch": 1, "test_acc": 0.9, "train_loss": 0.3, "loss/kd": 0.1, "loss/ce": 0.2}]}
    b = {"epochs": [{"epoch": 1, "agreement": 0.95, "note": "text", "flag": True}]}
    assert logged_metrics([a, b]) == ["test_acc", "agreement", "train_loss", "loss/kd", "loss/ce"]
    assert logged_metrics([{"epochs": []}]) == []
    assert set(logged_metrics([a, b])) - {"loss/ce", "loss/kd"} <= set(EPOCH_METRICS)


def test_a_real_runs_logged_metrics_are_offered(shapes_store) -> None:
    store = RunStore(shapes_store["root"])
    offered = logged_metrics([store.load(shapes_store["kd"])])
    for name in ("test_acc", "agreement", "kl_teacher_student", "ece", "train_loss", "loss/kd", "loss/ce"):
        assert name in offered
    assert "kl" not in offered and "loss" not in offered


# ---- one-line errors -------------------------------------------------------------------------------------
def test_one_line() -> None:
    assert one_line(ValueError("field: bad\nTraceback ...")) == "field: bad"
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(KeyError("x")) == "missing 'x'"
    assert one_line(RuntimeError("boom"), typed=True) == "RuntimeError: boom"
    assert one_line("  text\nmore") == "text"
    long = one_line(ValueError("x" * 500), limit=20)
    assert len(long) == 20 and long.endswith("...")
