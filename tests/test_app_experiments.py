"""The app's faces of "experiments, not single runs" (AppTest): Training follows the jobs you start and
draws step curves; the Experiments page builds a grid and queues it; Compare groups runs over seeds;
the methods leaderboard; and the training figures' epoch axes."""
# ruff: noqa: F811  (fixtures imported from app_fixtures are redefined as test arguments)

from __future__ import annotations

import json
import time

import pytest
from app_fixtures import (  # noqa: F401
    decoded_figures,
    figures,
    grid_copy,
    grid_store,
    make_app,
    no_exception,
    stop_all_jobs,
    store_copy,
    tiny_store,
)

pytest.importorskip("streamlit")

SCRATCH_FORM = {"dataset": "digits", "student": "mlp", "teacher": "none (train from scratch)", "methods": "none",
                "epochs": "1"}


def _infos(at) -> list[str]:
    return [i.value for i in at.info]


# ---- Training follows you --------------------------------------------------------------------------
def test_start_links_to_training_with_the_job_and_training_opens_its_run(monkeypatch, tmp_path):
    from workbench.jobs import JobQueue

    root = tmp_path / "fresh"
    at = make_app(monkeypatch, str(root), "views/home.py", **SCRATCH_FORM)
    at.run()
    at.button(key="start").click().run()
    no_exception(at)
    queue = JobQueue(root, max_jobs=1)
    try:
        (job,) = queue.list()
        link = next(el for el in at.get("page_link") if el.proto.label == "Watch it on the Training page")
        assert f"job={job.id}" in link.proto.query_string
        assert at.session_state["_followed_jobs"] == [job.id]

        at.switch_page("views/training.py")  # the sidebar, not the link: the session remembers the job
        at.run()
        no_exception(at)
        assert not any("No runs yet" in i for i in _infos(at))
        deadline = time.monotonic() + 120
        while not (root / (queue.get(job.id).run_id or "-") / "status.json").is_file():
            assert time.monotonic() < deadline, queue.log(job.id)
            time.sleep(0.3)
        at.run()
        no_exception(at)
        assert at.query_params["run"] == queue.get(job.id).run_id  # opened once its run exists
        assert at.selectbox(key="qp:run").value == queue.get(job.id).run_id
    finally:
        stop_all_jobs(root)


def test_training_shows_queued_jobs_with_place_and_wait_never_no_runs(monkeypatch, tmp_path):
    from workbench.jobs import JobQueue

    root = tmp_path / "queued"
    queue = JobQueue(root, max_jobs=1)
    cfg = {"kind": "student", "data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 1}}
    first, second = queue.submit(cfg, label="first"), queue.submit(cfg, label="second")
    try:
        at = make_app(monkeypatch, str(root), "views/training.py", job=f"{first.id},{second.id}")
        at.run()
        no_exception(at)
        infos = _infos(at)
        assert not any("No runs yet" in i for i in infos), infos
        assert any("**second** is queued, position 1 · starts in about" in i for i in infos), infos
        table = at.dataframe[-1].value
        assert list(table["job"])[:2] == [first.id, second.id] and table["starts in"][1]
    finally:
        stop_all_jobs(root)


def test_training_says_no_runs_only_when_nothing_is_queued(monkeypatch, tmp_path):
    at = make_app(monkeypatch, str(tmp_path / "empty"), "views/training.py")
    at.run()
    no_exception(at)
    assert any("No runs yet" in i for i in _infos(at))


def test_training_draws_step_curves_smoothed_with_epoch_points(monkeypatch, tiny_store):
    from workbench.experiments import ema
    from workbench.runs import RunStore

    run = RunStore(tiny_store["root"]).load(tiny_store["kd"])
    at = make_app(monkeypatch, tiny_store["root"], "views/training.py", run=tiny_store["kd"], smoothing="0.8")
    at.run()
    no_exception(at)
    assert at.selectbox(key="qp:metric").options == ["loss", "lr", "batch_acc", "images_per_s", "loss/ce", "loss/kd"]
    steps = decoded_figures(at)[0]
    assert steps["layout"]["xaxis"]["title"]["text"] == "step"
    raw, smooth, points = steps["data"][:3]
    assert raw["name"] == "tiny-kd (raw)" and raw["opacity"] == 0.35 and smooth["name"] == "tiny-kd"
    losses = [r["loss"] for r in run.step_metrics().records]
    assert smooth["y"] == pytest.approx(list(ema(losses, 0.8)))
    epochs = run.metrics["epochs"]
    assert points["mode"] == "markers" and points["y"] == pytest.approx([e["train_loss"] for e in epochs])
    assert [int(x) for x in points["x"]] == [e["step"] for e in epochs]  # each epoch at its last step

    at.slider(key="qp:smoothing").set_value(0.0).run()  # no smoothing: the raw curve alone
    no_exception(at)
    assert [t["name"] for t in figures(at)[0]["data"]][:1] == ["tiny-kd"]
    assert at.query_params["smoothing"] == "0.0"


def test_training_watches_runs_side_by_side(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/training.py", run=tiny_store["kd"],
                  runs=tiny_store["scratch"], metric="batch_acc")
    at.run()
    no_exception(at)
    names = [t["name"] for t in figures(at)[0]["data"]]
    assert "tiny-kd" in names and "tiny-scratch" in names
    assert any("epoch train_acc" in n for n in names)  # batch accuracy's epoch counterpart


def test_training_epoch_figures_tick_at_whole_epochs_without_overlapping_titles(monkeypatch, tiny_store):
    at = make_app(monkeypatch, tiny_store["root"], "views/training.py", run=tiny_store["kd"])
    at.run()
    curves = figures(at)[1]["layout"]
    for axis in ("xaxis", "xaxis2", "xaxis3", "xaxis4"):
        assert curves[axis]["dtick"] == 1 and curves[axis]["tick0"] == 0
    assert "title" not in curves["xaxis"] and "title" not in curves["xaxis2"]  # the upper row: no axis title
    assert curves["xaxis3"]["title"]["text"] == "epoch" == curves["xaxis4"]["title"]["text"]
    assert figures(at)[2]["layout"]["xaxis"]["dtick"] == 1  # loss terms


def test_a_damaged_step_log_is_one_line_and_the_epochs_still_show(monkeypatch, store_copy):
    from pathlib import Path

    log = Path(store_copy["root"]) / store_copy["kd"] / "steps.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    at = make_app(monkeypatch, store_copy["root"], "views/training.py", run=store_copy["kd"])
    at.run()
    no_exception(at)
    assert any("step log damaged" in c.value and "line 2" in c.value for c in at.caption)
    assert len(figures(at)) == 3


def test_repeat_with_seeds_queues_an_experiment(monkeypatch, grid_copy):
    from workbench.jobs import JobQueue

    at = make_app(monkeypatch, grid_copy["root"], "views/training.py", run=grid_copy["scratch"])
    at.run()
    at.number_input(key="repeat_n").set_value(2).run()
    at.button(key="repeat").click().run()
    no_exception(at)
    try:
        jobs = JobQueue(grid_copy["root"], max_jobs=1).list()
        assert {j.experiment for j in jobs} == {f"repeat-{grid_copy['scratch']}"} and len(jobs) == 2
        assert sorted(j.config["seed"] for j in jobs) == [0, 1]
        assert any("2 trials, 2 queued" in s.value for s in at.success)
    finally:
        stop_all_jobs(grid_copy["root"])


# ---- Experiments -----------------------------------------------------------------------------------
GRID_URL = {**SCRATCH_FORM, "max_steps": "5", "rows": "2", "field1": "optim.lr", "values1": "0.05, 0.1",
            "field2": "data.batch_size", "values2": "32,64", "seeds": "2", "experiment_name": "two-by-two"}


def test_experiments_page_counts_and_estimates_before_start(monkeypatch, grid_store):
    at = make_app(monkeypatch, grid_store["root"], "views/experiments.py", **GRID_URL)
    at.run()
    no_exception(at)
    line = next(i for i in _infos(at) if "runs:" in i)
    assert line.startswith("8 runs: 2 optim.lr × 2 data.batch_size × 2 seeds; about ")
    assert "optim.lr" in at.selectbox(key="qp:field1").options
    assert "distill.methods" in at.selectbox(key="qp:field1").options
    assert at.button(key="start")


def test_experiments_page_refuses_a_too_large_grid_and_a_bad_value_in_one_line(monkeypatch, grid_store):
    big = {**GRID_URL, "values1": ", ".join(str(i / 1000) for i in range(1, 200)), "seeds": "3"}
    at = make_app(monkeypatch, grid_store["root"], "views/experiments.py", **big)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "1194 runs" in at.error[0].value and "above the limit of 500" in at.error[0].value
    assert "\n" not in at.error[0].value and not [b for b in at.button if b.key == "start"]

    bad = {**GRID_URL, "field2": "optim.momentum", "values2": "0.9, 2"}
    at = make_app(monkeypatch, grid_store["root"], "views/experiments.py", **bad)
    at.run()
    assert not at.exception and len(at.error) == 1
    assert "optim.momentum" in at.error[0].value and "\n" not in at.error[0].value

    at = make_app(monkeypatch, grid_store["root"], "views/experiments.py", **{**GRID_URL, "values1": "[0.1"})
    at.run()
    assert not at.exception and len(at.error) == 1 and "grid field 'optim.lr'" in at.error[0].value


def test_experiments_page_starts_lists_and_stops_an_experiment(monkeypatch, grid_copy):
    from workbench.jobs import JobQueue
    from workbench.sweep import experiment_status

    at = make_app(monkeypatch, grid_copy["root"], "views/experiments.py", **GRID_URL)
    at.run()
    at.button(key="start").click().run()
    no_exception(at)
    try:
        assert any(s.value.startswith("experiment two-by-two: 8 trials, 8 queued") for s in at.success)
        jobs = JobQueue(grid_copy["root"], max_jobs=1).list()
        assert len(jobs) == 8 and {j.experiment for j in jobs} == {"two-by-two"}
        assert {j.config["train"]["max_steps"] for j in jobs} == {5}
        assert at.query_params["experiment"] == "two-by-two"
        trials = at.dataframe[-1].value
        assert len(trials) == 8 and set(trials["state"]) <= {"queued", "running"}
        at.button(key="stop_exp:two-by-two").click().run()
        no_exception(at)
        counts = experiment_status(grid_copy["root"], "two-by-two").counts
        assert counts["queued"] == 0 and counts["stopped"] + counts["running"] + counts["completed"] == 8
    finally:
        stop_all_jobs(grid_copy["root"])


def test_experiments_page_lists_an_experiment_and_links_compare(monkeypatch, grid_store):
    at = make_app(monkeypatch, grid_store["root"], "views/experiments.py", experiment=grid_store["grid"])
    at.run()
    no_exception(at)
    trials = at.dataframe[-1].value
    assert len(trials) == 4 and set(trials["state"]) == {"completed"}
    link = next(el for el in at.get("page_link") if el.proto.label == "Compare its groups")
    assert f"experiment={grid_store['grid']}" in link.proto.query_string


# ---- Compare ---------------------------------------------------------------------------------------
def test_compare_groups_an_experiment_over_seeds(monkeypatch, grid_store):
    from workbench.experiments import group_runs, group_table
    from workbench.runs import RunStore
    from workbench.sweep import experiment_status

    at = make_app(monkeypatch, grid_store["root"], "views/compare.py", experiment=grid_store["grid"])
    at.run()
    no_exception(at)
    table = at.dataframe[0].value
    assert len(table) == 2 and list(table["n"]) == [2, 2] and "optim.lr" in table.columns
    store = RunStore(grid_store["root"])
    runs = [store.load(i) for i in experiment_status(store, grid_store["grid"]).run_ids()]
    expected = group_table(group_runs(runs), "test_acc")
    assert list(table["mean"]) == pytest.approx([r["mean"] for r in expected])
    assert list(table["std"]) == pytest.approx([r["std"] for r in expected])
    assert set(table["measure"]) == {"test_acc, last epoch"}
    epochs = figures(at)[0]
    assert [t["name"] for t in epochs["data"] if t.get("name")] == [r["group"] for r in expected]
    assert any(t.get("fill") == "tonexty" for t in epochs["data"])  # the ± std band
    assert any("over 2 seeds" in m.value for m in at.markdown)  # the paired difference, in words
    kinds = [f["data"][0]["type"] for f in figures(at)]
    assert "parcoords" in kinds and kinds.count("scatter") >= 3  # epochs, steps, parameter scatter
    assert len(at.get("download_button")) == 2

    at.selectbox(key="qp:measure").set_value("best").run()
    no_exception(at)
    assert set(at.dataframe[0].value["measure"]) == {"test_acc, best epoch"}


def test_compare_baseline_and_exports(monkeypatch, grid_store):
    at = make_app(monkeypatch, grid_store["root"], "views/compare.py", experiment=grid_store["grid"],
                  metric="test_loss")
    at.run()
    no_exception(at)
    labels = at.selectbox(key="qp:baseline").options
    at.selectbox(key="qp:baseline").set_value(labels[1]).run()
    no_exception(at)
    sentences = [m.value for m in at.markdown if "over 2 seeds" in m.value]
    assert len(sentences) == 1 and sentences[0].startswith(f"- {labels[0]}") and "in test_loss" in sentences[0]
    csv_button, json_button = at.get("download_button")
    assert csv_button.proto.label == "Download CSV" and json_button.proto.label == "Download JSON"


def test_compare_skips_a_damaged_run_in_one_line(monkeypatch, grid_copy):
    from pathlib import Path

    from workbench.sweep import experiment_status

    victim = experiment_status(grid_copy["root"], grid_copy["grid"]).run_ids()[0]
    (Path(grid_copy["root"]) / victim / "metrics.json").write_text("{broken")
    at = make_app(monkeypatch, grid_copy["root"], "views/compare.py", experiment=grid_copy["grid"])
    at.run()
    no_exception(at)
    notes = [c.value for c in at.caption if victim in c.value]
    assert len(notes) == 1 and "skipped" in notes[0] and "\n" not in notes[0]
    assert sorted(at.dataframe[0].value["n"]) == [1, 2]  # the rest still grouped


def test_compare_metric_options_are_the_logged_ones(monkeypatch, grid_store):
    from workbench.runs import RunStore, logged_metrics

    ids = f"{grid_store['scratch']},{grid_store['kd']}"
    at = make_app(monkeypatch, grid_store["root"], "views/compare.py", runs=ids)
    at.run()
    no_exception(at)
    store = RunStore(grid_store["root"])
    assert at.selectbox(key="qp:metric").options == logged_metrics([store.load(i) for i in ids.split(",")])
    assert len(at.dataframe[0].value) == 2  # two settings of one seed each


# ---- the methods leaderboard -----------------------------------------------------------------------
def test_leaderboard_ranks_methods_with_gains_over_scratch(monkeypatch, grid_store):
    at = make_app(monkeypatch, grid_store["root"], "views/leaderboard.py", **grid_store["board_params"])
    at.run()
    no_exception(at)
    assert "takd" not in at.multiselect(key="qp:methods").options  # needs its assistants named
    assert any(i.startswith(f"Experiment `{grid_store['board']}`: 4 runs: 2 distill × 2 seeds") for i in _infos(at))
    rows = at.dataframe[0].value
    assert set(rows["method"]) == {"none", "kd"} and list(rows["n"]) == [2, 2]
    assert list(rows["mean"]) == sorted(rows["mean"], reverse=True)
    kd = rows[rows["method"] == "kd"].iloc[0]
    assert "[" in kd["vs scratch"] and kd["runs"].startswith("compare?runs=")
    assert figures(at)[0]["data"][0]["type"] == "bar"


def test_leaderboard_start_queues_only_what_is_missing(monkeypatch, grid_copy):
    from workbench.jobs import JobQueue

    params = {**grid_copy["board_params"], "seeds": "3"}  # a third seed: two trials to train
    at = make_app(monkeypatch, grid_copy["root"], "views/leaderboard.py", **params)
    at.run()
    at.button(key="start").click().run()
    no_exception(at)
    try:
        jobs = JobQueue(grid_copy["root"], max_jobs=1).list()
        assert len(jobs) == 2 and {j.config["seed"] for j in jobs} == {2}
        assert any("6 trials, 2 queued (4 completed)" in s.value for s in at.success)
    finally:
        stop_all_jobs(grid_copy["root"])


def test_leaderboard_objective_is_each_methods_own_or_one_for_all(monkeypatch, grid_store):
    """By default each method takes its own objective (KD 0.1·CE + 0.9·kd, DKD 1·CE + 1·dkd with a
    short warm-up); "the same" shows the two weights and names the experiment after them."""
    params = {**grid_store["board_params"], "methods": "kd,dkd"}
    at = make_app(monkeypatch, grid_store["root"], "views/leaderboard.py", **params)
    at.run()
    no_exception(at)
    assert not [n for n in at.number_input if n.label in ("ce_weight", "Method weight")]
    assert any("3 distill × 2 seeds" in i for i in _infos(at))
    same = make_app(monkeypatch, grid_store["root"], "views/leaderboard.py", **params, objective="same", ce="0.5")
    same.run()
    no_exception(same)
    assert same.number_input(key="qp:ce").value == 0.5
    assert any(i.startswith("Experiment `leaderboard-digits-mlp-1ep-30steps-ce0.5-w0.9`") for i in _infos(same))


def test_leaderboard_link_opens_compare_with_those_runs(monkeypatch, grid_store):
    from urllib.parse import parse_qs

    at = make_app(monkeypatch, grid_store["root"], "views/leaderboard.py", **grid_store["board_params"])
    at.run()
    link = at.dataframe[0].value["runs"][0]
    ids = parse_qs(link.split("?", 1)[1])["runs"][0]
    compare = make_app(monkeypatch, grid_store["root"], "views/compare.py", runs=ids)
    compare.run()
    no_exception(compare)
    assert len(compare.dataframe[0].value) == 2 and json.dumps(list(compare.dataframe[0].value["n"])) == "[2, 2]"


def test_an_experiments_tags_and_note_round_trip_between_the_app_and_the_cli(monkeypatch, grid_copy):
    from typer.testing import CliRunner

    from workbench.cli import app as cli
    from workbench.runs import read_annotations
    from workbench.runs.annotations import experiment_target

    root, name = grid_copy["root"], grid_copy["grid"]
    at = make_app(monkeypatch, root, "views/experiments.py", experiment=name)
    at.run()
    no_exception(at)
    label = f"experiment {name}"
    next(t for t in at.text_input if t.label == "Tags").set_value("sweep, lr")
    next(t for t in at.text_area if t.label == "Note").set_value("two learning rates")
    at.button(key=f"save_notes:{label}").click().run()
    no_exception(at)
    notes = read_annotations(experiment_target(root, name))
    assert notes.tags == ("sweep", "lr") and notes.note == "two learning rates"
    run = CliRunner().invoke
    shown = run(cli, ["experiments", "note", name, "--runs", root])
    assert shown.output.strip() == "two learning rates"
    tagged = run(cli, ["experiments", "tag", name, "from-cli", "--runs", root])
    assert tagged.exit_code == 0 and tagged.output.strip() == f"experiment {name}: tags sweep lr from-cli"
    at.run()
    assert next(t for t in at.text_input if t.label == "Tags").value == "sweep, lr, from-cli"
    missing = run(cli, ["experiments", "tag", "nope", "x", "--runs", root])
    assert missing.exit_code == 2 and "experiment 'nope': not in the store" in missing.output
