"""The Leaderboard page's Streamlit parts: the cached list of methods that fit a pair, and links
to Compare. The experiment and its rows are the library's (:mod:`workbench.experiments.leaderboard`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from app.lib.bindings import prepared
from app.lib.state import carry_params
from workbench.experiments import RunGroup
from workbench.experiments import leaderboard as board


@st.cache_data(show_spinner=False, max_entries=64)
def fitting_methods(dataset: str, student: str, teacher: str) -> list[str]:
    """:func:`workbench.experiments.leaderboard.fitting_methods`, cached per pair."""
    return board.fitting_methods(dataset, student, teacher)


def compare_link(groups: Sequence[RunGroup], metric: str) -> str:
    """A relative URL of the Compare page showing ``groups``' runs on ``metric`` (workspace and a
    prepared link's hide/lock kept)."""
    ids = [r.id for g in groups for r in g.runs]
    return "compare?" + urlencode(carry_params(**prepared(), runs=",".join(dict.fromkeys(ids)), metric=metric))


def leaderboard_rows(groups: Sequence[RunGroup], metric: str = "test_acc", which: str = "last") -> list[dict[str, Any]]:
    """The leaderboard's rows, each linking to Compare."""
    return board.leaderboard_rows(groups, metric, which, link=compare_link)


__all__ = ["compare_link", "fitting_methods", "leaderboard_rows"]
