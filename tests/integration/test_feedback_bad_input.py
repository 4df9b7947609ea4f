"""Malformed requests on every endpoint: a 4xx with details, never a 5xx, and nothing stored.

Each case is sent to a service holding some data; afterwards the store must read exactly as
before (monitors, engine state, every lifetime counter — predictions, labels, actual outcomes —
and the registered monitors' views).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from tests.support import http1
from tests.support.feedback import T0, Service, ServiceFactory, monitor_body, record, sample
from truthloop.feedback.refusals import InvalidItems
from truthloop.feedback.settings import HttpSettings

pytest_plugins = ["tests.support.feedback_fixtures"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
MONITOR = "/v1/monitors/ml/churn"
KINDS = "ml/kinds"
MAX_DETAILS = 100
"""Most errors an answer names; it counts the rest."""


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    content_type: str | None = JSON
    headers: tuple[tuple[str, str], ...] = ()


def enc(value: Any) -> bytes:
    return msgspec.json.encode(value)


def rec(**fields: Any) -> dict[str, Any]:
    """A valid record with some fields replaced (None removes the field)."""
    base = record("bad-1", 1, ts=T0 - 10, entity_id="user-1")
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def act(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"monitor": "ml/churn", "prediction_id": "seed-0", "actual": 0}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def predictions(*records: Any) -> bytes:
    return enc(list(records))


def feedback(*items: Any) -> bytes:
    return enc({"items": list(items)})


def kinds(**fields: Any) -> dict[str, Any]:
    """A valid record of the multiclass monitor, whose string labels are stored as text."""
    return rec(**{"monitor": KINDS, "prediction": "cat", **fields})


def kinds_actual(**fields: Any) -> dict[str, Any]:
    return act(**{"monitor": KINDS, "prediction_id": "kind-0", "actual": "cat", **fields})


HUGE = b"[" + b" " * (10 * 1024 * 1024) + b"]"
DEEP = b'[{"prediction_id": "d", "monitor": "ml/churn", "ts": 1, "prediction": 1, "features": ' + (
    b"[" * 200_000 + b"]" * 200_000 + b"}]"
)
GZIP = (("Content-Encoding", "gzip"),)
EMPTIES = b"[" + b"{}," * (8 * 1024 * 1024 // 3 - 2) + b"{}]"
"""As many (bad) items as fit the body limit."""
LONG_ID = "e" * 10_000
LONG_VALUE = "e" * 600
"""Longer than an identifier may be, short enough for a request line."""

CASES = [
    # -- POST /v1/predictions --------------------------------------------------------------------
    Case("broken json", "POST", "/v1/predictions", b'[{"prediction_id": "a",', 400),
    Case("object not array", "POST", "/v1/predictions", enc(rec()), 400),
    Case("NaN literal", "POST", "/v1/predictions", b"[NaN]", 400),
    Case(
        "NaN prediction",
        "POST",
        "/v1/predictions",
        enc([rec()]).replace(b'"prediction":1', b'"prediction":NaN'),
        400,
    ),
    Case(
        "Infinity ts",
        "POST",
        "/v1/predictions",
        enc([rec()]).replace(b'"ts":1767225590.0', b'"ts":Infinity'),
        400,
    ),
    Case(
        "-Infinity score",
        "POST",
        "/v1/predictions",
        enc([rec(score=0.5)]).replace(b'"score":0.5', b'"score":-Infinity'),
        400,
    ),
    Case(
        "number out of range",
        "POST",
        "/v1/predictions",
        enc([rec()]).replace(b'"prediction":1', b'"prediction":1e400'),
        400,
    ),
    Case(
        "huge integer prediction",
        "POST",
        "/v1/predictions",
        predictions(rec(prediction=10**30)),
        400,
    ),
    Case("huge integer ts", "POST", "/v1/predictions", predictions(rec(ts=10**20)), 400),
    Case("segments not an object", "POST", "/v1/predictions", predictions(rec(segments=[1])), 400),
    Case("empty body", "POST", "/v1/predictions", b"", 400),
    Case("blank body", "POST", "/v1/predictions", b"  \n ", 400),
    Case("10 MiB body", "POST", "/v1/predictions", HUGE, 413),
    Case("text/plain", "POST", "/v1/predictions", predictions(rec()), 415, "text/plain"),
    Case("no content type", "POST", "/v1/predictions", predictions(rec()), 415, None),
    Case(
        "form content type",
        "POST",
        "/v1/predictions",
        b"a=1",
        415,
        "application/x-www-form-urlencoded",
    ),
    Case("unknown monitor", "POST", "/v1/predictions", predictions(rec(monitor="ml/nope")), 400),
    Case(
        "lone surrogate entity",
        "POST",
        "/v1/predictions",
        enc([rec()]).replace(b'"user-1"', b'"\\ud800"'),
        400,
    ),
    Case(
        "invalid utf-8",
        "POST",
        "/v1/predictions",
        enc([rec()]).replace(b"user-1", b"user-\xff"),
        400,
    ),
    Case("10 kB entity id", "POST", "/v1/predictions", predictions(rec(entity_id=LONG_ID)), 400),
    Case(
        "NUL in prediction id",
        "POST",
        "/v1/predictions",
        predictions(rec(prediction_id="a\x00b")),
        400,
    ),
    Case(
        "newline in entity id", "POST", "/v1/predictions", predictions(rec(entity_id="a\nb")), 400
    ),
    Case("empty prediction id", "POST", "/v1/predictions", predictions(rec(prediction_id="")), 400),
    Case("negative ts", "POST", "/v1/predictions", predictions(rec(ts=-5)), 400),
    Case(
        "far-future ts", "POST", "/v1/predictions", predictions(rec(ts="3000-01-01T00:00:00Z")), 400
    ),
    Case(
        "ts older than retention",
        "POST",
        "/v1/predictions",
        predictions(rec(ts=T0 - 40 * 86400)),
        400,
    ),
    Case("ts not a date", "POST", "/v1/predictions", predictions(rec(ts="yesterday")), 400),
    Case(
        "ts without offset",
        "POST",
        "/v1/predictions",
        predictions(rec(ts="2026-01-01T00:00:00")),
        400,
    ),
    Case("ts boolean", "POST", "/v1/predictions", predictions(rec(ts=True)), 400),
    Case(
        "conflicting duplicate ids",
        "POST",
        "/v1/predictions",
        predictions(rec(), rec(prediction=0)),
        400,
    ),
    Case(
        "prediction object", "POST", "/v1/predictions", predictions(rec(prediction={"a": 1})), 400
    ),
    Case(
        "prediction null",
        "POST",
        "/v1/predictions",
        predictions({**rec(), "prediction": None}),
        400,
    ),
    Case(
        "missing prediction id",
        "POST",
        "/v1/predictions",
        predictions(rec(prediction_id=None)),
        400,
    ),
    Case("served_by human", "POST", "/v1/predictions", predictions(rec(served_by="human")), 400),
    Case("score above one", "POST", "/v1/predictions", predictions(rec(score=1.5)), 400),
    Case("features string", "POST", "/v1/predictions", predictions(rec(features="tenure=3")), 400),
    Case("deeply nested features", "POST", "/v1/predictions", DEEP, 400),
    Case("array of numbers", "POST", "/v1/predictions", b"[1, 2, 3]", 400),
    Case(
        "unusable binary label", "POST", "/v1/predictions", predictions(rec(prediction="cat")), 400
    ),
    Case(
        "one bad among good",
        "POST",
        "/v1/predictions",
        predictions(rec(prediction_id="ok-1"), rec(ts="no")),
        400,
    ),
    Case(
        "too many records",
        "POST",
        "/v1/predictions",
        predictions(*(rec(prediction_id=f"m{i}") for i in range(10_001))),
        400,
    ),
    Case("ndjson broken line", "POST", "/v1/predictions", enc(rec()) + b"\n{oops\n", 400, NDJSON),
    Case("ndjson array line", "POST", "/v1/predictions", enc(rec()) + b"\n[1]\n", 400, NDJSON),
    # content codings: gzip and deflate only, and the body must decode
    Case(
        "gzip coding on a plain body",
        "POST",
        "/v1/predictions",
        predictions(rec()),
        400,
        JSON,
        GZIP,
    ),
    Case(
        "deflate coding on a plain body",
        "POST",
        "/v1/predictions",
        predictions(rec()),
        400,
        JSON,
        (("Content-Encoding", "deflate"),),
    ),
    Case(
        "feedback gzip coding on a plain body",
        "POST",
        "/v1/feedback",
        feedback(act()),
        400,
        JSON,
        GZIP,
    ),
    Case(
        "brotli coding",
        "POST",
        "/v1/predictions",
        predictions(rec()),
        415,
        JSON,
        (("Content-Encoding", "br"),),
    ),
    Case(
        "unknown coding",
        "POST",
        "/v1/predictions",
        predictions(rec()),
        415,
        JSON,
        (("Content-Encoding", "x-lz4"),),
    ),
    Case(
        "two codings",
        "POST",
        "/v1/predictions",
        predictions(rec()),
        415,
        JSON,
        (("Content-Encoding", "gzip, br"),),
    ),
    Case("unknown method", "FOO", "/v1/predictions", predictions(rec()), 400),
    # control characters in stored strings (PostgreSQL refuses NUL in text and jsonb)
    Case(
        "NUL in a class label",
        "POST",
        "/v1/predictions",
        predictions(kinds(prediction="a\x00b")),
        400,
    ),
    Case(
        "newline in a class label",
        "POST",
        "/v1/predictions",
        predictions(kinds(prediction="a\nb")),
        400,
    ),
    Case(
        "C1 control in a class label",
        "POST",
        "/v1/predictions",
        predictions(kinds(prediction="a\x85")),
        400,
    ),
    Case(
        "NUL in model version",
        "POST",
        "/v1/predictions",
        predictions(rec(model_version="v\x00")),
        400,
    ),
    Case("NUL in tag", "POST", "/v1/predictions", predictions(rec(tag="t\x00")), 400),
    Case("tab in entity id", "POST", "/v1/predictions", predictions(rec(entity_id="a\tb")), 400),
    Case(
        "NUL in a feature value",
        "POST",
        "/v1/predictions",
        predictions(rec(features={"a": "x\x00"})),
        400,
    ),
    Case(
        "NUL in a feature name",
        "POST",
        "/v1/predictions",
        predictions(rec(features={"a\x00": 1})),
        400,
    ),
    Case(
        "NUL deep in features",
        "POST",
        "/v1/predictions",
        predictions(rec(features=[{"a": [1, {"b": ["\x00"]}]}])),
        400,
    ),
    Case(
        "ndjson NUL in features",
        "POST",
        "/v1/predictions",
        enc(rec()) + b"\n" + enc(rec(prediction_id="n2", features={"k": "\x00"})),
        400,
        NDJSON,
    ),
    # -- POST /v1/feedback -----------------------------------------------------------------------
    Case("feedback broken json", "POST", "/v1/feedback", b'{"items": [', 400),
    Case("feedback empty", "POST", "/v1/feedback", b"", 400),
    Case("neither id nor entity", "POST", "/v1/feedback", feedback(act(prediction_id=None)), 400),
    Case("both id and entity", "POST", "/v1/feedback", feedback(act(entity_id="user-0")), 400),
    Case("both actual and vote", "POST", "/v1/feedback", feedback(act(vote="up")), 400),
    Case("neither actual nor vote", "POST", "/v1/feedback", feedback(act(actual=None)), 400),
    Case("vote maybe", "POST", "/v1/feedback", feedback(act(actual=None, vote="maybe")), 400),
    Case("actual null", "POST", "/v1/feedback", feedback({**act(), "actual": None}), 400),
    Case(
        "actual NaN",
        "POST",
        "/v1/feedback",
        feedback(act()).replace(b'"actual":0', b'"actual":NaN'),
        400,
    ),
    Case("actual object", "POST", "/v1/feedback", feedback(act(actual={"v": 1})), 400),
    Case("actual unusable", "POST", "/v1/feedback", feedback(act(actual="cat")), 400),
    Case("actual huge integer", "POST", "/v1/feedback", feedback(act(actual=-(10**25))), 400),
    Case("feedback unknown monitor", "POST", "/v1/feedback", feedback(act(monitor="ml/nope")), 400),
    Case("feedback monitor missing", "POST", "/v1/feedback", feedback(act(monitor=None)), 400),
    Case("feedback monitor number", "POST", "/v1/feedback", feedback(act(monitor=7)), 400),
    Case("items not an array", "POST", "/v1/feedback", enc({"items": {"a": 1}}), 400),
    Case("item a string", "POST", "/v1/feedback", enc({"items": ["seed-0"]}), 400),
    Case(
        "timestamp far future",
        "POST",
        "/v1/feedback",
        feedback(act(prediction_id=None, entity_id="user-0", timestamp=T0 + 86400)),
        400,
    ),
    Case("timestamp negative", "POST", "/v1/feedback", feedback(act(timestamp=-1)), 400),
    Case(
        "feedback 10 kB entity",
        "POST",
        "/v1/feedback",
        feedback(act(prediction_id=None, entity_id=LONG_ID)),
        400,
    ),
    Case(
        "feedback conflicting duplicates",
        "POST",
        "/v1/feedback",
        feedback(act(), act(actual=1)),
        400,
    ),
    Case(
        "valid item then a bad one",
        "POST",
        "/v1/feedback",
        feedback(act(prediction_id="seed-1", actual=1), act(vote="x")),
        400,
    ),
    Case("tag with prediction id", "POST", "/v1/feedback", feedback(act(tag="buy")), 400),
    Case(
        "NUL in an actual label",
        "POST",
        "/v1/feedback",
        feedback(kinds_actual(actual="a\x00")),
        400,
    ),
    Case(
        "CR in an actual label", "POST", "/v1/feedback", feedback(kinds_actual(actual="a\rb")), 400
    ),
    Case(
        "NUL in an actual's entity",
        "POST",
        "/v1/feedback",
        feedback(act(prediction_id=None, entity_id="\x00")),
        400,
    ),
    Case(
        "NUL in an actual's tag",
        "POST",
        "/v1/feedback",
        feedback(act(prediction_id=None, entity_id="user-0", tag="\x00")),
        400,
    ),
    Case("feedback wrong content type", "POST", "/v1/feedback", feedback(act()), 415, "text/csv"),
    Case("feedback 10 MiB", "POST", "/v1/feedback", HUGE, 413),
    Case(
        "too many actuals",
        "POST",
        "/v1/feedback",
        feedback(*(act(prediction_id=f"x{i}") for i in range(10_001))),
        400,
    ),
    # -- monitors --------------------------------------------------------------------------------
    Case("put broken json", "PUT", "/v1/monitors/ml/new", b"{", 400),
    Case("put array", "PUT", "/v1/monitors/ml/new", b"[]", 400),
    Case("put empty", "PUT", "/v1/monitors/ml/new", b"", 400),
    Case(
        "put bad task", "PUT", "/v1/monitors/ml/new", enc(monitor_body("new", task="ranking")), 400
    ),
    Case(
        "put spec missing",
        "PUT",
        "/v1/monitors/ml/new",
        enc({**monitor_body("new"), "spec": None}),
        400,
    ),
    Case("put name mismatch", "PUT", "/v1/monitors/ml/new", enc(monitor_body("other")), 400),
    Case(
        "put metadata string",
        "PUT",
        "/v1/monitors/ml/new",
        enc({**monitor_body("new"), "metadata": "x"}),
        400,
    ),
    Case("put yaml", "PUT", "/v1/monitors/ml/new", b"spec: {}", 415, "application/yaml"),
    Case("put 10 MiB", "PUT", "/v1/monitors/ml/new", HUGE, 413),
    Case("put task change", "PUT", MONITOR, enc(monitor_body(task="regression", alerts=[])), 409),
    Case("get unknown monitor", "GET", "/v1/monitors/ml/nope", None, 404),
    Case("delete unknown monitor", "DELETE", "/v1/monitors/ml/nope", None, 404),
    Case("unknown route", "GET", "/v1/monitors/ml/churn/nothing", None, 404),
    Case("wrong method", "PATCH", MONITOR, enc({}), 405),
    # -- reads -----------------------------------------------------------------------------------
    Case("metrics unknown monitor", "GET", "/v1/monitors/ml/nope/metrics", None, 404),
    Case("metrics window word", "GET", MONITOR + "/metrics?window=abc", None, 400),
    Case("metrics window negative", "GET", MONITOR + "/metrics?window=-1h", None, 400),
    Case("metrics served_by human", "GET", MONITOR + "/metrics?served_by=human", None, 400),
    Case("metrics series seconds", "GET", MONITOR + "/metrics?series=30s", None, 400),
    Case("metrics series too long", "GET", MONITOR + "/metrics?window=90d&series=1m", None, 400),
    Case("metrics window past 90d", "GET", MONITOR + "/metrics?window=91d", None, 400),
    Case("dataset window absurd", "GET", MONITOR + "/dataset?window=99999999999d", None, 400),
    Case("state wait NaN", "GET", MONITOR + "/state?wait=nan", None, 400),
    Case("state wait huge", "GET", MONITOR + "/state?wait=1e9", None, 400),
    Case("state since word", "GET", MONITOR + "/state?since=abc", None, 400),
    Case("state unknown monitor", "GET", "/v1/monitors/ml/nope/state", None, 404),
    Case("timeline without entity", "GET", MONITOR + "/predictions", None, 400),
    Case("timeline limit zero", "GET", MONITOR + "/predictions?entity_id=u&limit=0", None, 400),
    Case("dataset format xml", "GET", MONITOR + "/dataset?format=xml", None, 400),
    Case("dataset correct maybe", "GET", MONITOR + "/dataset?correct=maybe", None, 400),
    Case("dataset unknown monitor", "GET", "/v1/monitors/ml/nope/dataset", None, 404),
    # query values: every parameter of every GET is checked before it reaches the store
    Case("timeline entity NUL", "GET", MONITOR + "/predictions?entity_id=%00", None, 400),
    Case("timeline entity newline", "GET", MONITOR + "/predictions?entity_id=a%0Ab", None, 400),
    Case(
        "timeline entity too long",
        "GET",
        MONITOR + "/predictions?entity_id=" + LONG_VALUE,
        None,
        400,
    ),
    Case("timeline limit NUL", "GET", MONITOR + "/predictions?entity_id=u&limit=%00", None, 400),
    Case("metrics version NUL", "GET", MONITOR + "/metrics?version=%00", None, 400),
    Case("metrics version C1", "GET", MONITOR + "/metrics?version=v%C2%85", None, 400),
    Case("metrics window NUL", "GET", MONITOR + "/metrics?window=1h%00", None, 400),
    Case("metrics served_by NUL", "GET", MONITOR + "/metrics?served_by=%00", None, 400),
    Case("state since NUL", "GET", MONITOR + "/state?since=%00", None, 400),
    Case("dataset version NUL", "GET", MONITOR + "/dataset?version=%00", None, 400),
    Case("dataset version too long", "GET", MONITOR + "/dataset?version=" + LONG_VALUE, None, 400),
    Case("dataset format NUL", "GET", MONITOR + "/dataset?format=csv%00", None, 400),
    # -- control ---------------------------------------------------------------------------------
    Case("fallback bad mode", "POST", MONITOR + "/fallback", enc({"mode": "sometimes"}), 400),
    Case("fallback not json", "POST", MONITOR + "/fallback", b"engaged", 400),
    Case(
        "fallback unknown monitor",
        "POST",
        "/v1/monitors/ml/nope/fallback",
        enc({"mode": "auto"}),
        404,
    ),
    Case("alertmanager broken", "POST", "/v1/alertmanager", b'{"alerts": [', 400),
    Case("alertmanager alerts object", "POST", "/v1/alertmanager", enc({"alerts": {}}), 400),
    Case(
        "alertmanager bad status",
        "POST",
        "/v1/alertmanager",
        enc({"alerts": [{"status": "on", "labels": {}}]}),
        400,
    ),
    Case(
        "alertmanager too many alerts",
        "POST",
        "/v1/alertmanager",
        enc({"alerts": [1] * 10_001}),
        400,
    ),
    Case(
        "alertmanager 5000 bad alerts", "POST", "/v1/alertmanager", enc({"alerts": [1] * 5000}), 400
    ),
    Case(
        "10,000 bad records",
        "POST",
        "/v1/predictions",
        predictions(*(rec(prediction_id=f"b{i}", ts="no") for i in range(10_000))),
        400,
    ),
    Case("8 MiB of empty records", "POST", "/v1/predictions", EMPTIES, 400),
]


def test_the_corpus_is_large_and_covers_every_endpoint() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    routes = {(c.method, c.path.split("?")[0].replace("/ml/nope", "/ml/churn")) for c in CASES}
    for route in [
        ("POST", "/v1/predictions"),
        ("POST", "/v1/feedback"),
        ("PUT", "/v1/monitors/ml/new"),
        ("GET", MONITOR + "/metrics"),
        ("GET", MONITOR + "/state"),
        ("POST", MONITOR + "/fallback"),
        ("POST", "/v1/alertmanager"),
        ("GET", MONITOR + "/predictions"),
        ("GET", MONITOR + "/dataset"),
        ("DELETE", MONITOR),
    ]:
        assert route in routes, route


async def fingerprint(service: Service) -> Any:
    """Everything a write could change, read back through the store and the API."""
    store = service.engine.store
    monitors = sorted(
        (r.monitor.key, msgspec.json.encode(r.body)) for r in await store.load_monitors()
    )
    states = await store.load_states()
    totals = await store.totals()
    listed = await service.ok("GET", "/v1/monitors")
    return monitors, states, totals, listed


@pytest.fixture
async def loaded(service: Service) -> Service:
    await service.put_monitor(monitor_body("kinds", task="multiclass", alerts=[]))
    await service.predictions(
        [record(f"seed-{i}", i % 2, ts=T0 - 60, entity_id=f"user-{i}") for i in range(8)]
        + [record("kind-0", "dog", ts=T0 - 60, monitor=KINDS, entity_id="user-0")]
    )
    await service.feedback({"monitor": "ml/churn", "prediction_id": "seed-0", "actual": 1})
    await service.feedback({"monitor": "ml/churn", "prediction_id": "waiting", "actual": 1})
    return service


async def test_malformed_requests_are_refused_with_details_and_change_nothing(
    loaded: Service,
) -> None:
    before = await fingerprint(loaded)
    failures = []
    for case in CASES:
        headers = dict(case.headers)
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        data = io.BytesIO(case.body) if case.body and len(case.body) > 1 << 20 else case.body
        async with loaded.http.request(
            case.method,
            loaded.base + case.path,
            data=data,
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response:
            raw = await response.read()
            status = response.status
        try:
            body = msgspec.json.decode(raw)
            well_formed = (
                isinstance(body.get("error"), str) and 0 < len(body["details"]) <= MAX_DETAILS
            )
        except (msgspec.DecodeError, AttributeError, KeyError):
            well_formed = False
        if status != case.status or not well_formed:
            failures.append((case.name, status, raw[:300]))
        elif await fingerprint(loaded) != before:
            failures.append((case.name, "store changed"))
    assert failures == [], "\n".join(map(str, failures))


@pytest.mark.parametrize("endpoint", ["metrics", "dataset"])
async def test_a_window_past_the_longest_is_refused_naming_window_and_the_limit(
    loaded: Service, endpoint: str
) -> None:
    """A window the spec could not hold: it once answered one starting in year -247."""
    path = f"{MONITOR}/{endpoint}?window="
    assert (await loaded.call("GET", path + "2160h"))[0] == 200
    status, body = await loaded.call("GET", path + "99999999999d")
    assert status == 400
    assert [(d["field"], d["reason"]) for d in body["details"]] == [("window", "invalid")]
    assert "at most 90d" in body["details"][0]["message"], body


async def test_item_errors_name_the_index_and_field(loaded: Service) -> None:
    status, body = await loaded.call(
        "POST",
        "/v1/feedback",
        data=feedback(act(), act(prediction_id="seed-2", actual="cat"), act(monitor="ml/nope")),
        headers={"Content-Type": JSON},
    )
    assert status == 400
    assert [(d["index"], d["field"], d["reason"]) for d in body["details"]] == [
        (1, "actual", "unusable_label"),
        (2, "monitor", "unknown_monitor"),
    ]


async def test_a_segment_the_monitor_does_not_declare_is_left_out_and_named_in_warnings(
    loaded: Service,
) -> None:
    """A sidecar's queue may hold records captured before the spec dropped a segment, and it
    drops a refused record: such a record is stored without the value, the answer names it and
    the service counts it. A bad value of a declared segment is still refused."""
    segmented = monitor_body("segmented", segments=[{"name": "country", "header": "X-Country"}])
    await loaded.put_monitor(segmented)
    labels = {"namespace": "ml", "monitor": "segmented", "reason": "unknown_segment"}
    counter = "truthloop_ignored_segment_values_total"
    assert sample(await loaded.scrape(), counter, **labels) == 0
    status, body = await loaded.call(
        "POST",
        "/v1/predictions",
        data=predictions(
            rec(prediction_id="old-1", entity_id="u-old", segments={"country": "DE", "plan": 1}),
            rec(monitor="ml/segmented", segments={"country": "DE", "plan": None}),
            rec(monitor="ml/segmented", prediction_id="old-2", segments={"plan": "pro"}),
        ),
        headers={"Content-Type": JSON},
    )
    assert (status, body["accepted"]) == (200, 3), body
    assert [(w["index"], w["field"], w["reason"]) for w in body["warnings"]] == [
        (0, "segments.country", "unknown_segment"),
        (0, "segments.plan", "unknown_segment"),
        (1, "segments.plan", "unknown_segment"),
        (2, "segments.plan", "unknown_segment"),
    ]
    assert "warnings_truncated" not in body
    assert "its segments: country" in body["warnings"][2]["message"]
    timeline = await loaded.ok("GET", MONITOR + "/predictions?entity_id=u-old")
    assert [p["prediction_id"] for p in timeline["predictions"]] == ["old-1"]
    scraped = await loaded.scrape()
    assert sample(scraped, counter, **labels) == 2
    assert sample(scraped, counter, **{**labels, "monitor": "churn"}) == 2
    status, body = await loaded.call(
        "POST",
        "/v1/predictions",
        data=predictions(
            rec(prediction_id="bad-2", monitor="ml/segmented", segments={"country": [1], "x": 1})
        ),
        headers={"Content-Type": JSON},
    )
    assert status == 400
    assert [(d["index"], d["field"], d["reason"]) for d in body["details"]] == [
        (0, "segments.country", "wrong_type")
    ]
    plain = {"accepted": 1, "duplicates": 0}  # no warnings, no key
    assert await loaded.predictions([rec(prediction_id="plain")]) == plain
    assert sample(await loaded.scrape(), counter, **labels) == 2  # a refused request: not counted


async def test_control_characters_in_stored_strings_are_named_by_item_and_field(
    loaded: Service,
) -> None:
    """PostgreSQL cannot store NUL (text and jsonb refuse it) and a class label is a counter key:
    such a record once accepted made every later labeling of it fail. Text inside features may
    hold tabs and newlines."""
    status, body = await loaded.call(
        "POST",
        "/v1/predictions",
        data=predictions(
            kinds(prediction_id="k1"),
            kinds(prediction_id="k2", prediction="a\x00b"),
            rec(prediction_id="f1", features={"note": "tab\tand\nnewline", "bad": [{"x\x00": 1}]}),
            rec(prediction_id="f2", model_version="v\x01"),
        ),
        headers={"Content-Type": JSON},
    )
    assert status == 400
    assert [(d["index"], d["field"], d["reason"]) for d in body["details"]] == [
        (1, "prediction", "invalid"),
        (2, "features", "invalid"),
        (3, "model_version", "invalid"),
    ]
    text = {"note": "tab\tand\nnewline", "path": "C:\\temp"}
    await loaded.predictions([record("f3", 1, ts=T0 - 10, entity_id="u-f3", features=text)])
    timeline = await loaded.ok("GET", MONITOR + "/predictions?entity_id=u-f3")
    assert [p["features"] for p in timeline["predictions"]] == [text]


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/alertmanager", enc({"alerts": [1] * 5000}), JSON),
        (
            "/v1/predictions",
            predictions(*(rec(prediction_id=f"b{i}", ts="no") for i in range(5000))),
            JSON,
        ),
        (
            "/v1/predictions",
            b"\n".join(enc(rec(prediction_id=f"b{i}", ts="no")) for i in range(5000)),
            NDJSON,
        ),
        (
            "/v1/feedback",
            feedback(*(act(prediction_id=f"x{i}", vote="x") for i in range(5000))),
            JSON,
        ),
    ],
    ids=["alertmanager", "predictions", "ndjson", "feedback"],
)
async def test_an_answer_names_the_first_errors_and_counts_the_rest(
    loaded: Service, path: str, body: bytes, content_type: str
) -> None:
    """An 8 MiB body of bad items once answered hundreds of MiB of details."""
    status, answer = await loaded.call(
        "POST", path, data=body, headers={"Content-Type": content_type}
    )
    assert status == 400
    assert [d["index"] for d in answer["details"]] == list(range(MAX_DETAILS))
    assert answer["truncated"] == 5000 - MAX_DETAILS


async def test_too_many_alerts_are_refused_whole(loaded: Service) -> None:
    status, answer = await loaded.call(
        "POST",
        "/v1/alertmanager",
        data=enc({"alerts": [{"status": "firing", "labels": {}}] * 10_001}),
        headers={"Content-Type": JSON},
    )
    assert status == 400
    assert [(d["field"], d["reason"]) for d in answer["details"]] == [("alerts", "too_many_items")]


@pytest.mark.parametrize(
    ("write", "body"),
    [
        ("ingest", predictions(*(rec(prediction_id=f"b{i}", ts="no") for i in range(10_000)))),
        ("feedback", feedback(*(act(prediction_id=f"x{i}", vote="x") for i in range(10_000)))),
    ],
    ids=["predictions", "actuals"],
)
async def test_health_checks_are_answered_while_a_big_request_is_validated(
    service: Service, write: str, body: bytes
) -> None:
    """A request at the item limit is validated in slices that let the event loop serve others.

    The test and the service share one event loop, so this is an order of events, not a time:
    before, the validation ran to its end in one step (10 s for an 8 MiB body of bad items)."""
    await service.ok("GET", "/healthz")  # the next check reuses this connection
    validating = asyncio.create_task(getattr(service.engine, write)(body))
    health = asyncio.create_task(service.call("GET", "/healthz"))
    first, _ = await asyncio.wait({validating, health}, return_when=asyncio.FIRST_COMPLETED)
    with pytest.raises(InvalidItems):
        await validating
    assert (await health)[0] == 200
    assert first == {health}


CHUNKED = b"POST /v1/predictions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
UNPARSABLE = [
    ("lowercase method", b"get /healthz HTTP/1.1\r\nHost: t\r\n\r\n", "method"),
    ("TLS on the HTTP port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), "method"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "request"),
    ("request line too long", http1.request("GET", "/healthz?x=" + "a" * 9000), "head"),
    ("header too long", http1.request("GET", "/healthz", [(b"X-A", b"a" * 9000)]), "head"),
    (
        "too many headers",
        http1.request("GET", "/healthz", [(b"X-%d" % i, b"a") for i in range(200)]),
        "request",
    ),
    ("NUL in the target", b"GET /healthz?a=\x00 HTTP/1.1\r\nHost: t\r\n\r\n", "target"),
    (
        "bad chunk size",
        CHUNKED + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "request",
    ),
    (
        "length and chunked",
        CHUNKED + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "request",
    ),
    (
        "brotli body",
        http1.request(
            "POST",
            "/v1/predictions",
            [(b"Content-Type", b"application/json"), (b"Content-Encoding", b"br")],
            b"[]",
        ),
        "Content-Encoding",
    ),
]


@pytest.mark.parametrize(
    ("raw", "field"), [case[1:] for case in UNPARSABLE], ids=[case[0] for case in UNPARSABLE]
)
async def test_requests_the_http_parser_refuses_are_answered_in_the_json_shape(
    service: Service, raw: bytes, field: str
) -> None:
    """aiohttp answers these below the app, in plain text, unless the service hooks its
    connection handler."""
    host, port = service.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        answer = await http1.read_message(reader, request=False)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert answer is not None
    assert 400 <= answer.status < 500
    assert answer.header("Content-Type") == b"application/json"
    body = msgspec.json.decode(answer.body)
    assert isinstance(body["error"], str)
    assert [d["field"] for d in body["details"]] == [field]


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: t\r\n"], ids=["nothing", "half a head"]
)
async def test_a_connection_that_sends_no_whole_request_is_closed(
    start_service: ServiceFactory, sent: bytes
) -> None:
    """aiohttp keeps an idle connection (or one trickling a head) for an hour by default."""
    service = await start_service(http=HttpSettings(idle_timeout=0.1))
    host, port = service.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(sent)
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
