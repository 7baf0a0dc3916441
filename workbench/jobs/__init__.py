"""Background jobs: training for the app, the widgets and the CLI runs in worker processes.

The queue's state lives in the run store (``<runs>/.jobs``), so any session or process can list,
watch and stop jobs, and a restart loses nothing::

    from workbench.jobs import JobQueue

    queue = JobQueue("runs", max_jobs=1)
    job = queue.submit(config, workspace="alice")
    queue.pump()                     # start what may start (any face calls this now and then)
    queue.list()                     # running, then queued with positions, then final
    queue.stop(job.id)               # from any process; the run ends as ``stopped``
    queue.wait(job.id, timeout=600)

A class's queue has a per-workspace cap and a pause (``queue.set_cap(4)``, ``queue.pause()``,
``queue.resume()``, kept in ``<runs>/.jobs/settings.json``), and a queued job can be moved to the
front or the back (``queue.move(job_id, "first")``). A job file that cannot be read is listed by
``queue.damaged()`` and skipped by the scheduler; ``queue.remove(id)`` removes it. A
:class:`~workbench.jobs.ticker.Ticker` (``start_ticker(queue)``) pumps the queue on a timer, so it
moves on with no face open.

``JobQueue(..., warm=True)`` keeps ``max_jobs`` warm worker processes that train job after job with
their imports done and the shipped teachers loaded (:mod:`workbench.jobs.warm`), so a dispatched job
trains at once; the app's server and ``workbench jobs worker`` use them.
"""

from workbench.jobs.queue import JobQueue, submit_demo, warm_default
from workbench.jobs.scheduling import (
    default_max_jobs,
    pick_next,
    queue_order,
    thread_budget,
    thread_env,
    with_positions,
)
from workbench.jobs.settings import DEFAULT_CAP, QueueSettings
from workbench.jobs.state import FINAL_STATES, HEARTBEAT_TIMEOUT, JOB_STATES, Damaged, Job, JobError, jobs_dir
from workbench.jobs.ticker import Ticker, start_ticker

__all__ = [
    "DEFAULT_CAP",
    "FINAL_STATES",
    "HEARTBEAT_TIMEOUT",
    "JOB_STATES",
    "Damaged",
    "Job",
    "JobError",
    "JobQueue",
    "QueueSettings",
    "Ticker",
    "default_max_jobs",
    "jobs_dir",
    "pick_next",
    "queue_order",
    "start_ticker",
    "submit_demo",
    "thread_budget",
    "thread_env",
    "warm_default",
    "with_positions",
]
