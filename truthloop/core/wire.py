"""The shapes the parts exchange over HTTP: one msgspec Struct per message, encoded by the part
that speaks and decoded, with the same type, by the parts that listen.

- `CaptureRecord`: an item of `POST /v1/predictions`. The sidecar encodes one per captured
  prediction; the feedback service decodes whole batches of them in one pass and validates each
  into a `records.PredictionRecord`. `tag`, `score` and `features` are left off the wire when
  the sidecar has none (UNSET), so a record costs no bytes for what it lacks.
- `SidecarMinutes`: the body of `POST /v1/sidecar-stats`, a sidecar's request counters and
  latency histograms per minute (`core.sidecar_stats`).
- `MonitorState`: the answer of `GET /v1/monitors/{ns}/{name}/state` (long-polled) and of the
  fallback override. Sidecars follow its `version`, `generation` and `fallback.active`; the
  operator and the demo read the rest (the drift summary, `DriftSummary`, among it).
- `MonitorStatus`: the `status` the service adds to a monitor's object (`GET`/`PUT
  /v1/monitors/{ns}/{name}`, the listing); the operator reads it as a `MonitorView` and mirrors it
  into the ModelMonitor.
- `Cause`: what engaged the fallback, as data (`{"kind": "alert", "name": "accuracy-low"}`), so no
  reader splits a sentence back into names. `causes_text` is the one way to tell causes in a line
  (`accuracy-low, alertmanager: LatencyHigh`, or `manual`): `FallbackState.reason` is that line.

How these shapes may change without breaking a part that runs an older release (sidecars outlive
an upgrade of the service): add fields with defaults — a decoder ignores fields it does not know
and fills in those it misses — and never rename or retype one. A new value of a `Literal` is a
break for a reader that does not know it (a sidecar that cannot decode a state keeps the last one
it could), so it has to reach the readers a release before any writer sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import msgspec

from truthloop.core.spec import FallbackMode

Phase = Literal["Pending", "Collecting", "Healthy", "Degraded", "FallbackActive", "Invalid"]
"""`Pending` and `Invalid` are the operator's (not registered yet, a spec that does not parse)."""
AlertStatus = Literal["ok", "pending", "firing", "insufficient"]
CauseKind = Literal["alert", "alertmanager", "manual"]
"""An alert of the spec firing, an Alertmanager alert firing, a manual mode (spec or API)."""
ServedBy = Literal["model", "fallback"]
Scalar = int | float | str | bool

PHASES: tuple[Phase, ...] = get_args(Phase)
ALERT_STATUSES: tuple[AlertStatus, ...] = get_args(AlertStatus)
CAUSE_KINDS: tuple[CauseKind, ...] = get_args(CauseKind)
SERVED_BY: tuple[ServedBy, ...] = get_args(ServedBy)


# -- capture -----------------------------------------------------------------------------------


class CaptureRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One captured prediction, as `POST /v1/predictions` takes it (a JSON array or NDJSON).

    The types are what the service accepts (`ts` may be epoch seconds or RFC 3339 text, an
    `entity_id` a string or an integer); what they must mean is `records.parse_predictions`'.
    """

    prediction_id: str
    monitor: str
    model_version: str = ""
    entity_id: str | int | None = None
    tag: str | msgspec.UnsetType | None = msgspec.UNSET
    ts: float | str
    prediction: Scalar
    score: float | dict[str, float] | msgspec.UnsetType | None = msgspec.UNSET
    """Binary: the positive class's probability; multiclass: each class's (an object)."""
    features: dict[str, Any] | list[Any] | msgspec.UnsetType | None = msgspec.UNSET
    served_by: ServedBy = "model"
    abstained: bool = False
    """The sidecar answered "I don't know" in the model's place (`spec.review.abstain`)."""
    segments: Mapping[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    """The request's raw value of each segment (`spec.segments`), by segment name: a string,
    number, boolean or null (none), checked by `records.parse_predictions` (which names the
    segment of a bad value)."""


class SidecarMinute(msgspec.Struct, frozen=True, kw_only=True):
    """What a sidecar's counters grew by in the minute starting at `start` (epoch seconds), by
    key (`core.sidecar_stats` names the keys)."""

    start: float
    counts: dict[str, float]


class SidecarMinutes(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /v1/sidecar-stats`: a sidecar's minutes not posted yet, oldest first; `pod` names
    the sidecar (the service keeps no pod's apart: it adds every pod's minutes up)."""

    monitor: str
    pod: str = ""
    minutes: tuple[SidecarMinute, ...] = ()


# -- the fallback's causes ---------------------------------------------------------------------


class Cause(msgspec.Struct, frozen=True):
    """One reason the fallback is engaged; `name` is the alert's (None for `manual`)."""

    kind: CauseKind
    name: str | None = None

    def text(self) -> str:
        if self.kind == "manual":
            return "manual"
        if self.kind == "alertmanager":
            return f"alertmanager: {self.name}"
        return str(self.name)


MANUAL = Cause("manual")


def causes_text(causes: Iterable[Cause]) -> str | None:
    """The causes in one line, `accuracy-low, alertmanager: LatencyHigh` (None: no cause)."""
    return ", ".join(cause.text() for cause in causes) or None


# -- the monitor's state -----------------------------------------------------------------------


class AlertState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One alert, as the alert machine keeps it and the state shows it. `since`: when the current
    status began (None only before the first step); `value` and `samples` are the latest
    observation, also while the alert is insufficient. The status is `state` on the wire, as in
    Prometheus' alerts API."""

    name: str
    status: AlertStatus = msgspec.field(name="state")
    since: float | None
    value: float | None
    samples: int
    values: tuple[str, ...] = ()
    """A segment alert's breaching values (`AlertSpec.segment`), worst first."""


class FallbackState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the rules answer, in which `mode`, since when, and why (`causes`)."""

    active: bool
    mode: FallbackMode
    since: float | None = None
    causes: tuple[Cause, ...] = ()
    reason: str | None = None
    """`causes_text(causes)`, for people; always derived (a value given or decoded is replaced)."""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "reason", causes_text(self.causes))


class Passthrough(msgspec.Struct, frozen=True, kw_only=True):
    """Client connections the monitor's sidecars tunnelled to the model uncaptured in the last
    hour (`connections`, by protocol: `h2c` is HTTP/2 cleartext, as gRPC speaks; `websocket`,
    `connect`, `other`), since when they have (the first minute of a stretch without an hour
    free of them), and the minute of the last."""

    connections: dict[str, int]
    since: float
    last: float


class CaptureState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the service refuses the monitor's sidecars' batches now (`refused`: the reason
    code, `unauthorized`...), since when, and when it last did; and what the sidecars passed to
    the model uncaptured lately (`passthrough`, None when nothing in the last hour)."""

    refused: str | None = None
    since: float | None = None
    last: float | None = None
    passthrough: Passthrough | None = None


MAX_DRIFTED = 100
"""Drifted features a summary names (a monitor profiles at most `profile.MAX_FEATURES`)."""


class DriftSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The monitor's window against its reference, in short: what the state and the status
    show and the operator's `Drift` condition reads. `status` is `ok`, `no_reference` (nothing
    to compare with) or `no_data` (no record in the window); a plain string, so a reader of an
    older release takes a status it does not know. `drifted`: dataset drift, the share of
    drifted features at least `threshold` (spec.drift.share). `features`: the drifted ones by
    name, at most `MAX_DRIFTED`; `prediction`: whether the prediction (or score) drifted."""

    status: str = "no_reference"
    drifted: bool = False
    share: float | None = None
    threshold: float | None = None
    features: tuple[str, ...] = ()
    profiled: int = 0
    """Features compared with the reference."""
    prediction: bool = False
    reason: str | None = None
    """With `no_reference` and a history period (`spec.drift.reference`): why there is none yet
    (the period has not ended, or held no usable records)."""


class ReviewSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The monitor's review queue in short (`spec.review`): what the state and the status show
    and the operator's `ReviewBudget` condition reads. `status` is the design's
    (`review.DesignStatus`: `ok`, `no_traffic`, `over_budget`, `under_traffic`) or `behind`
    (reviewers do not keep up: queued items expired unreviewed in the last day), with a message
    for people; a plain string, as `DriftSummary.status`. `enabled` is False without
    `spec.review`."""

    enabled: bool = False
    status: str = "ok"
    message: str | None = None
    budget_per_day: float | None = None
    expected_per_day: float | None = None
    """Items a day the current design queues at the recent traffic."""
    depth: int = 0
    """Items waiting (leased ones included)."""
    oldest: float | None = None
    """When the oldest waiting item was queued (epoch seconds)."""


MAX_VERSIONS_SEEN = 20
"""Model versions a state remembers (the newest by first sight)."""


class VersionSeen(msgspec.Struct, frozen=True):
    """A model version the monitor's records carry, and the start of the minute holding the
    first of them the service saw (epoch seconds)."""

    version: str
    first_seen: float


class ReportLink(msgspec.Struct, frozen=True):
    """The newest report on an alert that fired: its id, when the alert fired, which one, and
    where the service serves its page (`url`, a path on the service; `url + ".json"` is its
    document)."""

    id: int
    at: float
    alert: str
    url: str


class MonitorState(msgspec.Struct, frozen=True, kw_only=True):
    """What the long-poll answers. `version` moves whenever anything here but an alert's latest
    `value`/`samples`, the refusal's `last` or `capture.passthrough` changes; `generation` is
    the spec's in force."""

    monitor: str
    generation: int
    version: int
    phase: Phase
    fallback: FallbackState
    alerts: tuple[AlertState, ...] = ()
    external: tuple[str, ...] = ()
    """Alertmanager alerts firing for the monitor."""
    capture: CaptureState = msgspec.field(default_factory=CaptureState)
    drift: DriftSummary = msgspec.field(default_factory=DriftSummary)
    """The window's drift; it moves `version` only when a verdict changes (which features
    drifted, dataset drift, the status), never with a statistic."""
    review: ReviewSummary = msgspec.field(default_factory=ReviewSummary)
    """The review queue; it moves `version` only when `status` changes."""
    versions: tuple[VersionSeen, ...] = ()
    """The model versions seen, oldest first, the newest `MAX_VERSIONS_SEEN`; a new one moves
    `version`."""
    report: ReportLink | None = None
    """The newest report on an alert that fired; a new one moves `version`."""


# -- the monitor's object ----------------------------------------------------------------------


class MonitorStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The service's `status` of a monitor: the state plus its model's window (all versions)."""

    phase: Phase
    samples: int = 0
    labeled: int = 0
    metrics: dict[str, float | None] = msgspec.field(default_factory=dict)
    """`accuracy`, `accuracyLower`, `accuracyUpper`, ... the estimates before labels
    (`accuracyEstimated`, `accuracyEstimatedLower`, `accuracyEstimatedUpper`) and from the
    reviewed labels (`accuracyReviewed`, ...); null where undefined."""
    fallback: FallbackState
    alerts: tuple[AlertState, ...] = ()
    observed_generation: int
    state_version: int
    capture: CaptureState = msgspec.field(default_factory=CaptureState)
    drift: DriftSummary = msgspec.field(default_factory=DriftSummary)
    review: ReviewSummary = msgspec.field(default_factory=ReviewSummary)
    """The review queue (`spec.review`): the design's status, budget, depth."""
    versions: tuple[VersionSeen, ...] = ()
    """The model versions seen (`MonitorState.versions`)."""
    report: ReportLink | None = None
    """The newest report on an alert that fired (`MonitorState.report`)."""

    @classmethod
    def of(
        cls,
        state: MonitorState,
        *,
        samples: int = 0,
        labeled: int = 0,
        metrics: dict[str, float | None] | None = None,
    ) -> MonitorStatus:
        """The status of a monitor in `state` whose window holds these numbers."""
        return cls(
            phase=state.phase,
            samples=samples,
            labeled=labeled,
            metrics=metrics or {},
            fallback=state.fallback,
            alerts=state.alerts,
            observed_generation=state.generation,
            state_version=state.version,
            capture=state.capture,
            drift=state.drift,
            review=state.review,
            versions=state.versions,
            report=state.report,
        )


class ObjectMeta(msgspec.Struct, frozen=True):
    name: str
    namespace: str
    generation: int | None = None


class MonitorView(msgspec.Struct, frozen=True):
    """What the operator reads of a monitor's object (the service answers it whole, as PUT)."""

    metadata: ObjectMeta
    status: MonitorStatus


class MonitorList(msgspec.Struct, frozen=True):
    """`GET /v1/monitors`."""

    items: tuple[MonitorView, ...] = ()
