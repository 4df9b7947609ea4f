"""The browser tier's own ground: the simulated history holds what the page tests rely on, the
browser reads the service's JSON, and the problem watch catches what it should."""

from __future__ import annotations

import json

from playwright.sync_api import Page

from tests.browser.conftest import Site
from tests.support import history as simulated
from tests.support.browser import Problems

STATE = f"/v1/monitors/{simulated.KEY}/state"


def test_the_history_has_drift_two_versions_review_alerts_a_fallback_period_and_reports(
    site: Site,
) -> None:
    history = site.history
    assert history.end == site.clock.now
    assert set(history.versions) == {"v1", "v2"}
    assert history.fired == {"accuracy-low", "tenure-drift"}
    ((engaged, released),) = history.fallback
    assert released is not None
    assert history.shift[0] < engaged < history.shift[1] < released
    assert history.reviewed
    state = site.run(site.service.state(simulated.KEY))
    assert state["phase"] == "Healthy"
    assert state["review"]["depth"] > 0, "items left for a reviewer"
    assert state["report"] is not None
    assert [v["version"] for v in state["versions"]] == ["v1", "v2"]
    drift = site.run(site.service.ok("GET", f"/v1/monitors/{simulated.KEY}/drift?window=6h"))
    assert drift["drift"]["reference"] is not None
    metrics = site.run(site.service.metrics(simulated.KEY, "?window=6h&segment=plan"))
    assert {v["value"] for v in metrics["segment"]["values"]} >= {"basic", "pro"}
    told = site.run(site.service.ok("GET", f"/v1/monitors/{simulated.KEY}/history?window=6h"))
    assert [tuple(p) for p in told["periods"]["fallback"]] == history.fallback
    assert set(told["periods"]["alerts"]) == history.fired
    sidecar = site.run(site.service.ok("GET", f"/v1/monitors/{simulated.KEY}/sidecar?window=6h"))
    assert sidecar["total"]["served_by"]["fallback"] > 0
    assert sidecar["total"]["errors"]["model_timeout"] > 0
    assert sidecar["total"]["latency"]["p99"] is not None


def test_the_browser_reads_the_service_s_json_without_a_problem(
    page: Page, problems: Problems
) -> None:
    problems.expect(r"/favicon\.ico$", 404)  # Chromium asks any page's origin for one
    response = page.goto(STATE)
    assert response is not None
    assert response.status == 200
    assert json.loads(page.inner_text("body"))["monitor"] == simulated.KEY
    listed = page.evaluate("fetch('/v1/monitors').then(r => r.json())")
    assert simulated.KEY in {
        f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in listed["items"]
    }


def test_a_request_the_test_expects_to_fail_is_no_problem(page: Page, problems: Problems) -> None:
    problems.expect("/v1/monitors/ml/absent/", 404)
    page.goto(STATE)
    status = page.evaluate("fetch('/v1/monitors/ml/absent/state').then(r => r.status)")
    assert status == 404
    assert problems.found == []


def test_the_watch_catches_console_errors_exceptions_and_bad_statuses(
    page: Page, problems: Problems
) -> None:
    page.goto(STATE)
    with page.expect_console_message(lambda m: m.type == "error"):
        page.evaluate("console.error('broken')")
    with page.expect_event("pageerror"):
        page.evaluate("setTimeout(() => { throw new Error('uncaught') })")
    with page.expect_response(lambda r: r.status == 404):
        page.evaluate("fetch('/v1/monitors/ml/absent/state')")
    assert any(p.startswith("console error: broken") for p in problems.found)
    assert "uncaught: uncaught" in problems.found
    assert any(p.startswith("HTTP 404: GET ") for p in problems.found)
    problems.found.clear()  # seen: the test made them on purpose
