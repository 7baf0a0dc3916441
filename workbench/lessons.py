"""Small helpers the lesson notebooks share: fast mode, exercise checks, links into the app.

``WORKBENCH_FAST=1`` (set by the test suite) shrinks epochs and sample counts so every lesson runs
in seconds; a person running a lesson gets the full sizes. Exercise check cells call
:func:`check`, which prints a clear right/wrong line and returns whether the answer was right (and
raises :class:`WrongAnswer` when ``strict``, which is how the suite makes a wrong reference answer
fail). A lesson ends with :func:`app_link_markdown`: a link that opens the app on the run it
trained, and the command that serves the lesson's run store (the app opens the runs of the store it
serves, so the store must be the same).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from IPython.display import Markdown

    from workbench.runs import Run, RunStore

T = TypeVar("T")


class WrongAnswer(AssertionError):
    """An exercise's check failed (raised by :func:`check` with ``strict=True``)."""


def fast() -> bool:
    """Whether lessons should run at their small CI size (``WORKBENCH_FAST=1``)."""
    return os.environ.get("WORKBENCH_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def size(full: T, quick: T) -> T:
    """``quick`` under ``WORKBENCH_FAST=1``, else ``full`` (epochs, sample counts, grid sizes)."""
    return quick if fast() else full


def check(correct: bool, right: str, wrong: str, *, strict: bool | None = None) -> bool:
    """Print ``Right: ...`` or ``Not yet: ...`` for an exercise and return ``correct``.

    ``strict`` (default: on when ``WORKBENCH_STRICT_CHECKS=1``) raises :class:`WrongAnswer` on a wrong
    answer, so a test can tell a passing check cell from a failing one.
    """
    if strict is None:
        strict = os.environ.get("WORKBENCH_STRICT_CHECKS", "").strip() in {"1", "true", "yes", "on"}
    if correct:
        print(f"Right: {right}")
        return True
    print(f"Not yet: {wrong}")
    if strict:
        raise WrongAnswer(wrong)
    return False


#: the app's pages by URL path (``app/main.py``'s ``PAGES``); ``home`` is also served at ``/``
APP_PAGES = (
    "home", "training", "experiments", "data", "cams", "similarity", "landscape", "agreement", "compare",
    "leaderboard", "doctor", "classroom",
)
#: where the app is served unless ``$WORKBENCH_APP_URL`` says otherwise (``workbench app``'s default)
DEFAULT_APP_URL = "http://127.0.0.1:8501"
_PARAM = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def _url_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(_url_text(name, v) for v in value)
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"{name}: expected a string, a number, a flag or a list for the app's URL, got {type(value).__name__}")


def _run_id(run: Run | str) -> str:
    run_id = getattr(run, "id", run)
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError(f"run: expected a run (or its id), got {run!r}")
    return run_id.strip()


def app_link(run: Run | str, page: str = "training", **params: Any) -> str:
    """The app's URL of ``page`` opened on ``run``: ``<base>/<page>?run=<id>&<params>``.

    ``run``: a :class:`workbench.runs.Run` or a run id. ``page``: one of :data:`APP_PAGES`.
    ``params``: more URL parameters of that page in the glossary's words (``checkpoint="best"``,
    ``workspace="alice"``, ``n_samples=500``; a list is written comma-separated, a flag as 1/0, None
    left out). The base is ``$WORKBENCH_APP_URL`` when set, else :data:`DEFAULT_APP_URL`. The app shows
    the runs of the store it serves (``workbench app --runs DIR``): the link finds the run only when
    that is the store the run was written to.

    Raises:
        ValueError: an unknown page, a bad parameter name or value, or no run (one line naming it).
    """
    if page not in APP_PAGES:
        raise ValueError(f"page: {page!r} is not a page of the app; expected one of {', '.join(APP_PAGES)}")
    query = {"run": _run_id(run)}
    for name, value in params.items():
        if not _PARAM.match(name):
            raise ValueError(f"{name!r}: not a URL parameter of the app (lower-case words, e.g. checkpoint)")
        if name == "run":
            raise ValueError("run: give the run as the first argument")
        if value is not None:
            query[name] = _url_text(name, value)
    base = (os.environ.get("WORKBENCH_APP_URL") or DEFAULT_APP_URL).strip().rstrip("/")
    if not re.match(r"^https?://[^\s/?#]+", base):
        raise ValueError(f"WORKBENCH_APP_URL: expected an address such as {DEFAULT_APP_URL}, got {base!r}")
    return f"{base}/{page}?{urlencode(query, quote_via=quote, safe=',:')}"


def preset_link(config: Any) -> str:
    """The app's URL of Home with its New-run form prefilled with ``config`` (a run's or a lesson's
    RunConfig or mapping; :func:`workbench.run_form.new_run_params`): the lesson's preset, one click
    from Start. The base as for :func:`app_link`."""
    from workbench.run_form import new_run_params

    base = (os.environ.get("WORKBENCH_APP_URL") or DEFAULT_APP_URL).strip().rstrip("/")
    return f"{base}/?{urlencode(new_run_params(config), quote_via=quote, safe=',:')}"


def app_link_markdown(
    run: Run | str, *, store: RunStore | str | Path, page: str = "training", **params: Any
) -> Markdown:
    """A Markdown cell output that opens the app on ``run`` (:func:`app_link`), offers its settings as
    a prefilled New run (:func:`preset_link`) and says how to serve the store it is in:
    ``workbench app --runs <store>``.

    ``store``: the run store (or its folder) the lesson wrote ``run`` to; ``page`` and ``params`` as
    for :func:`app_link`.

    Raises:
        ValueError: ``run`` is not in ``store`` (the app would not find it), or a bad page/parameter.
    """
    from IPython.display import Markdown

    from workbench.runs import RunStore, RunStoreError

    root = store.root if isinstance(store, RunStore) else Path(store)
    run_id = _run_id(run)
    if not (root / run_id).is_dir():
        raise ValueError(f"run {run_id}: not in the run store {root}; the app opens the runs of the store it serves")
    url = app_link(run_id, page, **params)
    serve = f"workbench app --runs {shlex.quote(str(root.resolve()))}"
    try:
        preset = f" · [start a new run from its settings]({preset_link(RunStore(root).load(run_id).config)})"
    except (RunStoreError, ValueError):  # a run whose config cannot be read still opens
        preset = ""
    return Markdown(
        f"**[Open run `{run_id}` in the app ({page} page)]({url})**{preset}\n\n"
        f"The app shows the runs of the store it serves, so serve this lesson's store first: `{serve}` "
        f"(set `WORKBENCH_APP_URL` when the app runs elsewhere than {DEFAULT_APP_URL})."
    )


__all__ = [
    "APP_PAGES",
    "DEFAULT_APP_URL",
    "WrongAnswer",
    "app_link",
    "app_link_markdown",
    "preset_link",
    "check",
    "fast",
    "size",
]
