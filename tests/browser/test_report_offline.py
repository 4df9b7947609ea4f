"""A report made when an alert fired opens in the browser with no network: everything it shows is
in its one HTML page."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Route

from tests.browser.conftest import Site
from tests.support import history as simulated
from tests.support.browser import Problems


def test_a_report_opens_offline_and_asks_for_nothing_beyond_itself(
    browser: Browser, site: Site, artefacts: Path
) -> None:
    listed = site.run(site.service.ok("GET", f"/v1/monitors/{simulated.KEY}/reports"))
    assert {r["alert"] for r in listed["reports"]} <= site.history.fired
    url = site.base + listed["reports"][-1]["url"]  # the oldest: the first alert that fired
    # Without its Content-Security-Policy the page could ask for anything it names: any request
    # but its own is recorded and refused, as if the machine were offline.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    asked: list[str] = []

    def offline(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort("internetdisconnected")

    try:
        context.route("**/*", offline)
        page = context.new_page()
        problems = Problems(page)
        response = page.goto(url)
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        page.wait_for_load_state("load")
        assert asked == []
        assert problems.found == []
        assert page.locator("svg").count() > 0, "histograms drawn inline"
        page.screenshot(path=artefacts / "report.png", full_page=True)
    finally:
        context.close()
