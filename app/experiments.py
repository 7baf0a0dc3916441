"""The next experiment behind a doctor finding, as a run config for the New-run form.

Each finding of the student doctor (``workbench.analysis.doctor``) carries a structured
``Experiment`` (config overrides, one sentence, the metric it should move);
:func:`suggested_config` applies it to the diagnosed run's config, which the Doctor page links to
as a prefilled New run (:func:`workbench.run_form.new_run_params`). No rule is interpreted here.
"""

from __future__ import annotations

from typing import Any


def suggested_config(finding: Any, run: Any) -> dict[str, Any]:
    """The run's config with the finding's experiment applied, as a mapping for the New-run form
    (the run itself is untouched); a finding without an experiment gives the run's config.

    The mapping names no ``kind`` for a student (``RunConfig`` infers it from the methods); a teacher
    run keeps ``teacher``."""
    cfg = run.config.model_dump(mode="json")
    experiment = getattr(finding, "experiment", None)
    if experiment is not None and experiment.overrides:
        cfg = experiment.apply(cfg)
    if cfg.get("kind") != "teacher":
        cfg.pop("kind", None)
    cfg["name"] = f"{(run.status.get('name') or 'run')[:28]}-{finding.rule}"[:40]
    return cfg


def experiment_text(finding: Any) -> str | None:
    """The finding's experiment in one sentence, or ``None`` when it has none."""
    experiment = getattr(finding, "experiment", None)
    return None if experiment is None else experiment.text
