"""The frame of every page and what it draws besides widgets: one-line errors, figures, progress bars,
links to other pages (carrying the workspace and a prepared link's ``hide``/``lock``) and the sidebar's
"Copy link for the class" (a full link where ``$WORKBENCH_APP_URL`` names the app's address).

    with layout.page("Feature similarity", "Do the student's layers ..."):   # any exception -> one line
        ...
        layout.show_figure(cka_heatmap(result), key="cka")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from app.lib.bindings import PREPARED, bound_params, prepared
from app.lib.state import KEY_PARAM, TOKEN_PARAM, WORKSPACE_PARAM, access, carry_params, pump
from workbench.errors import one_line

APP_DIR = Path(__file__).resolve().parent.parent
#: session key of the url path of the page being run (``app/main.py`` sets it; ``""`` is Home at ``/``)
PAGE_PATH = "_page_path"


def show_error(exc: BaseException, *, prefix: str | None = None, container: Any = None) -> None:
    """Show ``exc`` as one ``st.error`` line (:func:`workbench.errors.one_line`), never a traceback."""
    where = container if container is not None else st
    where.error(f"{prefix}: {one_line(exc)}" if prefix else one_line(exc), icon=":material/error:")


@contextlib.contextmanager
def guard(prefix: str | None = None) -> Iterator[None]:
    """Run a block; an exception becomes one :func:`show_error` line and the page goes on.
    Streamlit's own control flow (``st.stop``, ``st.rerun``, page switches) passes through."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure is shown as one line
        show_error(exc, prefix=prefix)


@contextlib.contextmanager
def page(title: str, caption: str | None = None) -> Iterator[None]:
    """The frame of every page: the title and caption, the job queue pumped, the body guarded by
    :func:`guard` so any exception shows as one line, then the sidebar's :func:`class_link`."""
    st.title(title)
    if caption:
        st.caption(caption)
    prepared()  # a prepared link's hide/lock, kept across pages
    bound_params().clear()
    if (refused := access()).sees_nothing:  # class mode, or a malformed name: this session sees nothing
        st.warning(refused.error, icon=":material/lock:")
    with guard("job queue"):
        pump()
    with guard():
        try:
            yield
        finally:  # also when the page stopped early (st.stop)
            with guard("class link"):
                class_link()


def class_link_params(hide: Sequence[str], lock: Sequence[str]) -> dict[str, str]:
    """The query of a link for the class: the page's state in the URL without the workspace, its key and
    the instructor token (each student keeps their own), ``hide`` and ``lock`` the given parameter names, after the session's entries
    for controls this page did not bind (a class session stays simplified on every page)."""
    private = (WORKSPACE_PARAM, KEY_PARAM, TOKEN_PARAM, *PREPARED)  # never a student's key or the token
    out = {k: st.query_params[k] for k in st.query_params if k not in private}
    for name, chosen in zip(PREPARED, (hide, lock), strict=True):
        kept = [p for p in prepared().get(name, "").split(",") if p and p not in bound_params()]
        if kept or chosen:
            out[name] = ",".join(dict.fromkeys([*kept, *chosen]))
    return out


def class_link() -> None:
    """The sidebar's "Copy link for the class": which of the controls this page bound to hide and to lock,
    then the link opening the page as it is now with them, after the app's address, and in full where
    ``$WORKBENCH_APP_URL`` names that address (the server does not know the one the class uses)."""
    bound = bound_params()
    acc = access()
    if not bound or (acc.class_mode and not acc.instructor):  # in a class, the instructor prepares links
        return
    with st.sidebar.expander("Copy link for the class", icon=":material/share:"):
        with st.form("class_link", border=False):
            chosen = {}
            tips = ("Not drawn; the page uses the link's value.", "Drawn, fixed to the link's value.")
            for name, tip in zip(PREPARED, tips, strict=True):
                given = prepared().get(name, "")  # a new prepared link starts the form again, from it
                key = f"_class_{name}:{st.session_state.get(PAGE_PATH, '')}:{given}"
                current = st.session_state.get(key, given.split(","))
                st.session_state[key] = [p for p in current if p in bound]
                chosen[name] = st.multiselect(
                    name.capitalize(), list(bound), key=key, format_func=lambda p: f"{bound[p]} ({p})", help=tip
                )
            st.form_submit_button("Build the link", key="class_link_build")
        query = urlencode(class_link_params(chosen["hide"], chosen["lock"]), safe=",:*")
        relative = f"{st.session_state.get(PAGE_PATH, '')}?{query}"
        st.code(relative, language=None, wrap_lines=True)
        if base := os.environ.get("WORKBENCH_APP_URL", "").strip():
            st.code(f"{base.rstrip('/')}/{relative}", language=None, wrap_lines=True)
        st.caption("Hiding and locking simplify the page; they do not secure it: anyone can edit a link.")


def show_figure(fig: Any, *, key: str | None = None) -> None:
    """Draw a plotly figure of :mod:`workbench.viz` at the page's width."""
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def progress_bar(label: str) -> Callable[[int, int, str], None]:
    """A ``progress(done, total, message)`` callable (:mod:`workbench.runtime`) drawing one
    ``st.progress`` bar, which disappears once the work is done."""
    bar = st.progress(0.0, text=label)

    def report(done: int, total: int, message: str = "") -> None:
        frac = min(max(done / max(total, 1), 0.0), 1.0)
        if frac >= 1.0:
            bar.empty()
            return
        bar.progress(frac, text=f"{label}: {message}" if message and message != label else label)

    return report


def page_link(
    page_file: str,
    label: str,
    *,
    icon: str | None = None,
    params: dict[str, Any] | None = None,
    container: Any = None,
) -> None:
    """A link to another page (``"views/<name>.py"``) opening it with ``params``, the workspace and a
    prepared link's ``hide``/``lock`` in the URL; a page missing from this installation shows nothing."""
    where = container if container is not None else st
    if (APP_DIR / page_file).is_file():
        query = carry_params(**{**prepared(), **(params or {})})
        where.page_link(page_file, label=label, icon=icon, query_params=query)


def notes_editor(target: Any, label: str) -> None:
    """The tags and note of a run or an experiment (:func:`workbench.runs.annotations.annotate`; the
    CLI's ``runs tag``/``note`` and ``experiments tag``/``note``): two inputs and a Save button; saved,
    the page reruns and a toast says what was written."""
    import hashlib
    import json

    from workbench.runs import annotate, read_annotations
    from workbench.runs.annotations import MAX_NOTE_CHARS

    if saved := st.session_state.pop("_notes_saved", None):  # said after the rerun that shows them
        st.toast(saved)
    notes = read_annotations(target)
    if notes.damage:
        st.warning(f"{label}: {notes.damage}; saving replaces it")
    # the inputs' keys change with the file, so they show what another face saved meanwhile
    stamp = hashlib.sha1(json.dumps(notes.to_dict()).encode()).hexdigest()[:8]
    left, right = st.columns([1, 2])
    tags_text = left.text_input(
        "Tags", ", ".join(notes.tags), key=f"tags:{label}:{stamp}",
        help="Short words (letters, digits, - _ . :) separated by commas or spaces, e.g. baseline, lr:0.1; "
        "search them with tag:x.",
    )
    note_text = right.text_area("Note", notes.note, key=f"note:{label}:{stamp}", max_chars=MAX_NOTE_CHARS)
    if left.button("Save tags and note", key=f"save_notes:{label}"):
        with guard():
            written = annotate(target, tags=tags_text, note=note_text)
            st.session_state["_notes_saved"] = (
                f"Saved {label}: {len(written.tags)} tag(s), note of {len(written.note):,} characters."
            )
            st.rerun()
