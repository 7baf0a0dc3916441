"""What a rule hands back: :class:`Finding` (one rule that fired, with its :class:`Experiment`),
the experiment's config overrides (:func:`apply_overrides`) and the doctor's one-line input error
:class:`DoctorError`.

This is the bottom of the doctor package: the thresholds, the rules, the report and the evidence
collectors all import it, and it imports none of them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.analysis._common import AnalysisError
from workbench.analysis._result import AnalysisResult

__all__ = ["DoctorError", "Experiment", "Finding", "apply_overrides"]


class DoctorError(AnalysisError):
    """A doctor input is wrong; the message is one line naming the argument and what was expected."""


@dataclass
class Experiment(AnalysisResult):
    """The next experiment behind a finding, structured so a face can run it.

    ``overrides``: config paths to new values, e.g. ``{"distill.methods[0].params.temperature": 4.0,
    "distill.ce_weight": 0.1}`` (paths as in :func:`apply_overrides`; a value ``None`` unsets an
    optional field). ``text``: the experiment in one sentence. ``metric``: the evidence name that
    should move (``student_acc``, ``gap``, ``teacher_soft_entropy``, ...), ``goal``: ``"up"`` or
    ``"down"`` — what :func:`workbench.diagnosis.verify` checks.
    """

    overrides: dict[str, Any]
    text: str
    metric: str = "student_acc"
    goal: str = "up"
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def apply(self, config: Any) -> dict[str, Any]:
        """A copy of ``config`` (a run config or its mapping) with the overrides applied, as a mapping."""
        if hasattr(config, "model_dump"):
            data = config.model_dump(mode="json")
        else:
            data = copy.deepcopy(dict(config))
        return apply_overrides(data, self.overrides)


_INDEX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


def _steps(path: str) -> list[str | int]:
    """``"a.b[0].c"`` as ``["a", "b", 0, "c"]``."""
    steps: list[str | int] = []
    for part in str(path).split("."):
        m = _INDEX.match(part)
        if not m:
            raise DoctorError(f"overrides: {path!r} is not a config path like 'distill.methods[0].weight'")
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return steps


def _descend(node: Any, step: str | int, nxt: str | int, path: str) -> Any:
    """The child of ``node`` at ``step`` (creating a missing section when the next step is a key)."""
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            raise DoctorError(f"overrides: {path!r}: no item {step} there")
        return node[step]
    if not isinstance(node, dict):
        raise DoctorError(f"overrides: {path!r}: {step!r} is not inside a section")
    if isinstance(nxt, int):
        child = node.get(step)
        if isinstance(child, str) and step == "methods":  # a method expression: expand it first
            from workbench.config import parse_method_expression

            child = node[step] = parse_method_expression(child)
        if not isinstance(child, list):
            raise DoctorError(f"overrides: {path!r}: {step!r} is not a list")
        return child
    child = node.setdefault(step, {})
    return {} if child is None else child


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``{"a.b[0].c": value}`` overrides to a nested mapping, in place; returns ``data``.

    A path is dot-separated keys, each optionally followed by list indices ``[i]``. Missing
    mappings on the way are created; an index must exist. ``distill.methods`` also takes a method
    expression such as ``"0.9*kd + at"`` (validated later with the config).
    """
    for path, value in overrides.items():
        steps = _steps(path)
        node: Any = data
        for i, step in enumerate(steps[:-1]):
            node = _descend(node, step, steps[i + 1], path)
        last = steps[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise DoctorError(f"overrides: {path!r}: no item {last} there")
        elif not isinstance(node, dict):
            raise DoctorError(f"overrides: {path!r}: {last!r} is not inside a section")
        node[last] = copy.deepcopy(value)
    return data


@dataclass
class Finding(AnalysisResult):
    """One diagnosis.

    ``rule``: the rule that fired (a key of :data:`~workbench.analysis.doctor.rules.RULES`);
    ``title``: one line for a list; ``severity`` in ``[0.5, 1]`` (0.5 exactly at the threshold,
    growing towards 1 the further the evidence lies beyond it); ``evidence``: the numbers the rule
    looked at, by name; ``explanation``: what the numbers mean, in plain language; ``suggestion``:
    the next experiment to run; ``view``: the :mod:`workbench.viz` function that shows the
    evidence; ``result``: the key of :attr:`DoctorReport.results` holding that view's input;
    ``params``: the thresholds the rule compared the evidence with, by name; ``level``:
    ``"warning"`` (a fault) or ``"note"`` (an observation that accompanies one); ``experiment``: the
    next experiment as config overrides (:class:`Experiment`), or ``None``.
    """

    rule: str
    title: str
    severity: float
    evidence: dict[str, Any]
    explanation: str
    suggestion: str
    view: str
    result: str
    params: dict[str, Any] = field(default_factory=dict)
    level: str = "warning"
    experiment: Experiment | None = None
    class_names: list[str] | None = None
