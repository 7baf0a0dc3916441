"""The frame of every page and what it draws besides widgets: one-line errors, figures, progress bars
and links to other pages.

    with layout.page("Feature similarity", "Do the student's layers ..."):   # any exception -> one line
        ...
        layout.show_figure(cka_heatmap(result), key="cka")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import streamlit as st

from app.lib.state import carry_params, pump
from workbench.errors import one_line

APP_DIR = Path(__file__).resolve().parent.parent


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
    """The frame of every page: the title and caption, the job queue pumped, and the body guarded by
    :func:`guard` so any exception shows as one line."""
    st.title(title)
    if caption:
        st.caption(caption)
    with guard("job queue"):
        pump()
    with guard():
        yield


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
    """A link to another page (``"views/<name>.py"``) opening it with ``params`` and the workspace in
    the URL; a page missing from this installation shows nothing."""
    where = container if container is not None else st
    if (APP_DIR / page_file).is_file():
        where.page_link(page_file, label=label, icon=icon, query_params=carry_params(**(params or {})))
