"""What every page of the app uses: the run store, the job queue, cached models and data, URL-bound
widgets, the run picker, the generated method form and one-line errors.

A page is a short script that reads top to bottom::

    import streamlit as st
    from app import shared

    with shared.page("Feature similarity"):            # title; any exception -> one st.error line
        run = shared.run_picker(kind="distill")         # validated against the store, URL param ``run``
        if run is None:
            st.stop()
        ckpt = shared.checkpoint_picker(run)            # URL param ``ckpt``
        n = shared.bound_number("Samples", "n", 256, min_value=16, max_value=2000)
        seed = shared.bound_number("Seed", "seed", 0, min_value=0, max_value=10**6)
        teacher = shared.load_teacher_for(run)
        student = shared.load_run_model(run.id, ckpt)
        batch = shared.eval_batch(run, n, seed)
        result = shared.cached_analysis(
            "cka", run.id, ckpt, {"n": n, "seed": seed},
            lambda: cka_matrix(teacher, student, batch.images, batch.labels, progress=shared.progress_bar("CKA")),
        )
        shared.show_figure(cka_heatmap(result))

Rules the helpers keep:

* No computation lives here beyond caching and loading; analyses come from :mod:`workbench.analysis`,
  figures from :mod:`workbench.viz`, training from :mod:`workbench.jobs` (never in the script thread).
* Run ids from a URL or a widget are looked up among the store's ids exactly
  (:func:`get_run`), so no control can reach a path outside the store.
* Models and datasets are shared by every session (``st.cache_resource``); they are only read:
  analyses work on their own copies (``workbench.analysis._common.working_copy``).
* Every widget made with a ``bound_*`` helper reads its default from ``st.query_params`` and writes
  the chosen value back, so a copied URL opens the same view.

Environment: ``WORKBENCH_RUNS`` (store root, default ``./runs``), ``WORKBENCH_MAX_JOBS`` (training
jobs at once), ``WORKBENCH_RAY_ADDRESS`` (optional), ``WORKBENCH_APP_THREADS`` (torch threads of the
server process, default 2).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
import torch

from workbench.data import seeded_subset
from workbench.distill.forms import Field, parse_field_text, schema_fields, text_hint
from workbench.runs import Run, RunStore, RunStoreError, default_root

T = TypeVar("T")

WORKSPACE_PARAM = "ws"
ALL_WORKSPACES = "*"
_WS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ANALYSIS_CACHE_SIZE = 64


class AppInputError(ValueError):
    """A value from the URL or a widget is not acceptable; the message is one line."""


# ---- process set-up -----------------------------------------------------------------------------
def configure_threads() -> None:
    """Limit torch's threads in the server process (``$WORKBENCH_APP_THREADS``, default 2).

    ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` are set by ``app/main.py`` before torch is
    imported; this sets the intra-op pool once per process.
    """
    _configure_threads_once()


@st.cache_resource(show_spinner=False)
def _configure_threads_once() -> int:
    try:
        n = max(1, int(os.environ.get("WORKBENCH_APP_THREADS", "2")))
    except ValueError:
        n = 2
    torch.set_num_threads(n)
    return n


# ---- store and jobs -----------------------------------------------------------------------------
def store_root() -> Path:
    """The run store's root folder: ``$WORKBENCH_RUNS``, else ``./runs``."""
    return default_root()


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(root)


def get_store() -> RunStore:
    """The run store of this server (one object per root, shared by all sessions)."""
    return _store(str(store_root()))


def _max_jobs() -> int | None:
    raw = os.environ.get("WORKBENCH_MAX_JOBS", "").strip()
    if not raw:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        return None


@st.cache_resource(show_spinner=False)
def _queue(root: str, max_jobs: int | None, ray_address: str | None) -> Any:
    from workbench.jobs import JobQueue

    return JobQueue(root, max_jobs=max_jobs, ray_address=ray_address)


def get_queue() -> Any:
    """The background job queue of this store (``workbench.jobs.JobQueue``), one per process;
    ``$WORKBENCH_MAX_JOBS`` and ``$WORKBENCH_RAY_ADDRESS`` configure it."""
    ray_address = os.environ.get("WORKBENCH_RAY_ADDRESS", "").strip() or None
    return _queue(str(store_root()), _max_jobs(), ray_address)


def pump() -> None:
    """Let the queue start waiting jobs and reap finished ones; called on every rerun.

    A failure of the queue is shown as one line and does not stop the page.
    """
    try:
        get_queue().pump()
    except Exception as exc:  # the page still renders; the message says what is wrong
        show_error(exc, prefix="job queue")


def list_jobs(all_workspaces: bool = False) -> list[Any]:
    """Jobs of the current workspace (or all), as the queue lists them."""
    ws = workspace()
    queue = get_queue()
    if all_workspaces or ws == ALL_WORKSPACES:
        return list(queue.list())
    return list(queue.list(workspace=ws))


# ---- workspace ----------------------------------------------------------------------------------
def workspace() -> str | None:
    """The workspace of this session: URL parameter ``ws`` (kept across pages), ``None`` for none.

    ``*`` is the teacher view: every workspace. A malformed name is ignored with a warning.
    """
    raw = st.query_params.get(WORKSPACE_PARAM)
    if raw is None:
        raw = st.session_state.get("_ws")
    if raw in (None, ""):
        return None
    if raw != ALL_WORKSPACES and not _WS_RE.match(raw):
        st.warning(f"workspace {raw[:40]!r}: use letters, digits, '-', '_' and '.' only; showing all runs")
        st.query_params.pop(WORKSPACE_PARAM, None)
        st.session_state.pop("_ws", None)
        return None
    st.session_state["_ws"] = raw
    if st.query_params.get(WORKSPACE_PARAM) != raw:
        st.query_params[WORKSPACE_PARAM] = raw
    return raw


def carry_params(**params: Any) -> dict[str, str]:
    """Query parameters for a link to another page: the workspace plus ``params`` (None dropped)."""
    out = {k: str(v) for k, v in params.items() if v is not None}
    ws = workspace()
    if ws:
        out[WORKSPACE_PARAM] = ws
    return out


def sidebar() -> None:
    """The sidebar common to every page: workspace field, store location, running jobs."""
    with st.sidebar:
        ws = workspace()
        if st.session_state.get("_ws_synced") != (ws or ""):
            # the URL (a pasted link) changed the workspace: the field follows it
            st.session_state["_ws_input"] = ws or ""
            st.session_state["_ws_synced"] = ws or ""
        new = st.text_input(
            "Workspace",
            key="_ws_input",
            help="Optional name grouping your runs (kept in the URL); '*' shows every workspace.",
        ).strip()
        if new != (ws or ""):
            if new and new != ALL_WORKSPACES and not _WS_RE.match(new):
                st.warning("workspace: use letters, digits, '-', '_' and '.' only")
            else:
                st.session_state["_ws"] = new or None
                st.session_state["_ws_synced"] = new
                if new:
                    st.query_params[WORKSPACE_PARAM] = new
                else:
                    st.query_params.pop(WORKSPACE_PARAM, None)
                st.rerun()
        st.caption(f"Runs: `{store_root().name or store_root()}`")


# ---- runs ---------------------------------------------------------------------------------------
def get_run(run_id: str) -> Run:
    """The run ``run_id``, looked up among the store's ids exactly (no prefixes, no paths).

    Raises:
        AppInputError: the id is not a run of this store.
    """
    store = get_store()
    if not isinstance(run_id, str) or run_id not in set(store.ids()):
        shown = str(run_id)[:60]
        raise AppInputError(f"run {shown!r}: not found in the run store")
    return store.load(run_id)


def run_ids_in_workspace() -> set[str] | None:
    """Run ids that belong to the current workspace (via its jobs), or ``None`` meaning all runs."""
    ws = workspace()
    if ws in (None, ALL_WORKSPACES):
        return None
    try:
        return {j.run_id for j in get_queue().list(workspace=ws) if getattr(j, "run_id", None)}
    except Exception:
        return None


def list_runs(kind: str | Sequence[str] | None = None, status: str | Sequence[str] | None = None) -> list[Run]:
    """Runs of the store (newest first), in the current workspace, filtered by kind and status."""
    kinds = {kind} if isinstance(kind, str) else set(kind or ())
    statuses = {status} if isinstance(status, str) else set(status or ())
    allowed = run_ids_in_workspace()
    out = []
    for run in reversed(get_store().list()):
        if allowed is not None and run.id not in allowed:
            continue
        try:
            info = run.status
        except RunStoreError:
            continue
        if kinds and info.get("kind") not in kinds:
            continue
        if statuses and info.get("status") not in statuses:
            continue
        out.append(run)
    return out


def run_label(run: Run) -> str:
    """One line naming a run for pickers: name or id, kind, method, status, accuracy."""
    try:
        s = run.summary()
    except RunStoreError:
        return run.id
    acc = s.get("test_acc")
    acc_text = f" · {acc:.2%}" if isinstance(acc, (int, float)) and math.isfinite(acc) else ""
    name = s.get("name") or run.id
    return f"{name} · {s.get('kind')} · {s.get('model')} · {s.get('method')} · {s.get('status')}{acc_text} ({run.id[-4:]})"


def run_picker(
    kind: str | Sequence[str] | None = None,
    *,
    label: str = "Run",
    param: str = "run",
    status: str | Sequence[str] | None = None,
    container: Any = None,
    analysable_first: bool = True,
) -> Run | None:
    """A select box of the store's runs, bound to the URL parameter ``param``.

    Args:
        kind: only runs of this kind (``teacher``, ``student``, ``distill``) or kinds.
        label: the widget's label. param: the URL parameter holding the run id.
        status: only runs with this status (or statuses), e.g. ``completed``.
        container: where to draw it (default: the page body).
        analysable_first: runs with a checkpoint come first (the default choice), so an analysis
            page does not open on a run still training its first epoch.

    Returns:
        The chosen :class:`~workbench.runs.Run`, or ``None`` (with an info line) when there is none.
        An unknown id in the URL shows a warning and falls back to the newest run.
    """
    where = container if container is not None else st
    runs = list_runs(kind=kind, status=status)
    if not runs:
        where.info("No runs yet. Start one on the Home page.")
        return None
    # runs that have a checkpoint to analyse come first (the default), still-training ones after
    if analysable_first:
        runs = sorted(runs, key=lambda r: not _has_checkpoint(r))
    ids = [r.id for r in runs]
    by_id = {r.id: r for r in runs}
    wanted = st.query_params.get(param)
    if wanted is not None and wanted not in by_id:
        where.warning(f"run {wanted[:60]!r}: not found in the run store (or not of this kind); showing the newest")
        st.query_params.pop(param, None)
    chosen = bound_selectbox(label, param, ids, format_func=lambda i: run_label(by_id[i]), container=where)
    return by_id.get(chosen)


def _has_checkpoint(run: Run) -> bool:
    try:
        return bool(run.checkpoints())
    except (OSError, ValueError):
        return False


def checkpoint_picker(run: Run, *, label: str = "Checkpoint", param: str = "ckpt", container: Any = None) -> str:
    """A select box of ``run``'s checkpoints (``final`` first when there), bound to ``param``."""
    names = [n for n in run.checkpoints() if n != "resume"]  # the resume state is not a view
    if not names:
        raise AppInputError(f"run {run.id}: has no checkpoint yet")
    order = [n for n in ("final", "best") if n in names] + [n for n in names if n not in ("final", "best")]
    return bound_selectbox(label, param, order, container=container)


def checkpoint_stamp(run: Run, checkpoint: str) -> float:
    """Modification time of a checkpoint file (0.0 when absent): part of every cache key, so a
    rewritten ``best`` is never served from a stale cache."""
    path = run.path / "checkpoints" / f"{checkpoint}.safetensors"
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def age(iso: str | None) -> str:
    """How long ago an ISO-8601 time was, in one short word (``42 s``, ``5 min``, ``3 h``, ``2 d``)."""
    if not iso:
        return ""
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    s = max(0.0, (datetime.now(timezone.utc) - then).total_seconds())
    if s < 90:
        return f"{int(s)} s"
    if s < 5400:
        return f"{int(s // 60)} min"
    if s < 172800:
        return f"{int(s // 3600)} h"
    return f"{int(s // 86400)} d"


# ---- models and data ----------------------------------------------------------------------------
def device() -> str:
    """Where the app's analyses run: CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def _run_model(root: str, run_id: str, checkpoint: str, stamp: float, where: str) -> torch.nn.Module:
    del stamp  # part of the key only
    return RunStore(root).load(run_id).load_model(checkpoint, device=where)


def load_run_model(run_id: str, checkpoint: str = "final") -> torch.nn.Module:
    """The student network of run ``run_id`` at ``checkpoint``, in eval mode, shared by all sessions.

    Cached by (store, run id, checkpoint, checkpoint file time). Treat it as read-only: analyses
    work on their own copies.
    """
    run = get_run(run_id)
    if checkpoint not in run.checkpoints():
        have = ", ".join(run.checkpoints()) or "none"
        raise AppInputError(f"run {run.id}: no checkpoint {checkpoint!r} (have: {have})")
    return _run_model(str(store_root()), run.id, checkpoint, checkpoint_stamp(run, checkpoint), device())


@st.cache_resource(show_spinner="Loading teacher…", max_entries=16)
def _teacher(root: str, spec_json: str, num_classes: int, shape: tuple[int, int, int], where: str) -> torch.nn.Module:
    from workbench.config import TeacherSpec
    from workbench.train.teachers import load_teacher

    spec = TeacherSpec.model_validate(json.loads(spec_json))
    return load_teacher(spec, num_classes, shape, device=where, runs_root=root)


def load_teacher_for(run: Run, index: int = 0) -> torch.nn.Module | None:
    """The teacher of ``run`` (its config's ``teachers[index]``: shipped, a run of the store or a
    weights file named in the config), frozen and shared; ``None`` when the run has no teacher."""
    cfg = run.config
    if len(cfg.teachers) <= index:
        return None
    spec = cfg.teachers[index]
    net = run.model_spec.get("student", {})
    shape = (int(net.get("in_channels", 1)), int(net.get("image_size", 28)), int(net.get("image_size", 28)))
    num_classes = int(net.get("num_classes", 10))
    return _teacher(str(store_root()), spec.model_dump_json(), num_classes, shape, device())


def teacher_label(run: Run) -> str:
    """How ``run``'s first teacher is named (``shipped:mnist``, ``run:ID``, a file name) or ``none``."""
    try:
        teachers = run.config.teachers
    except RunStoreError:
        return "?"
    if not teachers:
        return "none"
    src = teachers[0].source
    return src if src.startswith(("shipped:", "run:")) else Path(src).name


@st.cache_resource(show_spinner="Loading data…", max_entries=8)
def _dataset(name: str, root: str | None, options_json: str) -> Any:
    from workbench.data import load_dataset

    return load_dataset(name, root=root, **json.loads(options_json))


def load_data(name: str, options: dict[str, Any] | None = None, root: str | None = None) -> Any:
    """A dataset of the registry (a :class:`workbench.data.Dataset`), loaded once per process.

    ``root`` is only taken from a run's stored config, never from a widget.
    """
    return _dataset(name, root, json.dumps(options or {}, sort_keys=True, default=str))


def run_data(run: Run) -> Any:
    """The dataset ``run`` was trained on (name, options and root from its config)."""
    spec = run.config.data
    return load_data(spec.dataset, dict(spec.options), spec.root)


@dataclass(frozen=True)
class EvalBatch:
    """A seeded sample of a run's test split.

    ``images``: normalized float tensor ``(N, C, H, W)``; ``labels``: int64 ``(N,)``; ``raw``: the
    uint8 images for display; ``masks``: object masks or ``None``; ``index``: positions in the test
    split; ``class_names``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    raw: torch.Tensor
    masks: torch.Tensor | None
    index: torch.Tensor
    class_names: list[str]


@st.cache_resource(show_spinner=False, max_entries=16)
def _eval_batch(name: str, root: str | None, options_json: str, n: int, seed: int) -> EvalBatch:
    data = _dataset(name, root, options_json)
    test = data.test
    index = seeded_subset(len(test), n, seed)  # the same images the doctor and the widgets draw
    part = test.subset(index)
    return EvalBatch(
        images=data.normalize(part.images),
        labels=part.labels,
        raw=part.images,
        masks=part.masks,
        index=index,
        class_names=list(data.class_names),
    )


def eval_batch(run: Run, n: int, seed: int = 0) -> EvalBatch:
    """``n`` test samples of ``run``'s dataset drawn with ``seed`` (all of them when ``n`` exceeds
    the split), cached and shared; see :class:`EvalBatch`."""
    if int(n) < 1:
        raise AppInputError(f"samples: expected at least 1, got {n}")
    spec = run.config.data
    options = json.dumps(dict(spec.options), sort_keys=True, default=str)
    return _eval_batch(spec.dataset, spec.root, options, int(n), int(seed))


# ---- cached analyses ----------------------------------------------------------------------------
class _LRU:
    """A small thread-safe least-recently-used map with one lock per key being computed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()
        self.key_locks: dict[Any, threading.Lock] = {}

    def get_or_compute(self, key: Any, compute: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            key_lock = self.key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second session asking for the same result waits instead of recomputing
            with self.lock:
                if key in self.items:
                    return self.items[key]
            value = compute()
            with self.lock:
                self.items[key] = value
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
                self.key_locks.pop(key, None)
            return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


@st.cache_resource(show_spinner=False)
def _analyses() -> _LRU:
    return _LRU(_ANALYSIS_CACHE_SIZE)


def cached_analysis(
    kind: str,
    run_id: str,
    checkpoint: str,
    params: dict[str, Any],
    compute: Callable[[], T],
) -> T:
    """The result of ``compute()``, computed once per (store, ``kind``, run id, checkpoint and its file
    time, ``params``) and shared by every session (the 64 most recent are kept).

    ``params`` must hold every setting that changes the result (samples, seed, layers, method...);
    it is keyed by its JSON form. The result (an analysis dataclass) is treated as read-only. A
    failing or cancelled ``compute`` caches nothing.
    """
    run = get_run(run_id)
    key = (
        str(store_root()),
        kind,
        run.id,
        checkpoint,
        checkpoint_stamp(run, checkpoint),
        json.dumps(params, sort_keys=True, default=str),
    )
    return _analyses().get_or_compute(key, compute)


def progress_bar(label: str) -> Callable[[int, int, str], None]:
    """A ``progress(done, total, message)`` callable drawing one ``st.progress`` bar (the runtime
    contract of :mod:`workbench.runtime`); the bar disappears when the page reruns."""
    bar = st.progress(0.0, text=label)

    def report(done: int, total: int, message: str) -> None:
        frac = min(max(done / max(total, 1), 0.0), 1.0)
        if frac >= 1.0:
            bar.empty()  # finished: no bar left standing at 100 %
            return
        bar.progress(frac, text=f"{label}: {message}" if message and message != label else label)

    return report


# ---- URL-bound widgets --------------------------------------------------------------------------
# A bound widget keeps its value in st.session_state under ``qp:<param>`` and mirrors it into the URL
# parameter ``<param>``. The URL wins whenever it differs from the value the widget last wrote there
# (a pasted link, a link from another page), so a copied URL opens the same view; otherwise the
# widget keeps what the user chose.
def _last() -> dict[str, str]:
    return st.session_state.setdefault("_qp_last", {})


def _write_param(param: str, value: str) -> None:
    _last()[param] = value
    if st.query_params.get(param) != value:
        st.query_params[param] = value


def _seed_state(
    param: str, parse: Callable[[str], Any], default: Any, valid: Callable[[Any], bool], label: str | None = None
) -> None:
    """Put the value the widget should show into session state before it is drawn.

    ``parse`` turns the URL text into a value (raising ValueError when it cannot); ``valid`` says
    whether a value (from the URL or left over in the session) is acceptable now.
    """
    key = f"qp:{param}"
    raw = st.query_params.get(param)
    fresh_url = raw is not None and raw != _last().get(param)
    if fresh_url:
        try:
            value = parse(raw)
            if not valid(value):
                raise ValueError(raw)
        except (ValueError, TypeError):
            st.warning(f"{label or param}: {raw[:40]!r} from the link is not an allowed value; using the default")
            value = st.session_state[key] if key in st.session_state and valid(st.session_state[key]) else default
        st.session_state[key] = value
    elif key not in st.session_state or not valid(st.session_state[key]):
        st.session_state[key] = default


def choice_setup(
    label: str, options: Sequence[Any], default: Any, container: Any, *, last: bool = False
) -> tuple[Any, list[Any], list[str], Any]:
    """What a bound choice widget starts from: the container to draw in (default ``st``), the options
    as a list, their texts (options are matched by ``str``) and the fallback value: ``default`` when it
    is one of the options, else the first option (the last with ``last=True``).

    Raises:
        AppInputError: there are no options.
    """
    where = container if container is not None else st
    options = list(options)
    if not options:
        raise AppInputError(f"{label}: nothing to choose from")
    texts = [str(o) for o in options]
    if default is not None and str(default) in texts:
        return where, options, texts, options[texts.index(str(default))]
    return where, options, texts, options[-1 if last else 0]


def bound_selectbox(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Any = None,
    format_func: Callable[[Any], str] = str,
    help: str | None = None,
    container: Any = None,
) -> Any:
    """A select box whose choice lives in the URL parameter ``param`` (options matched by ``str``).

    An unknown value in the URL falls back to ``default`` (else the first option) with a warning.
    """
    where, options, texts, fallback = choice_setup(label, options, default, container)
    _seed_state(
        param, lambda raw: options[texts.index(raw)], fallback, lambda v: str(v) in texts and v in options, label
    )
    choice = where.selectbox(label, options, format_func=format_func, help=help, key=f"qp:{param}")
    _write_param(param, str(choice))
    return choice


def bound_multiselect(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Sequence[Any] = (),
    format_func: Callable[[Any], str] = str,
    help: str | None = None,
    max_selections: int | None = None,
    container: Any = None,
) -> list[Any]:
    """A multi-select whose choices live in the URL parameter ``param`` as a comma-separated list;
    unknown entries in the URL are dropped (with a warning)."""
    where = container if container is not None else st
    options = list(options)
    texts = [str(o) for o in options]
    key = f"qp:{param}"
    limit = max_selections or len(options) or 1

    def parse(raw: str) -> list[Any]:
        items = [t for t in raw.split(",") if t]
        known = [options[texts.index(t)] for t in items if t in texts]
        if len(known) < len(items):
            st.warning(f"{label}: {len(items) - len(known)} unknown entr{'y' if len(items) - len(known) == 1 else 'ies'} "
                       "in the link left out")
        return known[:limit]

    if key in st.session_state:  # options may have changed since the last run
        st.session_state[key] = [v for v in st.session_state[key] if v in options][:limit]
    _seed_state(
        param, parse, [o for o in default if o in options][:limit], lambda v: all(x in options for x in v), label
    )
    value = where.multiselect(
        label, options, format_func=format_func, help=help, max_selections=max_selections, key=key
    )
    _write_param(param, ",".join(str(v) for v in value))
    return list(value)


def bound_number(
    label: str,
    param: str,
    default: float,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    step: float | None = None,
    integer: bool | None = None,
    help: str | None = None,
    container: Any = None,
) -> Any:
    """A number input bound to ``param``; integers when ``default`` is an int (or ``integer=True``).

    A value in the URL that is not a number or lies outside the range falls back to ``default``
    (clamped into the range) with a one-line warning.
    """
    where = container if container is not None else st
    as_int = isinstance(default, int) and not isinstance(default, bool) if integer is None else integer
    cast: Callable[[Any], Any] = int if as_int else float
    lo = None if min_value is None else cast(min_value)
    hi = None if max_value is None else cast(max_value)
    value = cast(default)
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)

    def parse(raw: str) -> Any:
        number = float(raw)
        if not math.isfinite(number) or (as_int and number != int(number)):
            raise ValueError(raw)
        return cast(number)

    def valid(v: Any) -> bool:
        return isinstance(v, (int, float)) and (lo is None or v >= lo) and (hi is None or v <= hi)

    _seed_state(param, parse, value, valid, label)
    kwargs: dict[str, Any] = {"min_value": lo, "max_value": hi, "help": help, "key": f"qp:{param}"}
    if step is not None:
        kwargs["step"] = cast(step)
    elif as_int:
        kwargs["step"] = 1
    if not as_int:
        kwargs["format"] = "%g"
    chosen = where.number_input(label, **kwargs)
    _write_param(param, str(chosen))
    return chosen


def bound_checkbox(label: str, param: str, default: bool = False, *, help: str | None = None, container: Any = None) -> bool:
    """A checkbox bound to ``param`` (``1``/``0`` in the URL)."""
    where = container if container is not None else st

    def parse(raw: str) -> bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)

    _seed_state(param, parse, bool(default), lambda v: isinstance(v, bool), label)
    chosen = where.checkbox(label, help=help, key=f"qp:{param}")
    _write_param(param, "1" if chosen else "0")
    return bool(chosen)


def bound_text(
    label: str, param: str, default: str = "", *, max_chars: int = 200, help: str | None = None, container: Any = None
) -> str:
    """A one-line text input bound to ``param`` (at most ``max_chars`` characters)."""
    where = container if container is not None else st
    _seed_state(
        param, lambda raw: raw[:max_chars], default, lambda v: isinstance(v, str) and len(v) <= max_chars, label
    )
    chosen = where.text_input(label, max_chars=max_chars, help=help, key=f"qp:{param}")
    _write_param(param, chosen)
    return chosen


# ---- method form generated from the schemas (fields: workbench.distill.forms) --------------------
def _field_widget(method: str, f: Field, where: Any) -> tuple[bool, Any]:
    """Draw one field; returns ``(given, value)`` where ``given`` is False for "keep the default"."""
    param = f"p.{method}.{f.name}"
    rng = ""
    if f.minimum is not None or f.maximum is not None:
        rng = f" [{'' if f.minimum is None else f.minimum} … {'' if f.maximum is None else f.maximum}]"
    help_text = f"{f.help}{rng}" or None
    label = f.name
    if f.kind in ("number", "integer") and not f.optional and f.default is not None:
        value = bound_number(
            label,
            param,
            int(f.default) if f.kind == "integer" else float(f.default),
            min_value=f.minimum,
            max_value=f.maximum,
            integer=f.kind == "integer",
            help=help_text,
            container=where,
        )
        return True, value
    if f.kind == "boolean":
        return True, bound_checkbox(label, param, bool(f.default), help=help_text, container=where)
    if f.kind == "choice":
        options = list(f.choices)
        return True, bound_selectbox(label, param, options, default=f.default, help=help_text, container=where)
    # free text: optional numbers, strings, lists (comma-separated) and structured values (YAML/JSON)
    hint = text_hint(f)
    shown_default = "default" if f.default is None else json.dumps(f.default)
    raw = bound_text(f"{label} ({hint}; blank = {shown_default})", param, "", help=help_text, container=where)
    try:
        return parse_field_text(f, raw)
    except ValueError as err:
        raise AppInputError(f"method {method!r}: {err}") from None


def method_form(method: str, *, weight_default: float = 1.0, container: Any = None) -> dict[str, Any]:
    """The form of one method, generated from its parameter schema: a weight, then every
    hyperparameter (name, type, default, range, one-line help). URL parameters ``w.<method>`` and
    ``p.<method>.<name>`` hold the values.

    Returns:
        ``{"name", "weight", "params"}`` with the parameters validated by the method's schema.

    Raises:
        AppInputError: a value is not accepted (one line naming the method and the field).
    """
    from workbench.distill import get_method_class, method_schema, parse_params
    from workbench.distill.base import MethodError

    where = container if container is not None else st
    cls = get_method_class(method)
    if cls.description:
        where.caption(cls.description)
    weight = 1.0
    if method != "none":
        weight = bound_number(
            "weight", f"w.{method}", float(weight_default), min_value=0.0, max_value=1000.0,
            help="weight of this method's terms in the objective", container=where,
        )
    params: dict[str, Any] = {}
    for f in schema_fields(method_schema(method)):
        given, value = _field_widget(method, f, where)
        if given:
            params[f.name] = value
    try:
        parse_params(method, params)
    except MethodError as err:
        raise AppInputError(str(err)) from None
    return {"name": method, "weight": float(weight), "params": params}


def methods_form(method_names: Sequence[str], *, container: Any = None) -> list[dict[str, Any]]:
    """One generated form per method (an expander each); returns the ``distill.methods`` list of
    ``{"name", "weight", "params"}`` for a run config. See :func:`method_form`."""
    where = container if container is not None else st
    out = []
    for name in method_names:
        with where.expander(f"{name} hyperparameters", expanded=len(method_names) == 1):
            out.append(method_form(name))
    return out


def validate_run(data: dict[str, Any]) -> Any:
    """A run config from the form's mapping, checked against the schema and the registries
    (``workbench.validate``); a bad value raises :class:`AppInputError` with one line naming the field."""
    from workbench.config import ConfigError
    from workbench.validate import validate_run_config

    try:
        return validate_run_config(data)
    except (ConfigError, ValueError) as err:
        raise AppInputError(error_line(err)) from None


def new_run_params(config: Any) -> dict[str, str]:
    """The Home page's URL parameters that prefill its New-run form with ``config`` (a RunConfig or
    its mapping): ``dataset``, ``teacher``, ``student``, ``methods``, ``w.<m>``, ``p.<m>.<name>``,
    ``ce``, ``tprec`` (teacher precision), ``epochs``, ``seed``, ``name``. Used by links such as the doctor's suggested experiments."""
    from workbench.distill import method_schema

    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    out: dict[str, str] = {
        "dataset": str(data.get("data", {}).get("dataset", "mnist")),
        "student": str(data.get("model", {}).get("name", "cnn_small")),
        "epochs": str(int(data.get("train", {}).get("epochs", 2))),
        "seed": str(int(data.get("seed", 0))),
    }
    teachers = data.get("teachers") or []
    out["teacher"] = str(teachers[0]["source"]) if teachers else "none (train from scratch)"
    if data.get("name"):
        out["name"] = str(data["name"])[:40]
    distill = data.get("distill", {})
    methods = distill.get("methods") or [{"name": "none"}]
    out["methods"] = ",".join(m["name"] for m in methods)
    out["ce"] = repr(float(distill.get("ce_weight", 1.0)))
    if teachers:
        out["tprec"] = str(distill.get("teacher_precision", "float32"))
    for m in methods:
        name = m["name"]
        if name != "none":
            out[f"w.{name}"] = repr(float(m.get("weight", 1.0)))
        kinds = {f.name: f.kind for f in schema_fields(method_schema(name))}
        for key, value in (m.get("params") or {}).items():
            if value is None:
                continue
            kind = kinds.get(key, "json")
            if kind == "list" and isinstance(value, list):
                text = ",".join(str(v) for v in value)
            elif kind == "boolean":
                text = "1" if value else "0"
            elif kind == "json":
                text = json.dumps(value)
            else:
                text = str(value)
            out[f"p.{name}.{key}"] = text
    return out


# ---- errors and layout --------------------------------------------------------------------------
def error_line(exc: BaseException) -> str:
    """One short line for an exception: its first message line (type name when empty), at most 300
    characters; never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (KeyError,)) and text.startswith("'"):
        text = f"missing {text}"
    return text[:300]


def show_error(exc: BaseException, *, prefix: str | None = None, container: Any = None) -> None:
    """Show ``exc`` as one ``st.error`` line (see :func:`error_line`)."""
    where = container if container is not None else st
    where.error(f"{prefix}: {error_line(exc)}" if prefix else error_line(exc), icon=":material/error:")


@contextlib.contextmanager
def guard(prefix: str | None = None) -> Iterator[None]:
    """Run a block; any exception becomes one :func:`show_error` line and the page goes on.

    Streamlit's own control flow (``st.stop``, ``st.rerun``, page switches) passes through.
    """
    try:
        yield
    except Exception as exc:
        show_error(exc, prefix=prefix)


@contextlib.contextmanager
def page(title: str, caption: str | None = None) -> Iterator[None]:
    """The frame of every page: the title, the caption, the queue pumped, and the body guarded by
    :func:`guard` so any exception shows as one line."""
    st.title(title)
    if caption:
        st.caption(caption)
    pump()
    with guard():
        yield


def show_figure(fig: Any, *, key: str | None = None) -> None:
    """Draw a plotly figure of :mod:`workbench.viz` at the page's width."""
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def page_link(page_file: str, label: str, *, icon: str | None = None, params: dict[str, Any] | None = None,
              container: Any = None) -> None:
    """A link to another page of the app (``"views/<name>.py"``) opening it with ``params`` in the URL
    (the workspace is added); a page missing from this installation shows nothing."""
    where = container if container is not None else st
    if not (Path(__file__).resolve().parent / page_file).is_file():
        return
    where.page_link(page_file, label=label, icon=icon, query_params=carry_params(**(params or {})))


def fmt_value(value: Any) -> str:
    """A number or value for a table cell: floats to four significant digits, lists shortened."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple)):
        items = [fmt_value(v) for v in value[:6]]
        return "[" + ", ".join(items) + (", …]" if len(value) > 6 else "]")
    return str(value)[:120]


def fmt_pct(value: Any) -> str:
    """``0.9712`` -> ``97.12%``; anything not a finite number -> ``-``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.2%}"
    return "-"


__all__ = [
    "ALL_WORKSPACES",
    "AppInputError",
    "EvalBatch",
    "Field",
    "age",
    "bound_checkbox",
    "bound_multiselect",
    "bound_number",
    "bound_selectbox",
    "bound_text",
    "cached_analysis",
    "carry_params",
    "checkpoint_picker",
    "checkpoint_stamp",
    "configure_threads",
    "device",
    "error_line",
    "eval_batch",
    "fmt_pct",
    "fmt_value",
    "get_queue",
    "get_run",
    "get_store",
    "guard",
    "list_jobs",
    "list_runs",
    "load_data",
    "load_run_model",
    "load_teacher_for",
    "method_form",
    "methods_form",
    "page",
    "page_link",
    "progress_bar",
    "pump",
    "run_data",
    "run_label",
    "run_picker",
    "schema_fields",
    "show_error",
    "show_figure",
    "sidebar",
    "store_root",
    "teacher_label",
    "new_run_params",
    "validate_run",
    "workspace",
]
