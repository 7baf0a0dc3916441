"""Model plugins: Python modules that register architectures of their own when imported.

Two ways to name a plugin, both read once per process, the first time the model registry is
listed or a model is created (:func:`load_plugins`):

* an entry point of group ``workbench.models`` in an installed distribution's metadata
  (``[project.entry-points."workbench.models"] mynets = "mynets.models"``); its value names a
  module (``mynets.models``) or an object in one (``mynets.models:my_net``). Loading it imports
  that module, whose ``@register_model`` decorators register the models; nothing is called;
* ``WORKBENCH_PLUGINS=module[,module]``: modules importable on ``sys.path`` (``PYTHONPATH``).

Job workers and every face inherit the environment and the installed distributions, so they
see the same models without extra code. A plugin that raises while being imported does not stop
anything else: it is listed by :func:`broken_plugins` with its one-line error, and the models of
the other plugins (and the zoo) still work.

This module knows nothing of the registry: while a plugin is being imported,
:func:`current_plugin` names it, and :func:`workbench.models.register_model` records that name
as the source of the models registered meanwhile.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata

from workbench.errors import one_line

#: the entry-point group a distribution declares its model plugins under
ENTRY_POINT_GROUP = "workbench.models"
#: the environment variable naming plugin modules, separated by commas
PLUGINS_ENV = "WORKBENCH_PLUGINS"


@dataclass(frozen=True)
class Plugin:
    """One plugin found: its ``name`` (the entry point's name, or the module's for
    ``WORKBENCH_PLUGINS``), ``target`` (what was imported: ``module`` or ``module:object``),
    ``origin`` (``"entry point"`` or ``"WORKBENCH_PLUGINS"``) and ``error``: ``None`` when it
    loaded, else the one-line error it raised (the plugin is then *broken*)."""

    name: str
    target: str
    origin: str
    error: str | None = None

    @property
    def broken(self) -> bool:
        """True when importing the plugin raised."""
        return self.error is not None


_lock = threading.RLock()
_loaded: list[Plugin] | None = None
_loading = False
_current: ContextVar[str | None] = ContextVar("workbench_current_plugin", default=None)


def current_plugin() -> str | None:
    """The name of the plugin being imported right now in this thread, else ``None``."""
    return _current.get()


def load_plugins() -> list[Plugin]:
    """Import every plugin once per process (later calls return the first call's list).

    Entry points of group :data:`ENTRY_POINT_GROUP` come first (in the order the installed
    metadata lists them), then the modules of ``$WORKBENCH_PLUGINS`` in the order given; a
    target named twice is imported once. An exception raised while importing a plugin (or while
    reading the installed metadata) is caught and recorded as that plugin's one-line error.

    Returns:
        A :class:`Plugin` per plugin found, broken ones included. A call made while plugins are
        being imported (a plugin that lists the registry at import time) returns an empty list
        and imports nothing.
    """
    global _loaded, _loading
    with _lock:
        if _loaded is not None:
            return list(_loaded)
        if _loading:
            return []
        _loading = True
        try:
            found: list[Plugin] = []
            seen: set[str] = set()
            for name, target, origin, error in _discover():
                if target in seen:
                    continue
                seen.add(target)
                found.append(Plugin(name, target, origin, error or _import(name, target)))
            _loaded = found
        finally:
            _loading = False
        return list(_loaded)


def broken_plugins() -> list[tuple[str, str]]:
    """``(name, one-line error)`` of every plugin that raised while being imported (loading the
    plugins first if that has not happened yet)."""
    return [(p.name, p.error) for p in load_plugins() if p.error is not None]


def broken_summary() -> str:
    """``"broken plugins: NAME (error), ..."`` when a plugin raised while being imported, else
    ``""``: the note an "unknown model" error ends with, since the model may be in that plugin."""
    broken = broken_plugins()
    return "broken plugins: " + ", ".join(f"{name} ({error})" for name, error in broken) if broken else ""


def _discover() -> Iterator[tuple[str, str, str, str | None]]:
    """``(name, target, origin, error)`` of every plugin named by the entry points and the
    environment; ``error`` is set when a plugin could not even be named (bad metadata)."""
    origin = "entry point"
    try:
        points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as err:  # noqa: BLE001 - a broken installed distribution must not stop the app
        yield ENTRY_POINT_GROUP, ENTRY_POINT_GROUP, origin, one_line(err, typed=True)
        points = []
    for point in points:
        target = f"{point.module}:{point.attr}" if point.attr else point.module
        yield point.name, target, origin, None
    for module in os.environ.get(PLUGINS_ENV, "").split(","):
        if module.strip():
            yield module.strip(), module.strip(), PLUGINS_ENV, None


def _import(name: str, target: str) -> str | None:
    """Import ``target`` (``module`` or ``module:object``) as plugin ``name``; ``None`` on
    success, else the one-line error it raised."""
    module, _, attribute = target.partition(":")
    try:
        with _plugin(name):
            loaded = importlib.import_module(module.strip())
            for part in filter(None, attribute.strip().split(".")):
                loaded = getattr(loaded, part)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a plugin may raise anything; it is listed as broken
        return one_line(err, typed=True)
    return None


@contextmanager
def _plugin(name: str) -> Iterator[None]:
    token = _current.set(name)
    try:
        yield
    finally:
        _current.reset(token)


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "Plugin",
    "broken_plugins",
    "broken_summary",
    "current_plugin",
    "load_plugins",
]
