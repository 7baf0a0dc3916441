"""What every panel shares: controls driven from Python or the browser, one figure, one error line,
background work with progress and a stop, and loading a panel's inputs from a stored run.

A panel computes nothing of its own: it calls :mod:`workbench.analysis`, :mod:`workbench.jobs`,
:mod:`workbench.train` and :mod:`workbench.runs`, and draws :mod:`workbench.viz` figures. Figures are
shown in an ``ipywidgets.Output`` as plotly's own mime bundle (``application/vnd.plotly.v1+json``,
drawn by the ``jupyterlab-plotly`` renderer that ships with plotly), so no extra widget library is
needed and an update from a background thread is one trait change.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
import torch
from torch import nn

from workbench.runtime import Cancelled, CancelToken


class PanelError(ValueError):
    """A bad value given to a panel (shown in the panel as one line; never raised from a callback)."""


def one_line(err: BaseException | str) -> str:
    """The first line of an error's message (``PanelError`` and library errors as they are; other
    exceptions prefixed with their type)."""
    if isinstance(err, str):
        text = err
    else:
        text = str(err).strip()
        if not isinstance(err, ValueError) or not text:
            text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    first = text.strip().splitlines()[0] if text.strip() else "error"
    return first[:400]


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
    """One background computation at a time, in a daemon thread, with a :class:`CancelToken`.

    ``start(fn)`` runs ``fn(progress, cancel)``; ``on_done(result)`` or ``on_error(err)`` is called in
    the thread when it ends (``Cancelled`` goes to ``on_cancel``). ``stop()`` sets the token;
    ``wait()`` joins.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self.cancel = CancelToken()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

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
        self.cancel = CancelToken()
        token = self.cancel

        def body() -> None:
            try:
                out = fn(progress, token)
            except Cancelled:
                on_cancel()
            except Exception as err:  # noqa: BLE001 - shown in the panel as one line
                on_error(err)
            else:
                on_done(out)

        self.thread = threading.Thread(target=body, name=f"workbench-{self.name}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.cancel.cancel("stopped from the panel")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the thread; returns whether it has ended."""
        if self.thread is not None:
            self.thread.join(timeout)
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
        self.error = one_line(err)
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


# ---- inputs from a stored run ---------------------------------------------------------------------
@dataclass
class RunInputs:
    """What a panel built from a run needs: the run, its teacher and student, a seeded test subset
    (normalized ``images``, ``labels``, ``raw`` images for display, ``masks``) and class names."""

    run: Any
    teacher: nn.Module | None
    student: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    dataset: Any
    masks: torch.Tensor | None = None


def resolve_run(run_or_id: Any, store: Any = None) -> Any:
    """A :class:`workbench.runs.Run` from a Run, a run id (or unique prefix) or a run directory."""
    from workbench.runs import Run, RunStore, RunStoreError

    if isinstance(run_or_id, Run):
        return run_or_id
    if isinstance(run_or_id, (str, Path)):
        path = Path(run_or_id)
        if path.is_dir() and (path / "status.json").exists():
            return Run(path.name, path)
        st = store if store is not None else RunStore()
        if not isinstance(st, RunStore):
            st = RunStore(st)
        return st.load(str(run_or_id))
    raise RunStoreError(f"run: expected a Run, a run id or a run directory, got {type(run_or_id).__name__}")


def run_inputs(
    run_or_id: Any,
    *,
    store: Any = None,
    n_samples: int = 256,
    checkpoint: str = "final",
    seed: int = 0,
    device: str | torch.device | None = None,
) -> RunInputs:
    """Load a stored run's teacher (its config's first, or ``None``), its student at ``checkpoint``
    and ``n_samples`` test samples of its dataset drawn with ``seed``
    (:func:`workbench.analysis.doctor.dataset_inputs`)."""
    from workbench.analysis.doctor import dataset_inputs
    from workbench.data import load_dataset
    from workbench.devices import resolve_device
    from workbench.train.teachers import load_teacher

    run = resolve_run(run_or_id, store)
    dev = resolve_device(device or "auto", field="device")
    cfg = run.config
    data = load_dataset(cfg.data.dataset, root=cfg.data.root, download=cfg.data.download, **cfg.data.options)
    inputs = dataset_inputs(data, n_samples=n_samples, seed=seed)
    student = run.load_model(checkpoint, device=dev)
    teacher = None
    if cfg.teachers:
        teacher = load_teacher(
            cfg.teachers[0], data.num_classes, data.image_shape, dev, runs_root=str(run.path.parent)
        )
    return RunInputs(
        run=run,
        teacher=teacher,
        student=student,
        images=inputs["images"],
        labels=inputs["labels"],
        class_names=inputs["class_names"],
        dataset=data,
        masks=inputs["masks"],
    )


__all__ = [
    "Background",
    "FigureView",
    "Panel",
    "PanelError",
    "RunInputs",
    "figure_bundle",
    "one_line",
    "resolve_run",
    "run_inputs",
]
