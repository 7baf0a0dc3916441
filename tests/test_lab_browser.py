"""A real front end: JupyterLab serving the lessons, lesson 1 opened and run in headless Chromium.

It checks what a headless kernel cannot: that the panels' ipywidgets are rendered as widgets (not
as their text placeholder) and that the plotly figures are drawn. JupyterLab runs as a subprocess
on 127.0.0.1 with a random token and ``WORKBENCH_FAST=1``, on a temporary copy of notebooks/, with
its settings, workspaces and runtime files in temporary folders; it is always stopped at the end.
Screenshots are written to the test's temporary folder (the path is printed).

Without Playwright or Chromium the test is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.serve import free_port

ROOT = Path(__file__).resolve().parent.parent
LESSON = "01_what_is_distillation.ipynb"
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 480

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _settings(folder: Path) -> None:
    """User settings: render every cell (no windowing, so off-screen outputs are in the DOM) and
    no news or update checks (nothing leaves the machine)."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, value in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - 127.0.0.1 only
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (kernels, job workers): its own process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # kernels left behind by a server that exited
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebooks/; yields ``(base_url, token, log_path)``."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    settings, workspaces, runtime = tmp_path / "settings", tmp_path / "workspaces", tmp_path / "runtime"
    for folder in (settings, workspaces, runtime):
        folder.mkdir()
    _settings(settings)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "WORKBENCH_FAST": "1",
        "WORKBENCH_RUNS": str(tmp_path / "runs"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workspaces}",
        "--LabApp.extension_manager=readonly",  # no PyPI queries
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI runners often run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=notebooks, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(proc, f"{base}/api/status?token={token}", log)
        yield base, token, log
    finally:
        _stop(proc)


def test_lesson_one_renders_its_panels_and_figures(lab, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _missing("no chromium on PATH (Debian: apt-get install chromium)")

    base, token, log = lab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/{LESSON}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=START_TIMEOUT_S * 1000)
            _wait_kernel_idle(page, START_TIMEOUT_S)
            page.screenshot(path=str(shots / "01-opened.png"))

            page.locator(".jp-Notebook").first.click()
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            _wait_all_executed(page, RUN_TIMEOUT_S)
            page.screenshot(path=str(shots / "02-after-run-all.png"))

            text = page.locator(".jp-Notebook").first.inner_text()
            assert "Traceback (most recent call last)" not in text, _excerpt(text, "Traceback")
            # widgets rendered as widgets, not as the text placeholder of a view the page could not draw
            assert page.locator(".jp-Notebook .jupyter-widgets").count() > 0, "no ipywidgets DOM nodes"
            assert page.locator(".jp-Notebook .widget-slider").count() > 0, "no rendered slider"
            for placeholder in ("VBox(children=", "HBox(children=", "Loading widget..."):
                assert placeholder not in text, _excerpt(text, placeholder)
            # plotly figures drawn, inside and outside the panels
            plots = page.locator(".jp-Notebook .js-plotly-plot")
            assert plots.count() > 0, "no plotly figure in the page"
            assert page.locator(".jp-Notebook .js-plotly-plot svg.main-svg").count() > 0, "plotly drew no SVG"
            page.locator(".jp-Notebook .jupyter-widgets").first.screenshot(path=str(shots / "03-first-widget.png"))
            plots.first.scroll_into_view_if_needed()
            plots.first.screenshot(path=str(shots / "04-first-figure.png"))
        finally:
            browser.close()


def _excerpt(text: str, needle: str) -> str:
    i = text.find(needle)
    return f"found {needle!r} in the page: ...{text[max(0, i - 300) : i + 500]}..."


def _kernel_status(page) -> str:
    """The notebook's execution indicator (``idle`` / ``busy`` / ...), '' before it exists."""
    loc = page.locator(".jp-Notebook-ExecutionIndicator")
    if loc.count() == 0:
        return ""
    return loc.first.get_attribute("data-status") or ""


def _wait_kernel_idle(page, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    name = page.locator(".jp-Toolbar-kernelName")
    while time.monotonic() < deadline:
        started = name.count() == 0 or "No Kernel" not in name.first.inner_text()
        if started and _kernel_status(page) == "idle":
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the kernel did not become idle within {timeout_s} s (status {_kernel_status(page)!r})")


def _wait_all_executed(page, timeout_s: float) -> None:
    """Wait until no cell is queued or running, every code cell has an execution count and the
    kernel is idle (three polls in a row, so a gap between two cells does not count as the end)."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        text = page.locator(".jp-Notebook").first.inner_text()
        assert "Traceback (most recent call last)" not in text, _excerpt(text, "Traceback")
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        pending = [t for t in prompts if "[*]" in t or t.strip() in ("", "[ ]:")]
        if prompts and not pending and _kernel_status(page) == "idle":
            quiet += 1
            if quiet >= 3:
                return
        else:
            quiet = 0
        page.wait_for_timeout(1000)
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    raise AssertionError(
        f"the lesson did not finish within {timeout_s} s (kernel {_kernel_status(page)!r}, prompts {prompts})"
    )
