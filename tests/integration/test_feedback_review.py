"""The review queue through the service's HTTP API, on both stores: leasing (a token needed, the
limit, a skipped item never offered again to its reviewer, an expired lease handing it back),
review labels on POST /v1/feedback, the Label Studio round trip, and the dataset's review
columns and filters."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import msgspec

from tests.support.feedback import FakeClock, Service, ServiceFactory, monitor_body, record
from truthloop.core import scopes

pytest_plugins = ["tests.support.feedback_fixtures"]

ADMIN = "admin-s3cret"
TOKEN_ML = "token-of-namespace-ml"
QUEUE = "/v1/monitors/ml/churn/review"
REVIEWED = monitor_body(review={"budget": 100000, "lease": "10m"})
"""A monitor whose review queue takes every record (the budget is above any traffic)."""


async def reviewed_service(start_service: ServiceFactory, **overrides: Any) -> Service:
    service = await start_service(**overrides)
    await service.put_monitor(REVIEWED)
    return service


async def queued(service: Service, clock: FakeClock, n: int, **fields: Any) -> list[str]:
    """Capture `n` records (predicted 1, score 0.9), which all join the queue; their ids."""
    ids = [f"{fields.pop('prefix', 'p')}{i}" for i in range(n)]
    await service.predictions(
        [
            record(pid, 1, ts=clock() - 10, score=0.9, features={"tenure": i}, **fields)
            for i, pid in enumerate(ids)
        ]
    )
    return ids


async def lease(service: Service, reviewer: str, limit: int = 100) -> list[str]:
    answer = await service.ok("GET", f"{QUEUE}?reviewer={reviewer}&limit={limit}")
    return [item["prediction_id"] for item in answer["items"]]


def review(pid: str, reviewer: str = "ann", **fields: Any) -> dict[str, Any]:
    return {
        "monitor": "ml/churn",
        "prediction_id": pid,
        "source": "review",
        "reviewer": reviewer,
        **fields,
    }


async def bare(service: Service, method: str, path: str, token: str | None = None) -> int:
    """The status of a request with `token` (or none), not the service session's."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, service.base + path, headers=headers) as response,
    ):
        return response.status


async def test_leasing_needs_a_token_of_the_monitor_s_namespace(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service, token=ADMIN)
    await service.put_monitor(monitor_body(namespace="other", review={"budget": 10}))
    await service.ok("PUT", "/v1/tokens/ml", json={"sha256": scopes.digest(TOKEN_ML)})
    await queued(service, clock, 3)
    for path in (f"{QUEUE}?reviewer=ann", f"{QUEUE}/export"):
        assert await bare(service, "GET", path) == 401
        assert await bare(service, "GET", path, "not-a-token") == 401
        assert await bare(service, "GET", path.replace("/ml/", "/other/"), TOKEN_ML) == 403
    assert await bare(service, "GET", f"{QUEUE}?reviewer=ann&limit=1", TOKEN_ML) == 200
    assert await bare(service, "GET", "/v1/monitors/ml/churn/metrics") == 200  # reads need none
    assert await lease(service, "bo") == ["p1", "p2"]  # ann holds p0


async def test_a_reviewer_is_handed_items_with_what_they_need_to_judge(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await queued(service, clock, 5)
    answer = await service.ok("GET", f"{QUEUE}?reviewer=ann@example.com&limit=2")
    assert answer["monitor"] == "ml/churn"
    assert answer["reviewer"] == "ann@example.com"
    first = answer["items"][0]
    assert first == {
        "prediction_id": "p0",
        "model_version": "v1",
        "ts": clock() - 10,
        "prediction": 1,
        "score": 0.9,
        "features": {"tenure": 0},
        "reason": "random",
        "pi": 1.0,
        "outlier": None,
        "abstained": False,
        "votes": [],
        "lease_until": "2026-01-01T00:10:00Z",
    }
    assert len(answer["items"]) == 2
    assert answer["queue"] == {"depth": 5, "leased": 2, "oldest": clock()}
    for path in (f"{QUEUE}?reviewer=bo", f"{QUEUE}/export?reviewer=bo"):
        assert await bare(service, "HEAD", path) == 200  # leases nothing
    assert await lease(service, "bo", 10) == ["p2", "p3", "p4"]
    assert await lease(service, "cy") == []


async def test_bad_lease_requests_name_their_parameter(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await service.put_monitor(monitor_body(name="plain"))
    for query, field, reason in (
        ("", "reviewer", "missing"),
        ("?reviewer=a%20b", "reviewer", "invalid"),
        ("?reviewer=a:b", "reviewer", "invalid"),
        ("?reviewer=" + "x" * 129, "reviewer", "invalid"),
        ("?reviewer=ann&limit=0", "limit", "invalid"),
        ("?reviewer=ann&limit=101", "limit", "invalid"),
        ("?reviewer=ann&limit=ten", "limit", "invalid"),
    ):
        status, body = await service.call("GET", QUEUE + query)
        assert (status, body["details"][0]["field"], body["details"][0]["reason"]) == (
            400,
            field,
            reason,
        ), query
    for method, path in (
        ("GET", "/review?reviewer=ann"),
        ("GET", "/review/export"),
        ("POST", "/review/import"),
    ):
        status, body = await service.call(method, "/v1/monitors/ml/plain" + path, json=[])
        assert status == 404, path
        assert body["details"][0]["field"] == "spec.review"
        assert body["details"][0]["reason"] == "no_review"
        status, body = await service.call(method, "/v1/monitors/ml/nope" + path, json=[])
        assert (status, body["details"][0]["reason"]) == (404, "unknown_monitor")
    status, body = await service.call("GET", f"{QUEUE}/export?format=csv")
    assert (status, body["details"][0]["field"]) == (400, "format")


async def test_a_skipped_item_goes_to_others_and_an_expired_lease_hands_items_back(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await queued(service, clock, 3)
    assert await lease(service, "ann", 1) == ["p0"]
    await service.feedback(review("p0", decision="skip"))
    assert await lease(service, "ann") == ["p1", "p2"]  # never p0 again
    assert await lease(service, "bo") == ["p0"]
    await service.feedback(review("p0", "bo", decision="unsure"))
    clock.advance(601)  # ann's lease of p1, p2 ends
    assert await lease(service, "bo") == ["p1", "p2"]
    assert await lease(service, "cy") == ["p0"]


async def test_review_labels_label_their_prediction_and_unknown_ids_are_named(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await queued(service, clock, 3)
    assert await lease(service, "ann", 2) == ["p0", "p1"]
    answer = await service.feedback(review("p0", actual=0), review("p1", vote="up"))
    assert answer == {"matched": 2, "pending": 0}
    status, body = await service.call(
        "POST", "/v1/feedback", json=[review("p2", actual=1), review("ghost", actual=1)]
    )
    assert status == 400
    assert body["details"] == [
        {
            "index": 1,
            "field": "prediction_id",
            "message": "no prediction ghost in monitor ml/churn",
            "reason": "unknown_prediction",
        }
    ]
    status, body = await service.call(
        "POST",
        "/v1/feedback",
        json=[
            review("p2", reviewer="a b", actual=1),
            review("p2", reviewer=None, actual=1),
            {**review("p2"), "decision": "skip", "source": None},
        ],
    )
    assert status == 400
    assert [(d["index"], d["field"], d["reason"]) for d in body["details"]] == [
        (0, "reviewer", "invalid"),
        (1, "reviewer", "missing"),
        (2, "reviewer", "invalid"),
        (2, "decision", "invalid"),
    ]
    rows = await dataset(service, "reviewed=true")
    assert [(r["prediction_id"], r["source"], r["reviewer"], r["correct"]) for r in rows] == [
        ("p0", "review", "ann", False),
        ("p1", "review", "ann", True),
    ]
    assert await lease(service, "bo") == ["p2"]  # the labeled items left the queue


async def dataset(service: Service, query: str = "") -> list[dict[str, Any]]:
    body = await service.ok("GET", f"/v1/monitors/ml/churn/dataset?{query}")
    return [msgspec.json.decode(line) for line in body.splitlines()]


def annotate(tasks: list[dict[str, Any]], labels: dict[str, str | None]) -> list[dict[str, Any]]:
    """The tasks as Label Studio exports them once annotated: per prediction id the chosen
    label, or None for a skip; other tasks without annotations."""
    out = []
    for number, task in enumerate(tasks):
        pid = task["data"]["prediction_id"]
        exported = {**task, "id": 1000 + number, "annotations": []}
        if pid in labels:
            label = labels[pid]
            choice = {"from_name": "label", "to_name": "item", "type": "choices"}
            exported["annotations"] = [
                {
                    "id": 50 + number,
                    "completed_by": {"id": 7, "email": "ann@example.com"},
                    "result": [] if label is None else [{**choice, "value": {"choices": [label]}}],
                    "was_cancelled": label is None,
                    "lead_time": 3.2,
                }
            ]
        out.append(exported)
    return out


async def test_label_studio_round_trip_labels_the_store_and_moves_the_reviewed_estimate(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await queued(service, clock, 6)
    await service.tick()
    before = await service.metrics()
    assert before["reviewed"].get("accuracy", {}).get("n", 0) == 0
    tasks = await service.ok("GET", f"{QUEUE}/export?format=label-studio&limit=4")
    assert [t["data"]["prediction_id"] for t in tasks] == ["p0", "p1", "p2", "p3"]
    assert tasks[0]["data"]["tenure"] == 0
    assert tasks[0]["predictions"][0]["result"][0]["value"] == {"choices": ["1"]}
    labels = {"p0": "1", "p1": "0", "p2": "0", "p3": None}
    broken = [*annotate(tasks, labels), {"data": {}, "annotations": [{}]}]
    status, body = await service.call("POST", f"{QUEUE}/import", json=broken)
    assert status == 400
    assert [(d["index"], d["field"]) for d in body["details"]] == [
        (4, "data.prediction_id"),
        (4, "annotations[0].completed_by"),
        (4, "annotations[0].result"),
    ]
    ghost = {**tasks[0], "data": {**tasks[0]["data"], "prediction_id": "ghost"}}
    status, body = await service.call(
        "POST", f"{QUEUE}/import", json=annotate([*tasks, ghost], {**labels, "ghost": "1"})
    )
    assert (status, body["details"][0]["index"], body["details"][0]["field"]) == (
        400,
        4,
        "data.prediction_id",
    )
    assert body["details"][0]["reason"] == "unknown_prediction"
    assert await dataset(service, "reviewed=true") == []  # all or nothing
    answer = await service.ok("POST", f"{QUEUE}/import", json=annotate(tasks, labels))
    assert answer == {"monitor": "ml/churn", "labels": 3, "skips": 1, "unannotated": 0}
    rows = await dataset(service, "reviewed=true")
    assert [(r["prediction_id"], r["reviewer"], r["actual"]) for r in rows] == [
        ("p0", "ann@example.com", "1"),
        ("p1", "ann@example.com", "0"),
        ("p2", "ann@example.com", "0"),
    ]
    await service.tick()
    after = (await service.metrics())["reviewed"]["accuracy"]
    assert after["n"] == 3
    assert after["value"] is not None
    assert after["value"] < 1.0
    # ann's skip of p3 does not end label-studio's lease of it: it comes back when that ends
    assert await lease(service, "bo") == ["p4", "p5"]
    clock.advance(601)  # bo's lease ends too
    assert await lease(service, "bo") == ["p3", "p4", "p5"]


async def test_the_dataset_carries_review_columns_and_filters_on_them(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await reviewed_service(start_service)
    await queued(service, clock, 3)
    await queued(service, clock, 2, prefix="a", abstained=True)
    await service.feedback(
        review("p0", actual=1),
        review("p1", actual=0),
        {"monitor": "ml/churn", "prediction_id": "p2", "actual": 0},
        {"monitor": "ml/churn", "prediction_id": "a0", "actual": 1},
    )
    every = {r["prediction_id"]: r for r in await dataset(service)}
    assert set(every) == {"p0", "p1", "p2", "a0"}  # labeled ones only
    assert every["p0"]["source"] == "review"
    assert every["p2"]["source"] == "actual"
    assert (every["p1"]["pi"], every["p1"]["weight"], every["p1"]["reason"]) == (1.0, 1.0, "random")
    assert every["a0"]["abstained"] is True
    assert every["p0"]["votes"][0]["reviewer"] == "ann"

    async def ids(query: str) -> list[str]:
        return [r["prediction_id"] for r in await dataset(service, query)]

    assert await ids("reviewed=true") == ["p0", "p1"]
    assert await ids("reviewed=false") == ["p2", "a0"]
    assert await ids("wrong=true") == ["p1", "p2"]
    assert await ids("wrong=false") == ["p0", "a0"]
    assert await ids("wrong=true&reviewed=true") == ["p1"]
    assert await ids("abstained=true") == ["a0"]
    assert await ids("abstained=false&correct=true") == ["p0"]
    assert await ids(f"from={clock() - 60}&to={clock() + 60}") == ["p0", "p1", "p2", "a0"]
    assert await ids("from=2026-01-01T00:00:00Z") == []  # the records are from 23:59:50
    assert await ids("to=2025-12-31T23:59:55%2B00:00") == ["p0", "p1", "p2", "a0"]
    text = (await service.ok("GET", "/v1/monitors/ml/churn/dataset?format=csv&wrong=true")).decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0])[-8:] == [
        "source",
        "reviewer",
        "reason",
        "pi",
        "weight",
        "abstained",
        "votes",
        "features",
    ]
    assert [(r["prediction_id"], r["source"], r["weight"]) for r in table] == [
        ("p1", "review", "1.0"),
        ("p2", "actual", "1.0"),
    ]
    for query, field in (
        ("wrong=true&correct=true", "wrong"),
        ("wrong=maybe", "wrong"),
        ("window=1h&from=0", "window"),
        ("from=10&to=5", "to"),
        ("from=yesterday", "from"),
        ("to=2026-01-01T00:00:00", "to"),
        ("reviewed=1x", "reviewed"),
    ):
        status, body = await service.call("GET", f"/v1/monitors/ml/churn/dataset?{query}")
        assert status == 400, query
        assert body["details"][0]["field"] == field, query
