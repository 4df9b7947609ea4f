"""Watching the monitor through the feedback service's APIs, as `kubectl get mm -w` would.

Three loops: one long-polls `GET .../state?wait=&since=` so every phase change is seen as soon as
the service makes it (a phase that lasts a second is not missed between samples), one reads
`GET .../metrics` (the monitor's window) a few times a second for the model's accuracy, its
interval and the labeled count, its estimated accuracy (from its scores, no label needed), its
accuracy estimated from the reviewed labels with the reviews behind it, and the fallback's
accuracy, and one reads `GET .../drift` over
the same window as often: which features drifted from the reference and the share of outlier
records, known as soon as the predictions are captured, with no label. `describe` turns a state
into the reason an event line shows; `drift_changes` turns two drift readings into what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import msgspec

from truthloop.core import wire
from truthloop.core.spec import MonitorSpec, format_duration

T = TypeVar("T")

METRIC = "accuracy"
LONG_POLL = 5.0
METRICS_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    lower: float | None
    upper: float | None

    def text(self) -> str:
        """`0.95 [0.90–0.98]`, or `0.95` without an interval."""
        if self.lower is None or self.upper is None:
            return f"{self.value:.2f}"
        return f"{self.value:.2f} [{self.lower:.2f}–{self.upper:.2f}]"


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer of the metrics API over the monitor's window, `at` service seconds in: the
    model's predictions (its shadow answers included while the fallback serves) and the accuracy
    of the fallback's answers, so the view can show what clients were served beside the model."""

    at: float
    samples: int
    labeled: int
    accuracy: Estimate | None
    fallback: Estimate | None = None
    """None while the fallback has no labeled answer in the window."""
    estimated: Estimate | None = None
    """The model's accuracy estimated from its scores over all the window's predictions, labeled
    or not (the metrics API's `estimated`); None without a calibrated reference."""
    reviewed: Estimate | None = None
    """The model's accuracy over the window estimated from the reviewed labels (the metrics
    API's `reviewed`); None before any review."""
    reviews: int = 0
    """The reviewed labels behind `reviewed`."""


@dataclass(frozen=True, slots=True)
class DriftReading:
    """One answer of `GET .../drift` over the monitor's window, `at` service seconds in."""

    at: float
    samples: int
    """Records sketched against the reference in the window."""
    tested: int
    """Features with values in the window."""
    drifted: tuple[str, ...]
    """The features that drifted, each by its own test."""
    flagged: bool
    """Dataset drift: the share of drifted features reached `spec.drift.share`."""
    outliers: int
    """Records in the window outside the reference (`outlier_ratio` of `samples`)."""
    outlier_ratio: float | None


def drift_reading(answer: Mapping[str, Any], at: float) -> DriftReading | None:
    """The report of a `GET .../drift` answer as read; None without a reference or data."""
    report = answer.get("drift") or {}
    if report.get("status") != "ok":
        return None
    dataset = report.get("dataset") or {}
    outliers = report.get("outliers") or {}
    return DriftReading(
        at=at,
        samples=int(report.get("samples", 0)),
        tested=int(dataset.get("tested", 0)),
        drifted=tuple(dataset.get("names", ())),
        flagged=bool(dataset.get("drifted", False)),
        outliers=int(outliers.get("count", 0)),
        outlier_ratio=outliers.get("ratio"),
    )


DriftEvent = Literal["drift", "drift_cleared", "outliers", "outliers_gone"]


@dataclass(frozen=True, slots=True)
class DriftChange:
    """Dataset drift flagged or cleared, or outliers appearing in or leaving the window."""

    what: DriftEvent
    reading: DriftReading

    @property
    def at(self) -> float:
        return self.reading.at


def drift_changes(previous: DriftReading | None, current: DriftReading) -> list[DriftChange]:
    """What changed from `previous` (None: nothing read yet) to `current`."""
    flagged = previous is not None and previous.flagged
    outliers = previous is not None and previous.outliers > 0
    changes = []
    if current.flagged != flagged:
        changes.append(DriftChange("drift" if current.flagged else "drift_cleared", current))
    if (current.outliers > 0) != outliers:
        changes.append(DriftChange("outliers" if current.outliers else "outliers_gone", current))
    return changes


@dataclass(frozen=True, slots=True)
class PhaseChange:
    at: float
    """Service seconds since the start."""
    previous: str | None
    current: str
    detail: str


@dataclass(slots=True)
class Seen:
    """What the watcher knows now."""

    phase: str | None = None
    fallback: bool = False
    reading: Reading | None = None
    changes: list[PhaseChange] = field(default_factory=list)
    history: list[Reading] = field(default_factory=list)
    drift: DriftReading | None = None
    drift_history: list[DriftReading] = field(default_factory=list)
    drift_changes: list[DriftChange] = field(default_factory=list)


def estimate(metrics: Mapping[str, Any], name: str = METRIC) -> Estimate | None:
    """A metric of a metrics-API answer (`{"value", "lower", "upper"}`), None when undefined."""
    entry = metrics.get(name)
    if not isinstance(entry, Mapping) or entry.get("value") is None:
        return None
    return Estimate(entry["value"], entry.get("lower"), entry.get("upper"))


def reviewed(part: Mapping[str, Any]) -> tuple[Estimate | None, int]:
    """A metrics-API part's accuracy from the reviewed labels, and the reviews behind it."""
    found = part.get("reviewed") or {}
    entry = found.get(METRIC) or {}
    return estimate(found), int(entry.get("n") or 0)


def describe(state: wire.MonitorState, spec: MonitorSpec, previous: str | None = None) -> str:
    """Why the monitor is in its phase (coming from `previous`): the event line's detail."""
    phase = state.phase
    alerts = {alert.name: alert for alert in spec.alerts}
    observed = [a for a in state.alerts if a.name in alerts]
    if phase == "Collecting":
        return (
            f"waiting for {spec.metrics.min_samples} labeled predictions"
            f" in the window ({format_duration(spec.metrics.window)})"
        )
    if phase == "Degraded":
        return "; ".join(
            f"{a.name} {a.status}: {_breach(alerts[a.name], a.value)}"
            f", fires after {format_duration(alerts[a.name].for_)}"
            for a in observed
            if a.status in ("pending", "firing")
        )
    if phase == "FallbackActive":
        reason = state.fallback.reason or "manual"
        return (
            f"{reason}: the fallback rules answer (X-Served-By: fallback);"
            " the model still answers, unseen, and is measured"
        )
    if phase == "Healthy":
        values = "; ".join(
            f"{a.name} ok: {alerts[a.name].metric} {_number(a.value)}" for a in observed
        )
        if previous == "FallbackActive":
            values += (
                f"; clear for {format_duration(spec.fallback.recover_after)} (recoverAfter),"
                " the model answers again"
            )
        return values or "enough labels, no alert"
    return phase


def _breach(alert: Any, value: float | None) -> str:
    sign, bound = ("<", alert.below) if alert.below is not None else (">", alert.above)
    return f"{alert.metric} {_number(value)} {sign} {bound:g}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class Watcher:
    """Follows one monitor; `on_change` is called with each phase change as it is seen."""

    def __init__(
        self,
        feedback_url: str,
        monitor: str,
        spec: MonitorSpec,
        *,
        elapsed: Callable[[], float],
        on_change: Callable[[PhaseChange], None],
        on_drift: Callable[[DriftChange], None] = lambda change: None,
    ) -> None:
        self.seen = Seen()
        self._base = f"{feedback_url}/v1/monitors/{monitor}"
        self._spec = spec
        self._elapsed = elapsed
        """Service seconds since the start."""
        self._on_change = on_change
        self._on_drift = on_drift

    @contextlib.asynccontextmanager
    async def watching(self) -> Any:
        """Both loops run inside the block."""
        async with aiohttp.ClientSession() as session:
            self.observe_state(await _get(session, self._base + "/state", wire.MonitorState))
            tasks = [
                asyncio.create_task(self._follow_state(session)),
                asyncio.create_task(self._poll_metrics(session)),
                asyncio.create_task(self._poll_drift(session)),
            ]
            try:
                yield self
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _follow_state(self, session: aiohttp.ClientSession) -> None:
        version: int | None = None
        while True:
            query = {"wait": str(LONG_POLL)}
            if version is not None:
                query["since"] = str(version)
            try:
                state = await _get(session, self._base + "/state", wire.MonitorState, query)
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(METRICS_INTERVAL)
                continue
            version = state.version
            self.observe_state(state)

    def observe_state(self, state: wire.MonitorState) -> None:
        seen = self.seen
        seen.fallback = state.fallback.active
        phase = state.phase
        if phase != seen.phase:
            detail = describe(state, self._spec, seen.phase)
            change = PhaseChange(self._elapsed(), seen.phase, phase, detail)
            seen.phase = phase
            seen.changes.append(change)
            self._on_change(change)

    async def _poll_metrics(self, session: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                answer = await _get(session, self._base + "/metrics", dict[str, Any])
                model, fallback = answer["served_by"]["model"], answer["served_by"]["fallback"]
                reading = Reading(
                    self._elapsed(),
                    model["samples"],
                    model["labeled"],
                    estimate(model["metrics"]),
                    estimate(fallback["metrics"]),
                    estimate(model.get("estimated") or {}),
                    *reviewed(model),
                )
                self.seen.reading = reading
                self.seen.history.append(reading)
            await asyncio.sleep(METRICS_INTERVAL)

    async def _poll_drift(self, session: aiohttp.ClientSession) -> None:
        query = {"window": format_duration(self._spec.metrics.window)}
        while True:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                answer = await _get(session, self._base + "/drift", dict[str, Any], query)
                reading = drift_reading(answer, self._elapsed())
                if reading is not None:
                    self.observe_drift(reading)
            await asyncio.sleep(METRICS_INTERVAL)

    def observe_drift(self, reading: DriftReading) -> None:
        seen = self.seen
        changes = drift_changes(seen.drift, reading)
        seen.drift = reading
        seen.drift_history.append(reading)
        for change in changes:
            seen.drift_changes.append(change)
            self._on_drift(change)


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    answer: type[T],
    query: Mapping[str, str] | None = None,
) -> T:
    """The answer decoded as `answer`; one that is not raises ValueError (`msgspec`'s)."""
    async with session.get(url, params=query) as response:
        response.raise_for_status()
        return msgspec.json.decode(await response.read(), type=answer)
