"""A scheduler on a timer: the queue moves on with no page open and no face calling it.

A :class:`Ticker` is a daemon thread that calls :meth:`workbench.jobs.JobQueue.pump` every few
seconds, so a job whose worker died is failed (its run's completed epochs kept) and the next queued
job starts within seconds, whether or not anyone looks. A pass that raises never ends the thread:
its one-line error is kept in :attr:`Ticker.last_error` and the next pass runs as usual. The app's
server runs one for the life of the process::

    from workbench.jobs import JobQueue
    from workbench.jobs.ticker import start_ticker

    ticker = start_ticker(JobQueue("runs"), every=2.0)
    ...
    ticker.stop()

or, for a block of code, ``with Ticker(queue): ...``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from workbench.errors import one_line
from workbench.jobs.state import JobError

#: seconds between two scheduler passes by default
TICK_EVERY = 2.0


class Pumpable(Protocol):
    """What a ticker drives: anything with a ``pump()`` (a :class:`~workbench.jobs.JobQueue`)."""

    def pump(self) -> Any:
        """Run one scheduler pass."""


class Ticker:
    """Calls ``queue.pump()`` every ``every`` seconds on a daemon thread, first at :meth:`start`.

    Args:
        queue: the job queue to drive (anything with ``pump()``).
        every: seconds between the start of one pass and the next (> 0; a pass that takes
            longer is followed at once by the next).

    Attributes:
        passes: scheduler passes run so far (those that raised included).
        errors: passes that raised.
        last_error: the one-line error of the last pass that raised (``None`` before any);
            a later pass that succeeds leaves it, so an error seen once stays visible.
        last_pass: ``time.time()`` at the end of the last pass (``None`` before any).
    """

    def __init__(self, queue: Pumpable, every: float = TICK_EVERY) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
            raise JobError(f"every: expected a number of seconds > 0, got {every!r}")
        if not callable(getattr(queue, "pump", None)):
            raise JobError(f"queue: expected a job queue with pump(), got {type(queue).__name__}")
        self.queue = queue
        self.every = float(every)
        self.passes = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_pass: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"Ticker({self.queue!r}, every={self.every:g}, {state}, passes={self.passes})"

    @property
    def alive(self) -> bool:
        """Whether the ticker's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> None:
        """Run one scheduler pass now, in this thread; an exception is recorded, not raised."""
        try:
            self.queue.pump()
        except Exception as err:  # noqa: BLE001 - a pass that fails must not end the scheduler
            self.errors += 1
            self.last_error = one_line(err, typed=True)
        finally:
            self.passes += 1
            self.last_pass = time.time()

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.tick()
            if self._stop.wait(max(0.0, self.every - (time.monotonic() - began))):
                return

    def start(self) -> Ticker:
        """Start the thread (a ticker already running is left as it is). Returns the ticker."""
        if self.alive:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="job-ticker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the thread to end and wait up to ``timeout`` seconds for a pass in progress to
        finish (``None``: as long as it takes). Returns whether the thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.alive

    def __enter__(self) -> Ticker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_ticker(queue: Pumpable, every: float = TICK_EVERY) -> Ticker:
    """A started :class:`Ticker` that pumps ``queue`` every ``every`` seconds (the app's server and
    ``workbench app`` run one, so the queue moves on with no page open)."""
    return Ticker(queue, every).start()


__all__ = ["TICK_EVERY", "Pumpable", "Ticker", "start_ticker"]
