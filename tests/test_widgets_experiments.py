"""The experiment panels on tiny digits runs: CompareRuns grouped over seeds (bands, table, baseline
sentence, parameter views, export), ExperimentPanel (plan, refusals, queued trials and their states,
stop, repeat with seeds) and TrainPanel's live step curves. Jobs train in this process (the queue's
worker body, :func:`workbench.jobs.worker.run_job`), as in tests/test_experiments_queue.py."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest

pytest.importorskip("ipywidgets")

import workbench.jobs.queue as jq  # noqa: E402
from workbench.config import validate_config  # noqa: E402
from workbench.jobs import JobQueue  # noqa: E402
from workbench.jobs.worker import run_job  # noqa: E402
from workbench.runs import RunStore  # noqa: E402
from workbench.widgets import CompareRuns, ExperimentPanel, TrainPanel  # noqa: E402
from workbench.widgets.experiments import grid_text, parse_grid  # noqa: E402

LRS = (0.05, 0.1)
SEEDS = (0, 1)
BASE = {
    "data": {"dataset": "digits", "batch_size": 128},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "optim": {"name": "adamw", "lr": 0.003},
    "train": {"epochs": 1, "max_steps": 2, "snapshot_every_epoch": False},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four completed digits runs: an MLP at two learning rates, two seeds each, 2 epochs of 3 steps."""
    from workbench.train import Trainer

    runs = RunStore(tmp_path_factory.mktemp("widget-experiments"))
    for lr in LRS:
        for seed in SEEDS:
            config = validate_config(
                {
                    "seed": seed,
                    "data": {"dataset": "digits", "batch_size": 64, "train_subset": 192},
                    "model": {"name": "mlp"},
                    "optim": {"lr": lr},
                    "train": {"epochs": 2, "device": "cpu", "snapshot_every_epoch": False},
                }
            )
            Trainer(config, store=runs).run()
    return runs


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """A queue whose workers are not launched: the tests train started jobs in this process."""
    monkeypatch.setattr(JobQueue, "_launch", lambda self, job_id, token: os.getpid())
    monkeypatch.setattr(jq, "_is_our_worker", lambda pid, job_id: True)
    return JobQueue(tmp_path / "runs", max_jobs=2)


def _token(q: JobQueue, job_id: str) -> str:
    return json.loads((q.dir / f"{job_id}.json").read_text())["token"]


def _drain(q: JobQueue) -> None:
    """Train every running job (started by a pump here or in a panel's thread) until none is left."""
    while True:
        q.pump()
        running = [j for j in q.list() if j.state == "running"]
        if not running:
            return
        for job in running:
            run_job(q.root, job.id, _token(q, job.id), pump_after=False)


# ---- CompareRuns ------------------------------------------------------------------------------------
def test_compare_groups_runs_over_seeds_with_a_table_and_bands(store):
    panel = CompareRuns(store.ids(), store=store)
    assert panel.error is None, panel.error
    assert [g.label for g in panel.groups] == ["lr=0.05", "lr=0.1"] and panel.skipped == []
    assert [(row["group"], row["n"]) for row in panel.group_rows] == [("lr=0.05", 2), ("lr=0.1", 2)]
    assert {"mean", "std", "min", "max", "n"} <= set(panel.group_rows[0])
    assert panel.group_rows[0]["measure"] == "test_acc, last epoch"
    assert "<td>lr=0.05</td>" in panel.table_view.value  # the group table is shown
    names = [t.name for t in panel.figure.data if t.showlegend is not False]
    assert names == ["lr=0.05", "lr=0.1"]  # a mean line each, with its band
    assert len(panel.figure.data) == 6
    panel.set(which="best")
    assert panel.error is None and panel.group_rows[0]["measure"] == "test_acc, best epoch"
    assert all(row["mean"] >= 0 for row in panel.group_rows)
    assert sorted(row["id"] for row in panel.table) == sorted(store.ids())  # one summary per run
    panel.set(group=False)
    assert panel.error is None and f"<td>{store.ids()[0]}</td>" in panel.table_view.value
    assert len(panel.figure.data) == 4  # one line per run


def test_compare_baseline_says_the_paired_difference_per_group(store):
    panel = CompareRuns(store.ids(), store=store, baseline="lr=0.05")
    assert panel.error is None, panel.error
    assert list(panel.comparisons) == ["lr=0.1"]
    diff = panel.comparisons["lr=0.1"]
    assert diff.n == 2 and diff.seeds == SEEDS
    (sentence,) = panel.sentences
    assert sentence.startswith("lr=0.1 ") and "lr=0.05" in sentence and "over 2 seeds" in sentence
    assert "lr=0.05" in panel.table_view.value and sentence.split(" (")[0] in panel.table_view.value
    panel.set(baseline="lr=0.3")  # not a group: one line, the old baseline kept
    assert panel.error is not None and "baseline" in panel.error and "\n" not in panel.error
    assert panel.value("baseline") == "lr=0.05"
    panel.set(baseline=None)
    assert panel.error is None and panel.sentences == []


def test_compare_over_steps_and_parameter_views(store):
    panel = CompareRuns(store.ids(), store=store, x="step", metric="loss", smoothing=0.5)
    assert panel.error is None, panel.error
    assert panel.figure.layout.xaxis.title.text == "step"
    assert panel.group_rows[0]["measure"] == "train_loss, last epoch"  # the loss's epoch counterpart
    assert "batch_acc" in panel.controls["metric"].options
    panel.set(x="epoch")
    assert panel.error is None and panel.value("metric") == "test_acc"
    panel.set(view="parcoords")
    assert panel.error is None and panel.figure.data[0].type == "parcoords"
    assert [d.label for d in panel.figure.data[0].dimensions] == ["optim.lr", "mean"]
    panel.set(view="scatter", param="optim.lr")
    assert panel.error is None and {t.type for t in panel.figure.data} == {"scatter"}
    panel.set(param="optim.momentum")
    assert panel.error is not None and panel.error.startswith("param:")
    one = CompareRuns(panel.groups[0].ids, store=store, view="parcoords")  # one setting: nothing to vary
    assert one.error is not None and "parcoords" in one.error


def test_compare_export_csv_and_json(store):
    panel = CompareRuns(store.ids(), store=store)
    text = panel.export()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:10] == [
        "group",
        "optim.lr",
        "metric",
        "which",
        "measure",
        "mean",
        "std",
        "min",
        "max",
        "n",
    ]
    assert [r[0] for r in rows[1:]] == ["lr=0.05", "lr=0.1"] and [r[9] for r in rows[1:]] == ["2", "2"]
    data = json.loads(panel.export(format="json"))
    assert data["metric"] == "test_acc" and [g["label"] for g in data["groups"]] == ["lr=0.05", "lr=0.1"]
    assert data["groups"][0]["stats"]["last"]["n"] == 2
    with pytest.raises(ValueError, match="format"):
        panel.export(format="xlsx")


# ---- ExperimentPanel --------------------------------------------------------------------------------
def test_grid_text_round_trips_and_bad_lines_name_themselves():
    grid = {
        "optim.lr": [0.01, 0.1],
        "distill.methods": ["none", "0.9*kd + dist"],
        "model.kwargs.hidden": [[8], [16]],
    }
    assert parse_grid(grid_text(grid)) == grid
    assert parse_grid("# a comment\n\noptim.lr: 1e-3, 0.1\n") == {"optim.lr": [0.001, 0.1]}
    for text, words in (
        ("optim.lr 0.1", "line 1"),
        ("optim.lr: 1\noptim.lr: 2", "twice"),
        ("a..b: 1", "a..b"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_grid(text)


def test_experiment_panel_plans_refuses_and_names_a_bad_field(queue):
    panel = ExperimentPanel(
        BASE,
        {"optim.lr": [0.01, 0.1], "model.kwargs.hidden": [[8], [16]]},
        seeds=[0, 1],
        name="plan",
        queue=queue,
    )
    assert panel.error is None, panel.error
    assert panel.plan["runs"] == 8 and panel.plan["seconds"] > 0
    assert panel.plan_text.value.startswith("8 runs (2 optim.lr × 2 model.kwargs.hidden × 2 seeds); about ")
    panel.set(grid="optim.lr: 0.01, -1")
    assert panel.error is not None and "optim.lr" in panel.error and "\n" not in panel.error
    assert panel.plan is None and panel.start() is None and queue.list() == []
    panel.set(grid="optim.lrr: 0.1")
    assert panel.error is not None and "lrr" in panel.error
    values = ", ".join(str(0.001 * (i + 1)) for i in range(167))
    panel.set(grid=f"optim.lr: {values}", seeds="0, 1, 2")
    assert panel.error is not None and "501 runs" in panel.error and "500" in panel.error
    assert panel.start() is None and queue.list() == []
    panel.set(seeds="0, x")
    assert panel.error is not None and panel.error.startswith("seeds:")


def test_experiment_panel_queues_the_trials_and_follows_them(queue):
    panel = ExperimentPanel(BASE, "optim.lr: 0.01, 0.1", seeds="0, 1", name="lrs", queue=queue, poll=0.05)
    assert panel.error is None and panel.plan["runs"] == 4
    sub = panel.start()
    assert panel.error is None and sub is not None and sub.queued == 4
    assert len(panel.table) == 4 and {row["state"] for row in panel.table} <= {"queued", "running"}
    _drain(queue)
    status = panel.wait(30)
    assert status.counts["completed"] == 4 and not panel.active
    assert [row["state"] for row in panel.table] == ["completed"] * 4
    assert "completed" in panel.table_view.value and panel.figure is not None
    compare = panel.compare(baseline="lr=0.01")
    assert compare.error is None and [row["n"] for row in compare.group_rows] == [2, 2]
    assert len(compare.sentences) == 1
    again = ExperimentPanel(BASE, "optim.lr: 0.01, 0.1", seeds="0, 1", name="lrs", queue=queue)
    assert again.start().queued == 0  # re-submitting trains nothing that is done


def test_experiment_panel_stop_and_repeat_with_seeds(queue, store):
    panel = ExperimentPanel(
        BASE, "optim.lr: 0.01, 0.02, 0.03", seeds="0", name="stopme", queue=queue, poll=0.05
    )
    panel.start()
    stopped = panel.stop()
    assert panel.error is None and len(stopped) == 3
    _drain(queue)  # the two running trials see their stop request at their first step
    status = panel.wait(30)
    assert status.counts["stopped"] == 3 and status.counts["completed"] == 0

    source = store.load(store.ids()[0])
    repeat = ExperimentPanel.repeat(source, 2, queue=queue, poll=0.05)
    assert repeat.error is None and repeat.submission.queued == 2
    assert repeat.value("name") == f"repeat-{source.id}" and repeat.plan["runs"] == 2
    _drain(queue)
    assert repeat.wait(30).counts["completed"] == 2
    with pytest.raises(ValueError, match="n_seeds"):
        ExperimentPanel.repeat(source, 0, queue=queue)


# ---- TrainPanel: live step curves ---------------------------------------------------------------------
def test_train_panel_shows_its_place_in_the_queue_then_step_points_that_grow(queue, monkeypatch):
    from workbench.train.engine import Trainer

    step = Trainer._step

    def paced(self, *args, **kwargs):  # each step takes at least 20 ms: the watcher sees the curve grow
        time.sleep(0.02)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_step", paced)
    queue.max_jobs = 1
    blocker = queue.submit({**BASE, "seed": 5})
    queue.pump()  # the only slot is taken
    panel = TrainPanel(
        queue=queue,
        dataset="digits",
        teacher="none",
        student="mlp",
        methods=(),
        epochs=4,
        data={"batch_size": 16, "train_subset": 160},
        train={"step_log_every": 1},
        model={"kwargs": {"hidden": [16]}},
        poll=0.02,
        smoothing=0.8,
    )
    assert panel.error is None, panel.error
    drawn: list[int] = []
    show = panel._show

    def recording(fig):
        if fig is not None and fig.data:
            drawn.append(len(fig.data[0].x))
        show(fig)

    panel._show = recording
    job = panel.start()
    deadline = time.monotonic() + 10
    while "position 1 in the queue" not in panel.job_text.value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "queued, position 1 in the queue" in panel.job_text.value
    run_job(queue.root, blocker.id, _token(queue, blocker.id), pump_after=False)
    deadline = time.monotonic() + 10
    while queue.get(job.id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    run_job(queue.root, job.id, _token(queue, job.id), pump_after=False)  # the panel watches meanwhile
    run = panel.wait(30)
    assert panel.error is None, panel.error
    records = run.step_metrics().records
    assert len(records) == 4 * 10
    growing = sorted(set(drawn))
    assert len(growing) >= 3 and growing[-1] == len(records), drawn
    assert drawn == sorted(drawn)  # the curve only grows
    names = [t.name for t in panel.figure.data]
    assert names[:2] == [f"{run.id} (raw)", run.id] and "epoch train_loss" in names[2]
    assert panel.figure.data[0].opacity == 0.35  # the raw curve faint under the smoothed one
    panel.set(smoothing=0.0)
    assert [t.name for t in panel.figure.data][0] == run.id  # the raw curve alone
    panel.set(metric="loss/ce")
    assert panel.error is None and panel.figure.layout.yaxis.title.text == "loss/ce"
    # the form's config is a base for an experiment
    experiment = ExperimentPanel(panel, "optim.lr: 0.01, 0.1", seeds="0, 1", queue=queue)
    assert experiment.error is None and experiment.plan["runs"] == 4
