"""``workbench app``: start the Streamlit app (``app/main.py``) on a local address.

The app reads its run store and job settings from environment variables, which :func:`serve` sets
for the Streamlit process: ``WORKBENCH_RUNS`` (the store root), ``WORKBENCH_MAX_JOBS``,
``WORKBENCH_RAY_ADDRESS`` and ``WORKBENCH_WARM_WORKERS`` (``1``: the server's job queue keeps warm
worker processes, :mod:`workbench.jobs.warm`, so a queued job trains at once instead of after a
process start; when the app exits, they leave once idle) and, for a class, ``WORKBENCH_INSTRUCTOR_TOKEN``
(class mode: every session without the token is bound to its own workspace, :mod:`workbench.workspaces`).
The app's server process also runs the job queue's scheduler on a timer (:mod:`workbench.app_server`),
so the queue moves on with no browser open. Streamlit is started as ``python -m streamlit run app/main.py`` with a
loopback address by default, headless, without usage statistics, with small uploads and a minimal
toolbar.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: largest upload the app accepts, in megabytes (uploads are small images for the CAM pages)
MAX_UPLOAD_MB = 5
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


class ServeError(ValueError):
    """The app cannot be started; the message is one line naming the option."""


def app_script() -> Path:
    """``app/main.py`` beside the ``workbench`` package."""
    return Path(__file__).resolve().parent.parent / "app" / "main.py"


def _check_host(host: str) -> str:
    if not isinstance(host, str) or not host.strip():
        raise ServeError(f"--host: expected an address such as 127.0.0.1, got {host!r}")
    host = host.strip()
    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(part.isalnum() or "-" in part for part in host.split(".")):
            raise ServeError(f"--host: {host!r} is not an IP address or a host name") from None
    return host


def build_command(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    headless: bool = True,
    python: str | None = None,
) -> list[str]:
    """The command line that starts the app: ``python -m workbench.app_server run app/main.py`` (the
    ``streamlit run`` command with the queue's scheduler in the same process) with the server address and
    port, headless mode, no usage statistics, uploads limited to
    :data:`MAX_UPLOAD_MB` MB and the minimal toolbar.

    Raises:
        ServeError: a bad port or host (one line naming the option).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ServeError(f"--port: expected an integer in 1..65535, got {port!r}")
    host = _check_host(host)
    return [
        python or sys.executable,
        "-m",
        "workbench.app_server",  # Streamlit, with the queue's scheduler on a timer in the same process
        "run",
        str(app_script()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true" if headless else "false",
        "--browser.gatherUsageStats",
        "false",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--client.toolbarMode",
        "minimal",
        "--server.fileWatcherType",
        "none",
    ]


def build_env(
    runs: str | Path | None = None,
    max_jobs: int | None = None,
    ray_address: str | None = None,
    base: dict[str, str] | None = None,
    warm: bool = True,
    instructor_token: str | None = None,
) -> dict[str, str]:
    """The environment of the app process: ``base`` (default this process's) with
    ``WORKBENCH_RUNS`` (absolute), ``WORKBENCH_MAX_JOBS`` and ``WORKBENCH_RAY_ADDRESS`` set when given,
    and ``WORKBENCH_WARM_WORKERS`` ``1`` with ``warm`` (``0`` without; a value ``base`` holds stays),
    and ``WORKBENCH_INSTRUCTOR_TOKEN`` when ``instructor_token`` is given (class mode).

    Raises:
        ServeError: ``max_jobs`` is not a positive integer, ``runs`` is an existing file, or the token
            is too short or has characters a link would mangle.
    """
    env = dict(os.environ if base is None else base)
    if runs is not None:
        root = Path(runs).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise ServeError(f"--runs: {root} is a file, expected a folder")
        env["WORKBENCH_RUNS"] = str(root)
    if max_jobs is not None:
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            raise ServeError(f"--max-jobs: expected an integer >= 1, got {max_jobs!r}")
        env["WORKBENCH_MAX_JOBS"] = str(max_jobs)
    if ray_address is not None:
        if not ray_address.strip():
            raise ServeError("--ray-address: empty; give 'local' or host:port")
        env["WORKBENCH_RAY_ADDRESS"] = ray_address.strip()
    from workbench.workspaces import TOKEN_ENV, WorkspaceError, check_token

    given, where = (instructor_token, "--instructor-token") if instructor_token is not None else (
        env.get(TOKEN_ENV), f"${TOKEN_ENV}")
    try:
        token = check_token(given)
    except WorkspaceError as err:
        raise ServeError(f"{where}: {str(err).split(': ', 1)[-1]}") from None
    if token is None and instructor_token is not None:
        raise ServeError("--instructor-token: empty; give a token of at least 8 characters")
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from workbench.jobs.queue import WARM_ENV  # not at import: `workbench` starts without the queue

    env.setdefault(WARM_ENV, "1" if warm else "0")
    return env


def app_url(host: str, port: int) -> str:
    """The address to open in a browser (``0.0.0.0``/``::`` shown as ``localhost``)."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def start(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    runs: str | Path | None = None,
    max_jobs: int | None = None,
    ray_address: str | None = None,
    headless: bool = True,
    instructor_token: str | None = None,
    **popen: object,
) -> subprocess.Popen:
    """Start the app process and return it at once (the caller waits or stops it); ``instructor_token``
    turns class mode on (:func:`build_env`)."""
    if importlib.util.find_spec("streamlit") is None:
        raise ServeError("streamlit is not installed; install the app extra: pip install -e '.[app]'")
    if not app_script().is_file():
        raise ServeError(f"app script {app_script()} not found; reinstall the workbench from its source tree")
    cmd = build_command(port, host, headless)
    env = build_env(runs, max_jobs, ray_address, instructor_token=instructor_token)
    return subprocess.Popen(cmd, env=env, cwd=str(app_script().parent.parent), **popen)  # type: ignore[call-overload]


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that is free right now (the system picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Wait until the app at ``url`` answers its health check (``/_stcore/health``).

    Raises:
        ServeError: ``proc`` (the app process, when given) exited first, or no answer within
            ``timeout`` seconds.
    """
    import urllib.request  # not at import: every `workbench` command imports this module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServeError(f"the app exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise ServeError(f"the app did not answer at {url} within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop an app started with ``start(..., start_new_session=True)``: SIGTERM to its process group,
    SIGKILL when it has not ended ``timeout`` seconds later. Nothing happens when it already ended."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def class_lines(url: str, token: str | None) -> list[str]:
    """What ``workbench app`` prints about class mode: nothing without a token; with one, the students'
    link and the instructor's (the token in it: keep it to yourself)."""
    if not token:
        return []
    return [
        f"Class mode. Students open {url}/ and type a workspace name (the first to use a name keeps it).",
        f"Instructor link (every workspace, the class's queue, the Class overview page): {url}/?token={token}",
    ]


def serve(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    runs: str | Path | None = None,
    max_jobs: int | None = None,
    ray_address: str | None = None,
    headless: bool = True,
    instructor_token: str | None = None,
) -> int:
    """Run the app until it exits or Ctrl-C; print its URL (and, in class mode, the instructor link)
    first. The app's process runs the job queue's scheduler on a timer (:mod:`workbench.app_server`), so
    jobs start and dead workers are found with no browser open. Returns the exit code (0 on Ctrl-C).

    Args:
        port, host: where the server listens (default the loopback address only).
        runs: the run store folder (default ``$WORKBENCH_RUNS`` or ``./runs``).
        max_jobs: training jobs running at once (default: the queue's own choice).
        ray_address: run training jobs on Ray (``local`` or ``host:port``).
        headless: do not open a browser.
        instructor_token: class mode's token (default ``$WORKBENCH_INSTRUCTOR_TOKEN``; none: no class mode).
    """
    env = build_env(runs, max_jobs, ray_address, instructor_token=instructor_token)
    proc = start(port, host, runs, max_jobs, ray_address, headless, instructor_token=instructor_token)
    url = app_url(host, port)
    print(f"Distillation Workbench: {url}  (Ctrl-C stops it)", flush=True)
    from workbench.workspaces import TOKEN_ENV

    for line in class_lines(url, env.get(TOKEN_ENV)):
        print(line, flush=True)
    if env.get(TOKEN_ENV):  # a store served to a class gets the class's cap until the instructor sets one
        from workbench.jobs.settings import class_defaults
        from workbench.runs import default_root

        root = Path(env["WORKBENCH_RUNS"]) if "WORKBENCH_RUNS" in env else default_root()
        print(f"Queue: {class_defaults(root).line()} (change it with `workbench jobs cap N|none`).", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0


def app_command(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    runs: Path | None = None,
    max_jobs: int | None = None,
    ray_address: str | None = None,
    instructor_token: str | None = None,
) -> None:
    """Start the Streamlit app and print its URL.

    Wire it into the typer app with ``app.command("app")(app_command)`` after giving the
    parameters typer options (see :func:`typer_command`).
    """
    try:
        code = serve(port=port, host=host, runs=runs, max_jobs=max_jobs, ray_address=ray_address,
                     instructor_token=instructor_token)
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


def typer_command():  # pragma: no cover - exercised through the CLI
    """The ``workbench app`` command as a typer callback::

        app.command("app")(typer_command())

    Options: ``--port 8501``, ``--host 127.0.0.1``, ``--runs DIR``, ``--max-jobs N``,
    ``--ray-address ADDR``, ``--instructor-token TOKEN``.
    """
    import typer

    def app(
        port: int = typer.Option(DEFAULT_PORT, "--port", help="port to listen on"),
        host: str = typer.Option(DEFAULT_HOST, "--host", help="address to listen on (0.0.0.0 for all)"),
        runs: Path | None = typer.Option(None, "--runs", help="run store folder (default $WORKBENCH_RUNS or ./runs)"),
        max_jobs: int | None = typer.Option(None, "--max-jobs", min=1, help="training jobs running at once"),
        ray_address: str | None = typer.Option(None, "--ray-address", help="run jobs on Ray: 'local' or host:port"),
        instructor_token: str | None = typer.Option(
            None,
            "--instructor-token",
            help="class mode: sessions without this token are bound to their own workspace "
            "(default $WORKBENCH_INSTRUCTOR_TOKEN; at least 8 characters)",
        ),
    ) -> None:
        """Start the Streamlit app and print its URL (and, in class mode, the instructor link)."""
        app_command(port=port, host=host, runs=runs, max_jobs=max_jobs, ray_address=ray_address,
                    instructor_token=instructor_token)

    return app


__all__ = [
    "MAX_UPLOAD_MB",
    "ServeError",
    "app_command",
    "app_script",
    "app_url",
    "build_command",
    "build_env",
    "class_lines",
    "free_port",
    "serve",
    "start",
    "stop",
    "typer_command",
    "wait_ready",
]
