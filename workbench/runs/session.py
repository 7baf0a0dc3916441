"""One way to open a stored run, for every face: its config, kind, dataset, teachers, student and a
seeded evaluation sample.

The app (through thin caching wrappers), the ipywidgets panels and the doctor all open a run here,
so a run's teacher is always shaped from the run's own dataset (never guessed), a checkpoint file is
spelled only by :meth:`workbench.runs.Run.checkpoint_path`, and the same ``(n_samples, seed)`` draws
the same images everywhere (:func:`workbench.data.seeded_subset`).

    >>> opened = open_run("kd-cnn_small", checkpoint="final", n_samples=500, seed=0)
    >>> opened.kind, opened.teacher, opened.student, opened.sample.images.shape

Everything is loaded on first use and kept: opening a run costs nothing until a part is read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from workbench.runs.store import Run, RunStore, RunStoreError
from workbench.runs.teachers import load_teacher
from workbench.vocabulary import DEFAULT_N_SAMPLES

if TYPE_CHECKING:
    from workbench.config import RunConfig, TeacherSpec
    from workbench.data import Dataset


@dataclass(frozen=True)
class EvalSample:
    """A seeded sample of a dataset's test split.

    ``images``: normalized float tensor ``(N, C, H, W)``; ``labels``: int64 ``(N,)``; ``raw``: the
    ``uint8`` images for display; ``masks``: object masks or ``None``; ``index``: the samples'
    positions in the test split; ``class_names``: the dataset's class names.
    """

    images: torch.Tensor
    labels: torch.Tensor
    raw: torch.Tensor
    masks: torch.Tensor | None
    index: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, positions: Any) -> EvalSample:
        """The sample's images at ``positions`` (indices into this sample), in that order."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        return EvalSample(
            images=self.images[pos],
            labels=self.labels[pos],
            raw=self.raw[pos],
            masks=None if self.masks is None else self.masks[pos],
            index=self.index[pos],
            class_names=self.class_names,
        )


def as_store(store: RunStore | str | Path | None) -> RunStore:
    """A :class:`RunStore` from a store, its folder, or ``None`` (``$WORKBENCH_RUNS`` or ``./runs``)."""
    if isinstance(store, RunStore):
        return store
    if store is None or isinstance(store, (str, Path)):
        return RunStore(store)
    raise RunStoreError(f"store: expected a RunStore or a folder, got {type(store).__name__}")


def resolve_run(run: Run | str | Path, store: RunStore | str | Path | None = None) -> Run:
    """A :class:`Run` from a Run, a run id or unique prefix of ``store``, or a run directory (a
    :class:`~pathlib.Path`, or a string that names a run folder and no run of the store).

    Raises:
        RunStoreError: one line naming the id (no such run, an ambiguous prefix) or the type given.
    """
    if isinstance(run, Run):
        return run
    if isinstance(run, Path):
        return Run(run.name, run) if (run / "status.json").exists() else as_store(store).load(str(run))
    if isinstance(run, str):
        the_store = as_store(store)
        path = Path(run)
        if run in the_store.ids() or not (path.is_dir() and (path / "status.json").exists()):
            return the_store.load(run)  # an id of the store wins over a folder of the same name here
        return Run(path.name, path)
    raise RunStoreError(f"run: expected a Run, a run id or a run directory, got {type(run).__name__}")


def run_dataset(config: RunConfig) -> Dataset:
    """The dataset a run config names (its name, data root, download flag and options)."""
    from workbench.data import load_dataset

    spec = config.data
    return load_dataset(spec.dataset, root=spec.root, download=spec.download, **dict(spec.options))


def eval_sample(dataset: Dataset, n_samples: int = DEFAULT_N_SAMPLES, seed: int = 0) -> EvalSample:
    """``n_samples`` test images of ``dataset`` drawn with ``seed`` (all of them when the split is
    smaller), normalized, with their raw images, labels, masks and positions; see :class:`EvalSample`."""
    from workbench.data import seeded_subset

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise RunStoreError(f"n_samples: expected a whole number >= 1, got {n_samples!r}")
    test = dataset.test
    index = seeded_subset(len(test), int(n_samples), int(seed))
    part = test.subset(index)
    return EvalSample(
        images=dataset.normalize(part.images),
        labels=part.labels,
        raw=part.images,
        masks=part.masks,
        index=index,
        class_names=list(dataset.class_names),
    )


def run_teacher(
    config: RunConfig,
    dataset: Dataset,
    *,
    index: int = 0,
    device: str | torch.device = "cpu",
    store: RunStore | str | Path | None = None,
    spec: TeacherSpec | None = None,
) -> nn.Module | None:
    """Teacher ``index`` of a run config (or ``spec``), frozen, shaped from ``dataset`` (its number of
    classes and image shape), on ``device``; ``None`` when the config has no such teacher. ``store``
    resolves ``run:ID`` teachers."""
    if spec is None:
        if index >= len(config.teachers):
            return None
        spec = config.teachers[index]
    root = None if store is None else str(as_store(store).root)
    return load_teacher(
        spec, int(dataset.num_classes), tuple(dataset.image_shape), device, runs_root=root,
        field=f"teachers[{index}]",
    )


def pick_checkpoint(run: Run, checkpoint: str = "final", *, fallback: bool = False) -> str:
    """``checkpoint`` when ``run`` has it; with ``fallback``, ``final`` then ``best`` when it does not
    (a stopped run has no ``final``). Raises :class:`RunStoreError` naming the checkpoints it has."""
    have = run.checkpoints()
    candidates = (checkpoint, "final", "best") if fallback else (checkpoint,)
    for name in candidates:
        if name in have:
            return name
    shown = checkpoint if isinstance(checkpoint, str) else type(checkpoint).__name__
    raise RunStoreError(f"run {run.id}: no checkpoint {shown[:60]!r} (have: {', '.join(have) or 'none'})")


class OpenedRun:
    """A stored run opened for analysis: what every face reads of it, each part loaded on first use.

    Attributes:
        run: the :class:`Run`. config: its :class:`~workbench.config.RunConfig`. kind: ``teacher``,
            ``student`` or ``distill``. checkpoint: the student's checkpoint name. n_samples, seed:
            the evaluation sample's size and seed. device: where the models are loaded.
        dataset: the run's :class:`~workbench.data.Dataset`. teachers: every teacher of its config.
        teacher: the first teacher or ``None``. student: the network at ``checkpoint``, eval mode.
        sample: the :class:`EvalSample` of ``n_samples`` test images drawn with ``seed``.
    """

    def __init__(
        self,
        run: Run,
        *,
        store: RunStore,
        checkpoint: str,
        n_samples: int,
        seed: int,
        device: torch.device,
        dataset: Dataset | None = None,
    ) -> None:
        self.run = run
        self.store = store
        self.config = run.config
        self.kind = self.config.kind
        self.checkpoint = checkpoint
        self.n_samples = n_samples
        self.seed = seed
        self.device = device
        if dataset is not None:
            self.__dict__["dataset"] = dataset

    @property
    def id(self) -> str:
        """The run's id."""
        return self.run.id

    @functools.cached_property
    def dataset(self) -> Dataset:
        """The dataset the run trained on (:func:`run_dataset`)."""
        return run_dataset(self.config)

    @functools.cached_property
    def teachers(self) -> list[nn.Module]:
        """Every teacher of the run's config, frozen, shaped from its dataset."""
        out = []
        for i in range(len(self.config.teachers)):
            teacher = run_teacher(self.config, self.dataset, index=i, device=self.device, store=self.store)
            assert teacher is not None
            out.append(teacher)
        return out

    @property
    def teacher(self) -> nn.Module | None:
        """The run's first teacher, or ``None`` for a run trained without one."""
        if not self.config.teachers:
            return None
        if "teachers" in self.__dict__:
            return self.teachers[0]
        return self._first_teacher

    @functools.cached_property
    def _first_teacher(self) -> nn.Module | None:
        return run_teacher(self.config, self.dataset, index=0, device=self.device, store=self.store)

    def require_teacher(self) -> nn.Module:
        """The first teacher, or a one-line :class:`RunStoreError` for a run without one."""
        teacher = self.teacher
        if teacher is None:
            raise RunStoreError(f"run {self.run.id}: has no teacher to compare with (pick a run distilled from one)")
        return teacher

    @functools.cached_property
    def student(self) -> nn.Module:
        """The run's student network at :attr:`checkpoint`, in eval mode on :attr:`device`."""
        return self.run.load_model(self.checkpoint, device=self.device)

    @functools.cached_property
    def sample(self) -> EvalSample:
        """The seeded evaluation sample (:func:`eval_sample`)."""
        return eval_sample(self.dataset, self.n_samples, self.seed)

    def __repr__(self) -> str:
        return (
            f"OpenedRun({self.run.id!r}, kind={self.kind!r}, checkpoint={self.checkpoint!r}, "
            f"n_samples={self.n_samples}, seed={self.seed}, device={str(self.device)!r})"
        )


def open_run(
    run: Run | str | Path,
    *,
    store: RunStore | str | Path | None = None,
    checkpoint: str = "final",
    n_samples: int = DEFAULT_N_SAMPLES,
    seed: int = 0,
    device: str | torch.device | None = None,
    fallback: bool = False,
    dataset: Dataset | None = None,
) -> OpenedRun:
    """Open a stored run for analysis.

    Args:
        run: a :class:`Run`, a run id or unique prefix in ``store``, or a run directory.
        store: the run store (a :class:`RunStore` or its folder); default the run's own parent
            folder for a Run or a directory, else ``$WORKBENCH_RUNS`` or ``./runs``.
        checkpoint: the student's checkpoint (``final``, ``best``, ``epoch_003``, ...).
        n_samples: test images in the evaluation sample. seed: the sample's seed.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ... ; default ``auto``.
        fallback: take ``final`` then ``best`` when the run has no ``checkpoint``.
        dataset: the dataset to use instead of loading the one the config names (a dataset a caller
            built in memory).

    Returns:
        An :class:`OpenedRun`; its parts load on first use.

    Raises:
        RunStoreError: the run cannot be found or read, or ``n_samples`` is not a positive whole
            number (a missing checkpoint is reported, naming those the run has, when the student is
            read). DeviceError: an unknown device.
    """
    from workbench.devices import resolve_device

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise RunStoreError(f"n_samples: expected a whole number >= 1, got {n_samples!r}")
    if store is None and (isinstance(run, (Run, Path)) or (isinstance(run, str) and Path(run).is_dir())):
        base = run.path.parent if isinstance(run, Run) else Path(run).parent
        store = RunStore(base)
    the_store = as_store(store)
    resolved = resolve_run(run, the_store)
    try:
        name = pick_checkpoint(resolved, checkpoint, fallback=fallback)
    except RunStoreError:  # no such checkpoint (yet): reading the student says which ones it has
        name = checkpoint
    dev = resolve_device(device or "auto", field="device")
    return OpenedRun(
        resolved, store=the_store, checkpoint=name, n_samples=int(n_samples), seed=int(seed), device=dev,
        dataset=dataset,
    )


__all__ = [
    "EvalSample",
    "OpenedRun",
    "as_store",
    "eval_sample",
    "open_run",
    "pick_checkpoint",
    "resolve_run",
    "run_dataset",
    "run_teacher",
]
