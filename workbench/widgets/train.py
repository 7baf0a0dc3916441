"""TrainPanel: a run config from a form, trained as a background job of the shared queue, watched live.

The form is generated from the registries (datasets, shipped teachers and teacher runs, models,
methods) and from each method's parameter schema (:func:`workbench.distill.forms.schema_fields`).
``start()`` submits the config to :class:`workbench.jobs.JobQueue`, the queue the app and the CLI
use; the job trains in a worker process, so the kernel stays usable. A daemon thread reads the
job's place in the queue, its progress, the run's step records (``steps.jsonl``,
:meth:`workbench.runs.Run.step_metrics`) and epoch metrics from the run store about once a second
and redraws the bar and the curves, until the job is final or the panel is closed. The curves are
the step records of one step metric, raw and smoothed (the bias-corrected exponential moving
average of :func:`workbench.experiments.ema`), with the epoch values as points
(:func:`workbench.viz.step_curves`); a run without step records draws its epoch curves.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W

from workbench.config import TEACHER_PRECISIONS
from workbench.distill.forms import text_hint
from workbench.runs.steps import logged_step_metrics
from workbench.vocabulary import LOSS_TERM_PREFIX, STEP_METRICS
from workbench.widgets.base import Background, Panel, PanelError

NO_TEACHER = "none"
#: the controls that change how the curves are drawn, not the run config
VIEW_CONTROLS = ("metric", "smoothing")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _field_widget(f: Any) -> W.ValueWidget:
    """One control for a schema field (:class:`workbench.distill.forms.Field`)."""
    desc = f.name
    tip = f.help or f.name
    if f.kind in ("number", "integer") and not f.optional and f.default is not None:
        lo = -1e12 if f.minimum is None else f.minimum
        hi = 1e12 if f.maximum is None else f.maximum
        if f.kind == "integer":
            return W.BoundedIntText(value=int(f.default), min=int(lo), max=int(hi), description=desc, tooltip=tip)
        return W.BoundedFloatText(value=float(f.default), min=float(lo), max=float(hi), description=desc,
                                  tooltip=tip)
    if f.kind == "boolean":
        return W.Checkbox(value=bool(f.default), description=desc, tooltip=tip)
    if f.kind == "choice":
        return W.Dropdown(options=list(f.choices), value=f.default if f.default in f.choices else f.choices[0],
                          description=desc, tooltip=tip)
    shown = "default" if f.default is None else str(f.default)
    return W.Text(value="", description=desc, tooltip=f"{tip} ({text_hint(f)}; blank = {shown})")


class TrainPanel(Panel):
    """Train a student from a teacher in the background and watch it.

    Controls: ``dataset``, ``teacher`` (``shipped:NAME``, ``teacher:NAME``, ``run:ID`` or ``none``), ``student``,
    ``methods`` (a tuple of method names), ``ce_weight``, ``teacher_precision`` (``float32``,
    ``bfloat16`` or ``auto``: see ``distill.teacher_precision``), ``epochs``, ``seed``, ``max_steps``
    (``0`` = no limit), ``name``, and per chosen method ``<method>.weight`` and ``<method>.<param>``
    generated from the method's schema. ``overrides`` given to the constructor are either control
    values (by name) or sections merged into the config (e.g. ``train={"max_steps": 5}``,
    ``data={"train_subset": 256}``).

    How the run is drawn while it trains: ``metric`` (a step metric, :data:`workbench.vocabulary.
    STEP_METRICS`, and the ``loss/<term>`` entries the run records) and ``smoothing`` (the weight of
    the debiased moving average drawn over the raw curve, 0 to 0.99; 0 draws the raw curve alone).

    ``config`` is the validated config of the form (``None`` while it is invalid; :attr:`error` says
    why); ``start()`` queues it; ``job`` is the queued job (its ``position`` in the queue while it
    waits, shown in the panel), ``progress`` the last progress mapping, ``step_log`` the run's step
    records as last read (a :class:`workbench.runs.StepLog`), ``metrics`` the run's epoch metrics as
    last read, ``run`` the finished :class:`workbench.runs.Run`.
    """

    title = "Train a student"

    def __init__(
        self,
        *,
        store: Any = None,
        queue: Any = None,
        dataset: str = "mnist",
        teacher: str = "shipped:mnist",
        student: str = "cnn_small",
        methods: str | Sequence[str] = "kd",
        epochs: int = 2,
        seed: int = 0,
        workspace: str | None = None,
        poll: float = 1.0,
        metric: str = "loss",
        smoothing: float = 0.6,
        **overrides: Any,
    ) -> None:
        super().__init__()
        from workbench.distill import list_methods
        from workbench.jobs import JobQueue
        from workbench.models import list_models
        from workbench.runs import RunStore
        from workbench.runs.datasets import dataset_choices

        if store is None:
            store = RunStore(queue.root) if queue is not None else RunStore()
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.queue = queue if queue is not None else JobQueue(self.store.root)
        self.workspace = workspace
        self.poll = float(poll)
        self.config: Any = None
        self.job: Any = None
        self.run: Any = None
        self.progress: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.step_log: Any = None
        self._draw_lock = threading.Lock()
        self._watcher = Background("train-watch")
        self._method_widgets: dict[str, dict[str, W.ValueWidget]] = {}
        self._method_fields: dict[str, dict[str, Any]] = {}  # method -> {param: forms.Field}
        self.extra_config: dict[str, Any] = {}

        datasets = [c.name for c in dataset_choices(self.store) if c.loads_alone]
        self._add("dataset", W.Dropdown(options=datasets, value=dataset, description="dataset"))
        self._add("teacher", W.Dropdown(options=self._teacher_options(dataset), value=None, description="teacher"))
        self._add("student", W.Dropdown(options=list_models(), value=student, description="student"))
        self._add("methods", W.SelectMultiple(options=list_methods(), value=(), description="methods", rows=6))
        self._add("ce_weight", W.BoundedFloatText(value=0.1, min=0.0, max=100.0, step=0.1, description="ce_weight"))
        self._add(
            "teacher_precision",
            W.Dropdown(
                options=list(TEACHER_PRECISIONS),
                value="float32",
                description="precision",
                tooltip="precision of the teacher's forwards: float32 (exact), bfloat16 (faster where the "
                "hardware has bf16 units), auto",
            ),
        )
        self._add("epochs", W.BoundedIntText(value=epochs, min=1, max=1000, description="epochs"))
        self._add("seed", W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed"))
        self._add("max_steps", W.BoundedIntText(value=0, min=0, max=10**9, description="max steps"))
        self._add("name", W.Text(value="", description="name", tooltip="a name for the run (optional)"))
        self.method_box = W.VBox()
        self.start_button = W.Button(description="Start", button_style="primary")
        self.stop_button = W.Button(description="Stop", disabled=True)
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self._add("metric", W.Dropdown(options=list(STEP_METRICS), value="loss", description="metric"))
        self._add("smoothing", W.FloatSlider(value=0.6, min=0.0, max=0.99, step=0.01, description="smoothing",
                                             continuous_update=False))
        self.job_text = W.HTML(value="")
        self.progress_bar.description = "progress"
        c = self.controls
        self._layout(
            W.HBox([c["dataset"], c["teacher"], c["student"]]),
            W.HBox([c["methods"], W.VBox([c["ce_weight"], c["teacher_precision"], c["epochs"], c["seed"], c["max_steps"], c["name"]])]),
            self.method_box,
            W.HBox([self.start_button, self.stop_button, self.job_text]),
            W.HBox([c["metric"], c["smoothing"]]),
        )
        initial: dict[str, Any] = {"teacher": teacher, "methods": methods}
        initial.update(metric=metric, smoothing=smoothing)
        for key, value in overrides.items():
            if key in self.controls or "." in key:
                initial[key] = value
            else:
                self.extra_config[key] = value
        self.set(**initial)

    @classmethod
    def from_recipe(
        cls,
        name: str,
        *,
        dataset: str,
        kind: str = "distill",
        epochs: int | None = None,
        method: str = "kd",
        teacher: str | None = None,
        store: Any = None,
        **kwargs: Any,
    ) -> TrainPanel:
        """A panel set to recipe ``name`` (:func:`workbench.recipes.list_recipes`) on ``dataset``, a
        dataset of the store holding the recipe's files (``DataPanel`` or ``workbench data add``):
        ``kind`` ``teacher``, ``student`` or ``distill`` (with ``method``, taught by ``teacher`` or the
        store's latest teacher run of the pair), the published schedule, augmentation and objective
        (:func:`workbench.runs.recipe_runs.recipe_config`); ``epochs`` scales the milestones. The
        controls show the choices; optimiser, schedule and augmentation ride along as config sections."""
        from workbench.runs import RunStore
        from workbench.runs.recipe_runs import recipe_config

        runs = store if isinstance(store, RunStore) else RunStore(store)
        cfg = recipe_config(kind, name, store=runs, dataset=dataset, epochs=epochs, method=method, teacher=teacher)
        chosen = [m for m in cfg["distill"]["methods"] if m["name"] != "none"]
        sections = {k: cfg[k] for k in ("kind", "optim", "schedule", "teachers") if cfg.get(k)}
        sections["data"] = {k: v for k, v in cfg["data"].items() if k in ("batch_size", "eval_batch_size", "augment")}
        sections["train"] = {k: v for k, v in cfg["train"].items() if k != "epochs"}
        source = cfg["teachers"][0]["source"] if cfg.get("teachers") else NO_TEACHER
        panel = cls(
            store=runs,
            dataset=dataset,
            teacher=source,
            student=cfg["model"]["name"],
            methods=tuple(m["name"] for m in chosen),
            epochs=int(cfg["train"]["epochs"]),
            ce_weight=float(cfg["distill"]["ce_weight"]),
            **sections,
            **kwargs,
        )
        if panel.value("teacher") != source:
            panel.close()
            raise PanelError(f"teacher: {source} is not a teacher of dataset {dataset!r} in this store")
        values: dict[str, Any] = {}
        for m in chosen:
            widgets = panel._method_controls(m["name"])
            values[f"{m['name']}.weight"] = float(m["weight"])
            for param, value in m["params"].items():
                values[f"{m['name']}.{param}"] = str(value) if isinstance(widgets.get(param), W.Text) else value
        return panel.set(**values)

    # ---- the form ---------------------------------------------------------------------------
    def _teacher_options(self, dataset: str) -> list[str]:
        from workbench.runs.teacher_store import teacher_choices

        return [source for source, _ in teacher_choices(self.store, dataset)] + [NO_TEACHER]

    def _method_controls(self, method: str) -> dict[str, W.ValueWidget]:
        """The weight and parameter controls of ``method`` (made once, kept while the panel lives)."""
        if method not in self._method_widgets:
            from workbench.distill import method_schema
            from workbench.distill.forms import schema_fields

            ws: dict[str, W.ValueWidget] = {}
            if method != "none":
                ws["weight"] = W.BoundedFloatText(value=1.0 if method != "kd" else 0.9, min=0.0, max=1000.0,
                                                  description="weight")
            fields = schema_fields(method_schema(method))
            for f in fields:
                ws[f.name] = _field_widget(f)
            self._method_widgets[method] = ws
            self._method_fields[method] = {f.name: f for f in fields}
        return self._method_widgets[method]

    def _sync_method_forms(self) -> None:
        chosen = list(self.value("methods")) or []
        for name in [k for k in self.controls if "." in k]:
            if name.split(".", 1)[0] not in chosen:
                del self.controls[name]
        boxes = []
        for method in chosen:
            ws = self._method_controls(method)
            for pname, w in ws.items():
                key = f"{method}.{pname}"
                if key not in self.controls:
                    self._add(key, w)
            if ws:
                boxes.append(W.VBox([W.HTML(value=f"<b>{method}</b>"), *ws.values()]))
        self.method_box.children = tuple(boxes)

    def _check_value(self, name: str, value: Any) -> Any:
        if name == "metric" and isinstance(value, str) and value.startswith(LOSS_TERM_PREFIX):
            self._offer_metrics([value])  # a loss term the run will record
            return value
        if name == "methods":
            from workbench.distill import list_methods

            if isinstance(value, str):
                value = [v.strip() for v in value.replace("+", ",").split(",") if v.strip()]
            value = tuple(value)
            known = list_methods()
            for m in value:
                if m not in known:
                    raise PanelError(f"methods: unknown {m!r}; known: {', '.join(known)}")
            return value
        if name == "dataset":
            value = super()._check_value(name, value)
            self.controls["teacher"].options = self._teacher_options(value)
            return value
        if "." in name and name not in self.controls:
            method = name.split(".", 1)[0]
            if method not in self.value("methods"):
                raise PanelError(f"{name}: method {method!r} is not chosen; set methods first")
        return super()._check_value(name, value)

    def set(self, **values: Any) -> TrainPanel:
        """Set controls (``dataset`` and ``methods`` first, so that a teacher of that dataset and the
        method parameters can be set in the same call), then validate the config once."""
        first = {k: values[k] for k in ("dataset", "methods") if k in values}
        rest = {k: v for k, v in values.items() if k not in first}
        if first:
            if not self._apply(first):
                return self
            self._sync_method_forms()
        if self._apply(rest):
            self._changed(None, None)
            if any(k in VIEW_CONTROLS for k in rest):
                self._draw()
        return self

    def _changed(self, name: str | None, change: Any) -> None:
        if name in VIEW_CONTROLS:
            if not self._suspend and not self._closed:
                self._draw()  # how the run is drawn, not what it trains
            return
        if name == "methods" or name is None:
            self._sync_method_forms()
        super()._changed(name, change)

    def config_dict(self) -> dict[str, Any]:
        """The run config the form describes, as a mapping (not yet validated): the controls read
        into a :class:`workbench.run_form.RunForm` (the app's New-run form reads into the same), plus
        the extra config fields given to the panel."""
        from workbench.distill.forms import parse_field_text
        from workbench.run_form import RunForm, form_mapping

        methods = []
        for method in self.value("methods") or ("none",):
            ws = self._method_controls(method)
            fields = self._method_fields[method]
            params: dict[str, Any] = {}
            for pname, w in ws.items():
                if pname == "weight":
                    continue
                if isinstance(w, W.Text):
                    try:
                        given, value = parse_field_text(fields[pname], w.value)
                    except ValueError as err:
                        raise PanelError(f"{method}.{err}") from None
                    if given:
                        params[pname] = value
                else:
                    params[pname] = w.value
            weight = float(ws["weight"].value) if "weight" in ws else 1.0
            methods.append({"name": method, "weight": weight, "params": params})
        teacher = self.value("teacher")
        form = RunForm(
            dataset=self.value("dataset"),
            teacher=teacher if teacher and teacher != NO_TEACHER else None,
            student=self.value("student"),
            methods=[m for m in methods if m["name"] != "none"],
            ce_weight=float(self.value("ce_weight")),
            teacher_precision=self.value("teacher_precision"),
            epochs=int(self.value("epochs")),
            seed=int(self.value("seed")),
            name=self.value("name"),
            max_steps=int(self.value("max_steps")),
        )
        cfg = form_mapping(form, store=self.store)
        return _merge(cfg, self.extra_config)

    def _compute(self) -> None:
        from workbench.distill import parse_params
        from workbench.validate import validate_run_config

        self.config = None
        data = self.config_dict()
        for m in data["distill"]["methods"]:
            parse_params(m["name"], m["params"])  # one line naming the method and the field
        self.config = validate_run_config(data)

    # ---- the job ------------------------------------------------------------------------------
    def start(self) -> Any:
        """Queue the form's run on the shared job queue and watch it; returns the job (``None`` when
        the form is invalid or a job of this panel is still running; :attr:`error` says why)."""
        if self.job is not None and not self._job_done():
            self._fail(f"job {self.job.id}: still {self.job.state}; stop it first")
            return None
        self.refresh()
        if self.config is None:
            return None
        try:
            self.job = self.queue.submit(self.config, workspace=self.workspace, label=self.config.name)
            self.queue.pump()
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            return None
        self.run, self.metrics, self.progress, self.step_log = None, None, None, None
        self._show(None)
        self.stop_button.disabled = False
        self._watcher.start(self._watch, self._report, lambda _r: None, self._fail, lambda: None)
        return self.job

    def _job_done(self) -> bool:
        try:
            self.job = self.queue.get(self.job.id)
        except Exception:  # noqa: BLE001 - a removed job counts as done
            return True
        return self.job.done

    def _watch(self, progress: Any, cancel: Any) -> None:
        """The watcher's loop (in a :class:`Background` thread): move the queue on, read the job and
        its run, redraw what changed, until the job is final or the watch is stopped."""
        seen: tuple[int, int] = (-1, -1)
        while not cancel.cancelled:
            try:
                self.queue.pump()
                done = self._job_done()
                seen = self._update(seen)
                if done:
                    self._finish()
                    return
            except Exception as err:  # noqa: BLE001 - shown, and the watch goes on
                self._fail(err)
            deadline = time.monotonic() + self.poll
            while not cancel.cancelled and time.monotonic() < deadline:
                time.sleep(min(0.05, self.poll))

    def _job_line(self) -> str:
        job = self.job
        if job.state == "queued":
            where = f"position {job.position} in the queue" if job.position else "waiting for a slot"
            return f"job {job.id}: queued, {where}"
        return f"job {job.id}: {job.state}" + (f" · run {job.run_id}" if job.run_id else "")

    def _update(self, seen: tuple[int, int]) -> tuple[int, int]:
        """Read the job's place, progress, step records and epoch metrics from the store; redraw when
        a step or an epoch was added. Returns ``(step records, epochs)`` drawn."""
        from workbench.runs import Run

        job = self.job
        prog = self.queue.progress(job.id) if job.run_id else None
        self.progress = prog
        line = self._job_line()
        if not job.run_id or not (self.store.root / job.run_id).is_dir():
            self.job_text.value = line
            return seen
        run = Run(job.run_id, self.store.root / job.run_id)
        log = run.step_metrics()
        metrics = run.metrics if (run.path / "metrics.json").exists() else {}
        self.step_log, self.metrics = log, metrics
        if prog:  # the status says the step at epoch ends; the step log between them
            last = log.records[-1] if log.records else {}
            step = max(int(prog.get("step") or 0), int(last.get("step") or 0))
            epoch = last.get("epoch") or prog.get("epoch") or 0
            total = int(prog.get("total_steps") or 0) or 1
            self._report(step, total, f"epoch {epoch}/{prog.get('epochs') or '?'}")
        if log.damage:
            line += f" · step log: {log.damage}"
        self.job_text.value = line
        now = (len(log.records), len(metrics.get("epochs", [])))
        if now != seen and max(now) > 0:
            self._offer_metrics(logged_step_metrics(log.records))
            self._draw()
            return now
        return seen

    def _offer_metrics(self, names: Sequence[str]) -> None:
        """Add step metrics (the run's ``loss/<term>`` entries) to the ``metric`` control's options."""
        w = self.controls["metric"]
        new = [n for n in names if n not in w.options]
        if new:
            self._suspend += 1
            try:
                keep = w.value
                w.options = [*w.options, *new]
                w.value = keep
            finally:
                self._suspend -= 1

    def _draw(self) -> None:
        """Draw the run's step curves of ``metric`` (raw, smoothed, epoch points), or its epoch curves
        when it has no step record yet; nothing before either exists."""
        from workbench.experiments import ema
        from workbench.viz.training import step_curves, step_series, training_curves

        if self.job is None or not self.job.run_id:
            return
        run_id, metric = self.job.run_id, self.value("metric")
        records = self.step_log.records if self.step_log is not None else []
        epochs = (self.metrics or {}).get("epochs") or []
        with self._draw_lock:
            try:
                _, values = step_series(records, metric)
                if values.size:
                    weight = float(self.value("smoothing"))
                    smoothed = {run_id: ema(values, weight)} if weight > 0 else None
                    fig = step_curves({run_id: records}, metric, smoothed=smoothed,
                                      epochs={run_id: epochs} if epochs else None,
                                      title=f"{metric} by step · {run_id}")
                elif epochs:
                    fig = training_curves(self.metrics, title=f"Training · {run_id}")
                else:
                    return
            except Exception as err:  # noqa: BLE001 - shown in the panel as one line
                self._fail(err)
                return
            self._show(fig)

    def _finish(self) -> None:
        job = self.job
        self.stop_button.disabled = True
        if job.run_id and (self.store.root / job.run_id / "status.json").exists():
            self.run = self.store.load(job.run_id)
            self._update((-1, -1))
        if job.state == "failed":
            self._fail(f"job {job.id} failed: {job.error or 'see the job log'}")
        elif job.state == "finished":
            self._report(1, 1, "finished")
        else:
            self.progress_text.value = job.state

    def stop(self) -> Any:
        """Ask the running job to stop (its run ends ``stopped``, completed epochs kept); returns the job."""
        if self.job is None:
            self._fail("stop: no job started from this panel")
            return None
        self.job = self.queue.stop(self.job.id)
        return self.job

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job is final; returns the finished run (:class:`workbench.runs.Run`, also
        in :attr:`run`), or ``None`` when the job ended without a run (:attr:`error` says why).

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
        """
        if self.job is None:
            self._fail("wait: no job started from this panel")
            return None
        self.job = self.queue.wait(self.job.id, timeout)
        self._watcher.wait(10)
        if self.run is None:
            self._finish()
        return self.run

    def close(self) -> None:
        """Stop watching (the job goes on in its worker) and close the widgets."""
        self._watcher.stop()
        super().close()


__all__ = ["NO_TEACHER", "TrainPanel"]
