"""Facts about processes on this host, for the run store and the job queue: whether a pid is
alive, and when a process started (which tells a live process from a reused pid); and sending this
process's output to a file for a while (a worker's job log)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and has not ended.

    A process that has exited but was not yet reaped by its parent (a zombie, ``/proc`` state
    ``Z`` or ``X``) has ended. A process of another user (``PermissionError``) is alive; a pid
    that is not a valid one is not.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where ``/proc`` tells; else None.
    Stored with a run's pid, it tells a live writer from a reused pid
    (:func:`workbench.runs.process_gone`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


__all__ = ["pid_alive", "process_start"]


@contextlib.contextmanager
def output_to(path: str | Path) -> Iterator[None]:
    """Send this process's output to the end of ``path`` while the block runs, then back: file
    descriptors 1 and 2 (what C code and child processes write) and Python's ``sys.stdout`` and
    ``sys.stderr``, whatever a host (a Ray worker) made of them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
