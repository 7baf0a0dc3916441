"""What the doctor hands back: :class:`Finding` (one rule that fired) and :class:`DoctorReport`
(ranked findings, the evidence behind every rule, the analysis results the views draw).

Both derive from :class:`~workbench.analysis._result.AnalysisResult`; their ``to_dict()`` is
JSON-ready. Ranking (:func:`rank_findings`) is by decreasing severity, ties in the order of the
rule registry :data:`workbench.analysis.doctor.rules.RULES`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.analysis._common import AnalysisError
from workbench.analysis._result import AnalysisResult, plain

if TYPE_CHECKING:
    from workbench.analysis.doctor.rules import DoctorThresholds

__all__ = ["DoctorError", "DoctorReport", "Finding", "rank_findings"]


class DoctorError(AnalysisError):
    """A doctor input is wrong; the message is one line naming the argument and what was expected."""


@dataclass
class Finding(AnalysisResult):
    """One diagnosis.

    ``rule``: the rule that fired (a key of :data:`~workbench.analysis.doctor.rules.RULES`);
    ``title``: one line for a list; ``severity`` in ``[0.5, 1]`` (0.5 exactly at the threshold,
    growing towards 1 the further the evidence lies beyond it); ``evidence``: the numbers the rule
    looked at, by name; ``explanation``: what the numbers mean, in plain language; ``suggestion``:
    the next experiment to run; ``view``: the :mod:`workbench.viz` function that shows the
    evidence; ``result``: the key of :attr:`DoctorReport.results` holding that view's input;
    ``params``: the thresholds the rule compared the evidence with, by name.
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


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Findings by decreasing severity; equal severities keep the order of the rule registry."""
    from workbench.analysis.doctor.rules import RULES

    order = {name: i for i, name in enumerate(RULES)}
    return sorted(findings, key=lambda f: (-float(f.severity), order.get(f.rule, len(order))))


@dataclass
class DoctorReport(AnalysisResult):
    """Ranked findings with the evidence behind every rule.

    ``findings``: the rules that fired, most severe first. ``evidence``: per rule, the numbers it
    was given (also for rules that did not fire). ``skipped``: rules that could not be checked,
    with the reason. ``thresholds``: the :class:`~workbench.analysis.doctor.rules.DoctorThresholds`
    applied. ``meta``: what was diagnosed (models, dataset, samples, temperature, run id).
    ``results``: the analysis results the views take (``agreement``, ``softness``, ``cka``,
    ``cam``, ``landscapes``, ``hessian``, ``history``), by key. ``class_names``: the classes of
    the examined data. ``params``: the parameters of the examination (samples, temperature,
    layer pairs, seed, ...).
    """

    findings: list[Finding]
    evidence: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    thresholds: DoctorThresholds
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict, repr=False)
    class_names: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """True when no rule fired."""
        return not self.findings

    def passed(self) -> list[str]:
        """Rules that were checked and did not fire, in registry order."""
        from workbench.analysis.doctor.rules import RULES

        fired = {f.rule for f in self.findings}
        return [r for r in RULES if r in self.evidence and r not in fired and r not in self.skipped]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: meta, findings, evidence, passed and skipped rules, thresholds,
        class names and parameters (the analysis results with their arrays are left out; each has
        its own ``to_dict()``)."""
        return {
            "kind": type(self).__name__,
            "meta": plain(self.meta),
            "findings": [f.to_dict() for f in self.findings],
            "evidence": plain(self.evidence),
            "passed": self.passed(),
            "skipped": dict(self.skipped),
            "thresholds": plain(dataclasses.asdict(self.thresholds)),
            "class_names": plain(self.class_names),
            "params": plain(self.params),
        }

    def to_text(self) -> str:
        """A plain-text report for a terminal: what was examined, each finding with evidence, explanation,
        suggestion and view, then the rules that passed and those that could not be checked."""
        lines = []
        who = ", ".join(
            f"{k}={v}" for k, v in self.meta.items() if v is not None and not isinstance(v, (dict, list))
        )
        lines.append(f"Student doctor{': ' + who if who else ''}")
        if not self.findings:
            lines.append("No findings: every rule that could be checked passed.")
        for rank, f in enumerate(self.findings, start=1):
            lines.append("")
            lines.append(f"{rank}. [{f.severity:.2f}] {f.title}")
            ev = ", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items())
            lines.append(f"   evidence: {ev}")
            lines.append(f"   why: {f.explanation}")
            lines.append(f"   try: {f.suggestion}")
            lines.append(f"   view: {f.view}({f.result})")
        passed = self.passed()
        if passed:
            lines.append("")
            lines.append(f"Passed: {', '.join(passed)}")
        if self.skipped:
            lines.append("")
            lines.append("Not checked:")
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
