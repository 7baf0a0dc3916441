"""What the doctor hands back: :class:`Finding` (one rule that fired, with its
:class:`Experiment`) and :class:`DoctorReport` (ranked findings, the evidence behind them, the
analysis results the views draw).

All derive from :class:`~workbench.analysis._result.AnalysisResult`; their ``to_dict()`` is
JSON-ready. Ranking (:func:`rank_findings`) puts warnings before notes, then decreasing severity,
ties in the order of the rule registry :data:`workbench.analysis.doctor.rules.RULES`.
:func:`apply_overrides` applies an experiment's overrides to a run config mapping.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.analysis._common import AnalysisError
from workbench.analysis._result import AnalysisResult, plain

if TYPE_CHECKING:
    from workbench.analysis.doctor.rules import DoctorThresholds

__all__ = ["DoctorError", "DoctorReport", "Experiment", "Finding", "apply_overrides", "rank_findings"]


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


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``{"a.b[0].c": value}`` overrides to a nested mapping, in place; returns ``data``.

    A path is dot-separated keys, each optionally followed by list indices ``[i]``. Missing
    mappings on the way are created; an index must exist. ``distill.methods`` also takes a method
    expression such as ``"0.9*kd + at"`` (validated later with the config).
    """
    for path, value in overrides.items():
        node: Any = data
        steps: list[str | int] = []
        for part in str(path).split("."):
            m = _INDEX.match(part)
            if not m:
                raise DoctorError(
                    f"overrides: {path!r} is not a config path like 'distill.methods[0].weight'"
                )
            steps.append(m.group(1))
            steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
        for i, step in enumerate(steps[:-1]):
            nxt = steps[i + 1]
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise DoctorError(f"overrides: {path!r}: no item {step} there")
                node = node[step]
                continue
            if not isinstance(node, dict):
                raise DoctorError(f"overrides: {path!r}: {step!r} is not inside a section")
            if isinstance(nxt, int):
                child = node.get(step)
                if isinstance(child, str) and step == "methods":  # a method expression: expand it first
                    from workbench.config import parse_method_expression

                    child = node[step] = parse_method_expression(child)
                if not isinstance(child, list):
                    raise DoctorError(f"overrides: {path!r}: {step!r} is not a list")
                node = child
            else:
                node = node.setdefault(step, {})
                if node is None:
                    node = {}
        last = steps[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise DoctorError(f"overrides: {path!r}: no item {last} there")
            node[last] = copy.deepcopy(value)
        else:
            if not isinstance(node, dict):
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


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Warnings before notes, then decreasing severity; equal severities keep the order of the rule registry."""
    from workbench.analysis.doctor.rules import RULES

    order = {name: i for i, name in enumerate(RULES)}
    return sorted(
        findings,
        key=lambda f: (f.level != "warning", -float(f.severity), order.get(f.rule, len(order))),
    )


@dataclass
class DoctorReport(AnalysisResult):
    """Ranked findings with the evidence behind them.

    ``findings``: the rules that fired, warnings first, then by severity. ``evidence``: every
    measurement by name (config, history and analyses; see :mod:`~workbench.analysis.doctor.evidence`).
    ``skipped``: rules that could not be checked, with the evidence they lacked. ``thresholds``:
    the :class:`~workbench.analysis.doctor.rules.DoctorThresholds` applied. ``meta``: what was
    diagnosed (models, dataset, samples, run id). ``results``: the analysis results the views take
    (``agreement``, ``softness``, ``cka``, ``cam``, ``landscapes``, ``hessian``, ``history``), by
    key. ``class_names``: the classes of the examined data. ``params``: the parameters of the
    examination (samples, temperature, layer pairs, seed, ...).
    """

    findings: list[Finding]
    evidence: dict[str, Any]
    skipped: dict[str, str]
    thresholds: DoctorThresholds
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict, repr=False)
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[Finding]:
        """The warning-level findings (faults), most severe first."""
        return [f for f in self.findings if f.level == "warning"]

    @property
    def top(self) -> Finding | None:
        """The top finding (the most severe warning, else the first note), or ``None``."""
        return self.findings[0] if self.findings else None

    @property
    def healthy(self) -> bool:
        """True when no warning-level rule fired (notes may remain)."""
        return not self.warnings

    def passed(self) -> list[str]:
        """Rules that were checked and did not fire, in registry order."""
        from workbench.analysis.doctor.rules import RULES

        fired = {f.rule for f in self.findings}
        return [r for r in RULES if r not in fired and r not in self.skipped]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: meta, findings (with experiments), evidence, passed and skipped rules,
        thresholds, class names and parameters (the analysis results with their arrays are left
        out; each has its own ``to_dict()``)."""
        return {
            "kind": type(self).__name__,
            "meta": plain(self.meta),
            "healthy": self.healthy,
            "findings": [f.to_dict() for f in self.findings],
            "evidence": plain(self.evidence),
            "passed": self.passed(),
            "skipped": dict(self.skipped),
            "thresholds": plain(dataclasses.asdict(self.thresholds)),
            "class_names": plain(self.class_names),
            "params": plain(self.params),
        }

    def to_text(self) -> str:
        """A plain-text report for a terminal: what was examined, each finding with its numbers,
        explanation, next experiment (and its config overrides) and view, then the rules that passed
        and those that could not be checked, with the evidence they lacked."""
        lines = []
        who = ", ".join(
            f"{k}={v}" for k, v in self.meta.items() if v is not None and not isinstance(v, (dict, list))
        )
        lines.append(f"Student doctor{': ' + who if who else ''}")
        if self.healthy:
            lines.append("No warnings: every fault the doctor could check for is absent.")
        for rank, f in enumerate(self.findings, start=1):
            lines.append("")
            tag = "" if f.level == "warning" else " (note)"
            lines.append(f"{rank}. [{f.severity:.2f}] {f.title}{tag}")
            ev = ", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items())
            lines.append(f"   evidence: {ev}")
            lines.append(f"   why: {f.explanation}")
            lines.append(f"   try: {f.suggestion}")
            if f.experiment is not None and f.experiment.overrides:
                over = " ".join(f"{k}={_short(v)}" for k, v in f.experiment.overrides.items())
                lines.append(f"   overrides: {over}  (check: {f.experiment.metric} {f.experiment.goal})")
            lines.append(f"   view: {f.view}({f.result})")
        passed = self.passed()
        if passed:
            lines.append("")
            lines.append(f"Passed: {', '.join(passed)}")
        if self.skipped:
            lines.append("")
            lines.append("Not checked (evidence missing):")
            lines.extend(f"  {rule}: {reason}" for rule, reason in self.skipped.items())
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple)):
        items = [_short(v) for v in value[:6]]
        return "[" + ", ".join(items) + (", ...]" if len(value) > 6 else "]")
    if value is None:
        return "n/a"
    return str(value)
