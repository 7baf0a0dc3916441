"""The Ray backend of the job queue: a job runs as a Ray task on some node of a cluster (or of a
local Ray instance) instead of a local worker process.

The task's body is the same worker (:func:`workbench.jobs.runner.train_job`), with the thread
budget in its runtime environment; the run store must be on storage the cluster shares. Ray is
imported only when a job is dispatched or checked this way (``pip install
'kd-workbench[distributed]'``).
"""

from __future__ import annotations

from typing import Any

from workbench.errors import one_line
from workbench.jobs.runner import set_thread_budget, train_job
from workbench.jobs.scheduling import thread_env
from workbench.jobs.state import JobError


def ray_job(root: str, job_id: str, token: str, threads: int) -> str:
    """The Ray task body: the same worker, in a Ray worker process on some node; returns the
    job's final state (the queue moves on by its own pump, not the task's)."""
    set_thread_budget(threads)
    state, _ = train_job(root, job_id, token)
    return state


def launch_ray(root: str, job_id: str, token: str, threads: int, *, address: str, max_jobs: int) -> Any:
    """Submit job ``job_id`` as a Ray task (one CPU, no retries) and return its ObjectRef.

    Args:
        root: the run store's root, as the cluster's nodes see it.
        job_id: the job's id.
        token: the token the job was marked running with.
        threads: the task's thread budget.
        address: ``"local"`` starts a local Ray instance with ``max_jobs`` CPUs; any other value
            is passed to ``ray.init(address=...)``. An already initialised Ray is used as it is.
        max_jobs: jobs running at once (the CPUs of a local instance).

    Raises:
        JobError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise JobError("ray_address: Ray is not installed; pip install 'kd-workbench[distributed]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address == "local":
            kwargs["num_cpus"] = max_jobs
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
    remote = ray.remote(num_cpus=1, max_retries=0)(ray_job)
    return remote.options(runtime_env={"env_vars": thread_env(threads)}).remote(root, job_id, token, threads)


def ray_task_ended(ref: Any) -> str | None:
    """Why the Ray task ``ref`` ended without its worker reporting, or ``None`` while it runs."""
    import ray

    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return None
    try:
        ray.get(ref)
    except Exception as err:  # noqa: BLE001 - reported as the job's error
        return f"Ray task ended without reporting: {one_line(err, typed=True)}"
    return "Ray task ended without reporting"
