"""The runtime contract every long call honours: progress reports and cancellation.

Every loop in the library that can take more than a second (training set-up and epochs, CAM
batches, CKA, landscape rows, Hessian iterations, difficulty, the doctor's analyses) accepts two
keyword arguments:

``progress``
    any callable ``progress(done, total, message)``: ``done`` and ``total`` are integers counted in
    the call's own units (batches, grid rows, iterations, analyses), ``message`` one short line.
    ``None`` reports nothing.
``cancel``
    a :class:`CancelToken` (or ``None``). When it is set, the call stops at its next check and
    raises :class:`Cancelled`; it leaves no hooks, no changed flags, no partial files behind.

The faces (CLI progress bar, Streamlit pages, ipywidgets panels, the job worker) build on this one
shape and on nothing else. Nothing here imports the rest of the workbench.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Cancelled(RuntimeError):
    """A call was stopped through its :class:`CancelToken`; nothing it was doing was kept."""


class ProgressFn(Protocol):
    """``progress(done, total, message)``: how far a call has come, in its own units."""

    def __call__(self, done: int, total: int, message: str) -> None: ...


class CancelToken:
    """A thread-safe stop request, shared by a caller and the call it wants to be able to stop.

    ``cancel()`` may be called from any thread. A token can also watch extra conditions
    (``watch(fn)``: cancelled once ``fn()`` returns true), e.g. a stop file written by another
    process, so a job worker can be stopped from any session.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "cancelled"
        self._watchers: list[Callable[[], bool]] = []

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask every call holding this token to stop at its next check."""
        self._reason = reason
        self._event.set()

    def reset(self) -> None:
        """Clear the request, so the token can be reused for the next call."""
        self._event.clear()
        self._reason = "cancelled"

    def watch(self, condition: Callable[[], bool]) -> CancelToken:
        """Also count as cancelled once ``condition()`` returns true; returns ``self``."""
        self._watchers.append(condition)
        return self

    def watch_file(self, path: str | Path) -> CancelToken:
        """Also count as cancelled once the file ``path`` exists (a cross-process stop request)."""
        p = Path(path)
        return self.watch(p.exists)

    @property
    def cancelled(self) -> bool:
        """Whether a stop was requested (directly or through a watched condition)."""
        if self._event.is_set():
            return True
        for condition in self._watchers:
            if condition():
                self.cancel("stop requested")
                return True
        return False

    @property
    def reason(self) -> str:
        return self._reason

    def raise_if_cancelled(self, where: str = "") -> None:
        """Raise :class:`Cancelled` (naming ``where``) when a stop was requested."""
        if self.cancelled:
            raise Cancelled(f"{where}: {self._reason}" if where else self._reason)


class Tracker:
    """One long call's side of the contract: count work, report it, and check for a stop.

    >>> t = Tracker(progress, cancel, total=len(batches), label="Grad-CAM")
    >>> for b in batches:
    ...     t.check()          # raises Cancelled when asked to stop
    ...     work(b)
    ...     t.advance()        # reports (done, total, "Grad-CAM")

    ``part(start, stop, total)`` maps a sub-call's own counts into ``[start, stop)`` of this one,
    so an orchestration (the doctor, training set-up) reports one monotone bar over its parts.
    """

    def __init__(
        self,
        progress: ProgressFn | Callable[[int, int, str], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        total: int = 1,
        label: str = "",
    ) -> None:
        if progress is not None and not callable(progress):
            raise TypeError(f"progress: expected a callable progress(done, total, message), got {type(progress).__name__}")
        if cancel is not None and not isinstance(cancel, CancelToken):
            raise TypeError(f"cancel: expected a workbench.runtime.CancelToken, got {type(cancel).__name__}")
        self.progress = progress
        self.cancel = cancel
        self.total = max(int(total), 1)
        self.label = label
        self.done = 0

    def check(self) -> None:
        """Raise :class:`Cancelled` if a stop was requested."""
        if self.cancel is not None:
            self.cancel.raise_if_cancelled(self.label)

    def report(self, done: int, message: str | None = None) -> None:
        """Report ``done`` of ``total`` (clamped) with ``message`` (default: the label)."""
        self.done = min(max(int(done), 0), self.total)
        if self.progress is not None:
            self.progress(self.done, self.total, message if message is not None else self.label)

    def advance(self, n: int = 1, message: str | None = None) -> None:
        """Count ``n`` more units done and report; then check for a stop."""
        self.report(self.done + n, message)
        self.check()

    def start(self, message: str | None = None) -> None:
        """Report 0 of ``total`` and check for a stop before any work begins."""
        self.check()
        self.report(0, message)

    def part(self, start: int, stop: int, label: str | None = None) -> Callable[[int, int, str], None]:
        """A ``progress`` callable for a sub-call, mapped into ``[start, stop]`` of this tracker."""
        prefix = label or ""

        def sub(done: int, total: int, message: str) -> None:
            frac = min(max(done / max(total, 1), 0.0), 1.0)
            text = f"{prefix}: {message}" if prefix and message and message != prefix else (prefix or message)
            self.report(start + int(round(frac * (stop - start))), text)

        return sub


def tracker(
    progress: Callable[[int, int, str], None] | None,
    cancel: CancelToken | None,
    total: int,
    label: str = "",
) -> Tracker:
    """Shorthand for ``Tracker(progress, cancel, total=total, label=label)``."""
    return Tracker(progress, cancel, total=total, label=label)


__all__ = ["CancelToken", "Cancelled", "ProgressFn", "Tracker", "tracker"]
