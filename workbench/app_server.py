"""The app's server process: Streamlit, with the job queue's scheduler on a timer in the same process.

``workbench app`` (:mod:`workbench.serve`) starts ``python -m workbench.app_server run app/main.py
--server.address ...``: this module starts a :class:`workbench.jobs.ticker.Ticker` on the store's queue
(the settings from the environment the app reads too: ``WORKBENCH_RUNS``, ``WORKBENCH_MAX_JOBS``,
``WORKBENCH_RAY_ADDRESS``, ``WORKBENCH_WARM_WORKERS``; every ``WORKBENCH_TICK_S`` seconds, default 2),
then hands the command line to Streamlit's own ``streamlit`` command. So while the server lives, queued
jobs start and a job whose worker died is failed (its run's completed epochs kept) within seconds,
whether or not a browser is open, and the workers it starts are its own children.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: the environment variable with the seconds between two scheduler passes of the server
TICK_ENV = "WORKBENCH_TICK_S"


def _env_number(env: dict[str, str], name: str, default: float | None, kind: type = float) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"${name}: expected a positive number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"${name}: expected a positive number, got {raw!r}")
    return value


def queue_ticker(env: dict[str, str] | None = None) -> Any:
    """A started :class:`~workbench.jobs.ticker.Ticker` on the job queue the app serves, built from
    ``env`` (default this process's environment) as the app's pages build theirs.

    Raises:
        ValueError: a setting in the environment is not a positive number (one line naming it).
    """
    from workbench.jobs import JobQueue
    from workbench.jobs.queue import WARM_ENV
    from workbench.jobs.ticker import start_ticker

    env = dict(os.environ if env is None else env)
    every = _env_number(env, TICK_ENV, 2.0)
    max_jobs = _env_number(env, "WORKBENCH_MAX_JOBS", None, int)
    queue = JobQueue(
        env.get("WORKBENCH_RUNS") or None,
        max_jobs=max_jobs,
        ray_address=env.get("WORKBENCH_RAY_ADDRESS", "").strip() or None,
        warm=env.get(WARM_ENV, "").strip().lower() in {"1", "true", "yes", "on"},
    )
    return start_ticker(queue, every=every)


def main(argv: list[str] | None = None) -> int:
    """Start the scheduler, then run ``streamlit ARGV`` in this process; returns its exit code."""
    from workbench.errors import one_line

    try:
        ticker = queue_ticker()
    except Exception as err:  # noqa: BLE001 - the app still serves; its pages pump the queue
        print(f"scheduler: not started: {one_line(err, typed=True)}", file=sys.stderr, flush=True)
        ticker = None
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *(sys.argv[1:] if argv is None else argv)]
    try:
        streamlit_main()
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    finally:
        if ticker is not None:
            ticker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
