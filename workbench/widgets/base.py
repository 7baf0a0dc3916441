"""What every panel shares: controls driven from Python or the browser, one figure, one error line,
background work with progress and a stop. A panel built from a stored run opens it with
:func:`workbench.runs.session.open_run`, as every face does.

A panel computes nothing of its own: it calls :mod:`workbench.analysis`, :mod:`workbench.jobs`,
:mod:`workbench.train` and :mod:`workbench.runs`, and draws :mod:`workbench.viz` figures. Figures are
shown in an ``ipywidgets.Output`` as plotly's own mime bundle (``application/vnd.plotly.v1+json``,
drawn by the ``jupyterlab-plotly`` renderer that ships with plotly), so no extra widget library is
needed and an update from a background thread is one trait change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from workbench.background import BackgroundJob, run_in_background
from workbench.errors import one_line
from workbench.runtime import CancelToken


class PanelError(ValueError):
    """A bad value given to a panel (shown in the panel as one line; never raised from a callback)."""


def figure_bundle(fig: go.Figure) -> dict[str, Any]:
    """The display bundle of a plotly figure: plotly's JSON mime type (rendered by jupyterlab-plotly)
    and a plain-text fallback."""
    import plotly.io as pio

    bundle = dict(pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict()))
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "figure"
    bundle["text/plain"] = f"<plotly figure: {title}>"
    return bundle


class FigureView:
    """One ``ipywidgets.Output`` holding one plotly figure; :meth:`show` replaces it (thread-safe)."""

    def __init__(self, layout: Mapping[str, Any] | None = None) -> None:
        self.output = W.Output(layout=dict(layout or {}))
        self.figure: go.Figure | None = None

    def show(self, fig: go.Figure | None) -> None:
        """Show ``fig`` (``None`` clears the view)."""
        self.figure = fig
        if fig is None:
            self.output.outputs = ()
            return
        self.output.outputs = ({"output_type": "display_data", "data": figure_bundle(fig), "metadata": {}},)


class Background:
    """One background computation at a time for a panel, on :func:`workbench.background.run_in_background`
    (the thread runner the app's background jobs use too).

    ``start(fn, progress, on_done, on_error, on_cancel)`` runs ``fn(progress, cancel)``; when it ends,
    ``on_done(result)``, ``on_error(exception)`` or ``on_cancel()`` is called in its thread.
    ``stop()`` sets the cancel token; ``wait()`` joins.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.job: BackgroundJob | None = None

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.thread is not None and self.job.thread.is_alive()

    def start(
        self,
        fn: Callable[[Callable[[int, int, str], None], CancelToken], Any],
        progress: Callable[[int, int, str], None],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        on_cancel: Callable[[], None],
    ) -> None:
        if self.running:
            self.stop()
            self.wait(30)

        def ended(job: BackgroundJob) -> None:
            if job.cancelled:
                on_cancel()
            elif job.exception is not None:
                on_error(job.exception)
            else:
                on_done(job.result)

        self.job = run_in_background(lambda job: fn(progress, job.cancel), key=self.name, on_end=ended)

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel.cancel("stopped from the panel")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the thread; returns whether it has ended."""
        if self.job is not None and self.job.thread is not None:
            self.job.thread.join(timeout)
        return not self.running


class Panel(ABC):
    """Base of every panel.

    ``widget`` (the ipywidgets container), ``figure`` (the plotly figure shown, ``None`` before the
    first compute), ``controls`` (name -> ipywidget), ``set(**values)`` / ``value(name)``,
    ``result`` (the last analysis result), ``error`` (the last one-line error, ``None`` when fine),
    ``progress`` (a bar fed by the library's ``progress(done, total, message)``).
    """

    title = "Panel"

    def __init__(self) -> None:
        self.controls: dict[str, W.ValueWidget] = {}
        self.result: Any = None
        self.error: str | None = None
        self.view = FigureView()
        self.status = W.HTML(value="")
        self.progress_bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout={"width": "320px"})
        self.progress_text = W.HTML(value="")
        self._suspend = 0
        self._closed = False
        self.widget: W.Box = W.VBox()

    # ---- building -----------------------------------------------------------------------------
    def _add(self, name: str, control: W.ValueWidget) -> W.ValueWidget:
        """Register a control; a change of its value (from the browser or :meth:`set`) recomputes."""
        self.controls[name] = control
        control.observe(lambda change, _n=name: self._changed(_n, change), names="value")
        return control

    def _layout(self, *rows: W.Widget) -> None:
        header = W.HTML(value=f"<b>{self.title}</b>")
        self.widget.children = (
            header,
            *rows,
            W.HBox([self.progress_bar, self.progress_text]),
            self.status,
            self.view.output,
        )

    # ---- state --------------------------------------------------------------------------------
    @property
    def figure(self) -> go.Figure | None:
        """The plotly figure currently shown."""
        return self.view.figure

    def value(self, name: str) -> Any:
        """The current value of control ``name``."""
        if name not in self.controls:
            raise KeyError(f"{name!r}: no such control; controls: {', '.join(self.controls)}")
        return self.controls[name].value

    def set(self, **values: Any) -> Panel:
        """Set controls by name, then recompute once (the same path as a user changing them).

        A bad value (unknown name, out of range, not among the options) is not applied: it is
        shown in the panel and kept in :attr:`error`; nothing is raised. Returns ``self``.
        """
        if self._apply(values):
            self._changed(None, None)
        return self

    def _apply(self, values: Mapping[str, Any]) -> bool:
        """Check and assign ``values`` without recomputing; returns False (error shown) on a bad one."""
        try:
            checked = {name: self._check_value(name, v) for name, v in values.items()}
        except Exception as err:  # noqa: BLE001 - a bad value is shown, never raised
            self._fail(err)
            return False
        self._suspend += 1
        try:
            for name, v in checked.items():
                self.controls[name].value = v
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            return False
        finally:
            self._suspend -= 1
        return True

    def _check_value(self, name: str, value: Any) -> Any:
        """Validate one value for control ``name`` (by the widget's options and bounds); returns the
        value to assign. Panels refine this for their own controls."""
        if name not in self.controls:
            raise PanelError(f"{name}: no such control; controls: {', '.join(self.controls)}")
        w = self.controls[name]
        options = getattr(w, "options", None)
        if options is not None and not isinstance(w, W.SelectMultiple):
            labels = [o[1] if isinstance(o, tuple) else o for o in options]
            if value not in labels:
                shown = ", ".join(map(str, labels[:12])) + (", ..." if len(labels) > 12 else "")
                raise PanelError(f"{name}: unknown {value!r}; known: {shown}")
        lo, hi = getattr(w, "min", None), getattr(w, "max", None)
        if lo is not None or hi is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PanelError(f"{name}: expected a number, got {value!r}")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise PanelError(f"{name}: expected a value in [{lo}, {hi}], got {value!r}")
        return value

    def _changed(self, name: str | None, change: Any) -> None:
        if self._suspend or self._closed:
            return
        self.refresh()

    def refresh(self) -> Panel:
        """Recompute and redraw from the current controls; an error is shown, never raised."""
        try:
            self.error = None
            self._compute()
            if self.error is None:
                self.status.value = ""
        except Exception as err:  # noqa: BLE001 - shown in the panel as one line
            self._fail(err)
        return self

    @abstractmethod
    def _compute(self) -> None:
        """Recompute the panel's result and figure from its controls (each panel defines it)."""

    def _fail(self, err: BaseException | str) -> None:
        typed = not isinstance(err, (str, ValueError))  # a bug's message means little without its type
        self.error = one_line(err, typed=typed)
        import html

        self.status.value = f"<span style='color:#b00020'>{html.escape(self.error)}</span>"

    def _report(self, done: int, total: int, message: str) -> None:
        """A ``progress(done, total, message)`` callable drawing the panel's bar."""
        self.progress_bar.value = min(max(done / max(total, 1), 0.0), 1.0)
        self.progress_text.value = f"{message} ({done}/{total})" if message else f"{done}/{total}"

    def _show(self, fig: go.Figure | None) -> None:
        self.view.show(fig)

    # ---- display and lifetime ----------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Stop background work and close the widgets."""
        self._closed = True
        self.widget.close()


__all__ = [
    "Background",
    "FigureView",
    "Panel",
    "PanelError",
    "figure_bundle",
]
