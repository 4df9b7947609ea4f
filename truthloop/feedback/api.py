"""HTTP handlers: decode, call the engine, answer JSON. No behaviour lives here.

Routes: monitors CRUD, capture records, actuals, metrics (with series), state (long-poll),
fallback override, Alertmanager webhook, timelines, datasets (streamed), the review queue (and
its Label Studio export and import), reference data sets
(streamed into the parser) and their profiles, drift (with series), and /metrics, /healthz,
/readyz. Every error is a `ClientError` turned into JSON by `app.errors`.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import re
from collections.abc import Mapping
from typing import Any, overload

import msgspec
from aiohttp import web

from truthloop.core import (
    cloudevents,
    compare,
    dataset,
    drift,
    evaluation,
    labelstudio,
    records,
    report,
    scopes,
    segment_metrics,
    segments,
    sidecar_stats,
    table,
    windows,
    wire,
)
from truthloop.core.evaluation import ALL_VERSIONS
from truthloop.core.profile import NumericProfile, Reference
from truthloop.core.records import ItemError
from truthloop.core.registry import TaskChange
from truthloop.core.spec import (
    FALLBACK_MODES,
    MAX_WINDOW,
    SpecError,
    format_duration,
    format_time,
    is_monitor_key,
    is_namespace,
)
from truthloop.feedback import backtests, bodies, refusals
from truthloop.feedback.engine import (
    REPORTS_KEPT,
    DatasetAsk,
    DriftWindow,
    Engine,
    History,
    ReviewPlan,
    SegmentDrift,
    SegmentMetrics,
    SidecarWindow,
    VersionsWindow,
    WindowMetrics,
)
from truthloop.feedback.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    bounded,
    detail,
)
from truthloop.feedback.settings import Settings
from truthloop.feedback.store.interface import (
    IngestResult,
    ReportPart,
    ReviewItem,
    StoredPrediction,
)

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
BACKTESTS = web.AppKey("backtests", asyncio.Semaphore)
"""One backtest at a time on a replica: each holds a period's counters and a CPU for seconds."""
SCOPE = web.RequestKey("scope", scopes.Scope)
"""The request's `scopes.Scope`, set by the auth middleware (an open service's: the admin's)."""

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

_encode = msgspec.json.Encoder().encode

_UP_TO = f"longer than 0s and at most {format_duration(MAX_WINDOW)}"
"""The range of a `window` or `series` query parameter (`bodies.duration`)."""


def json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_encode(data), status=status, headers=headers, content_type="application/json"
    )


def _key(request: web.Request) -> str:
    return f"{request.match_info['namespace']}/{request.match_info['name']}"


def _identifier(request: web.Request) -> bodies.Parse[str]:
    return bodies.identifier(request.app[SETTINGS].limits.max_id_length)


@overload
def _version(request: web.Request, *, name: str = "version") -> str | None: ...
@overload
def _version(request: web.Request, default: str, *, name: str = "version") -> str: ...
def _version(
    request: web.Request, default: str | None = None, *, name: str = "version"
) -> str | None:
    """The `version` query parameter (or `name`): a model version (`default` when absent)."""
    return bodies.query(request, name, _identifier(request), default, "a model version")


def _window(request: web.Request, example: str) -> float | None:
    """The `window` query parameter: a duration in seconds (None when absent)."""
    return bodies.query(
        request, "window", bodies.duration, None, f"a duration like {example}, {_UP_TO}"
    )


# -- monitors ----------------------------------------------------------------------------------


async def list_monitors(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    items = [monitor_view(engine, r.monitor.key) for r in engine.monitors()]
    return json(
        {
            "items": sorted(
                items, key=lambda m: m["metadata"]["namespace"] + "/" + m["metadata"]["name"]
            )
        }
    )


async def put_monitor(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    body = await bodies.json_body(request)
    if not isinstance(body, dict):
        raise BadRequest(
            "expected a ModelMonitor object",
            [detail("body", "is not an object", "wrong_type")],
        )
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadRequest(
            "invalid ModelMonitor", [detail("metadata", "expected an object", "wrong_type")]
        )
    mismatched = [
        detail(
            f"metadata.{field}", f"is {metadata[field]!r} but the path says {value!r}", "mismatch"
        )
        for field, value in (("namespace", namespace), ("name", name))
        if metadata.get(field) not in (None, value)
    ]
    if mismatched:
        raise BadRequest("the object does not match its path", mismatched)
    body = {**body, "metadata": {**metadata, "namespace": namespace, "name": name}}
    try:
        registered, created = await engine.put_monitor(namespace, name, body)
    except SpecError as e:
        raise BadRequest(
            "invalid ModelMonitor",
            [ItemError(None, error.path, error.message, "invalid_spec") for error in e.errors],
        ) from None
    except TaskChange as e:
        raise Conflict(
            f"monitor {namespace}/{name} already has {e.old} data; delete it before changing "
            "its task",
            [detail("spec.task", f"was {e.old}", "task_change")],
        ) from None
    return json(monitor_view(engine, registered.monitor.key), status=201 if created else 200)


async def get_monitor(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.lookup(_key(request))
    return json(monitor_view(engine, _key(request)))


async def delete_monitor(request: web.Request) -> web.Response:
    key = _key(request)
    await request.app[ENGINE].delete_monitor(key)
    return json({"deleted": key})


def monitor_view(engine: Engine, key: str) -> dict[str, Any]:
    """The object as PUT, with a `status` the operator can mirror into the custom resource."""
    registered = engine.registered(key)
    state = engine.state(key)
    snapshot = engine.snapshots.get(key)
    model = snapshot.window.get((ALL_VERSIONS, "model")) if snapshot else None
    if model is None:
        return {**registered.body, "status": wire.MonitorStatus.of(state)}
    metrics: dict[str, float | None] = {}
    for metric, estimate in model.metrics.items():
        metrics[metric] = estimate.value
        metrics[metric + "Lower"] = estimate.lower
        metrics[metric + "Upper"] = estimate.upper
    for source, found in model.estimates():
        for metric, interval in found.items():
            name = metric + source.capitalize()
            metrics[name] = interval.value
            metrics[name + "Lower"] = interval.lower
            metrics[name + "Upper"] = interval.upper
    status = wire.MonitorStatus.of(
        state, samples=model.samples, labeled=model.labeled, metrics=metrics
    )
    return {**registered.body, "status": status}


# -- writes ------------------------------------------------------------------------------------


async def post_predictions(request: web.Request) -> web.Response:
    body = await bodies.read(request, bodies.JSON_TYPES | bodies.NDJSON_TYPES)
    ndjson = request.content_type in bodies.NDJSON_TYPES
    result = await request.app[ENGINE].ingest(body, ndjson=ndjson, scope=request[SCOPE])
    return json(ingest_view(result))


def ingest_view(result: IngestResult) -> dict[str, Any]:
    """The answer to stored records; `warnings` (values left out of stored records, the first
    `MAX_DETAILS`) and `warnings_truncated` (how many more) only when there are some, as an
    error answer's `truncated`."""
    answer: dict[str, Any] = {"accepted": result.accepted, "duplicates": result.duplicates}
    warnings, truncated = bounded(result.warnings, result.warnings_omitted)
    if warnings:
        answer["warnings"] = warnings
    if truncated:
        answer["warnings_truncated"] = truncated
    return answer


async def post_cloudevents(request: web.Request) -> web.Response:
    """One half of an inference as KServe's payload logger sends it (binary mode, or a
    structured event), for the monitor `?monitor=namespace/name` names, else the one named
    after the event's InferenceService (`ce-namespace`/`ce-inferenceservicename`); `?version=`
    names the model version of its records. Answered 200 whatever became of it (KServe's
    logger takes any other 2xx for an error in its log)."""
    settings = request.app[SETTINGS]
    data = await bodies.payload(request, settings.cloudevents.max_event_bytes)
    max_id = settings.limits.max_id_length
    if request.content_type == cloudevents.BATCH:
        raise UnsupportedMediaType(
            "batched CloudEvents are not accepted",
            [detail("Content-Type", "one event a request, binary or structured", "unsupported")],
        )
    limit = settings.cloudevents.max_event_bytes
    try:
        if request.content_type == cloudevents.STRUCTURED:
            event = cloudevents.structured(data, max_id, limit)
        else:
            event = cloudevents.parse(request.headers, data, max_id, limit)
    except cloudevents.EventError as e:
        details = [detail(e.field, e.message, e.reason)]
        if e.reason == "too_large":  # a gzipped body that inflates past the bound
            raise PayloadTooLarge("event data too large", details) from None
        raise BadRequest("not a CloudEvent of an inference", details) from None
    key, named = _event_monitor(request, event)
    version = _version(request)
    try:
        found = await request.app[ENGINE].cloudevent(event, key, version, request[SCOPE])
    except refusals.UnknownMonitor:
        how = "?monitor= names" if named else "the event's InferenceService names"
        raise NotFound(
            f"no monitor {key} is registered",
            [detail("monitor", f"{key}, which {how}, is not registered", "unknown_monitor")],
        ) from None
    answer: dict[str, Any] = {
        "id": event.id,
        "half": event.half,
        "monitor": key,
        "outcome": found.outcome,
    }
    if found.ingested is not None:
        answer.update(ingest_view(found.ingested))
    return json(answer)


def _event_monitor(request: web.Request, event: cloudevents.Event) -> tuple[str, bool]:
    """The monitor an event is for, and whether `?monitor=` named it (else the event's
    `namespace/inferenceservicename`)."""
    named = bodies.query(request, "monitor", _monitor_key, None, "a monitor as namespace/name")
    if named is not None:
        return named, True
    if not event.namespace or not event.inference_service:
        raise BadRequest(
            "which monitor is this event for?",
            [
                detail(
                    "monitor",
                    "name it in the URL (?monitor=namespace/name), or send ce-namespace and"
                    " ce-inferenceservicename (a monitor named after the InferenceService)",
                    "missing",
                )
            ],
        )
    return f"{event.namespace}/{event.inference_service}", False


def _monitor_key(text: str) -> str:
    if not is_monitor_key(text):
        raise ValueError(text)
    return text


async def post_sidecar_stats(request: web.Request) -> web.Response:
    """A sidecar's minute counters (`wire.SidecarMinutes`), added to its monitor's."""
    body = await bodies.read(request, bodies.JSON_TYPES)
    if len(body) > sidecar_stats.MAX_BODY:
        raise PayloadTooLarge(
            "request body too large",
            [detail("body", f"exceeds {sidecar_stats.MAX_BODY} bytes", "too_large")],
        )
    minutes = await request.app[ENGINE].sidecar_minutes(body, scope=request[SCOPE])
    return json({"minutes": minutes})


async def post_feedback(request: web.Request) -> web.Response:
    body = await bodies.read(request, bodies.JSON_TYPES)
    result = await request.app[ENGINE].feedback(body, scope=request[SCOPE])
    return json({"matched": result.matched, "pending": result.pending})


async def post_fallback(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    body = await bodies.json_body(request)
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in FALLBACK_MODES:
        raise BadRequest(
            'expected {"mode": "auto" | "engaged" | "disengaged"}',
            [detail("mode", f"expected one of {', '.join(FALLBACK_MODES)}", "invalid")],
        )
    return json(await engine.set_mode(key, mode))


async def post_alertmanager(request: web.Request) -> web.Response:
    """Alertmanager webhook (version 4): alerts labeled `truthloop_monitor` drive that monitor."""
    body = await bodies.json_body(request)
    alerts = body.get("alerts") if isinstance(body, dict) else None
    if not isinstance(alerts, list):
        raise BadRequest(
            "expected an Alertmanager webhook payload",
            [detail("alerts", "expected an array", "wrong_type")],
        )
    limit = request.app[SETTINGS].limits.max_items
    if len(alerts) > limit:
        raise BadRequest(
            "invalid Alertmanager payload",
            [detail("alerts", f"at most {limit} alerts per request", "too_many_items")],
        )
    firing: dict[str, set[str]] = {}
    resolved: dict[str, set[str]] = {}
    problems = records.Problems()
    for index, alert in enumerate(alerts):
        labels = alert.get("labels") if isinstance(alert, dict) else None
        status = alert.get("status") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or status not in ("firing", "resolved"):
            problems.add(
                index,
                "labels" if not isinstance(labels, dict) else "status",
                "expected labels and a status of firing or resolved",
                "invalid",
            )
            continue
        monitor, name = labels.get("truthloop_monitor"), labels.get("alertname")
        if not isinstance(monitor, str) or not isinstance(name, str):
            continue
        (firing if status == "firing" else resolved).setdefault(monitor, set()).add(name)
    if problems.count:
        raise BadRequest("invalid Alertmanager payload", problems.kept, problems.omitted)
    updated = await request.app[ENGINE].external_alerts(firing, resolved)
    return json({"monitors": updated})


async def put_token(request: web.Request) -> web.Response:
    """Register a namespace's token by its SHA-256 (`{"sha256": "<64 hex digits>"}`): from now
    on that token may capture and send feedback for the namespace's monitors (`core.scopes`)."""
    namespace = request.match_info["namespace"]
    if not is_namespace(namespace):
        raise BadRequest(
            "not a namespace name",
            [detail("namespace", "expected a Kubernetes namespace name", "invalid")],
        )
    body = await bodies.json_body(request)
    sha256 = body.get("sha256") if isinstance(body, dict) else None
    if not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256):
        raise BadRequest(
            'expected {"sha256": "<the token\'s SHA-256 in lowercase hex>"}',
            [detail("sha256", "expected 64 lowercase hex digits", "invalid")],
        )
    await request.app[ENGINE].put_token(namespace, sha256)
    return json({"namespace": namespace, "sha256": sha256})


# -- reads -------------------------------------------------------------------------------------


async def get_metrics(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    registered = await engine.lookup(key)
    window = _window(request, "1h")
    version = _version(request)
    served_by = bodies.query(
        request, "served_by", bodies.choice(*wire.SERVED_BY), None, "model or fallback"
    )
    step = _step(request, window or registered.monitor.spec.metrics.window)
    declared = [s.name for s in registered.monitor.spec.segments]
    segment = bodies.query(
        request,
        "segment",
        bodies.choice(*declared),
        None,
        "one of the monitor's spec.segments: " + (", ".join(declared) or "it has none"),
    )
    value = bodies.query(request, "value", _segment_value, None, "a segment value")
    if value is not None and segment is None:
        raise BadRequest(
            "bad query parameter value",
            [detail("value", "needs a segment (?segment=...&value=...)", "invalid")],
        )
    found = await engine.window_metrics(
        key, window, version=version, served_by=served_by, step=step
    )
    answer = metrics_view(key, found, served_by, step)
    if segment is not None:
        sliced = await engine.segment_metrics(
            key, segment, window, version=version, served_by=served_by
        )
        answer["segment"] = segment_view(sliced, value, found)
    return json(answer)


def _segment_value(text: str) -> str:
    """A segment's value as the metrics name it (at most `segments.MAX_TEXT` characters)."""
    if len(text) > segments.MAX_TEXT:
        raise ValueError(text)
    return text


class UnknownValue(NotFound):
    """A value a segment cannot have (not kept, no bucket of it, not other or missing): 404, so
    a typo does not look like a quiet segment."""

    def __init__(self, segment: str, value: str) -> None:
        message = (
            f"{value!r} is none of segment {segment}'s values"
            " (its kept values or buckets, other, missing)"
        )
        super().__init__(
            f"segment {segment} has no value {value!r}",
            [detail("value", message, "unknown_value")],
        )


def segment_view(found: SegmentMetrics, value: str | None, window: WindowMetrics) -> dict[str, Any]:
    """Each value of the segment worst first (`value`: that one only, empty when the window has
    no record of it; NotFound for a value the segment cannot have)."""
    ranked = [(r.value, r.evaluated) for r in found.ranked]
    if value is not None:
        if value not in found.known:
            raise UnknownValue(found.name, value)
        empty = evaluation.evaluate(window.task, {}, window.cost)
        ranked = [next(((v, e) for v, e in ranked if v == value), (value, empty))]
    return {
        "name": found.name,
        "by": found.by.key,
        "values": [{"value": v, **e.to_dict()} for v, e in ranked],
    }


MAX_POINTS = 10_000
"""The most points a series may be asked in (`points`)."""


def _step(request: web.Request, seconds: float) -> int | None:
    """The series' step in whole minutes, or None: the `series` parameter, or the nice step
    that draws the window of `seconds` in about `points` points (`windows.nice_step`)."""
    series = bodies.query(request, "series", bodies.duration, None, f"a step like 1m, {_UP_TO}")
    points = bodies.query(
        request, "points", bodies.bounded_int(1, MAX_POINTS), None, f"1 to {MAX_POINTS}"
    )
    if points is not None:
        if series is not None:
            raise BadRequest(
                "bad query parameter points",
                [detail("points", "give series (a step) or points, not both", "invalid")],
            )
        return windows.nice_step(seconds, points)
    if series is None:
        return None
    if series % 60:
        raise BadRequest(
            "bad query parameter series",
            [detail("series", "must be whole minutes", "invalid")],
        )
    return int(series // 60)


def metrics_view(
    key: str, found: WindowMetrics, served_by: str | None, step: int | None = None
) -> dict[str, Any]:
    """Per served_by (the one asked for, else each), overall and per version; the headline
    figures are the served_by asked for, else the model's; the series and its `step` (seconds)
    when asked for."""
    by_served: dict[str, Any] = {}
    for served in (served_by,) if served_by else wire.SERVED_BY:
        overall = found.groups.get((ALL_VERSIONS, served)) or evaluation.evaluate(
            found.task, {}, found.cost
        )
        by_served[served] = {
            **overall.to_dict(),
            "versions": {
                v: e.to_dict()
                for (v, s), e in sorted(found.groups.items())
                if s == served and v != ALL_VERSIONS
            },
        }
    headline = by_served[served_by or "model"]
    answer: dict[str, Any] = {
        "monitor": key,
        "task": found.task,
        "window": _window_view(found.seconds, found.span),
        "samples": headline["samples"],
        "labeled": headline["labeled"],
        "metrics": headline["metrics"],
        "estimated": headline["estimated"],
        "reviewed": headline["reviewed"],
        "served_by": by_served,
    }
    if found.series is not None and step is not None:
        answer["step"] = step * windows.BUCKET_SECONDS
        answer["series"] = [{"start": start, **e.to_dict()} for start, e in found.series]
    return answer


SIDECAR_WINDOW = 3600.0
"""The window of the sidecar read unless asked otherwise."""
SIDECAR_POINTS = 60
"""About the steps a sidecar read has unless asked otherwise (`series` or `points`)."""


async def get_sidecar(request: web.Request) -> web.Response:
    """The sidecars' requests, errors, latency and fallback share over the window, per step."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    _only_params(request, "window", "series", "points")
    window = _window(request, "1h") or SIDECAR_WINDOW
    step = _step(request, window) or windows.nice_step(window, SIDECAR_POINTS)
    return json(sidecar_view(key, await engine.sidecar_window(key, window, step)))


def sidecar_view(key: str, found: SidecarWindow) -> dict[str, Any]:
    """The window's totals and each step's (`sidecar_stats.stats`)."""
    return {
        "monitor": key,
        "window": _window_view(found.seconds, found.span),
        "step": found.step * windows.BUCKET_SECONDS,
        "total": sidecar_stats.stats(sidecar_stats.total(c for _, c in found.steps)),
        "series": [
            {"start": start, **msgspec.structs.asdict(sidecar_stats.stats(counts))}
            for start, counts in found.steps
        ],
    }


VERSIONS_WINDOW = 30 * 86400.0
"""The window of the versions and compare reads unless asked otherwise."""
MAX_VERSIONS_LISTED = 100
"""Versions a listing shows at most (those with the latest records)."""


def _only_params(request: web.Request, *known: str) -> None:
    """Refuse a query parameter the endpoint does not take (a typo would pass unnoticed)."""
    for name in request.query:
        if name not in known:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise BadRequest(
                f"unknown query parameter {shown}",
                [detail(shown, f"not a parameter here: {', '.join(known)}", "invalid")],
            )


async def get_versions(request: web.Request) -> web.Response:
    """Each model version of the window: its first and last record, traffic share, metrics."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    _only_params(request, "window")
    window = _window(request, "30d") or VERSIONS_WINDOW
    return json(versions_view(key, await engine.versions_window(key, window)))


def versions_view(key: str, found: VersionsWindow) -> dict[str, Any]:
    """The versions oldest first (by their first record in the window), at most
    `MAX_VERSIONS_LISTED`: the ones whose records came last."""
    listed = []
    for version, evaluated in found.versions.items():
        edges = found.spans.get(version)
        if edges is None or not evaluated.samples:
            continue
        listed.append(
            {
                "version": version,
                "first": windows.bucket_start(edges.start),
                "last": windows.bucket_start(edges.end - 1),
                "share": evaluated.samples / found.samples if found.samples else None,
                **evaluated.to_dict(),
            }
        )
    kept = sorted(listed, key=lambda v: (v["last"], v["version"]))[-MAX_VERSIONS_LISTED:]
    return {
        "monitor": key,
        "window": _window_view(found.seconds, found.span),
        "samples": found.samples,
        "versions": sorted(kept, key=lambda v: (v["first"], v["version"])),
        "truncated": len(listed) > len(kept),
    }


def _window_view(seconds: float, span: windows.BucketRange) -> dict[str, float]:
    return {
        "seconds": seconds,
        "start": windows.bucket_start(span.start),
        "end": windows.bucket_start(span.end),
    }


def _source(text: str) -> compare.Source:
    for source in compare.SOURCES:
        if text == source:
            return source
    raise ValueError(text)


async def get_compare(request: web.Request) -> web.Response:
    """Version b against version a: each metric's difference with its interval and verdict."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    _only_params(request, "a", "b", "window", "source")
    a, b = _version(request, name="a"), _version(request, name="b")
    for name, value in (("a", a), ("b", b)):
        if value is None:
            raise BadRequest(
                f"missing query parameter {name}",
                [detail(name, "name the model version to compare", "missing")],
            )
    window = _window(request, "30d") or VERSIONS_WINDOW
    source = bodies.query(
        request, "source", _source, compare.SOURCES[0], " or ".join(compare.SOURCES)
    )
    found = await engine.versions_window(key, window, spans=False)
    sides = {}
    for name, version in (("a", a), ("b", b)):
        evaluated = found.versions.get(str(version))
        if evaluated is None or not evaluated.samples:
            raise BadRequest(
                f"unknown model version {version}",
                [detail(name, f"no model record of version {version!r} in the window", "invalid")],
            )
        sides[name] = evaluated
    return json(
        {
            "monitor": key,
            "window": _window_view(found.seconds, found.span),
            "source": source,
            **{
                name: {"version": version, "samples": e.samples, "labeled": e.labeled}
                for (name, e), version in zip(sides.items(), (a, b), strict=True)
            },
            "metrics": {
                metric: d.to_dict()
                for metric, d in compare.compare(sides["a"], sides["b"], source).items()
            },
        }
    )


async def get_state(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    settings = request.app[SETTINGS]
    wait = bodies.query(
        request,
        "wait",
        bodies.bounded_float(0, settings.http.max_wait),
        0.0,
        f"seconds between 0 and {settings.http.max_wait:g}",
    )
    since = bodies.query(request, "since", bodies.bounded_int(0, 2**62), None, "a state version")
    return json(await engine.wait_state(key, since, wait))


async def get_predictions(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    settings = request.app[SETTINGS]
    entity_id = bodies.query(request, "entity_id", _identifier(request), None, "an entity id")
    if entity_id is None:
        raise BadRequest("entity_id is required", [detail("entity_id", "is required", "missing")])
    limit = bodies.query(
        request,
        "limit",
        bodies.bounded_int(1, settings.http.max_timeline),
        100,
        f"1 to {settings.http.max_timeline}",
    )
    outlier = bodies.query(request, "outlier", bodies.boolean, None, "true or false")
    rows = await engine.timeline(key, entity_id, limit, outlier)
    return json(
        {"monitor": key, "entity_id": entity_id, "predictions": [record_view(r) for r in rows]}
    )


DATASET_TYPES = {
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
"""The dataset export's formats (`?format=`) and their content types."""


async def get_dataset(request: web.Request) -> web.StreamResponse:
    """Labeled records of the window, streamed as NDJSON, CSV or a JSON array in store-sized
    chunks (the array too: `[`, the rows, `]`, never the whole export in memory).

    The first chunk is read before the answer begins, so a store that fails there is answered
    (503) like on any endpoint; a failure after that cuts the connection, so the client sees a
    truncated body rather than an error response inside it (a JSON array then does not parse).
    """
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    ask = _dataset_ask(request)
    fmt = bodies.query(
        request, "format", bodies.choice(*DATASET_TYPES), "ndjson", "ndjson, csv or json"
    )
    chunks = engine.dataset(key, ask)
    chunk = await anext(chunks, None)
    response = web.StreamResponse(headers={"Content-Type": DATASET_TYPES[fmt]})
    await response.prepare(request)
    try:
        if fmt == "csv":
            await response.write(_csv_lines([dataset.NAMES]))
        opened = False  # a JSON array's `[` is written
        while chunk is not None:
            rows = [record_view(r) for r in chunk]
            if fmt == "csv":
                data = _csv_lines(
                    [[_csv_cell(row.get(column)) for column in dataset.NAMES] for row in rows]
                )
            elif fmt == "json":
                data = b",\n".join(map(_encode, rows))
                if data:
                    data = (b",\n" if opened else b"[\n") + data
                    opened = True
            else:
                data = b"".join(_encode(row) + b"\n" for row in rows)
            await response.write(data)
            chunk = await anext(chunks, None)
        if fmt == "json":
            await response.write(b"\n]\n" if opened else b"[]\n")
    except Exception:
        if request.transport is not None:
            request.transport.close()
        raise
    await response.write_eof()
    return response


def _dataset_ask(request: web.Request) -> DatasetAsk:
    """The dataset's period and filters from the query: `window`, or `from`/`to`; `version`,
    `correct` (or `wrong`, its opposite), `outlier`, `reviewed`, `abstained`."""
    window = _window(request, "7d")
    expected_time = "an RFC 3339 time with its offset, or epoch seconds"
    start = bodies.query(request, "from", bodies.timestamp, None, expected_time)
    end = bodies.query(request, "to", bodies.timestamp, None, expected_time)
    if window is not None and (start, end) != (None, None):
        raise BadRequest(
            "bad query parameter window",
            [detail("window", "give a window ending now, or from and to, not both", "invalid")],
        )
    if start is not None and end is not None and start >= end:
        raise BadRequest(
            "bad query parameter to", [detail("to", "must be later than from", "invalid")]
        )
    flags = {
        name: bodies.query(request, name, bodies.boolean, None, "true or false")
        for name in ("correct", "wrong", "outlier", "reviewed", "abstained")
    }
    correct, wrong = flags["correct"], flags["wrong"]
    if wrong is not None:
        if correct is not None and correct == wrong:
            raise BadRequest(
                "bad query parameter wrong",
                [detail("wrong", "says the opposite of correct: give one of them", "invalid")],
            )
        correct = not wrong
    return DatasetAsk(
        window,
        start,
        end,
        _version(request),
        correct,
        flags["outlier"],
        flags["reviewed"],
        flags["abstained"],
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)."""


def _csv_cell(value: Any) -> Any:
    """A stored value as a CSV cell; text a spreadsheet would run as a formula gets a leading
    `'` (numbers stay numbers: -1 is not a formula)."""
    if isinstance(value, dict | list):
        return _encode(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def _csv_lines(rows: Any) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def record_view(row: StoredPrediction) -> dict[str, Any]:
    """A stored record with its label, and where the label came from and the record's review
    selection (`core.dataset`)."""
    label = row.label
    return {
        "prediction_id": row.prediction_id,
        "entity_id": row.entity_id,
        "tag": row.tag,
        "model_version": row.model_version,
        "served_by": row.served_by,
        "ts": row.ts,
        "prediction": row.prediction,
        "score": row.score,
        "actual": label.value if label else None,
        "vote": label.vote if label else None,
        "assumed": label.assumed if label else False,
        "correct": row.correct,
        "labeled_at": row.labeled_at,
        "outlier": row.outlier,
        "source": dataset.source(label),
        "reviewer": row.reviewer,
        "reason": row.reason,
        "pi": row.pi,
        "weight": dataset.weight(row.pi),
        "abstained": row.abstained,
        "votes": msgspec.to_builtins(row.votes),
        "features": row.features,
    }


# -- the review queue --------------------------------------------------------------------------

REVIEW_LIMIT = 100
"""Most items one `GET .../review` leases."""
EXPORT_LIMIT = 1000
"""Most tasks one `GET .../review/export` leases."""
REVIEWER_EXPECTED = f"1 to {records.MAX_REVIEWER} letters, digits or ._@+- (an email fits)"


def _reviewer(request: web.Request, default: str | None = None) -> str:
    """The `reviewer` query parameter (`records.REVIEWER`), required without a `default`."""
    reviewer = bodies.query(request, "reviewer", _reviewer_name, default, REVIEWER_EXPECTED)
    if reviewer is None:
        raise BadRequest(
            "reviewer is required",
            [detail("reviewer", "is required: who the items are leased to", "missing")],
        )
    return reviewer


def _reviewer_name(text: str) -> str:
    if not records.REVIEWER.fullmatch(text):
        raise ValueError(text)
    return text


def _limit(request: web.Request, default: int, most: int) -> int:
    """The items to lease: the `limit` parameter, but none for a `HEAD`, which must not change
    the queue."""
    limit = bodies.query(request, "limit", bodies.bounded_int(1, most), default, f"1 to {most}")
    return 0 if request.method == "HEAD" else limit


async def get_review(request: web.Request) -> web.Response:
    """Lease items of the monitor's review queue to a reviewer (a token is needed: leasing
    changes the queue)."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    reviewer = _reviewer(request)
    leased = await engine.lease_review(key, reviewer, _limit(request, 10, REVIEW_LIMIT))
    return json(
        {
            "monitor": key,
            "reviewer": reviewer,
            "items": [review_item_view(item) for item in leased.items],
            "queue": {
                "depth": leased.queue.depth,
                "leased": leased.queue.leased,
                "oldest": leased.queue.oldest,
            },
        }
    )


def review_item_view(item: ReviewItem) -> dict[str, Any]:
    lease_until = item.lease_until
    return {
        "prediction_id": item.prediction_id,
        "model_version": item.model_version,
        "ts": item.ts,
        "prediction": item.prediction,
        "score": item.score,
        "features": item.features,
        "reason": item.reason,
        "pi": item.pi,
        "outlier": item.outlier,
        "abstained": item.abstained,
        "votes": msgspec.to_builtins(item.votes),
        "lease_until": None if lease_until is None else format_time(lease_until),
    }


async def get_review_export(request: web.Request) -> web.Response:
    """Lease items as Label Studio tasks (`core.labelstudio`), to the reviewer `label-studio`
    by default."""
    key = _key(request)
    engine = request.app[ENGINE]
    registered = await engine.lookup(key)
    bodies.query(request, "format", bodies.choice("label-studio"), "", "label-studio")
    reviewer = _reviewer(request, "label-studio")
    leased = await engine.lease_review(key, reviewer, _limit(request, 100, EXPORT_LIMIT))
    return json(labelstudio.tasks(key, registered.monitor.spec.task, leased.items))


async def post_review_import(request: web.Request) -> web.Response:
    """A Label Studio export of the monitor's tasks, taken as review labels (all or nothing)."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    body = await bodies.read(request, bodies.JSON_TYPES)
    imported = await engine.review_import(key, body, request[SCOPE])
    return json(
        {
            "monitor": key,
            "labels": imported.labels,
            "skips": imported.skips,
            "unannotated": imported.unannotated,
        }
    )


# -- review planning ---------------------------------------------------------------------------

MAX_BUDGET = 1e7
"""The largest budget a plan takes (reviews a day), as `spec.review.budget`."""


def _share(hi: float) -> bodies.Parse[float]:
    """A number above 0 and at most `hi`."""

    def parse(text: str) -> float:
        value = float(text)
        if not 0 < value <= hi:  # also refuses nan
            raise ValueError(text)
        return value

    return parse


async def get_review_plan(request: web.Request) -> web.Response:
    """How many reviews a day a precision or a detection needs, or what a budget buys, at the
    monitor's traffic and current accuracy (`review.plan`)."""
    key = _key(request)
    engine = request.app[ENGINE]
    registered = await engine.lookup(key)
    half_width = bodies.query(
        request, "halfWidth", _share(0.5), None, "a half-width above 0 and at most 0.5, like 0.02"
    )
    detect = bodies.query(
        request, "detect", _share(1.0), None, "a drop of accuracy above 0 and at most 1, like 0.05"
    )
    within = bodies.query(
        request, "within", bodies.duration, None, f"a duration like 24h, {_UP_TO}"
    )
    budget = bodies.query(
        request, "budget", _share(MAX_BUDGET), None, f"reviews a day, at most {MAX_BUDGET:g}"
    )
    if detect is not None and within is None:
        raise BadRequest(
            "bad plan", [detail("within", "is required with detect: how soon", "missing")]
        )
    if within is not None and detect is None and budget is None:
        raise BadRequest(
            "bad plan", [detail("detect", "is required with within (or give budget)", "missing")]
        )
    if half_width is None and within is None and budget is None:
        raise BadRequest(
            "nothing to plan",
            [detail("halfWidth", "ask for halfWidth, detect with within, or budget", "missing")],
        )
    if registered.monitor.spec.task == "regression":
        raise BadRequest(
            "a plan counts right and wrong reviews",
            [detail("task", "a regression monitor has no accuracy to plan for", "invalid")],
        )
    found = await engine.review_plan(
        key, half_width=half_width, detect=detect, within=within, budget=budget
    )
    return json(plan_view(key, registered.monitor.spec.metrics.window, found))


def plan_view(key: str, window: float, found: ReviewPlan) -> dict[str, Any]:
    """The plan with what it was computed from: the last day's traffic and the accuracy."""
    return {
        "monitor": key,
        "window": window,
        "traffic": found.traffic,
        "accuracy": {"value": found.accuracy, "source": found.accuracy_source},
        "plan": found.answer,
    }


# -- references and drift ----------------------------------------------------------------------

PARQUET = "application/vnd.apache.parquet"
REFERENCE_TYPES: dict[str, table.Format] = {
    "text/csv": "csv",
    **dict.fromkeys(bodies.NDJSON_TYPES, "ndjson"),
    PARQUET: "parquet",
}
"""The content types a reference data set may come in, and the format each is parsed as."""
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
"""Whether Parquet can be read here (pyarrow is optional)."""


async def post_reference(request: web.Request) -> web.Response:
    """A reference data set (CSV, NDJSON or Parquet), parsed and profiled as it streams in."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    version = _version(request, "")
    if request.content_type == PARQUET and not HAS_PYARROW:
        raise UnsupportedMediaType(
            "this service cannot read Parquet",
            [
                detail(
                    "Content-Type",
                    "Parquet needs pyarrow, which this service does not have; send CSV or NDJSON",
                    "unsupported",
                )
            ],
        )
    limit = request.app[SETTINGS].http.max_reference_bytes
    fmt, body = bodies.stream(request, REFERENCE_TYPES, limit)
    reference, warnings = await engine.put_reference(key, version, fmt, body)
    return json(reference_summary(key, reference, warnings), status=201)


def reference_summary(
    key: str, reference: Reference, warnings: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A stored reference in a few lines: what was stored, from how many rows, with what
    warnings (a constant feature...)."""
    return {
        "monitor": key,
        "id": reference.id,
        "version": reference.version,
        "source": reference.source,
        "created": reference.created,
        "rows": reference.profile.rows,
        "columns": [
            {"name": c.name, "type": "numeric" if isinstance(c, NumericProfile) else "categorical"}
            for c in reference.profile.columns
        ],
        "warnings": list(warnings),
    }


async def get_reference(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    version = _version(request)
    rows = bodies.query(
        request, "chunk", bodies.bounded_int(1, MAX_CHUNK), None, f"rows from 1 to {MAX_CHUNK}"
    )
    reference = engine.reference(key, version)
    if reference is None:
        raise NoReference(key, version, engine.why_no_reference(key))
    spread = await engine.reference_chunks(key, reference, rows)
    return json(
        {"monitor": key, **msgspec.to_builtins(reference), "chunks": msgspec.to_builtins(spread)}
    )


MAX_CHUNK = 10_000_000
"""The largest reference chunk `GET .../reference?chunk=` takes (rows)."""


class NoReference(NotFound):
    """A monitor (or version) without a reference: 404 with `status: no_reference`, saying what
    would give it one, or why `spec.drift.reference`'s period has not (yet)."""

    def __init__(self, key: str, version: str | None, why: tuple[str, str]) -> None:
        whose = f"{key} (version {version})" if version else key
        field, reason = why
        message = f"{whose} has no reference: {reason}"
        super().__init__(f"no reference for {whose}", [detail(field, message, "no_reference")])

    def body(self) -> dict[str, Any]:
        return {**super().body(), "status": "no_reference"}


async def get_drift(request: web.Request) -> web.Response:
    key = _key(request)
    engine = request.app[ENGINE]
    registered = await engine.lookup(key)
    window = _window(request, "1h")
    version = _version(request)
    step = _step(request, window or registered.monitor.spec.metrics.window)
    drifting = [s.name for s in registered.monitor.spec.segments if s.drift]
    segment = bodies.query(
        request,
        "segment",
        bodies.choice(*drifting),
        None,
        "one of the monitor's spec.segments with drift: true: "
        + (", ".join(drifting) or "it has none"),
    )
    value = bodies.query(request, "value", _segment_value, None, "a segment value")
    if value is not None and segment is None:
        raise BadRequest(
            "bad query parameter value",
            [detail("value", "needs a segment (?segment=...&value=...)", "invalid")],
        )
    if segment is None:
        found = await engine.drift_window(key, window, version=version, step=step)
        return json(drift_view(key, version, found, step))
    if step is not None:
        named = "points" if "points" in request.query else "series"
        raise BadRequest(
            f"bad query parameter {named}",
            [detail(named, "not with segment: a segment's drift is of the window", "invalid")],
        )
    sliced = await engine.segment_drift(key, segment, window, version=version)
    return json(segment_drift_view(key, version, sliced, value))


def segment_drift_view(
    key: str, version: str | None, found: SegmentDrift, value: str | None
) -> dict[str, Any]:
    """A drift segment's values worst first, each's dataset drift share and drifted features;
    with `value`, that value's whole report (as the monitor's, against the same reference;
    NotFound for a value the segment cannot have)."""
    answer: dict[str, Any] = {
        "monitor": key,
        "version": version,
        "window": _window_view(found.seconds, found.span),
    }
    if value is None:
        answer["segment"] = {
            "name": found.name,
            "by": found.by.key,
            "values": [_drift_entry(r) for r in found.ranked],
        }
        return answer
    if value not in found.known:
        raise UnknownValue(found.name, value)
    report = next((r.report for r in found.ranked if r.value == value), found.empty)
    answer["segment"] = {"name": found.name, "value": value}
    answer["drift"] = report
    return answer


def _drift_entry(ranked: segment_metrics.DriftRanked) -> dict[str, Any]:
    """One value of a drift segment in short: records compared, the ranking's metric, the
    dataset drift share and the features that drifted."""
    report = ranked.report
    dataset = report.dataset
    return {
        "value": ranked.value,
        "status": report.status,
        "samples": report.samples,
        "metric": ranked.metric,
        "share": dataset.share if dataset else None,
        "drifted": dataset.drifted if dataset else False,
        "features": list(drift.drifted_features(report)),
    }


def drift_view(
    key: str, version: str | None, found: DriftWindow, step: int | None = None
) -> dict[str, Any]:
    """The window and its report (with the reference measured against); the series of slim
    points and its `step` (seconds) when asked."""
    answer: dict[str, Any] = {
        "monitor": key,
        "version": version,
        "window": _window_view(found.seconds, found.span),
        "drift": found.report,
    }
    if found.series is not None and step is not None:
        answer["step"] = step * windows.BUCKET_SECONDS
        answer["series"] = found.series
    return answer


HISTORY_WINDOW = 30 * 86400.0
"""The window of the history read unless asked otherwise."""
MAX_TRANSITIONS = 10_000
"""The most transitions a history read answers (`limit`)."""


async def get_history(request: web.Request) -> web.Response:
    """The alert machine's transitions over the window, the newest `limit` (oldest first), and
    the periods they make: the fallback engaged, each alert firing, each phase."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    _only_params(request, "window", "limit")
    window = _window(request, "30d") or HISTORY_WINDOW
    limit = bodies.query(
        request,
        "limit",
        bodies.bounded_int(1, MAX_TRANSITIONS),
        1000,
        f"1 to {MAX_TRANSITIONS}",
    )
    return json(history_view(key, await engine.history(key, window, limit)))


def history_view(key: str, found: History) -> dict[str, Any]:
    return {
        "monitor": key,
        "window": _window_view(found.seconds, found.span),
        "transitions": found.transitions,
        "truncated": found.truncated,
        "periods": found.periods,
    }


async def post_backtest(request: web.Request) -> web.Response:
    """The registered monitor's history replayed with the alerts and fallback of the body's
    monitor (or its own), swept and with suggestions when asked (`feedback.backtests`)."""
    key = _key(request)
    engine = request.app[ENGINE]
    registered = await engine.lookup(key)
    body = await bodies.json_body(request)
    try:
        asked = backtests.request(body, engine.settings.clock(), key, registered.body)
    except SpecError as e:
        raise BadRequest("invalid backtest", _spec_details(e)) from None
    if asked.monitor is not None and asked.monitor.key != key:
        raise BadRequest(
            "the monitor under test is not the path's",
            [detail("monitor.metadata", f"names {asked.monitor.key}, the path {key}", "mismatch")],
        )
    gate = request.app[BACKTESTS]
    if gate.locked():
        raise TooManyRequests(
            "a backtest is already running on this replica",
            [detail("backtest", "one backtest at a time a replica; retry later", "busy")],
        )
    async with gate:
        try:
            found = await backtests.run(engine.store, registered, asked)
        except SpecError as e:
            raise BadRequest("invalid backtest", _spec_details(e)) from None
    return json(msgspec.to_builtins(found))


def _spec_details(error: SpecError) -> list[ItemError]:
    return [
        ItemError(
            None, e.path, e.message, "invalid_spec" if e.path.startswith("monitor") else "invalid"
        )
        for e in error.errors
    ]


# -- service -----------------------------------------------------------------------------------


# -- reports on alerts that fired -------------------------------------------------------------


async def get_reports(request: web.Request) -> web.Response:
    """The monitor's reports, newest first (at most the `REPORTS_KEPT` it keeps)."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    limit = bodies.query(
        request, "limit", bodies.bounded_int(1, REPORTS_KEPT), REPORTS_KEPT, f"1 to {REPORTS_KEPT}"
    )
    found = await engine.reports(key, limit)
    base = f"/v1/monitors/{key}/reports/"
    return json(
        {
            "monitor": key,
            "reports": [
                {
                    "id": r.id,
                    "at": r.at,
                    "alert": r.alert,
                    "summary": r.summary.get("summary"),
                    "size": r.summary.get("size"),
                    "url": f"{base}{r.id}",
                }
                for r in found
            ],
        }
    )


async def get_report(request: web.Request) -> web.Response:
    """One report's self-contained HTML page (a policy that lets it load nothing)."""
    page = await _report(request, "html")
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": report.CSP},
    )


async def get_report_document(request: web.Request) -> web.Response:
    """One report's JSON document."""
    return web.Response(text=await _report(request, "document"), content_type="application/json")


async def _report(request: web.Request, part: ReportPart) -> str:
    """The report `{id}` of the monitor: 404 naming `id` when it has none such."""
    key = _key(request)
    engine = request.app[ENGINE]
    await engine.lookup(key)
    text = request.match_info["id"]
    found = None
    if text.isascii() and text.isdigit() and len(text) < 19:
        found = await engine.report(key, int(text), part)
    if found is None:
        raise NotFound(
            f"monitor {key} has no report {text[:40]}",
            [detail("id", f"{key} has no report {text[:40]}", "unknown_report")],
        )
    return found


async def healthz(request: web.Request) -> web.Response:
    return json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[ENGINE].ready:
        return json({"status": "starting"}, status=503)
    return json({"status": "ready"})


def routes() -> list[web.RouteDef]:
    monitor = "/v1/monitors/{namespace}/{name}"
    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/v1/monitors", list_monitors),
        web.put(monitor, put_monitor),
        web.get(monitor, get_monitor),
        web.delete(monitor, delete_monitor),
        web.get(monitor + "/metrics", get_metrics),
        web.get(monitor + "/state", get_state),
        web.post(monitor + "/fallback", post_fallback),
        web.get(monitor + "/predictions", get_predictions),
        web.get(monitor + "/dataset", get_dataset),
        web.get(monitor + "/review", get_review),
        web.get(monitor + "/review/export", get_review_export),
        web.post(monitor + "/review/import", post_review_import),
        web.post(monitor + "/reference", post_reference),
        web.get(monitor + "/reference", get_reference),
        web.get(monitor + "/drift", get_drift),
        web.get(monitor + "/review/plan", get_review_plan),
        web.get(monitor + "/versions", get_versions),
        web.get(monitor + "/compare", get_compare),
        web.get(monitor + "/history", get_history),
        web.post(monitor + "/backtest", post_backtest),
        web.get(monitor + "/reports", get_reports),
        web.get(monitor + "/reports/{id}.json", get_report_document),
        web.get(monitor + "/reports/{id}", get_report),
        web.get(monitor + "/sidecar", get_sidecar),
        web.post("/v1/predictions", post_predictions),
        web.post("/v1/feedback", post_feedback),
        web.post("/v1/sidecar-stats", post_sidecar_stats),
        web.post("/v1/cloudevents", post_cloudevents),
        web.post("/v1/alertmanager", post_alertmanager),
        web.put("/v1/tokens/{namespace}", put_token),
    ]
