"""The next experiment behind a doctor finding, as a run config for the New-run form.

Each rule of the student doctor (``workbench.analysis.doctor``) suggests an experiment in words;
:func:`suggested_config` turns it into one concrete change of the diagnosed run's config, which the
Doctor page links to as a prefilled New run (``app.shared.new_run_params``).
"""

from __future__ import annotations

import copy
from typing import Any


def _scale_methods(cfg: dict[str, Any], factor: float) -> None:
    for m in cfg["distill"]["methods"]:
        if m["name"] != "none":
            m["weight"] = round(float(m.get("weight", 1.0)) * factor, 6)


def _scale_temperature(cfg: dict[str, Any], factor: float) -> None:
    from workbench.distill import method_schema

    for m in cfg["distill"]["methods"]:
        props = method_schema(m["name"]).get("properties", {})
        if "temperature" in props:
            current = float(m.get("params", {}).get("temperature", props["temperature"].get("default", 4.0)))
            m.setdefault("params", {})["temperature"] = round(min(max(current * factor, 0.5), 100.0), 4)


def _add_method(cfg: dict[str, Any], name: str) -> None:
    methods = cfg["distill"]["methods"]
    if all(m["name"] != name for m in methods):
        methods[:] = [m for m in methods if m["name"] != "none"] + [{"name": name, "weight": 1.0, "params": {}}]


def suggested_config(finding: Any, run: Any) -> dict[str, Any]:
    """The run's config changed the way the finding's suggestion says (one change per rule), as a
    mapping for the New-run form: weights and temperature for loss balance, softness, calibration,
    sharpness and dark knowledge; an attention or hint term for context reliance and representations;
    a larger student of the same family for a capacity gap."""
    cfg = copy.deepcopy(run.config.model_dump(mode="json"))
    cfg["kind"] = "distill"
    rule, title = finding.rule, finding.title.lower()
    if rule == "loss_balance":
        _scale_methods(cfg, 0.25 if "dominates" in title else 4.0)
    elif rule == "softness":
        _scale_temperature(cfg, 0.5 if "flatter" in title else 2.0)
    elif rule in ("calibration", "dark_knowledge"):
        _scale_temperature(cfg, 2.0)
    elif rule == "sharpness":
        _scale_temperature(cfg, 2.0)
        _scale_methods(cfg, 0.5)
    elif rule == "context_reliance":
        _add_method(cfg, "at")
    elif rule == "representation":
        _add_method(cfg, "fitnet")
    elif rule == "capacity_gap":
        from workbench.models import describe_models

        specs = describe_models()
        family = next((s.family for s in specs if s.name == cfg["model"]["name"]), None)
        same = [s.name for s in specs if s.family == family]
        i = same.index(cfg["model"]["name"]) if cfg["model"]["name"] in same else -1
        if 0 <= i < len(same) - 1:
            cfg["model"]["name"] = same[i + 1]
    if [m["name"] for m in cfg["distill"]["methods"]] == ["none"]:
        cfg["distill"]["methods"] = [{"name": "kd", "weight": 0.9, "params": {}}]
    cfg["name"] = f"{(run.status.get('name') or 'run')[:28]}-{rule}"[:40]
    return cfg


__all__ = ["suggested_config"]
