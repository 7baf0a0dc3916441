"""Panels over stored runs: the student doctor's report, the comparison of runs, and a run's tags and
note."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from workbench.experiments import WHICH
from workbench.runs import Run, annotate, matches, read_annotations
from workbench.runs.annotations import MAX_NOTE_CHARS
from workbench.runs.session import as_store, resolve_run
from workbench.vocabulary import EPOCH_METRICS, LOSS_TERM_PREFIX, STEP_METRICS
from workbench.widgets.base import Background, Panel, PanelError

#: the ``baseline`` choice of no baseline group
NO_BASELINE = "none"
#: the axes of the comparison's curves
X_AXES: tuple[str, ...] = ("epoch", "step")
#: what the comparison draws: curves, the varied parameters against the metric, or one of them
COMPARE_VIEWS: tuple[str, ...] = ("curves", "parcoords", "scatter")


class DoctorPanel(Panel):
    """The student doctor's ranked findings for a stored run (:func:`workbench.diagnosis.diagnose`,
    drawn by :func:`workbench.viz.findings_table`), computed in a background thread.

    Controls: ``run`` (a run id), ``n_samples``, ``finding`` (the finding whose evidence figure
    :attr:`detail` holds). ``wait()`` blocks until the report is ready; ``stop()`` cancels it.
    """

    title = "Student doctor"

    def __init__(
        self,
        run_or_id: Any,
        *,
        store: Any = None,
        n_samples: int = 500,
        scratch: Any = None,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        self.store = as_store(store)
        self.scratch = scratch
        self.detail: Any = None
        self.done = False
        self._job = Background("doctor")
        run_id = getattr(run_or_id, "id", str(run_or_id))
        self._run = run_or_id if hasattr(run_or_id, "path") else None
        self._add("run", W.Text(value=run_id, description="run", continuous_update=False))
        self._add("n_samples", W.BoundedIntText(value=n_samples, min=10, max=100000, description="samples"))
        self._add("finding", W.Dropdown(options=[("(none)", -1)], value=-1, description="finding"))
        self.detail_view = W.Output()
        from workbench.widgets.base import FigureView

        self._detail = FigureView()
        c = self.controls
        self._layout(W.HBox([c["run"], c["n_samples"]]), c["finding"])
        self.widget.children = (*self.widget.children, self._detail.output)
        if autostart:
            self.refresh()

    def _check_value(self, name: str, value: Any) -> Any:
        if name == "finding":
            n = len(self.result.findings) if self.result is not None else 0
            if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < n:
                raise PanelError(f"finding: expected an index in [0, {n - 1}] (or -1 for none), got {value!r}")
            return value
        return super()._check_value(name, value)

    def _changed(self, name: str | None, change: Any) -> None:
        if name == "finding" and not self._suspend:
            self._draw_detail()
            return
        super()._changed(name, change)

    def _draw_detail(self) -> None:
        from workbench.viz import finding_figure

        i = int(self.value("finding"))
        try:
            self.detail = None if i < 0 or self.result is None else finding_figure(self.result, i)
            self._detail.show(self.detail)
        except Exception as err:  # noqa: BLE001
            self._fail(err)

    def _compute(self) -> None:
        from workbench.diagnosis import diagnose
        from workbench.viz import findings_table

        if self._run is not None and self._run.id == self.value("run"):
            run = self._run
        else:
            run = resolve_run(self.value("run").strip(), self.store)  # an unknown id fails here, at once
        self.done, self.result = False, None
        n = int(self.value("n_samples"))

        def work(progress: Any, cancel: Any) -> Any:
            return diagnose(run, scratch_run=self.scratch, n_samples=n, store=self.store,
                            progress=progress, cancel=cancel)

        def done(report: Any) -> None:
            self.result = report
            self.controls["finding"].options = [("(none)", -1)] + [
                (f"{i + 1}. {f.title}", i) for i, f in enumerate(report.findings)
            ]
            self._show(findings_table(report))
            self.done = True

        def cancelled() -> None:
            self.progress_text.value = "stopped"

        self._job.start(work, self._report, done, self._fail, cancelled)

    @property
    def findings(self) -> list[Any]:
        """The ranked findings of the last report (empty before it is ready)."""
        return list(self.result.findings) if self.result is not None else []

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the report is ready (or ``timeout`` seconds); returns it (``None`` if not ready)."""
        self._job.wait(timeout)
        return self.result

    def stop(self) -> DoctorPanel:
        """Cancel the diagnosis in progress."""
        self._job.stop()
        return self

    def close(self) -> None:
        self._job.stop()
        super().close()


class CompareRuns(Panel):
    """Stored runs side by side, grouped over seeds: runs that differ only in their seed (and name)
    are one group (:func:`workbench.experiments.group_runs`), drawn as its mean ± std and summarised
    by mean, std, min, max and n; a baseline group gives each other group's paired difference by
    seed, said in words.

    Controls:

    * ``search`` (words that narrow the runs offered, as every run picker does:
      :func:`workbench.runs.matches`; ``tag:x`` for a tag), ``runs`` (run ids of the store; the
      chosen ones stay offered whatever the search);
    * ``group`` (on by default: group the runs by everything but the seed; off: one line and one
      table row per run, as :meth:`workbench.runs.Run.summary`);
    * ``x`` (``epoch`` or ``step``: the curves over epochs, or over training steps from the runs'
      step logs) and ``metric`` — only metrics the chosen runs logged (over epochs
      :func:`workbench.runs.logged_metrics`; over steps their step metrics);
    * ``which`` (``last`` or ``best``: each run's last epoch, or its best, in the table, the
      baseline differences and the parameter views), ``baseline`` (``none`` or a group's label);
    * ``view`` (``curves``, ``parcoords``: the varied parameters against the metric, ``scatter``:
      one parameter, ``param``, against it), ``smoothing`` (the curves' debiased moving average,
      0 to 0.99).

    A step metric has its epoch counterpart in the table (``loss`` -> ``train_loss``, ``batch_acc``
    -> ``train_acc``; :data:`workbench.viz.training.EPOCH_COUNTERPART`). Only completed runs are
    grouped; the others are listed in :attr:`skipped` with the reason.

    State: ``groups`` (the :class:`workbench.experiments.RunGroups`), ``group_rows`` (one row per
    group: :func:`workbench.experiments.group_table`, shown while ``group`` is on), ``table`` (one row
    per chosen run, as :meth:`workbench.runs.Run.summary`, shown while ``group`` is off),
    ``comparisons`` (``{group label: PairedDifference}`` against the baseline) and ``sentences``
    (each said in words). :meth:`export` gives the groups as CSV or JSON text.
    """

    title = "Compare runs"

    def __init__(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        store: Any = None,
        metric: str = "test_acc",
        search: str = "",
        group: bool = True,
        x: str = "epoch",
        baseline: str | None = None,
        view: str = "curves",
        param: str | None = None,
        smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        from workbench.experiments import RunGroups

        self.store = as_store(store)
        self.table: list[dict[str, Any]] = []
        self.group_rows: list[dict[str, Any]] = []
        self.groups: RunGroups = RunGroups()
        self.comparisons: dict[str, Any] = {}
        self.sentences: list[str] = []
        self.table_view = W.HTML()
        ids = self.store.ids()
        self._add("search", W.Text(value="", description="search", tooltip="words (all must match), or tag:x",
                                   continuous_update=False))
        self._add("runs", W.SelectMultiple(options=ids, value=(), description="runs", rows=min(8, max(3, len(ids)))))
        self._add("group", W.Checkbox(value=True, description="group over seeds"))
        self._add("x", W.ToggleButtons(options=list(X_AXES), value="epoch", description="x"))
        self._add("metric", W.Dropdown(options=list(EPOCH_METRICS), value="test_acc", description="metric"))
        self._add("which", W.ToggleButtons(options=list(WHICH), value="last", description="which"))
        self._add("baseline", W.Dropdown(options=[NO_BASELINE], value=NO_BASELINE, description="baseline"))
        self._add("view", W.ToggleButtons(options=list(COMPARE_VIEWS), value="curves", description="view"))
        self._add("param", W.Dropdown(options=[], value=None, description="param"))
        self._add("smoothing", W.FloatSlider(value=0.0, min=0.0, max=0.99, step=0.01, description="smoothing",
                                             continuous_update=False))
        c = self.controls
        self._layout(
            W.HBox([W.VBox([c["search"], c["runs"]]), W.VBox([c["group"], c["metric"], c["baseline"]])]),
            W.HBox([c["x"], c["which"]]),
            W.HBox([c["view"], c["param"], c["smoothing"]]),
        )
        self.widget.children = (*self.widget.children, self.table_view)
        start: dict[str, Any] = {"search": search, "group": group, "x": x}
        if run_ids:
            start["runs"] = list(run_ids)
        start.update(metric=metric, baseline=baseline or NO_BASELINE, view=view, smoothing=smoothing)
        if param is not None:
            start["param"] = param
        self.set(**start)

    # ---- what is offered ----------------------------------------------------------------------
    def _offered(self, chosen: Sequence[str]) -> list[str]:
        """The store's runs the search finds, and the ``chosen`` ones, sorted."""
        search = self.controls["search"].value
        found = [i for i in self.store.ids() if matches(Run(i, self.store.root / i), search)]
        return sorted(set(found) | set(chosen))

    def _refilter(self) -> None:
        w = self.controls["runs"]
        offered = self._offered(w.value)
        if list(w.options) != offered:
            _quietly(self, w, offered, w.value)

    def _offer(self, ids: Sequence[str]) -> None:
        """Offer the metrics the runs ``ids`` logged over the ``x`` axis (all epoch metrics, or all
        step metrics, when none is chosen)."""
        from workbench.runs import logged_metrics
        from workbench.runs.steps import logged_step_metrics

        runs = [self.store.load(i) for i in ids]
        if self.value("x") == "step":
            records = [rec for r in runs for rec in r.step_metrics().records]
            offered = logged_step_metrics(records) if runs else list(STEP_METRICS)
            default = "loss"
        else:
            offered = logged_metrics(runs) if runs else list(EPOCH_METRICS)
            default = "test_acc"
        w = self.controls["metric"]
        if list(w.options) != offered:
            keep = w.value if w.value in offered else (default if default in offered else None)
            _quietly(self, w, offered, keep if keep is not None else (offered[0] if offered else None))

    def _sync_options(self, runs: Sequence[Any]) -> Any:
        """Group ``runs`` and offer their groups as baselines and their varied fields as ``param``;
        a baseline or param that is no longer there falls back to none / the first field."""
        from workbench.experiments import group_runs

        groups = group_runs(runs)
        labels = [NO_BASELINE, *(g.label for g in groups)]
        w = self.controls["baseline"]
        if list(w.options) != labels:
            _quietly(self, w, labels, w.value if w.value in labels else NO_BASELINE)
        w = self.controls["param"]
        if list(w.options) != groups.varied:
            keep = w.value if w.value in groups.varied else (groups.varied[0] if groups.varied else None)
            _quietly(self, w, list(groups.varied), keep)
        return groups

    # ---- setting --------------------------------------------------------------------------------
    def _check_value(self, name: str, value: Any) -> Any:
        if name == "search":
            if not isinstance(value, str) or len(value) > 200:
                raise PanelError(f"search: expected text of at most 200 characters, got {str(value)[:40]!r}")
            return value
        if name == "runs":
            if isinstance(value, str):
                value = [value]
            out = []
            for v in value:
                run = resolve_run(str(v), self.store)  # unknown or ambiguous ids fail with one line
                out.append(run.id)
            self.controls["runs"].options = self._offered(out)
            self._offer(out)
            return tuple(out)
        if name == "group" and not isinstance(value, bool):
            raise PanelError(f"group: expected True or False, got {value!r}")
        if name == "metric":
            offered = list(self.controls["metric"].options)
            if value not in offered:
                raise PanelError(
                    f"metric: {str(value)[:40]!r} was not logged by the chosen runs; they logged: {', '.join(offered) or 'nothing yet'}"
                )
            return value
        if name == "baseline":
            value = NO_BASELINE if value is None else value
            labels = list(self.controls["baseline"].options)
            if value not in labels:  # group labels hold commas: quote each
                known = ", ".join(repr(label) for label in labels)
                raise PanelError(f"baseline: no group labelled {str(value)[:80]!r}; choose one of {known}")
            return value
        if name == "param" and value not in self.controls["param"].options:
            varied = ", ".join(self.controls["param"].options) or "none: the chosen runs share one setting"
            raise PanelError(
                f"param: {str(value)[:60]!r} is not a field the chosen groups differ in; they differ in: {varied}"
            )
        return super()._check_value(name, value)

    def set(self, **values: Any) -> CompareRuns:
        """Set controls (``search``, ``runs``, ``group`` and ``x`` first, so that the metrics, the
        baseline groups and the parameters they offer can be set in the same call), then recompute
        once. A bad value is shown in :attr:`error`, never raised. Returns ``self``."""
        first = {k: values[k] for k in ("search", "group", "x", "runs") if k in values}
        rest = {k: v for k, v in values.items() if k not in first}
        if first:
            if not self._apply(first):
                return self
            try:
                self._offer(self.value("runs"))
                self._sync_options([self.store.load(i) for i in self.value("runs")])
            except Exception as err:  # noqa: BLE001 - a run that cannot be read: one line
                self._fail(err)
                return self
        if self._apply(rest):
            self._changed(None, None)
        return self

    def _changed(self, name: str | None, change: Any) -> None:
        if name == "search" and not self._suspend and not self._closed:
            self._refilter()  # a new search changes the runs offered, not the figure
            return
        if name in ("x", "runs") and not self._suspend and not self._closed:
            self._offer(self.value("runs"))
        super()._changed(name, change)

    # ---- computing ------------------------------------------------------------------------------
    def _table_metric(self) -> str | None:
        """The epoch metric of the table and the baseline: ``metric`` itself, or a step metric's
        epoch counterpart (``None`` when it has none, e.g. ``images_per_s``)."""
        from workbench.viz.training import EPOCH_COUNTERPART

        metric = self.value("metric")
        if metric is None or self.value("x") == "epoch" or metric.startswith(LOSS_TERM_PREFIX):
            return metric
        return EPOCH_COUNTERPART.get(metric)

    def _compute(self) -> None:
        self._refilter()
        ids = list(self.value("runs"))
        self.comparisons, self.sentences = {}, []
        if not ids:
            from workbench.experiments import RunGroups

            self.table, self.group_rows, self.result, self.groups = [], [], None, RunGroups()
            self.table_view.value = "<i>Pick runs to compare.</i>"
            self._show(None)
            return
        runs = [self.store.load(i) for i in ids]
        self.groups = groups = self._sync_options(runs)
        measure, which = self._table_metric(), self.value("which")
        self._tabulate(runs, groups, measure, which)
        self._compare(groups, measure, which)
        self.table_view.value = self._table_html(groups, measure)
        self.result = groups if self.value("group") else {r.id: r.metrics for r in runs}
        if self.value("metric") is None:  # runs still in their first epoch: nothing to draw yet
            self._show(None)
            return
        self._show(self._figure(runs, groups, measure, which))

    def _tabulate(self, runs: Sequence[Any], groups: Any, measure: str | None, which: str) -> None:
        from workbench.experiments import group_table

        self.table = [r.summary() for r in runs]
        self.group_rows = group_table(groups, measure, which=which) if measure else []

    def _compare(self, groups: Any, measure: str | None, which: str) -> None:
        """The paired difference of each group against the baseline, and its sentence."""
        from workbench.experiments import baseline_comparison

        base = self.value("baseline")
        if base == NO_BASELINE or measure is None:
            return
        self.comparisons = baseline_comparison(groups, base, measure, which)
        self.sentences = [d.sentence(label, base, measure) for label, d in self.comparisons.items()]

    def _figure(self, runs: Sequence[Any], groups: Any, measure: str | None, which: str) -> Any:
        from workbench.experiments import group_table, run_table
        from workbench.viz import parallel_coordinates, parameter_scatter

        view = self.value("view")
        if view == "curves":
            return self._curves(runs, groups) if self.value("group") else self._run_curves(runs)
        if measure is None:
            raise PanelError(f"view: {self.value('metric')} has no epoch value to set against the parameters")
        if not groups.varied:
            raise PanelError(
                f"view: {view} needs groups that differ in a parameter; the chosen runs share one setting"
            )
        grouped = self.value("group")
        table = group_table if grouped else run_table
        rows = table(groups, measure, which=which)
        value = "mean" if grouped else measure
        if view == "parcoords":
            title = f"Parameters against {measure} ({which})"
            return parallel_coordinates(rows, groups.varied, value, title=title)
        param = self.value("param")
        return parameter_scatter(rows, param, value, error="std" if grouped else None,
                                 title=f"{measure} ({which}) against {param}")

    def _curves(self, runs: Sequence[Any], groups: Any) -> Any:
        """Mean ± std of ``metric`` per group over epochs or steps."""
        from workbench.experiments import epoch_bands, step_bands
        from workbench.viz import group_curves

        if not groups:
            raise PanelError(
                f"runs: none of the {len(runs)} chosen runs has completed, so none is grouped yet; "
                "turn group off to see them as they are"
            )
        metric, weight = self.value("metric"), float(self.value("smoothing"))
        if self.value("x") == "step":
            logs = {r.id: r.step_metrics() for g in groups for r in g.runs}
            bands = [step_bands(g, metric, logs, smoothing=weight) for g in groups]
        else:
            bands = [epoch_bands(g, metric, smoothing=weight) for g in groups]
        return group_curves(bands)

    def _run_curves(self, runs: Sequence[Any]) -> Any:
        """One line per run over epochs (:func:`workbench.viz.compare_runs`) or steps, smoothed."""
        from workbench.experiments import ema
        from workbench.viz.training import compare_runs, step_curves, step_series

        metric = self.value("metric")
        if self.value("x") == "epoch":
            return compare_runs({r.id: r.metrics for r in runs}, metric)
        logs = {r.id: r.step_metrics() for r in runs}
        weight = float(self.value("smoothing"))
        smoothed = None
        if weight > 0:
            smoothed = {i: ema(step_series(log, metric)[1], weight) for i, log in logs.items()}
        return step_curves(logs, metric, smoothed=smoothed, epochs={r.id: r.metrics for r in runs})

    def _table_html(self, groups: Any, measure: str | None) -> str:
        """The table, the baseline sentences and the runs left out, as HTML."""
        if self.value("group"):
            cols, rows = ["group", "mean", "std", "min", "max", "n", "measure"], self.group_rows
        else:
            cols = ["id", "kind", "status", "model", "method", "test_acc", "agreement", "epochs", "tags"]
            rows = self.table
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in cols) + "</tr>" for row in rows
        )
        parts = [f"<table><tr>{head}</tr>{body}</table>"]
        if self.value("group") and measure is None and self.value("metric") is not None:
            metric = html.escape(self.value("metric"))
            parts.append(f"<p>{metric} has no epoch value: the table needs an epoch metric</p>")
        if self.sentences:
            items = "".join(f"<li>{html.escape(s)}</li>" for s in self.sentences)
            parts.append(f"<p>Against {html.escape(self.value('baseline'))}:</p><ul>{items}</ul>")
        if groups.skipped:
            left = "; ".join(f"{i} ({why})" for i, why in groups.skipped)
            parts.append(f"<p>Not grouped: {html.escape(left)}</p>")
        return "".join(parts)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(run id, reason)`` of each chosen run not grouped (unfinished, damaged, a repeated seed)."""
        return list(self.groups.skipped)

    def export(self, format: str = "csv") -> str:
        """The groups of the chosen runs as text: ``csv`` — the group table of the metric (its epoch
        counterpart for a step metric) at each run's ``which`` epoch, a header line then one row per
        group (:func:`workbench.experiments.groups_csv`); ``json`` — the groups with their runs and
        statistics (:func:`workbench.experiments.groups_json`). The groups are exported whether or
        not ``group`` is on.

        Raises:
            PanelError: an unknown ``format``, or a metric without an epoch value.
        """
        import json

        from workbench.experiments import group_table, groups_csv, groups_json

        if format not in ("csv", "json"):
            raise PanelError(f"format: expected csv or json, got {format!r}")
        measure = self._table_metric()
        if measure is None:
            raise PanelError(f"metric: {self.value('metric')} has no epoch value to export")
        if format == "json":
            return json.dumps(groups_json(self.groups, measure), indent=2)
        return groups_csv(group_table(self.groups, measure, which=self.value("which")))


def _quietly(panel: Panel, w: Any, options: Sequence[Any], value: Any) -> None:
    """Change a control's options and value without recomputing."""
    panel._suspend += 1
    try:
        w.options = list(options)
        w.value = value
    finally:
        panel._suspend -= 1


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return html.escape(" ".join(map(str, v)))
    if isinstance(v, float):
        return "-" if v != v else f"{v:.4f}"
    return html.escape(str(v if v is not None else "-"))


class RunNotes(Panel):
    """A run's tags and note (:mod:`workbench.runs.annotations`), to read and edit.

    Controls: ``run`` (a run id; choosing one loads its tags and note), ``tags`` (text: tags
    separated by commas or spaces), ``note`` (free text). Edits are kept in the controls until
    :meth:`save` (or the Save button) writes both at once; ``result`` is the run's
    :class:`~workbench.runs.Annotations` as last read or written.
    """

    title = "Tags and note"

    def __init__(self, run_or_id: Any, *, store: Any = None) -> None:
        super().__init__()
        self.store = as_store(store)
        self._loaded: str | None = None
        self._run = run_or_id if hasattr(run_or_id, "path") else None
        run_id = getattr(run_or_id, "id", str(run_or_id))
        self._add("run", W.Text(value=run_id, description="run", continuous_update=False))
        self._add("tags", W.Text(value="", description="tags", tooltip="e.g. baseline, lr:0.1"))
        self._add("note", W.Textarea(value="", description="note",
                                     layout={"width": "480px", "height": "120px"}))
        self.save_button = W.Button(description="Save", button_style="primary")
        self.save_button.on_click(lambda _: self.save())
        c = self.controls
        self._layout(c["run"], c["tags"], c["note"], self.save_button)
        self.refresh()

    def _resolve(self) -> Run:
        run_id = self.value("run").strip()
        if self._run is not None and self._run.id == run_id:
            return self._run
        return resolve_run(run_id, self.store)  # an unknown id fails here with one line

    def _check_value(self, name: str, value: Any) -> Any:
        if name in ("run", "tags", "note") and not isinstance(value, str):
            raise PanelError(f"{name}: expected text, got {type(value).__name__}")
        if name == "note" and len(value.strip()) > MAX_NOTE_CHARS:
            raise PanelError(f"note: {len(value.strip()):,} characters; at most {MAX_NOTE_CHARS:,}")
        return super()._check_value(name, value)

    def _changed(self, name: str | None, change: Any) -> None:
        if name in ("tags", "note"):
            return  # an edit waits for save()
        super()._changed(name, change)

    def _compute(self) -> None:
        run = self._resolve()
        if run.id == self._loaded:
            return  # the edits in the controls are kept
        notes = read_annotations(run)
        self._apply({"tags": ", ".join(notes.tags), "note": notes.note})
        self.result, self._loaded = notes, run.id
        if notes.damage:
            self._fail(f"run {run.id}: {notes.damage}; saving replaces it")

    def save(self) -> RunNotes:
        """Write the tags and the note in the controls to the run (one atomic write); a bad tag or
        a run that is gone is shown in the panel and kept in :attr:`error`. Returns ``self``."""
        try:
            run = self._resolve()
            self.result = annotate(run, tags=self.value("tags"), note=self.value("note"))
        except Exception as err:  # noqa: BLE001 - shown in the panel as one line
            self._fail(err)
            return self
        self._loaded, self.error = run.id, None
        self._apply({"tags": ", ".join(self.result.tags), "note": self.result.note})
        n_tags, n_chars = len(self.result.tags), len(self.result.note)
        self.status.value = html.escape(f"saved: {n_tags} tag(s), a note of {n_chars:,} characters")
        return self


__all__ = ["CompareRuns", "DoctorPanel", "RunNotes"]
