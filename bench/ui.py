# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""The monitor page's first render in a real browser, against fetching its data alone; the UI's
bytes.

Run: `python bench/ui.py [--per-minute 3] [--loads 20] [--write]`

In one run, on one machine, with the command users run (`truthloop feedback` as a subprocess on a
fresh SQLite store), spoken to over HTTP:
1. the monitor of the browser tests' history (tests/support/history.py: a reference with scores
   and actuals, so drift and estimates; a segment; review; two alerts; a fallback) gets 30 days of
   1-minute buckets through the API: `--per-minute` scored records a minute with features, v1 and
   from day 15 a v2 canary (30%), 70% of them labeled; then the tick folds them;
2. Debian's chromium (Playwright, as the browser tests launch it) opens the monitor page on a
   30-day window, `/ui/#/m/ml/churn?w=30d`, at 1280×800, each load in a fresh browser context
   (nothing cached: a first visit); the page picks its default step from its width. The render
   is the time from navigation start to the page's `truthloop:drawn` performance mark (set once
   its charts are drawn; they are checked non-blank, and the load free of console errors and
   failed requests), split at the page's first API request and its last API answer;
3. the baseline, in the same browser, interleaved with the loads: the API answers that load asked
   for (the same URLs, in the same order, one after the other as the page awaits them), fetched
   and parsed in a page of the service's origin with nothing else to do (`cache: no-store`);
4. the UI's bytes: what the monitor page loaded from `/ui/` (as served), and every file of the
   package's `truthloop/ui/` (the other pages' modules too).

p50 / p95 over `--loads` loads (after one warm-up load). With `--write` the table replaces the
`<!-- bench:ui -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import numpy as np
import sections
from feedback_ingest import (
    BATCH,
    MONTH_MINUTES,
    cpu_name,
    folded_sqlite,
    month_records,
    pct,
    post_all,
    post_records,
    start_service,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the browser tests' history and browser launch, shared

from playwright.sync_api import Browser, Page, Response, sync_playwright  # noqa: E402

from tests.support import browser as chromium  # noqa: E402
from tests.support import history  # noqa: E402

UI = ROOT / "truthloop" / "ui"
PAGE = f"/ui/#/m/{history.KEY}?w=30d"
CANARY_MINUTE = 15 * 24 * 60
"""v2 joins this many minutes before now (half the month)."""
GOAL_RENDER_MS = 1000.0
GOAL_BYTES = 250 * 1024
DRAWN = "() => performance.getEntriesByName('truthloop:drawn').length > 0"
BLANK_CANVASES = """() => [...document.querySelectorAll('canvas')].filter((c) => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i]) return false;
  return true;
}).length"""
API_SPAN = """() => {
  const api = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname.startsWith('/v1/'));
  return [Math.min(...api.map((e) => e.startTime)), Math.max(...api.map((e) => e.responseEnd))];
}"""
"""When the page's first API request started and its last answer ended (ms since navigation)."""
FETCH_ALONE = """async (urls) => {
  const took = [];
  for (const url of urls) {
    const started = performance.now();
    await (await fetch(url, { cache: 'no-store' })).json();
    took.push(performance.now() - started);
  }
  return took;
}"""


# -- 1. 30 days of minute data ------------------------------------------------------------------


async def fill(session: aiohttp.ClientSession, base: str, per_minute: int) -> int:
    """The history's monitor with its reference and 30 days of records; how many records."""
    rng = np.random.default_rng(22)
    async with session.put(f"{base}/v1/monitors/{history.KEY}", json=history.monitor()) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"PUT monitor: {r.status} {await r.text()}")
    url = f"{base}/v1/monitors/{history.KEY}/reference"
    headers = {"Content-Type": "text/csv"}
    async with session.post(url, data=history.reference(rng), headers=headers) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"POST reference: {r.status} {await r.text()}")
    rows = history.inputs(rng, MONTH_MINUTES * per_minute, shifted=False)

    def fields(m: int, k: int) -> dict[str, object]:
        row = rows[m * per_minute + k]
        canary = m < CANARY_MINUTE and k % 10 < 3
        return {
            "model_version": "v2" if canary else "v1",
            "prediction": row["prediction"],
            "score": row["score"],
            "features": row["features"],
            "segments": {"plan": row["features"]["plan"]},
        }

    items = month_records(history.KEY, per_minute, time.time(), fields)
    await post_records(session, base, items)
    labeled = [(r["prediction_id"], rows[i]["actual"]) for i, r in enumerate(items) if i % 10 < 7]
    bodies = [
        msgspec.json.encode(
            {
                "items": [
                    {"monitor": history.KEY, "prediction_id": pid, "actual": actual}
                    for pid, actual in labeled[i : i + BATCH]
                ]
            }
        )
        for i in range(0, len(labeled), BATCH)
    ]
    await post_all(session, base + "/v1/feedback", bodies, "application/json", 4)
    return len(items)


# -- 2.-4. the browser --------------------------------------------------------------------------


@dataclass
class Load:
    """One first visit of the monitor page, in ms since navigation start: when its first API
    request started, its last API answer ended, and the drawn mark; what it asked for."""

    first_api: float
    last_api: float
    drawn: float
    api: list[str]
    """The API URLs, in the order asked."""
    assets: dict[str, int]
    """The bytes of each /ui/ file loaded, as served."""


def load(browser: Browser, base: str) -> Load:
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        problems = chromium.Problems(page)
        responses: list[Response] = []
        page.on("response", lambda response: responses.append(response))
        page.goto(PAGE)
        page.wait_for_function(DRAWN, timeout=60_000)
        drawn = float(page.evaluate("performance.getEntriesByName('truthloop:drawn')[0].startTime"))
        first_api, last_api = page.evaluate(API_SPAN)
        blank = page.evaluate(BLANK_CANVASES)
        charts = page.evaluate("document.querySelectorAll('canvas').length")
        if not charts or blank:
            raise SystemExit(f"{blank} of {charts} canvases blank at the drawn mark")
        if problems.found:
            raise SystemExit("the page had problems:\n" + "\n".join(problems.found))
        return Load(
            first_api=float(first_api),
            last_api=float(last_api),
            drawn=drawn,
            api=[r.url for r in responses if urlsplit(r.url).path.startswith("/v1/")],
            assets={
                urlsplit(r.url).path: len(r.body())
                for r in responses
                if urlsplit(r.url).path.startswith("/ui/") and r.status == 200
            },
        )
    finally:
        context.close()


def alone(page: Page, urls: list[str]) -> list[float]:
    """ms to fetch and parse each of `urls`, one after the other, in a page with nothing else to
    do."""
    return [float(ms) for ms in page.evaluate(FETCH_ALONE, urls)]


def measure(base: str, loads: int) -> dict[str, Any]:
    executable = chromium.chromium()
    if executable is None:
        raise SystemExit(f"no Chromium: {chromium.HOW}")
    with sync_playwright() as driver:
        browser = chromium.launch(driver, executable)
        try:
            blank = browser.new_page()
            blank.goto(base + "/healthz")
            alone(blank, load(browser, base).api)  # warm-up: the service's first reads
            visits, baselines = [], []
            for _ in range(loads):
                visits.append(load(browser, base))
                baselines.append(alone(blank, visits[-1].api))
            return {"visits": visits, "baselines": baselines, "chromium": browser.version}
        finally:
            browser.close()


def package_bytes() -> tuple[int, int]:
    files = [p for p in UI.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return len(files), sum(p.stat().st_size for p in files)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="truthloop-bench-ui-"))
    store = workdir / "feedback.db"
    proc, base = await start_service(f"sqlite://{store}", workdir)
    try:
        async with aiohttp.ClientSession() as session:
            records = await fill(session, base, args.per_minute)
        await folded_sqlite(store, within=300)
        results = await asyncio.to_thread(measure, base, args.loads)
    finally:
        proc.kill()
        await proc.wait()
    results["records"] = records
    results["base"] = base
    return results


# -- the table ----------------------------------------------------------------------------------


def kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB"


def markdown(r: dict[str, Any], args: argparse.Namespace, load: tuple[float, float]) -> str:
    visits: list[Load] = r["visits"]
    renders, baselines = [v.drawn for v in visits], [sum(b) for b in r["baselines"]]
    render50, render95 = statistics.median(renders), pct(renders, 0.95)
    base50, base95 = statistics.median(baselines), pct(baselines, 0.95)
    before = statistics.median(v.first_api for v in visits)
    data = statistics.median(v.last_api - v.first_api for v in visits)
    drawing = statistics.median(v.drawn - v.last_api for v in visits)
    assets = visits[-1].assets
    files, total = package_bytes()
    if any(v.api != visits[0].api for v in visits):
        raise SystemExit("the loads asked for different API URLs")
    paths = [f"GET {u.removeprefix(r['base'])}" for u in visits[0].api]
    queries = ", ".join(f"`{p}`" for p in paths)
    each = [statistics.median(b[i] for b in r["baselines"]) for i in range(len(paths))]
    slowest = paths[each.index(max(each))]
    met = "met" if render50 < GOAL_RENDER_MS else "NOT met"
    met95 = "met" if render95 < GOAL_RENDER_MS else "NOT met"
    bytes_met = "met" if total < GOAL_BYTES else "NOT met"
    rows = [
        (
            "monitor page, first visit: navigation start → `truthloop:drawn`, p50 / p95",
            f"{render50:,.0f} / {render95:,.0f} ms",
            f"< {GOAL_RENDER_MS:,.0f} ms: {met} / {met95}",
        ),
        (
            "the baseline: the same API answers fetched and parsed alone, p50 / p95",
            f"{base50:,.0f} / {base95:,.0f} ms",
            "",
        ),
        *(
            (f"… of which `{path}`, p50", f"{ms:,.0f} ms", "")
            for path, ms in zip(paths, each, strict=True)
        ),
        ("the page's own cost: render − baseline (medians)", f"{render50 - base50:,.0f} ms", ""),
        (
            "the render's parts (medians): until the first API request (HTML, CSS, scripts) / the API requests / from the last answer to the mark (drawing)",
            f"{before:,.0f} / {data:,.0f} / {drawing:,.0f} ms",
            "",
        ),
        (
            f"the monitor page's `/ui/` files, as served ({len(assets)} files)",
            kb(sum(assets.values())),
            "",
        ),
        (
            f"every file of `truthloop/ui/` ({files} files)",
            kb(total),
            f"< {kb(GOAL_BYTES)}: {bytes_met}",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## The UI: the monitor page's first render (`bench/ui.py`)

Run {time.strftime("%Y-%m-%d")} on {os.cpu_count()} × {cpu_name()}, Python {platform.python_version()}, Chromium {r["chromium"]} (headless, through Playwright); {args.loads} loads after one warm-up; load average {load[0]:.2f} before, {load[1]:.2f} after.
`truthloop feedback` runs as a subprocess on a fresh SQLite store holding 30 days of 1-minute
buckets of the browser tests' monitor ({r["records"]:,} scored records with features, v1 and a v2
canary, 70% labeled, a reference with scores and actuals: realized and estimated series), filled
through the API and folded. Each load opens `{PAGE}` at 1280×800 in a fresh browser
context (a first visit: nothing cached); the page chooses its step from its width. Its API
requests: {queries}. The baseline fetches those same URLs one after the other in a page of
the same origin with nothing else to do, between the loads.

| measure | result | goal |
|---|---|---|
{table}

The render counts everything a first visit does: the HTML, the stylesheets, uPlot and the page's
modules, the API answers, and drawing the charts; the baseline is the part of it no page can
avoid. Its slowest answer, `{slowest}` ({max(each):,.0f} ms), is the 30-day series read
(`bench/series.py`: its time is in the points, not the records). The times are the machine's as
it was, shared with other work (the load average above, on 2 cores): the browser, the service
and the client wait for a core.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-minute", type=int, default=3)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    if not UI.is_dir():
        raise SystemExit(f"no UI to measure at {UI}")
    before = os.getloadavg()[0]
    results = asyncio.run(run(args))
    text = markdown(results, args, (before, os.getloadavg()[0]))
    print(text)
    if args.write:
        sections.write(ROOT / "BENCHMARKS.md", "ui", text)


if __name__ == "__main__":
    main()
