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
from workbench.jobs.state import FINAL_STATES, HEARTBEAT_TIMEOUT, JOB_STATES, Job, JobError, jobs_dir

__all__ = [
    "FINAL_STATES",
    "HEARTBEAT_TIMEOUT",
    "JOB_STATES",
    "Job",
    "JobError",
    "JobQueue",
    "default_max_jobs",
    "jobs_dir",
    "pick_next",
    "queue_order",
    "submit_demo",
    "thread_budget",
    "thread_env",
    "warm_default",
    "with_positions",
]
