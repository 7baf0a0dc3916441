"""The app end to end in a real browser: ``workbench.serve.start`` on a free loopback port with a fresh
run store, driven by Playwright on the system's Chromium (headless).

Home -> "Run the demo" (the click queues the demo pair; the test replaces it by the same pair with one
epoch each to stay short) -> both jobs finish -> ``/home`` opens Home as ``/`` does -> every page of the
KD run renders its plotly figures without an exception or an error line -> a copied URL opens the same
view in a fresh browser context.
Screenshots of every page land in the test's temporary folder (the path is printed).

Training that follows you: "Run the demo" -> the Training page shows the queued job, then the running
one, and a step point appears without a reload; Start -> Training shows that run. Experiments: a 2x2
grid with 2 seeds started from the Experiments page -> Compare shows 4 groups with mean ± std.

Needs the ``playwright`` package and a ``chromium`` executable (never downloads a browser): skipped
when either is missing, failed instead where ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from browser import (
    CHROMIUM_ARGS,
    IDLE_JS,
    MARK_JS,
    MARKED_JS,
    PLOTS_JS,
    page_ready_js,
    plot_points_js,
    served_app,
    stop_jobs,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: seconds a page may take to paint its figures (analyses run on a shared CPU)
PAGE_TIMEOUT_S = 150
#: seconds the one-epoch demo pair may take from queued to finished
JOBS_TIMEOUT_S = 300


def _need_browser() -> str:
    """The chromium executable; skip (fail in CI) when it or playwright is missing."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if reason is None and exe is None:
        reason = "no chromium executable on PATH (Debian: apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    return exe  # type: ignore[return-value]


def _wait_page(page: Any, title: str, min_plots: int, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Wait until the page shows ``title``, has finished its run and drew ``min_plots`` figures."""
    page.wait_for_function(page_ready_js(title, min_plots), timeout=timeout_s * 1000, polling=250)


def _assert_no_crash(page: Any, where: str) -> None:
    """No Streamlit exception block and no error line on the page."""
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{where}: exception shown: {exceptions.first.inner_text()[:500]}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: error shown: {errors.first.inner_text()[:500]}"


def _selectbox_values(page: Any) -> dict[str, str]:
    """Label -> shown value of every select box on the page."""
    out = {}
    boxes = page.locator('[data-testid="stSelectbox"] input[role="combobox"]')
    for i in range(boxes.count()):
        box = boxes.nth(i)
        out[box.get_attribute("aria-label") or str(i)] = box.input_value()
    return out


def test_app_end_to_end_in_chromium(tmp_path):
    exe = _need_browser()
    pytest.importorskip("streamlit")
    from playwright.sync_api import sync_playwright

    from workbench import serve
    from workbench.jobs import JobQueue, submit_demo

    root = tmp_path / "runs"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "app.log", "wb")  # noqa: SIM115 - closed in finally
    proc = serve.start(
        port=port, host="127.0.0.1", runs=root, max_jobs=1, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        serve.wait_ready(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()

                # ---- Home: the newcomer's demo button ----------------------------------------------
                page.goto(url, wait_until="domcontentloaded")
                page.get_by_role("button", name="Run the demo").click(timeout=PAGE_TIMEOUT_S * 1000)
                page.get_by_text("Queued 2 demo runs").wait_for(timeout=PAGE_TIMEOUT_S * 1000)
                _assert_no_crash(page, "home after the demo click")
                queue = JobQueue(root, max_jobs=1)
                clicked = queue.list()
                assert sorted(j.name for j in clicked) == ["demo-kd", "demo-scratch"]
                assert all(j.config["train"]["epochs"] == 2 for j in clicked)
                # the same pair with one epoch each keeps the suite short
                for job in clicked:
                    queue.stop(job.id)
                small = submit_demo(queue, epochs=1)
                for job in small:
                    final = queue.wait(job.id, timeout=JOBS_TIMEOUT_S)
                    assert final.state == "finished", (final.state, final.error, queue.log(job.id)[-2000:])
                by_name = {queue.get(j.id).name: queue.get(j.id).run_id for j in small}
                kd, scratch = by_name["demo-kd"], by_name["demo-scratch"]
                assert (root / kd / "status.json").is_file()

                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000)
                page.locator('[data-testid="stDataFrame"]').wait_for(timeout=30_000)  # the runs table
                assert "demo-kd" in _selectbox_values(page).get("Run", ""), _selectbox_values(page)
                _assert_no_crash(page, "home")
                page.screenshot(path=str(shots / "home.png"))

                # ---- /home is Home too (not "Page not found") --------------------------------------
                page.goto(f"{url}/home?workspace=*", wait_until="domcontentloaded")
                page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000)
                page.locator('[data-testid="stDataFrame"]').wait_for(timeout=30_000)
                assert page.locator('[data-testid="stMainBlockContainer"] h1').first.inner_text().startswith(
                    "Distillation Workbench")
                assert page.get_by_text("Page not found").count() == 0
                assert "demo-kd" in _selectbox_values(page).get("Run", ""), _selectbox_values(page)
                _assert_no_crash(page, "/home")

                # ---- every page of the KD run --------------------------------------------------------
                pages = [
                    ("training", f"run={kd}", "Training", 1),
                    ("cams", f"run={kd}&count=4", "Class activation maps", 2),
                    ("similarity", f"run={kd}&n_samples=128", "Feature similarity", 2),
                    ("landscape", f"run={kd}&n_samples=64&steps=5", "Loss landscape", 1),
                    ("agreement", f"run={kd}&n_samples=300", "Agreement", 1),
                    ("compare", f"runs={kd},{scratch}", "Compare runs", 1),
                    ("doctor", f"run={kd}&n_samples=100&scratch={scratch}&examine=1", "Student doctor", 0),
                ]
                for path, query, title, min_plots in pages:
                    page.goto(f"{url}/{path}?{query}", wait_until="domcontentloaded")
                    _wait_page(page, title, min_plots)
                    _assert_no_crash(page, path)
                    if path == "doctor":  # findings come with figures; no finding is a success line
                        assert page.evaluate(PLOTS_JS) >= 1 or page.locator(
                            '[data-testid="stAlertContentSuccess"]'
                        ).count() == 1
                    if path != "compare":
                        assert kd in page.url, f"{path}: the URL lost the run: {page.url}"
                        assert kd[-4:] in _selectbox_values(page).get("Run", ""), _selectbox_values(page)
                    page.screenshot(path=str(shots / f"{path}.png"))

                # ---- a copied URL opens the same view ------------------------------------------------
                page.goto(f"{url}/agreement?run={kd}&n_samples=300", wait_until="domcontentloaded")
                _wait_page(page, "Agreement", 1)
                seed = page.get_by_label("Seed", exact=True)
                seed.fill("3")
                seed.press("Enter")
                page.wait_for_function("() => location.search.includes('seed=3')", timeout=30_000)
                _wait_page(page, "Agreement", 1)
                _assert_no_crash(page, "agreement, seed 3")
                shown = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
                boxes = _selectbox_values(page)
                copied = page.url

                other = browser.new_context(viewport={"width": 1400, "height": 1000})
                fresh = other.new_page()
                fresh.goto(copied, wait_until="domcontentloaded")
                _wait_page(fresh, "Agreement", 1)
                _assert_no_crash(fresh, "agreement from the copied URL")
                assert fresh.get_by_label("Seed", exact=True).input_value() == "3"
                assert fresh.get_by_label("Samples", exact=True).input_value() == "300"
                assert _selectbox_values(fresh) == boxes
                assert fresh.locator('[data-testid="stMetricValue"]').all_inner_texts() == shown
                fresh.screenshot(path=str(shots / "agreement_copied_url.png"))
                other.close()
            finally:
                browser.close()
        print(f"\nscreenshots: {shots}")
        assert sorted(f.name for f in shots.iterdir()) == sorted(
            [f"{n}.png" for n in ("home", "training", "cams", "similarity", "landscape", "agreement", "compare",
                                  "doctor", "agreement_copied_url")]
        )
    finally:
        stop_jobs(root)
        serve.stop(proc)
        log.close()


# ---- training that follows you, and experiments ------------------------------------------------------
#: a scratch MLP on digits: the New-run form's URL for a run that takes seconds
TINY_FORM = {"dataset": "digits", "student": "mlp", "teacher": "none (train from scratch)", "methods": "none",
             "epochs": "1"}


@pytest.fixture
def served(tmp_path) -> Iterator[SimpleNamespace]:
    """The app on a fresh run store (one job at a time) and a headless Chromium page:
    ``url``, ``root``, ``page``, ``browser``."""
    exe = _need_browser()
    pytest.importorskip("streamlit")
    from playwright.sync_api import sync_playwright

    with served_app(tmp_path) as (url, root), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            yield SimpleNamespace(url=url, root=root, page=page, browser=browser)
        finally:
            browser.close()


def test_training_follows_the_demo_then_a_start(served):
    from workbench.jobs import JobQueue

    page, url, root = served.page, served.url, served.root
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Run the demo").click(timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_text("Queued 2 demo runs").wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_role("link", name="Open Training").click()
    page.wait_for_function(page_ready_js("Training", 0), timeout=PAGE_TIMEOUT_S * 1000)
    page.evaluate(MARK_JS)
    assert page.get_by_text("No runs yet").count() == 0
    # one job at a time: the second demo run waits, with its place and an estimated wait
    page.get_by_text("demo-kd is queued, position 1 · starts in about").wait_for(timeout=60_000)
    # the first one runs: its run opens by itself and a step point is drawn, with no reload
    page.wait_for_function(f"() => ({plot_points_js('by step')})() >= 1", timeout=JOBS_TIMEOUT_S * 1000,
                           polling=250)
    assert page.evaluate(MARKED_JS), "the Training page was reloaded"
    scratch = next(j for j in JobQueue(root, max_jobs=1).list() if j.name == "demo-scratch")
    assert f"run={scratch.run_id}" in page.url
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "running"
    _assert_no_crash(page, "training, following the demo")
    stop_jobs(root)

    # Start on Home -> the Training page shows that run
    page.goto(f"{url}/?{urlencode(TINY_FORM)}", wait_until="domcontentloaded")
    page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_role("link", name="Watch it on the Training page").click(timeout=60_000)
    page.wait_for_function(page_ready_js("Training", 0), timeout=PAGE_TIMEOUT_S * 1000)
    queue = JobQueue(root, max_jobs=1)
    job = next(j for j in queue.list() if j.name not in ("demo-scratch", "demo-kd"))
    assert f"job={job.id}" in page.url
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while not queue.get(job.id).run_id:
        assert time.monotonic() < deadline, queue.log(job.id)
        time.sleep(0.25)
    run_id = queue.get(job.id).run_id
    page.wait_for_function(f"() => location.search.includes('run={run_id}')", timeout=JOBS_TIMEOUT_S * 1000)
    shown = """(tail) => Array.from(document.querySelectorAll('[data-testid="stSelectbox"] input[aria-label="Run"]'))
        .some(box => box.value.includes(tail))"""
    page.wait_for_function(shown, arg=run_id[-4:], timeout=60_000)
    _assert_no_crash(page, "training after Start")


def test_a_grid_from_the_experiments_page_is_compared_in_groups(served):
    page, url = served.page, served.url
    grid = {**TINY_FORM, "max_steps": "3", "rows": "2", "field1": "optim.lr", "values1": "0.05, 0.1",
            "field2": "data.batch_size", "values2": "32, 64", "seeds": "2", "experiment_name": "two-by-two"}
    page.goto(f"{url}/experiments?{urlencode(grid)}", wait_until="domcontentloaded")
    page.get_by_text("8 runs: 2 optim.lr × 2 data.batch_size × 2 seeds").wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text("experiment two-by-two: 8 trials, 8 queued").wait_for(timeout=60_000)
    # the trials' states refresh by themselves until every one has finished
    page.get_by_text("8 trials: 8 completed").wait_for(timeout=JOBS_TIMEOUT_S * 1000)
    _assert_no_crash(page, "experiments")
    # the last trial's end reruns the whole page: wait until it settled (no stale copy of the link left)
    page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000, polling=250)
    page.get_by_role("link", name="Compare its groups").click()
    _wait_page(page, "Compare runs", 3)
    _assert_no_crash(page, "compare")
    page.get_by_text("4 group(s) of 2 seed(s)").wait_for(timeout=30_000)
    bands = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .filter(g => String(g.layout.title.text).includes('test_acc by epoch, mean ± std'))
        .map(g => g.data.filter(t => t.fill === 'tonexty').length)""")
    assert bands == [4], bands


def test_an_image_folder_added_on_the_data_page_trains_a_teacher_then_a_kd_student(served, tmp_path):
    """Bring your own images: the Data page adds a folder, Home trains a teacher on it first, then a KD
    student from that teacher; the runs record the dataset's name beside its loader and files."""
    import numpy as np
    from PIL import Image

    from workbench.jobs import JobQueue

    folder = tmp_path / "pets"
    for k, cls in enumerate(("cat", "dog")):
        (folder / cls).mkdir(parents=True)
        for i in range(24):
            pixels = np.full((8, 8, 3), 200 * k + i, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{i:02d}.png")
    page, url, root = served.page, served.url, served.root
    page.goto(f"{url}/data", wait_until="domcontentloaded")
    page.wait_for_function(page_ready_js("Data and teachers", 1), timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_role("textbox", name="Dataset name").fill("pets")
    page.get_by_text("a folder on the server").click()
    page.get_by_role("textbox", name="Folder on the server").fill(str(folder))
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("Added pets: ").wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    _assert_no_crash(page, "data, after adding a folder")

    queue = JobQueue(root, max_jobs=1)

    def start(form: dict[str, str], says: str) -> Any:
        page.goto(f"{url}/?{urlencode(form)}", wait_until="domcontentloaded")
        page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000)
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text(says).wait_for(timeout=60_000)
        _assert_no_crash(page, f"home, {says}")
        job = max(queue.list(), key=lambda j: j.created)
        done = queue.wait(job.id, timeout=JOBS_TIMEOUT_S)
        assert done.state == "finished", queue.log(job.id)
        return done

    pets = {"dataset": "pets", "student": "mlp", "epochs": "1"}
    teacher = start({**pets, "teacher": "train one first", "tmodel": "mlp"}, "Queued teacher job")
    student = start({**pets, "teacher": f"run:{teacher.run_id}", "methods": "kd"}, "Queued job")
    data = student.config["data"]
    assert (data["name"], data["dataset"], student.config["teachers"][0]["source"]) == (
        "pets", "imagefolder", f"run:{teacher.run_id}"
    )
