"""Class mode in a real browser: the app served with an instructor token, two students in their own
browser contexts and the instructor in a third. Each student claims a workspace by typing its name, trains
a run, and can neither list, open by link, stop nor delete the other's; the instructor's link sees and
deletes any. Needs playwright and Debian's chromium (see tests/test_app_browser.py)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from browser import CHROMIUM_ARGS, IDLE_JS, page_ready_js, served_app
from test_app_browser import PAGE_TIMEOUT_S, TINY_FORM, _need_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "teach-3rd-period"


def _idle(page) -> None:
    page.wait_for_function(IDLE_JS, timeout=PAGE_TIMEOUT_S * 1000, polling=250)


def _claim(page, url: str, name: str) -> dict[str, str]:
    """Open the app as a newcomer, type ``name`` into the sidebar's Workspace field; the link's workspace
    and key."""
    page.goto(url, wait_until="domcontentloaded")
    _idle(page)
    page.get_by_text("type your workspace name in the sidebar").first.wait_for(timeout=60_000)
    field = page.get_by_label("Workspace", exact=True)
    field.fill(name)
    field.press("Enter")
    page.wait_for_function("() => location.search.includes('wskey=')", timeout=60_000)
    _idle(page)
    query = {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items() if k in ("workspace", "wskey")}
    assert query["workspace"] == name
    return query


def _train(student, url: str, own: dict[str, str], root) -> str:
    """Start a tiny scratch run from Home's form, prefilled by a link that carries the student's workspace
    and key, opened in a new tab of the student's browser; wait for it; its run id."""
    from workbench.jobs import JobQueue

    page = student.context.new_page()
    page.goto(f"{url}/?{urlencode({**TINY_FORM, **own})}", wait_until="domcontentloaded")
    _idle(page)
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_text("Queued job").first.wait_for(timeout=60_000)
    queue = JobQueue(root, max_jobs=1)
    job = next(j for j in queue.list() if j.workspace == own["workspace"])
    done = queue.wait(job.id, timeout=300)
    assert done.state == "finished", queue.log(job.id)
    assert done.config["model"]["name"] == "mlp" and done.config["data"]["dataset"] == "digits"  # the link's form
    return done.run_id


def _run_choices(page, *, listed: bool = True) -> set[str]:
    """The last four characters of every run the page's "Run" select box offers; with ``listed=False``
    the page must offer none (it has no such box once it has finished drawing)."""
    box = page.locator('[data-testid="stSelectbox"] input[aria-label="Run"]:visible')
    if not listed:
        _idle(page)
        page.get_by_text("No runs in this workspace yet").first.wait_for(timeout=60_000)
        assert box.count() == 0
        return set()
    box.first.wait_for(timeout=60_000)
    options = page.locator('[role="option"]')
    for _ in range(4):  # a rerun of the page may redraw the box and close its list: open it again
        _idle(page)
        box.first.click()
        try:
            options.first.wait_for(timeout=10_000)
            break
        except Exception:  # noqa: BLE001 - playwright's timeout: try once more
            page.keyboard.press("Escape")
    else:
        raise AssertionError(f"the Run select box of {page.url} never opened its list")
    tails = {text.strip()[-5:-1] for text in options.all_inner_texts()}
    page.keyboard.press("Escape")
    return tails


def test_two_students_and_an_instructor(tmp_path):
    exe = _need_browser()
    from playwright.sync_api import sync_playwright

    with served_app(tmp_path, instructor_token=TOKEN) as (url, root), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            alice = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            bob = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            a_link, b_link = _claim(alice, url, "alice"), _claim(bob, url, "bob")
            a_run = _train(alice, url, a_link, root)
            b_run = _train(bob, url, b_link, root)

            # alice's Home lists her run, never bob's
            alice.goto(f"{url}/?{urlencode(a_link)}", wait_until="domcontentloaded")
            _idle(alice)
            assert _run_choices(alice) == {a_run[-4:]}

            # bob opens alice's run by its link: not found, and the page shows his own
            bob.goto(f"{url}/training?{urlencode({**b_link, 'run': a_run})}", wait_until="domcontentloaded")
            bob.wait_for_function(page_ready_js("Training", 0), timeout=PAGE_TIMEOUT_S * 1000)
            bob.get_by_text(f"run '{a_run}': not found in the run store").first.wait_for(timeout=30_000)
            assert f"run={b_run}" in bob.url and _run_choices(bob) == {b_run[-4:]}

            # bob types alice's name, or asks for every workspace: refused, nothing listed
            for asked, words in (("alice", "taken by another session"),
                                 ("*", "only the instructor sees every workspace")):
                bob.goto(f"{url}/?{urlencode({'workspace': asked})}", wait_until="domcontentloaded")
                _idle(bob)
                bob.get_by_text(words).first.wait_for(timeout=30_000)
                assert _run_choices(bob, listed=False) == set()

            # alice's own link, opened in a fresh browser, is still hers (stop and delete offered)
            again = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            again.goto(f"{url}/?{urlencode(a_link)}", wait_until="domcontentloaded")
            _idle(again)
            assert _run_choices(again) == {a_run[-4:]}
            assert again.get_by_role("button", name="Delete").count() == 1

            # the instructor sees both and deletes bob's run
            teacher = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            teacher.goto(f"{url}/?{urlencode({'workspace': '*', 'token': TOKEN, 'run': b_run})}",
                         wait_until="domcontentloaded")
            _idle(teacher)
            assert _run_choices(teacher) == {a_run[-4:], b_run[-4:]}
            teacher.get_by_text("I am sure").click()
            teacher.get_by_role("button", name="Delete").click()
            deadline = time.monotonic() + 60
            while (root / b_run).exists():
                assert time.monotonic() < deadline, "the instructor's delete did not remove the run"
                time.sleep(0.25)
            assert (root / a_run).exists()

            # the instructor's menu has the Class overview: a row per workspace, each opening its Training page
            teacher.get_by_role("link", name="Class overview").click()
            teacher.wait_for_function(page_ready_js("Class overview", 0), timeout=PAGE_TIMEOUT_S * 1000)
            teacher.get_by_role("link", name="alice").click()
            teacher.wait_for_function(page_ready_js("Training", 0), timeout=PAGE_TIMEOUT_S * 1000)
            teacher.wait_for_function("() => location.search.includes('workspace=alice')", timeout=30_000)
            assert _run_choices(teacher) == {a_run[-4:]} and "token=" in teacher.url
            # a student's menu has no Class overview, and its address refuses them
            assert again.get_by_role("link", name="Class overview").count() == 0
            again.goto(f"{url}/classroom?{urlencode(a_link)}", wait_until="domcontentloaded")
            again.get_by_text("This page is the instructor's").first.wait_for(timeout=60_000)
        finally:
            browser.close()
