"""ExperimentPanel: a grid of run configs over seeds, queued as one experiment, and its trials' states.

An experiment is a :class:`workbench.sweep.SweepSpec` (a base config, a grid of any schema fields,
seeds): the object ``workbench experiments submit`` reads from a sweep file and the app's
Experiments page builds. The panel shows how many runs the grid makes and how long they should take
(:func:`workbench.sweep.estimate_seconds`) before anything is queued; ``start()`` submits it to the
shared job queue (:func:`workbench.sweep.submit_experiment`: one job per trial not trained yet), and
a :class:`~workbench.widgets.base.Background` thread reads the trials' states from the run store
(:func:`workbench.sweep.experiment_status`) about once a second until none is queued or running,
drawing the completed trials' groups as mean ± std over seeds.

The grid is given as ``{field: [values]}`` or typed in the ``grid`` text area, one field per line::

    optim.lr: 0.01, 0.1
    distill.methods: none, 0.9*kd, 0.9*kd + dist
    model.kwargs.hidden: [8], [16]

(each line's values are read as a YAML list, so numbers are numbers and ``[8]`` is a list).
"""

from __future__ import annotations

import copy
import html
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W
import yaml

from workbench.errors import one_line
from workbench.sweep import MAX_TRIALS, SweepError, SweepSpec, check_name, field_path, trial_count
from workbench.widgets.base import Background, Panel, PanelError

#: trials shown in the status table (the rest are counted)
SHOWN_TRIALS = 200


# ---- the grid as text -----------------------------------------------------------------------------
#: a number YAML 1.1 reads as text (``1e-3``: no dot before the exponent)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _read(text: str) -> list[Any]:
    """``text`` read as the items of a YAML list, a word that is a number (``1e-3``) as that number."""
    values = yaml.safe_load(f"[{text}]") or []
    return [float(v) if isinstance(v, str) and _NUMBER.fullmatch(v) else v for v in values]


def _values(text: str, line: int, name: str) -> list[Any]:
    """The values of one grid line, read as a YAML list (``0.1, 1e-3`` -> ``[0.1, 0.001]``)."""
    try:
        values = _read(text)
    except yaml.YAMLError as err:
        reason = getattr(err, "problem", None) or "not a list of values"
        raise PanelError(f"grid line {line}: {name}: cannot read {text.strip()[:60]!r} ({reason})") from None
    if not values:
        raise PanelError(f"grid line {line}: {name}: no values; give them as `{name}: v1, v2`")
    return values


def parse_grid(text: str) -> dict[str, list[Any]]:
    """A grid typed as text: one ``field: v1, v2`` per line -> ``{field: [v1, v2]}``.

    Args:
        text: lines of ``dotted.field: values`` (blank lines and lines starting with ``#`` are
            skipped). The values are read as a YAML list: ``0.01, 0.1`` are numbers, ``[8], [16]``
            two lists, ``none, 0.9*kd`` two words.

    Returns:
        The grid, fields in the order of the lines.

    Raises:
        PanelError: a line without ``:``, a malformed field name, a field given twice, values that
            cannot be read, or none (one line naming the line and the field).
    """
    if not isinstance(text, str):
        raise PanelError(f"grid: expected text or {{field: [values]}}, got {type(text).__name__}")
    grid: dict[str, list[Any]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise PanelError(f"grid line {number}: expected `field: v1, v2`, got {line[:60]!r}")
        try:
            field_path(name)
        except SweepError as err:
            raise PanelError(f"grid line {number}: {err}") from None
        if name in grid:
            raise PanelError(f"grid line {number}: {name} is given twice; put all its values on one line")
        grid[name] = _values(rest, number, name)
    return grid


def _value_text(value: Any) -> str:
    """One value as the grid text writes it (read back to the same value by :func:`parse_grid`)."""
    if isinstance(value, str):
        try:
            if _read(value) == [value]:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def grid_text(grid: Mapping[str, Sequence[Any]]) -> str:
    """``{field: [values]}`` as the grid's text, one ``field: v1, v2`` per line (the inverse of
    :func:`parse_grid`)."""
    return "\n".join(f"{name}: {', '.join(_value_text(v) for v in values)}" for name, values in grid.items())


def parse_seeds(value: Any) -> list[int]:
    """Seeds as a list: ``"0, 1, 2"`` or ``[0, 1, 2]`` -> ``[0, 1, 2]``.

    Raises:
        PanelError: no seed, a seed that is not a whole number >= 0, or one given twice.
    """
    parts = (
        [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
        if isinstance(value, str)
        else value
    )
    if isinstance(parts, (int, bytes)) or not isinstance(parts, Sequence):
        raise PanelError(f"seeds: expected seeds like 0, 1, 2 (text or a list), got {value!r}")
    seeds = []
    for part in parts:
        if isinstance(part, bool) or not (
            isinstance(part, int) or (isinstance(part, str) and part.isdigit())
        ):
            raise PanelError(f"seeds: {part!r} is not a whole number >= 0; give e.g. 0, 1, 2")
        seed = int(part)
        if seed in seeds:
            raise PanelError(f"seeds: {seed} is given twice")
        seeds.append(seed)
    if not seeds:
        raise PanelError("seeds: give at least one seed, e.g. 0, 1, 2")
    return seeds


def base_mapping(base: Any) -> dict[str, Any]:
    """The base config of an experiment as a mapping (without its name, links and seed: each trial
    gets its own).

    Args:
        base: a :class:`workbench.config.RunConfig`, a mapping of config fields, or a
            :class:`~workbench.widgets.TrainPanel` (its validated form).

    Raises:
        PanelError: a TrainPanel whose form is invalid (its error), or anything else.
    """
    from workbench.config import RunConfig

    if hasattr(base, "config_dict") and hasattr(base, "config"):  # a TrainPanel
        if base.config is None:
            raise PanelError(f"base: the training form is not valid ({base.error or 'see the panel'})")
        base = base.config
    if isinstance(base, RunConfig):
        data = base.model_dump(mode="json")
    elif isinstance(base, Mapping):
        data = copy.deepcopy(dict(base))
    else:
        raise PanelError(f"base: expected a RunConfig, a mapping or a TrainPanel, got {type(base).__name__}")
    for key in ("name", "links", "seed"):
        data.pop(key, None)
    return data


# ---- the panel ------------------------------------------------------------------------------------
class ExperimentPanel(Panel):
    """A grid over any schema fields and seeds, queued as one experiment, and its trials' states.

    Controls: ``name`` (the experiment's name: letters, digits, ``_ . -``), ``grid`` (one
    ``field: v1, v2`` per line; see :func:`parse_grid`), ``seeds`` (``0, 1, 2``). Every change
    validates every trial's config (a bad value names the trial and the field), counts the runs and
    estimates their time (:attr:`plan`); a grid of more than ``max_trials`` runs is refused in one
    line before anything is queued.

    ``start()`` submits the experiment (:attr:`submission`) and follows its trials in the background
    (:attr:`experiment`, the :class:`workbench.sweep.ExperimentStatus` as last read, also in
    :attr:`result`; :attr:`table`, one row per trial); ``stop()`` stops its queued and running trials
    (finished runs stay); ``wait()`` blocks until none is queued or running; ``compare()`` opens
    the completed runs in :class:`~workbench.widgets.CompareRuns`. :meth:`repeat` builds and starts
    "Repeat with N seeds" of a stored run.
    """

    title = "Experiment"

    def __init__(
        self,
        base: Any,
        grid: Mapping[str, Sequence[Any]] | str | None = None,
        *,
        seeds: Sequence[int] | str = (0, 1, 2),
        name: str | None = None,
        store: Any = None,
        queue: Any = None,
        workspace: str | None = None,
        max_trials: int = MAX_TRIALS,
        max_hours: float | None = None,
        poll: float = 1.0,
    ) -> None:
        super().__init__()
        from workbench.jobs import JobQueue
        from workbench.runs.session import as_store

        if store is None and queue is not None:
            store = queue.root
        self.store = as_store(store)
        self.queue = queue if queue is not None else JobQueue(self.store.root)
        self.base = base_mapping(base)
        self.workspace = workspace
        self.max_trials = int(max_trials)
        self.max_hours = max_hours
        self.poll = float(poll)
        self.spec: SweepSpec | None = None
        self.trials: list[Any] = []
        self.estimate: Any = None
        self.submission: Any = None
        self.experiment: Any = None
        self.table: list[dict[str, Any]] = []
        self._watcher = Background("experiment")
        self._drawn: tuple[Any, ...] | None = None
        self._add("name", W.Text(value="", description="name", continuous_update=False))
        self._add(
            "grid",
            W.Textarea(
                value="",
                description="grid",
                tooltip="one field per line, e.g. optim.lr: 0.01, 0.1",
                layout={"width": "520px", "height": "110px"},
                continuous_update=False,
            ),
        )
        self._add(
            "seeds", W.Text(value="", description="seeds", tooltip="a count (3) or a list (0, 4, 7)", continuous_update=False)
        )
        self.plan_text = W.HTML(value="")
        self.start_button = W.Button(description="Start", button_style="primary")
        self.stop_button = W.Button(description="Stop", disabled=True)
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.table_view = W.HTML(value="")
        c = self.controls
        self._layout(
            W.HBox([c["name"], c["seeds"]]),
            c["grid"],
            self.plan_text,
            W.HBox([self.start_button, self.stop_button]),
        )
        self.widget.children = (*self.widget.children, self.table_view)
        self.set(
            name=name or time.strftime("exp-%Y%m%d-%H%M%S"), grid={} if grid is None else grid, seeds=seeds
        )

    # ---- the plan -------------------------------------------------------------------------------
    def _check_value(self, name: str, value: Any) -> Any:
        if name == "grid":
            if isinstance(value, Mapping):
                value = grid_text(value)
            parse_grid(value)  # a bad line fails here, naming it
            return value
        if name == "seeds":
            if not isinstance(value, str):
                value = ", ".join(map(str, parse_seeds(value)))
            parse_seeds(value)
            return value
        if name == "name":
            try:
                return check_name(value.strip() if isinstance(value, str) else value, "name")
            except SweepError as err:
                raise PanelError(str(err)) from None
        return super()._check_value(name, value)

    def _compute(self) -> None:
        from workbench.sweep import estimate_seconds, expand_trials, format_seconds

        self.spec, self.trials, self.estimate = None, [], None
        self.plan_text.value = ""
        grid = parse_grid(self.value("grid"))
        spec = SweepSpec(
            name=self.value("name"), config=self.base, grid=grid, seeds=parse_seeds(self.value("seeds"))
        )
        count = trial_count(spec)
        sizes = " × ".join([*(f"{len(v)} {k}" for k, v in grid.items()), f"{len(spec.seeds)} seeds"])
        if count > self.max_trials:
            raise PanelError(
                f"grid: {count} runs ({sizes}) is above the limit of {self.max_trials}; narrow the grid or the seeds"
            )
        try:
            trials = expand_trials(spec)  # every trial's config validated: a bad value names its field
        except SweepError as err:
            raise PanelError(str(err).removeprefix(f"sweep {spec.name}: ")) from None
        self.spec, self.trials = spec, trials
        self.estimate = estimate_seconds(trials, self.store, max_jobs=self.queue.max_jobs)
        bound = ""
        if self.max_hours is not None and self.estimate.total > self.max_hours * 3600:
            bound = f"; above the bound of {format_seconds(self.max_hours * 3600)}: start refuses it"
        self.plan_text.value = html.escape(
            f"{count} run{'s' * (count != 1)} ({sizes}); {self.estimate.text()}{bound}"
        )

    @property
    def plan(self) -> dict[str, Any] | None:
        """What ``start()`` would queue: ``{"runs", "seconds", "text"}`` (``None`` while the grid is
        invalid; :attr:`error` says why)."""
        if self.spec is None or self.estimate is None:
            return None
        return {"runs": len(self.trials), "seconds": self.estimate.total, "text": self.plan_text.value}

    # ---- the experiment -------------------------------------------------------------------------
    def start(self) -> Any:
        """Submit the experiment to the job queue (only its trials not trained yet are queued) and
        follow its trials; returns the :class:`workbench.sweep.Submission` (``None`` when the grid is
        invalid or refused; :attr:`error` says why)."""
        from workbench.sweep import submit_experiment

        self.refresh()
        if self.spec is None:
            return None
        try:
            self.submission = submit_experiment(
                self.spec,
                self.queue,
                workspace=self.workspace,
                max_trials=self.max_trials,
                max_hours=self.max_hours,
            )
            self.queue.pump()
        except Exception as err:  # noqa: BLE001 - shown in the panel as one line
            self._fail(err)
            return None
        self.plan_text.value = html.escape(self.submission.line())
        self.stop_button.disabled = False
        self._drawn = None
        self.update()
        self._watcher.start(self._watch, self._report, lambda _r: None, self._fail, lambda: None)
        return self.submission

    def _watch(self, progress: Any, cancel: Any) -> None:
        """Move the queue on and redraw the trials' states until none is queued or running."""
        while not cancel.cancelled:
            try:
                self.queue.pump()
                if not self.update().active:
                    self.stop_button.disabled = True
                    return
            except Exception as err:  # noqa: BLE001 - shown, and the watch goes on
                self._fail(err)
            deadline = time.monotonic() + self.poll
            while not cancel.cancelled and time.monotonic() < deadline:
                time.sleep(min(0.05, self.poll))

    @property
    def active(self) -> bool:
        """Whether a trial of the experiment, as last read, is queued or running."""
        return self.experiment is not None and self.experiment.active

    def update(self) -> ExperimentPanel:
        """Read the trials' states from the run store once and redraw the table, the progress bar and
        (when a trial finished) the groups' curves. Returns ``self``."""
        from workbench.sweep import experiment_status

        name = self.submission.name if self.submission is not None else self.value("name")
        status = experiment_status(self.store, name)
        self.experiment = self.result = status
        self.table = [t.to_dict() for t in status.trials]
        counts = status.counts
        finished = sum(counts[s] for s in ("completed", "failed", "stopped"))
        self._report(finished, len(status.trials), status.summary())
        self.table_view.value = _trials_html(status.trials)
        drawn = tuple(sorted(counts.items()))
        if drawn != self._drawn:
            self._drawn = drawn
            self._draw(status)
        return self

    def _draw(self, status: Any) -> None:
        """The completed trials' groups: ``test_acc`` over epochs, mean ± std over seeds."""
        from workbench.experiments import epoch_bands, group_runs
        from workbench.viz import group_curves

        ids = status.run_ids("completed")
        if not ids:
            return
        groups = group_runs(self.store.load(i) for i in ids)
        bands = [epoch_bands(g, "test_acc") for g in groups]
        if any(len(b.x) for b in bands):
            self._show(group_curves(bands, title=f"{status.name}: test_acc, mean ± std over seeds"))

    def stop(self) -> list[Any]:
        """Stop the experiment's queued and running trials (finished runs stay); returns the jobs
        stopped (an empty list, and :attr:`error` set, when it was never submitted)."""
        from workbench.sweep import stop_experiment

        if self.submission is None:
            self._fail("stop: no experiment started from this panel")
            return []
        try:
            jobs = stop_experiment(self.queue, self.submission.name)
            self.update()
        except Exception as err:  # noqa: BLE001 - shown in the panel as one line
            self._fail(err)
            return []
        return jobs

    def wait(self, timeout: float | None = None) -> Any:
        """Block until no trial is queued or running (the queue is pumped meanwhile); returns the
        :class:`workbench.sweep.ExperimentStatus`.

        Raises:
            TimeoutError: trials still queued or running after ``timeout`` seconds.
        """
        if self.submission is None:
            self._fail("wait: no experiment started from this panel")
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.update().active:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"experiment {self.submission.name}: {self.experiment.summary()} after {timeout} s"
                )
            self.queue.pump()
            time.sleep(min(0.5, self.poll))
        self._watcher.wait(10)
        return self.experiment

    def compare(self, **controls: Any) -> Any:
        """A :class:`~workbench.widgets.CompareRuns` of the experiment's completed runs (grouped over
        seeds); ``controls`` are passed on (``metric``, ``baseline``, ``view``, ...)."""
        from workbench.widgets.runs import CompareRuns

        ids = self.update().experiment.run_ids("completed")
        return CompareRuns(ids, store=self.store, **controls)

    @classmethod
    def repeat(
        cls,
        run: Any,
        n_seeds: int = 3,
        *,
        store: Any = None,
        queue: Any = None,
        workspace: str | None = None,
        start: bool = True,
        **options: Any,
    ) -> ExperimentPanel:
        """Repeat with N seeds: a panel over ``run``'s config (no grid) with seeds ``0 .. n_seeds-1``,
        named ``repeat-<run id>`` (:func:`workbench.sweep.repeat_with_seeds`), started unless
        ``start=False``. A seed equal to the run's own trains again, as a trial of the experiment.

        Args:
            run: a stored :class:`~workbench.runs.Run` or its id (a unique prefix) in ``store``.
            n_seeds: how many seeds, 1 to ``max_trials``.
            store, queue, workspace: as for the panel. ``options``: the panel's other keywords.

        Raises:
            PanelError: ``n_seeds`` is not a whole number >= 1.
            RunStoreError / ExperimentError: the run cannot be found or read (one line).
        """
        from workbench.runs.session import as_store
        from workbench.sweep import repeat_with_seeds

        if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
            raise PanelError(f"n_seeds: expected a whole number >= 1, got {n_seeds!r}")
        if store is None and queue is not None:
            store = queue.root
        if store is None and hasattr(run, "path"):
            store = run.path.parent
        store = as_store(store)
        spec = repeat_with_seeds(run, list(range(n_seeds)), store=store)
        panel = cls(
            spec.config,
            {},
            seeds=spec.seeds,
            name=spec.name,
            store=store,
            queue=queue,
            workspace=workspace,
            **options,
        )
        if start and panel.error is None:
            panel.start()
        return panel

    def close(self) -> None:
        """Stop following the experiment (its jobs go on) and close the widgets."""
        self._watcher.stop()
        super().close()


def _trials_html(trials: Sequence[Any]) -> str:
    """The trials as an HTML table: grid point, seed, state, run, error."""
    head = "".join(f"<th>{c}</th>" for c in ("trial", "seed", "state", "run", "error"))
    rows = []
    for t in trials[:SHOWN_TRIALS]:
        cells = (t.group, t.seed, t.state, t.run_id or "-", one_line(t.error) if t.error else "")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    more = f"<p>… and {len(trials) - SHOWN_TRIALS} more trials</p>" if len(trials) > SHOWN_TRIALS else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


__all__ = ["SHOWN_TRIALS", "ExperimentPanel", "base_mapping", "grid_text", "parse_grid", "parse_seeds"]
