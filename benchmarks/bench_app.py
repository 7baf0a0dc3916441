"""The Streamlit app in a real browser (headless Chromium driven by Playwright): how fast the first page
paints, how fast a computed view comes back, how long from Start to the first step point on the
Training page and to a CAM page, and whether ten sessions at once with three queued jobs stay correct
and small. Writes the "App" section of
docs/benchmarks.md and small screenshots of the main pages to assets/screenshots/.

    python benchmarks/bench_app.py [--sessions 10] [--no-screenshots] [--no-doc]

Needs the ``app`` and ``test`` extras (streamlit, playwright) and a ``chromium`` executable on PATH
(the script never downloads a browser).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from _report import machine, write_section  # noqa: E402
from browser import CHROMIUM_ARGS, MARK_JS, MARKED_JS, page_ready_js, plot_points_js, stop_jobs  # noqa: E402

from workbench.serve import free_port, stop  # noqa: E402

SHOTS = ROOT / "assets" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}
SHOT_VIEWPORT = {"width": 1400, "height": 1400}
SHOT_WIDTH = 1000
SHOT_MAX_BYTES = 150_000
PAGE_TIMEOUT_S = 300
LOAD_TIMEOUT_S = 240


def _proc_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and its descendants from /proc, job workers excluded."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, todo = [], [pid]
    while todo:
        cur = todo.pop()
        tree.append(cur)
        todo.extend(c for c, parent in parents.items() if parent == cur)
    total = 0
    for cur in tree:
        with contextlib.suppress(OSError, ValueError):
            if b"workbench.jobs.worker" in Path(f"/proc/{cur}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{cur}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class MemorySampler:
    """Samples the resident memory of the app process and its children (job workers excluded)."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every = pid, every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def rss(self) -> int:
        """Bytes resident now: psutil when installed, else /proc (Linux)."""
        try:
            import psutil
        except ImportError:
            return _proc_rss(self.pid)
        try:
            top = psutil.Process(self.pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                if "workbench.jobs.worker" in " ".join(proc.cmdline()):
                    continue
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


async def wait_ready(page: Any, title: str, min_plots: int = 0, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Wait until the page is ready (see :func:`page_ready_js`); raise at once on an error shown."""
    crash = '() => !!document.querySelector(\'[data-testid="stException"], [data-testid="stAlertContentError"]\')'
    await page.wait_for_function(
        f"() => ({page_ready_js(title, min_plots)})() || ({crash})()", timeout=timeout_s * 1000, polling=100
    )
    problem = await crash_text(page)
    if problem:
        raise RuntimeError(f"{title}: {problem}")


async def crash_text(page: Any) -> str | None:
    """The text of a Streamlit exception or error line on the page, or ``None``."""
    for sel in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        loc = page.locator(sel)
        if await loc.count():
            return (await loc.first.inner_text())[:300]
    return None


async def nav_click(page: Any, path: str) -> None:
    """Click the sidebar link of the page at ``path`` (client-side page switch, same session)."""
    await page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]').first.click()


def save_small_png(png: bytes, dest: Path) -> int:
    """Downscale a screenshot to :data:`SHOT_WIDTH` pixels wide, reduce it to a palette and save it
    optimized; returns the file size in bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    h = round(img.height * SHOT_WIDTH / img.width)
    img = img.resize((SHOT_WIDTH, h), Image.LANCZOS)
    for colors in (256, 128, 64):
        small = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        if buf.tell() <= SHOT_MAX_BYTES:
            break
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(buf.getvalue())
    return buf.tell()


async def _first_paint(page: Any, url: str, proc: Any, t0: float, out: dict[str, Any]) -> None:
    """(1) Wait for the app started at ``t0`` to paint its first page; record both times in ``out``."""
    while True:
        try:
            await page.goto(url, wait_until="commit", timeout=5000)
            break
        except Exception:  # noqa: BLE001 - not listening yet
            if proc.poll() is not None:
                raise SystemExit(f"error: the app exited ({proc.returncode})") from None
            if time.perf_counter() - t0 > 120:
                raise SystemExit("error: the app did not answer within 120 s") from None
            await asyncio.sleep(0.05)
    await page.locator('[data-testid="stMainBlockContainer"] h1').first.wait_for(timeout=120_000)
    out["first_paint_s"] = time.perf_counter() - t0
    await page.get_by_role("button", name="Start", exact=True).wait_for(timeout=120_000)
    await wait_ready(page, "Distillation Workbench")
    out["first_complete_s"] = time.perf_counter() - t0
    print(f"first page painted {out['first_paint_s']:.2f} s, complete {out['first_complete_s']:.2f} s")


async def _first_step_point(page: Any, t_click: float, out: dict[str, Any]) -> None:
    """(3a) After Start and the link to Training: wait until the Training page, following the job by
    itself (no reload), has drawn the run's first step point; record the time since the click."""
    await page.wait_for_function(page_ready_js("Training", 0), timeout=PAGE_TIMEOUT_S * 1000, polling=100)
    await page.evaluate(MARK_JS)
    await page.wait_for_function(f"() => ({plot_points_js('by step')})() >= 1", timeout=PAGE_TIMEOUT_S * 1000,
                                 polling=100)
    out["start_to_step_s"] = time.perf_counter() - t_click
    if not await page.evaluate(MARKED_JS):
        raise SystemExit("error: the Training page was reloaded while it followed the job")
    print(f"Start -> first step point on the Training page {out['start_to_step_s']:.1f} s")


async def _start_to_cams(page: Any, url: str, root: Path, queue: Any, out: dict[str, Any]) -> tuple[dict, str]:
    """(3) Click Start (a 2-epoch KD run, the form's defaults), follow it on the Training page to its
    first step point (:func:`_first_step_point`), then wait until its CAM page is painted; record the
    times in ``out``. Returns ``(the job's config, the KD run's id)``."""
    t_click = time.perf_counter()
    await page.get_by_role("button", name="Start", exact=True).click()
    await page.get_by_text("Queued job").wait_for(timeout=60_000)
    await page.get_by_role("link", name="Watch it on the Training page").click()
    await _first_step_point(page, t_click, out)
    jobs = queue.list()
    assert len(jobs) == 1 and jobs[0].config["train"]["epochs"] == 2, jobs
    assert [m["name"] for m in jobs[0].config["distill"]["methods"]] == ["kd"], jobs[0].config
    job_id = jobs[0].id
    while not queue.get(job_id).done:
        await asyncio.sleep(0.2)
    t_done = time.perf_counter()
    job = queue.get(job_id)
    if job.state != "finished":
        raise SystemExit(f"error: the KD job ended {job.state}: {job.error}\n{queue.log(job_id)}")
    kd = job.run_id
    await page.goto(f"{url}/cams?run={kd}", wait_until="commit")
    await wait_ready(page, "Class activation maps", 2)
    out["start_to_cams_s"] = time.perf_counter() - t_click
    out["start_to_finished_s"] = t_done - t_click
    status = json.loads((root / kd / "status.json").read_text())
    job_started = datetime.fromisoformat(job.started)
    out["worker_setup_s"] = (datetime.fromisoformat(status["started"]) - job_started).total_seconds()
    out["kd_train_s"] = (
        datetime.fromisoformat(status["finished"]) - datetime.fromisoformat(status["started"])
    ).total_seconds()
    print(f"Start -> CAM page {out['start_to_cams_s']:.1f} s (job finished after {out['start_to_finished_s']:.1f} s)")
    return jobs[0].config, kd


async def _repaint(page: Any, url: str, repeats: int, out: dict[str, Any]) -> None:
    """(2) A view already computed repaints after switching back to it (sidebar clicks, one session)."""
    await page.goto(url, wait_until="commit")
    await wait_ready(page, "Distillation Workbench")
    await nav_click(page, "similarity")
    await wait_ready(page, "Feature similarity", 2)
    await nav_click(page, "agreement")
    await wait_ready(page, "Agreement", 1)
    back = []
    for _ in range(repeats):
        t = time.perf_counter()
        await nav_click(page, "similarity")
        await wait_ready(page, "Feature similarity", 2, timeout_s=120)
        back.append(time.perf_counter() - t)
        await nav_click(page, "agreement")
        await wait_ready(page, "Agreement", 1, timeout_s=120)
    out["repaint_s"] = statistics.median(back)
    out["repaint_all"] = back
    print(f"repaint after switching back: median {out['repaint_s']:.2f} s of {back}")


async def _screenshots(page: Any, url: str, kd: str, scratch: str) -> dict[str, int]:
    """Small screenshots of the main pages into :data:`SHOTS`; their sizes in bytes by page."""
    views = [
        ("home", "", "Distillation Workbench", 0),
        ("training", f"training?run={kd}", "Training", 1),
        ("cams", f"cams?run={kd}&scratch={scratch}", "Class activation maps", 2),
        ("similarity", f"similarity?run={kd}", "Feature similarity", 2),
        ("landscape", f"landscape?run={kd}", "Loss landscape", 1),
        ("agreement", f"agreement?run={kd}", "Agreement", 1),
        ("compare", f"compare?runs={kd},{scratch}", "Compare runs", 1),
        ("doctor", f"doctor?run={kd}&scratch={scratch}&examine=1", "Student doctor", 0),
    ]
    sizes = {}
    await page.set_viewport_size(SHOT_VIEWPORT)  # tall enough to show each page's first figure
    for name, path, title, plots in views:
        await page.goto(f"{url}/{path}", wait_until="commit")
        await wait_ready(page, title, plots)
        if name == "home":
            await page.locator('[data-testid="stDataFrame"]').wait_for(timeout=60_000)
        await asyncio.sleep(1.0)  # let plotly finish its transitions
        problem = await crash_text(page)
        if problem:
            print(f"warning: {name}: {problem}")
        sizes[name] = save_small_png(await page.screenshot(), SHOTS / f"{name}.png")
        print(f"screenshot {name}: {sizes[name] / 1000:.0f} kB")
    return sizes


async def _load_test(
    browser: Any, url: str, queue: Any, config: dict, kd: str, scratch: str, sessions: int, pid: int
) -> dict[str, Any]:
    """(4) ``sessions`` browser sessions opening pages while 3 one-epoch jobs queue; the figures of it."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    from workbench.config import validate_config

    base = {**config, "train": {**config["train"], "epochs": 1}}
    queued = [queue.submit(validate_config({**base, "seed": s, "name": f"load-{s}"}), label=f"load-{s}")
              for s in (1, 2, 3)]
    routes = [
        ("", "Distillation Workbench", 0),
        (f"training?run={kd}", "Training", 1),
        (f"agreement?run={kd}", "Agreement", 1),
        (f"compare?runs={kd},{scratch}", "Compare runs", 1),
        (f"cams?run={kd}", "Class activation maps", 2),
        (f"similarity?run={kd}", "Feature similarity", 2),
    ]
    errors: list[str] = []
    timeouts: list[str] = []
    loads: list[float] = []

    def all_done() -> bool:
        return all(queue.get(j.id).done for j in queued)

    async def session(i: int) -> int:
        sctx = await browser.new_context(viewport={"width": 1200, "height": 800})
        spage = await sctx.new_page()
        count = 0
        try:
            while count < len(routes) or not all_done():
                path, title, plots = routes[(i + count) % len(routes)]
                t = time.perf_counter()
                try:
                    await spage.goto(f"{url}/{path}", wait_until="commit")
                    await wait_ready(spage, title, plots, timeout_s=LOAD_TIMEOUT_S)
                    loads.append(time.perf_counter() - t)
                    problem = await crash_text(spage)
                    if problem:
                        errors.append(f"session {i} {path or 'home'}: {problem}")
                except PlaywrightTimeout:
                    timeouts.append(f"session {i} {path or 'home'}")
                except Exception as err:  # noqa: BLE001 - recorded as an error of the run
                    errors.append(f"session {i} {path or 'home'}: {type(err).__name__}: {str(err)[:200]}")
                count += 1
        finally:
            await sctx.close()
        return count

    sampler = MemorySampler(pid)
    t = time.perf_counter()
    with sampler:
        counts = await asyncio.gather(*(session(i) for i in range(sessions)))
    return {
        "sessions": sessions,
        "page_loads": sum(counts),
        "median_load_s": statistics.median(loads) if loads else float("nan"),
        "max_load_s": max(loads) if loads else float("nan"),
        "errors": errors,
        "timeouts": timeouts,
        "jobs": {queue.get(j.id).name: queue.get(j.id).state for j in queued},
        "peak_rss_mb": sampler.peak / 2**20,
        "seconds": time.perf_counter() - t,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from workbench import serve
    from workbench.config import validate_config
    from workbench.jobs import JobQueue

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("error: no chromium executable on PATH")
    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    root = tmp / "runs"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    log = open(tmp / "app.log", "wb")  # noqa: SIM115 - closed in finally
    proc = None
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(viewport=VIEWPORT)
            page = await ctx.new_page()

            # (1) first page painted after the app process is started (the browser is already up)
            t0 = time.perf_counter()
            proc = serve.start(port=port, host="127.0.0.1", runs=root, max_jobs=1, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
            await _first_paint(page, url, proc, t0, out)

            # (3) click Start (a 2-epoch KD run, the form's defaults) -> its CAM page painted
            queue = JobQueue(root, max_jobs=1)
            config, kd = await _start_to_cams(page, url, root, queue, out)

            # a scratch student too (compare and the doctor's sharpness rule), queued directly
            scratch_cfg = validate_config(
                {**config, "kind": "student", "name": "scratch", "distill": {"methods": [{"name": "none"}],
                                                                              "ce_weight": 1.0}}
            )
            sjob = queue.submit(scratch_cfg, label="scratch")
            queue.pump()

            # (2) a view already computed repaints after switching back to it (sidebar clicks, one session)
            scratch = queue.wait(sjob.id, timeout=900).run_id
            await _repaint(page, url, args.repeats, out)

            # screenshots of the main pages
            if not args.no_screenshots:
                out["shots"] = await _screenshots(page, url, kd, scratch)

            if args.skip_load:
                return out
            # (4) concurrent sessions opening pages while 3 jobs queue
            out["load"] = await _load_test(browser, url, queue, config, kd, scratch, args.sessions, proc.pid)
            print(json.dumps(out["load"], indent=1))
            out["load_after"] = os.getloadavg()[0]
        finally:
            await browser.close()
            stop_jobs(root)
            if proc is not None:
                stop(proc)
            log.close()
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(out: dict[str, Any], sessions: int) -> str:
    load = out["load"]
    jobs_ok = all(s == "finished" for s in load["jobs"].values())
    no_error = not load["errors"]
    mem_ok = load["peak_rss_mb"] < 2048
    lines = [
        "## App",
        "",
        "`python benchmarks/bench_app.py` — the Streamlit app (`workbench.serve.start`, one job at a time) on a "
        "fresh run store, driven by headless Chromium through Playwright; the embedded MNIST subset, "
        f"`cnn_small` students of the shipped `cnn_large` teacher. Machine: {machine()}; 1-minute load average "
        f"{out['load_before']:.1f} before and {out['load_after']:.1f} after the run ("
        + (
            "a quiet machine before it; the load at the end is the benchmark's own sessions and jobs"
            if out["load_before"] < 1.0
            else "other processes shared the cores"
        )
        + ").",
        "",
        "| measurement | figure | target | |",
        "|---|---|---|---|",
        f"| first page painted after the app process starts (Home title; the whole page: {out['first_complete_s']:.1f} s)"
        f" | {out['first_paint_s']:.1f} s | <= 5 s | {verdict(out['first_paint_s'] <= 5)} |",
        f"| a computed view (Feature similarity) repainted after switching back to it (median of "
        f"{len(out['repaint_all'])}) | {out['repaint_s']:.2f} s | <= 1 s | {verdict(out['repaint_s'] <= 1)} |",
        f"| Start on a 2-epoch KD run -> its first step point drawn on the Training page, which follows the job "
        f"without a reload | {out['start_to_step_s']:.1f} s | <= 10 s | {verdict(out['start_to_step_s'] <= 10)} |",
        f"| Start on a 2-epoch KD run -> its CAM page painted (the job: {out['start_to_finished_s']:.1f} s, of which "
        f"worker start-up {out['worker_setup_s']:.1f} s and training {out['kd_train_s']:.1f} s) "
        f"| {out['start_to_cams_s']:.1f} s | <= 60 s | "
        f"{verdict(out['start_to_cams_s'] <= 60)} |",
        f"| {sessions} browser sessions opening pages while 3 jobs queue: {load['page_loads']} page loads in "
        f"{load['seconds']:.0f} s (median {load['median_load_s']:.1f} s, slowest {load['max_load_s']:.1f} s); "
        f"app errors (an exception or an error line shown) | {len(load['errors'])} | none | {verdict(no_error)} |",
        f"| the same: page loads not finished within {LOAD_TIMEOUT_S} s | {len(load['timeouts'])} | | |",
        f"| the same: jobs finished | {sum(s == 'finished' for s in load['jobs'].values())} of {len(load['jobs'])} | all |"
        f" {verdict(jobs_ok)} |",
        f"| the same: peak memory of the app server (RSS of the Streamlit process and its children, job workers "
        f"excluded) | {load['peak_rss_mb']:.0f} MB | < 2 GB | {verdict(mem_ok)} |",
    ]
    if load["errors"]:
        lines += ["", "Errors seen:", ""] + [f"- {e}" for e in load["errors"][:10]]
    lines += [
        "",
        "Under load a page load counts once it has finished (or failed); the median and slowest times are over "
        "the finished ones. Times run from the event to the moment the page has finished its script run and drawn its plotly "
        "figures. The browser is started before the app process; the first paint includes Python and torch "
        "start-up and the first script run. Switching back uses the sidebar (same session), so the view is "
        "served from the analyses cache shared by all sessions. Screenshots of the pages are in "
        "`assets/screenshots/`.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent browser sessions in the load test")
    parser.add_argument("--repeats", type=int, default=3, help="switch-back repaints measured")
    parser.add_argument("--no-screenshots", action="store_true", help="do not rewrite assets/screenshots/")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--skip-load", action="store_true",
                        help="stop before the concurrent-sessions test (implies --no-doc)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run store and the app log")
    args = parser.parse_args()
    out = asyncio.run(bench(args))
    if args.skip_load:
        return
    body = report(out, args.sessions)
    print(body)
    if not args.no_doc:
        write_section("app", body)


if __name__ == "__main__":
    main()
