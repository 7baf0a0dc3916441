"""The class's queue settings: a per-workspace cap on queued and running jobs, and a pause.

One small JSON file beside the job files, replaced atomically under the queue's lock::

    <runs>/.jobs/settings.json     {"cap": 4, "paused": false}

``cap`` is the most jobs one workspace may have queued or running at once (``null``, the default: no
cap; jobs without a workspace are never capped; a store served to a class gets :data:`CLASS_CAP` until
the instructor sets another, :func:`class_defaults`); ``paused`` stops the scheduler from starting jobs (running
ones go on). A missing file means the defaults. A damaged one (not JSON, not a mapping, a field of
the wrong type) means the defaults for what cannot be read and a one-line
:attr:`QueueSettings.warning`, never a crash: the queue keeps running, and the next change writes a
healthy file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.jobs.state import JOBS_DIR, JobError, jobs_dir, state_lock

SETTINGS_FILE = "settings.json"
#: the default cap: none (one person's queue, or a store never served to a class)
DEFAULT_CAP: int | None = None
#: the cap a store gets when it is first served to a class (``workbench app --instructor-token``) and no
#: cap was ever set: jobs one workspace may have queued or running at once
CLASS_CAP = 4
#: the states that count against a workspace's cap
ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class QueueSettings:
    """The queue's settings: ``cap`` (jobs queued or running per workspace; ``None``: no cap) and
    ``paused`` (nothing starts while true). ``warning`` is one line when the settings file was
    damaged and defaults stand in for what it could not say, else ``None``."""

    cap: int | None = DEFAULT_CAP
    paused: bool = False
    warning: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``cap``, ``paused`` and ``warning``, JSON-ready."""
        return {"cap": self.cap, "paused": self.paused, "warning": self.warning}

    def line(self) -> str:
        """One line for a terminal: ``cap 4 jobs per workspace; running`` (or ``no cap``, ``paused``)."""
        cap = "no cap" if self.cap is None else f"cap {self.cap} job{'s' * (self.cap != 1)} per workspace"
        return f"{cap}; {'paused: nothing starts' if self.paused else 'running'}"


def settings_path(root: str | Path) -> Path:
    """The settings file of the store at ``root``: ``<root>/.jobs/settings.json``."""
    return jobs_dir(root) / SETTINGS_FILE


def check_cap(cap: Any) -> int | None:
    """``cap`` when it is a cap: an integer >= 1, or ``None`` for no cap.

    Raises:
        JobError: anything else, naming the value.
    """
    if cap is None or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1):
        return cap
    raise JobError(f"cap: expected an integer >= 1 or none, got {cap!r}")


def read_settings(root: str | Path) -> QueueSettings:
    """The queue settings of the store at ``root`` (the defaults where there is no file; see the
    module's note on a damaged one)."""
    name = f"{JOBS_DIR}/{SETTINGS_FILE}"
    try:
        text = settings_path(root).read_text(encoding="utf-8")
    except FileNotFoundError:
        return QueueSettings()
    except (OSError, UnicodeDecodeError) as err:
        return QueueSettings(warning=f"{name}: unreadable ({type(err).__name__}); using the defaults")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return QueueSettings(warning=f"{name}: not valid JSON ({err.msg}); using the defaults")
    if not isinstance(data, dict):
        return QueueSettings(warning=f"{name}: expected a JSON mapping; using the defaults")
    settings, bad = QueueSettings(), []
    if "cap" in data:
        try:
            settings = replace(settings, cap=check_cap(data["cap"]))
        except JobError:
            bad.append(f"cap {json.dumps(data['cap'], default=str)[:40]} is not an integer >= 1 or null")
    if "paused" in data:
        if isinstance(data["paused"], bool):
            settings = replace(settings, paused=data["paused"])
        else:
            bad.append(f"paused {json.dumps(data['paused'], default=str)[:40]} is not true or false")
    if bad:
        return replace(settings, warning=f"{name}: {'; '.join(bad)}; using the default for it")
    return settings


def update_settings(root: str | Path, **changes: Any) -> QueueSettings:
    """Change the queue settings of the store at ``root`` (``cap=``, ``paused=``) and write them
    atomically under the queue's lock; returns the new settings (a damaged file is replaced by a
    healthy one: the defaults, then the changes).

    Raises:
        JobError: an unknown setting, or a value of the wrong type, naming it.
    """
    unknown = set(changes) - {"cap", "paused"}
    if unknown:
        raise JobError(f"queue settings: unknown setting {sorted(unknown)[0]!r}; expected cap or paused")
    if "cap" in changes:
        check_cap(changes["cap"])
    if "paused" in changes and not isinstance(changes["paused"], bool):
        raise JobError(f"paused: expected true or false, got {changes['paused']!r}")
    from workbench.runs import atomic_write_json  # not at import: the run store brings torch

    with state_lock(root):
        new = replace(read_settings(root), **changes, warning=None)
        atomic_write_json(settings_path(root), {"cap": new.cap, "paused": new.paused})
    return new


def cap_message(workspace: str, active: int, cap: int) -> str:
    """The one line that refuses a job over the cap (it names only the workspace asked about)."""
    return (
        f"workspace {workspace!r} already has {active} job{'s' * (active != 1)} queued or running "
        f"(the class's cap is {cap}); wait for one to end or stop one"
    )


def room_left(records: list[dict[str, Any]], workspace: str | None, cap: int | None) -> int | None:
    """How many more jobs ``workspace`` may queue under ``cap`` given the job ``records``
    (``None``: unlimited, for no cap or no workspace)."""
    if workspace is None or cap is None:
        return None
    active = sum(1 for d in records if d.get("workspace") == workspace and d.get("state") in ACTIVE_STATES)
    return max(0, cap - active)


__all__ = [
    "ACTIVE_STATES",
    "DEFAULT_CAP",
    "SETTINGS_FILE",
    "QueueSettings",
    "cap_message",
    "check_cap",
    "read_settings",
    "room_left",
    "settings_path",
    "update_settings",
]


def class_defaults(root: str | Path) -> QueueSettings:
    """The settings of a store about to be served to a class: :data:`CLASS_CAP` when no cap was ever
    written (a cap the instructor set, ``null`` included, stays); returns the settings in force."""
    try:
        data = json.loads(settings_path(root).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict) and "cap" in data:
        return read_settings(root)
    return update_settings(root, cap=CLASS_CAP)
