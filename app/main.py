"""Entry script of the Streamlit app: thread budget, page registry, navigation.

Start it with ``workbench app`` (or ``streamlit run app/main.py``). The run store is the folder
named by ``$WORKBENCH_RUNS`` (default ``./runs``); ``$WORKBENCH_MAX_JOBS`` bounds the training jobs
that run at once; ``$WORKBENCH_APP_URL`` (optional) is the app's address as the class reaches it (the
full "Copy link for the class"). Every page is a short script under ``app/views/`` that reads its state
through :mod:`app.lib`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The thread budget must be in place before torch is imported: one server process serves every
# session, and training runs in separate worker processes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("WORKBENCH_APP_THREADS", "2"))
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the project
    sys.path.insert(0, str(ROOT))

from app.preload import preload  # noqa: E402

preload()  # the first sessions arrive together: one thread imports the large packages first

import streamlit as st  # noqa: E402

from app.lib import layout, state  # noqa: E402

PAGES_DIR = Path(__file__).resolve().parent / "views"
FAVICON = ROOT / "assets" / "favicon.png"

#: (file, title, icon, url path) of every page, in menu order; the first one is the default page,
#: served at ``/`` and at its url path
PAGES: list[tuple[str, str, str, str]] = [
    ("home.py", "Home / New run", ":material/home:", "home"),
    ("training.py", "Training", ":material/monitoring:", "training"),
    ("experiments.py", "Experiments", ":material/grid_view:", "experiments"),
    ("data.py", "Data and teachers", ":material/dataset:", "data"),
    ("cams.py", "Class activation maps", ":material/visibility:", "cams"),
    ("similarity.py", "Feature similarity", ":material/grid_on:", "similarity"),
    ("landscape.py", "Loss landscape", ":material/terrain:", "landscape"),
    ("agreement.py", "Agreement", ":material/handshake:", "agreement"),
    ("compare.py", "Compare runs", ":material/compare_arrows:", "compare"),
    ("leaderboard.py", "Methods leaderboard", ":material/leaderboard:", "leaderboard"),
    ("doctor.py", "Student doctor", ":material/stethoscope:", "doctor"),
    ("classroom.py", "Class overview", ":material/groups:", "classroom"),
]

SECTIONS = {
    "Train": ("home", "training", "experiments", "data"),
    "Look inside": ("cams", "similarity", "landscape", "agreement"),
    "Decide": ("compare", "leaderboard", "doctor"),
    "Teach": ("classroom",),
}


def _missing(title: str):
    """A stand-in page for a page file that is not there (the rest of the app keeps working)."""

    def page() -> None:
        st.title(title)
        st.info("This page is not available in this installation.")

    return page


def build_pages(teach: bool = True) -> dict[str, list[st.Page]]:
    """The ``st.Page`` objects of :data:`PAGES`, grouped by :data:`SECTIONS` (the Teach section's pages
    hidden from the menu unless ``teach``: a student in class mode; opened by URL they refuse).

    Streamlit serves the default page at ``/`` only, whatever its url path; the same script is also
    registered, hidden from the menu, at the default page's url path, so ``/home`` opens Home too (a
    link to the page's file still leads to ``/``, the first page registered with it).
    """
    made: dict[str, st.Page] = {}
    for i, (file, title, icon, url) in enumerate(PAGES):
        path = PAGES_DIR / file
        target = path if path.is_file() else _missing(title)
        hidden = not teach and url in SECTIONS["Teach"]
        made[url] = st.Page(target, title=title, icon=icon, url_path="" if i == 0 else url, default=i == 0,
                            visibility="hidden" if hidden else "visible")
    sections = {section: [made[u] for u in urls] for section, urls in SECTIONS.items()}
    file, title, icon, url = PAGES[0]
    if (PAGES_DIR / file).is_file():
        alias = st.Page(PAGES_DIR / file, title=title, icon=icon, url_path=url, visibility="hidden")
        next(iter(sections.values())).append(alias)
    return sections


def main() -> None:
    """Configure the page, the thread budget and the sidebar, then run the selected page."""
    # a file shipped with the project: a class network may have no internet (an icon name is fetched from a CDN)
    st.set_page_config(page_title="Distillation Workbench", page_icon=str(FAVICON), layout="wide")
    state.configure_threads()
    acc = state.access()
    page = st.navigation(build_pages(teach=acc.instructor or not acc.class_mode))
    state.sidebar()
    st.session_state[layout.PAGE_PATH] = page.url_path
    page.run()


if __name__ == "__main__":  # Streamlit runs the entry script as __main__; importing it builds nothing
    main()
