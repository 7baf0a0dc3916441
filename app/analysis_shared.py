"""What the analysis pages (CAMs, similarity, landscape, agreement) share beyond :mod:`app.shared`:
URL-bound sliders, a form generated from a parameter schema, the images a CAM view shows (an upload
is decoded by :func:`workbench.data.uploads.decode_upload`), the cached analyses those pages reuse,
and the background landscape computation that fills its grid in as rows arrive.

Nothing here computes an analysis itself: every result comes from :mod:`workbench.analysis`, cached
through :func:`app.shared.cached_analysis` (keyed by run id, checkpoint and parameters).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch

from app import shared
from app.shared import AppInputError
from workbench.analysis import AnalysisError
from workbench.analysis.cam import select_images
from workbench.data.uploads import decode_upload
from workbench.distill.forms import schema_fields
from workbench.runs import Run
from workbench.runtime import Cancelled, CancelToken


# ---- URL-bound sliders ------------------------------------------------------------------------------
def bound_slider(
    label: str,
    param: str,
    default: float,
    *,
    min_value: float,
    max_value: float,
    step: float | None = None,
    help: str | None = None,
    container: Any = None,
) -> Any:
    """A slider bound to the URL parameter ``param`` (ints when ``default`` is an int).

    A value in the URL that is not a number or lies outside ``[min_value, max_value]`` falls back
    to ``default`` with a one-line warning.
    """
    where = container if container is not None else st
    as_int = isinstance(default, int) and not isinstance(default, bool)
    cast: Callable[[Any], Any] = int if as_int else float
    value = cast(default)
    raw = st.query_params.get(param)
    if raw is not None:
        try:
            got = cast(float(raw))
            if not (np.isfinite(float(got)) and min_value <= got <= max_value):
                raise ValueError
            value = got
        except ValueError:
            where.warning(f"{label}: {raw[:30]!r} from the link is not an allowed value; using {value}")
    kwargs: dict[str, Any] = {"min_value": cast(min_value), "max_value": cast(max_value), "value": value}
    if step is not None:
        kwargs["step"] = cast(step)
    chosen = where.slider(label, help=help, key=f"qp:{param}", **kwargs)
    if st.query_params.get(param) != str(chosen):
        st.query_params[param] = str(chosen)
    return chosen


def bound_select_slider(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Any = None,
    format_func: Callable[[Any], str] = str,
    help: str | None = None,
    container: Any = None,
) -> Any:
    """A select slider over ``options`` bound to ``param`` (matched by ``str``); an unknown value in
    the URL falls back to ``default`` (else the last option)."""
    where, options, texts, fallback = shared.choice_setup(label, options, default, container, last=True)
    wanted = st.query_params.get(param)
    value = options[texts.index(wanted)] if wanted in texts else fallback
    if len(options) == 1:  # a select slider needs two options; one is just shown
        where.caption(f"{label}: {format_func(value)}")
        chosen = value
    else:
        chosen = where.select_slider(
            label, options=options, value=value, format_func=format_func, help=help, key=f"qp:{param}"
        )
    if st.query_params.get(param) != str(chosen):
        st.query_params[param] = str(chosen)
    return chosen


# ---- a form from a parameter schema ----------------------------------------------------------------
def schema_form(schema: Mapping[str, Any], prefix: str, *, container: Any = None) -> dict[str, Any]:
    """One URL-bound widget per property of a JSON parameter schema (as
    :func:`workbench.analysis.cam.cam_method_schema` gives), its fields read by
    :func:`workbench.distill.forms.schema_fields` as for the method forms; returns the values that were set.

    Numbers and integers with a default become number inputs, booleans checkboxes, enums select
    boxes; optional values (default ``None``) a text field where blank keeps the default. URL
    parameters are ``<prefix>.<name>``.
    """
    where = container if container is not None else st
    out: dict[str, Any] = {}
    for f in schema_fields(dict(schema)):
        param = f"{prefix}.{f.name}"
        help_text = f.help or None
        if f.kind in ("number", "integer") and not f.optional and f.default is not None:
            lo = f.minimum
            out[f.name] = shared.bound_number(
                f.name,
                param,
                int(f.default) if f.kind == "integer" else float(f.default),
                min_value=lo,
                max_value=f.maximum,
                integer=f.kind == "integer",
                help=help_text,
                container=where,
            )
        elif f.kind == "boolean":
            out[f.name] = shared.bound_checkbox(
                f.name, param, bool(f.default), help=help_text, container=where
            )
        elif f.kind == "choice":
            out[f.name] = shared.bound_selectbox(
                f.name, param, list(f.choices), default=f.default, help=help_text, container=where
            )
        else:
            raw = shared.bound_text(f"{f.name} (blank = default)", param, "", help=help_text, container=where)
            raw = raw.strip()
            if raw:
                try:
                    out[f.name] = int(raw) if f.kind == "integer" else float(raw)
                except ValueError:
                    raise AppInputError(f"{f.name}: {raw[:30]!r} is not a number") from None
    return out


# ---- run facts ---------------------------------------------------------------------------------------
def require_teacher(run: Run) -> torch.nn.Module:
    """The teacher of ``run`` (see :func:`app.shared.load_teacher_for`), or a one-line error."""
    teacher = shared.load_teacher_for(run)
    if teacher is None:
        raise AppInputError(
            f"run {run.id}: has no teacher to compare with (pick a distill or student run with one)"
        )
    return teacher


# ---- cached analyses -----------------------------------------------------------------------------------
def agreement(run: Run, checkpoint: str, n: int, seed: int) -> Any:
    """:func:`workbench.analysis.agreement_report` of ``run``'s teacher and student at ``checkpoint`` on
    ``n`` test samples drawn with ``seed``; cached and shared by all sessions."""
    from workbench.analysis import agreement_report

    teacher = require_teacher(run)
    student = shared.load_run_model(run.id, checkpoint)
    batch = shared.eval_batch(run, n, seed)

    def compute() -> Any:
        return agreement_report(
            teacher,
            student,
            batch.images,
            batch.labels,
            class_names=batch.class_names,
            device=shared.device(),
            progress=shared.progress_bar("Agreement"),
        )

    return shared.cached_analysis("agreement", run.id, checkpoint, {"n": int(n), "seed": int(seed)}, compute)


# ---- CAM inputs -------------------------------------------------------------------------------------------
PICKS = ("class", "disagreement", "random", "upload")
"""How the CAM page chooses its images: by true class, where teacher and student disagree (most
confident mistakes first), at random, or an uploaded PNG/JPEG."""


@dataclass(frozen=True)
class CamImages:
    """The images a CAM view shows: ``images`` normalized ``(N, C, H, W)``, ``raw`` ``uint8`` for
    display, ``labels`` (None for an upload), ``masks`` (None unless the dataset has them) and
    ``index`` (positions in the test split, None for an upload)."""

    images: torch.Tensor
    raw: torch.Tensor
    labels: torch.Tensor | None
    masks: torch.Tensor | None
    index: torch.Tensor | None


def cam_images(
    run: Run,
    checkpoint: str,
    pick: str,
    *,
    count: int,
    seed: int,
    klass: int = 0,
    pool: int = 500,
    upload: bytes | None = None,
) -> CamImages:
    """``count`` images of ``run``'s test split chosen by ``pick`` (see :data:`PICKS`) from a seeded
    pool of ``pool`` samples (:func:`app.shared.eval_batch`), or the uploaded image.

    ``disagreement`` takes the samples of :func:`workbench.analysis.agreement_report`'s gallery
    (teacher right and student wrong first, most confident first). Raises a one-line
    :class:`app.shared.AppInputError` when nothing matches.
    """
    if pick not in PICKS:
        raise AppInputError(f"images: unknown choice {pick!r}; known: {', '.join(PICKS)}")
    if pick == "upload":
        if upload is None:
            raise AppInputError("upload: choose a PNG or JPEG file")
        data = shared.run_data(run)
        raw = decode_upload(upload, tuple(data.image_shape))
        return CamImages(data.normalize(raw), raw, None, None, None)
    batch = shared.eval_batch(run, pool, seed)
    gallery = agreement(run, checkpoint, pool, seed).gallery.indices if pick == "disagreement" else None
    try:
        picked = select_images(batch.labels, pick, count=count, seed=seed, klass=klass, gallery=gallery)
    except AnalysisError as err:
        raise AppInputError(str(err)) from None
    chosen = torch.as_tensor(picked, dtype=torch.long)
    return CamImages(
        images=batch.images[chosen],
        raw=batch.raw[chosen],
        labels=batch.labels[chosen],
        masks=None if batch.masks is None else batch.masks[chosen],
        index=batch.index[chosen],
    )


def related_runs(run: Run, *, same_model: bool = False) -> list[Run]:
    """Other runs of the store on ``run``'s dataset (and, with ``same_model``, its architecture):
    the scratch student a CAM view adds, or the other end of an interpolation."""
    cfg = run.config
    out = []
    for other in shared.list_runs(kind=("student", "distill", "teacher")):
        if other.id == run.id:
            continue
        try:
            ocfg = other.config
        except Exception:
            continue
        if ocfg.data.dataset != cfg.data.dataset or ocfg.data.options != cfg.data.options:
            continue
        if same_model and (ocfg.model.name != cfg.model.name or ocfg.model.kwargs != cfg.model.kwargs):
            continue
        if other.checkpoints():
            out.append(other)
    return out


def shapes_preset_run() -> Run | None:
    """The newest run trained on ``shapes`` with a background confounder (``confounding > 0``) and a
    teacher: the one the CAM page's preset opens."""
    for run in shared.list_runs(kind=("distill", "student"), status="completed"):
        try:
            cfg = run.config
        except Exception:
            continue
        if (
            cfg.data.dataset == "shapes"
            and float(cfg.data.options.get("confounding", 0) or 0) > 0
            and cfg.teachers
        ):
            return run
    return None


def apply_preset(params: Mapping[str, Any]) -> None:
    """Put ``params`` in the URL, forget the widgets they bind (so they take the new values) and rerun."""
    for key, value in params.items():
        st.query_params[key] = str(value)
        st.session_state.pop(f"qp:{key}", None)
    st.rerun()


# ---- background computations (loss landscape) ------------------------------------------------------------
@dataclass
class BackgroundJob:
    """One computation running in a daemon thread, shared by every session that asks for the same key.

    ``partial`` holds what the computation published so far (e.g. the landscape's rows),
    ``done``/``total``/``message`` its progress; ``result`` the final value, ``error`` a one-line
    message, ``cancelled`` whether it was stopped. ``cancel`` is the
    :class:`workbench.runtime.CancelToken` the Stop button sets.
    """

    key: tuple[Any, ...]
    cancel: CancelToken = field(default_factory=CancelToken)
    lock: threading.Lock = field(default_factory=threading.Lock)
    partial: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    total: int = 1
    message: str = ""
    result: Any = None
    error: str | None = None
    cancelled: bool = False
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is still computing."""
        return self.finished is None

    def progress(self, done: int, total: int, message: str) -> None:
        """The ``progress(done, total, message)`` callable handed to the computation."""
        with self.lock:
            self.done, self.total, self.message = int(done), max(int(total), 1), str(message)

    def publish(self, **values: Any) -> None:
        """Store partial values (called from the computation's thread)."""
        with self.lock:
            self.partial.update(values)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the partial values and progress, for drawing."""
        with self.lock:
            return {**self.partial, "done": self.done, "total": self.total, "message": self.message}

    def elapsed(self) -> float:
        """Seconds since the start (until the end once finished)."""
        return (self.finished if self.finished is not None else time.monotonic()) - self.started


class _Jobs:
    """Registry of background jobs by key (the most recent 16 kept once finished)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.jobs: dict[tuple[Any, ...], BackgroundJob] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> BackgroundJob | None:
        with self.lock:
            return self.jobs.get(key)

    def start(
        self, key: tuple[Any, ...], work: Callable[[BackgroundJob], Any], restart: bool
    ) -> BackgroundJob:
        """The job under ``key``: the running or finished one, or a new one started on ``work`` when
        there is none (or, with ``restart``, when the one there was stopped or failed)."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and (job.running or not restart or (job.error is None and not job.cancelled)):
                return job
            job = BackgroundJob(key=key)
            self.jobs[key] = job
            finished = [k for k, j in self.jobs.items() if not j.running and k != key]
            for k in finished[: max(0, len(self.jobs) - self.size)]:
                self.jobs.pop(k, None)

        def body() -> None:
            try:
                value = work(job)
                with job.lock:
                    job.result = value
            except Cancelled:
                with job.lock:
                    job.cancelled = True
            except Exception as exc:  # shown as one line by the page
                with job.lock:
                    job.error = shared.error_line(exc)
            finally:
                job.finished = time.monotonic()

        job.thread = threading.Thread(target=body, name=f"workbench-{key[0]}", daemon=True)
        job.thread.start()
        return job


@st.cache_resource(show_spinner=False)
def _jobs() -> _Jobs:
    return _Jobs()


def background(
    key: tuple[Any, ...], work: Callable[[BackgroundJob], Any], *, restart: bool = False
) -> BackgroundJob:
    """The background job for ``key`` (every setting that changes the result), started on ``work`` when
    there is none yet; shared by all sessions, so returning to a computed view does not recompute.

    A stopped or failed job stays as it is (its partial values visible) unless ``restart`` is true.
    """
    return _jobs().start(key, work, restart)


def join_background(timeout: float = 60.0) -> bool:
    """Wait until every background job's thread has ended (at most ``timeout`` seconds in all);
    returns whether they all did. For tests and orderly shutdown."""
    end = time.monotonic() + timeout
    with _jobs().lock:
        threads = [j.thread for j in _jobs().jobs.values() if j.thread is not None]
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def find_background(key: tuple[Any, ...]) -> BackgroundJob | None:
    """The job registered under ``key``, if any (without starting one)."""
    return _jobs().get(key)


__all__ = [
    "PICKS",
    "CamImages",
    "apply_preset",
    "cam_images",
    "related_runs",
    "shapes_preset_run",
    "BackgroundJob",
    "agreement",
    "background",
    "bound_select_slider",
    "bound_slider",
    "find_background",
    "join_background",
    "require_teacher",
    "schema_form",
]
