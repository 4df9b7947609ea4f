"""The UI's pages in Chromium against the simulated history: each loads with no console error and
no failed request (the `page` fixture's watch), its charts draw, and the monitor page shows what
the history holds: bands for the realized, estimated and reviewed accuracy, both model versions
marked, the alert's threshold. A screenshot of each page is kept in the artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Site
from tests.support import history as simulated
from tests.support.waiting import eventually

MONITOR = f"#/m/{simulated.NAMESPACE}/{simulated.NAME}"
PAGES = {
    "overview": ("#/", "page-overview"),
    "monitor": (MONITOR + "?w=6h", "page-monitor"),
    "drift": (MONITOR + "/drift?w=6h", "page-drift"),
    "segments": (MONITOR + "/segments?w=6h", "page-segments"),
    "versions": (MONITOR + "/versions?w=6h", "page-versions"),
    "reports": (MONITOR + "/reports", "page-reports"),
}

DRAWN = """() => [...document.querySelectorAll('[data-testid^=chart-]')]
  .filter((el) => el.__chart)
  .map((el) => {
    const canvas = el.__chart.ctx.canvas;
    const pixels = el.__chart.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
    return [el.dataset.testid, painted / (canvas.width * canvas.height)];
  })"""
"""Each chart's testid and the share of its canvas painted (uPlot's canvas is transparent)."""


def open_page(page: Page, route: str, testid: str) -> None:
    page.goto(f"/ui/{route}")
    page.wait_for_selector("main[data-state=ready]")
    assert page.locator(f"[data-testid={testid}]").is_visible()


@pytest.mark.parametrize("name", PAGES)
def test_each_page_loads_clean_and_its_charts_draw(
    page: Page, site: Site, artefacts: Path, name: str
) -> None:
    route, testid = PAGES[name]
    open_page(page, route, testid)
    drawn: list[tuple[str, float]] = page.evaluate(DRAWN)
    blank = [chart for chart, share in drawn if share < 0.005]
    assert blank == [], f"blank charts on {name}"
    if name in ("monitor", "drift"):
        assert len(drawn) >= 4, drawn
    page.screenshot(path=artefacts / f"ui-{name}.png", full_page=True)


@pytest.mark.parametrize("route", [MONITOR + "?w=30d", MONITOR, "#/"])
def test_a_page_load_requests_each_api_url_once(page: Page, route: str) -> None:
    """early.js starts the page's first reads; the page takes them instead of asking again."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/" in r.url else None)
    open_page(page, route, "page-overview" if route == "#/" else "page-monitor")
    assert asked, route
    assert sorted(asked) == sorted(set(asked)), asked


def chart(page: Page, testid: str) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(
        """(testid) => {
          const el = document.querySelector(`[data-testid=${testid}]`);
          const u = el.__chart;
          return {
            series: u.series.map((s) => s.label ?? null),
            bands: u.bands.length,
            marks: el.__marks.map((m) => m.label),
            thresholds: el.__thresholds.map((t) => t.label),
            periods: el.__periods,
            x: [u.scales.x.min, u.scales.x.max],
          };
        }""",
        testid,
    )
    return found


def test_the_monitor_page_has_each_source_s_band_the_versions_and_the_threshold(
    page: Page, site: Site
) -> None:
    open_page(page, PAGES["monitor"][0], "page-monitor")
    accuracy = chart(page, "chart-accuracy")
    assert {"realized", "estimated", "reviewed"} <= set(accuracy["series"])
    assert accuracy["bands"] == 3
    assert accuracy["marks"] == ["v1", "v2"]
    start, end = accuracy["x"]
    assert start <= site.history.versions["v2"] <= end
    labeled = chart(page, "chart-labeled")
    assert labeled["series"][1:] == ["predictions", "labeled"]
    assert accuracy["thresholds"] == ["accuracy-low < 0.700"]
    ((engaged, released),) = site.history.fallback
    ((start, end),) = accuracy["periods"]
    assert released is not None
    assert abs(start - engaged) <= simulated.STEP
    assert abs(end - released) <= simulated.STEP
    lanes = page.evaluate(
        """Object.fromEntries(document.querySelector('[data-testid=chart-timeline]').__lanes
          .map((lane) => [lane.name, lane.spans.map((span) => span[2])]))"""
    )
    assert lanes["accuracy-low"] == lanes["tenure-drift"] == ["firing"]
    assert lanes["fallback"] == ["active"]
    assert "Fallback active" in lanes["phase"]
    kinds = page.eval_on_selector_all(
        "[data-testid=events] tbody tr", "(rows) => rows.map((r) => r.dataset.kind)"
    )
    assert {"alert_firing", "fallback_engaged"} <= set(kinds)


def test_the_window_picker_and_the_overview_lead_to_the_monitor(page: Page) -> None:
    open_page(page, "#/", "page-overview")
    page.click(f"[data-testid=monitor-{simulated.NAMESPACE}-{simulated.NAME}] a.name")
    page.wait_for_selector("[data-testid=page-monitor]")
    page.wait_for_selector("main[data-state=ready]")
    page.click("[data-testid=window-1h]")
    page.wait_for_selector("[data-testid=window-1h].active")
    page.wait_for_selector("main[data-state=ready]")
    assert page.inner_text("[data-testid=step]") == "step 1m"


def test_the_reports_page_lists_the_alerts_reports_newest_first_and_opens_one(
    page: Page, site: Site
) -> None:
    path = f"/v1/monitors/{simulated.KEY}/reports"
    made = site.run(
        eventually(
            lambda: reports(site, path),
            "a report for each alert that fired (made in the background)",
        )
    )
    open_page(page, PAGES["reports"][0], "page-reports")
    listed = page.eval_on_selector_all(
        "[data-testid=reports] tbody tr", "(rows) => rows.map((r) => r.dataset.testid)"
    )
    assert listed == [f"report-{r['id']}" for r in made]
    newest = made[0]
    with page.context.expect_page() as opened:
        page.click(f"[data-testid=report-link-{newest['id']}]")
    report = opened.value
    report.wait_for_load_state()
    assert report.url.endswith(newest["url"])
    assert newest["alert"] in report.title() + report.inner_text("body")


async def reports(site: Site, path: str) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = (await site.service.ok("GET", path))["reports"]
    return made if {r["alert"] for r in made} >= site.history.fired else []


def test_the_monitor_page_draws_what_the_sidecars_counted(page: Page, site: Site) -> None:
    history = site.history
    minutes = [
        {
            "start": at,
            "counts": {
                "requests:model": 60,
                "requests:fallback": 20 if engaged(history, at) else 0,
                "errors:model_timeout": 2,
                "latency_le:0.01": 50,
                "latency_le:0.1": 80,
                "latency_le:+Inf": 80,
                "latency_sum": 2.0,
                "passthrough:h2c": 1,  # a gRPC client's connection a minute, uncaptured
            },
        }
        for at in range(int(history.start), int(history.end), 60)
    ]
    for i in range(0, len(minutes), 60):
        body = {"monitor": history.key, "pod": "browser", "minutes": minutes[i : i + 60]}
        site.run(site.service.ok("POST", "/v1/sidecar-stats", json=body))
    open_page(page, PAGES["monitor"][0], "page-monitor")
    head = page.inner_text("[data-testid=sidecar] .panel-title")
    assert "error rate" in head
    assert "model_timeout" in head
    assert "uncaptured connections: h2c" in head
    drawn = dict(page.evaluate(DRAWN))
    for name in ("requests", "latency", "errors"):
        assert drawn[f"chart-sidecar-{name}"] > 0.005, name
    fallback = chart(page, "chart-sidecar-requests")
    assert fallback["series"][1:] == ["all", "fallback"]


def engaged(history: simulated.History, at: float) -> bool:
    return any(start <= at < (end or history.end) for start, end in history.fallback)
