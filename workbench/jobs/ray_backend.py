"""The Ray backend of the job queue: a job runs as a Ray task on some node of a cluster (or of a
local Ray instance) instead of a local worker process.

The task's body is the same worker (:func:`workbench.jobs.runner.train_job`), with the thread
budget in its runtime environment; its output (stdout and stderr, file descriptors 1 and 2) goes to
the job's log, ``<store>/.jobs/<job id>.log``, as a local worker's does, so ``workbench jobs log``
shows it. The run store must be on storage the cluster shares. Ray is imported only when a job is
dispatched or checked this way (``pip install 'kd-workbench[distributed]'``).

Authentication: Ray (2.60, the version this is tested with) turns token authentication on for a
new local cluster (a token is generated into ``~/.ray/auth_token``), and ``ray start --head`` turns
it on whenever that file (or ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) gives a token. A process that connects to such a head
by address must run with ``RAY_AUTH_MODE=token`` and the same token, else every connection is
refused and ``ray.init`` gives up after about 20 s with only "Failed to connect to Ray cluster".
:func:`connect_ray` therefore turns token mode on when a token is available and ``RAY_AUTH_MODE``
is not set (what Ray itself does for ``address="auto"``), and asks the head once before
connecting, so a refused token or an unreachable head fails at once with one line saying what to
set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

from workbench.errors import one_line
from workbench.jobs.runner import set_thread_budget, train_job
from workbench.jobs.scheduling import thread_env
from workbench.jobs.state import JobError, jobs_dir
from workbench.procs import output_to

#: the environment variable Ray reads its authentication mode from (``token`` or ``disabled``)
AUTH_MODE_VAR = "RAY_AUTH_MODE"
#: the environment variable that gives Ray the cluster's token itself
AUTH_TOKEN_VAR = "RAY_AUTH_TOKEN"
#: seconds to wait for a head's port to answer before saying that nothing does
REACH_TIMEOUT_S = 5.0


def ray_job(root: str, job_id: str, token: str, threads: int) -> str:
    """The Ray task body: the same worker, in a Ray worker process on some node, its output in the
    job's log (``<root>/.jobs/<job_id>.log``, when this node sees the store); returns the job's
    final state (the queue moves on by its own pump, not the task's)."""
    log = jobs_dir(root) / f"{job_id}.log"
    with output_to(log) if log.parent.is_dir() else contextlib.nullcontext():
        print(f"Ray task on {socket.gethostname()} (pid {os.getpid()})", flush=True)
        set_thread_budget(threads)
        state, _ = train_job(root, job_id, token)
    return state


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` address (``[v6]:port`` too); ``None`` for ``auto``, a
    ``ray://`` client address or anything without a port, which Ray resolves itself."""
    if "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def _token_mode_if_token() -> None:
    """Run this process in Ray's token mode when ``RAY_AUTH_MODE`` is not set and a token is at
    hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``): the rule Ray
    applies to ``address="auto"``, applied to an explicit address. A Ray without token
    authentication has nothing to turn on."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    quiet = logging.getLogger(maybe_enable_token_auth_if_token_available.__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its warning speaks to a head's operator ("set RAY_AUTH_MODE=disabled")
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def _check_head(address: str) -> None:
    """Ask the head at ``address`` once, so that an unreachable head or a refused token is one
    line now rather than "Failed to connect to Ray cluster" after Ray's retries.

    Raises:
        JobError: nothing answers at the address, or the head refused this process's
            authentication (the line names ``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN``).
    """
    where = _host_port(address)
    if where is None:
        return
    host, port = where
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise JobError(
            f"ray_address {address}: no Ray head answers there ({reason}); start one with "
            f"`ray start --head --port={port}` or give the head's host:port"
        ) from None
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    try:
        GcsClient(address=f"{host}:{port}")
    except AuthenticationError:
        token_mode = os.environ.get(AUTH_MODE_VAR, "").lower() == "token"
        holder = "refused this process's token" if token_mode else "got no token from this process"
        raise JobError(
            f"ray_address {address}: the Ray head uses token authentication (Ray's default) and {holder}; "
            f"set {AUTH_MODE_VAR}=token and {AUTH_TOKEN_VAR}=<the head's token> (`ray get-auth-token` on "
            f"the head prints it) where jobs are scheduled, or start the head with {AUTH_MODE_VAR}=disabled"
        ) from None
    except Exception:  # noqa: BLE001 - anything else: ray.init below tries and reports it
        return


def connect_ray(address: str, max_jobs: int) -> None:
    """Connect this process to Ray, once (an already initialised Ray is used as it is).

    Args:
        address: ``"local"`` starts a local Ray instance with ``max_jobs`` CPUs (Ray sets up its
            own token authentication); ``host:port`` connects to a head (``ray start --head``):
            token mode is turned on when a token is at hand and ``RAY_AUTH_MODE`` is not set, and
            the head is asked once first (:func:`_check_head`); any other value (``auto``,
            ``ray://…``) is passed to ``ray.init(address=...)`` as it is.
        max_jobs: jobs running at once (the CPUs of a local instance).

    Raises:
        JobError: Ray is not installed, nothing answers at ``address``, the head refused this
            process's authentication (the line says what to set), or Ray could not connect.
    """
    try:
        import ray
    except ImportError:
        raise JobError("ray_address: Ray is not installed; pip install 'kd-workbench[distributed]'") from None
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        kwargs["num_cpus"] = max_jobs
    else:
        if _host_port(address) is not None:
            _token_mode_if_token()
        _check_head(address)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise JobError(
            f"ray_address {address}: {one_line(err)} (is the head's Ray the same version, and does "
            f"{AUTH_MODE_VAR} match the head's?)"
        ) from None


def launch_ray(root: str, job_id: str, token: str, threads: int, *, address: str, max_jobs: int) -> Any:
    """Submit job ``job_id`` as a Ray task (one CPU, no retries) and return its ObjectRef.

    Args:
        root: the run store's root, as the cluster's nodes see it.
        job_id: the job's id.
        token: the token the job was marked running with.
        threads: the task's thread budget.
        address: where Ray runs (:func:`connect_ray`): ``"local"`` or a head's ``host:port``.
        max_jobs: jobs running at once (the CPUs of a local instance).

    Raises:
        JobError: Ray is not installed, or cannot be reached or authenticated with (one line
            naming what to set; see :func:`connect_ray`).
    """
    connect_ray(address, max_jobs)
    import ray

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
