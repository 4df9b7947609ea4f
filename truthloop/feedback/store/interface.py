"""The store interface: everything the feedback service keeps, behind async methods.

The service above this interface does not know which backend it has (SQLite embedded, PostgreSQL
for several replicas). Each write method is one transaction: when it returns, the write is
committed, and when it raises, nothing of it is. Join semantics are not re-implemented per
backend: both call the pure `truthloop.core.join` inside their transactions.

Aggregates are sufficient statistics (`truthloop.core.metrics` counters) per (monitor, model
version, served_by, minute bucket, counter key). Writes append their counter deltas; a fold adds
them (`rollup`) to the minute buckets and, in the same transaction, to the hourly and daily
rollups and the lifetime totals, so a 30-day window is a few hundred buckets (see
`core/windows.py`); reads add the deltas not folded yet.
Lifetime totals (what Prometheus counters read) keep only the scalar counters (`is_lifetime`):
histogram and confusion-matrix cells, the bulk of the keys, live in buckets alone.

Segment counters (`core.segments`: keys `^<segment>=<value>:<counter>`, so never lifetime ones)
are kept in the same buckets, but apart from the others (`by_segment`): a read without
`Only.segment` never reads them, a read of one segment reads only its own.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from truthloop.core import alerts, estimate, join, review, segments, sketch, windows
from truthloop.core.evaluation import Group
from truthloop.core.join import GroupKey, Label
from truthloop.core.plan import Lifetime
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.queue import ReviewVote
from truthloop.core.records import Actual, ItemError, PredictionRecord
from truthloop.core.spec import Monitor
from truthloop.core.windows import MINUTES_PER_DAY, MINUTES_PER_HOUR, BucketRange, Level, Steps
from truthloop.core.wire import Scalar

T = TypeVar("T")

Counters = dict[str, float]


def is_lifetime(key: str) -> bool:
    """Whether a counter is kept in the lifetime totals: not a histogram or matrix cell.

    (`core.metrics` names those cells `pos:<bin>`, `neg:<bin>`, `cm:<pair>`.)
    """
    return ":" not in key


def by_segment(counters: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """A group's counters by the segment they belong to (`""`: no segment's), zeros left out;
    a segment's keep their prefix."""
    out: dict[str, dict[str, float]] = {}
    for key, value in counters.items():
        if value:
            name = key[1 : key.index("=")] if key[:1] == segments.PREFIX else ""
            found = out.get(name)
            if found is None:
                found = out[name] = {}
            found[key] = value
    return out


def rollup(
    minutes: Mapping[GroupKey, Mapping[str, float]],
) -> tuple[dict[Level, Mapping[GroupKey, Mapping[str, float]]], dict[Lifetime, dict[str, float]]]:
    """What counter deltas of minute buckets add to each aggregate: per level, the sums per
    group and bucket of that level (the minutes themselves for `minute`), and the lifetime
    counters per group."""
    hours: dict[GroupKey, dict[str, float]] = {}
    lifetime: dict[Lifetime, dict[str, float]] = {}
    for (mid, version, served_by, bucket), counters in minutes.items():
        join.add(hours, (mid, version, served_by, bucket // MINUTES_PER_HOUR), counters)
        scalars = {k: v for k, v in counters.items() if is_lifetime(k)}
        join.add(lifetime, (mid, version, served_by), scalars)
    days: dict[GroupKey, dict[str, float]] = {}
    hours_per_day = MINUTES_PER_DAY // MINUTES_PER_HOUR
    for (mid, version, served_by, hour), counters in hours.items():
        join.add(days, (mid, version, served_by, hour // hours_per_day), counters)
    return {"minute": minutes, "hour": hours, "day": days}, lifetime


class StoreError(Exception):
    """The store cannot do what was asked (base of the store's own errors)."""


def opened(value: T | None) -> T:
    """What a store made in `open`, or RuntimeError when it is not open (a programming error)."""
    if value is None:
        raise RuntimeError("the store is not open")
    return value


class StoreUnavailable(StoreError, ConnectionError):
    """The database is away (or kept aborting the write): retry later.

    The write was not applied, unless the connection broke while it committed; a retry is then a
    duplicate record or the same label again, which change nothing.
    """


class LabelsRejected(StoreError, ValueError):
    """Some actuals cannot label the predictions they matched; nothing was stored."""

    def __init__(self, errors: Sequence[ItemError]) -> None:
        self.errors = tuple(errors)
        super().__init__(f"{len(self.errors)} actual(s) rejected")


class MonitorsGone(StoreError, LookupError):
    """A write names monitors another process deleted since this one last read them; nothing
    was stored. The caller rereads the monitors."""

    def __init__(self, monitor_ids: Sequence[int]) -> None:
        self.monitor_ids = tuple(monitor_ids)
        super().__init__(f"monitors {sorted(self.monitor_ids)} were deleted")


@dataclass(frozen=True, slots=True)
class Only:
    """Which groups an aggregate read keeps: one model version, one served_by, or (None) all;
    and which counters: with `sketches=False` none of the feature sketches (`core.sketch`: a
    metrics read, which they would only slow down), with `True` only them (a drift read).
    `estimates` (with `sketches=False`) keeps the estimation counters all the same
    (`estimate.is_counter`: a tick's or the metrics API's read, which estimate next to the
    realized metrics). `segment` None reads no segment's counters; a segment's name reads only
    that segment's (`core.segments`, prefix kept; `sketches` and `estimates` then filter the
    counters behind the prefix)."""

    version: str | None = None
    served_by: str | None = None
    sketches: bool | None = None
    estimates: bool = False
    segment: str | None = None

    def keeps(self, key: str) -> bool:
        """Whether a read with these filters keeps counter `key`."""
        if self.segment is None:
            if key[:1] == segments.PREFIX:
                return False
        elif key.startswith(f"{segments.PREFIX}{self.segment}="):
            key = key[key.index(":") + 1 :]
        else:
            return False
        if self.sketches is None:
            return True
        if key[:1] == sketch.PREFIX:
            return self.sketches or (self.estimates and estimate.is_counter(key))
        return not self.sketches


EVERY = Only()

Groups = dict[Group, Counters]
"""Counters per (version, served_by)."""


@dataclass(frozen=True, slots=True)
class Registered:
    """A monitor as the store knows it: its numeric id, parsed spec and the object as PUT,
    and its reference profiles by model version (`""`: for every version without its own)."""

    id: int
    monitor: Monitor
    body: Mapping[str, Any]
    created: float
    deleted: float | None = None
    references: Mapping[str, Reference] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredState:
    """The engine's persisted view of a monitor, so a restart resumes where it was."""

    version: int
    state: Mapping[str, Any]
    """`alerts.MonitorState.to_dict()`"""
    external: tuple[str, ...] = ()
    """Alertmanager alerts firing for this monitor."""
    override: str | None = None
    """The fallback mode set through the API, if any (until the spec's own mode changes)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    matched: int
    """Pending actuals that found their prediction in this batch."""
    warnings: tuple[ItemError, ...] = ()
    """Values left out of stored records (`Parsed.warnings`), the first `MAX_ERRORS`."""
    warnings_omitted: int = 0
    """Warnings beyond `warnings`."""


@dataclass(frozen=True, slots=True)
class HalfStored:
    """What became of a CloudEvent half (`Store.put_half`): it waits for its other half, it was
    stored before (`duplicate`), it completes a pair (`paired`, with both halves' JSON), or the
    monitor has too many halves waiting to keep another (`full`, nothing stored)."""

    outcome: Literal["waiting", "duplicate", "paired", "full"]
    request: str | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    matched: int
    pending: int


@dataclass(frozen=True, slots=True)
class StoredPrediction:
    """A stored record with its label, as the timeline and dataset read it."""

    cursor: tuple[float, int]
    """Where a dataset read continues after this record (time, then arrival)."""
    prediction_id: str
    served_by: str
    model_version: str
    entity_id: str | None
    tag: str | None
    ts: float
    prediction: Scalar
    score: float | None
    features: Any
    label: Label | None
    correct: bool | None
    labeled_at: float | None
    outlier: float | None = None
    """The record's outlier score against its reference when it arrived (`core.sketch`): the
    share of its features outside the reference; None when it had no reference."""
    pi: float | None = None
    """Its inclusion probability, when it was queued for review."""
    reason: review.Reason | None = None
    """Why it was queued for review."""
    reviewer: str | None = None
    """Who labeled it, for a label from review."""
    abstained: bool = False
    """The sidecar answered "I don't know" in the model's place."""
    votes: tuple[ReviewVote, ...] = ()
    """The reviewers' answers on its review item."""


@dataclass(frozen=True, slots=True)
class DatasetQuery:
    """Records of one monitor in [start, end): labeled ones only (`labeled`) or all of them (a
    history reference reads every record of its period); optionally one version, correctness,
    or outliers only (`outlier=True`: score > 0) / none of them (`False`: score 0 or none),
    records labeled by a reviewer (`reviewed`) or not, abstained ones or not."""

    monitor_id: int
    start: float
    end: float
    version: str | None = None
    correct: bool | None = None
    labeled: bool = True
    outlier: bool | None = None
    reviewed: bool | None = None
    abstained: bool | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A queued record as a reviewer is handed it (`Store.lease_review`)."""

    prediction_id: str
    model_version: str
    ts: float
    prediction: Scalar
    score: float | None
    features: Any
    outlier: float | None
    abstained: bool
    reason: review.Reason
    pi: float
    queued: float
    lease_until: float | None
    leased_to: str | None
    votes: tuple[ReviewVote, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A monitor's review queue now (`Store.review_stats`)."""

    depth: int
    """Open items not past their expiry."""
    leased: int
    """Of them, those a reviewer holds."""
    oldest: float | None
    """When the oldest of them was queued."""
    expired: int
    """Items that expired unreviewed in the last day."""


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report on an alert that fired, as the listing shows it (`Store.reports`)."""

    id: int
    at: float
    alert: str
    summary: Mapping[str, Any]
    """The listing's fields the engine stored with it (`Store.add_report`)."""


ReportPart = Literal["document", "html"]
"""A stored report's JSON document or its HTML page."""


class Store(abc.ABC):
    """Persistent state of the feedback service. Every method is a coroutine."""

    shared = False
    """Whether other processes write to it too (replicas): what this process remembers of the
    monitors may be behind, so a name it does not know is looked up before it is refused."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending work and release connections."""

    # -- replicas (a store only one process uses needs none of this) ---------------------------

    async def try_lead(self) -> bool:
        """Whether this process does the leader's work now: step alerts, sweep, expire, purge.

        Replicas sharing a database elect one at a time; a store only one process uses always
        leads. Asked on every tick, so a lost leadership passes on within a tick or two.
        """
        return True

    async def compact(self) -> int:
        """Fold what writes left for later into the aggregates; how many deltas were folded.

        The leader calls it every tick; reads are exact whether or not it has run. A store whose
        writes update the aggregates in place has nothing to fold.
        """
        return 0

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) whenever another process may have changed the
        monitors or their state; the callee rereads them. A store only one process uses has
        nobody to hear from."""
        return None

    def hold_state(self, monitor_id: int) -> AbstractAsyncContextManager[StoredState | None]:
        """Keep other processes from changing a monitor's state until the block ends.

        Yields the state as stored now, or None when no other process can have stored a newer
        one than this process last saved (a store only one process uses).
        """
        return _unshared()

    # -- monitors and their state --------------------------------------------------------------

    @abc.abstractmethod
    async def load_monitors(self) -> list[Registered]:
        """Every monitor not yet purged, deleted ones included (their `deleted` is set)."""

    @abc.abstractmethod
    async def put_monitor(
        self, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> tuple[Registered, bool]:
        """Create, replace or revive the monitor `monitor.key` as `core.registry.register`
        decides over the stored one (raises its `TaskChange`); True when no live monitor had the
        key. Decided in the write's transaction: replicas that remember otherwise agree."""

    @abc.abstractmethod
    async def delete_monitor(self, key: str, now: float) -> bool:
        """Mark a monitor deleted (its data goes at the next purge after the grace)."""

    @abc.abstractmethod
    async def purge_deleted(self, before: float, limit: int) -> int:
        """Remove up to `limit` rows of monitors deleted before `before`; rows removed."""

    @abc.abstractmethod
    async def put_reference(
        self,
        monitor_id: int,
        version: str,
        source: ReferenceSource,
        profile: Profile,
        now: float,
    ) -> Reference:
        """Store `profile` as the monitor's reference for model `version` ("" for every version
        without one of its own), replacing the one it had: the new one has a new id, so sketch
        counters of the old one never mix with it. Other processes hear of it as of a monitor
        change (`watch`), and `load_monitors` carries it in `Registered.references`. Raises
        `MonitorsGone` when the monitor is deleted or unknown."""

    @abc.abstractmethod
    async def load_tokens(self) -> dict[str, str]:
        """The registered namespace tokens: namespace -> SHA-256 (hex) of its token."""

    @abc.abstractmethod
    async def put_token(self, namespace: str, sha256: str, now: float) -> None:
        """Register (or replace) the namespace's token by its SHA-256; other processes hear of
        it as of a monitor change (`watch`)."""

    @abc.abstractmethod
    async def load_states(self) -> dict[int, StoredState]:
        """Persisted engine state per monitor id."""

    @abc.abstractmethod
    async def save_state(self, monitor_id: int, state: StoredState) -> None:
        """Persist a monitor's engine state."""

    # -- history -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_transitions(
        self, monitor_id: int, transitions: Sequence[alerts.Transition]
    ) -> None:
        """Keep what the alert machine did (the history the dashboard shows; a state holds only
        the latest), in their order."""

    @abc.abstractmethod
    async def transitions(
        self, monitor_id: int, start: float, end: float, limit: int
    ) -> list[alerts.Transition]:
        """The newest `limit` transitions at `start <= at < end`, oldest first."""

    @abc.abstractmethod
    async def delete_transitions(self, monitor_id: int, before: float, limit: int) -> int:
        """Delete up to `limit` transitions older than `before` (the oldest first)."""

    # -- writes --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def insert_predictions(
        self,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, Registered],
        now: float,
        designs: Mapping[int, review.Design] | None = None,
        segment_sets: Mapping[int, segments.ValueSets] | None = None,
    ) -> IngestResult:
        """Store new records (a known key is a duplicate), count them, join waiting actuals.

        A record of a monitor with `spec.segments` is stored with its raw values and its
        prefixes (`segments.prefixes` with its monitor's `segment_sets` by id; none yet: empty
        sets), and every counter it makes, then and when labeled, is kept under them too.

        A record whose attribution window has already passed unlabeled gets its monitor's
        `missingActual: assume` label at once. The model records of monitors with
        `spec.review` are selected for review (`review.select`, with `designs` by monitor id):
        a selected one is stored with its mark and queued until its attribution window passes.
        Raises `MonitorsGone` (storing nothing) when another process deleted one of `monitors`.
        """

    @abc.abstractmethod
    async def apply_actuals(
        self, actuals: Sequence[Actual], monitors: Mapping[str, Registered], now: float
    ) -> FeedbackResult:
        """Label the records each actual matches, or keep it pending; all or nothing.

        A reviewer's label (`Actual.reviewer`) must name a model record of its monitor; it
        closes the record's review item as reviewed. A reviewer's decision (`skip`, `unsure`)
        labels nothing: it hands the item back, never to be offered to that reviewer again.
        Raises `LabelsRejected` (and stores nothing) when a label cannot be used with a matched
        prediction or a reviewer's actual cannot be taken (`core.queue.refusal`), `MonitorsGone`
        when another process deleted one of `monitors`.
        """

    @abc.abstractmethod
    async def assume_missing(
        self, monitor: Registered, cutoff: float, now: float, limit: int
    ) -> int:
        """Give up to `limit` unlabeled records older than `cutoff` the assumed label.

        The store remembers how far it has swept, so each record is looked at about once.
        """

    @abc.abstractmethod
    async def expire_pending(self, now: float) -> dict[int, int]:
        """Drop pending actuals past their expiry; how many per monitor id."""

    @abc.abstractmethod
    async def delete_predictions(self, monitor_id: int, before: float, limit: int) -> int:
        """Delete up to `limit` raw records older than `before` (aggregates stay), and the
        review items of those gone."""

    # -- CloudEvents waiting for their other half -----------------------------------------------

    @abc.abstractmethod
    async def put_half(
        self,
        monitor_id: int,
        event_id: str,
        half: Literal["request", "response"],
        payload: str,
        now: float,
        limit: int,
    ) -> HalfStored:
        """Keep one half of event `event_id` (its `cloudevents.Half` JSON) until its other half
        comes; when that is here already, take the pair (once, whichever process the halves
        came to: the row is locked while it is taken). A new event is refused (`full`) while the
        monitor has `limit` halves waiting; a half stored before is a `duplicate`, also once its
        pair was taken, until the event expires."""

    @abc.abstractmethod
    async def expire_halves(self, before: float, limit: int) -> dict[int, int]:
        """Delete up to `limit` events first seen before `before`; those that never paired add
        to their monitor's lifetime totals (`codec.UNPAIRED_KEYS`). How many never paired, per
        monitor id."""

    # -- the sidecars' minutes -----------------------------------------------------------------

    @abc.abstractmethod
    async def add_sidecar_minutes(
        self, monitor_id: int, minutes: Mapping[int, Mapping[str, float]]
    ) -> None:
        """Add each minute bucket's sidecar counters (`core.sidecar_stats` keys) to the
        monitor's, which sum every pod's; nothing for a monitor deleted or unknown."""

    @abc.abstractmethod
    async def sidecar_minutes(
        self, monitor_id: int, span: BucketRange, step_minutes: int
    ) -> list[tuple[float, dict[str, float]]]:
        """The monitor's sidecar counters of the minutes in `span`, summed per step of
        `windows.steps(span, step_minutes)` (aligned: the first and last step may hold fewer of
        `span`'s minutes), as (step start in epoch seconds, counters), every step in time
        order, `{}` where none came. Sum them for the span's total."""

    @abc.abstractmethod
    async def delete_sidecar_minutes(self, monitor_id: int, before: float, limit: int) -> int:
        """Delete up to `limit` counter rows of the minutes before `before`; rows deleted."""

    # -- the review queue ----------------------------------------------------------------------

    @abc.abstractmethod
    async def lease_review(
        self, monitor_id: int, reviewer: str, limit: int, now: float, lease_seconds: float
    ) -> list[ReviewItem]:
        """Hand `reviewer` up to `limit` open items for `lease_seconds`: not expired, not
        leased to anyone now, not passed by this reviewer; abstained and explored ones first,
        then the oldest. Never one item to two reviewers at once, whichever replica asks."""

    @abc.abstractmethod
    async def expire_reviews(self, now: float, limit: int) -> dict[int, int]:
        """Close up to `limit` open items past their expiry as expired; how many per monitor."""

    @abc.abstractmethod
    async def review_stats(
        self, now: float, monitor_id: int | None = None
    ) -> dict[int, QueueStats]:
        """Each monitor's queue, or only `monitor_id`'s (monitors with no open item and none
        expired within a day are left out)."""

    # -- reads ---------------------------------------------------------------------------------

    @abc.abstractmethod
    async def window(self, monitor_id: int, span: BucketRange, only: Only = EVERY) -> Groups:
        """Summed counters of the buckets in `span`, per (version, served_by)."""

    @abc.abstractmethod
    async def series(self, monitor_id: int, steps: Steps, only: Only = EVERY) -> dict[int, Groups]:
        """Summed counters per point index of `steps` (points with no data are absent)."""

    async def version_spans(
        self, monitor_id: int, span: BucketRange, version: str | None = None
    ) -> dict[str, BucketRange]:
        """Each model version's (or only `version`'s) minute buckets in `span` from the first to
        the last that hold its model records (`end` one past the last): the days holding them
        from the daily rollups, then the hours of the first and last such day, then their
        minutes. A handful of `series` reads, never the raw records."""
        days = await self._holding(monitor_id, span, MINUTES_PER_DAY, version)
        found: dict[str, BucketRange] = {}
        for name, starts in days.items():
            first = await self._edge(monitor_id, span, name, starts, MINUTES_PER_DAY, last=False)
            last = await self._edge(monitor_id, span, name, starts, MINUTES_PER_DAY, last=True)
            if first is not None and last is not None:
                found[name] = BucketRange(first, last + 1)
        return found

    async def _holding(
        self, monitor_id: int, span: BucketRange, width: int, version: str | None
    ) -> dict[str, list[int]]:
        """Per version, the first minute of each aligned point of `width` minutes over `span`
        that holds its model records, in time order (a point may reach outside `span`)."""
        steps = windows.steps(span, width)
        points = await self.series(monitor_id, steps, Only(version, "model", sketches=False))
        found: dict[str, list[int]] = {}
        for index in sorted(points):
            for (name, _), counters in points[index].items():
                if counters.get(join.PREDICTIONS_KEY, 0) > 0:
                    found.setdefault(name, []).append(steps.start + index * steps.width)
        return found

    async def _edge(
        self,
        monitor_id: int,
        span: BucketRange,
        version: str,
        starts: list[int],
        width: int,
        *,
        last: bool,
    ) -> int | None:
        """The first (`last`: the last) minute inside `span` holding `version`'s records, in the
        points `starts` (of `width` minutes, in time order) that hold some; None when none."""
        for start in reversed(starts) if last else starts:
            piece = BucketRange(max(start, span.start), min(start + width, span.end))
            if len(piece) == 0:
                continue
            if width == 1:
                return start
            finer = MINUTES_PER_HOUR if width == MINUTES_PER_DAY else 1
            inner = (await self._holding(monitor_id, piece, finer, version)).get(version, [])
            edge = await self._edge(monitor_id, piece, version, inner, finer, last=last)
            if edge is not None:
                return edge
        return None

    @abc.abstractmethod
    async def totals(self) -> dict[int, dict[Group, Counters]]:
        """Lifetime counters (`is_lifetime` ones) per monitor id and (version, served_by)."""

    @abc.abstractmethod
    async def segment_values(
        self, monitor_id: int, since: float, limit: int
    ) -> dict[str, dict[str, int]]:
        """How often each raw segment value (`segments.text`: a string itself, a number or
        boolean its JSON text) occurs among the newest `limit` records (at most) from `since`
        on: per segment name, value -> records. What the leader chooses value sets from."""

    @abc.abstractmethod
    async def timeline(
        self, monitor_id: int, entity_id: str, limit: int, outlier: bool | None = None
    ) -> list[StoredPrediction]:
        """An entity's newest `limit` records, newest first; `outlier` as in `DatasetQuery`."""

    @abc.abstractmethod
    async def dataset(
        self, query: DatasetQuery, after: tuple[float, int], limit: int
    ) -> list[StoredPrediction]:
        """Up to `limit` records of the query (`query.labeled`: labeled ones only) with
        `cursor > after`, in cursor order.

        Start with `after=(query.start, 0)`.
        """

    async def chunks(
        self, query: DatasetQuery, limit: int
    ) -> AsyncIterator[list[StoredPrediction]]:
        """Every record of the query, `dataset` read by `limit` at a time: a period's records
        in chunks, never all in memory."""
        after = (query.start, 0)
        while True:
            chunk = await self.dataset(query, after, limit)
            if not chunk:
                return
            yield chunk
            after = chunk[-1].cursor

    # -- alert reports -------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_report(
        self,
        monitor_id: int,
        at: float,
        alert: str,
        summary: Mapping[str, Any],
        document: str,
        html: str,
        keep: int,
    ) -> int:
        """Store a report (its listing's `summary`, JSON `document` and `html` page); its id.
        In the same transaction the monitor's reports beyond the newest `keep` are deleted."""

    @abc.abstractmethod
    async def reports(self, monitor_id: int, limit: int) -> list[StoredReport]:
        """The monitor's newest `limit` reports, newest first."""

    @abc.abstractmethod
    async def report(self, monitor_id: int, report_id: int, part: ReportPart) -> str | None:
        """One of the monitor's reports' document or page; None when it has no such report."""


@contextlib.asynccontextmanager
async def _unshared() -> AsyncIterator[None]:
    yield None
