"""The Experiments page's Streamlit parts: the cached time estimate and an experiment's live trial
table. Reading a grid from text, its size and its trials' rows are the library's
(:mod:`workbench.sweep.grid`), shared with the ``ExperimentPanel``."""

from __future__ import annotations

import streamlit as st

from app.lib import layout
from app.lib.state import get_queue, get_store, pump, store_root
from workbench.sweep import SweepSpec, TimeEstimate, estimate_seconds, stop_experiment
from workbench.sweep.grid import trial_rows

#: the refresh of an experiment's trials while any is queued or running (seconds)
REFRESH_S = 2.0


@st.cache_data(ttl=60, show_spinner="Estimating…", max_entries=32)
def _estimate(root: str, spec_json: str, max_jobs: int) -> TimeEstimate:
    return estimate_seconds(SweepSpec.model_validate_json(spec_json), root, max_jobs=max_jobs)


def estimate(spec: SweepSpec) -> TimeEstimate:
    """How long ``spec``'s runs take with the queue's ``max_jobs`` at once
    (:func:`workbench.sweep.estimate_seconds`, from the store's finished runs), cached a minute.

    Raises:
        SweepError: a trial's config is invalid (one line naming the trial and the field).
    """
    return _estimate(str(store_root()), spec.model_dump_json(), get_queue().max_jobs)


def show_experiment(name: str) -> None:
    """Experiment ``name``'s trials and their states (refreshed while any is queued or running), a
    Stop button and a link to Compare with its groups."""
    from workbench.sweep import experiment_status

    status = experiment_status(get_store(), name)

    @st.fragment(run_every=REFRESH_S if status.active else None)
    def trials() -> None:
        with layout.guard():
            pump()
            now = experiment_status(get_store(), name)
            if status.active and not now.active:
                st.rerun()  # every trial ended: stop refreshing
            st.markdown(f"**{name}** · {now.summary()}")
            st.dataframe(trial_rows(now), hide_index=True, width="stretch")
            left, right = st.columns(2)
            if now.active and left.button("Stop the experiment", key=f"stop_exp:{name}"):
                stopped = stop_experiment(get_queue(), name)
                st.toast(f"Asked {len(stopped)} trial(s) of {name} to stop; finished runs stay.")
            if now.run_ids("completed"):
                layout.page_link(
                    "views/compare.py", "Compare its groups", icon=":material/compare_arrows:",
                    params={"experiment": name}, container=right,
                )

    trials()


__all__ = ["estimate", "show_experiment"]
