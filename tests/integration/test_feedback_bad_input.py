"""Malformed requests on every endpoint: a 4xx with details, never a 5xx, and nothing stored.

Each case is sent to a service holding some data; afterwards the store must read exactly as
before (monitors, engine state, every lifetime counter — predictions, labels, actual outcomes —
and the registered monitors' views).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from tests.support.feedback import T0, Service, monitor_body, record

pytest_plugins = ["tests.support.feedback_fixtures"]

JSON = "application/json"
NDJSON = "application/x-ndjson"
MONITOR = "/v1/monitors/ml/churn"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None
    status: int
    content_type: str | None = JSON


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


HUGE = b"[" + b" " * (10 * 1024 * 1024) + b"]"
DEEP = b'[{"prediction_id": "d", "monitor": "ml/churn", "ts": 1, "prediction": 1, "features": ' + (
    b"[" * 200_000 + b"]" * 200_000 + b"}]"
)
LONG_ID = "e" * 10_000

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
    Case("metrics series too long", "GET", MONITOR + "/metrics?window=400d&series=1m", None, 400),
    Case("state wait NaN", "GET", MONITOR + "/state?wait=nan", None, 400),
    Case("state wait huge", "GET", MONITOR + "/state?wait=1e9", None, 400),
    Case("state since word", "GET", MONITOR + "/state?since=abc", None, 400),
    Case("state unknown monitor", "GET", "/v1/monitors/ml/nope/state", None, 404),
    Case("timeline without entity", "GET", MONITOR + "/predictions", None, 400),
    Case("timeline limit zero", "GET", MONITOR + "/predictions?entity_id=u&limit=0", None, 400),
    Case("dataset format xml", "GET", MONITOR + "/dataset?format=xml", None, 400),
    Case("dataset correct maybe", "GET", MONITOR + "/dataset?correct=maybe", None, 400),
    Case("dataset unknown monitor", "GET", "/v1/monitors/ml/nope/dataset", None, 404),
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
    await service.predictions(
        [record(f"seed-{i}", i % 2, ts=T0 - 60, entity_id=f"user-{i}") for i in range(8)]
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
        headers = {} if case.content_type is None else {"Content-Type": case.content_type}
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
            well_formed = isinstance(body.get("error"), str) and body["details"]
        except (msgspec.DecodeError, AttributeError, KeyError):
            well_formed = False
        if status != case.status or not well_formed:
            failures.append((case.name, status, raw[:300]))
        elif await fingerprint(loaded) != before:
            failures.append((case.name, "store changed"))
    assert failures == [], "\n".join(map(str, failures))


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
