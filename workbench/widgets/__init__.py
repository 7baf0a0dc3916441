"""Jupyter panels over the library (ipywidgets 8 + plotly): train, run experiments, explore, diagnose,
compare, annotate.

Every panel has ``widget`` (display it, or the panel itself), ``figure`` (the plotly figure shown),
``controls`` with ``set(**values)`` / ``value(name)``, ``result`` and ``error`` (one line, never
raised from a callback). Panels over models also have ``from_run(run_or_id, ...)``. A panel
computes nothing itself: it calls :mod:`workbench.analysis`, :mod:`workbench.jobs`,
:mod:`workbench.train` and :mod:`workbench.runs`, and draws :mod:`workbench.viz` figures.
"""

from workbench.widgets.base import Panel, PanelError
from workbench.widgets.data import DataPanel
from workbench.widgets.experiments import ExperimentPanel
from workbench.widgets.explorers import (
    AGREEMENT_VIEWS,
    AgreementExplorer,
    CamExplorer,
    DarkKnowledge,
    LandscapeExplorer,
    SimilarityExplorer,
)
from workbench.widgets.runs import CompareRuns, DoctorPanel, RunNotes
from workbench.widgets.train import TrainPanel

__all__ = [
    "AGREEMENT_VIEWS",
    "AgreementExplorer",
    "CamExplorer",
    "CompareRuns",
    "DarkKnowledge",
    "DataPanel",
    "DoctorPanel",
    "ExperimentPanel",
    "LandscapeExplorer",
    "Panel",
    "PanelError",
    "RunNotes",
    "SimilarityExplorer",
    "TrainPanel",
]
