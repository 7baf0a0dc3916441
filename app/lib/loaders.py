"""A run's parts for the pages, loaded once per process and shared by every session: thin
``st.cache_resource`` wrappers over the run adapter (:mod:`workbench.runs.session`), the cache of
finished analyses and the background computations (:mod:`workbench.background`).

A run's teacher is shaped from the run's own dataset (:func:`workbench.runs.session.run_teacher`) and
its evaluation sample is :func:`workbench.runs.session.eval_sample`, so the app shows the images the
doctor and the widgets draw for the same ``(n_samples, seed)``. Every model and result is keyed by the
run's store, id, checkpoint and the checkpoint file's time (:func:`checkpoint_stamp`), so a rewritten
``best`` is never served stale. Models are shared: analyses work on their own copies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import streamlit as st
import torch
from torch import nn

from app.lib.layout import progress_bar
from app.lib.state import AppInputError, get_store
from workbench.analysis.cam import select_images
from workbench.background import LRU, BackgroundJob, BackgroundJobs
from workbench.config import RunConfig
from workbench.data import Dataset
from workbench.data.uploads import decode_upload
from workbench.runs import Run, RunStore, RunStoreError
from workbench.runs.session import EvalSample, eval_sample, open_run, run_dataset, run_teacher
from workbench.vocabulary import DEFAULT_N_SAMPLES

T = TypeVar("T")
ANALYSIS_CACHE_SIZE = 64


def device() -> str:
    """Where the app's analyses run: CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_stamp(run: Run, checkpoint: str) -> float:
    """The modification time of a checkpoint's file (``Run.checkpoint_path``), 0.0 when absent."""
    try:
        return run.checkpoint_path(checkpoint).stat().st_mtime
    except (OSError, RunStoreError):
        return 0.0


def _data_key(config: RunConfig) -> str:
    spec = config.data
    return json.dumps([spec.dataset, spec.root, spec.download, spec.options], sort_keys=True, default=str)


@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def _student(root: str, run_id: str, checkpoint: str, stamp: float, where: str) -> nn.Module:
    del stamp  # part of the key only
    return open_run(RunStore(root).load(run_id), checkpoint=checkpoint, device=where).student


def student(run: Run, checkpoint: str = "final") -> nn.Module:
    """The network ``run`` trained, at ``checkpoint``, in eval mode; a missing checkpoint is a one-line
    error naming those the run has."""
    return _student(str(run.path.parent), run.id, checkpoint, checkpoint_stamp(run, checkpoint), device())


@st.cache_resource(show_spinner="Loading data…", max_entries=8)
def _dataset(data_key: str, _config: RunConfig) -> Dataset:
    return run_dataset(_config)


def dataset(run: Run) -> Dataset:
    """The dataset ``run`` trained on (name, root and options from its config)."""
    return _dataset(_data_key(run.config), run.config)


@st.cache_resource(show_spinner="Loading teacher…", max_entries=16)
def _teacher(root: str, spec_json: str, data_key: str, where: str, _config: RunConfig) -> nn.Module | None:
    return run_teacher(_config, _dataset(data_key, _config), device=where, store=root)


def teacher(run: Run) -> nn.Module | None:
    """The first teacher of ``run``'s config, frozen, shaped from the run's dataset; ``None`` for a run
    trained without one."""
    config = run.config
    if not config.teachers:
        return None
    return _teacher(
        str(run.path.parent), config.teachers[0].model_dump_json(), _data_key(config), device(), config
    )


def require_teacher(run: Run) -> nn.Module:
    """The teacher of ``run`` (:func:`teacher`), or a one-line error for a run without one."""
    found = teacher(run)
    if found is None:
        raise AppInputError(f"run {run.id}: has no teacher to compare with (pick a run distilled from one)")
    return found


@st.cache_resource(show_spinner=False, max_entries=16)
def _sample(data_key: str, n_samples: int, seed: int, _config: RunConfig) -> EvalSample:
    return eval_sample(_dataset(data_key, _config), n_samples, seed)


def sample(run: Run, n_samples: int = DEFAULT_N_SAMPLES, seed: int = 0) -> EvalSample:
    """``n_samples`` test images of ``run``'s dataset drawn with ``seed`` (:class:`EvalSample`)."""
    return _sample(_data_key(run.config), int(n_samples), int(seed), run.config)


@st.cache_resource(show_spinner=False)
def _analyses() -> LRU:
    return LRU(ANALYSIS_CACHE_SIZE)


def cached_analysis(
    kind: str, run: Run, checkpoint: str, params: dict[str, Any], compute: Callable[[], T]
) -> T:
    """``compute()``, computed once per (store, ``kind``, run, checkpoint and its file time, ``params``)
    and shared by every session (the 64 most recent kept). ``params`` holds every setting that changes
    the result; a failing ``compute`` caches nothing. Treat the result as read-only."""
    key = (
        str(run.path.parent),
        kind,
        run.id,
        checkpoint,
        checkpoint_stamp(run, checkpoint),
        json.dumps(params, sort_keys=True, default=str),
    )
    return _analyses().get_or_compute(key, compute)


@st.cache_resource(show_spinner=False)
def _jobs() -> BackgroundJobs:
    return BackgroundJobs()


def background(
    key: Hashable, work: Callable[[BackgroundJob], Any], *, restart: bool = False
) -> BackgroundJob:
    """The background computation under ``key`` (every setting that changes its result), started on
    ``work`` when there is none, shared by every session (:meth:`BackgroundJobs.start`)."""
    return _jobs().start(key, work, restart=restart)


def join_background(timeout: float = 60.0) -> bool:
    """Wait for every background computation's thread to end; whether they all did (tests, shutdown)."""
    return _jobs().join(timeout)


def agreement(run: Run, checkpoint: str, n_samples: int, seed: int) -> Any:
    """:func:`workbench.analysis.agreement_report` of ``run``'s teacher and student at ``checkpoint`` on
    its evaluation sample, cached."""
    from workbench.analysis import agreement_report

    found, net, drawn = require_teacher(run), student(run, checkpoint), sample(run, n_samples, seed)
    return cached_analysis(
        "agreement",
        run,
        checkpoint,
        {"n_samples": int(n_samples), "seed": int(seed)},
        lambda: agreement_report(
            found,
            net,
            drawn.images,
            drawn.labels,
            class_names=drawn.class_names,
            device=device(),
            progress=progress_bar("Agreement"),
        ),
    )


@dataclass(frozen=True)
class CamImages:
    """The images a CAM view shows: ``images`` normalized, ``raw`` for display, ``labels``, ``masks``
    and ``index`` (positions in the test split); the last three ``None`` for an uploaded image."""

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
    upload: bytes | None = None,
) -> CamImages:
    """The images a CAM view of ``run`` shows: ``upload`` decoded to the dataset's shape when
    ``pick`` is ``upload``, else those :func:`workbench.analysis.cam.select_images` chooses from the
    run's evaluation sample (``disagreement``: the agreement report's gallery)."""
    if pick == "upload":
        if upload is None:
            raise AppInputError("upload: choose a PNG or JPEG file")
        data = dataset(run)
        raw = decode_upload(upload, tuple(data.image_shape))
        return CamImages(data.normalize(raw), raw, None, None, None)
    drawn = sample(run, DEFAULT_N_SAMPLES, seed)
    gallery = agreement(run, checkpoint, DEFAULT_N_SAMPLES, seed).gallery.indices if pick == "disagreement" else None
    picked = drawn.take(select_images(drawn.labels, pick, count=count, seed=seed, klass=klass, gallery=gallery))
    return CamImages(picked.images, picked.raw, picked.labels, picked.masks, picked.index)


@st.cache_resource(show_spinner="Reading the dataset…", max_entries=8)
def _preview(root: str, name: str, stamp: str) -> Any:
    del stamp  # part of the key only: a dataset removed and added again under its name is read anew
    from workbench.data import preview_dataset
    from workbench.runs.datasets import open_dataset

    return preview_dataset(open_dataset(root, name))


def dataset_preview(name: str) -> Any:
    """The :class:`workbench.data.DatasetPreview` of a built-in or store dataset, computed once per
    process (a store dataset is keyed by when it was added)."""
    from workbench.runs.datasets import get_store_dataset, list_store_datasets

    store = get_store()
    stamp = get_store_dataset(store, name).added if name in {e.name for e in list_store_datasets(store)} else ""
    return _preview(str(store.root), name, str(stamp))
