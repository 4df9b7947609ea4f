"""`truthloop demo`: a model, its sidecar, the feedback service; drift, alert, fallback, recovery.

Everything runs in this process on 127.0.0.1 and talks over HTTP: the example churn model
(`truthloop.examples.churn_model`), a sidecar in front of it and the feedback service on SQLite in
a temporary directory, with the monitor `examples/monitor-churn.yaml`. At the start the demo
uploads the model's training customers as the monitor's reference (`POST .../reference`, CSV, as
`truthloop reference` sends one), so the service measures drift and outliers against them and,
the reference holding the model's scores and the actuals, estimates accuracy from the scores.
Customers ask for churn predictions with their IDs, their labels arrive later, a billing meter
breaks for a few customers (outliers), the world drifts part-way (drift, then the estimate, then
accuracy; then churn turns to the price, which only the labels show) and comes back.

The demo's monitor adds human review (`REVIEW`) to the example: the service queues a few hundred
predictions over the run, each with its known chance, the sidecar answers "I don't know" for
scores around the threshold (and for a few others at random), and a reviewer
(`truthloop.demo.reviewer`) leases the queued items and labels each `REVIEW_DELAY` after its
prediction, before the CRM's label comes, so the accuracy the reviews estimate stands beside the
realized and estimated ones.

Two versions of the model serve, as a canary rollout would: `v1` and, for `CANARY_SHARE` of the
customers, `v2`, fitted without the support calls (`CANARY_WITHOUT`), each behind a sidecar of its
own that stamps its records with its version. The monitor keeps its metrics per range of the
customers' tenure (`SEGMENTS`): the drift's newcomers are one or two years in, and the price's
customers newer. The summary ranks the ranges worst first and compares v2 with v1
(`GET .../compare`).

Time-lapse: metrics live in 1-minute buckets, so the service and the sidecar share a clock that
runs `SPEED` times faster than the wall clock while the traffic flows, and at the wall clock's
pace after it; every time shown is service time. With `--keep-running` the services stay up after
the summary until Ctrl-C. Ctrl-C at any point stops everything and removes the directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import yaml
from aiohttp import web
from rich.console import Console

from truthloop import flags
from truthloop.core import segments
from truthloop.core import spec as core_spec
from truthloop.demo import summary as summaries
from truthloop.demo.reviewer import Reviewer
from truthloop.demo.scenario import Scenario
from truthloop.demo.timelapse import TimeLapse
from truthloop.demo.traffic import PREDICT_PATH, Traffic
from truthloop.demo.view import LiveView, PlainView, Status, View, legend, trend
from truthloop.demo.watch import DriftChange, PhaseChange, Watcher
from truthloop.examples import churn_model
from truthloop.feedback.settings import EngineSettings
from truthloop.local import stack as local

SPEED = 20.0
DEFAULT_DURATION = 40.0
SUMMARY_WINDOW = "1h"
"""The metrics window of the summary: the whole run (at most 30 minutes of service time)."""
TICK = 0.1
"""Wall seconds between the feedback engine's evaluations (2 s of service time)."""
REFRESH = 0.25
LABELS_WITHIN = 20.0
"""Wall seconds the last labels get to join before the summary is read."""
MONITOR_FILE = "monitor-churn.yaml"
NAMESPACE = "default"
REVIEW: dict[str, Any] = {
    "budget": 60,
    "per": "window",
    "random": 0.3,
    "borderline": 0.7,
    "outliers": 0.5,
    "lease": "1m",
    "abstain": {"band": {"low": 0.45, "high": 0.55}, "explore": 0.02},
}
"""The demo monitor's `spec.review`: 60 items a 2m window (a few hundred over the run), 30% of
what the band, the outliers and the explored share leave drawn at random and 70% spent on the
uncertain; "I don't know" for a score within 0.05 of the threshold, and for 2% of the others (so
the confident ones are reviewed too). A lease of a minute is three wall seconds."""
REVIEW_PACE = 20.0
"""Items the reviewer leases a wall second at most: one a second of service time."""
REVIEW_DELAY = 30.0
"""Service seconds from a prediction to its review label (the CRM's take `LABEL_DELAY`)."""
SEGMENTS: list[dict[str, Any]] = [
    {"name": "tenure", "pointer": "/features/tenure", "buckets": [12, 24]}
]
"""The demo monitor's `spec.segments`: the customer's months of tenure, read from the request
body, in three ranges (buckets need no value set: every record has its range from the first)."""
VERSION, CANARY = "v1", "v2"
CANARY_SHARE = 0.3
"""Of the customers, those sent to the canary's sidecar."""
CANARY_WITHOUT = ("support_calls",)
"""What the canary's model leaves out: a cheaper model, needing no lookup of the calls."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "demo", text, __doc__)
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        help="wall seconds of traffic, 30 to 90 (default %(default)g)",
    )
    parser.add_argument(
        "--seed", type=int, default=2, help="seeds the customers and their labels (default 2)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep the services up to explore until Ctrl-C",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="line output instead of a live table (automatic when stdout is not a terminal)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scenario = Scenario(duration=args.duration, speed=SPEED)
    try:
        scenario.check()
    except ValueError as e:
        print(f"truthloop demo: --{e}", file=sys.stderr)
        return 2
    plain = args.plain or not sys.stdout.isatty()
    options = Options(seed=args.seed, keep_running=args.keep_running, plain=plain)
    return flags.run_loop(demo(scenario, options))


def demo_monitor() -> dict[str, Any]:
    """The example monitor as the demo registers it: in the `default` namespace, with
    `REVIEW` and `SEGMENTS`."""
    text = resources.files("truthloop.examples").joinpath(MONITOR_FILE).read_text()
    body: dict[str, Any] = yaml.safe_load(text)
    body["metadata"] = {**body.get("metadata", {}), "namespace": NAMESPACE}
    body["spec"] = {**body["spec"], "review": REVIEW, "segments": SEGMENTS}
    return body


@dataclass(frozen=True, slots=True)
class Options:
    seed: int = 2
    keep_running: bool = False
    plain: bool = True


async def demo(scenario: Scenario, options: Options) -> int:
    """Run the demo; 0 when it ran to its end (and, kept running, was stopped), 130 when
    interrupted before."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clock = TimeLapse(scenario.speed)
    view: View = (
        PlainView(sys.stdout, clock.wall_elapsed)
        if options.plain
        else LiveView(Console(), f"truthloop demo · time-lapse {scenario.speed:g}×")
    )
    try:
        with tempfile.TemporaryDirectory(prefix="truthloop-demo-") as workdir:
            try:
                run = Run(scenario, options, clock, view, stop)
                status = await run.run(Path(workdir))
            finally:
                view.close()
        print(f"stopped; {workdir} removed", flush=True)
        return status
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def serving_model(model: churn_model.ChurnModel) -> AsyncIterator[local.Address]:
    """The example churn model on a free port of 127.0.0.1."""
    runner = web.AppRunner(churn_model.make_app(model), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


class Run:
    """One run of the demo: the parts up, the story driven and shown, the summary, the end.

    Times shown are service seconds since the traffic started (`since`); the scenario counts wall
    seconds from the same moment (`wall`).
    """

    def __init__(
        self,
        scenario: Scenario,
        options: Options,
        clock: TimeLapse,
        view: View,
        stop: asyncio.Event,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.clock = clock
        self.view = view
        self.stop = stop
        self.body = demo_monitor()
        self.monitor = core_spec.parse_monitor(self.body)
        self._origin = clock.now()
        self._offset = clock.wall_elapsed()

    def since(self) -> float:
        return self.clock.now() - self._origin

    def wall(self) -> float:
        return self.clock.wall_elapsed() - self._offset

    async def run(self, workdir: Path) -> int:
        async with contextlib.AsyncExitStack() as stack:
            fitted = churn_model.fit()
            model = await stack.enter_async_context(serving_model(fitted))
            canary = await stack.enter_async_context(
                serving_model(churn_model.fit(without=CANARY_WITHOUT))
            )
            parts = await stack.enter_async_context(
                local.running(
                    local.StackSettings(
                        monitor=self.body,
                        model=model,
                        model_version=VERSION,
                        canary=local.Canary(canary, CANARY),
                        workdir=workdir,
                        clock=self.clock.now,
                        stamp=self.clock.at,
                        engine=EngineSettings(tick_interval=TICK),
                        shadow_concurrency=64,
                        linger=0.05,
                        minutes_interval=60.0 / SPEED,
                    )
                )
            )
            rows = await upload_reference(parts, fitted)
            self._origin, self._offset = self.clock.now(), self.clock.wall_elapsed()
            self.scenario = replace(self.scenario, origin=self._origin)
            self.view.lines(header(self.scenario, self.monitor, parts, model, workdir, rows))
            window = core_spec.format_duration(self.monitor.spec.metrics.window)
            watcher = Watcher(
                parts.feedback_url,
                parts.monitor,
                self.monitor.spec,
                elapsed=self.since,
                on_change=lambda change: self.view.event(change.at, phase_text(change)),
                on_drift=lambda change: self.view.event(change.at, drift_text(change, window)),
            )
            await stack.enter_async_context(watcher.watching())
            traffic = Traffic(
                self.scenario,
                proxy_url=parts.proxy_url,
                feedback_url=parts.feedback_url,
                monitor=parts.monitor,
                seed=self.options.seed,
                elapsed=self.wall,
                canary_url=parts.canary_url,
                canary_share=CANARY_SHARE,
            )
            reviewer = Reviewer(
                parts.feedback_url,
                parts.monitor,
                traffic.truth,
                pace=REVIEW_PACE,
                delay=REVIEW_DELAY,
                now=self.clock.now,
            )
            if not await self._drive(parts, watcher, traffic, reviewer):
                self.view.lines(["interrupted: stopping everything"])
                return 130
            self.view.status(self._status(watcher, traffic))
            self.view.close()
            await self._summarize(parts, watcher, traffic, reviewer)
            if self.options.keep_running:
                self.view.lines(explore(parts))
                await self.stop.wait()
        return 0

    def _status(self, watcher: Watcher, traffic: Traffic) -> Status:
        seen = watcher.seen
        return Status(
            at=self.since(),
            phase=seen.phase,
            reading=seen.reading,
            by_fallback=traffic.counts.by_fallback,
            drifted=self.scenario.drifted(self.wall()),
            trend=trend(seen.history),
            drift=seen.drift,
            abstained=traffic.counts.abstained,
        )

    async def _drive(
        self, parts: local.Stack, watcher: Watcher, traffic: Traffic, reviewer: Reviewer
    ) -> bool:
        """The traffic, the reviewer, the world's shifts and the view, until the end (the
        reviewer through the queue, every label joined); False if stopped."""

        async def show() -> None:
            scenario = self.scenario
            story = sorted(
                [(shift.at, shift.text) for shift in (*scenario.shifts, scenario.turn)]
                + [(scenario.burst, scenario.burst_text)]
            )
            while True:
                while story and self.wall() >= story[0][0]:
                    self.view.event(self.since(), story.pop(0)[1])
                self.view.status(self._status(watcher, traffic))
                await asyncio.sleep(REFRESH)

        async def drive() -> None:
            reviewing = asyncio.create_task(reviewer.run())
            try:
                await traffic.run()
            finally:
                reviewing.cancel()
                await asyncio.gather(reviewing, return_exceptions=True)
            self.clock.settle()  # the story is over: the windows stop racing ahead of the summary
            await reviewer.drain()
            await _await_labels(parts, traffic.counts.actuals, traffic.counts.actuals_for_fallback)

        shower = asyncio.create_task(show())
        driver = asyncio.create_task(drive())
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({driver, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if self.stop.is_set():
                return False
            await driver
            return True
        finally:
            for task in (shower, driver, stopped):
                task.cancel()
            await asyncio.gather(shower, driver, stopped, return_exceptions=True)

    async def _summarize(
        self, parts: local.Stack, watcher: Watcher, traffic: Traffic, reviewer: Reviewer
    ) -> None:
        speed = self.scenario.speed
        drift, back = (shift.at * speed for shift in self.scenario.shifts)
        turn = self.scenario.turn.at * speed
        spec = self.monitor.spec
        alert = spec.alerts[0]
        estimated = summaries.estimate_story(
            watcher.seen.history,
            threshold=alert.below if alert.below is not None else 0.0,
            min_samples=spec.metrics.min_samples,
            drift=(drift, turn, back),
            drifted_labels=[(at * speed, n) for at, n in traffic.drifted_labels],
        )
        # the fallback is compared with the model where churn follows the price: its rules' world
        result = await _summary(
            parts,
            traffic,
            watcher,
            self._origin,
            (self._origin + turn, self._origin + back),
            estimated,
            self._origin + drift,
            reviewer,
            abstain_of(spec),
            spec.metrics.min_samples,
        )
        metrics_url = f"{parts.feedback_url}/v1/monitors/{parts.monitor}/metrics"
        lines = [
            "",
            *summaries.lines(
                result, f"{metrics_url}?window={SUMMARY_WINDOW}", self.scenario.label_delay
            ),
            f"  trend     {trend(watcher.seen.history)}  (model accuracy in the window)",
        ]
        if self.options.plain:
            lines.append("result " + msgspec.json.encode(result.to_dict()).decode())
        self.view.lines(lines)


def header(
    scenario: Scenario,
    monitor: core_spec.Monitor,
    parts: local.Stack,
    model: local.Address,
    workdir: Path,
    reference_rows: int,
) -> list[str]:
    spec = monitor.spec
    alert = spec.alerts[0]
    duration = core_spec.format_duration
    drift, back = scenario.shifts
    speed = scenario.speed
    return [
        f"truthloop demo: time-lapse {speed:g}×: one second is {speed:g} seconds of service time",
        f"  model     http://{model[0]}:{model[1]}{PREDICT_PATH}"
        f"  logistic regression fitted on customers of the usual world",
        f"  sidecar   {parts.proxy_url}  in front of the model, capturing every prediction",
        f"  canary    {parts.canary_url}  {CANARY}, fitted without {', '.join(CANARY_WITHOUT)},"
        f" behind a sidecar of its own: {CANARY_SHARE:.0%} of the customers (the rest {VERSION})",
        f"  feedback  {parts.feedback_url}  SQLite in {workdir}",
        f"  ui        {parts.feedback_url}/ui/#/m/{parts.monitor}"
        "  the dashboard, live as the story runs",
        f"  monitor   {parts.monitor}: {alert.metric} below {alert.below:g}"
        f" for {duration(alert.for_)} in a {duration(spec.metrics.window)} window (at least"
        f" {spec.metrics.min_samples} labeled) engages the fallback rules;"
        f" recoverAfter {duration(spec.fallback.recover_after)}",
        f"  reference {reference_rows} training customers (features, the model's predictions and"
        " scores, whether they churned) uploaded as CSV: drift and outliers are measured against"
        " them, and the scores calibrated on them estimate accuracy, no label needed",
        f"  traffic   {scenario.rate:g} customers a second ({scenario.requests} in all) with"
        f" X-Entity-ID; each label arrives {scenario.label_delay:g}s after its prediction",
        *review_lines(spec),
        *segment_lines(spec),
        f"  story     a meter breaks {summaries.clock(scenario.burst * speed)}, the world drifts"
        f" {summaries.clock(drift.at * speed)}, churn turns to the price"
        f" {summaries.clock(scenario.turn.at * speed)}, the world shifts back"
        f" {summaries.clock(back.at * speed)};"
        f" {summaries.clock(scenario.duration * speed)} in all ({scenario.duration:g}s)",
        *legend(duration(spec.metrics.window)),
        "",
    ]


def abstain_of(spec: core_spec.MonitorSpec) -> summaries.Abstain | None:
    abstain = spec.review.abstain if spec.review is not None else None
    if abstain is None:
        return None
    return summaries.Abstain(abstain.low, abstain.high, abstain.explore)


def review_lines(spec: core_spec.MonitorSpec) -> list[str]:
    """The header's words for `spec.review` and the reviewer."""
    review = spec.review
    if review is None:
        return []
    per = (
        f"{core_spec.format_duration(spec.metrics.window)} window"
        if review.per == "window"
        else "day"
    )
    abstain = review.abstain
    band = (
        ""
        if abstain is None
        else f'; the sidecar answers "I don\'t know" for a score in [{abstain.low:g},'
        f" {abstain.high:g}] and for {abstain.explore:.0%} of the others at random, and queues"
        " them"
    )
    return [
        f"  review    {review.budget:g} predictions per {per} queued for review"
        f" ({review.random:.0%} at random, {review.borderline:.0%} the most uncertain), each with"
        f" its known chance{band}; reviewers take items from the queue and label each"
        f" {REVIEW_DELAY:g}s after its prediction, before the CRM's labels come",
    ]


def segment_lines(spec: core_spec.MonitorSpec) -> list[str]:
    """The header's words for `spec.segments`."""
    return [
        f"  segment   {segment.name}: every metric kept per range too"
        f" ({', '.join(ranges(segment.buckets))} months; the drift's newcomers are"
        " 18 to 30 months in, the price's customers newer)"
        for segment in spec.segments
    ]


def ranges(edges: tuple[float, ...]) -> list[str]:
    """The names of the ranges `edges` cut a segment's numbers into."""
    return [segments.bucket(edges, edges[0] - 1), *(segments.bucket(edges, e) for e in edges)]


def phase_text(change: PhaseChange) -> str:
    if change.previous is None:
        return f"phase {change.current}: {change.detail}"
    return f"phase {change.previous} → {change.current}: {change.detail}"


def drift_text(change: DriftChange, window: str) -> str:
    """A drift change as an event line; `window` is the one the readings are over."""
    r = change.reading
    features = f"{len(r.drifted)} of {r.tested} features in the last {window}"
    if change.what == "drift":
        return (
            f"drift: {features} left the reference, seen in the inputs as they are captured,"
            " before any label"
        )
    if change.what == "drift_cleared":
        return f"drift cleared: {features} drifted"
    ratio = "-" if r.outlier_ratio is None else f"{r.outlier_ratio:.1%}"
    if change.what == "outliers":
        return (
            f"outliers: {ratio} of the last {window}'s records ({summaries.records(r.outliers)})"
            f" lie outside the reference; {features} drifted"
        )
    return f"outliers: none left in the last {window}"


def reference_csv(model: churn_model.ChurnModel) -> tuple[bytes, int]:
    """The model's training customers as a reference data set: one row each, its features,
    `model`'s prediction and score, and whether the customer churned. (CSV, rows)"""
    customers, labels = churn_model.training_set()
    out = io.StringIO()
    features = list(customers[0])
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*features, "prediction", "score", "actual"])
    for customer, churned in zip(customers, labels, strict=True):
        prediction, score = model.predict(customer)
        writer.writerow([*(customer[f] for f in features), prediction, round(score, 6), churned])
    return out.getvalue().encode(), len(customers)


async def upload_reference(parts: local.Stack, model: churn_model.ChurnModel) -> int:
    """Send the reference through the service's API, as a user would; the rows it holds."""
    body, rows = reference_csv(model)
    url = f"{parts.feedback_url}/v1/monitors/{parts.monitor}/reference"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "text/csv"}) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"the reference was refused: {await response.text()}")
    return rows


def explore(parts: local.Stack) -> list[str]:
    base = f"{parts.feedback_url}/v1/monitors/{parts.monitor}"
    return [
        "",
        "still running (service time now passes at the wall clock's pace); explore, then Ctrl-C:",
        f"  dashboard     {parts.feedback_url}/ui/#/m/{parts.monitor}?w={SUMMARY_WINDOW}",
        f"  metrics API   curl -s '{base}/metrics?window={SUMMARY_WINDOW}&series=1m'",
        f"  state         curl -s {base}/state",
        f"  drift         curl -s '{base}/drift?window={SUMMARY_WINDOW}'",
        f"  dataset       curl -s '{base}/dataset?window={SUMMARY_WINDOW}&format=csv'",
        f"  outliers      curl -s '{base}/dataset?window={SUMMARY_WINDOW}&outlier=true&format=csv'",
        f"  reviewed      curl -s '{base}/dataset?window={SUMMARY_WINDOW}&reviewed=true"
        "&format=csv'",
        f"  review queue  curl -s '{base}/review?reviewer=me&limit=5'",
        f"  segment       curl -s '{base}/metrics?window={SUMMARY_WINDOW}"
        f"&segment={SEGMENTS[0]['name']}'",
        f"  versions      curl -s '{base}/versions?window={SUMMARY_WINDOW}'",
        f"  compare       curl -s '{base}/compare?a={VERSION}&b={CANARY}&window={SUMMARY_WINDOW}'",
        f"  backtest      truthloop backtest -f examples/{MONITOR_FILE} --feedback-url"
        f" {parts.feedback_url} --from {SUMMARY_WINDOW} --html backtest.html",
        f"  Prometheus    curl -s {parts.feedback_url}/metrics",
        f"  sidecar       curl -s {parts.admin_url}/metrics",
        f"  predict       curl -si {parts.proxy_url}{PREDICT_PATH} -H 'X-Entity-ID: me'"
        ' -d \'{"features": {"tenure": 2, "monthly_charges": 99.5, "contract": "month-to-month",'
        ' "support_calls": 3}}\'',
    ]


async def _get(session: aiohttp.ClientSession, url: str, **query: str) -> Any:
    async with session.get(url, params=query) as response:
        response.raise_for_status()
        return await response.json()


async def _await_labels(parts: local.Stack, model_labels: int, fallback_labels: int) -> None:
    """Wait (a few seconds at most) until every actual sent has joined its predictions."""
    url = f"{parts.feedback_url}/v1/monitors/{parts.monitor}/metrics"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LABELS_WITHIN
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            answer = await _get(session, url, window=SUMMARY_WINDOW)
            served = answer["served_by"]
            if (served["model"]["labeled"], served["fallback"]["labeled"]) == (
                model_labels,
                fallback_labels,
            ):
                return
            await asyncio.sleep(REFRESH)


async def _summary(
    parts: local.Stack,
    traffic: Traffic,
    watcher: Watcher,
    start: float,
    drifted: tuple[float, float],
    estimated: summaries.EstimateStory,
    calm_until: float,
    reviewer: Reviewer,
    abstain: summaries.Abstain | None,
    min_samples: int,
) -> summaries.Summary:
    url = f"{parts.feedback_url}/v1/monitors/{parts.monitor}/metrics"
    async with aiohttp.ClientSession() as session:
        overall = await _get(session, url, window=SUMMARY_WINDOW)
        series: Mapping[str, Any] = {
            served: (
                await _get(session, url, window=SUMMARY_WINDOW, series="1m", served_by=served)
            )["series"]
            for served in ("model", "fallback")
        }
        segment = await _get(
            session,
            url,
            window=SUMMARY_WINDOW,
            served_by="model",
            segment=SEGMENTS[0]["name"],
        )
        base = f"{parts.feedback_url}/v1/monitors/{parts.monitor}"
        versions = await _get(session, f"{base}/versions", window=SUMMARY_WINDOW)
        compare = await _get(session, f"{base}/compare", a=VERSION, b=CANARY, window=SUMMARY_WINDOW)
        async with session.post(f"{base}/backtest", json={"from": start}) as response:
            response.raise_for_status()
            backtest = await response.json()
    return summaries.summarize(
        traffic.counts,
        SUMMARY_WINDOW,
        overall,
        series["model"],
        series["fallback"],
        changes=watcher.seen.changes,
        start=start,
        drifted=drifted,
        drift_changes=watcher.seen.drift_changes,
        drift_readings=watcher.seen.drift_history,
        estimated=estimated,
        calm_until=calm_until,
        reviews=reviewer.reviews,
        abstain=abstain,
        segment=segment,
        versions=versions,
        compare=compare,
        min_samples=min_samples,
        backtest=backtest,
    )
