"""A ModelMonitor's `.status` and Events, composed from what the operator observed (pure).

`compose(current, observation, now)` returns the status the object should have: phase, window
numbers, the first alert's metric as the METRIC column's text (its estimate, `accuracy≈0.91`,
before the window has minSamples labels or for an alert on estimates), fallback, the window's drift,
the review queue, injected pods, observedGeneration, lastSyncTime and conditions (Ready, SpecValid,
Registered, PodsInjected, Breached, FallbackActive, TrafficBypass, CaptureRefused,
CaptureIncomplete, Drift, ReviewBudget, Synced), each keeping its lastTransitionTime while its
status holds. `lastSyncTime` is the one field that moves with the
clock alone: it is renewed with any other change, and otherwise once it is a status interval old,
so a running operator writes an unchanged monitor about once per interval, and a stopped one
leaves a time that visibly ages (the SYNCED column).
It writes only the fields of the CRD's status schema (anything else would be pruned by the
apiserver and look changed forever) and never a `null` inside an object (a merge patch cannot
store one), so `core.mergepatch.diff(current, composed)` is empty exactly when nothing changed —
the operator patches only then.

`events(old, new)` names the Events a change deserves: one per phase change (`FallbackEngaged`,
`Degraded`, `Healthy`, `InvalidSpec`...), and Warnings when registration fails, pods stay without
the sidecar, a Service bypasses it, the feedback service refuses the sidecars' capture, the
sidecars pass connections through uncaptured (gRPC), the inputs drift from the reference, or the
review queue cannot keep its budget (and a Normal one when it can again) — each once per change of
its condition, not per loop — a Normal `NewVersion` when the service has seen a model version for
the first time, and a Normal `ReportReady` naming the report the service made on an alert that
fired (`status.report` links the newest).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeGuard

from truthloop.core import mergepatch, wire
from truthloop.core.spec import AlertSpec, format_duration, is_drift_key
from truthloop.operator.census import Census
from truthloop.operator.settings import StatusSettings

Registration = Literal["registering", "registered", "unavailable", "rejected", "invalid"]
EventType = Literal["Normal", "Warning"]

CONDITIONS = (
    "Ready",
    "SpecValid",
    "Registered",
    "PodsInjected",
    "Breached",
    "FallbackActive",
    "TrafficBypass",
    "CaptureRefused",
    "CaptureIncomplete",
    "Drift",
    "ReviewBudget",
    "Synced",
)
_FROM_THE_SERVICE = (
    "samples",
    "labeled",
    "metrics",
    "alerts",
    "fallback",
    "drift",
    "review",
    "versions",
    "report",
)
"""The status's fields the service's view fills in: kept as they are while it is not known."""
MAX_MESSAGE = 4096
INTERVAL = StatusSettings().interval


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the status is made of, gathered by the monitor's worker."""

    generation: int
    errors: tuple[str, ...] = ()
    """The spec's problems (`path: message`); empty when it is valid."""
    registration: Registration = "registering"
    detail: str = ""
    """Why registration or the state read failed, for the Registered condition."""
    view: wire.MonitorStatus | None = None
    """The feedback service's status of the monitor (phase, samples, metrics, alerts...)."""
    alerts: tuple[AlertSpec, ...] = ()
    census: Census | None = None
    """The monitor's pods and Services; None while the spec is invalid (no selector to apply)."""
    min_samples: int = 50
    """The spec's `metrics.minSamples`: below it the METRIC column shows the estimate."""


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    reason: str
    message: str


def compose(
    current: Mapping[str, Any], obs: Observation, now: float, interval: float = INTERVAL
) -> dict[str, Any]:
    """The status for `obs` at `now`; `interval` is the operator's status interval, the age at
    which an otherwise unchanged status gets a new `lastSyncTime`."""
    view = obs.view
    if obs.errors:
        phase = "Invalid"
    elif view is not None:
        phase = view.phase
    else:
        kept = current.get("phase")
        phase = kept if kept in wire.PHASES and kept != "Invalid" else "Pending"
    status: dict[str, Any] = {"phase": phase}
    if view is not None:
        status["samples"] = view.samples
        status["labeled"] = view.labeled
        status["metrics"] = {
            name: float(value) for name, value in sorted(view.metrics.items()) if _finite(value)
        }
        status["alerts"] = [_alert(a) for a in view.alerts]
        status["drift"] = _drift_status(view.drift)
        if view.review.enabled:
            status["review"] = _review_status(view.review)
        status["versions"] = [
            {"version": seen.version, "firstSeen": _time(seen.first_seen)}
            for seen in view.versions[-wire.MAX_VERSIONS_SEEN :]
        ]
        if view.report is not None:
            status["report"] = _report_status(view.report)
        fallback = view.fallback
        status["fallback"] = _clean(
            {
                "active": fallback.active,
                "since": _time(fallback.since) if _finite(fallback.since) else None,
                "reason": _why_engaged(view, obs.alerts) if fallback.active else None,
            }
        )
    else:
        for key in _FROM_THE_SERVICE:
            if key in current:
                status[key] = current[key]
    metric = _metric_text(
        status.get("metrics") or {},
        obs.alerts,
        status.get("alerts") or [],
        int(status.get("labeled") or 0) >= obs.min_samples,
    )
    if metric is not None:
        status["metric"] = metric
    status["injectedPods"] = (
        obs.census.injected if obs.census is not None else int(current.get("injectedPods") or 0)
    )
    status["observedGeneration"] = obs.generation
    previous = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
    conditions = _conditions(obs, phase, status)
    conditions["Synced"] = (
        "True",
        "OperatorSyncing",
        f"the operator renews lastSyncTime at least every {interval:g}s while it runs: an older "
        "one means it is stopped or cannot write this status, which is then out of date",
    )
    status["conditions"] = [
        _condition(kind, *conditions[kind], obs.generation, previous.get(kind), now)
        for kind in CONDITIONS
    ]
    status["lastSyncTime"] = _synced(current, status, now, interval)
    return status


def _synced(current: Mapping[str, Any], new: Mapping[str, Any], now: float, interval: float) -> str:
    """The current `lastSyncTime` while nothing else changed and it is younger than `interval`."""
    last = current.get("lastSyncTime")
    rest = {k: v for k, v in current.items() if k != "lastSyncTime"}
    if isinstance(last, str) and not mergepatch.diff(rest, new):
        try:
            written = datetime.datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return _time(now)
        if now - written.replace(tzinfo=datetime.UTC).timestamp() < interval:
            return last
    return _time(now)


def events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """The Events for the change from status `old` to `new`, in the order they happened."""
    before = _by_type(old)
    after = _by_type(new)
    found: list[Event] = []
    phase, previous = new.get("phase"), old.get("phase")
    if phase != previous:
        event = _phase_event(previous, phase, new, after)
        if event is not None:
            found.append(event)
    elif phase == "Invalid" and _changed(before, after, "SpecValid", message=True):
        found.append(Event("Warning", "InvalidSpec", after["SpecValid"]["message"]))
    registered = after.get("Registered")
    if (
        registered is not None
        and registered["reason"] in ("FeedbackUnavailable", "Rejected")
        and _changed(before, after, "Registered")
    ):
        found.append(Event("Warning", registered["reason"], registered["message"]))
    pods = after.get("PodsInjected")
    if (
        pods is not None
        and pods["status"] == "False"
        and pods["reason"] != "NoPodsSelected"
        and _changed(before, after, "PodsInjected")
    ):
        found.append(Event("Warning", "PodsNotInjected", pods["message"]))
    bypass = after.get("TrafficBypass")
    if (
        bypass is not None
        and bypass["status"] == "True"
        and _changed(before, after, "TrafficBypass", message=True)
    ):
        found.append(Event("Warning", "TrafficBypass", bypass["message"]))
    for kind in ("CaptureRefused", "CaptureIncomplete"):  # a Warning as each turns True
        now_true = after.get(kind, {}).get("status") == "True"
        if now_true and _changed(before, after, kind):
            found.append(Event("Warning", kind, after[kind]["message"]))
    drift = after.get("Drift")
    if drift is not None and drift["status"] == "True" and _changed(before, after, "Drift"):
        found.append(Event("Warning", "DriftDetected", drift["message"]))
    review = after.get("ReviewBudget")
    if review is not None and _changed(before, after, "ReviewBudget"):
        if review["status"] == "False":
            found.append(Event("Warning", review["reason"], review["message"]))
        elif review["status"] == "True" and before.get("ReviewBudget", {}).get("status") == "False":
            found.append(Event("Normal", "ReviewBudgetMet", review["message"]))
    found.extend(_new_versions(old, new))
    found.extend(_new_report(old, new))
    return found


def _report_status(link: wire.ReportLink) -> dict[str, Any]:
    """`status.report`: the newest report's link, its time as RFC 3339."""
    return {"id": link.id, "at": _time(link.at), "alert": link.alert, "url": link.url}


def _new_report(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """A Normal `ReportReady` Event naming the report when the status links a new one."""
    report = new.get("report")
    before = old.get("report")
    if not isinstance(report, dict) or (
        isinstance(before, dict) and before.get("id") == report.get("id")
    ):
        return []
    return [
        Event(
            "Normal",
            "ReportReady",
            f"report {report['id']} on {report['alert']} firing at {report['at']}: the feedback"
            f" service serves it at {report['url']} (its JSON at {report['url']}.json)",
        )
    ]


def _new_versions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """A Normal `NewVersion` Event per version the status's list gained (none from a status
    that had no list: written before versions were kept, they are not new)."""
    before = old.get("versions")
    if not isinstance(before, list):
        return []
    known = {v.get("version") for v in before if isinstance(v, dict)}
    return [
        Event(
            "Normal", "NewVersion", f"model version {v['version']} first seen at {v['firstSeen']}"
        )
        for v in new.get("versions") or []
        if v["version"] not in known
    ]


# -- conditions ------------------------------------------------------------------------------------


def _conditions(
    obs: Observation, phase: str, status: Mapping[str, Any]
) -> dict[str, tuple[str, str, str]]:
    """(status, reason, message) of each condition type."""
    found: dict[str, tuple[str, str, str]] = {}
    if obs.errors:
        found["SpecValid"] = ("False", "InvalidSpec", "; ".join(obs.errors))
    else:
        found["SpecValid"] = ("True", "Valid", "the spec is valid")
    registered = {
        "registered": (
            "True",
            "Registered",
            f"the feedback service follows generation {obs.generation}",
        ),
        "registering": ("Unknown", "Registering", "registering with the feedback service"),
        "unavailable": ("False", "FeedbackUnavailable", obs.detail or "no answer"),
        "rejected": ("False", "Rejected", obs.detail or "the feedback service refused the spec"),
        "invalid": ("False", "InvalidSpec", "not registered: the spec is invalid"),
    }[obs.registration]
    found["Registered"] = registered
    if obs.registration == "registered" and obs.view is not None:
        found["Ready"] = ("True", "Monitoring", f"phase {phase}")
    else:
        found["Ready"] = ("False", registered[1], registered[2])
    found["PodsInjected"] = _pods(obs.census)
    view = obs.view
    if view is None:
        unknown = ("Unknown", "NoData", "the monitor's state is not known yet")
        found["Breached"] = found["FallbackActive"] = unknown
    else:
        found["Breached"] = _breached(view.alerts, obs.alerts)
        if view.fallback.active:
            found["FallbackActive"] = ("True", "FallbackEngaged", _why_engaged(view, obs.alerts))
        else:
            found["FallbackActive"] = ("False", "ModelServing", "the model answers every request")
    found["CaptureRefused"] = _capture(view)
    found["CaptureIncomplete"] = _passthrough(view)
    found["Drift"] = _drift(view)
    found["ReviewBudget"] = _review(view)
    if obs.census is not None and obs.census.bypass:
        text = (
            "; ".join(obs.census.bypass)
            + ": that traffic skips the sidecar (target the port by name)"
        )
        found["TrafficBypass"] = ("True", "ServiceTargetsModelPort", text)
    else:
        found["TrafficBypass"] = (
            "False",
            "NoBypass",
            "no Service targets the model's port directly",
        )
    return found


def _capture(view: wire.MonitorStatus | None) -> tuple[str, str, str]:
    """Whether the feedback service refuses the sidecars' capture batches (they keep them)."""
    if view is None:
        return ("Unknown", "NoData", "the monitor's state is not known yet")
    capture = view.capture
    reason = capture.refused
    if not reason:
        return ("False", "Accepted", "the feedback service takes the sidecars' records")
    since = f" since {_time(capture.since)}" if _finite(capture.since) else ""
    why = {
        "unauthorized": "the sidecars' write token is missing or not the service's",
    }.get(reason, reason)
    return (
        "True",
        _camel(reason),
        f"the feedback service refuses the sidecars' records{since} ({why}); they are kept in"
        " each pod's spool and sent once it takes them",
    )


PROTOCOLS = {
    "h2c": "HTTP/2 cleartext, as gRPC speaks",
    "websocket": "WebSocket",
    "connect": "CONNECT",
    "other": "another Upgrade",
}
"""What each protocol of `wire.Passthrough` is, in the condition's words."""


def _passthrough(view: wire.MonitorStatus | None) -> tuple[str, str, str]:
    """Whether the sidecars passed connections to the model uncaptured in the last hour (gRPC
    and other tunnels): their requests are served, not monitored."""
    if view is None:
        return ("Unknown", "NoData", "the monitor's state is not known yet")
    passed = view.capture.passthrough
    if passed is None:
        return ("False", "AllCaptured", "no connection went to the model uncaptured in the last "
                "hour")  # fmt: skip
    total = sum(passed.connections.values())
    kinds = ", ".join(
        f"{n} {protocol} ({PROTOCOLS.get(protocol, protocol)})"
        for protocol, n in passed.connections.items()
    )
    connections = "connection" if total == 1 else "connections"
    return (
        "True",
        "PassedThrough",
        f"{total} {connections} went to the model uncaptured in the last hour: {kinds}; since "
        f"{_time(passed.since)}, the last at {_time(passed.last)}. The model answered their "
        "requests, but they are not monitored: the sidecar captures HTTP/1.1 requests only",
    )


def _drift(view: wire.MonitorStatus | None) -> tuple[str, str, str]:
    """Dataset drift in the window: True naming the drifted features, False (none drifted, or
    fewer than the share that makes dataset drift), Unknown without a reference or records."""
    if view is None:
        return ("Unknown", "NoData", "the monitor's state is not known yet")
    drift = view.drift
    if drift.status == "no_reference":
        why = drift.reason or ("send one (truthloop reference) or set spec.drift.reference")
        return ("Unknown", "NoReference", f"no reference profile to compare the inputs with: {why}")
    if drift.status != "ok":
        return ("Unknown", "NoData", "no captured record in the window to compare with the "
                "reference")  # fmt: skip
    prediction = "; the prediction drifted too" if drift.prediction else ""
    if not drift.features:
        said = f"no feature drifted ({drift.profiled} compared with the reference)"
        if drift.prediction:
            said += ", but the prediction did"
        return ("False", "NoDrift", said)
    counted = f"{len(drift.features)} of {drift.profiled} features drifted"
    share = _number(drift.share) if _finite(drift.share) else "?"
    threshold = _number(drift.threshold) if _finite(drift.threshold) else "?"
    named = ", ".join(drift.features)
    if drift.drifted:
        return ("True", "DatasetDrift", f"{counted} (share {share} >= {threshold}): {named}"
                + prediction)  # fmt: skip
    return ("False", "BelowShare", f"{counted} (share {share} < {threshold}): {named}" + prediction)


def _drift_status(drift: wire.DriftSummary) -> dict[str, Any]:
    """`status.drift`: the summary as the CRD's schema holds it (no nulls)."""
    return _clean(
        {
            "status": drift.status,
            "drifted": drift.drifted,
            "share": float(drift.share) if _finite(drift.share) else None,
            "features": list(drift.features[: wire.MAX_DRIFTED]),
        }
    )


def _review(view: wire.MonitorStatus | None) -> tuple[str, str, str]:
    """Whether the review queue keeps its budget: True while the design's status is ok, else
    False with the status as the reason (`OverBudget`, `UnderTraffic`, `NoTraffic`, `Behind`)
    and the service's message; Unknown without `spec.review` or a state."""
    if view is None:
        return ("Unknown", "NoData", "the monitor's state is not known yet")
    review = view.review
    if not review.enabled:
        return ("Unknown", "NoReview", "spec.review is not set: no review queue")
    said = review.message or _review_said(review)
    return ("True" if review.status == "ok" else "False", _camel(review.status), said)


def _review_said(review: wire.ReviewSummary) -> str:
    """The queue in words when the service gave no message: the expected and budgeted items a
    day, and the items waiting."""
    parts = []
    if _finite(review.expected_per_day) and _finite(review.budget_per_day):
        parts.append(
            f"about {_number(review.expected_per_day)} items a day queued of a budget of "
            f"{_number(review.budget_per_day)}"
        )
    waiting = f"{review.depth} waiting"
    if review.depth and _finite(review.oldest):
        waiting += f", the oldest queued at {_time(review.oldest)}"
    return "; ".join([*parts, waiting])


def _review_status(review: wire.ReviewSummary) -> dict[str, Any]:
    """`status.review`: the summary as the CRD's schema holds it (no nulls)."""
    return _clean(
        {
            "status": review.status,
            "budgetPerDay": float(review.budget_per_day)
            if _finite(review.budget_per_day)
            else None,
            "expectedPerDay": float(review.expected_per_day)
            if _finite(review.expected_per_day)
            else None,
            "depth": review.depth,
            "oldest": _time(review.oldest) if _finite(review.oldest) else None,
        }
    )


def _pods(census: Census | None) -> tuple[str, str, str]:
    if census is None:
        return ("Unknown", "InvalidSpec", "the spec is invalid: no selector to count pods with")
    if census.total == 0:
        return ("False", "NoPodsSelected", "no running pod matches spec.selector")
    counted = f"{census.injected} of {census.total} selected pods have the sidecar"
    main = census.main_refusal()
    if main is None:
        return ("True", "AllPodsInjected", counted)
    reason, message, n = main
    return ("False", _camel(reason), f"{counted}; {n} without it: {reason}: {message}")


def _breached(
    states: Sequence[wire.AlertState], specs: Sequence[AlertSpec]
) -> tuple[str, str, str]:
    by_name = {a.name: a for a in specs}
    firing = [s for s in states if s.status == "firing"]
    pending = [s for s in states if s.status == "pending"]
    if firing or pending:
        shown = "; ".join(_describe(s, by_name.get(s.name)) for s in firing + pending)
        return ("True", "AlertFiring" if firing else "AlertPending", shown)
    if not specs:
        return ("False", "NoAlerts", "spec.alerts is empty")
    if states and all(s.status == "insufficient" for s in states):
        return (
            "False",
            "InsufficientData",
            "too few labeled predictions (or, for a drift alert, records compared with a "
            "reference; for an estimate, predictions) to judge the alerts",
        )
    return ("False", "WithinThresholds", "every alert's metric is within its threshold")


def _why_engaged(view: wire.MonitorStatus, specs: Sequence[AlertSpec]) -> str:
    """The fallback's causes told in full: `accuracy-low: accuracy 0.62 < 0.8 for 2m`,
    `alertmanager: LatencyHigh`, `engaged by hand (...)`."""
    by_name = {a.name: a for a in specs}
    states = {s.name: s for s in view.alerts}
    parts = []
    for cause in view.fallback.causes:
        name = cause.name or ""
        if cause.kind == "alert" and name in by_name and name in states:
            parts.append(_describe(states[name], by_name[name], with_state=False))
        elif cause.kind == "manual":
            parts.append("engaged by hand (spec.fallback.mode or the fallback API)")
        else:
            parts.append(cause.text())
    return "; ".join(parts) or "the fallback answers requests"


def _describe(state: wire.AlertState, alert: AlertSpec | None, *, with_state: bool = True) -> str:
    """`accuracy-low firing: accuracy 0.62 < 0.8 for 2m`; a segment alert names its breaching
    values, its value the worst one's: `accuracy 0.71 < 0.8 in country=DE, FR`."""
    text = f"{state.name} {state.status}" if with_state else state.name
    if alert is None:
        return text
    shown = _number(state.value) if _finite(state.value) else "?"
    bound = f" < {_number(alert.below)}" if alert.below is not None else ""
    if alert.above is not None:
        bound = f" > {_number(alert.above)}"
    lasting = f" for {format_duration(alert.for_)}" if alert.for_ else ""
    where = "" if alert.segment is None else _segment_values(alert.segment, state.values)
    key = replace(alert, segment=None).key
    return f"{text}: {key} {shown}{bound}{where}{lasting}"


MAX_VALUES_SHOWN = 10
"""A segment alert's breaching values named in its message (an Event's is cut at 1 KiB)."""


def _segment_values(segment: str, values: Sequence[str]) -> str:
    """` in country=DE, FR` (worst first), at most `MAX_VALUES_SHOWN` and how many more."""
    if not values:
        return f" in {segment}"
    named = ", ".join(values[:MAX_VALUES_SHOWN])
    more = len(values) - MAX_VALUES_SHOWN
    return f" in {segment}={named}" + (f" and {more} more" if more > 0 else "")


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    since = _time(now)
    if (
        previous is not None
        and previous.get("status") == status
        and previous.get("lastTransitionTime")
    ):
        since = str(previous["lastTransitionTime"])
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "type": kind,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }


def _phase_event(
    previous: Any, phase: Any, new: Mapping[str, Any], after: Mapping[str, Mapping[str, Any]]
) -> Event | None:
    def said(kind: str) -> str:
        return str(after.get(kind, {}).get("message", ""))

    if phase == "Invalid":
        return Event("Warning", "InvalidSpec", said("SpecValid"))
    if phase == "FallbackActive":
        return Event("Normal", "FallbackEngaged", said("FallbackActive"))
    if previous == "FallbackActive":
        return Event("Normal", "FallbackDisengaged", f"the model answers again (phase {phase})")
    if phase == "Degraded":
        return Event("Warning", "Degraded", said("Breached"))
    if phase == "Healthy":
        return Event("Normal", "Healthy", str(new.get("metric") or said("Breached")))
    if phase == "Collecting":
        labeled = new.get("labeled", 0)
        return Event("Normal", "Collecting", f"collecting labeled predictions ({labeled} so far)")
    return None


def _changed(
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
    kind: str,
    *,
    message: bool = False,
) -> bool:
    old, new = before.get(kind, {}), after.get(kind, {})
    keys = ("status", "reason", "message") if message else ("status", "reason")
    return any(old.get(k) != new.get(k) for k in keys)


def _by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


# -- formatting ------------------------------------------------------------------------------------


def _alert(state: wire.AlertState) -> dict[str, Any]:
    shown: dict[str, Any] = {"name": state.name, "status": state.status}
    if _finite(state.value):
        shown["value"] = float(state.value)
    return shown


def _metric_text(
    metrics: Mapping[str, Any],
    alerts: Sequence[AlertSpec],
    states: Sequence[Mapping[str, Any]],
    labeled: bool = True,
) -> str | None:
    """`accuracy=0.93 [0.9–0.95]` for the first alert's metric, once it has a value; for a
    drift alert its value as the alert last read it, `feature_drift:tenure=0.21`. The estimate,
    marked `accuracy≈0.91 [0.88–0.93]`, for an alert on estimates, and for the others while the
    window holds fewer than minSamples labeled predictions (not `labeled`)."""
    if not alerts:
        return None
    first = alerts[0]
    if is_drift_key(first.key):
        read = next((a.get("value") for a in states if a.get("name") == first.name), None)
        return f"{first.key}={_number(read)}" if _finite(read) else None
    name, sign = first.metric, "="
    if first.source == "estimated" or not labeled:
        name, sign = first.metric + "Estimated", "≈"
        if not _finite(metrics.get(name)) and first.source != "estimated":
            name, sign = first.metric, "="
    value = metrics.get(name)
    if not _finite(value):
        return None
    lower, upper = metrics.get(name + "Lower"), metrics.get(name + "Upper")
    text = f"{first.metric}{sign}{_number(value)}"
    if _finite(lower) and _finite(upper):
        text += f" [{_number(lower)}–{_number(upper)}]"
    return text


def _number(x: float) -> str:
    if x == 0 or 0.001 <= abs(x) < 100_000:
        text = f"{x:.3f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return f"{x:.3g}"


def _time(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _camel(code: str) -> str:
    """`port_number_needs_env` → `PortNumberNeedsEnv`: reason codes as condition reasons."""
    return "".join(part.capitalize() for part in code.split("_"))
