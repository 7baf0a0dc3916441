"""Work one process shares between its users: a thread-safe least-recently-used cache that computes a
key once, and a registry of background computations that publish partial results as they go.

A server face (the Streamlit app) keeps one :class:`LRU` of finished analyses and one
:class:`BackgroundJobs` registry per process, so a second session asking for the same result waits for
the first one's computation instead of starting its own, and a long computation (a loss landscape)
fills its view in row by row while the page reruns. Nothing here knows a UI; a computation reports
through the ``progress(done, total, message)`` protocol and honours the
:class:`workbench.runtime.CancelToken` of :mod:`workbench.runtime`.

    >>> cache = LRU(64)
    >>> cache.get_or_compute(("cka", run_id), lambda: cka_matrix(...))
    >>> jobs = BackgroundJobs()
    >>> job = jobs.start(("landscape", run_id), lambda job: landscape_2d(..., progress=job.progress,
    ...                  cancel=job.cancel, on_row=lambda r: job.publish(result=r)))
    >>> job.snapshot()["done"], job.running
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workbench.errors import one_line
from workbench.runtime import Cancelled, CancelToken

T = TypeVar("T")


class LRU:
    """A thread-safe least-recently-used map of at most ``size`` entries whose values are computed on
    demand, once per key: concurrent callers of the same key wait for the first one's result."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a whole number >= 1, got {size!r}")
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value under ``key``, computed by ``compute()`` when absent (the oldest entry is dropped
        once there are more than :attr:`size`). A ``compute`` that raises stores nothing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second caller of the same key waits here instead of computing again
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            value = compute()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()


@dataclass
class BackgroundJob:
    """One computation running in a daemon thread (see :meth:`BackgroundJobs.start`).

    ``partial`` holds what the computation published so far (a landscape's rows),
    ``done``/``total``/``message`` its progress; ``result`` the final value, ``error`` a one-line
    message (:func:`workbench.errors.one_line`) and ``exception`` the exception itself, ``cancelled`` whether it was stopped through
    ``cancel`` (a :class:`workbench.runtime.CancelToken`).
    """

    key: Hashable
    cancel: CancelToken = field(default_factory=CancelToken)
    lock: threading.Lock = field(default_factory=threading.Lock)
    partial: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    total: int = 1
    message: str = ""
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    cancelled: bool = False
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the computation has not ended yet."""
        return self.finished is None

    def progress(self, done: int, total: int, message: str = "") -> None:
        """The ``progress(done, total, message)`` callable handed to the computation."""
        with self.lock:
            self.done, self.total, self.message = int(done), max(int(total), 1), str(message)

    def publish(self, **values: Any) -> None:
        """Store partial values (called from the computation's thread)."""
        with self.lock:
            self.partial.update(values)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the partial values with ``done``, ``total`` and ``message``."""
        with self.lock:
            return {**self.partial, "done": self.done, "total": self.total, "message": self.message}

    def elapsed(self) -> float:
        """Seconds since the start (until the end once finished)."""
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    def _run(self, work: Callable[[BackgroundJob], Any], on_end: Callable[[BackgroundJob], None] | None) -> None:
        try:
            value = work(self)
            with self.lock:
                self.result = value
        except Cancelled:
            with self.lock:
                self.cancelled = True
        except Exception as exc:  # noqa: BLE001 - the job records the one-line reason
            with self.lock:
                self.error, self.exception = one_line(exc), exc
        finally:
            with self.lock:
                self.finished = time.monotonic()
        if on_end is not None:
            on_end(self)


def run_in_background(
    work: Callable[[BackgroundJob], Any],
    *,
    key: Hashable = "job",
    on_end: Callable[[BackgroundJob], None] | None = None,
) -> BackgroundJob:
    """Start ``work(job)`` in a daemon thread and return its :class:`BackgroundJob` at once.

    ``work`` reports through ``job.progress``, publishes partial values with ``job.publish`` and
    stops when ``job.cancel`` is set (raising :class:`workbench.runtime.Cancelled`); its return value
    becomes ``job.result``, an exception ``job.error`` (one line) and ``job.exception``. ``on_end(job)``
    is called in the thread once the job has ended, however it ended.
    """
    job = BackgroundJob(key=key)
    name = key[0] if isinstance(key, tuple) and key else key
    job.thread = threading.Thread(target=job._run, args=(work, on_end), name=f"workbench-{name}", daemon=True)
    job.thread.start()
    return job


class BackgroundJobs:
    """Background computations by key: one per key, shared by whoever asks for the same key; the
    ``keep`` most recent finished jobs are kept once there are more."""

    def __init__(self, keep: int = 16) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep: expected a whole number >= 0, got {keep!r}")
        self.keep = keep
        self._jobs: dict[Hashable, BackgroundJob] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> BackgroundJob | None:
        """The job under ``key``, or ``None`` (starts nothing)."""
        with self._lock:
            return self._jobs.get(key)

    def start(
        self, key: Hashable, work: Callable[[BackgroundJob], T], *, restart: bool = False
    ) -> BackgroundJob:
        """The job under ``key``: the running or finished one, else a new one running ``work(job)`` in a
        daemon thread. A stopped or failed job stays (its partial values visible) unless ``restart``.

        ``work`` reports through ``job.progress``, publishes partial values with ``job.publish`` and
        stops when ``job.cancel`` is set (raising :class:`workbench.runtime.Cancelled`); its return
        value becomes ``job.result``, an exception ``job.error``.
        """
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and (job.running or not restart or (job.error is None and not job.cancelled)):
                return job
            finished = [k for k, j in self._jobs.items() if not j.running and k != key]
            for k in finished[: max(0, len(finished) - self.keep)]:
                self._jobs.pop(k, None)
            job = run_in_background(work, key=key)
            self._jobs[key] = job
        return job

    def join(self, timeout: float = 60.0) -> bool:
        """Wait until every job's thread has ended, ``timeout`` seconds at most in all; whether they
        all did. For tests and an orderly shutdown."""
        end = time.monotonic() + timeout
        with self._lock:
            threads = [j.thread for j in self._jobs.values() if j.thread is not None]
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


__all__ = ["LRU", "BackgroundJob", "BackgroundJobs", "run_in_background"]
