"""Views of the student doctor's report: the ranked findings as a table and as bars, the softened-output
entropies, and the figure behind any single finding.

Inputs are :class:`workbench.analysis.doctor.DoctorReport` and its :class:`SoftnessResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from workbench.viz._layout import empty_figure, require
from workbench.viz.agreement import rank_correlation_bars, reliability_diagrams
from workbench.viz.cam import localization_summary
from workbench.viz.landscape import landscape_comparison
from workbench.viz.similarity import cka_heatmap
from workbench.viz.theme import (
    HIGHLIGHT_COLOR,
    STUDENT_COLOR,
    TEACHER_COLOR,
    VizError,
    style_figure,
)
from workbench.viz.training import loss_terms, training_curves

if TYPE_CHECKING:
    from workbench.analysis.doctor import DoctorReport, Finding, SoftnessResult

__all__ = ["finding_figure", "findings_bars", "findings_table", "softness_histogram"]


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if isinstance(value, float):
            text = f"{value:.4g}" if math.isfinite(value) else "n/a"
        elif isinstance(value, (list, tuple)):
            shown = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in value[:5]]
            text = "[" + ", ".join(shown) + (", …]" if len(value) > 5 else "]")
        else:
            text = "n/a" if value is None else str(value)
        parts.append(f"{key}: {text}")
    return "<br>".join(parts)


def _next_text(finding: Finding) -> str:
    """The suggestion, and the experiment's config overrides when the finding has one."""
    exp = getattr(finding, "experiment", None)
    if exp is None or not exp.overrides:
        return finding.suggestion
    over = "<br>".join(f"{k} = {v}" for k, v in exp.overrides.items())
    return f"{finding.suggestion}<br><i>{over}</i>"


def findings_table(report: DoctorReport, *, title: str | None = None) -> go.Figure:
    """The ranked findings as a table: rank, finding (notes marked), severity, evidence, next
    experiment (with its config overrides), view.

    Returns:
        One ``Table`` trace with a row per finding in rank order (a single row saying so when there
        are none).
    """
    require(report, ("findings", "skipped"), "report", "a DoctorReport")
    rows = report.findings
    if rows:
        cells = [
            [str(i) for i in range(1, len(rows) + 1)],
            [f.title + ("" if getattr(f, "level", "warning") == "warning" else " (note)") for f in rows],
            [f"{float(f.severity):.2f}" for f in rows],
            [_evidence_text(f.evidence) for f in rows],
            [_next_text(f) for f in rows],
            [f.view for f in rows],
        ]
    else:
        cells = [["–"], ["No findings: every fault the doctor could check for is absent."], [""], [""], [""], [""]]
    fig = go.Figure(
        go.Table(
            columnwidth=[0.3, 2.0, 0.6, 2.2, 3.0, 1.1],
            header={
                "values": ["#", "finding", "severity", "evidence", "try next", "view"],
                "fill_color": "#e8eef7",
                "align": "left",
                "font": {"size": 12},
            },
            cells={"values": cells, "align": "left", "font": {"size": 11}, "height": 28},
        )
    )
    return style_figure(
        fig,
        title if title is not None else "Student doctor: findings",
        height=max(260, 150 + 110 * max(len(rows), 1)),
    )


def findings_bars(report: DoctorReport, *, title: str | None = None) -> go.Figure:
    """Severity of each finding as horizontal bars, the most severe at the top.

    Returns:
        One ``Bar`` trace (``orientation="h"``) with ``x`` the severities and ``y`` the titles in
        rank order (a figure without traces when there are no findings).
    """
    require(report, ("findings",), "report", "a DoctorReport")
    head = title if title is not None else "Student doctor: severity of the findings"
    if not report.findings:
        return style_figure(empty_figure("no findings: every rule that could be checked passed"), head)
    sev = np.asarray([float(f.severity) for f in report.findings], dtype=np.float64)
    fig = go.Figure(
        go.Bar(
            x=sev,
            y=[f.title for f in report.findings],
            orientation="h",
            marker={
                "color": sev,
                "colorscale": [[0.0, STUDENT_COLOR], [1.0, HIGHLIGHT_COLOR]],
                "cmin": 0.5,
                "cmax": 1.0,
            },
            customdata=[f.view for f in report.findings],
            hovertemplate="%{y}<br>severity %{x:.2f}<br>view: %{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(range=[0, 1], title_text="severity (0.5 at the threshold)")
    return style_figure(fig, head, height=max(260, 120 + 45 * len(report.findings)))


def softness_histogram(result: SoftnessResult, *, bins: int = 30, title: str | None = None) -> go.Figure:
    """Distribution of the normalized entropies of both models' softened outputs ``softmax(z / T)``
    (0 = one-hot, 1 = uniform), with each mean as a dashed line.

    Returns:
        Two ``Histogram`` traces: ``teacher_entropy`` and ``student_entropy`` on shared bins over ``[0, 1]``.
    """
    require(result, ("teacher_entropy", "student_entropy", "temperature"), "result", "a SoftnessResult")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise VizError(f"bins: expected an integer >= 1, got {bins!r}")
    fig = go.Figure()
    for name, values, color in (
        ("teacher", result.teacher_entropy, TEACHER_COLOR),
        ("student", result.student_entropy, STUDENT_COLOR),
    ):
        v = np.asarray(values, dtype=np.float64)
        fig.add_trace(
            go.Histogram(
                x=v,
                name=name,
                marker_color=color,
                opacity=0.6,
                xbins={"start": 0.0, "end": 1.0, "size": 1.0 / bins},
            )
        )
        if v.size:
            fig.add_vline(
                x=float(v.mean()),
                line_dash="dash",
                line_color=color,
                annotation_text=f"{name} mean {float(v.mean()):.2f}",
            )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(
        title_text=f"normalized entropy of softmax(z / T), T = {float(result.temperature):g}", range=[0, 1]
    )
    fig.update_yaxes(title_text="samples")
    return style_figure(
        fig, title if title is not None else "Softness of the outputs at the distillation temperature"
    )


_VIEWS: dict[str, Callable[[Any], go.Figure]] = {
    "training_curves": training_curves,
    "loss_terms": loss_terms,
    "softness_histogram": softness_histogram,
    "reliability_diagrams": reliability_diagrams,
    "localization_summary": localization_summary,
    "cka_heatmap": cka_heatmap,
    "landscape_comparison": landscape_comparison,
    "rank_correlation_bars": rank_correlation_bars,
}


def finding_figure(report: DoctorReport, finding: Finding | int) -> go.Figure:
    """The figure that shows one finding's evidence: its ``view`` applied to ``report.results[finding.result]``.

    Args:
        report: the :class:`DoctorReport`.
        finding: a finding of the report, or its position in ``report.findings`` (0 = most severe).

    Returns:
        The view's figure, titled with the finding's title.
    """
    require(report, ("findings", "results"), "report", "a DoctorReport")
    if isinstance(finding, int) and not isinstance(finding, bool):
        if not 0 <= finding < len(report.findings):
            raise VizError(f"finding: expected a position in [0, {len(report.findings)}), got {finding}")
        finding = report.findings[finding]
    require(finding, ("view", "result", "title"), "finding", "a Finding")
    view = _VIEWS.get(finding.view)
    if view is None:
        raise VizError(f"finding: unknown view {finding.view!r}; known: {', '.join(_VIEWS)}")
    if finding.result not in report.results:
        raise VizError(
            f"finding: the report holds no {finding.result!r} result; have: {', '.join(report.results)}"
        )
    fig = view(report.results[finding.result])
    fig.update_layout(title={"text": finding.title})
    return fig
