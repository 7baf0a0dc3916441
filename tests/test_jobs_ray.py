"""The job queue on Ray: a head started with ``ray start --head`` under Ray's default token
authentication runs a queued job, whose worker output reaches ``workbench jobs log``; a scheduler
without the head's token fails at once with one line naming what to set; an address where nothing
answers fails at once too."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from workbench.jobs import JobError, JobQueue  # noqa: E402
from workbench.jobs.ray_backend import _host_port, connect_ray, ray_job  # noqa: E402

QUICK = {
    "kind": "student",
    "data": {"dataset": "digits", "batch_size": 512},
    "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "train": {"epochs": 1, "snapshot_every_epoch": False},
}
#: Ray's own variables, which the tests set themselves
RAY_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without Ray's variables, with ``home`` as HOME (where Ray looks for
    ``.ray/auth_token``) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARS}
    return {**env, "HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **extra}


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head started as the README says (``ray start --head``) with Ray's defaults: a token in
    ``~/.ray/auth_token`` of its HOME, so the head runs with token authentication. Yields
    ``address`` and ``home`` (the HOME holding the token). Stopped through its own process and process
    group (not ``ray stop``, which would stop every Ray instance of the machine)."""
    cli = Path(sys.executable).parent / "ray"
    if not cli.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    base = Path(tempfile.mkdtemp(prefix="wbray"))  # short: Ray's socket paths must stay short
    home = base / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    port = _free_port()
    cmd = [str(cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={base / 'ray'}"]
    log = open(base / "head.log", "wb")  # noqa: SIM115 - open while the head runs
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(home), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (base / "head.log").read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                tail = (base / "head.log").read_text(errors="replace")[-400:]
                pytest.skip(f"a Ray head cannot start on this machine: {tail}")
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "home": home}
    finally:
        head.terminate()  # `ray start --block` stops the head's processes on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever of its group is left
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _schedule(root: Path, address: str, env: dict[str, str]) -> dict:
    """Queue QUICK in ``root`` and run the scheduler on Ray at ``address`` in its own process (the
    documented `workbench jobs worker --ray ADDRESS`) until nothing is left; the job's record and log."""
    queue = JobQueue(root, max_jobs=1)
    job = queue.submit(QUICK)
    worker = [sys.executable, "-m", "workbench.cli", "jobs", "worker", "--runs", str(root), "--ray", address,
              "--max-jobs", "1", "--until-idle", "--interval", "0.5"]
    done = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {"job": queue.get(job.id), "log": queue.log(job.id)}


@pytest.mark.slow
def test_a_job_runs_on_a_token_authenticated_head_and_its_output_reaches_the_log(ray_head, tmp_path):
    got = _schedule(tmp_path / "runs", ray_head["address"], _env(ray_head["home"]))
    job = got["job"]
    assert job.state == "finished", (job.error, got["log"])
    assert job.backend == "ray"
    assert "Ray task on " in got["log"]  # written by the task, on the head's node
    assert f"job {job.id}: finished" in got["log"]  # the worker's own last line


@pytest.mark.slow
def test_a_scheduler_without_the_heads_token_fails_at_once_saying_what_to_set(ray_head, tmp_path):
    empty = tmp_path / "home"  # no ~/.ray/auth_token: this scheduler has no token
    empty.mkdir()
    got = _schedule(tmp_path / "runs", ray_head["address"], _env(empty))
    job = got["job"]
    assert job.state == "failed"
    assert job.error.startswith(f"could not start: JobError: ray_address {ray_head['address']}: the Ray head uses ")
    assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the head's token>" in job.error
    assert "\n" not in job.error


def test_an_address_where_nothing_answers_fails_at_once(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # nothing of this process's Ray settings changes
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    port = _free_port()
    with pytest.raises(JobError) as caught:
        connect_ray(f"127.0.0.1:{port}", 1)
    assert str(caught.value).startswith(f"ray_address 127.0.0.1:{port}: no Ray head answers there (")
    assert f"`ray start --head --port={port}`" in str(caught.value)
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("[::1]:6379", ("::1", 6379)),
        ("head.example:6380", ("head.example", 6380)),
        ("auto", None),
        ("ray://head:10001", None),
        ("head", None),
        ("head:port", None),
    ],
)
def test_which_addresses_are_asked_before_connecting(address, expected):
    assert _host_port(address) == expected


def test_the_task_sends_its_output_to_the_jobs_log(tmp_path, monkeypatch, capsys):
    """The task body without Ray: its output lands in ``<store>/.jobs/<id>.log`` (a job that is not
    its to train is skipped), and this process's own output goes back where it was."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)  # the task sets its thread budget; put it back after
    threads = torch.get_num_threads()
    queue = JobQueue(tmp_path, max_jobs=1)
    job = queue.submit(QUICK)
    try:
        assert ray_job(str(tmp_path), job.id, "not-its-token", 1) == "skipped"
    finally:
        torch.set_num_threads(threads)
    assert queue.log(job.id) == f"Ray task on {socket.gethostname()} (pid {os.getpid()})\n"
    print("back on this process's output")
    assert capsys.readouterr().out == "back on this process's output\n"
    assert json.loads((queue.dir / f"{job.id}.json").read_text())["state"] == "queued"  # not claimed
