"""URL-bound widgets: every control whose value a copied link must restore, and the run and checkpoint
pickers built on them.

One path for all of them. A bound widget keeps its value in ``st.session_state["qp:<param>"]`` and
mirrors it into the URL parameter ``<param>`` (:func:`_write`). Before it is drawn, :func:`_seed` puts
there the value it should show: the URL's value when the URL differs from what the widget last wrote (a
pasted link, a link from another page, a preset) and the value is allowed; else the value the session
already had; else the default. A link value that is not allowed shows one warning line naming the control.

A prepared link names controls in ``hide=`` (not drawn: the page computes with the link's value) and
``lock=`` (drawn disabled with the link's value), comma-separated URL parameters (:func:`prepared`); every
bound widget draws through :func:`_draw`, which honours them and records the parameters the page bound
(:func:`bound_params`). They simplify a page for a class; they do not secure it: the URL stays editable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st

from app.lib.state import AppInputError, list_runs
from workbench.runs import Run, matches
from workbench.runs.labels import run_label
from workbench.runs.related import has_checkpoint, view_checkpoints


def _where(container: Any) -> Any:
    return container if container is not None else st


#: the URL parameters of a prepared link: controls not drawn, controls drawn fixed
PREPARED = ("hide", "lock")


def prepared() -> dict[str, str]:
    """The session's prepared link: ``{"hide": "a,b", "lock": "c"}`` (empty entries left out). The URL's
    lists when it has them (``hide=`` clears), else the session's (a switch from the menu drops the URL's
    parameters), written back to the URL so they travel with every link the app builds."""
    kept = st.session_state.setdefault("_prepared", {})
    for name in PREPARED:
        raw = st.query_params.get(name)
        if raw is not None:
            kept[name] = ",".join(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
        if kept.get(name) and raw != kept[name]:
            st.query_params[name] = kept[name]
        elif not kept.get(name) and raw is not None:
            st.query_params.pop(name, None)
    return {name: kept[name] for name in PREPARED if kept.get(name)}


def _mode(param: str) -> str | None:
    """``"hide"``, ``"lock"`` or ``None``: what the prepared link does to ``param`` (hide wins)."""
    lists = prepared()
    return next((name for name in PREPARED if param in lists.get(name, "").split(",")), None)


def bound_params() -> dict[str, str]:
    """The URL parameters bound since the page frame (:func:`app.lib.layout.page`) cleared this record,
    each with its control's label: the live dict, so ``clear()`` starts a new record."""
    return st.session_state.setdefault("_bound", {})


def _draw(container: Any, kind: str, label: str, param: str, key: str, **widget: Any) -> Any:
    """``st.<kind>(label, key=key, **widget)``, or under a prepared link nothing (hidden: the value the
    session holds) or the same control disabled (locked); records ``param`` in :func:`bound_params`."""
    bound_params()[param] = label
    mode = _mode(param)
    if mode == "hide":
        return st.session_state[key]
    if mode == "lock":
        widget["disabled"] = True
    return getattr(_where(container), kind)(label, key=key, **widget)


def _last() -> dict[str, str]:
    return st.session_state.setdefault("_qp_last", {})


def _write(param: str, text: str) -> None:
    _last()[param] = text
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def _seed(
    param: str, parse: Callable[[str], Any], default: Any, valid: Callable[[Any], bool], label: str
) -> str:
    """Put the value the widget ``qp:<param>`` should show into session state; returns its key.

    ``parse`` turns the URL's text into a value (ValueError/TypeError when it cannot); ``valid`` says
    whether a value (from the URL or left in the session) is acceptable now.
    """
    key = f"qp:{param}"
    raw = st.query_params.get(param)
    if raw is not None and raw != _last().get(param):
        try:
            value = parse(raw)
            if not valid(value):
                raise ValueError(raw)
        except (ValueError, TypeError):
            st.warning(f"{label}: {raw[:40]!r} from the link is not an allowed value; using the default")
            value = (
                st.session_state[key] if key in st.session_state and valid(st.session_state[key]) else default
            )
        st.session_state[key] = value
    else:  # written back every run: a widget's value survives a page switch (Streamlit drops it otherwise)
        kept = st.session_state.get(key, default)
        st.session_state[key] = kept if valid(kept) else default
    return key


def _choices(
    label: str, options: Sequence[Any], default: Any, *, last: bool = False
) -> tuple[list, list, Any]:
    """The options as a list, their texts (options are matched by ``str``), and the fallback value:
    ``default`` when it is an option, else the first option (the last with ``last``)."""
    options = list(options)
    if not options:
        raise AppInputError(f"{label}: nothing to choose from")
    texts = [str(o) for o in options]
    if default is not None and str(default) in texts:
        return options, texts, options[texts.index(str(default))]
    return options, texts, options[-1 if last else 0]


def bound_selectbox(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Any = None,
    container: Any = None,
    **widget: Any,
) -> Any:
    """A select box over ``options`` bound to ``param``; an unknown link value falls back to ``default``
    (else the first option) with a warning. ``widget``: more keywords of ``st.selectbox`` (``format_func``,
    ``help``)."""
    options, texts, fallback = _choices(label, options, default)
    key = _seed(param, lambda raw: options[texts.index(raw)], fallback, lambda v: v in options, label)
    choice = _draw(container, "selectbox", label, param, key, options=options, **widget)
    _write(param, str(choice))
    return choice


def bound_select_slider(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Any = None,
    container: Any = None,
    **widget: Any,
) -> Any:
    """A select slider over ``options`` bound to ``param``; falls back to ``default``, else the last
    option. One option is shown as a caption (a select slider needs two). ``widget``: more keywords of
    ``st.select_slider``."""
    options, texts, fallback = _choices(label, options, default, last=True)
    key = _seed(param, lambda raw: options[texts.index(raw)], fallback, lambda v: v in options, label)
    if len(options) == 1:
        if _mode(param) != "hide":
            _where(container).caption(f"{label}: {widget.get('format_func', str)(options[0])}")
        chosen = options[0]
    else:
        chosen = _draw(container, "select_slider", label, param, key, options=options, **widget)
    _write(param, str(chosen))
    return chosen


def bound_multiselect(
    label: str,
    param: str,
    options: Sequence[Any],
    *,
    default: Sequence[Any] = (),
    container: Any = None,
    **widget: Any,
) -> list[Any]:
    """A multi-select bound to ``param`` (a comma-separated list); unknown link entries are left out
    with a warning. ``widget``: more keywords of ``st.multiselect`` (``max_selections``, ...)."""
    options = list(options)
    texts = [str(o) for o in options]
    limit = widget.get("max_selections") or len(options) or 1

    def parse(raw: str) -> list[Any]:
        items = [t for t in raw.split(",") if t]
        known = [options[texts.index(t)] for t in items if t in texts]
        if len(known) < len(items):
            n = len(items) - len(known)
            st.warning(f"{label}: {n} unknown entr{'y' if n == 1 else 'ies'} in the link left out")
        return known[:limit]

    key = f"qp:{param}"
    if key in st.session_state:  # the options may have changed since the last run
        st.session_state[key] = [v for v in st.session_state[key] if v in options][:limit]
    _seed(
        param,
        parse,
        [o for o in default if o in options][:limit],
        lambda v: all(x in options for x in v),
        label,
    )
    value = _draw(container, "multiselect", label, param, key, options=options, **widget)
    _write(param, ",".join(str(v) for v in value))
    return list(value)


def _numeric(default: float, lo: float | None, hi: float | None, integer: bool | None) -> tuple[Any, ...]:
    """``(cast, lo, hi, value, parse, valid)`` of a bound number: ints when ``default`` is an int (or
    ``integer``), the bounds cast, the default clamped into them."""
    as_int = isinstance(default, int) and not isinstance(default, bool) if integer is None else integer
    cast: Callable[[Any], Any] = int if as_int else float
    lo = None if lo is None else cast(lo)
    hi = None if hi is None else cast(hi)
    value = min(max(cast(default), -math.inf if lo is None else lo), math.inf if hi is None else hi)

    def parse(raw: str) -> Any:
        number = float(raw)
        if not math.isfinite(number) or (as_int and number != int(number)):
            raise ValueError(raw)
        return cast(number)

    def valid(v: Any) -> bool:
        return isinstance(v, (int, float)) and (lo is None or v >= lo) and (hi is None or v <= hi)

    return cast, lo, hi, cast(value), parse, valid


def bound_number(
    label: str,
    param: str,
    default: float,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    integer: bool | None = None,
    container: Any = None,
    **widget: Any,
) -> Any:
    """A number input bound to ``param``: integers when ``default`` is an int (or ``integer=True``); a
    link value that is not a number or lies outside the range falls back to ``default`` with a warning.
    ``widget``: more keywords of ``st.number_input`` (``step``, ``help``)."""
    cast, lo, hi, value, parse, valid = _numeric(default, min_value, max_value, integer)
    key = _seed(param, parse, value, valid, label)
    widget["step"] = cast(widget["step"]) if widget.get("step") is not None else (1 if cast is int else None)
    if cast is float:
        widget.setdefault("format", "%g")
    chosen = _draw(container, "number_input", label, param, key, min_value=lo, max_value=hi, **widget)
    _write(param, str(chosen))
    return chosen


def bound_slider(
    label: str,
    param: str,
    default: float,
    *,
    min_value: float,
    max_value: float,
    container: Any = None,
    **widget: Any,
) -> Any:
    """A slider over ``[min_value, max_value]`` bound to ``param`` (ints when ``default`` is an int);
    a link value outside the range falls back to ``default`` with a warning. ``widget``: more keywords of
    ``st.slider`` (``step``, ``help``)."""
    cast, lo, hi, value, parse, valid = _numeric(default, min_value, max_value, None)
    key = _seed(param, parse, value, valid, label)
    if widget.get("step") is not None:
        widget["step"] = cast(widget["step"])
    chosen = _draw(container, "slider", label, param, key, min_value=lo, max_value=hi, **widget)
    _write(param, str(chosen))
    return chosen


def _flag(raw: str) -> bool:
    word = raw.lower()
    if word in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return word in ("1", "true", "yes", "on")
    raise ValueError(raw)


def bound_checkbox(
    label: str, param: str, default: bool = False, *, container: Any = None, **widget: Any
) -> bool:
    """A checkbox bound to ``param`` (``1``/``0`` in the URL; ``true``/``false``, ``yes``/``no`` read too)."""
    key = _seed(param, _flag, bool(default), lambda v: isinstance(v, bool), label)
    chosen = bool(_draw(container, "checkbox", label, param, key, **widget))
    _write(param, "1" if chosen else "0")
    return chosen


def bound_text(
    label: str, param: str, default: str = "", *, max_chars: int = 200, container: Any = None, **widget: Any
) -> str:
    """A one-line text input bound to ``param`` (at most ``max_chars`` characters)."""

    def fits(v: Any) -> bool:
        return isinstance(v, str) and len(v) <= max_chars

    key = _seed(param, lambda raw: raw[:max_chars], default, fits, label)
    chosen = _draw(container, "text_input", label, param, key, max_chars=max_chars, **widget)
    _write(param, chosen)
    return chosen


def apply_preset(params: Mapping[str, Any]) -> None:
    """Put ``params`` in the URL so the widgets they bind take them, and rerun; a parameter a prepared
    link hides or locks keeps its value."""
    for key, value in params.items():
        if _mode(key) is None:
            st.query_params[key] = str(value)
    st.rerun()


def search_param(param: str = "run") -> str:
    """The URL parameter of the search box of the run picker bound to ``param``: ``search`` for the
    page's ``run``, else ``<param>_search``."""
    return "search" if param == "run" else f"{param}_search"


def search_runs(
    runs: Sequence[Run], *, param: str = "run", label: str = "Search runs", container: Any = None
) -> list[Run]:
    """A search box bound to :func:`search_param` ``(param)``, and the runs of ``runs`` it finds
    (:func:`workbench.runs.matches`: words in the id, name, kind, model, method, dataset, tags or note;
    ``tag:x`` for a tag). The run chosen in ``param`` stays among them, so a search never changes the
    run a page shows; an empty search keeps every run."""
    where = _where(container)
    text = bound_text(
        label, search_param(param), "", container=where, help="Search runs: words (all must match), or tag:x for a tag.",
        label_visibility="collapsed",
    )
    if not text.strip():
        return list(runs)
    raw = st.query_params.get(param)  # the chosen run as _seed reads it: a new link's, else the session's
    chosen = raw if raw is not None and raw != _last().get(param) else st.session_state.get(f"qp:{param}")
    hits = {r.id for r in runs if matches(r, text)}
    where.caption(f"{len(hits)} of {len(runs)} runs match {text.strip()[:40]!r}")
    return [r for r in runs if r.id in hits or r.id == chosen]


def run_picker(
    kind: str | Sequence[str] | None = None,
    *,
    label: str = "Run",
    param: str = "run",
    status: str | Sequence[str] | None = None,
    container: Any = None,
    analysable_first: bool = True,
) -> Run | None:
    """A search box (:func:`search_runs`) and a select box of the workspace's runs (of ``kind`` and
    ``status``, found by the search) bound to ``param``.

    With ``analysable_first`` the runs that have a checkpoint come first, so an analysis page does not
    open on a run still in its first epoch. Returns the chosen run, or ``None`` (with an info line)
    when there is none or the search finds none; an unknown id in the URL shows a warning and falls
    back to the first run.
    """
    where = _where(container)
    runs = list_runs(kind=kind, status=status)
    if not runs:
        where.info("No runs yet. Start one on the Home page.")
        return None
    if analysable_first:
        runs = sorted(runs, key=lambda r: not has_checkpoint(r))
    by_id = {r.id: r for r in runs}
    wanted = st.query_params.get(param)
    if wanted is not None and wanted not in by_id:
        where.warning(
            f"run {wanted[:60]!r}: not found in the run store (or not of this kind); showing the newest"
        )
        st.query_params.pop(param, None)
    # a hidden or locked run needs no search box
    found = {r.id: r for r in (runs if _mode(param) else search_runs(runs, param=param, container=where))}
    if not found:
        where.info("No run matches the search. Clear it to see every run.")
        return None
    chosen = bound_selectbox(
        label, param, list(found), format_func=lambda i: run_label(found[i]), container=where
    )
    return found[chosen]


def checkpoint_picker(
    run: Run, *, label: str = "Checkpoint", param: str = "checkpoint", container: Any = None
) -> str:
    """A select box of ``run``'s checkpoints (:func:`workbench.runs.related.view_checkpoints`), bound to
    ``param``."""
    names = view_checkpoints(run)
    if not names:
        raise AppInputError(f"run {run.id}: has no checkpoint yet")
    return bound_selectbox(label, param, names, container=container)
