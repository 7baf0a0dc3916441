"""What the browser test of the app and the app benchmark share: Chromium's flags, the JavaScript that
says a Streamlit page has finished and drew its figures (and how many points a figure holds), and
stopping the jobs an app run queued.

Starting, waiting for and stopping the app itself is :mod:`workbench.serve` (``start``,
``wait_ready``, ``stop``, ``free_port``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: headless Chromium without a GPU, a sandbox or background traffic
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

#: JavaScript: true once the app has finished running its script (nothing stale, nothing running)
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')) return false;
  return !!document.querySelector('[data-testid="stMainBlockContainer"] h1');
}"""

#: JavaScript: the number of plotly figures drawn (an SVG root or a WebGL canvas inside the graph)
PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(g => g.querySelector('svg.main-svg, canvas')).length"""


def page_ready_js(title: str, min_plots: int) -> str:
    """JavaScript: the page titled ``title`` finished its run and drew ``min_plots`` figures."""
    return f"""() => {{
      const h = document.querySelector('[data-testid="stMainBlockContainer"] h1');
      return !!h && h.innerText.includes({json.dumps(title)}) && ({IDLE_JS})() && ({PLOTS_JS})() >= {min_plots};
    }}"""


def plot_points_js(title_part: str) -> str:
    """JavaScript: the most points any trace holds in the drawn plotly figure whose title contains
    ``title_part`` (0 when there is no such figure yet)."""
    return f"""() => {{
      const plots = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .filter(g => g.layout && g.layout.title && String(g.layout.title.text || '').includes({json.dumps(title_part)}));
      let most = 0;
      // _fullData: the traces as drawn (their x may arrive as typed-array specs, not arrays)
      for (const g of plots) for (const t of (g._fullData || [])) most = Math.max(most, t._length || 0);
      return most;
    }}"""


#: JavaScript: mark the current document, to tell later that the page was never reloaded
MARK_JS = "() => { window.__workbenchMark = 'not reloaded'; return true; }"
#: JavaScript: whether the mark set by :data:`MARK_JS` is still there (no reload since)
MARKED_JS = "() => window.__workbenchMark === 'not reloaded'"


def stop_jobs(root: Path, grace: float = 20) -> None:
    """Stop every job of the store ``root`` that is not final; kill a worker that has not ended
    ``grace`` seconds later."""
    from workbench.jobs import JobQueue

    queue = JobQueue(root, max_jobs=1)
    live = [j for j in queue.list() if not j.done]
    for job in live:
        with contextlib.suppress(Exception):
            queue.stop(job.id)
    deadline = time.monotonic() + grace
    for job in live:
        pid = queue.get(job.id).pid
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def served_app(folder: Path, **start: Any) -> Iterator[tuple[str, Path]]:
    """The app (``workbench.serve.start`` on a free loopback port, one job at a time unless ``start``
    says) on a fresh run store ``folder/runs``, its output in ``folder/app.log``: ``(url, store root)``.
    On the way out every job still going is stopped and the app too."""
    import subprocess

    from workbench import serve

    root = folder / "runs"
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(folder / "app.log", "wb") as log:
        proc = serve.start(port=port, host="127.0.0.1", runs=root, **{"max_jobs": 1, **start}, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
        try:
            serve.wait_ready(url, proc)
            yield url, root
        finally:
            stop_jobs(root)
            serve.stop(proc)
