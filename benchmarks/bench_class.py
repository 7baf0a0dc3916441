"""A class of thirty on one server: browser sessions, each in its own workspace with two tabs, while
training jobs run, then a restart of the server in the middle of a run of jobs. Writes the "A class on
one server" section of docs/benchmarks.md.

    python benchmarks/bench_class.py [--sessions 30] [--pages 2] [--jobs 6] [--out FILE] [--no-doc]

1. Prepared runs: each session that opens an analysis page gets a finished KD run in its own workspace
   (the demo's KD student on a small slice of MNIST), trained through the job queue before the app starts.
2. The class: the app starts (``workbench.serve.start``, ``--max-jobs 3``, a fresh run store) with
   ``--jobs`` demo jobs of ``--epochs`` epochs queued (three train at once, the rest wait);
   ``--sessions`` browser contexts (``?workspace=student-NN``) each open ``--pages`` tabs at once on a
   cold server (Home and Training, or Training and an analysis page of the workspace's finished run) and
   keep them open until every job is final, looking at them for an error shown meanwhile and at the end.
   Recorded: errors shown, page paint times (navigation until the page finished its script run and drew
   its figures, as ``bench_app.py`` measures), the server's peak memory (sampled every 0.5 s), its CPU
   time and each job's end.
3. The restart: more jobs are queued; once three train and have logged steps, the server is stopped
   (``workbench.serve.stop``) and started again on the same store and port, with no browser open; every
   job must end finished, or failed with a reason naming its worker.

Needs the ``app`` and ``test`` extras (streamlit, playwright, psutil) and a ``chromium`` executable on
PATH (the script never downloads a browser). Every wait has a deadline, and ``--timeout`` bounds the
whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from _report import machine, write_section  # noqa: E402
from bench_app import MemorySampler, crash_text, verdict, wait_ready  # noqa: E402
from browser import CHROMIUM_ARGS, PLOTS_JS, stop_jobs  # noqa: E402

from workbench.serve import free_port, stop  # noqa: E402
from workbench.vocabulary import term  # noqa: E402

WORKSPACE_PARAM = term("workspace").url or "workspace"
#: (path, title, figures drawn) of the analysis pages a session opens on its finished run, in turn
ANALYSIS_PAGES = [
    ("agreement", "Agreement", 1),
    ("similarity", "Feature similarity", 2),
    ("cams", "Class activation maps", 2),
]
HOME = ("", "Distillation Workbench", 0)
TRAINING = ("training", "Training", 0)
#: the server's memory target (bytes): the app process and its children
MEMORY_TARGET = 3 * 2**30
#: the text Python shows for a module used before its first import finished (a race on a cold import)
PARTIAL_IMPORT = "partially initialized module"
BODY_HAS_PARTIAL = f"() => document.body.innerText.includes({json.dumps(PARTIAL_IMPORT)})"
WARNING_SEL = '[data-testid="stAlertContentWarning"]'
#: JavaScript: the app's script state, the page title, figures drawn and stale elements of a tab
TAB_STATE_JS = f"""() => {{
  const app = document.querySelector('[data-testid="stApp"]');
  const h = document.querySelector('[data-testid="stMainBlockContainer"] h1');
  return {{state: app ? app.dataset.testScriptState || null : null, title: h ? h.innerText : null,
           plots: ({PLOTS_JS})(), stale: document.querySelectorAll('[data-stale="true"]').length}};
}}"""
#: what Streamlit's page says (in its console) when its first requests to the server time out
NO_CONNECTION = "Connection timed out"
#: seconds between two looks at a session's open tabs for an error shown while they stay open
LOOK_EVERY = 15.0


class TreeSampler(MemorySampler):
    """Samples the resident memory of the app process and all its descendants, job workers included
    (:class:`bench_app.MemorySampler` leaves the workers out): RSS summed (``peak``), and PSS summed
    (``peak_pss``: a page shared by several of the processes, such as torch's libraries, counted once
    in all)."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(pid, every)
        self.peak_pss = 0

    def rss(self) -> int:
        """Bytes resident now in the process tree of ``pid`` (psutil); records the PSS sum's peak too."""
        import psutil

        try:
            top = psutil.Process(self.pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = pss = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                total, pss = total + info.rss, pss + info.pss
        self.peak_pss = max(self.peak_pss, pss)
        return total


@dataclass
class Loads:
    """What the sessions saw: painted page times (s) and when each paint ended (``time.perf_counter()``),
    errors shown, loads that did not finish in time, warning lines shown (not errors; kept for the
    record)."""

    paints: list[float] = field(default_factory=list)
    painted_at: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def workspace_of(i: int) -> str:
    """The workspace of session ``i`` (0-based): ``student-01``, ``student-02``, ..."""
    return f"student-{i + 1:02d}"


def session_pages(i: int, pages: int) -> list[tuple[str, str, int]]:
    """The pages session ``i`` opens, one tab each: even sessions Home, Training, then an analysis page;
    odd ones Training, an analysis page, then Home; repeated to ``pages`` tabs."""
    analysis = ANALYSIS_PAGES[(i // 2) % len(ANALYSIS_PAGES)]
    cycle = [HOME, TRAINING, analysis] if i % 2 == 0 else [TRAINING, analysis, HOME]
    return [cycle[k % len(cycle)] for k in range(pages)]


def needs_run(i: int, pages: int) -> bool:
    """Whether session ``i`` opens an analysis page (its workspace then needs a finished run)."""
    return any(p in ANALYSIS_PAGES for p in session_pages(i, pages))


def page_url(url: str, path: str, workspace: str, run_id: str | None) -> str:
    """The address of page ``path`` for ``workspace``; an analysis page names the run ``run_id``."""
    query = {"run": run_id} if run_id and path not in ("", "training") else {}
    return f"{url}/{path}?{urlencode({**query, WORKSPACE_PARAM: workspace})}"


def demo_job_config(k: int, epochs: int, name: str, train_subset: int | None = None) -> Any:
    """Job ``k``'s config: the demo's scratch student (even ``k``) or KD student (odd), seed ``k // 2``,
    ``epochs`` epochs, named ``name``, on the first ``train_subset`` training images when given."""
    from workbench.config import validate_config
    from workbench.demo import demo_configs

    cfg = demo_configs(epochs, seed=k // 2)[k % 2].model_dump(mode="json")
    if train_subset is not None:
        cfg["data"] = {**cfg["data"], "train_subset": train_subset}
    return validate_config({**cfg, "name": name})


def prepare_runs(
    root: Path, sessions: list[int], subset: int, max_jobs: int, timeout: float
) -> dict[int, str]:
    """Train one finished KD run (one epoch on ``subset`` MNIST images) in the workspace of each of
    ``sessions`` through the job queue (cold workers of this process, before the app starts); returns
    the run id by session.

    Raises:
        SystemExit: a prepared job did not finish (its error and log shown).
    """
    from workbench.jobs import JobQueue

    queue = JobQueue(root, max_jobs=max_jobs, warm=False)
    jobs = {
        i: queue.submit(demo_job_config(1, 1, f"prepared-{i + 1:02d}", subset), workspace=workspace_of(i))
        for i in sessions
    }
    out = {}
    for i, job in jobs.items():
        done = queue.wait(job.id, timeout=timeout)
        if done.state != "finished":
            raise SystemExit(
                f"error: prepared run of {workspace_of(i)} ended {done.state}: {done.error}\n"
                f"{queue.log(job.id)}"
            )
        out[i] = done.run_id
    return out



async def start_server(server: dict[str, Any], port: int, root: Path, max_jobs: int, url: str) -> None:
    """Start the app on ``port`` and the store ``root`` (its output to ``server["log"]``), keep its
    process in ``server["proc"]`` and wait until it answers."""
    from workbench import serve

    server["proc"] = serve.start(port=port, host="127.0.0.1", runs=root, max_jobs=max_jobs, stdout=server["log"],
                                 stderr=subprocess.STDOUT, start_new_session=True)
    await asyncio.to_thread(serve.wait_ready, url, server["proc"], 120)

async def page_problem(page: Any) -> str | None:
    """An error the page shows: a Streamlit exception box or error line (:func:`bench_app.crash_text`),
    or a "partially initialized module" message anywhere; ``None`` when there is none."""
    problem = await crash_text(page)
    if problem:
        return problem
    if await page.evaluate(BODY_HAS_PARTIAL):
        return f"{PARTIAL_IMPORT} (in the page text)"
    return None


class Wire:
    """What a tab's connection to the server did: WebSockets opened, answered (a first frame received)
    and closed, and the last error the page's console showed."""

    def __init__(self, page: Any) -> None:
        self.opened = self.answered = self.closed = 0
        self.console: str | None = None
        page.on("websocket", self._socket)
        page.on("console", self._console)

    def _socket(self, ws: Any) -> None:
        self.opened += 1

        def first(_: Any) -> None:
            self.answered += 1
            ws.remove_listener("framereceived", first)

        ws.on("framereceived", first)
        ws.on("close", lambda _: setattr(self, "closed", self.closed + 1))

    def _console(self, msg: Any) -> None:
        # a resource the page could not fetch (on a machine without internet: an icon from a font CDN)
        # says nothing about the connection to the server
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.console = msg.text[:160]

    def __str__(self) -> str:
        said = f"; console: {self.console}" if self.console else ""
        return f"WebSockets opened {self.opened}, answered {self.answered}, closed {self.closed}{said}"


async def tab_state(page: Any, wire: Wire) -> str:
    """How far a tab that did not paint in time got: the app's script state, its title, figures drawn,
    elements still stale, and its connection (:class:`Wire`); one short line."""
    try:
        got = await page.evaluate(TAB_STATE_JS)
    except Exception as err:  # noqa: BLE001 - a tab that does not answer is a state too
        return f"no answer: {type(err).__name__}; {wire}"
    return (
        f"script {got['state'] or 'not started'}, title {got['title']!r}, {got['plots']} figures, "
        f"{got['stale']} stale elements; {wire}"
    )


async def open_tab(
    ctx: Any, address: str, title: str, plots: int, where: str, loads: Loads, timeout_s: float
) -> Any:
    """Open ``address`` in a new tab of ``ctx`` and wait until it is painted, at most ``timeout_s`` seconds
    in all; record the time, or the error shown, or the timeout, in ``loads``. Returns the tab."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    page = await ctx.new_page()
    wire = Wire(page)
    t = time.perf_counter()
    try:
        await page.goto(address, wait_until="commit", timeout=timeout_s * 1000)
        await wait_ready(page, title, plots, timeout_s=max(1.0, timeout_s - (time.perf_counter() - t)))
        loads.painted_at.append(time.perf_counter())
        loads.paints.append(loads.painted_at[-1] - t)
        problem = await page_problem(page)
        if problem:
            loads.errors.append(f"{where}: {problem}")
    except PlaywrightTimeout:
        loads.timeouts.append(f"{where} ({await tab_state(page, wire)})")
    except Exception as err:  # noqa: BLE001 - an error shown (wait_ready raises it) or a failed load
        loads.errors.append(f"{where}: {type(err).__name__}: {str(err)[:300]}")
    with contextlib.suppress(Exception):
        loc = page.locator(WARNING_SEL)
        if await loc.count():
            loads.warnings.append(f"{where}: {(await loc.first.inner_text())[:200]}")
    return page


async def look_again(tabs: list[tuple[str, Any]], loads: Loads) -> None:
    """Look at open tabs (``(where, page)`` pairs) for an error shown since they were painted; each tab's
    first one is recorded in ``loads``."""
    for where, page in tabs:
        with contextlib.suppress(Exception):
            problem = await page_problem(page)
            if problem and not any(
                e.startswith((f"{where}:", f"{where} (while open):")) for e in loads.errors
            ):
                loads.errors.append(f"{where} (while open): {problem}")


async def session(
    browser: Any,
    url: str,
    i: int,
    pages: int,
    runs: dict[int, str],
    done: asyncio.Event,
    loads: Loads,
    timeout_s: float,
) -> None:
    """Session ``i``: a browser context in its own workspace opening its pages (:func:`session_pages`) in
    tabs, all kept open until ``done`` is set, each looked at for an error every :data:`LOOK_EVERY` seconds
    meanwhile and once more at the end."""
    ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
    tabs = []
    try:
        for path, title, plots in session_pages(i, pages):
            where = f"{workspace_of(i)} {path or 'home'}"
            address = page_url(url, path, workspace_of(i), runs.get(i))
            tabs.append((where, await open_tab(ctx, address, title, plots, where, loads, timeout_s)))
        while True:
            finished = done.is_set()
            await look_again(tabs, loads)
            if finished:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=LOOK_EVERY)
    finally:
        with contextlib.suppress(Exception):
            await ctx.close()


async def watch_jobs(queue: Any, ids: list[str], deadline: float, every: float = 2.0) -> dict[str, Any]:
    """Poll the jobs ``ids`` until each is final or ``deadline`` (``time.monotonic()``) passes; returns
    the jobs as last read."""
    while True:
        jobs = await asyncio.to_thread(lambda: {j.id: j for j in queue.list() if j.id in ids})
        if all(j.done for j in jobs.values()) or time.monotonic() >= deadline:
            return jobs
        await asyncio.sleep(every)


def job_row(job: Any) -> dict[str, Any]:
    """The fields of a job the report keeps: name, workspace, state, error."""
    return {"name": job.name, "workspace": job.workspace, "state": job.state, "error": job.error}


async def the_class(
    browser: Any,
    url: str,
    queue: Any,
    job_ids: list[str],
    runs: dict[int, str],
    args: argparse.Namespace,
    pid: int,
) -> dict[str, Any]:
    """(2) ``args.sessions`` sessions at once while the queued jobs train; the figures of it."""
    loads, done = Loads(), asyncio.Event()
    t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
    with MemorySampler(pid, every=0.5) as server, TreeSampler(pid, every=0.5) as tree:
        tasks = [
            asyncio.create_task(session(browser, url, i, args.pages, runs, done, loads, args.page_timeout))
            for i in range(args.sessions)
        ]
        jobs = await watch_jobs(queue, job_ids, time.monotonic() + args.jobs_timeout)
        t_jobs = time.perf_counter() - t0
        opened = asyncio.gather(*tasks, return_exceptions=True)
        done.set()
        results = await asyncio.wait_for(opened, timeout=args.page_timeout * args.pages + 120)
    t_all, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    loads.errors += [
        f"session {i}: {type(r).__name__}: {str(r)[:200]}"
        for i, r in enumerate(results)
        if isinstance(r, BaseException)
    ]
    return {
        "sessions": args.sessions,
        "pages": args.pages,
        "page_loads": args.sessions * args.pages,
        "painted": len(loads.paints),
        "paint_p50_s": percentile(loads.paints, 50),
        "paint_p95_s": percentile(loads.paints, 95),
        "paint_max_s": max(loads.paints, default=float("nan")),
        "painted_while_jobs_ran": sum(at <= t0 + t_jobs for at in loads.painted_at),
        "errors": loads.errors,
        "timeouts": loads.timeouts,
        "warnings": loads.warnings,
        "jobs": [job_row(jobs[j]) for j in job_ids if j in jobs],
        "jobs_seconds": t_jobs,
        "seconds": t_all,
        "server_cpu_s": cpu,
        "peak_tree_mb": tree.peak / 2**20,
        "peak_tree_pss_mb": tree.peak_pss / 2**20,
        "peak_server_mb": server.peak / 2**20,
        "memory_samples": tree.samples,
    }


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far, its children not counted."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def mid_run(queue: Any, ids: list[str], max_jobs: int) -> tuple[str, dict[str, str]]:
    """Where the jobs ``ids`` stand: ``"ready"`` once as many of them run with at least one step
    logged (their runs' ``steps.jsonl``) as can (``max_jobs``, or fewer when fewer are left),
    ``"over"`` when every one is final, else ``"wait"``; and each job's state by name (with the steps
    logged by a running one)."""
    from workbench.runs.steps import STEP_LOG_FILE, read_step_log

    jobs = [j for j in queue.list() if j.id in ids]
    states, stepped = {}, 0
    for job in jobs:
        states[job.name] = job.state
        if job.state == "running" and job.run_id:
            steps = len(read_step_log(queue.root / job.run_id / STEP_LOG_FILE).records)
            states[job.name] = f"running, {steps} step record{'' if steps == 1 else 's'}"
            stepped += int(steps >= 1)
    left = sum(not j.done for j in jobs)
    if left == 0:
        return "over", states
    return ("ready" if stepped >= min(max_jobs, left) else "wait"), states


async def until(check: Any, deadline_s: float, every: float = 0.5) -> bool:
    """Call ``check`` (blocking, in a thread) until it is true or ``deadline_s`` seconds pass."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(every)
    return False


async def look_once(browser: Any, address: str, title: str, where: str, timeout_s: float) -> Loads:
    """One session opening one page (kept until painted), then closed; what it saw."""
    loads = Loads()
    ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        await open_tab(ctx, address, title, 0, where, loads, timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await ctx.close()
    return loads


async def restart(
    browser: Any,
    url: str,
    port: int,
    root: Path,
    queue: Any,
    server: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """(3) Queue ``args.restart_jobs`` jobs; once the running ones have logged steps, stop the server and
    start it again on the same store and port with no browser open; wait until every job is final."""

    ids = [
        queue.submit(
            demo_job_config(k, args.epochs, f"restart-{k + 1:02d}"),
            workspace=workspace_of(k % args.sessions),
            label=f"restart-{k + 1:02d}",
        ).id
        for k in range(args.restart_jobs)
    ]
    want = min(args.max_jobs, args.restart_jobs)
    out: dict[str, Any] = {"jobs_queued": len(ids)}

    def running() -> bool:
        return sum(j.state == "running" for j in queue.list() if j.id in ids) >= want

    # the server's scheduler should start them with no page open; a page view starts them otherwise
    out["started_without_a_page"] = await until(running, 20)
    nudge = None
    if not out["started_without_a_page"]:
        nudge = await browser.new_context()
        await (await nudge.new_page()).goto(page_url(url, "", workspace_of(0), None), wait_until="commit")
    ready = await until(lambda: mid_run(queue, ids, args.max_jobs)[0] != "wait", args.jobs_timeout, every=0.2)
    if nudge is not None:
        await nudge.close()
    where, out["at_stop"] = await asyncio.to_thread(mid_run, queue, ids, args.max_jobs)
    if not ready or where != "ready":
        raise SystemExit(
            f"error: the restart's jobs were not in the middle of a run ({where} after "
            f"{args.jobs_timeout:.0f} s): {out['at_stop']}; queue more or longer jobs "
            "(--restart-jobs, --epochs)"
        )
    t = time.perf_counter()
    await asyncio.to_thread(stop, server["proc"])
    out["stop_s"] = time.perf_counter() - t
    t = time.perf_counter()
    await start_server(server, port, root, args.max_jobs, url)
    out["back_s"] = time.perf_counter() - t
    jobs = await watch_jobs(queue, ids, time.monotonic() + args.jobs_timeout)
    out["jobs"] = [job_row(jobs[j]) for j in ids if j in jobs]
    out["after_s"] = time.perf_counter() - t
    seen = await look_once(
        browser,
        page_url(url, "training", workspace_of(0), None),
        "Training",
        f"{workspace_of(0)} training after the restart",
        args.page_timeout,
    )
    out["page_after"] = {"painted": len(seen.paints), "errors": seen.errors + seen.timeouts}
    return out


def retire_workers(root: Path, grace: float = 20.0) -> None:
    """Ask the store's warm workers to leave; SIGTERM those still alive ``grace`` seconds later."""
    from workbench.jobs import JobQueue
    from workbench.procs import pid_alive

    queue = JobQueue(root, max_jobs=1, warm=False)
    pids = [w["pid"] for w in queue.workers() if isinstance(w.get("pid"), int)]
    queue.retire_workers()
    end = time.monotonic() + grace
    while time.monotonic() < end and any(pid_alive(p) for p in pids):
        time.sleep(0.5)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark (prepared runs, the class, the restart); the figures."""
    from playwright.async_api import async_playwright

    from workbench.jobs import JobQueue

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("error: no chromium executable on PATH")
    tmp = Path(tempfile.mkdtemp(prefix="bench_class_"))
    root, port = tmp / "runs", free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"load_before": os.getloadavg()[0], "machine": machine()}
    server: dict[str, Any] = {"proc": None, "log": open(tmp / "app.log", "wb")}  # noqa: SIM115 - closed below
    try:
        t = time.perf_counter()
        wanted = [i for i in range(args.sessions) if needs_run(i, args.pages)]
        runs = await asyncio.to_thread(
            prepare_runs, root, wanted, args.subset, args.max_jobs, args.jobs_timeout
        )
        out["prepared"] = {"runs": len(runs), "seconds": time.perf_counter() - t}
        print(f"prepared {len(runs)} finished runs in {out['prepared']['seconds']:.0f} s", flush=True)
        queue = JobQueue(root, max_jobs=args.max_jobs, warm=False)  # submits and reads; never pumps
        job_ids = [
            queue.submit(
                demo_job_config(k, args.epochs, f"class-{k + 1:02d}"),
                workspace=workspace_of(k % args.sessions),
                label=f"class-{k + 1:02d}",
            ).id
            for k in range(args.jobs)
        ]
        await start_server(server, port, root, args.max_jobs, url)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                out["class"] = await the_class(browser, url, queue, job_ids, runs, args, server["proc"].pid)
                print(json.dumps(out["class"], indent=1), flush=True)
                out["load_after"] = os.getloadavg()[0]
                if args.restart_jobs:
                    out["restart"] = await restart(browser, url, port, root, queue, server, args)
                    print(json.dumps(out["restart"], indent=1), flush=True)
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(stop_jobs, root)
        if server["proc"] is not None:  # first: a live server would start new warm workers
            await asyncio.to_thread(stop, server["proc"])
        await asyncio.to_thread(retire_workers, root)
        server["log"].close()
        partial = (tmp / "app.log").read_text(errors="replace").count(PARTIAL_IMPORT)
        out["server_log_partial_imports"] = partial
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return out


def _ended(jobs: list[dict[str, Any]]) -> str:
    """``"a finished, b failed, ..."`` over ``jobs`` (rows of :func:`job_row`)."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["state"]] = counts.get(job["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def not_lost(jobs: list[dict[str, Any]]) -> bool:
    """Whether every job ended finished, or failed with a reason naming its worker."""
    return all(
        j["state"] == "finished" or (j["state"] == "failed" and "worker" in (j["error"] or "")) for j in jobs
    )


def _setting(out: dict[str, Any], args: argparse.Namespace) -> str:
    """The paragraph under the title: the command, what runs, the machine and its load."""
    command = (
        f"python benchmarks/bench_class.py --sessions {args.sessions} --pages {args.pages} --jobs {args.jobs}"
    )
    quiet = "a quiet machine before it" if out["load_before"] < 1 else "other work shared the cores"
    return (
        f"`{command}` — the Streamlit app (`workbench.serve.start`, `--max-jobs {args.max_jobs}`) on a "
        f"fresh run store, driven by headless Chromium through Playwright on the same machine. {args.jobs} "
        f"demo jobs of {args.epochs} epochs (`cnn_small` from scratch and distilled from the shipped MNIST "
        f"teacher, alternately) are queued before the server starts; then {args.sessions} browser contexts, "
        f"each in its own workspace (`?workspace=student-NN`), open {args.pages} tabs at once on the cold "
        "server: Home and Training, or Training and an analysis page (Agreement, Feature similarity or Class "
        f"activation maps, in turn) of a finished KD run of their own workspace ({out['prepared']['runs']} "
        f"such runs, one epoch on {args.subset} images, trained beforehand in "
        f"{out['prepared']['seconds']:.0f} s). The tabs stay open until every job is final (looked at for an "
        f"error every {LOOK_EVERY:.0f} s). The browser runs on the same cores as the server and its job "
        f"workers. Machine: {out['machine']}; 1-minute load average {out['load_before']:.1f} when the run "
        f"started and {out['load_after']:.1f} when the class left ({quiet})."
    )


def _class_rows(cls: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The table's rows of the class: errors, paint times, tabs not painted, CPU, memory, jobs."""
    never = [t for t in cls["timeouts"] if NO_CONNECTION in t]
    finished = sum(j["state"] == "finished" for j in cls["jobs"])
    peak_ok = cls["peak_tree_mb"] * 2**20 < MEMORY_TARGET
    return [
        f'| errors shown (a Streamlit exception box, an error line, a "{PARTIAL_IMPORT}" message), at '
        f"paint or while the tabs stayed open | {len(cls['errors'])} | 0 | {verdict(not cls['errors'])} |",
        "| page paint, navigation until the page finished its script run and drew its figures: p50 / p95 / "
        f"slowest of the {cls['painted']} of {cls['page_loads']} tabs painted "
        f"({cls['painted_while_jobs_ran']} of them before the last job was final) | "
        f"{cls['paint_p50_s']:.1f} / {cls['paint_p95_s']:.1f} / {cls['paint_max_s']:.1f} s | "
        "p95 reported | |",
        f"| tabs not painted within {args.page_timeout:.0f} s (of which {len(never)} never connected: the "
        f'page\'s first requests to the server timed out and it said "{NO_CONNECTION}."; the others were '
        f"still running their script) | {len(cls['timeouts'])} | 0 | {verdict(not cls['timeouts'])} |",
        f"| CPU time of the Streamlit process while the class looked | {cls['server_cpu_s']:.0f} s in "
        f"{cls['seconds']:.0f} s ({cls['server_cpu_s'] / cls['seconds']:.2f} cores on average) | | |",
        "| peak memory of the server: RSS of the app process and all its descendants (the job workers it "
        f"started included; the browser not), summed, sampled with 0.5 s between samples "
        f"({cls['memory_samples']} samples) | {cls['peak_tree_mb']:.0f} MiB | < 3 GiB | {verdict(peak_ok)} |",
        "| the same, PSS summed (a page shared by several of these processes, such as torch's libraries, "
        f"counted once) | {cls['peak_tree_pss_mb']:.0f} MiB | | |",
        f"| the same as RSS without the job workers (the Streamlit process alone) | "
        f"{cls['peak_server_mb']:.0f} MiB | | |",
        f"| queued jobs finished while the class looked ({cls['jobs_seconds']:.0f} s until the last was "
        f"final) | {finished} of {len(cls['jobs'])} | all | {verdict(finished == len(cls['jobs']))} |",
    ]


def _restart_rows(rs: dict[str, Any]) -> list[str]:
    """The table's rows of the restart: how its jobs ended, and a page after it."""
    at_stop = _ended([{"state": s.split(",")[0]} for s in rs["at_stop"].values()])
    return [
        f"| restart: {rs['jobs_queued']} more jobs queued, the server stopped while {at_stop} (stopped in "
        f"{rs['stop_s']:.1f} s, answering again after {rs['back_s']:.1f} s), no browser open until every job "
        f"was final ({rs['after_s']:.0f} s): how the jobs ended | {_ended(rs['jobs'])} | none lost | "
        f"{verdict(not_lost(rs['jobs']))} |",
        "| the same: a Training page opened after the restart, errors shown | "
        f"{len(rs['page_after']['errors'])} | 0 | {verdict(not rs['page_after']['errors'])} |",
    ]


def report(out: dict[str, Any], args: argparse.Namespace) -> str:
    """The section of docs/benchmarks.md: the command, the setting and one row per measurement."""
    lines = ["## A class on one server", "", _setting(out, args), ""]
    lines += ["| measurement | figure | target | |", "|---|---|---|---|"]
    lines += _class_rows(out["class"], args)
    if "restart" in out:
        lines += _restart_rows(out["restart"])
    lines += _notes(out)
    return "\n".join(lines)


def _notes(out: dict[str, Any]) -> list[str]:
    """The paragraphs under the table: errors seen, failed jobs, how the restart's jobs started."""
    cls, lines = out["class"], []
    if cls["errors"]:
        lines += ["", "Errors seen:", ""] + [f"- {e}" for e in cls["errors"][:12]]
    if cls["timeouts"]:
        lines += ["", "Tabs not painted, with what they showed when the wait ended:", ""]
        lines += [f"- {t}" for t in cls["timeouts"][:12]]
        if len(cls["timeouts"]) > 12:
            lines.append(f"- and {len(cls['timeouts']) - 12} more (all in the `--out` file)")
    failed = [j for j in cls["jobs"] + out.get("restart", {}).get("jobs", []) if j["state"] != "finished"]
    if failed:
        lines += ["", "Jobs that did not finish:", ""] + [
            f"- {j['name']} ({j['workspace']}): {j['state']}: {j['error']}" for j in failed
        ]
    lines += [
        "",
        "A tab's paint time runs from its navigation to the moment the page has finished its script run and "
        "drawn its plotly figures (as in the App section); a session opens its second tab once the first is "
        "painted. The server's log held "
        f'{out["server_log_partial_imports"]} "{PARTIAL_IMPORT}" lines.',
    ]
    if "restart" in out:
        how = (
            "the server's scheduler started them with no page open"
            if out["restart"]["started_without_a_page"]
            else "they started at a page view (a session opened Home): none started within 20 s without one"
        )
        lines += [
            "",
            f"Restart: the jobs queued for it were started before the stop — {how}. The job workers are "
            "processes of their own session, so stopping the server leaves them training; after the restart "
            "the workers already running are no longer the new server's children. Each job, at the stop and "
            "at the end:",
            "",
        ]
        for job in out["restart"]["jobs"]:
            why = f" ({job['error']})" if job["error"] else ""
            lines.append(
                f"- {job['name']}: {out['restart']['at_stop'].get(job['name'], '?')} -> {job['state']}{why}"
            )
    return lines


async def bounded(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`bench` within ``args.timeout`` seconds; SIGTERM cancels it too, so its clean-up runs (the
    server, its job workers and the browser stopped, the temporary store removed)."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await asyncio.wait_for(bench(args), timeout=args.timeout)


def main() -> None:
    """Parse the options, run the benchmark, print its section and write it (and ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions, one workspace each")
    parser.add_argument("--pages", type=int, default=2, help="tabs each session opens")
    parser.add_argument("--jobs", type=int, default=6, help="jobs queued while the class looks")
    parser.add_argument(
        "--restart-jobs", type=int, default=5, help="jobs queued for the restart (0: no restart)"
    )
    parser.add_argument("--max-jobs", type=int, default=3, help="jobs the server runs at once")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each queued demo job")
    parser.add_argument("--subset", type=int, default=512, help="training images of each prepared run")
    parser.add_argument("--page-timeout", type=float, default=600.0, help="seconds a tab may take to paint")
    parser.add_argument("--jobs-timeout", type=float, default=1800.0, help="seconds the jobs may take")
    parser.add_argument("--timeout", type=float, default=5400.0, help="seconds the whole benchmark may take")
    parser.add_argument("--out", type=Path, help="write every figure as JSON to this file")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run store and the app log")
    args = parser.parse_args()
    for name in ("sessions", "pages", "jobs", "max_jobs", "epochs", "subset"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}")
    for name in ("page_timeout", "jobs_timeout", "timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}: expected seconds > 0, got {getattr(args, name)}")
    if args.restart_jobs < 0:
        parser.error(f"--restart-jobs: expected an integer >= 0, got {args.restart_jobs}")
    if args.sessions > 99:
        parser.error(f"--sessions: expected at most 99 (workspaces student-01..99), got {args.sessions}")
    try:
        out = asyncio.run(bounded(args))
    except TimeoutError:
        raise SystemExit(f"error: the benchmark did not end within --timeout {args.timeout:.0f} s") from None
    except asyncio.CancelledError:
        raise SystemExit(
            "error: stopped by SIGTERM (the server, its workers and the store cleaned up)"
        ) from None
    body = report(out, args)
    print(body)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    if not args.no_doc:
        write_section("class", body)


if __name__ == "__main__":
    main()
