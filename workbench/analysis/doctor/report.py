"""What the doctor hands back: :class:`DoctorReport` (ranked findings, the evidence behind them,
the analysis results the views draw).

It derives from :class:`~workbench.analysis._result.AnalysisResult`; its ``to_dict()`` is
JSON-ready. The findings arrive ranked by :func:`workbench.analysis.doctor.rules.rank_findings`
(warnings before notes, then decreasing severity, ties in the order of the rule registry).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from workbench.analysis._result import AnalysisResult, plain
from workbench.analysis.doctor.findings import Finding
from workbench.analysis.doctor.rules import RULES
from workbench.analysis.doctor.thresholds import DoctorThresholds

__all__ = ["DoctorReport"]


@dataclass
class DoctorReport(AnalysisResult):
    """Ranked findings with the evidence behind them.

    ``findings``: the rules that fired, warnings first, then by severity. ``evidence``: every
    measurement by name (config, history and analyses; see :mod:`~workbench.analysis.doctor.collectors`).
    ``skipped``: rules that could not be checked, with the evidence they lacked. ``thresholds``:
    the :class:`~workbench.analysis.doctor.thresholds.DoctorThresholds` applied. ``meta``: what was
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
