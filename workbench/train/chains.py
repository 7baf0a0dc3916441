"""Chains of linked runs: born-again generations (``ban``) and teacher-assistant chains (``takd``).

``run_chain(config, store)`` reads the chain method of ``config.distill.methods`` and trains one
run per link, in order, each taught by the previous one (teacher ``run:<id>`` of the previous
run's final weights). Every run of a chain records in ``RunConfig.links``:

* ``chain`` — the id of the chain's first run (the same for every link, the first included);
* ``chain_step`` — the link's position, from 0;
* ``chain_role`` — ``gen1``, ``gen2``, ... for ``ban``; ``assistant1``, ..., ``student`` for ``takd``;
* ``teacher_run`` — the id of the run that taught it (for the first link, only when the given
  teacher is itself a run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from workbench.config import ModelSpec, RunConfig, TeacherSpec, validate_config
from workbench.data import Dataset
from workbench.distill import parse_params
from workbench.distill.chains import CHAIN_METHODS
from workbench.runs import RunStore, RunStoreError
from workbench.runtime import CancelToken, Tracker
from workbench.train.engine import Trainer
from workbench.train.events import Subscriber
from workbench.train.results import TrainResult
from workbench.train.setup import new_run_id


class ChainError(ValueError):
    """A configuration cannot be trained as a chain; the message names the field."""


def chain_plan(config: RunConfig) -> list[tuple[ModelSpec, str]]:
    """The links of the chain ``config`` describes: ``(model, role)`` in training order.

    ``ban``: ``generations`` times the config's model (roles ``gen1`` ...). ``takd``: each
    assistant, then the config's model (roles ``assistant1`` ..., ``student``).

    Raises:
        ChainError: the config has no chain method, or more than one.
    """
    names = [m.name for m in config.distill.methods]
    chain = [m for m in config.distill.methods if m.name in CHAIN_METHODS]
    if len(chain) != 1:
        raise ChainError(
            f"distill.methods: a chain needs exactly one of {', '.join(map(repr, CHAIN_METHODS))}; "
            f"got {names}"
        )
    spec = chain[0]
    params: Any = parse_params(spec.name, spec.params)
    if spec.name == "ban":
        return [(config.model, f"gen{k}") for k in range(1, params.generations + 1)]
    links = [
        (ModelSpec(name=a.model, kwargs=dict(a.kwargs)), f"assistant{k}")
        for k, a in enumerate(params.assistants, 1)
    ]
    return links + [(config.model, "student")]


def is_chain(config: RunConfig) -> bool:
    """Whether ``config`` trains a chain of linked runs (one of its methods is a chain method)."""
    return any(m.name in CHAIN_METHODS for m in config.distill.methods)


def chain_length(config: RunConfig) -> int:
    """How many runs training ``config`` produces: the chain's links, or 1 for a plain run."""
    return len(chain_plan(config)) if is_chain(config) else 1


def run_chain(
    config: RunConfig,
    store: RunStore,
    subscribers: Iterable[Subscriber] = (),
    *,
    dataset: Dataset | None = None,
    teachers: list[nn.Module] | None = None,
    run_id: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> list[TrainResult]:
    """Train the chain of linked runs that ``config``'s ``ban`` or ``takd`` method describes.

    Args:
        config: a ``distill`` run config with exactly one chain method and the first teacher(s).
            Every link uses its data, methods, optimiser, schedule and budget; ``ban`` links
            use the config's model and seeds ``seed``, ``seed + 1``, ...; ``takd`` links use
            each assistant's model, then the config's model, all with ``seed``.
        store: the run store the runs are written to (required: links refer to stored runs).
        subscribers: event subscribers, attached to every run of the chain.
        dataset: an already loaded dataset to reuse for every link (else each run loads it).
        teachers: teacher modules for the first link (else built from ``config.teachers``).
        run_id: the id of the first link, which is also the chain's id (default: a new one).
        progress: ``progress(done, total, message)`` over the whole chain, each link an equal part.
        cancel: a :class:`CancelToken`; a stop during a link's set-up raises
            :class:`workbench.runtime.Cancelled`, during its training leaves that link
            ``stopped``; either way no further link is trained.

    Returns:
        The :class:`TrainResult` of every link trained, in order (the last is the final student;
        fewer than the plan when a link did not complete).

    Raises:
        ChainError: no store, or not exactly one chain method in the config.
    """
    if store is None:
        raise ChainError("store: a chain writes linked runs, so a RunStore is required")
    plan = chain_plan(config)
    method = next(m.name for m in config.distill.methods if m.name in CHAIN_METHODS)
    base_name = config.name or f"{method}-{config.model.name}"
    chain_id = run_id or new_run_id(base_name)
    per_link = 1000
    tracker = Tracker(progress, None, total=per_link * len(plan), label=method)
    specs = list(config.teachers)
    previous = _teacher_run(specs, store)
    results: list[TrainResult] = []
    subs = list(subscribers)
    for step, (model, role) in enumerate(plan):
        link_config = _link_config(config, step, model, role, specs, chain_id, previous, base_name)
        link_progress = None
        if progress is not None:
            link_progress = tracker.part(
                step * per_link, (step + 1) * per_link, f"{role} ({step + 1}/{len(plan)})"
            )
        trainer = Trainer(
            link_config,
            store=store,
            subscribers=subs,
            progress=link_progress,
            cancel=cancel,
            dataset=dataset,
            teachers=teachers if step == 0 else None,
            run_id=chain_id if step == 0 else None,
        )
        result = trainer.run()
        results.append(result)
        if result.status != "completed":
            break  # a stopped link teaches no further link
        previous = result.run_id
        specs = [TeacherSpec(source=f"run:{result.run_id}", checkpoint="final")]
    ids = [r.run_id for r in results if r.run_id is not None]
    for r in results:
        r.link_ids = list(ids)
    return results


def _teacher_run(specs: list[TeacherSpec], store: RunStore) -> str | None:
    """The id of the run that teaches the first link, when its one teacher is a run of the store
    (a unique prefix names it too); else None."""
    if len(specs) != 1 or not specs[0].source.startswith("run:"):
        return None
    named = specs[0].source.split(":", 1)[1]
    try:
        return store.load(named).id
    except RunStoreError:
        return named  # the first link reports the missing teacher run itself


def _link_config(
    config: RunConfig,
    step: int,
    model: ModelSpec,
    role: str,
    specs: list[TeacherSpec],
    chain_id: str,
    previous: str | None,
    base_name: str,
) -> RunConfig:
    """The config of link ``step`` (``role``, training ``model``, taught by ``specs``): the chain's
    config with the link's name, teachers and links; ``ban`` links take seed ``seed + step``."""
    links = {**config.links, "chain": chain_id, "chain_step": str(step), "chain_role": role}
    if previous is not None:
        links["teacher_run"] = previous
    data = config.model_dump(mode="json")
    is_ban = any(m.name == "ban" for m in config.distill.methods)
    data.update(
        name=f"{base_name} {role}",
        model=model.model_dump(mode="json"),
        teachers=[t.model_dump(mode="json") for t in specs],
        links=links,
        seed=config.seed + step if is_ban else config.seed,
    )
    return validate_config(data)
