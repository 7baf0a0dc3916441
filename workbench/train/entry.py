"""The one training entry point every face calls: ``workbench.train.run``.

The CLI's ``train`` commands, the demo, the sweep runner (in-process, process pool and Ray) and
the job worker all train through :func:`run`. It trains one run, or a chain of linked runs
(``ban``, ``takd``) when the config's methods describe one, and writes to the run store only
through the engine's store writer, so a run's files are the same whoever started it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from workbench.config import RunConfig
from workbench.data import Dataset
from workbench.runs import RunStore
from workbench.runtime import CancelToken
from workbench.train.chains import ChainError, is_chain, run_chain
from workbench.train.engine import Trainer
from workbench.train.events import Subscriber
from workbench.train.results import TrainResult


def run(
    config: RunConfig,
    *,
    store: RunStore | None = None,
    run_id: str | None = None,
    subscribers: Iterable[Subscriber] = (),
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    dataset: Dataset | None = None,
    student: nn.Module | None = None,
    teachers: list[nn.Module] | None = None,
    resume: str | None = None,
    teacher_cache: str = "lazy",
) -> TrainResult:
    """Train what ``config`` describes and return the result.

    Args:
        config: a validated :class:`RunConfig`.
        store: the run store to write to (``None``: in memory only; a chain needs a store).
        run_id: the run's id in the store (default: a new one); for a chain, the first link's
            id, which is also the chain's id.
        subscribers: event subscribers (see :mod:`workbench.train.events`), attached to every run.
        progress: ``progress(done, total, message)``, one monotone count over set-up and steps
            (over every link of a chain).
        cancel: a :class:`workbench.runtime.CancelToken`. Set during set-up, the call raises
            :class:`workbench.runtime.Cancelled` and leaves no run directory; set during
            training, the run ends ``stopped`` (loadable, completed epochs kept).
        dataset: an already loaded dataset (else loaded from ``config.data``).
        student: a student module to train (else built from ``config.model``; not for chains).
        teachers: teacher modules (else loaded from ``config.teachers``; for a chain, the first
            link's teachers). They are never moved or changed; the student module given comes
            back on the device it was given on.
        resume: the id (or a unique prefix) of a stopped, interrupted or failed run in ``store``
            to continue from its last finished epoch; ``config`` must equal the run's recorded
            config except for ``train.epochs``. The result equals an uninterrupted run's.
        teacher_cache: ``"lazy"`` (the first epoch's teacher forwards fill the cache) or
            ``"eager"`` (a pass over the train split in set-up); the values are the same.

    Returns:
        The run's :class:`TrainResult`; for a chain, the last link's, with every link's id in
        ``link_ids``.

    Raises:
        Cancelled: stopped during set-up.
        TrainingFailed: the loss became non-finite (the run is recorded as ``failed``).
        ChainError: a chain without a store, or with a ``student`` module.
        ResumeError: ``resume`` names a run that completed, is still running, or cannot be
            resumed with this config (:class:`~workbench.config.ConfigError` names the field).
    """
    if is_chain(config):
        if resume is not None:
            raise ChainError("resume: a chain (ban, takd) cannot be resumed; train it again")
        if student is not None:
            raise ChainError("student: a chain builds one student per link from the config; pass none")
        results = run_chain(
            config,
            store,  # type: ignore[arg-type]  # run_chain names a missing store in its error
            subscribers,
            dataset=dataset,
            teachers=teachers,
            run_id=run_id,
            progress=progress,
            cancel=cancel,
        )
        return results[-1]
    trainer = Trainer(
        config,
        store=store,
        subscribers=subscribers,
        progress=progress,
        cancel=cancel,
        dataset=dataset,
        student=student,
        teachers=teachers,
        run_id=run_id,
        resume=resume,
        teacher_cache=teacher_cache,
    )
    return trainer.run()


__all__ = ["run"]
