"""Plotly figures of the analyses: one function per view, ``result -> go.Figure``.

Every view takes an analysis result (a dataclass of :mod:`workbench.analysis`, or a run's
metrics for the training views), reshapes and formats it, and returns a ``plotly.graph_objects.Figure``
styled by :mod:`workbench.viz.theme` (teacher blue, student orange, scratch green). No view
computes anything beyond formatting; every view accepts an optional ``title``.
"""

from __future__ import annotations

from workbench.viz.agreement import (
    confusion_matrices,
    disagreement_gallery,
    per_class_bars,
    rank_correlation_bars,
    reliability_diagrams,
    soft_label_plot,
)
from workbench.viz.cam import (
    cam_class_agreement,
    cam_grid,
    cross_faithfulness_heatmap,
    faithfulness_curves,
    localization_summary,
)
from workbench.viz.difficulty import difficulty_class_bars, difficulty_scatter
from workbench.viz.doctor import finding_figure, findings_bars, findings_table, softness_histogram
from workbench.viz.experiments import group_curves, leaderboard, parallel_coordinates, parameter_scatter
from workbench.viz.images import to_display_images
from workbench.viz.landscape import (
    interpolation_curves,
    landscape_comparison,
    landscape_contours,
    landscape_lines,
    landscape_surface,
)
from workbench.viz.similarity import cka_heatmap, cka_training_lines, embedding_scatter
from workbench.viz.soft_labels import soft_label_bars
from workbench.viz.theme import (
    SCRATCH_COLOR,
    STUDENT_COLOR,
    TEACHER_COLOR,
    VizError,
    class_color,
    role_color,
    style_figure,
)
from workbench.viz.training import compare_runs, loss_terms, metric_series, training_curves

__all__ = [
    "SCRATCH_COLOR",
    "STUDENT_COLOR",
    "TEACHER_COLOR",
    "VizError",
    "cam_class_agreement",
    "cam_grid",
    "cka_heatmap",
    "cka_training_lines",
    "class_color",
    "compare_runs",
    "confusion_matrices",
    "cross_faithfulness_heatmap",
    "difficulty_class_bars",
    "difficulty_scatter",
    "disagreement_gallery",
    "embedding_scatter",
    "faithfulness_curves",
    "finding_figure",
    "findings_bars",
    "findings_table",
    "group_curves",
    "interpolation_curves",
    "landscape_comparison",
    "landscape_contours",
    "landscape_lines",
    "landscape_surface",
    "leaderboard",
    "localization_summary",
    "loss_terms",
    "metric_series",
    "parallel_coordinates",
    "parameter_scatter",
    "per_class_bars",
    "rank_correlation_bars",
    "reliability_diagrams",
    "role_color",
    "soft_label_bars",
    "soft_label_plot",
    "softness_histogram",
    "style_figure",
    "to_display_images",
    "training_curves",
]
