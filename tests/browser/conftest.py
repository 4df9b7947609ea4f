"""The browser tier: pages of a running feedback service in a real Chromium (Playwright).

One service per package run, on 127.0.0.1 with a SQLite store in a temporary directory, holds a
short simulated history (tests.support.history: drift, two versions, a segment, review, alerts
that fired and a fallback period) built through its HTTP API and engine on a fake clock that ends
at the present minute. Tests are synchronous: Playwright's sync API marks its own loop as running
in the main thread while it lives (from the first browser test to the end of this package), so an
async test here could not run; `site.run` calls the service's async helpers on its loop.

`page` is a fresh browser context's page whose relative URLs go to the service; a test fails on
anything the page did wrong (tests.support.browser.Problems: console errors, uncaught
exceptions, failed requests, statuses >= 400) unless it declared it with `problems.expect`. A
failed test leaves a screenshot in the artefact directory (`artefacts`: $TRUTHLOOP_ARTEFACTS or
tests/artefacts/).

Every test here is marked `e2e` (run by `pytest -m e2e`, as .ci/run does): building the history
and starting the browser, then a page a test, took the tier 23 to 52 s on 2 cores shared with
other work (load average 4 to 10), which a plain `pytest` (under 5 minutes) cannot spare.
Without Chromium the tier skips, saying how to get it; under CI (`CI=true`, where .ci/run
installs it) a missing Chromium fails instead.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support import browser as chromium_support
from tests.support import history as simulated
from tests.support.browser import Problems
from tests.support.feedback import FakeClock
from tests.support.threaded import ThreadedService

HERE = Path(__file__).parent
TOKEN = "browser-admin-token"
"""The service's admin token: reads need none, writes (a review label) do."""
PROBLEMS = pytest.StashKey[Problems]()
FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


class Site:
    """The running service with its history, for tests: `base` URL, `token`, `history`, and
    `run` to call the service's async helpers (`site.run(site.service.state(key))`)."""

    def __init__(self, threaded: ThreadedService, history: simulated.History) -> None:
        self.threaded = threaded
        self.service = threaded.service
        self.clock = threaded.clock
        self.base = threaded.base
        self.token = TOKEN
        self.history = history
        self.run = threaded.run


@pytest.fixture(scope="package")
def site() -> Iterator[Site]:
    """The feedback service with the simulated history, for the whole browser tier."""
    with tempfile.TemporaryDirectory(prefix="truthloop-browser-") as directory:
        end = simulated.minute_floor(time.time())
        clock = FakeClock(end - simulated.STEPS * simulated.STEP)
        threaded = ThreadedService(f"sqlite://{directory}/feedback.db", clock, token=TOKEN)
        try:
            history = threaded.run(simulated.simulate(threaded.service, clock))
            yield Site(threaded, history)
        finally:
            threaded.close()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium, headless, for the whole browser tier."""
    executable = chromium_support.chromium()
    if executable is None:
        message = f"no Chromium at {chromium_support.CHROMIUM}: {chromium_support.HOW}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (.ci/run installs it under CI)")
        pytest.skip(message)
    launched = chromium_support.launch(playwright, executable)
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def artefacts() -> Path:
    """The directory for screenshots and other artefacts of the browser tests."""
    return chromium_support.artefacts()


@pytest.fixture
def page(
    browser: Browser, site: Site, artefacts: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A page in a fresh context (no storage shared with other tests), 1280x800, whose
    relative URLs go to the service. Watched for problems; screenshot kept if the test fails."""
    context = browser.new_context(base_url=site.base, viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    request.node.stash[PROBLEMS] = Problems(opened)
    yield opened
    if request.node.stash.get(FAILED, False):
        opened.screenshot(path=artefacts / f"{slug(request.node.nodeid)}-failed.png")
    context.close()


@pytest.fixture
def problems(page: Page, request: pytest.FixtureRequest) -> Problems:
    """The page's problem watch: `problems.expect(url, status)` takes a request as intended."""
    return request.node.stash[PROBLEMS]


def slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid).strip("-")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that passed fails if its page had problems it did not expect."""
    result = yield
    watch = item.stash.get(PROBLEMS, None)
    if watch is not None and watch.found:
        raise AssertionError("the page had problems:\n" + "\n".join(watch.found))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report
