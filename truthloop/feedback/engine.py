"""The feedback engine: what the service does, between the HTTP handlers and the store.

It knows no HTTP: what it refuses it raises as `refusals` (with `SpecError` and
`registry.TaskChange` from core), which the HTTP boundary answers with a status and a body.

It owns the registry of monitors and each monitor's alert/fallback state. Writes are validated
with `core.records` and handed to the store in one transaction; reads come from the store, so
several replicas sharing one database agree. `tick` (every `EngineSettings.tick_interval`) reads
each monitor's window, steps the pure alert machine (`core.alerts`), persists and announces any
change (long-poll waiters wake at once), sweeps missing actuals, expires pending ones, enforces
retention and purges deleted monitors, and leaves a `Snapshot` for the Prometheus exporter, which
reads memory only.

Several replicas may share one store. Each takes any write; only the one the store lets lead
(`Store.try_lead`) steps the alert machines and keeps house on its ticks, the others refresh the
windows they report. Every change of a monitor's state — a tick's step, a mode, an Alertmanager
alert, a new spec — happens inside `Store.hold_state`, starting from the state as stored, so
replicas never overwrite each other's changes; the store tells the others (`Store.watch`), and
they reread monitors and states and wake their long-poll waiters.

References (what drift is measured against) are uploaded data sets, parsed and profiled in a
worker thread as they arrive, or built by the leader from a period of captured records
(`spec.drift.reference`) in the background; `drift` reads a window's summed sketches against one.

Human review (`spec.review`): the leader fits each monitor's selection design (`core.review`) to
the last hour's traffic at most once a minute and keeps it in the monitor's state, so every
replica queues the same records at ingest; it closes expired queue items on its ticks, and every
replica reads the queue's depth each tick for the state and the exporter.

Segments (`spec.segments`): the leader chooses each monitor's value sets (`segments.choose`)
from the raw values of the last hour's records every `SEGMENTS_EVERY` seconds (at once for a
changed `spec.segments`, and on each tick while a segment has no value yet and records came) and
keeps them in the monitor's state, so every replica assigns a record the same kept value at
ingest. Each tick reads the segments that alerts watch or Prometheus exports, one read each,
evaluates every value (`core.segment_metrics`) and feeds the segment alerts the worst value; the
segments with `drift` that drift alerts watch are read with the monitor's drift (their values'
feature sketches, one read each, against the same reference).

A monitor's state `version` increases whenever what `state()` reports changes: phase, fallback,
any alert's status, the spec generation, the external (Alertmanager) alerts, the manual mode or
the review status — not when an alert's latest value moves, which would wake every follower on
every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import random
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import msgspec

from truthloop.core import (
    alerts,
    capture,
    chunks,
    cloudevents,
    drift,
    estimate,
    evaluation,
    join,
    labelstudio,
    metrics,
    periods,
    records,
    report,
    review,
    scopes,
    segment_metrics,
    segments,
    sidecar_stats,
    sketch,
    table,
    versions,
    windows,
    wire,
)
from truthloop.core import profile as profiles
from truthloop.core.drift import DriftPoint, DriftReport
from truthloop.core.evaluation import ALL_VERSIONS, Evaluated, Group
from truthloop.core.periods import Periods
from truthloop.core.plan import ACTUALS_EXPIRED, ACTUALS_MATCHED, ACTUALS_PENDING
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import (
    FALLBACK_MODES,
    CostSpec,
    FallbackMode,
    Monitor,
    MonitorSpec,
    ReviewSpec,
    format_time,
    parse_update,
)
from truthloop.core.tasks import Task
from truthloop.feedback import refusals, threads
from truthloop.feedback.settings import Settings
from truthloop.feedback.store.interface import (
    Counters,
    DatasetQuery,
    FeedbackResult,
    IngestResult,
    LabelsRejected,
    MonitorsGone,
    Only,
    QueueStats,
    Registered,
    ReportPart,
    ReviewItem,
    Store,
    StoredPrediction,
    StoredReport,
    StoredState,
)

log = logging.getLogger("truthloop.feedback")

_encode = msgspec.json.Encoder().encode
_decode_minutes = msgspec.json.Decoder(wire.SidecarMinutes).decode

OUTCOMES = {"matched": ACTUALS_MATCHED, "pending": ACTUALS_PENDING, "expired": ACTUALS_EXPIRED}

T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M", PredictionRecord, Actual)
"""An item of a write: it names its monitor."""

Live = dict[str, Registered]
"""The monitors this replica knows, by key, as a write sees them."""

CAPTURE_REFUSED_FOR = 300.0
"""Seconds a monitor's capture counts as refused after the last refused batch of its sidecars."""
CAPTURE_REFUSED_EVERY = 60.0
"""Seconds between stored refreshes of a refusal that goes on (a refused POST is unauthenticated:
it may cost the database one write a minute per registered monitor, never one per request)."""

PASSTHROUGH_WINDOW = 3600.0
"""Seconds of the sidecars' minutes the state's `capture.passthrough` counts (the last hour)."""
PASSTHROUGH_EVERY = 60.0
"""Seconds between the leader's reads of them (the sidecars post once a minute)."""

FOLLOW_RETRY = 1.0
"""Seconds before rereading the store again after a failed reread (the database was away)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last tick saw of one monitor; the exporter reads only this."""

    monitor: Monitor
    state: alerts.MonitorState
    window: Mapping[Group, Evaluated]
    """Per (version, served_by), plus (ALL_VERSIONS, served_by) sums."""
    totals: Mapping[Group, Counters]
    counters: Mapping[Group, Counters]
    """The window's counters `window` was evaluated from."""
    drift: DriftReport | None = None
    """The window against the monitor's reference (None: not evaluated, no reference)."""
    drift_at: float | None = None
    """When `drift`'s sketches were read (the engine's clock)..."""
    drift_basis: DriftBasis | None = None
    """... and the window and references as they were then."""
    drift_versions: Mapping[str, DriftReport] = field(default_factory=dict)
    """The window's records of each model version with a reference of its own, against it
    (`drift` reads the default reference's, which those versions' records are not sketched
    against)."""
    references: tuple[tuple[str, int], ...] = ()
    """The references `window`'s estimates were made with (version, id)."""
    review: wire.ReviewSummary = field(default_factory=wire.ReviewSummary)
    """The review queue as the tick left it (`spec.review`)."""
    versions: tuple[wire.VersionSeen, ...] = ()
    """The model versions seen (`core.versions`)."""
    segments: Mapping[str, SegmentWindow] = field(default_factory=dict)
    """The window of each segment an alert watches or Prometheus exports, by name."""
    segment_drift: Mapping[str, Mapping[str, DriftReport]] = field(default_factory=dict)
    """Each value's drift of each segment a drift alert watches (`spec.segments[].drift`), read
    with `drift` (and kept while it is)."""


@dataclass(frozen=True, slots=True)
class SegmentWindow:
    """One segment's window: the model's records' counters (the segment's keys, every version)
    and each kept value evaluated."""

    counters: Counters
    values: Mapping[str, Evaluated]


@dataclass(frozen=True, slots=True)
class DriftBasis:
    """What a drift read saw: the window's buckets, its other counters (every record adds to
    `@predictions`) and the references' ids by version; while all are the same, so are the
    sketches."""

    span: windows.BucketRange
    counters: Mapping[Group, Counters]
    references: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """A monitor's metrics over a window, for the metrics API."""

    task: Task
    seconds: float
    span: windows.BucketRange
    groups: Mapping[Group, Evaluated]
    """Per (version, served_by), plus (ALL_VERSIONS, served_by) sums."""
    series: tuple[tuple[float, Evaluated], ...] | None
    """When asked: each step's start (Unix seconds) and its groups evaluated together."""
    cost: CostSpec | None = None
    """The monitor's `metrics.cost`: a group without data shows `cost` too."""


@dataclass(frozen=True, slots=True)
class SidecarWindow:
    """A monitor's sidecar minutes over a window, for the sidecar API."""

    seconds: float
    span: windows.BucketRange
    step: int
    """Minutes a step."""
    steps: list[tuple[float, dict[str, float]]]
    """Each step's start (Unix seconds) and its counters summed over pods (`{}`: none came)."""


@dataclass(frozen=True, slots=True)
class VersionsWindow:
    """A monitor's model versions over a window, for the versions and compare APIs."""

    seconds: float
    span: windows.BucketRange
    versions: Mapping[str, Evaluated]
    """Each version's model records, evaluated."""
    samples: int
    """The model records of every version."""
    spans: Mapping[str, windows.BucketRange]
    """Each version's minutes from its first record in the window to its last (when asked)."""


@dataclass(frozen=True, slots=True)
class SegmentMetrics:
    """A segment's values over a window, for the metrics API."""

    name: str
    by: segment_metrics.Ranking
    ranked: tuple[segment_metrics.Ranked, ...]
    """Every value the window holds, worst first."""
    known: frozenset[str]
    """The values the segment may have now (its kept values or buckets, `other`, `missing`)
    and those the window holds."""


@dataclass(frozen=True, slots=True)
class SegmentDrift:
    """A drift segment's values over a window, for the drift API."""

    name: str
    seconds: float
    span: windows.BucketRange
    by: segment_metrics.Ranking
    ranked: tuple[segment_metrics.DriftRanked, ...]
    """Every value the window holds, worst first."""
    known: frozenset[str]
    """The values the segment may have now and those the window holds."""
    empty: DriftReport
    """The report of a value without records in the window (against the same reference)."""


@dataclass(slots=True)
class _Runtime:
    """A monitor's live state; `changed` is set (and replaced) on every version bump."""

    registered: Registered
    state: alerts.MonitorState
    version: int
    external: frozenset[str] = frozenset()
    override: FallbackMode | None = None
    refused: CaptureRefused | None = None
    """The last time the monitor's sidecars had a batch refused, and why."""
    followers: int = 0
    """Long-polls of the state waiting now (each sidecar and the operator hold one)."""
    history: HistoryBuilt | None = None
    """The history reference last built (`spec.drift.reference`), or why none could be."""
    drift: wire.DriftSummary = field(default_factory=wire.DriftSummary)
    """The window's drift verdicts as the leader last stepped them (all replicas show these)."""
    review: ReviewKept | None = None
    """The leader's review design and the queue's status (all replicas select with it)."""
    queue: QueueStats | None = None
    """The review queue as this replica last read it (not persisted: it moves all the time)."""
    segments: SegmentSets | None = None
    """The leader's value sets of the monitor's segments (all replicas assign with them)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    fitted_for: tuple[Registered, str] | None = None
    """`registered` and its `design_basis`, computed once per spec (every ingest reads it)."""
    seen: tuple[wire.VersionSeen, ...] = ()
    """The model versions the leader has seen (`core.versions`), in the state."""
    report: wire.ReportLink | None = None
    """The newest report on an alert that fired (the leader's, built in the background)."""
    passthrough: wire.Passthrough | None = None
    """What the sidecars passed to the model uncaptured in the last hour, as the leader last
    read their minutes (all replicas show it)."""
    passthrough_read: float = 0.0
    """When this replica, leading, last read them (not persisted: a new leader reads at once)."""

    @property
    def basis(self) -> str:
        """The `design_basis` of the monitor's spec."""
        if self.fitted_for is None or self.fitted_for[0] is not self.registered:
            self.fitted_for = (self.registered, design_basis(self.registered.monitor.spec))
        return self.fitted_for[1]

    @property
    def mode(self) -> FallbackMode:
        return self.override or self.registered.monitor.spec.fallback.mode

    def persisted(self) -> tuple[Any, ...]:
        """What a restart must find again (the alerts' latest observations are recomputed)."""
        state = self.state.to_dict()
        for alert in state["alerts"]:
            del alert["value"], alert["samples"]
        state[DRIFT_KEY] = msgspec.to_builtins(self.drift)
        state[REVIEW_KEY] = msgspec.to_builtins(self.review)
        state[VERSIONS_KEY] = msgspec.to_builtins(self.seen)
        state[SEGMENTS_KEY] = msgspec.to_builtins(self.segments)
        state[REPORT_KEY] = msgspec.to_builtins(self.report)
        state[PASSTHROUGH_KEY] = msgspec.to_builtins(self.passthrough)
        return (
            state,
            self.registered.monitor.generation,
            sorted(self.external),
            self.override,
            self.refused,
            self.history,
        )

    def visible(self) -> tuple[Any, ...]:
        """What the state's `version` stands for: the part sidecars and the operator act on (a
        refusal that goes on refreshes its `last`, which wakes nobody; the history reference
        concerns neither)."""
        state, *rest, refused, _history = self.persisted()
        del state["clear_since"]
        state[REVIEW_KEY] = self.review and self.review.status  # not the design's numbers
        del state[SEGMENTS_KEY]  # the value sets concern the ingest, not the sidecars
        del state[PASSTHROUGH_KEY]  # a count that moves each minute: shown, acted on by nobody
        for alert in state["alerts"]:  # which values breach, not in which order this tick
            alert["values"] = sorted(alert.get("values", ()))
        return (state, *rest, refused and (refused.reason, refused.since))

    def stored(self) -> StoredState:
        """The state as the store keeps it; the refusal and the history reference's build ride
        in the state object."""
        state = self.state.to_dict()
        state[DRIFT_KEY] = msgspec.to_builtins(self.drift)
        if self.refused is not None:
            state[REFUSED_KEY] = msgspec.to_builtins(self.refused)
        if self.history is not None:
            state[HISTORY_KEY] = msgspec.to_builtins(self.history)
        if self.review is not None:
            state[REVIEW_KEY] = msgspec.to_builtins(self.review)
        if self.seen:
            state[VERSIONS_KEY] = msgspec.to_builtins(self.seen)
        if self.segments is not None:
            state[SEGMENTS_KEY] = msgspec.to_builtins(self.segments)
        if self.report is not None:
            state[REPORT_KEY] = msgspec.to_builtins(self.report)
        if self.passthrough is not None:
            state[PASSTHROUGH_KEY] = msgspec.to_builtins(self.passthrough)
        return StoredState(self.version, state, tuple(sorted(self.external)), self.override)


class CaptureRefused(msgspec.Struct, frozen=True):
    """The feedback service refused a batch of the monitor's sidecars: why, since and last when."""

    reason: str
    since: float
    last: float


REFUSED_KEY = "capture_refused"
DRIFT_KEY = "drift"
"""The drift summary rides in the state object too: every replica shows the leader's verdicts."""


def _drift_summary(stored: object) -> wire.DriftSummary:
    """The stored drift summary; a state stored before it had one (or an unreadable one) says
    nothing yet (the next step fills it in)."""
    if stored is None:
        return wire.DriftSummary()
    try:
        return msgspec.convert(stored, wire.DriftSummary)
    except msgspec.ValidationError:
        return wire.DriftSummary()


class HistoryBuilt(msgspec.Struct, frozen=True):
    """A history reference built from the records of `spec.drift.reference`'s period
    [`start`, `end`): the reference stored, or None with the `problem` that kept it from being
    built (no usable records); `at` when. Built once per period: a new period builds again."""

    start: float
    end: float
    reference: int | None
    problem: str | None
    at: float
    records: int = 0
    """The model's records of the period (the reference is built from a sample of at most
    `EngineSettings.history_sample` of them)."""


HISTORY_KEY = "history_reference"


class ReviewKept(msgspec.Struct, frozen=True, kw_only=True):
    """What the leader keeps of a monitor's review queue in its state: the design every
    replica selects with, the spec it was fitted for, and the status it last stepped."""

    design: review.Design
    basis: str
    """The review spec and metrics window the design was fitted for (`design_basis`): while a
    changed spec has no design of its own yet, records are selected with `review.initial`."""
    status: str = "ok"
    message: str | None = None


REVIEW_KEY = "review"
VERSIONS_KEY = "versions"
"""The model versions seen ride in the state object: a new one moves the state's version."""


def _versions_seen(stored: object) -> tuple[wire.VersionSeen, ...]:
    """The stored versions seen; none in a state stored before they were kept (or unreadable)."""
    try:
        return msgspec.convert(stored or (), tuple[wire.VersionSeen, ...])
    except msgspec.ValidationError:
        return ()


DESIGN_EVERY = 60.0
"""Seconds between fits of a monitor's review design (a changed spec is fitted at once)."""
DESIGN_TRAFFIC = 3600.0
"""The design is fitted to the last hour's traffic..."""
PLAN_TRAFFIC = 86400.0
"""... a plan to the last day's."""


def design_basis(spec: MonitorSpec) -> str:
    """A digest of what a review design is fitted for: `spec.review` and the metrics window."""
    encoded = msgspec.json.encode([spec.review, spec.metrics.window])
    return hashlib.sha256(encoded).hexdigest()[:16]


K = TypeVar("K", bound=msgspec.Struct)


def _kept(stored: object, kind: type[K]) -> K | None:
    """What the leader keeps in the state (its review design, its value sets) as stored; one
    stored before it was kept (or unreadable) is none: the leader makes one at its next step."""
    if stored is None:
        return None
    try:
        return msgspec.convert(stored, kind)
    except msgspec.ValidationError:
        return None


class SegmentSets(msgspec.Struct, frozen=True, kw_only=True):
    """The value sets the leader chose for a monitor's segments (`segments.choose`), kept in its
    state: every replica assigns records with them (`Store.insert_predictions`)."""

    sets: dict[str, tuple[str, ...]]
    """The kept values of each segment without buckets, by name."""
    basis: str
    """The `spec.segments` they were chosen for (`segments_basis`): a changed one chooses again."""
    chosen: float
    records: int = 0
    """The model's predictions in the window when chosen: a segment without a value yet is
    chosen again on the first tick that sees more (not on every tick of a quiet monitor)."""


SEGMENTS_KEY = "segments"
REPORT_KEY = "report"
"""The newest report's link rides in the state object: a new one moves the state's version."""
PASSTHROUGH_KEY = "passthrough"
"""What the sidecars passed through uncaptured rides there too, without moving the version."""
REPORTS_KEPT = 50
"""Reports a monitor keeps (the newest)."""
WRONG_SLICES = (600.0, 3600.0)
"""A report's sample of wrong predictions is the newest of the window's last 10 minutes, then of
the last hour, then of the rest, until it has `report.MAX_WRONG`..."""
WRONG_READ = 1000
"""... reading at most this many records of each."""
SEGMENTS_EVERY = 600.0
"""Seconds between choices of a monitor's value sets..."""
SEGMENTS_TRAFFIC = 3600.0
"""... from the raw values of the last hour's records..."""
SEGMENTS_SCAN = 100_000
"""... the newest of them at most."""


def segments_basis(spec: MonitorSpec) -> str:
    """A digest of what value sets are chosen for: `spec.segments`."""
    return hashlib.sha256(msgspec.json.encode(spec.segments)).hexdigest()[:16]


def value_sets(spec: MonitorSpec, kept: SegmentSets | None) -> segments.ValueSets:
    """The sets a record is assigned with: the leader's, each held to its segment's current
    `maxValues` (a spec just changed keeps the older choice until the leader's next tick)."""
    if kept is None:
        return {}
    return {s.name: kept.sets.get(s.name, ())[: s.max_values] for s in spec.segments}


def review_status(design: review.Design, queue: QueueStats | None) -> tuple[str, str | None]:
    """The queue's status: the design's when it cannot meet the budget, else `behind` when
    queued items expired unreviewed in the last day, else ok."""
    if design.status != "ok":
        return design.status, design.message or None
    expired = queue.expired if queue is not None else 0
    if expired:
        return "behind", (
            f"{expired} queued item{'s' if expired != 1 else ''} expired unreviewed in the last"
            f" day: reviewers do not keep up with the {design.expected_per_day:.0f} a day queued"
        )
    return "ok", design.message or None


def _restore(registered: Registered, stored: StoredState | None) -> _Runtime:
    """A monitor's runtime as persisted, or fresh from its spec."""
    if stored is None:
        return _Runtime(registered, alerts.initial_state(registered.monitor.spec), 0)
    override = stored.override if stored.override in FALLBACK_MODES else None
    refused = stored.state.get(REFUSED_KEY)
    history = stored.state.get(HISTORY_KEY)
    return _Runtime(
        registered,
        alerts.MonitorState.from_dict(stored.state),
        stored.version,
        frozenset(stored.external),
        override,
        None if refused is None else msgspec.convert(refused, CaptureRefused),
        history=None if history is None else msgspec.convert(history, HistoryBuilt),
        drift=_drift_summary(stored.state.get(DRIFT_KEY)),
        review=_kept(stored.state.get(REVIEW_KEY), ReviewKept),
        seen=_versions_seen(stored.state.get(VERSIONS_KEY)),
        segments=_kept(stored.state.get(SEGMENTS_KEY), SegmentSets),
        report=_kept(stored.state.get(REPORT_KEY), wire.ReportLink),
        passthrough=_kept(stored.state.get(PASSTHROUGH_KEY), wire.Passthrough),
    )


class Engine:
    """The service's behaviour; one per process, built by the app and started by its context."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._runtimes: dict[str, _Runtime] = {}
        self._lock = asyncio.Lock()
        self._refusing: dict[str, asyncio.Task[None]] = {}
        """Monitors whose refused capture is being stored (one writer each)."""
        self._rereading: asyncio.Future[None] | None = None
        self._reread_asked = 0
        self._reread_done = 0
        """Rereads asked for and the last one a finished reread covered (see `_reread`)."""
        self._refusals: dict[str, tuple[str, float]] = {}
        """The newest refusal of each monitor not stored yet: (reason, when)."""
        self.snapshots: dict[str, Snapshot] = {}
        self.rejected: dict[str, int] = {}
        """Actuals refused since start, per monitor named (`""`: none or an unknown one)."""
        self.ignored: dict[tuple[str, records.Reason], int] = {}
        """Values of stored records left out since start, per (monitor, reason): segments the
        monitor does not declare (`unknown_segment`)."""
        self._tokens: dict[str, str] = {}
        """The namespace tokens' SHA-256 (hex) -> namespace, as last read from the store."""
        self.ready = False
        self._stale = asyncio.Event()
        """Set when another replica may have changed monitors or state (`Store.watch`)."""
        self._stopping = False
        """Set by `end_long_polls`: state long-polls answer at once from then on."""
        self._profiling = asyncio.Semaphore(1)
        """One reference data set parsed and profiled at a time: each may take a core and
        hundreds of megabytes for seconds."""
        self._building: dict[str, asyncio.Task[None]] = {}
        """History references being built, by monitor (the leader's, in the background)."""
        self._reporting: dict[str, asyncio.Task[None]] = {}
        """Reports on alerts that fired being built, by monitor (each waits for the one before)."""
        self.reports_failed: dict[str, int] = {}
        """Reports that could not be built or stored since start, per monitor."""
        self.cloudevents_refused: dict[tuple[str, str], int] = {}
        """CloudEvents refused since start, per (monitor, reason): `too_many_waiting`, the
        `core.extract` reason of a pair the capture spec found no record in, or
        `invalid_records` for records the ingest refused (a prediction the task cannot use)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load monitors and their persisted state: a restart resumes where it stopped."""
        self.store.watch(self._stale.set)
        await self._sync()
        await self.tick()
        self.ready = True

    async def run(self) -> None:
        """Tick forever (a failing tick is logged and retried at the next interval), and follow
        what other replicas change meanwhile."""
        follower = asyncio.create_task(self._follow(), name="truthloop-feedback-follow")
        try:
            while True:
                await asyncio.sleep(self.settings.engine.tick_interval)
                try:
                    await self.tick()
                except Exception:
                    log.exception("engine tick failed")
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self) -> None:
        """Reread monitors and states whenever the store says another replica changed them."""
        while True:
            await self._stale.wait()
            self._stale.clear()
            try:
                await self._sync()
            except Exception:
                log.exception("rereading the store after another replica's change failed")
                self._stale.set()
                await asyncio.sleep(FOLLOW_RETRY)

    async def _sync(self) -> None:
        """Take the monitors and states as stored: the store's word wins over this memory."""
        stored = await self.store.load_monitors()
        states = await self.store.load_states()
        tokens = await self.store.load_tokens()
        self._tokens = {sha256: namespace for namespace, sha256 in tokens.items()}
        live = {r.monitor.key: r for r in stored if r.deleted is None}
        async with self._lock:
            for key in set(self._runtimes) - set(live):
                self._runtimes.pop(key).changed.set()
                self.snapshots.pop(key, None)
            for key, registered in live.items():
                runtime = self._runtimes.get(key)
                if runtime is None or runtime.registered.id != registered.id:
                    if runtime is not None:
                        runtime.changed.set()
                    self._runtimes[key] = _restore(registered, states.get(registered.id))
                else:
                    runtime.registered = _newest_references(registered, runtime.registered)
                    self._adopt(runtime, states.get(registered.id))

    def _adopt(self, runtime: _Runtime, stored: StoredState | None) -> None:
        """Take a state another replica stored (waking waiters if its version moved)."""
        if stored is None:
            return
        theirs = _restore(runtime.registered, stored)
        if theirs.version == runtime.version and theirs.persisted() == runtime.persisted():
            return
        runtime.state, runtime.external = theirs.state, theirs.external
        runtime.override, runtime.refused = theirs.override, theirs.refused
        runtime.history = theirs.history
        runtime.drift = theirs.drift
        runtime.review = theirs.review
        runtime.seen = theirs.seen
        runtime.segments = theirs.segments
        runtime.report = theirs.report
        runtime.passthrough = theirs.passthrough
        key = runtime.registered.monitor.key
        snapshot = self.snapshots.get(key)
        if snapshot is not None:
            self.snapshots[key] = replace(snapshot, state=runtime.state, versions=runtime.seen)
        if theirs.version != runtime.version:
            runtime.version = theirs.version
            runtime.changed.set()
            runtime.changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def _held(self, runtime: _Runtime) -> AsyncIterator[None]:
        """Change a monitor's state: no other replica changes it meanwhile, and the change
        starts from what is stored."""
        async with self.store.hold_state(runtime.registered.id) as stored:
            self._adopt(runtime, stored)
            yield

    def end_long_polls(self) -> int:
        """Answer every state long-poll now, and any asked from here on at once, so a stopping
        service does not wait for their timeouts (each sidecar and the operator hold one, up to
        30 s). The number of long-polls that were waiting."""
        self._stopping = True
        waiting = 0
        for runtime in self._runtimes.values():
            waiting += runtime.followers
            runtime.changed.set()
        return waiting

    def stop(self) -> None:
        """Drop refusals not stored yet (the sidecars keep being refused: they are noted again)
        and history references being built (the next leader builds them again)."""
        self.end_long_polls()
        for task in [*self._refusing.values(), *self._building.values(), *self._reporting.values()]:
            task.cancel()

    # -- monitors ------------------------------------------------------------------------------

    def registered(self, key: str) -> Registered:
        runtime = self._runtimes.get(key)
        if runtime is None:
            raise refusals.UnknownMonitor(key)
        return runtime.registered

    def monitors(self) -> list[Registered]:
        return [r.registered for r in self._runtimes.values()]

    async def put_monitor(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> tuple[Registered, bool]:
        """Register or replace a monitor; True when it is new. Raises `SpecError`, and
        `registry.TaskChange` for a task change (the store decides, so every replica answers the
        same)."""
        held = self._runtimes.get(f"{namespace}/{name}")
        monitor = parse_update(body, None if held is None else held.registered.body)
        key = monitor.key
        async with self._lock:
            registered, created = await self.store.put_monitor(monitor, body, self.settings.clock())
            runtime = self._runtimes.get(key)
            if runtime is None or runtime.registered.id != registered.id:
                if runtime is not None:
                    runtime.changed.set()
                stored = (await self.store.load_states()).get(registered.id)
                runtime = self._runtimes[key] = _restore(registered, stored)
            async with self._held(runtime):
                old_mode = runtime.registered.monitor.spec.fallback.mode
                if old_mode != registered.monitor.spec.fallback.mode:
                    runtime.override = None  # the newer word on the mode wins
                runtime.registered = registered
                await self._evaluate(runtime, self.settings.clock())
        return registered, created

    async def delete_monitor(self, key: str) -> None:
        """Delete a monitor; UnknownMonitor when the store has no live one (whatever this
        replica remembers)."""
        async with self._lock:
            deleted = await self.store.delete_monitor(key, self.settings.clock())
            runtime = self._runtimes.pop(key, None)
            self.snapshots.pop(key, None)
            if runtime is not None:
                runtime.changed.set()
        if not deleted:
            raise refusals.UnknownMonitor(key)

    # -- tokens --------------------------------------------------------------------------------

    async def scope(self, token: str) -> scopes.Scope | None:
        """What a bearer token may do: the admin token's scope, a registered namespace token's,
        or None for no token the service knows. A digest unknown here is looked up again in a
        shared store (another replica may have registered it a moment ago).

        The admin token is compared in constant time; a namespace token is found by its SHA-256,
        whose lookup time tells nothing of any token (learning a digest's first bytes does not
        help to guess a token). Tokens longer than `scopes.MAX_TOKEN_LENGTH` are none."""
        admin = self.settings.token
        if admin is not None and hmac.compare_digest(token.encode(), admin.encode()):
            return scopes.ADMIN
        if not token or len(token) > scopes.MAX_TOKEN_LENGTH:
            return None
        sha256 = scopes.digest(token)
        if sha256 not in self._tokens and self.store.shared:
            await self._reread()
        namespace = self._tokens.get(sha256)
        return None if namespace is None else scopes.Scope(namespace)

    async def put_token(self, namespace: str, sha256: str) -> None:
        """Register the namespace's token by its SHA-256, replacing the one it had."""
        await self.store.put_token(namespace, sha256, self.settings.clock())
        tokens = {h: ns for h, ns in self._tokens.items() if ns != namespace}
        tokens[sha256] = namespace
        self._tokens = tokens

    # -- writes --------------------------------------------------------------------------------

    def _live(self) -> tuple[Live, dict[str, Task]]:
        live = {key: r.registered for key, r in self._runtimes.items()}
        return live, {key: r.monitor.spec.task for key, r in live.items()}

    def _segments(self) -> dict[str, frozenset[str]]:
        """The names of each monitor's `spec.segments` (monitors with some), to check records'."""
        return {
            key: frozenset(s.name for s in r.registered.monitor.spec.segments)
            for key, r in self._runtimes.items()
            if r.registered.monitor.spec.segments
        }

    async def ingest(
        self, body: bytes, *, ndjson: bool = False, scope: scopes.Scope = scopes.ADMIN
    ) -> IngestResult:
        """Validate and store capture records (a JSON array, or NDJSON) of monitors in the
        `scope`; all or nothing."""
        now = self.settings.clock()

        async def store(parsed: records.Parsed[PredictionRecord], live: Live) -> IngestResult:
            named = [self._runtimes[k] for k in {r.monitor for r in parsed.items}
                     if k in self._runtimes]  # fmt: skip
            designs, sets = _designs(named), _value_sets(named)
            result = await self.store.insert_predictions(
                parsed.items, live, now, designs, segment_sets=sets
            )
            for key, n in parsed.ignored.items():  # counted once stored: a refusal changes nothing
                self.ignored[key] = self.ignored.get(key, 0) + n
            return replace(
                result,
                duplicates=result.duplicates + parsed.repeats,
                warnings=parsed.warnings,
                warnings_omitted=parsed.warnings_omitted,
            )

        return await self._write(
            "records",
            lambda tasks: records.parse_predictions(
                body, tasks, now, self.settings.limits, ndjson=ndjson, segments=self._segments()
            ),
            store,
            scope,
        )

    async def feedback(self, body: bytes, scope: scopes.Scope = scopes.ADMIN) -> FeedbackResult:
        """Validate and apply actuals (one, an array, or `{"items": [...]}`) for monitors in the
        `scope`; all or nothing."""
        now = self.settings.clock()

        async def store(parsed: records.Parsed[Actual], live: Live) -> FeedbackResult:
            try:
                result = await self.store.apply_actuals(parsed.items, live, now)
            except LabelsRejected as e:
                errors: list[records.ItemError] = []
                rejected: dict[str, int] = {}
                for error in e.errors:
                    if error.index is None:  # the batch as a whole: no item to point at
                        errors.append(error)
                        continue
                    errors.append(replace(error, index=parsed.indices[error.index]))
                    monitor = parsed.items[error.index].monitor
                    rejected[monitor] = rejected.get(monitor, 0) + 1
                self._count_rejected(rejected)
                raise refusals.InvalidItems("labels", errors) from e
            return replace(result, matched=result.matched + parsed.repeats)

        return await self._write(
            "actuals",
            lambda tasks: records.parse_actuals(body, tasks, now, self.settings.limits),
            store,
            scope,
            count_rejected=True,
        )

    async def _write(
        self,
        kind: refusals.Items,
        parse: Callable[[dict[str, Task]], records.Steps[records.Parsed[M]]],
        store: Callable[[records.Parsed[M], Live], Awaitable[R]],
        scope: scopes.Scope,
        *,
        count_rejected: bool = False,
    ) -> R:
        """Parse a body against the monitors this replica knows, then store it. Another replica
        may have registered a monitor the body names a moment ago, or deleted one: then reread
        the store and go again (an unknown monitor once; a deleted one each time a delete
        committed since the last reread, which refuses its items in the next parse). Items of
        monitors outside the `scope` refuse the whole body (`OutOfScope`)."""
        fresh = False
        while True:
            live, tasks = self._live()
            try:
                parsed = await _in_slices(parse(tasks))
            except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
                raise refusals.NotJson(str(e) or "nested too deeply") from None
            if parsed.errors and not fresh and self._unknown(parsed):
                await self._reread()
                fresh = True
                continue
            if parsed.errors:
                if count_rejected:
                    self._count_rejected(parsed.rejected)
                raise refusals.InvalidItems(kind, parsed.errors, parsed.omitted)
            monitors = (item.monitor for item in parsed.items)  # read only for a namespace token
            foreign = scopes.foreign_items(scope, monitors, parsed.indices)
            if foreign:
                raise refusals.OutOfScope(kind, scope.namespace or "", foreign)
            try:
                return await store(parsed, live)
            except MonitorsGone:
                await self._reread()
                fresh = True

    async def sidecar_minutes(self, body: bytes, scope: scopes.Scope = scopes.ADMIN) -> int:
        """Add a sidecar's minute counters (`wire.SidecarMinutes`, checked by
        `sidecar_stats.check`) to its monitor's, if the monitor is in the `scope`; how many
        minutes. All or nothing."""
        try:
            posted = _decode_minutes(body)
        except msgspec.ValidationError as e:
            error = records.ItemError(None, *records.type_error(e))
            raise refusals.InvalidItems("minutes", [error]) from None
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
            raise refusals.NotJson(str(e) or "nested too deeply") from None
        problems = sidecar_stats.check(posted)
        if problems.count:
            raise refusals.InvalidItems("minutes", problems.kept, problems.omitted)
        foreign = scopes.foreign_items(scope, [posted.monitor], [None])
        if foreign:
            raise refusals.OutOfScope("minutes", scope.namespace or "", foreign)
        registered = await self.lookup(posted.monitor)
        minutes: dict[int, dict[str, float]] = {}
        for minute in posted.minutes:
            sidecar_stats.add(
                minutes.setdefault(windows.bucket_of(minute.start), {}), minute.counts
            )
        if minutes:
            await self.store.add_sidecar_minutes(registered.id, minutes)
        return len(posted.minutes)

    async def cloudevent(
        self,
        event: cloudevents.Event,
        key: str,
        version: str | None = None,
        scope: scopes.Scope = scopes.ADMIN,
    ) -> CloudEventResult:
        """One half of an inference KServe's logger sent, for monitor `key`: kept until its
        other half comes (to any replica: the store pairs them), then both read with the
        monitor's capture spec into records, stored as `ingest` stores a sidecar's. A pair the
        monitor samples out is never stored; `version` is the model version the logger URL
        names, if any (`cloudevents.model_version`)."""
        foreign = scopes.foreign_items(scope, [key], [None])
        if foreign:
            raise refusals.OutOfScope("records", scope.namespace or "", foreign)
        registered = await self.lookup(key)
        monitor = registered.monitor
        if not capture.sampled(event.id, monitor.spec.capture.sample_rate):
            return CloudEventResult("sampled_out")
        now = self.settings.clock()
        limits = self.settings.cloudevents
        stored = await self.store.put_half(
            registered.id,
            cloudevents.pair_key(event),
            event.half,
            cloudevents.encode_half(cloudevents.Half.of(event, now)),
            now,
            limits.max_waiting,
        )
        if stored.outcome == "full":
            self._count_cloudevent(key, "too_many_waiting")
            raise refusals.TooManyWaiting(key, limits.max_waiting)
        if stored.request is None or stored.response is None:
            return CloudEventResult(stored.outcome)
        found = cloudevents.capture_records(
            monitor,
            event.id,
            cloudevents.decode_half(stored.request),
            cloudevents.decode_half(stored.response),
            version,
        )
        if isinstance(found, cloudevents.NotCaptured):
            self._count_cloudevent(key, found.reason)
            raise refusals.NotCaptured(key, found.reason, found.detail)
        try:
            return CloudEventResult("paired", await self.ingest(_encode(found), scope=scope))
        except refusals.InvalidItems:
            self._count_cloudevent(key, "invalid_records")
            raise

    def _count_cloudevent(self, key: str, reason: str) -> None:
        self.cloudevents_refused[key, reason] = self.cloudevents_refused.get((key, reason), 0) + 1

    def _unknown(self, parsed: records.Parsed[Any]) -> bool:
        """Whether a refusal names a monitor this replica does not know and another may have
        registered a moment ago (a store several replicas share)."""
        return self.store.shared and any(e.reason == "unknown_monitor" for e in parsed.errors)

    async def lookup(self, key: str) -> Registered:
        """The monitor `key`, reread from a shared store before it is called unknown
        (`UnknownMonitor`)."""
        if key not in self._runtimes and self.store.shared:
            await self._reread()
        return self.registered(key)

    async def _reread(self) -> None:
        """Reread the monitors and states, once every reread under way when asked has ended:
        one reread at a time, shared by everyone who asked before it started, so clients naming
        monitors nobody registered cost the database one small query at a time."""
        self._reread_asked += 1
        ticket = self._reread_asked
        while self._reread_done < ticket:
            if self._rereading is None:
                self._rereading = asyncio.ensure_future(self._sync_upto(self._reread_asked))
            await asyncio.shield(self._rereading)

    async def _sync_upto(self, ticket: int) -> None:
        try:
            await self._sync()
            self._reread_done = max(self._reread_done, ticket)
        finally:
            self._rereading = None

    def _count_rejected(self, rejected: Mapping[str, int]) -> None:
        """Rejected actuals per monitor, in memory: a rejected request changes nothing stored."""
        for monitor, n in rejected.items():
            self.rejected[monitor] = self.rejected.get(monitor, 0) + n

    # -- fallback control ----------------------------------------------------------------------

    async def set_mode(self, key: str, mode: FallbackMode) -> wire.MonitorState:
        """Manual override: `engaged`/`disengaged` pin the fallback, `auto` returns it to alerts."""
        self.registered(key)
        async with self._lock:
            runtime = self._runtimes[key]
            async with self._held(runtime):
                runtime.override = mode
                await self._evaluate(runtime, self.settings.clock(), fresh=False)
        return self.state(key)

    async def external_alerts(
        self, firing: Mapping[str, set[str]], resolved: Mapping[str, set[str]]
    ) -> list[str]:
        """Alertmanager's view: alert names now firing / resolved per monitor; monitors updated."""
        updated = []
        async with self._lock:
            for key in sorted(set(firing) | set(resolved)):
                runtime = self._runtimes.get(key)
                if runtime is None:
                    continue
                async with self._held(runtime):
                    external = runtime.external | firing.get(key, set())
                    external -= resolved.get(key, set())
                    if external != runtime.external:
                        runtime.external = frozenset(external)
                        await self._evaluate(runtime, self.settings.clock(), fresh=False)
                updated.append(key)
        return updated

    def capture_refused(self, key: str, reason: str) -> None:
        """A sidecar of monitor `key` had a batch refused (`reason`: `unauthorized`...): shown in
        its state for `CAPTURE_REFUSED_FOR` seconds. Stored at most every
        `CAPTURE_REFUSED_EVERY` seconds per monitor, one write at a time, in the background:
        the refused request is answered at once whatever the store does."""
        runtime = self._runtimes.get(key)
        if runtime is None:
            return
        now = self.settings.clock()
        refused = runtime.refused
        if refused and refused.reason == reason and now - refused.last < CAPTURE_REFUSED_EVERY:
            return
        self._refusals[key] = (reason, now)
        if key not in self._refusing:
            task = asyncio.create_task(self._note_refused(key))
            self._refusing[key] = task
            task.add_done_callback(lambda _: self._refusing.pop(key, None))

    async def _note_refused(self, key: str) -> None:
        """Store the newest refusal noted for `key`, until none is left."""
        while (newest := self._refusals.pop(key, None)) is not None:
            reason, now = newest
            runtime = self._runtimes.get(key)
            if runtime is None:
                return
            try:
                async with self._lock, self._held(runtime):
                    persisted, visible = runtime.persisted(), runtime.visible()
                    refused = runtime.refused
                    ongoing = (
                        refused is not None
                        and refused.reason == reason
                        and now - refused.last < CAPTURE_REFUSED_FOR
                    )
                    since = refused.since if ongoing and refused is not None else now
                    runtime.refused = CaptureRefused(reason, since, now)
                    await self._save(runtime, persisted, visible)
            except Exception:
                log.exception("recording that monitor %s's capture is refused failed", key)

    # -- state ---------------------------------------------------------------------------------

    def state(self, key: str) -> wire.MonitorState:
        """The monitor's state as its sidecars, the operator and the demo follow it."""
        registered = self.registered(key)
        runtime = self._runtimes[key]
        state = runtime.state
        return wire.MonitorState(
            monitor=key,
            generation=registered.monitor.generation,
            version=runtime.version,
            phase=state.phase,
            fallback=wire.FallbackState(
                active=state.fallback_active,
                mode=runtime.mode,
                since=state.fallback_since,
                causes=state.fallback_causes,
            ),
            alerts=state.alerts,
            external=tuple(sorted(runtime.external)),
            capture=self._capture(runtime),
            drift=runtime.drift,
            review=_review_summary(runtime),
            versions=runtime.seen,
            report=runtime.report,
        )

    def _capture(self, runtime: _Runtime) -> wire.CaptureState:
        """Whether the monitor's capture is refused now (a refusal not renewed for
        `CAPTURE_REFUSED_FOR` seconds is over: its sidecars got through, or are gone), and what
        its sidecars passed through uncaptured in the last hour (as the leader last read it)."""
        now = self.settings.clock()
        passthrough = runtime.passthrough
        if passthrough is not None and now - passthrough.last >= PASSTHROUGH_WINDOW + 60:
            passthrough = None  # no leader read the minutes since the hour passed
        refused = runtime.refused
        if refused is None or now - refused.last >= CAPTURE_REFUSED_FOR:
            return wire.CaptureState(passthrough=passthrough)
        return wire.CaptureState(
            refused=refused.reason,
            since=refused.since,
            last=refused.last,
            passthrough=passthrough,
        )

    async def wait_state(self, key: str, since: int | None, wait: float) -> wire.MonitorState:
        """The state once its version differs from `since`, or after `wait` seconds."""
        self.registered(key)
        runtime = self._runtimes[key]
        if since is not None and runtime.version == since and wait > 0 and not self._stopping:
            runtime.followers += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runtime.changed.wait(), wait)
            finally:
                runtime.followers -= 1
        return self.state(key)

    def followers(self, key: str) -> int:
        """Long-polls waiting on the monitor's state now."""
        runtime = self._runtimes.get(key)
        return 0 if runtime is None else runtime.followers

    async def tick(self) -> None:
        """Evaluate every monitor, then do one step of each kind of housekeeping.

        A replica that does not lead only refreshes the windows it reports.
        """
        now = self.settings.clock()
        leading = await self.store.try_lead()
        if any(r.registered.monitor.spec.review for r in self._runtimes.values()):
            queues = await self.store.review_stats(now)
            for runtime in self._runtimes.values():
                runtime.queue = queues.get(runtime.registered.id, NO_QUEUE)
        async with self._lock:
            for runtime in list(self._runtimes.values()):
                if leading:
                    async with self._held(runtime):
                        await self._evaluate(runtime, now)
                else:
                    await self._evaluate(runtime, now, step=False)
        if leading:
            await self._keep_house(now)
        totals = await self.store.totals()
        self.snapshots = {
            key: replace(snap, totals=totals.get(runtime.registered.id, {}))
            for key, runtime in self._runtimes.items()
            if (snap := self.snapshots.get(key)) is not None
        }

    async def _keep_house(self, now: float) -> None:
        """Fold counter deltas, expire pending actuals, sweep missing ones, enforce retention (of
        the records and the sidecars' minutes), purge the deleted."""
        engine = self.settings.engine
        await self.store.compact()
        expired = await self.store.expire_pending(now)
        if expired:
            log.info("pending actuals expired", extra={"expired": expired})
        expired = await self.store.expire_reviews(now, engine.sweep_chunk)
        if expired:
            log.info("review items expired unreviewed", extra={"expired": expired})
        for runtime in list(self._runtimes.values()):
            registered = runtime.registered
            spec = registered.monitor.spec
            if spec.feedback.missing_actual.policy == "assume":
                cutoff = now - spec.feedback.attribution_window
                await self.store.assume_missing(registered, cutoff, now, engine.sweep_chunk)
            await self.store.delete_predictions(
                registered.id, now - engine.retention, engine.delete_chunk
            )
            await self.store.delete_sidecar_minutes(
                registered.id, now - engine.retention, engine.delete_chunk
            )
            await self.store.delete_transitions(
                registered.id, now - engine.retention, engine.delete_chunk
            )
            self._build_history_when_due(runtime, now)
        unpaired = await self.store.expire_halves(
            now - self.settings.cloudevents.pair_window, engine.delete_chunk
        )
        if unpaired:
            log.info("CloudEvents expired unpaired", extra={"unpaired": unpaired})
        await self.store.purge_deleted(now - engine.delete_grace, engine.delete_chunk)

    async def _evaluate(
        self, runtime: _Runtime, now: float, *, fresh: bool = True, step: bool = True
    ) -> None:
        """Step the alert machine on the window's model metrics and drift; persist and announce
        changes.

        `fresh=False` (a mode or Alertmanager change) steps on the last tick's window instead of
        reading it again: what changed is not the data, and the answer should be immediate.
        `step=False` (a replica that does not lead) only reads the window for the snapshot.
        The metrics read leaves the feature sketches out; they are read for the drift only for
        a monitor with a reference, and only when the window changed (`_window_drift`).
        """
        registered = runtime.registered
        monitor = registered.monitor
        spec = monitor.spec
        previous = self.snapshots.get(monitor.key)
        report: DriftReport | None
        if not fresh and previous is not None and previous.monitor == monitor:
            counters, evaluated = previous.counters, dict(previous.window)
            report, drift_at, basis = previous.drift, previous.drift_at, previous.drift_basis
            versions, segmented = previous.drift_versions, previous.segments
            segment_drift = previous.segment_drift
        else:
            span = windows.window(now, spec.metrics.window)
            counters = await self.store.window(registered.id, span, ESTIMATING)
            same = _evaluates_alike(previous, registered)
            if same and previous is not None and previous.counters == counters:
                # Most monitors, most ticks: no new labels and no bucket left the window. The
                # evaluation (AUC, t quantiles) costs far more than comparing the counters.
                evaluated = dict(previous.window)
            else:
                evaluated = evaluation.evaluate_groups(
                    spec.task, counters, spec.metrics.cost, estimator(registered)
                )
            report, versions, drift_at, basis, segment_drift = await self._window_drift(
                registered, previous, counters, span, now
            )
            kept = previous.segments if same and previous is not None else {}
            segmented = await self._segment_windows(registered, span, kept)
        transitions: Sequence[alerts.Transition] = ()
        if step:
            transitions = await self._step(
                runtime, evaluated, report, now, segmented, segment_drift
            )
        self.snapshots[monitor.key] = Snapshot(
            monitor,
            runtime.state,
            evaluated,
            previous.totals if previous else {},
            counters,
            report,
            drift_at,
            basis,
            versions,
            _reference_ids(registered),
            _review_summary(runtime),
            runtime.seen,
            segmented,
            segment_drift,
        )
        self._report_firing(monitor.key, transitions)

    async def _segment_windows(
        self,
        registered: Registered,
        span: windows.BucketRange,
        previous: Mapping[str, SegmentWindow],
    ) -> dict[str, SegmentWindow]:
        """The window of each segment alerts watch or Prometheus exports: one read each (the
        model's records), evaluated again only when its counters moved since `previous`."""
        spec = registered.monitor.spec
        found = {}
        for name in segment_metrics.watched(spec):
            only = Only(None, "model", sketches=False, estimates=True, segment=name)
            counters = model_counters(await self.store.window(registered.id, span, only))
            old = previous.get(name)
            if old is not None and old.counters == counters:
                found[name] = old
                continue
            values = segment_metrics.evaluate(
                spec.task,
                segments.split(counters, name),
                spec.metrics.cost,
                estimator(registered),
            )
            found[name] = SegmentWindow(counters, values)
        return found

    async def _window_drift(
        self,
        registered: Registered,
        previous: Snapshot | None,
        counters: Mapping[Group, Counters],
        span: windows.BucketRange,
        now: float,
    ) -> tuple[
        DriftReport | None,
        Mapping[str, DriftReport],
        float | None,
        DriftBasis | None,
        Mapping[str, Mapping[str, DriftReport]],
    ]:
        """The drift of the monitor's window against the default reference (None without one)
        and of each version with a reference of its own, when the sketches were read and what
        the read saw, and each value's drift of the segments drift alerts watch (one read each):
        nothing read without a reference; the last reports while the window and the
        references are as they were at that read (`DriftBasis`), or for `drift_interval` after
        it; else the sketches read and evaluated anew."""
        if not registered.references:
            return None, {}, None, None, {}
        basis = DriftBasis(span, counters, {v: r.id for v, r in registered.references.items()})
        if (
            previous is not None
            and previous.drift_basis is not None
            and previous.drift_at is not None
            and previous.monitor == registered.monitor
            and previous.drift_basis.references == basis.references
        ):
            unchanged = previous.drift_basis == basis
            recent = now - previous.drift_at < self.settings.engine.drift_interval
            if unchanged or recent:
                return (
                    previous.drift,
                    previous.drift_versions,
                    previous.drift_at,
                    previous.drift_basis,
                    previous.segment_drift,
                )
        sketches = await self.store.window(registered.id, span, Only(sketches=True))
        report = drift_of(registered, sketches) if reference_of(registered, None) else None
        versions = {v: drift_of(registered, sketches, v) for v in registered.references if v}
        sliced = {}
        for name in segment_metrics.drift_watched(registered.monitor.spec):
            sliced[name] = await self._segment_drift(registered, name, span, None)
        return report, versions, now, basis, sliced

    async def _segment_drift(
        self,
        registered: Registered,
        segment: str,
        span: windows.BucketRange,
        version: str | None,
    ) -> dict[str, DriftReport]:
        """Each value's drift of a segment with `drift` over `span` (one read of its sketches,
        the model's records of `version` or every version's), against the reference the
        monitor's drift is measured against; {} without one."""
        reference = reference_of(registered, version)
        if reference is None:
            return {}
        only = Only(version, "model", sketches=True, segment=segment)
        counters = model_counters(await self.store.window(registered.id, span, only))
        spec = registered.monitor.spec
        return {
            value: drift.evaluate(reference, kept, spec)
            for value, kept in segments.split(counters, segment).items()
        }

    async def _step(
        self,
        runtime: _Runtime,
        evaluated: Mapping[Group, Evaluated],
        report: DriftReport | None,
        now: float,
        segmented: Mapping[str, SegmentWindow],
        segment_drift: Mapping[str, Mapping[str, DriftReport]],
    ) -> tuple[alerts.Transition, ...]:
        """Step the alert machine (model metrics by name, their estimates, the drift values by
        theirs: each with the samples behind it, `evaluation.alert_values`; the segment alerts'
        worst values, `segment_metrics.alert_metrics`); choose the value sets when due; persist
        what changed, and wake waiters if it is visible. The transitions made."""
        registered = runtime.registered
        monitor = registered.monitor
        spec = monitor.spec
        model = evaluated.get((ALL_VERSIONS, "model"))
        window_metrics = {}
        if model is not None:
            window_metrics = {
                name: alerts.WindowMetric(value, samples)
                for name, (value, samples) in evaluation.alert_values(
                    model, spec.metrics.min_samples
                ).items()
            }
        if report is not None:
            for name, (value, samples) in drift.alert_values(report).items():
                window_metrics[name] = alerts.WindowMetric(value, samples)
        window_metrics.update(
            segment_metrics.alert_metrics(
                spec, {n: w.values for n, w in segmented.items()}, segment_drift
            )
        )
        persisted, visible = runtime.persisted(), runtime.visible()
        runtime.seen = await self._versions_seen(runtime, evaluated, now)
        runtime.review = await self._review(runtime, now)
        runtime.segments = await self._choose_sets(runtime, model.samples if model else 0, now)
        runtime.passthrough = await self._passthrough(runtime, now)
        runtime.drift = drift.summary(report or drift.no_reference())
        if runtime.drift.status == "no_reference":
            field, why = _why_no_reference(registered, runtime.history, now)
            if field == HISTORY_FIELD:
                runtime.drift = msgspec.structs.replace(runtime.drift, reason=why)
        state, transitions = alerts.step(
            runtime.state,
            spec,
            now,
            window_metrics,
            external_firing=runtime.external,
            mode=runtime.mode,
        )
        # Kept before the state moves on: a failed write leaves the step to be made again.
        await self.store.add_transitions(registered.id, transitions)
        runtime.state = state
        for transition in transitions:
            log.info(
                "monitor %s: %s",
                monitor.key,
                transition.kind,
                extra={
                    "monitor": monitor.key,
                    "alert": transition.alert,
                    "reason": transition.reason,
                },
            )
        await self._save(runtime, persisted, visible)
        return transitions

    async def _versions_seen(
        self, runtime: _Runtime, evaluated: Mapping[Group, Evaluated], now: float
    ) -> tuple[wire.VersionSeen, ...]:
        """The versions seen with those of the window's model records not seen before, each
        first seen at the minute of its first record in the window (read only for new ones)."""
        in_window = (v for (v, s), e in evaluated.items() if s == "model" and e.samples)
        fresh = versions.new(runtime.seen, (v for v in in_window if v != ALL_VERSIONS))
        if not fresh:
            return runtime.seen
        registered = runtime.registered
        span = windows.window(now, registered.monitor.spec.metrics.window)
        only = fresh[0] if len(fresh) == 1 else None
        spans = await self.store.version_spans(registered.id, span, only)
        found = {v: windows.bucket_start(spans[v].start) if v in spans else now for v in fresh}
        return versions.noted(runtime.seen, found)

    async def _passthrough(self, runtime: _Runtime, now: float) -> wire.Passthrough | None:
        """What the sidecars passed through uncaptured in the last hour, read from their minutes
        once every `PASSTHROUGH_EVERY` seconds."""
        if now - runtime.passthrough_read < PASSTHROUGH_EVERY:
            return runtime.passthrough
        span = windows.window(now, PASSTHROUGH_WINDOW)
        minutes = await self.store.sidecar_minutes(runtime.registered.id, span, 1)
        runtime.passthrough_read = now
        return sidecar_stats.passed_through(runtime.passthrough, minutes)

    async def _review(self, runtime: _Runtime, now: float) -> ReviewKept | None:
        """The monitor's review design, fitted again to the last hour's traffic once a minute
        (at once for a changed spec), and the queue's status."""
        registered = runtime.registered
        spec = registered.monitor.spec
        if spec.review is None:
            return None
        basis = runtime.basis
        kept = runtime.review
        if kept is not None and kept.basis == basis and now - kept.design.computed < DESIGN_EVERY:
            design = kept.design
        else:
            seen = await self._traffic(registered, now, DESIGN_TRAFFIC)
            design = review.design(spec.review, spec.metrics.window, seen, now)
        status, message = review_status(design, runtime.queue)
        return ReviewKept(design=design, basis=basis, status=status, message=message)

    async def _choose_sets(self, runtime: _Runtime, records: int, now: float) -> SegmentSets | None:
        """The monitor's value sets: chosen again from the raw values of the last hour's records
        every `SEGMENTS_EVERY` seconds, at once for a changed `spec.segments`, and while a
        segment without buckets has no value yet, on each tick whose window holds `records`
        other than at the last choice."""
        spec = runtime.registered.monitor.spec
        if not spec.segments:
            return None
        basis = segments_basis(spec)
        kept = runtime.segments
        if kept is not None and kept.basis == basis:
            empty = any(not s.buckets and not kept.sets.get(s.name) for s in spec.segments)
            waiting = empty and records > 0 and records != kept.records
            if now - kept.chosen < SEGMENTS_EVERY and not waiting:
                return kept
        counts = await self.store.segment_values(
            runtime.registered.id, now - SEGMENTS_TRAFFIC, SEGMENTS_SCAN
        )
        old = kept.sets if kept is not None else {}
        sets = {
            s.name: segments.choose(s, counts.get(s.name, {}), old.get(s.name, ()))
            for s in spec.segments
            if not s.buckets
        }
        return SegmentSets(sets=sets, basis=basis, chosen=now, records=records)

    async def _traffic(self, registered: Registered, now: float, seconds: float) -> review.Traffic:
        """The model's records of the last `seconds` (every version), as review designs and
        plans read them; a monitor younger than that counts from its creation."""
        span = windows.window(now, seconds)
        groups = await self.store.window(registered.id, span, Only(None, "model", sketches=False))
        since = max(windows.bucket_start(span.start), registered.created)
        return review.traffic(model_counters(groups), max(1.0, (now - since) / 60))

    async def _save(
        self, runtime: _Runtime, persisted: tuple[Any, ...], visible: tuple[Any, ...]
    ) -> None:
        """Persist a runtime changed from `persisted`; a visible change bumps the version and
        wakes the long-polls."""
        bump = runtime.visible() != visible or runtime.version == 0
        if bump or runtime.persisted() != persisted:
            runtime.version += 1 if bump else 0
            await self.store.save_state(runtime.registered.id, runtime.stored())
        if bump:
            runtime.changed.set()
            runtime.changed = asyncio.Event()

    # -- reads ---------------------------------------------------------------------------------

    async def window_metrics(
        self,
        key: str,
        seconds: float | None,
        *,
        version: str | None,
        served_by: str | None,
        step: int | None,
    ) -> WindowMetrics:
        """The monitor's metrics over the window (its spec's by default), each group evaluated;
        with a `step` (minutes), also a series of the `served_by` groups (the model's by
        default). Raises SeriesTooLong past the service's limit."""
        registered = self.registered(key)
        task = registered.monitor.spec.task
        seconds = seconds or registered.monitor.spec.metrics.window
        span = windows.window(self.settings.clock(), seconds)
        only = Only(version, served_by, sketches=False, estimates=True)
        groups = await self.store.window(registered.id, span, only)
        series = None
        if step is not None:
            series = await self._series(registered, span, step, version, served_by)
        cost = registered.monitor.spec.metrics.cost
        evaluated = evaluation.evaluate_groups(task, groups, cost, estimator(registered, version))
        return WindowMetrics(task, seconds, span, evaluated, series, cost)

    async def history(self, key: str, seconds: float, limit: int) -> History:
        """The alert machine's newest `limit` transitions over the window and the periods they
        make up to the state now (`periods.periods`: from the window's start, or from the oldest
        transition read when older ones were left out)."""
        registered = self.registered(key)
        span = windows.window(self.settings.clock(), seconds)
        start, end = windows.bucket_start(span.start), windows.bucket_start(span.end)
        found = await self.store.transitions(registered.id, start, end, limit + 1)
        truncated = len(found) > limit
        kept = found[1:] if truncated else found
        since = kept[0].at if truncated and kept else start
        made = periods.periods(kept, self._runtimes[key].state, since)
        return History(seconds, span, tuple(kept), truncated, made)

    async def sidecar_window(self, key: str, seconds: float, step: int) -> SidecarWindow:
        """The monitor's sidecar minutes over the window, summed per step of `step` minutes.
        Raises SeriesTooLong past the service's limit."""
        registered = self.registered(key)
        span = windows.window(self.settings.clock(), seconds)
        count = windows.steps(span, step).count
        limit = self.settings.http.max_series_points
        if count > limit:
            raise refusals.SeriesTooLong(count, limit)
        found = await self.store.sidecar_minutes(registered.id, span, step)
        return SidecarWindow(seconds, span, step, found)

    async def versions_window(
        self, key: str, seconds: float, *, spans: bool = True
    ) -> VersionsWindow:
        """Each model version's records over the window, evaluated (with their estimates), and
        with `spans` the minutes of its first and last record in it."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        span = windows.window(self.settings.clock(), seconds)
        only = Only(None, "model", sketches=False, estimates=True)
        groups = await self.store.window(registered.id, span, only)
        evaluated = evaluation.evaluate_groups(
            spec.task, groups, spec.metrics.cost, estimator(registered)
        )
        found = {v: e for (v, s), e in evaluated.items() if s == "model" and v != ALL_VERSIONS}
        edges = await self.store.version_spans(registered.id, span) if spans else {}
        total = evaluated.get((ALL_VERSIONS, "model"))
        return VersionsWindow(seconds, span, found, total.samples if total else 0, edges)

    async def segment_metrics(
        self,
        key: str,
        segment: str,
        seconds: float | None,
        *,
        version: str | None,
        served_by: str | None,
    ) -> SegmentMetrics:
        """Each value of `segment` (one of the spec's) over the window (the spec's by default),
        evaluated from one read of the segment's counters (the model's records, or `served_by`'s;
        one `version`'s or all) and ranked worst first (`segment_metrics.rank`)."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        span = windows.window(self.settings.clock(), seconds or spec.metrics.window)
        served = served_by or "model"
        only = Only(version, served, sketches=False, estimates=True, segment=segment)
        groups = await self.store.window(registered.id, span, only)
        counters = metrics.total(groups.values())
        values = segment_metrics.evaluate(
            spec.task,
            segments.split(counters, segment),
            spec.metrics.cost,
            estimator(registered, version) if served == "model" else None,
            version or ALL_VERSIONS,
        )
        by = segment_metrics.ranking(spec, segment)
        ranked = segment_metrics.rank(values, by, spec.metrics.min_samples)
        (declared,) = (s for s in spec.segments if s.name == segment)
        sets = value_sets(spec, self._runtimes[key].segments)
        known = segment_metrics.names(declared, sets.get(segment, ())) | set(values)
        return SegmentMetrics(segment, by, ranked, frozenset(known))

    async def segment_drift(
        self, key: str, segment: str, seconds: float | None, *, version: str | None
    ) -> SegmentDrift:
        """Each value's drift of `segment` (one of the spec's with `drift`) over the window (the
        spec's by default), against the reference `drift_window` measures `version` against,
        ranked worst first (`segment_metrics.rank_drift`)."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        seconds = seconds or spec.metrics.window
        span = windows.window(self.settings.clock(), seconds)
        reports = await self._segment_drift(registered, segment, span, version)
        by = segment_metrics.drift_ranking(spec, segment)
        ranked = segment_metrics.rank_drift(reports, by, spec.metrics.min_samples)
        (declared,) = (s for s in spec.segments if s.name == segment)
        sets = value_sets(spec, self._runtimes[key].segments)
        known = segment_metrics.names(declared, sets.get(segment, ())) | set(reports)
        reference = reference_of(registered, version)
        empty = drift.no_reference() if reference is None else drift.evaluate(reference, {}, spec)
        return SegmentDrift(segment, seconds, span, by, ranked, frozenset(known), empty)

    async def _series(
        self,
        registered: Registered,
        span: windows.BucketRange,
        step: int,
        version: str | None,
        served_by: str | None,
    ) -> tuple[tuple[float, Evaluated], ...]:
        steps = windows.steps(span, step)
        limit = self.settings.http.max_series_points
        if steps.count > limit:
            raise refusals.SeriesTooLong(steps.count, limit)
        served = served_by or "model"
        only = Only(version, served, sketches=False, estimates=True)
        points = await self.store.series(registered.id, steps, only)
        spec = registered.monitor.spec
        evaluated = evaluation.series(
            spec.task,
            points,
            steps.count,
            spec.metrics.cost,
            estimator(registered, version) if served == "model" else None,
            version or ALL_VERSIONS,
        )
        return tuple(
            (windows.bucket_start(steps.start + i * steps.width), e)
            for i, e in enumerate(evaluated)
        )

    async def review_plan(
        self,
        key: str,
        *,
        half_width: float | None = None,
        detect: float | None = None,
        within: float | None = None,
        budget: float | None = None,
    ) -> ReviewPlan:
        """How many reviews a day a precision (`half_width`) or a detection (a drop of `detect`
        within `within` seconds) needs, or what a `budget` a day buys (`review.plan`), at the
        model's traffic of the last day and the window's accuracy as the last tick saw it."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        seen = await self._traffic(registered, self.settings.clock(), PLAN_TRAFFIC)
        snapshot = self.snapshots.get(key)
        model = snapshot.window.get((ALL_VERSIONS, "model")) if snapshot else None
        accuracy, source = current_accuracy(model)
        answer = review.plan(
            seen,
            spec.metrics.window,
            accuracy=accuracy,
            half_width=half_width,
            detect=detect,
            within=within,
            budget=budget,
            random_share=spec.review.random if spec.review is not None else 1.0,
        )
        return ReviewPlan(seen, accuracy, source, answer)

    async def timeline(
        self, key: str, entity_id: str, limit: int, outlier: bool | None = None
    ) -> list[StoredPrediction]:
        """An entity's newest records; `outlier` keeps the outliers only, or leaves them out."""
        return await self.store.timeline(self.registered(key).id, entity_id, limit, outlier)

    def dataset(self, key: str, ask: DatasetAsk) -> AsyncIterator[list[StoredPrediction]]:
        """Labeled records of the window (or period) asked for in chunks, never all in memory."""
        registered = self.registered(key)
        now = self.settings.clock()
        end = now + self.settings.limits.future_skew if ask.end is None else ask.end
        start = ask.start
        if start is None:
            start = (end if ask.end is not None else now) - (
                ask.seconds or registered.monitor.spec.metrics.window
            )
        query = DatasetQuery(
            registered.id,
            start,
            end,
            ask.version,
            ask.correct,
            outlier=ask.outlier,
            reviewed=ask.reviewed,
            abstained=ask.abstained,
        )
        return self._chunks(query)

    def _chunks(self, query: DatasetQuery) -> AsyncIterator[list[StoredPrediction]]:
        return self.store.chunks(query, self.settings.http.dataset_chunk)

    # -- the review queue ----------------------------------------------------------------------

    async def lease_review(self, key: str, reviewer: str, limit: int) -> Leased:
        """Hand `reviewer` up to `limit` items of the monitor's queue for its `review.lease`,
        and the queue as it is then. `NoReview` without `spec.review`."""
        registered = await self.lookup(key)
        review = _review_of(registered)
        now = self.settings.clock()
        items = await self.store.lease_review(registered.id, reviewer, limit, now, review.lease)
        stats = await self.store.review_stats(now, registered.id)
        queue = stats.get(registered.id, NO_QUEUE)
        return Leased(tuple(items), queue)

    async def review_import(
        self, key: str, body: bytes, scope: scopes.Scope = scopes.ADMIN
    ) -> Imported:
        """Take a Label Studio export of the monitor's tasks as review labels
        (`core.labelstudio`), all or nothing; a refused label is named by its task."""
        registered = await self.lookup(key)
        _review_of(registered)
        task = registered.monitor.spec.task
        try:
            read = labelstudio.labels(body, key, task, self.settings.limits.max_items)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
            raise refusals.NotJson(str(e) or "nested too deeply") from None
        if read.errors:
            raise refusals.InvalidItems("tasks", read.errors, read.omitted)
        if read.actuals:
            try:
                await self.feedback(_encode({"items": read.actuals}), scope)
            except refusals.InvalidItems as e:
                errors = [labelstudio.located(error, read.origins) for error in e.errors]
                raise refusals.InvalidItems("tasks", errors, e.omitted) from None
        skips = sum(actual.decision is not None for actual in read.actuals)
        return Imported(len(read.actuals) - skips, skips, read.unannotated)

    # -- references and drift ------------------------------------------------------------------

    def reference(self, key: str, version: str | None = None) -> Reference | None:
        """The reference drift of `version` is measured against: its own, else the default."""
        return reference_of(self.registered(key), version)

    def why_no_reference(self, key: str) -> tuple[str, str]:
        """What would give a monitor without a reference one, or why its history reference has
        not: the field it concerns and the words (`_why_no_reference`)."""
        registered = self.registered(key)
        history = self._runtimes[key].history
        return _why_no_reference(registered, history, self.settings.clock())

    async def put_reference(
        self, key: str, version: str, fmt: table.Format, body: AsyncIterator[bytes]
    ) -> tuple[Reference, tuple[str, ...]]:
        """Parse and profile an uploaded data set as it arrives (in a worker thread: the loop
        serves other requests meanwhile), then store its profile as the monitor's reference for
        `version` ("" for every version without one of its own). The reference and the
        profile's warnings. Raises `InvalidReference` (nothing stored) for a data set that
        cannot be used."""
        registered = await self.lookup(key)
        spec = registered.monitor.spec

        def build(chunks: Iterator[bytes]) -> tuple[Profile, list[str]]:
            return profiles.build(table.read(chunks, fmt), spec)

        async with self._profiling:
            try:
                profile, warnings = await threads.fed(body, build)
            except table.TableError as e:  # a ProfileError too
                errors = [records.ItemError(None, "body", text, "invalid") for text in e.details]
                raise refusals.InvalidReference(errors, e.count - len(errors)) from None
        reference = await self._put_reference(key, registered, version, "upload", profile)
        return reference, tuple(warnings)

    async def _put_reference(
        self,
        key: str,
        registered: Registered,
        version: str,
        source: ReferenceSource,
        profile: Profile,
    ) -> Reference:
        """Store a reference; ingests from now on sketch the version's records against it."""
        try:
            reference = await self.store.put_reference(
                registered.id, version, source, profile, self.settings.clock()
            )
        except MonitorsGone:
            raise refusals.UnknownMonitor(key) from None
        async with self._lock:
            runtime = self._runtimes.get(key)
            if runtime is not None and runtime.registered.id == registered.id:
                references = {**runtime.registered.references, version: reference}
                runtime.registered = replace(runtime.registered, references=references)
        return reference

    async def reference_chunks(
        self, key: str, reference: Reference, rows: int | None
    ) -> chunks.Chunks | None:
        """The reference's metrics over chunks of `rows` rows (`core.chunks`), by default the
        model's predictions in the monitor's current window (`spec.metrics.window`); None
        without labeled counts in the reference, or without `rows` and any prediction."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        if rows is None:
            span = windows.window(self.settings.clock(), spec.metrics.window)
            version = reference.version or None
            groups = await self.store.window(registered.id, span, Only(version, "model", False))
            rows = round(model_counters(groups).get(join.PREDICTIONS_KEY, 0.0))
        if rows < 1:
            return None
        return await threads.in_thread(lambda: chunks.spread(reference, spec, rows))

    async def drift(
        self, key: str, seconds: float | None = None, *, version: str | None = None
    ) -> DriftReport:
        """The drift of the monitor's window (its spec's `metrics.window` by default) against
        the reference of `version` (else the default one); `no_reference` without one."""
        return (await self.drift_window(key, seconds, version=version)).report

    async def drift_window(
        self,
        key: str,
        seconds: float | None,
        *,
        version: str | None = None,
        step: int | None = None,
    ) -> DriftWindow:
        """Drift over the window and, with a `step` (minutes), a report per step. Raises
        SeriesTooLong past the service's limit."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        seconds = seconds or spec.metrics.window
        span = windows.window(self.settings.clock(), seconds)
        steps = None
        if step is not None:
            steps = windows.steps(span, step)
            limit = self.settings.http.max_series_points
            if steps.count > limit:
                raise refusals.SeriesTooLong(steps.count, limit)
        reference = reference_of(registered, version)
        series: tuple[drift.DriftPoint, ...] | None = None
        first = width = 0.0
        if steps is not None:
            first, width = windows.bucket_start(steps.start), steps.width * windows.BUCKET_SECONDS
        if reference is None:
            report = drift.no_reference()
            if steps is not None:
                series = tuple(
                    drift.point(report, first + i * width, first + (i + 1) * width)
                    for i in range(steps.count)
                )
        else:
            ref, only = reference, Only(version, "model", sketches=True)
            counters = model_counters(await self.store.window(registered.id, span, only))
            report = drift.evaluate(ref, counters, spec)
            if steps is not None:
                points = await self.store.series(registered.id, steps, only)
                windows_ = [model_counters(points.get(i, {})) for i in range(steps.count)]
                # Every point at once, column by column (drift.series): not a report per point.
                series = tuple(
                    await threads.in_thread(lambda: drift.series(ref, windows_, spec, first, width))
                )
        return DriftWindow(seconds, span, report, series)

    def _build_history_when_due(self, runtime: _Runtime, now: float) -> None:
        """Start building the monitor's history reference in the background once the period of
        `spec.drift.reference` has ended and no build of that period is done or under way."""
        registered = runtime.registered
        period = registered.monitor.spec.drift.reference
        key = registered.monitor.key
        if period is None or now < period[1] or key in self._building:
            return
        built = runtime.history
        if built is not None and (built.start, built.end) == period:
            return
        task = asyncio.create_task(
            self._build_history(key, registered, period), name=f"truthloop-history-{key}"
        )
        self._building[key] = task
        task.add_done_callback(lambda _: self._building.pop(key, None))

    async def _build_history(
        self, key: str, registered: Registered, period: tuple[float, float]
    ) -> None:
        """Profile a uniform sample of the model's records of the period (labeled or not, at
        most `EngineSettings.history_sample`), read from the store page by page, in a worker
        thread, and store the profile as the default reference (source `history`); or note why
        the period gives none."""
        start, end = period
        spec = registered.monitor.spec
        query = DatasetQuery(registered.id, start, end, labeled=False)
        try:
            reference_id: int | None = None
            problem: str | None = None
            sample, seen = await self._history_sample(registered, query)
            try:
                profile, _ = await threads.in_thread(
                    lambda: profiles.build_from_records(sample, spec)
                )
            except table.TableError as e:  # a ProfileError: no usable records
                problem = str(e)
                log.warning(
                    "monitor %s: no history reference from %s to %s: %s",
                    key,
                    format_time(start),
                    format_time(end),
                    problem,
                    extra={"monitor": key},
                )
            else:
                reference = await self._put_reference(key, registered, "", "history", profile)
                reference_id = reference.id
                log.info(
                    "monitor %s: history reference %d built from %d of the %d records from %s"
                    " to %s",
                    key,
                    reference_id,
                    len(sample),
                    seen,
                    format_time(start),
                    format_time(end),
                    extra={"monitor": key},
                )
            built = HistoryBuilt(start, end, reference_id, problem, self.settings.clock(), seen)
            await self._note_history(key, built)
        except refusals.UnknownMonitor:
            return
        except Exception:
            log.exception("building monitor %s's history reference failed", key)

    async def _history_sample(
        self, registered: Registered, query: DatasetQuery
    ) -> tuple[list[tuple[Any, Any, Any]], int]:
        """A uniform sample (reservoir sampling, seeded by the monitor and period, so a rebuild
        draws the same) of the model's records of the query, as (prediction, score, features),
        and how many there were: a month of busy traffic costs bounded memory and time."""
        limit = self.settings.engine.history_sample
        rng = random.Random(f"{registered.id}:{query.start}:{query.end}")
        sample: list[tuple[Any, Any, Any]] = []
        seen = 0
        async for chunk in self._chunks(query):
            for r in chunk:
                if r.served_by != "model":  # the model answers every input, in shadow too
                    continue
                row = (r.prediction, r.score, r.features)
                if len(sample) < limit:
                    sample.append(row)
                elif (j := rng.randrange(seen + 1)) < limit:
                    sample[j] = row
                seen += 1
        return sample, seen

    async def _note_history(self, key: str, built: HistoryBuilt) -> None:
        """Keep the build in the monitor's state: no replica builds this period again."""
        runtime = self._runtimes.get(key)
        if runtime is None:
            return
        async with self._lock, self._held(runtime):
            persisted, visible = runtime.persisted(), runtime.visible()
            runtime.history = built
            await self._save(runtime, persisted, visible)

    # -- reports on alerts that fired ------------------------------------------------------------

    def _report_firing(self, key: str, transitions: Sequence[alerts.Transition]) -> None:
        """Build a report of each alert that just fired, in the background (after any report
        of the monitor still under way): the tick does not wait for it."""
        firing = [t for t in transitions if t.kind == "alert_firing" and t.alert is not None]
        snapshot = self.snapshots.get(key)
        if not firing or snapshot is None:
            return
        before = self._reporting.get(key)
        task = asyncio.create_task(
            self._make_reports(key, snapshot, firing, before), name=f"truthloop-report-{key}"
        )
        self._reporting[key] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._reporting.get(key) is task:
                del self._reporting[key]

        task.add_done_callback(done)

    async def _make_reports(
        self,
        key: str,
        snapshot: Snapshot,
        firing: Sequence[alerts.Transition],
        before: asyncio.Task[None] | None,
    ) -> None:
        if before is not None:
            await asyncio.wait([before])
        for transition in firing:
            try:
                await self._make_report(key, snapshot, transition)
            except refusals.UnknownMonitor:
                return
            except Exception:
                self.reports_failed[key] = self.reports_failed.get(key, 0) + 1
                log.exception(
                    "monitor %s: the report on %s firing failed",
                    key,
                    transition.alert,
                    extra={"monitor": key, "alert": transition.alert},
                )

    async def _make_report(
        self, key: str, snapshot: Snapshot, transition: alerts.Transition
    ) -> None:
        """Build and render the report in a worker thread, store it and link it in the
        monitor's state."""
        registered = self.registered(key)
        inputs = await self.report_inputs(key, snapshot, transition)
        at, alert = inputs.at, inputs.alert

        def made() -> tuple[report.Report, str, str]:
            built = report.build(inputs)
            return built, report.render(built), _encode(built).decode()

        built, page, document = await threads.in_thread(made)
        summary = {"summary": built.summary, "size": len(page.encode())}
        report_id = await self.store.add_report(
            registered.id, at, alert, summary, document, page, REPORTS_KEPT
        )
        link = wire.ReportLink(report_id, at, alert, f"/v1/monitors/{key}/reports/{report_id}")
        log.info(
            "monitor %s: report %d on %s firing: %s",
            key,
            report_id,
            alert,
            built.summary,
            extra={"monitor": key, "alert": alert, "report": report_id},
        )
        runtime = self._runtimes.get(key)
        if runtime is None or runtime.registered.id != registered.id:
            return
        async with self._lock, self._held(runtime):
            if runtime.report is None or runtime.report.at <= at:
                persisted, visible = runtime.persisted(), runtime.visible()
                runtime.report = link
                await self._save(runtime, persisted, visible)

    async def report_inputs(
        self, key: str, snapshot: Snapshot, transition: alerts.Transition
    ) -> report.Inputs:
        """What a report on `transition` (an alert firing) is built from: the tick's `snapshot`
        and what it does not hold (the values of segments the tick did not read, a sample of
        wrong predictions, the sidecars' last two hours)."""
        registered = self.registered(key)
        spec = registered.monitor.spec
        alert = str(transition.alert)
        at = transition.at
        span = windows.window(at, spec.metrics.window)
        start, end = windows.bucket_start(span.start), windows.bucket_start(span.end)
        segmented = {}
        for segment in spec.segments[: report.MAX_SEGMENTS]:
            kept = snapshot.segments.get(segment.name)
            if kept is None:
                found = await self.segment_metrics(
                    key, segment.name, None, version=None, served_by=None
                )
                segmented[segment.name] = (found.by, found.ranked)
            else:  # the tick read it (an alert watches it, or it is exported)
                by = segment_metrics.ranking(spec, segment.name)
                ranked = segment_metrics.rank(kept.values, by, spec.metrics.min_samples)
                segmented[segment.name] = (by, ranked)
        wrong, seen = await self._wrong(registered, start, at, end)
        sidecar = await self._sidecar_hours(registered, at)
        return report.Inputs(
            monitor=key,
            alert=alert,
            reason=transition.reason,
            at=at,
            task=spec.task,
            seconds=spec.metrics.window,
            start=start,
            end=end,
            by=report.ranking(spec, alert),
            min_samples=spec.metrics.min_samples,
            model=snapshot.window.get((ALL_VERSIONS, "model")),
            counters=model_counters(snapshot.counters),
            versions={
                v: e for (v, s), e in snapshot.window.items() if s == "model" and v != ALL_VERSIONS
            },
            segments=segmented,
            drift=snapshot.drift,
            reference_missing=report.reference_missing(reference_of(registered, None)),
            wrong=wrong,
            wrong_seen=seen,
            sidecar=sidecar,
        )

    async def _sidecar_hours(
        self, registered: Registered, at: float
    ) -> tuple[dict[str, float], dict[str, float]] | None:
        """The sidecars' counters summed over the hour up to `at`'s minute and over the hour
        before it; None when they sent none in either."""
        last = windows.bucket_of(at) + 1
        hours = []
        for end in (last, last - windows.MINUTES_PER_HOUR):
            span = windows.BucketRange(end - windows.MINUTES_PER_HOUR, end)
            steps = await self.store.sidecar_minutes(registered.id, span, windows.MINUTES_PER_HOUR)
            hours.append(metrics.total(counts for _, counts in steps))
        now, before = hours
        return (now, before) if now or before else None

    async def _wrong(
        self, registered: Registered, start: float, at: float, end: float
    ) -> tuple[list[report.Wrong], int]:
        """The newest `report.MAX_WRONG` wrong predictions of the model in [start, end), oldest
        first, and how many were read: the last `WRONG_SLICES` seconds before `at` first, then
        further back while there are fewer (labels often come hours late), each slice one read
        of at most `WRONG_READ` records (of which its newest are kept)."""
        edges = sorted({max(start, min(at - back, end)) for back in WRONG_SLICES} | {start, end})
        found: list[report.Wrong] = []
        seen = 0
        for low, high in reversed(list(itertools.pairwise(edges))):
            query = DatasetQuery(registered.id, low, high, correct=False)
            rows = await self.store.dataset(query, (low, 0), WRONG_READ)
            wrong = [
                report.Wrong(
                    r.prediction_id,
                    r.ts,
                    r.model_version,
                    r.features,
                    r.prediction,
                    r.label.value if r.label.value is not None else r.label.vote,
                    r.score,
                )
                for r in rows
                if r.served_by == "model" and r.label is not None
            ]
            seen += len(wrong)
            found = wrong[-(report.MAX_WRONG - len(found)) :] + found
            if len(found) >= report.MAX_WRONG:
                break
        return found, seen

    async def reports(self, key: str, limit: int) -> list[StoredReport]:
        """The monitor's newest reports, newest first."""
        return await self.store.reports(self.registered(key).id, limit)

    async def report(self, key: str, report_id: int, part: ReportPart) -> str | None:
        """One of the monitor's reports' JSON document or HTML page (None: no such report)."""
        return await self.store.report(self.registered(key).id, report_id, part)


@dataclass(frozen=True, slots=True)
class DatasetAsk:
    """What a dataset export asks for: the window of `seconds` ending now (the spec's
    `metrics.window` by default), or from `start` to `end` (either alone: a window's length
    from, or up to it); one model `version`; and the `DatasetQuery` filters."""

    seconds: float | None = None
    start: float | None = None
    end: float | None = None
    version: str | None = None
    correct: bool | None = None
    outlier: bool | None = None
    reviewed: bool | None = None
    abstained: bool | None = None


NO_QUEUE = QueueStats(depth=0, leased=0, oldest=None, expired=0)
"""The queue of a monitor the store has no item of."""


@dataclass(frozen=True, slots=True)
class CloudEventResult:
    """What became of a CloudEvent half: `waiting` for its other half, a `duplicate` of one
    stored before, `sampled_out` by the monitor's `sampleRate`, or `paired` and its records
    stored (`ingested`)."""

    outcome: str
    ingested: IngestResult | None = None


@dataclass(frozen=True, slots=True)
class Leased:
    """Review items handed to a reviewer, and the monitor's queue after."""

    items: tuple[ReviewItem, ...]
    queue: QueueStats


@dataclass(frozen=True, slots=True)
class Imported:
    """What a Label Studio import stored: review labels, skips, and the tasks left out (not
    annotated yet)."""

    labels: int
    skips: int
    unannotated: int


def _review_of(registered: Registered) -> ReviewSpec:
    """The monitor's `spec.review`; `NoReview` without one."""
    review = registered.monitor.spec.review
    if review is None:
        raise refusals.NoReview(registered.monitor.key)
    return review


@dataclass(frozen=True, slots=True)
class ReviewPlan:
    """A planning answer and what it was computed from."""

    traffic: review.Traffic
    """The model's records of the last day."""
    accuracy: float
    accuracy_source: str
    """Where `accuracy` comes from: `reviewed`, `realized`, `estimated` or `assumed`."""
    answer: review.PlanAnswer


ASSUMED_ACCURACY = 0.5
"""The accuracy a plan assumes for a window that has none yet: the largest variance a label can
have, so the answer never asks for too few reviews."""


def current_accuracy(model: Evaluated | None) -> tuple[float, str]:
    """The window's accuracy for a plan, and where it comes from: the reviewed labels' estimate,
    else the realized accuracy, else the estimate before labels, else `ASSUMED_ACCURACY`."""
    if model is not None:
        for source, found in (
            ("reviewed", model.reviewed),
            ("realized", model.metrics),
            ("estimated", model.estimated),
        ):
            value = found.get("accuracy")
            if value is not None and value.value is not None:
                return value.value, source
    return ASSUMED_ACCURACY, "assumed"


@dataclass(frozen=True, slots=True)
class History:
    """A monitor's transitions over a window, for the history API."""

    seconds: float
    span: windows.BucketRange
    transitions: tuple[alerts.Transition, ...]
    """Oldest first: the newest of the window, as many as asked."""
    truncated: bool
    """Older transitions of the window were left out."""
    periods: Periods


@dataclass(frozen=True, slots=True)
class DriftWindow:
    """A monitor's drift over a window, for the drift API."""

    seconds: float
    span: windows.BucketRange
    report: DriftReport
    series: tuple[DriftPoint, ...] | None
    """When asked: each step's report, slimmed to its numbers."""


def reference_of(registered: Registered, version: str | None) -> Reference | None:
    """The reference drift of `version` is measured against: the one its records are sketched
    against (`sketch.reference_of`: its own, else the default one); the default one for every
    version (None)."""
    return sketch.reference_of(registered.references, version or "")


HISTORY_FIELD = "spec.drift.reference"


def _why_no_reference(
    registered: Registered, history: HistoryBuilt | None, now: float
) -> tuple[str, str]:
    """What would give a monitor without a reference one (`reference`), or why the history
    reference of `spec.drift.reference` has not yet (`HISTORY_FIELD`): its period has not ended,
    held no usable records, or is being read."""
    period = registered.monitor.spec.drift.reference
    upload = "upload one (POST .../reference)"
    if period is None:
        return "reference", f"{upload} or set spec.drift.reference"
    start, end = period
    if now < end:
        return (
            HISTORY_FIELD,
            f"it is built from history once its period ends ({format_time(end)}), or {upload}",
        )
    if history is not None and (history.start, history.end) == period and history.problem:
        return HISTORY_FIELD, (
            f"the period {format_time(start)} to {format_time(end)} gave none ({history.problem});"
            f" choose another period or {upload}"
        )
    return HISTORY_FIELD, f"it is being built from the period's records, or {upload}"


def _newest_references(read: Registered, held: Registered) -> Registered:
    """The monitor as a reread found it, keeping any reference this replica stored after the
    reread had read it (a store's reference ids only grow: the higher id is the newer one), so
    a reread that crossed an upload does not take the upload back."""
    newer = {
        version: reference
        for version, reference in held.references.items()
        if version not in read.references or read.references[version].id < reference.id
    }
    if not newer:
        return read
    return replace(read, references={**read.references, **newer})


ESTIMATING = Only(sketches=False, estimates=True)
"""A tick's read: the metrics' counters and the estimation counters, not the feature sketches."""


def estimator(registered: Registered, version: str | None = None) -> evaluation.Estimator:
    """The estimates of a monitor's windows (`core.estimate`): a version's against the
    reference its records are sketched against, `ALL_VERSIONS` against the default one (or
    `version`'s, for a read of that version only)."""
    spec = registered.monitor.spec

    def estimated(
        group: str, points: Sequence[Mapping[str, float]]
    ) -> Sequence[Mapping[str, metrics.Estimate]]:
        reference = reference_of(registered, version or (None if group == ALL_VERSIONS else group))
        if reference is None:
            return [{} for _ in points]
        return estimate.series(reference, points, spec)

    return estimated


def _evaluates_alike(previous: Snapshot | None, registered: Registered) -> bool:
    """Whether the last tick's evaluations still hold for equal counters: same task, cost and
    references."""
    spec = registered.monitor.spec
    return (
        previous is not None
        and previous.monitor.spec.task == spec.task
        and previous.monitor.spec.metrics.cost == spec.metrics.cost
        and previous.references == _reference_ids(registered)
    )


def _reference_ids(registered: Registered) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((v, r.id) for v, r in registered.references.items()))


def model_counters(groups: Mapping[Group, Counters]) -> Counters:
    """One window's counters summed over its groups (as `Store.window` reads them), the model's
    records only: while the fallback answers, the model still sees every input in shadow, so
    counting the fallback's records too would count those inputs twice."""
    summed: dict[str, dict[str, float]] = {}
    for (_, served_by), counters in groups.items():
        if served_by == "model":
            join.add(summed, "", counters)
    return summed.get("", {})


def drift_of(
    registered: Registered, groups: Mapping[Group, Counters], version: str | None = None
) -> DriftReport:
    """The drift of a window whose counters were read already (a tick's sketches) against the
    reference of `version` (else the default one): no second read of the store.
    `groups` are every version's: only `version`'s are counted when it is given."""
    reference = reference_of(registered, version)
    if reference is None:
        return drift.no_reference()
    kept = {g: c for g, c in groups.items() if version is None or g[0] == version}
    return drift.evaluate(reference, model_counters(kept), registered.monitor.spec)


def _value_sets(runtimes: Iterable[_Runtime]) -> dict[int, segments.ValueSets]:
    """The value sets in force per monitor id of `runtimes` (those with segments only): read per
    ingest request for the monitors its records name, not for every monitor."""
    return {
        runtime.registered.id: value_sets(runtime.registered.monitor.spec, runtime.segments)
        for runtime in runtimes
        if runtime.registered.monitor.spec.segments
    }


def _designs(runtimes: Iterable[_Runtime]) -> dict[int, review.Design]:
    """The review design in force per monitor id of `runtimes` (a monitor whose spec has none
    fitted yet is left out: it selects with `review.initial`)."""
    return {
        runtime.registered.id: design
        for runtime in runtimes
        if (design := _design(runtime)) is not None
    }


def _design(runtime: _Runtime) -> review.Design | None:
    """The design the leader fitted for the monitor's current review spec, if any."""
    spec = runtime.registered.monitor.spec
    kept = runtime.review
    if spec.review is None or kept is None or kept.basis != runtime.basis:
        return None
    return kept.design


def _review_summary(runtime: _Runtime) -> wire.ReviewSummary:
    """The review queue in short, as the state and the status show it: the leader's status,
    this replica's last read of the queue."""
    spec = runtime.registered.monitor.spec
    if spec.review is None:
        return wire.ReviewSummary()
    design = _design(runtime) or review.initial(spec.review, spec.metrics.window)
    kept, queue = runtime.review, runtime.queue or NO_QUEUE
    return wire.ReviewSummary(
        enabled=True,
        status=kept.status if kept is not None else "ok",
        message=kept.message if kept is not None else None,
        budget_per_day=design.budget_per_day,
        expected_per_day=design.expected_per_day,
        depth=queue.depth,
        oldest=queue.oldest,
    )


async def _in_slices(steps: records.Steps[T]) -> T:
    """Run work done in slices, letting the event loop serve other requests between them."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value  # the generator's return value, which typeshed leaves Any
            return result
        await asyncio.sleep(0)
