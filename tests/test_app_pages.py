"""The app's Home, Training, Compare and Doctor pages on a small run store (AppTest)."""
# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)

from __future__ import annotations

import pytest
from app_fixtures import figures, make_app, no_exception, store_copy, tiny_store  # noqa: F401

pytest.importorskip("streamlit")


# ---- Home / New run ---------------------------------------------------------------------------
def test_home_renders_form_and_runs_table(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"])
    no_exception(at)
    labels = {s.label for s in at.selectbox}
    assert {"Dataset", "Teacher", "Student", "Run"} <= labels
    assert at.multiselect(key="qp:methods").value == ["kd"]
    assert at.number_input(key="qp:p.kd.temperature").value == 4.0  # generated from the kd schema
    table = at.dataframe[0].value
    assert set(table["id"]) == {tiny_store["teacher"], tiny_store["scratch"], tiny_store["kd"]}
    assert {b.label for b in at.button} >= {"Start", "Stop", "Delete"}


def test_home_dataset_changes_the_teacher_choices(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"])
    assert "shipped:mnist" in at.selectbox(key="qp:teacher").options
    at.selectbox(key="qp:dataset").set_value("digits").run()
    no_exception(at)
    options = at.selectbox(key="qp:teacher").options
    assert "shipped:mnist" not in options
    assert any(tiny_store["teacher"][-4:] in o for o in options)  # the digits teacher run, by its label


def test_home_method_choice_changes_the_generated_form(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"])
    at.multiselect(key="qp:methods").set_value(["dkd"]).run()
    no_exception(at)
    keys = {n.key for n in at.number_input}
    assert {"qp:p.dkd.alpha", "qp:p.dkd.beta", "qp:p.dkd.temperature"} <= keys
    assert "qp:p.kd.temperature" not in keys


def test_home_prefill_from_url_and_bad_values(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/home.py",
                  dataset="digits", student="mlp", methods="kd", **{"p.kd.temperature": "2.5"}, epochs="abc")
    at.run()
    no_exception(at)
    assert at.selectbox(key="qp:dataset").value == "digits"
    assert at.selectbox(key="qp:student").value == "mlp"
    assert at.number_input(key="qp:p.kd.temperature").value == 2.5
    assert at.number_input(key="qp:epochs").value == 2  # 'abc' falls back to the default ...
    assert any("Epochs" in w.value for w in at.warning)  # ... with one warning line


def test_home_rejects_an_invalid_hyperparameter_with_one_line(monkeypatch, store_copy):
    from workbench.jobs import JobQueue

    at = make_app(monkeypatch, store_copy["root"], "views/home.py", methods="takd", teacher="shipped:mnist",
                  **{"p.takd.assistants": "[{nomodel: x}]"})
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "takd" in at.error[0].value and "\n" not in at.error[0].value
    assert not JobQueue(store_copy["root"]).list()  # nothing was queued
    assert len(at.dataframe[0].value) == 3  # the runs table still shows


def test_home_start_queues_a_job_that_trains(monkeypatch, tmp_path):
    from workbench.jobs import JobQueue
    from workbench.runs import RunStore

    root = tmp_path / "fresh"
    at = make_app(monkeypatch, str(root), "views/home.py", dataset="digits", student="mlp",
                  teacher="none (train from scratch)", methods="none", epochs="1", name="from-app")
    at.run()
    no_exception(at)
    at.button(key="start").click().run()
    no_exception(at)
    queue = JobQueue(root, max_jobs=1)
    jobs = queue.list()
    assert len(jobs) == 1 and jobs[0].config["data"]["dataset"] == "digits"
    assert jobs[0].config["model"]["name"] == "mlp" and jobs[0].config["kind"] == "student"
    assert jobs[0].config["train"]["epochs"] == 1 and jobs[0].label == "from-app"
    done = queue.wait(jobs[0].id, timeout=300)
    assert done.state == "finished", queue.log(done.id)
    run = RunStore(root).load(done.run_id)
    assert run.status["status"] == "completed" and run.checkpoints()


def test_home_teacher_precision_reaches_the_run(monkeypatch, store_copy):
    from workbench.jobs import JobQueue
    from workbench.runs import RunStore

    root = store_copy["root"]
    at = make_app(monkeypatch, root, "views/home.py", dataset="digits", student="mlp",
                  teacher=f"run:{store_copy['teacher']}", methods="kd", tprec="bfloat16", epochs="1")
    at.run()
    no_exception(at)
    assert at.selectbox(key="qp:tprec").options == ["float32", "bfloat16", "auto"]
    assert at.selectbox(key="qp:tprec").value == "bfloat16"
    at.button(key="start").click().run()
    no_exception(at)
    queue = JobQueue(root, max_jobs=1)
    (job,) = queue.list()
    assert job.config["distill"]["teacher_precision"] == "bfloat16"
    done = queue.wait(job.id, timeout=300)
    assert done.state == "finished", queue.log(done.id)
    assert RunStore(root).load(done.run_id).metrics["summary"]["teacher_precision"] == "bfloat16"


def test_home_demo_button_on_an_empty_store(monkeypatch, tmp_path):
    from workbench.jobs import JobQueue

    root = tmp_path / "empty"
    at = make_app(monkeypatch, str(root))
    no_exception(at)
    at.button(key="demo").click().run()
    no_exception(at)
    queue = JobQueue(root, max_jobs=1)
    jobs = queue.list()
    try:
        assert sorted(j.label for j in jobs) == ["demo-kd", "demo-scratch"]
    finally:
        for j in jobs:
            queue.stop(j.id)


def test_home_delete_refuses_a_running_run_and_removes_a_finished_one(monkeypatch, store_copy):
    from workbench.config import validate_config
    from workbench.runs import RunStore

    store = RunStore(store_copy["root"])
    live = store.create(validate_config({"kind": "student", "name": "live", "data": {"dataset": "digits"},
                                         "model": {"name": "mlp"}}))  # status running, our own pid
    at = make_app(monkeypatch, store_copy["root"], "views/home.py", run=live.id)
    at.run()
    at.checkbox(key="sure").check().run()
    at.button(key="delete").click().run()
    assert not at.exception
    assert any("is running" in e.value for e in at.error)
    assert live.id in store.ids()

    at.query_params["run"] = store_copy["scratch"]
    at.run()
    at.checkbox(key="sure").check().run()
    at.button(key="delete").click().run()
    no_exception(at)
    assert store_copy["scratch"] not in store.ids()


# ---- Training ---------------------------------------------------------------------------------
def test_training_shows_curves_of_the_chosen_run(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/training.py", run=tiny_store["kd"])
    at.run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "completed" and metrics["Epoch"] == "2 / 2"
    figs = figures(at)
    assert len(figs) == 3  # step curves, training curves and loss terms
    names = {t.get("name") for t in figs[2]["data"]}
    assert {"kd", "ce"} <= names  # the KD run logged both terms
    kd_acc = metrics["Test accuracy"]

    at.selectbox(key="qp:run").set_value(tiny_store["teacher"]).run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    from workbench.runs import RunStore

    teacher_acc = RunStore(tiny_store["root"]).load(tiny_store["teacher"]).metrics["summary"]["test_acc"]
    assert metrics["Test accuracy"] == f"{teacher_acc:.2%}"
    assert metrics["Test accuracy"] != kd_acc or tiny_store["teacher"] != tiny_store["kd"]


def test_training_lists_the_queue(monkeypatch, store_copy):
    from workbench.jobs import JobQueue

    queue = JobQueue(store_copy["root"], max_jobs=1)
    job = queue.submit({"kind": "student", "data": {"dataset": "digits"}, "model": {"name": "mlp"}}, label="waiting")
    queue.stop(job.id)  # stopped while queued: listed, never started
    at = make_app(monkeypatch, store_copy["root"], "views/training.py")
    at.run()
    no_exception(at)
    table = at.dataframe[-1].value
    assert list(table["job"]) == [job.id] and list(table["state"]) == ["stopped"]


# ---- Compare ----------------------------------------------------------------------------------
def test_compare_overlays_runs_and_offers_csv(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/compare.py",
                  runs=f"{tiny_store['scratch']},{tiny_store['kd']}")
    at.run()
    no_exception(at)
    fig = figures(at)[0]
    table = at.dataframe[0].value
    # one group per setting (the two runs differ in their methods), each of one seed
    assert list(table["n"]) == [1, 1] and list(table["distill.methods"]) == ["none", "0.9*kd"]
    assert {t["name"] for t in fig["data"] if t.get("name")} == set(table["group"])
    assert fig["layout"]["yaxis"]["title"]["text"] == "test_acc (mean ± std over seeds)"
    assert len(at.get("download_button")) == 2  # CSV and JSON of the groups

    at.selectbox(key="qp:metric").set_value("agreement").run()
    no_exception(at)
    assert figures(at)[0]["layout"]["yaxis"]["title"]["text"] == "agreement (mean ± std over seeds)"


def test_compare_offers_exactly_the_metrics_the_chosen_runs_logged(monkeypatch, tiny_store):
    from workbench.runs import RunStore
    from workbench.vocabulary import EPOCH_METRICS

    store = RunStore(tiny_store["root"])
    logged = {k for i in ("teacher", "kd") for e in store.load(tiny_store[i]).metrics["epochs"] for k in e}
    at = make_app(monkeypatch, tiny_store["root"], "views/compare.py", runs=tiny_store["teacher"])
    at.run()
    no_exception(at)
    teacher_only = at.selectbox(key="qp:metric").options
    # a teacher has no teacher: no agreement, no KL to it; its only loss term is cross-entropy
    assert "agreement" not in teacher_only and "kl_teacher_student" not in teacher_only
    assert teacher_only[0] == "test_acc" and teacher_only[-1] == "loss/ce" and "loss/kd" not in teacher_only
    at.multiselect(key="qp:runs").set_value([tiny_store["teacher"], tiny_store["kd"]]).run()
    no_exception(at)
    both = at.selectbox(key="qp:metric").options
    assert both == [m for m in EPOCH_METRICS if m in logged] + ["loss/ce", "loss/kd"]
    assert {"agreement", "kl_teacher_student"} <= set(both)


def test_compare_ignores_unknown_ids_in_the_url(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/compare.py", runs="nope,../x," + tiny_store["kd"])
    at.run()
    no_exception(at)
    assert list(at.dataframe[0].value["n"]) == [1]  # only the known run is compared
    assert any("unknown entr" in w.value for w in at.warning)


# ---- Doctor -----------------------------------------------------------------------------------
def test_doctor_examines_a_run_and_links_experiments(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/doctor.py", run=tiny_store["kd"], n_samples="200")
    at.run()
    no_exception(at)
    assert at.button(key="examine")
    assert not figures(at)  # nothing computed before asking
    at.button(key="examine").click().run()
    no_exception(at)
    assert at.query_params["examine"] == "1"  # the URL now opens the examined view
    from workbench.diagnosis import diagnose
    from workbench.runs import RunStore

    report = diagnose(RunStore(tiny_store["root"]).load(tiny_store["kd"]), n_samples=200, seed=0, device="cpu")
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(titles) == len(report.findings)
    for rank, finding in enumerate(report.findings, start=1):
        assert titles[rank - 1].startswith(f"**{rank}. {finding.title}**")
    links = [el for el in at.get("page_link")]
    experiment = [ln for ln in links if ln.proto.label == "Run the suggested experiment"]
    assert len(experiment) == len(report.findings)
    if experiment:
        assert "dataset=digits" in experiment[0].proto.query_string


def test_doctor_suggested_config_applies_the_findings_experiment(tiny_store):
    from types import SimpleNamespace

    from app.experiments import experiment_text, suggested_config
    from workbench.analysis.doctor import Experiment
    from workbench.config import RunConfig
    from workbench.runs import RunStore

    run = RunStore(tiny_store["root"]).load(tiny_store["kd"])
    cooler = Experiment({"distill.methods[0].params.temperature": 2.0}, "Halve the temperature.")
    cfg = suggested_config(SimpleNamespace(rule="softness", experiment=cooler), run)
    assert cfg["distill"]["methods"][0]["params"]["temperature"] == pytest.approx(2.0)
    assert "kind" not in cfg and cfg["name"].endswith("-softness")  # the config infers it from the methods
    assert RunConfig.model_validate(cfg).kind == "distill"
    heavier = Experiment({"distill.methods[0].weight": 0.5, "distill.ce_weight": 0.5}, "Rebalance.")
    cfg = suggested_config(SimpleNamespace(rule="kd_weight", experiment=heavier), run)
    assert cfg["distill"]["methods"][0]["weight"] == pytest.approx(0.5)
    assert cfg["distill"]["ce_weight"] == pytest.approx(0.5)
    plain = suggested_config(SimpleNamespace(rule="x", experiment=None), run)
    assert plain["distill"] == run.config.model_dump(mode="json")["distill"]
    alone = Experiment({"distill.methods": [{"name": "none"}]}, "Train it without the teacher.")
    cfg = suggested_config(SimpleNamespace(rule="none", experiment=alone), run)
    assert "kind" not in cfg and RunConfig.model_validate(cfg).kind == "student"
    teacher = RunStore(tiny_store["root"]).load(tiny_store["teacher"])
    assert suggested_config(SimpleNamespace(rule="x", experiment=None), teacher)["kind"] == "teacher"
    assert experiment_text(SimpleNamespace(experiment=cooler)) == "Halve the temperature."
    assert run.config.distill.methods[0].weight == pytest.approx(0.9)  # the run itself is untouched


def test_doctor_unknown_run_and_run_without_teacher(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/doctor.py", run="missing-run")
    at.run()
    no_exception(at)
    assert any("not found" in w.value for w in at.warning)
