"""A real browser for tests and benches: Debian's Chromium driven by Playwright, and what a page
did wrong.

Playwright's own browser download (`playwright install`) is not used: the browser is the system's
`chromium` (or `$TRUTHLOOP_CHROMIUM`), launched through `executable_path`, headless and quiet
(no background networking, updates or sync: a test's requests are the page's own). A `Problems`
watches a page for what a user would call broken: an error on the console, an uncaught
exception, a request that failed or was answered with a status of 400 or more.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
HOW = (
    "install Debian's chromium (`apt-get install chromium`) or set TRUTHLOOP_CHROMIUM to a "
    "Chromium executable"
)
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str | None:
    """The Chromium to launch: $TRUTHLOOP_CHROMIUM, else /usr/bin/chromium; None when the
    default is not installed (a $TRUTHLOOP_CHROMIUM that is not executable is an error)."""
    chosen = os.environ.get("TRUTHLOOP_CHROMIUM")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"TRUTHLOOP_CHROMIUM={chosen} is not an executable")
        return chosen
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None


def launch(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(executable_path=executable, args=list(ARGS))


def artefacts() -> Path:
    """Where screenshots and other artefacts go: $TRUTHLOOP_ARTEFACTS, else tests/artefacts/
    (ignored by git); made if missing."""
    path = Path(os.environ.get("TRUTHLOOP_ARTEFACTS") or ROOT / "tests" / "artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Expected:
    """A problem a test expects: requests to URLs matching `url` (a regular expression searched
    in the URL) answered with `status`, or failing outright when `status` is None, and the
    console's "Failed to load resource" error that Chromium logs for them."""

    url: str
    status: int | None = None

    def covers_response(self, url: str, status: int) -> bool:
        return self.status == status and re.search(self.url, url) is not None

    def covers_failure(self, url: str) -> bool:
        return self.status is None and re.search(self.url, url) is not None

    def covers_console(self, text: str, url: str) -> bool:
        return text.startswith("Failed to load resource") and re.search(self.url, url) is not None


class Problems:
    """What went wrong on `page` since it was watched, except what a test `expect`s."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        self.expected: list[Expected] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append(f"uncaught: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def expect(self, url: str, status: int | None = None) -> None:
        """Take requests to `url` answered `status` (or failing, None) as intended."""
        self.expected.append(Expected(url, status))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if not any(e.covers_console(message.text, url) for e in self.expected):
            self.found.append(f"console error: {message.text} (at {url})")

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        # A request the page cancelled itself (an AbortController, a navigation away) is not a
        # failure of the service; the service's failures are statuses or other net errors.
        if failure == "net::ERR_ABORTED":
            return
        if not any(e.covers_failure(request.url) for e in self.expected):
            self.found.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Response) -> None:
        if response.status < 400:
            return
        if not any(e.covers_response(response.url, response.status) for e in self.expected):
            method = response.request.method
            self.found.append(f"HTTP {response.status}: {method} {response.url}")
