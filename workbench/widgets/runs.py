"""Panels over stored runs: the student doctor's report and the comparison of runs."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from workbench.runs.session import as_store, resolve_run
from workbench.vocabulary import EPOCH_METRICS
from workbench.widgets.base import Background, Panel, PanelError


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
    """Several stored runs side by side: one metric over epochs (:func:`workbench.viz.compare_runs`)
    and a table of their summaries (``table``: one row per run, as :meth:`workbench.runs.Run.summary`).

    Controls: ``runs`` (run ids of the store), ``metric`` — only metrics the chosen runs logged
    (:func:`workbench.runs.logged_metrics`: the engine's epoch metrics, then the loss terms).
    """

    title = "Compare runs"

    def __init__(self, run_ids: Sequence[str] | None = None, *, store: Any = None, metric: str = "test_acc") -> None:
        super().__init__()
        self.store = as_store(store)
        self.table: list[dict[str, Any]] = []
        self.table_view = W.HTML()
        ids = self.store.ids()
        self._add("runs", W.SelectMultiple(options=ids, value=(), description="runs", rows=min(8, max(3, len(ids)))))
        self._add("metric", W.Dropdown(options=list(EPOCH_METRICS), value="test_acc", description="metric"))
        self._layout(W.HBox([self.controls["runs"], self.controls["metric"]]))
        self.widget.children = (*self.widget.children, self.table_view)
        if run_ids:
            self.set(runs=list(run_ids), metric=metric)
        else:
            self.set(metric=metric)

    def _offer(self, ids: Sequence[str]) -> None:
        """Offer the metrics the runs ``ids`` logged (all epoch metrics when none is chosen)."""
        from workbench.runs import logged_metrics

        offered = logged_metrics(self.store.load(i) for i in ids) if ids else list(EPOCH_METRICS)
        w = self.controls["metric"]
        if list(w.options) != offered:
            keep = w.value if w.value in offered else ("test_acc" if "test_acc" in offered else None)
            self._suspend += 1
            try:
                w.options = offered
                w.value = keep if keep is not None else (offered[0] if offered else None)
            finally:
                self._suspend -= 1

    def _check_value(self, name: str, value: Any) -> Any:
        if name == "runs":
            if isinstance(value, str):
                value = [value]
            out = []
            ids = self.store.ids()
            for v in value:
                run = resolve_run(str(v), self.store)  # unknown or ambiguous ids fail with one line
                out.append(run.id)
            self.controls["runs"].options = sorted(set(ids) | set(out))
            self._offer(out)
            return tuple(out)
        if name == "metric":
            offered = list(self.controls["metric"].options)
            if value not in offered:
                raise PanelError(
                    f"metric: {str(value)[:40]!r} was not logged by the chosen runs; they logged: {', '.join(offered) or 'nothing yet'}"
                )
            return value
        return super()._check_value(name, value)

    def _compute(self) -> None:
        from workbench.viz import compare_runs

        ids = list(self.value("runs"))
        if not ids:
            self.table, self.result = [], None
            self.table_view.value = "<i>Pick runs to compare.</i>"
            self._show(None)
            return
        runs = [self.store.load(i) for i in ids]
        self.table = [r.summary() for r in runs]
        self.result = {r.id: r.metrics for r in runs}
        cols = ["id", "kind", "status", "model", "method", "test_acc", "agreement", "epochs"]
        head = "".join(f"<th>{c}</th>" for c in cols)

        def cell(v: Any) -> str:
            return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v if v is not None else "-"))

        body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in cols) + "</tr>" for row in self.table)
        self.table_view.value = f"<table><tr>{head}</tr>{body}</table>"
        metric = self.value("metric")
        if metric is None:  # runs still in their first epoch: nothing to draw yet
            self._show(None)
            return
        self._show(compare_runs(self.result, metric))


__all__ = ["CompareRuns", "DoctorPanel"]
