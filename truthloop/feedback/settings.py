"""The feedback service's settings, one dataclass per concern, each field documented.

Built once (by the CLI from flags and `TRUTHLOOP_*` variables, or by a test) and passed in; nothing
here reads the environment. Time comes from `clock`, so tests advance a fake clock instead of
waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from truthloop.core.records import Limits

Clock = Callable[[], float]
"""Seconds since the epoch, as `time.time` returns them."""

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class HttpSettings:
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body; a larger one is answered 413 before it is read."""
    max_reference_bytes: int = 512 * 1024 * 1024
    """Largest reference data set (`POST .../reference`, after its content coding); it is parsed
    as it arrives, never held whole, so this bounds the time one upload takes, not memory."""
    max_wait: float = 60.0
    """Longest long-poll (`state?wait=`) the service will hold open."""
    idle_timeout: float = 75.0
    """Seconds a connection may stay idle, or take to send a request's head, before it is closed
    (aiohttp's own default is an hour); longer than a load balancer's usual 60 s, like nginx."""
    max_series_points: int = 10_000
    """Most points a `metrics?series=` answer may have."""
    max_timeline: int = 1000
    """Most records a `predictions?entity_id=` answer may have."""
    dataset_chunk: int = 2000
    """Rows read from the store per round trip while streaming a dataset."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    tick_interval: float = 1.0
    """Seconds between evaluations of alerts, the missing-actual sweep, expiry and retention."""
    retention: float = 30 * DAY
    """Raw predictions and the sidecars' minute counters older than this are deleted; the
    aggregates are kept."""
    delete_grace: float = DAY
    """A deleted monitor's data is kept this long (a re-PUT within it revives the monitor)."""
    sweep_chunk: int = 5000
    """Most records labeled by one missing-actual sweep step."""
    delete_chunk: int = 50_000
    """Most rows one retention or purge step deletes (keeps each write transaction short)."""
    history_sample: int = 200_000
    """Most records a history reference (`spec.drift.reference`) is built from: a uniform
    sample of the period's, so its memory and time stay bounded whatever the traffic; 200,000
    values place each of 20 quantile edges within a fraction of a percent of its rank."""
    drift_interval: float = 15.0
    """Seconds at least between two reads of a monitor's feature sketches for its window's drift
    (the alerts, state and gauges): a 1 h window of 100 features is ~2,000 counters a minute
    bucket, tens of milliseconds to sum, which every tick (1 s) would pay. Read again only when
    new records or a bucket leaving the window changed the window, or the spec or the reference
    changed."""


@dataclass(frozen=True, slots=True)
class CloudEventSettings:
    """`POST /v1/cloudevents`: KServe's payload logger as a source (docs/kserve-logger.md)."""

    max_event_bytes: int = 1024 * 1024
    """Largest event body: a half waits in the store with it, so this and `max_waiting` bound
    what one monitor's waiting halves hold."""
    max_waiting: int = 10_000
    """Most halves of one monitor waiting for their other half; a new event beyond is refused
    (429) until some pair or expire."""
    pair_window: float = 600.0
    """Seconds an event's first half waits for the other (a model slower than this loses the
    pair, counted as unpaired); the event's id is remembered as long, so a half delivered
    again within it is a duplicate."""


DEFAULT_STORE = "sqlite://truthloop-feedback.db"


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = DEFAULT_STORE
    """Where data lives: `sqlite:///absolute/path.db`, `sqlite://relative/path.db`, or
    `postgresql://user@host:5432/db` (several replicas may share it)."""
    token: str | None = None
    """When set, writes need `Authorization: Bearer <token>`."""
    clock: Clock = time.time
    """The service's notion of now."""
    http: HttpSettings = field(default_factory=HttpSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    limits: Limits = field(default_factory=Limits)
    """What clients may send; `limits.max_age` follows `engine.retention` (see `make`)."""
    cloudevents: CloudEventSettings = field(default_factory=CloudEventSettings)


def make(
    *,
    store: str = DEFAULT_STORE,
    token: str | None = None,
    clock: Clock = time.time,
    retention: float = 30 * DAY,
    http: HttpSettings | None = None,
    engine: EngineSettings | None = None,
    limits: Limits | None = None,
    cloudevents: CloudEventSettings | None = None,
) -> Settings:
    """Settings whose parts agree: predictions older than the retention are refused on arrival."""
    return Settings(
        store=store,
        token=token,
        clock=clock,
        http=http or HttpSettings(),
        engine=replace(engine or EngineSettings(), retention=retention),
        limits=replace(limits or Limits(), max_age=retention),
        cloudevents=cloudevents or CloudEventSettings(),
    )
