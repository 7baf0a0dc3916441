"""Terminal output shared by the ``workbench`` command, its ``jobs`` commands and the demo: the one
error wrapper of every command (:func:`friendly`), a progress-bar subscriber and number formatting.
It depends on the library, never the other way round."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

from workbench.errors import one_line

F = TypeVar("F", bound=Callable[..., Any])
_err = Console(stderr=True, soft_wrap=True)


def _say(prefix: str, err: BaseException, code: int) -> Any:
    import typer

    _err.print(f"{prefix}: {one_line(err)}", markup=False, highlight=False)
    return typer.Exit(code)


def friendly(fn: F) -> F:
    """Wrap a command so the library's errors end it as one line on stderr: a bad value, a missing
    file or a time-out as ``error: ...`` with exit code 2, a failed run as ``run failed: ...`` (1),
    a cancelled one as ``cancelled: ...`` (130). Anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workbench.runtime import Cancelled
        from workbench.train import TrainingFailed

        try:
            return fn(*args, **kwargs)
        except TrainingFailed as e:
            raise _say("run failed", e, 1) from None
        except Cancelled as e:
            raise _say("cancelled", e, 130) from None
        except (ValueError, FileNotFoundError, TimeoutError) as e:
            raise _say("error", e, 2) from None

    return wrapper  # type: ignore[return-value]


def fmt(value: Any, pct: bool = False) -> str:
    """``value`` for a table cell: ``-`` for None, floats as ``12.34%`` (``pct``) or 4 digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if pct else f"{value:.4g}"
    return str(value)


class ProgressBar:
    """A rich progress-bar subscriber to training events: set-up phases, one bar over all steps,
    a line of metrics per epoch. Call :meth:`close` when training is over."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console or Console(stderr=True, soft_wrap=True),
            transient=False,
        )
        self.task: Any = None
        self._setup: Any = None
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def __call__(self, event: Any) -> None:
        from workbench.train import EpochEnded, RunStarted, SetupProgress, StepEnded

        if isinstance(event, SetupProgress):
            self._start()
            if self._setup is None:
                self._setup = self.progress.add_task("set-up", total=event.total, info="")
            self.progress.update(self._setup, completed=event.done, total=event.total, info=event.message)
        elif isinstance(event, RunStarted):
            self._start()
            if self._setup is not None:
                self.progress.remove_task(self._setup)
                self._setup = None
            self.task = self.progress.add_task(event.run_id or "training", total=event.total_steps, info="")
        elif isinstance(event, StepEnded) and self.task is not None:
            self.progress.update(
                self.task, completed=event.step, info=f"epoch {event.epoch} loss {event.loss:.3f}"
            )
        elif isinstance(event, EpochEnded) and self.task is not None:
            m = event.metrics
            self.progress.console.print(
                f"epoch {event.epoch}: train acc {fmt(m.get('train_acc'), True)}  test acc {fmt(m.get('test_acc'), True)}"
                + (f"  agreement {fmt(m['agreement'], True)}" if "agreement" in m else ""),
                highlight=False,
            )

    def close(self) -> None:
        """Stop drawing (leaves the finished bars on screen)."""
        if self._started:
            self.progress.stop()
            self._started = False


__all__ = ["ProgressBar", "fmt", "friendly"]
