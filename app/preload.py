"""The app's libraries imported once, by one thread, before any page runs.

Streamlit runs every session's script in its own thread. When the first sessions arrive together, two
threads can import the same large package (pandas, plotly, torch) at once; where their imports cross,
Python hands one of them a partially initialised module ("partially initialized module 'pandas' has no
attribute 'Series'"). :func:`preload` imports them under one lock first, so a page's imports only find
finished modules.
"""

from __future__ import annotations

import importlib
import threading

#: imported in this order by the first session (each page's own imports then find them finished)
MODULES = (
    "numpy",
    "pandas",
    "pyarrow",
    "torch",
    "plotly.graph_objects",
    "plotly.express",
    "workbench.runs",
    "workbench.jobs",
    "workbench.viz",
    "workbench.analysis",
    "workbench.sweep",
    "workbench.experiments",
    "workbench.diagnosis",
    "workbench.run_form",
    "app.lib.state",
    "app.lib.layout",
    "app.lib.bindings",
    "app.lib.forms",
    "app.lib.live",
    "app.lib.loaders",
)
_LOCK = threading.Lock()
_done = False


def preload() -> None:
    """Import :data:`MODULES` once per process, one thread at a time (later calls return at once)."""
    global _done
    if _done:
        return
    with _LOCK:
        if not _done:
            for name in MODULES:
                importlib.import_module(name)
            _done = True
