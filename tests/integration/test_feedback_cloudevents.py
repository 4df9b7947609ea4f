"""`POST /v1/cloudevents`: KServe's payload logger as a source, on both stores.

The request and the response of one inference come as two events sharing an id, in either
order, possibly to two replicas: the store pairs them, the monitor's capture spec reads the
pair into records, and `/v1/feedback` labels them by the event id. Duplicates change nothing,
a half left alone expires counted, a monitor's waiting halves are bounded, a bad event is 400
naming its attribute.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import pytest

from tests.servers import exchanges
from tests.support.feedback import (
    FakeClock,
    Service,
    ServiceFactory,
    monitor_body,
    sample,
)
from tests.support.kserve_logger import logged
from truthloop.core import capture, scopes
from truthloop.feedback.settings import CloudEventSettings
from truthloop.feedback.store.interface import DatasetQuery

pytest_plugins = ["tests.support.feedback_fixtures"]

PATH = "/v1/cloudevents"
EVENT_ID = "8c1f0b9e-51ad-4d6e-9a43-0d1b2f3c4e5f"
"""A UUID, as KServe's logger makes for a request that has no `Ce-Id` header."""
CAPTURE = {
    "entityId": {"header": "X-Entity-Id"},
    "prediction": {"pointer": "/predictions/0"},
    "features": {"pointer": "/instances/0"},
}
"""A single-row KServe v1 exchange read with plain pointers; the entity from a header the
InferenceService lists in `logger.metadataHeaders`."""


def churn(namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    return monitor_body(namespace=namespace, **{"capture": CAPTURE, **spec})


async def send(
    service: Service,
    half: str,
    event_id: str,
    payload: Any,
    *,
    query: str = "",
    auth: str | None = None,
    **event: Any,
) -> tuple[int, Any]:
    headers, body = logged(half, event_id, payload, **event)
    if auth is not None:
        headers["Authorization"] = auth
    return await service.call("POST", PATH + query, data=body, headers=headers)


def inference(entity: str = "c-1", prediction: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """A KServe v1 request and its response."""
    return {"instances": [{"tenure": 3, "plan": "basic"}]}, {"predictions": [prediction]}


async def pair(service: Service, event_id: str, ts: float, *, reverse: bool = False) -> Any:
    """Send both halves of an inference of entity c-1; the second half's answer."""
    request, response = inference()
    metadata = {"X-Entity-Id": ["c-1"]}
    halves = [("request", request), ("response", response)]
    first, second = reversed(halves) if reverse else halves
    status, body = await send(service, *first[:1], event_id, first[1], ts=ts, metadata=metadata)
    assert (status, body["outcome"]) == (200, "waiting"), body
    status, body = await send(service, second[0], event_id, second[1], ts=ts, metadata=metadata)
    assert status == 200, body
    return body


async def timeline(service: Service, entity: str = "c-1") -> list[dict[str, Any]]:
    found = await service.ok("GET", f"/v1/monitors/ml/churn/predictions?entity_id={entity}")
    return list(found["predictions"])


@pytest.mark.parametrize("reverse", [False, True], ids=["request-first", "response-first"])
async def test_the_two_halves_of_an_inference_make_one_record_labeled_by_the_event_id(
    start_service: ServiceFactory, clock: FakeClock, reverse: bool
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    answer = await pair(
        service, "8c1f0b9e-51ad-4d6e-9a43-0d1b2f3c4e5f", clock.now - 2, reverse=reverse
    )
    assert answer == {
        "id": "8c1f0b9e-51ad-4d6e-9a43-0d1b2f3c4e5f",
        "half": "request" if reverse else "response",
        "monitor": "ml/churn",
        "outcome": "paired",
        "accepted": 1,
        "duplicates": 0,
    }
    (stored,) = await timeline(service)
    assert stored["prediction_id"] == EVENT_ID
    assert stored["model_version"] == "default"  # KServe's endpoint: no version named otherwise
    assert stored["ts"] == pytest.approx(clock.now - 2)
    assert stored["features"] == {"tenure": 3, "plan": "basic"}
    assert stored["served_by"] == "model"
    labeled = await service.feedback(
        {
            "monitor": "ml/churn",
            "prediction_id": "8c1f0b9e-51ad-4d6e-9a43-0d1b2f3c4e5f",
            "actual": 1,
        }
    )
    assert labeled == {"matched": 1, "pending": 0}


async def test_a_half_delivered_again_is_a_duplicate_before_and_after_the_pair(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    request, response = inference()
    meta = {"metadata": {"X-Entity-Id": ["c-1"]}, "ts": clock.now - 1}
    assert (await send(service, "request", "e1", request, **meta))[1]["outcome"] == "waiting"
    assert (await send(service, "request", "e1", request, **meta))[1]["outcome"] == "duplicate"
    assert (await send(service, "response", "e1", response, **meta))[1]["outcome"] == "paired"
    for half, payload in (("response", response), ("request", request)):
        status, body = await send(service, half, "e1", payload, **meta)
        assert (status, body["outcome"]) == (200, "duplicate")
    assert len(await timeline(service)) == 1


async def test_two_replicas_pair_the_halves_each_got(
    replicas: tuple[Service, Service], clock: FakeClock
) -> None:
    first, second = replicas
    await first.put_monitor(churn())
    request, response = inference()
    meta = {"metadata": {"X-Entity-Id": ["c-1"]}, "ts": clock.now - 1}
    for n in range(20):
        one, other = (first, second) if n % 2 else (second, first)
        status, body = await send(one, "request", f"r{n}", request, **meta)
        assert (status, body["outcome"]) == (200, "waiting"), body
        status, body = await send(other, "response", f"r{n}", response, **meta)
        assert (status, body["outcome"], body["accepted"]) == (200, "paired", 1), body
    assert len(await timeline(first)) == 20
    labeled = await second.feedback({"monitor": "ml/churn", "prediction_id": "r7", "actual": 0})
    assert labeled == {"matched": 1, "pending": 0}
    # both halves at once, each to its replica, and one of them again: one pair each
    sent = [
        send(replica, half, f"s{n}", payload, **meta)
        for n in range(20)
        for replica, half, payload in (
            (first, "request", request),
            (second, "response", response),
            (second if n % 2 else first, "request", request),
        )
    ]
    answers = await asyncio.gather(*sent)
    assert {status for status, _ in answers} == {200}
    outcomes = [body["outcome"] for _, body in answers]
    assert (outcomes.count("paired"), outcomes.count("waiting")) == (20, 20)
    assert sum(body.get("accepted", 0) for _, body in answers) == 20
    assert len(await timeline(second)) == 40


async def test_a_transformers_and_its_predictors_halves_pair_apart(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """Both components may log one inference under one id: each pairs its own halves."""
    service = await start_service()
    await service.put_monitor(churn())
    request, response = inference()
    meta = {"metadata": {"X-Entity-Id": ["c-1"]}, "ts": clock.now - 1}
    status, body = await send(service, "request", "t1", request, component="transformer", **meta)
    assert (status, body["outcome"]) == (200, "waiting")
    status, body = await send(service, "response", "t1", response, **meta)
    assert (status, body["outcome"]) == (200, "waiting")
    status, body = await send(service, "request", "t1", request, **meta)
    assert (status, body["outcome"], body["accepted"]) == (200, "paired", 1)


async def test_a_half_left_alone_expires_counted_by_what_it_missed(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    window = 60.0
    service = await start_service(cloudevents=CloudEventSettings(pair_window=window))
    await service.put_monitor(churn())
    request, response = inference()
    await send(service, "request", "slow", request, ts=clock.now)
    await send(service, "response", "orphan", response, ts=clock.now)
    await send(service, "request", "done", request, ts=clock.now)
    await send(service, "response", "done", response, ts=clock.now)
    clock.advance(window - 1)
    await service.tick()
    text = await service.scrape()
    assert sample(text, "truthloop_cloudevents_unpaired_total", reason="no_response") == 0
    clock.advance(2)
    await service.tick()
    await service.tick()  # the totals the exporter reads are read at the end of a tick
    text = await service.scrape()
    assert sample(text, "truthloop_cloudevents_unpaired_total", reason="no_response") == 1
    assert sample(text, "truthloop_cloudevents_unpaired_total", reason="no_request") == 1
    # expired with its pair: the id is new again, and "slow"'s late response waits anew
    status, body = await send(service, "response", "slow", response, ts=clock.now)
    assert (status, body["outcome"]) == (200, "waiting")


async def test_waiting_halves_are_bounded_and_a_waiting_half_still_pairs(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    limits = CloudEventSettings(max_waiting=2, max_event_bytes=1000)
    service = await start_service(cloudevents=limits)
    await service.put_monitor(churn())
    request, response = inference()
    for event_id in ("a", "b"):
        assert (await send(service, "request", event_id, request, ts=clock.now))[0] == 200
    status, body = await send(service, "request", "c", request, ts=clock.now)
    assert status == 429, body
    assert body["details"] == [
        {
            "index": None,
            "field": "monitor",
            "message": "ml/churn keeps at most 2 halves waiting; a new event is refused until"
            " some pair or expire",
            "reason": "too_many_waiting",
        }
    ]
    status, body = await send(service, "response", "a", response, ts=clock.now)
    assert (status, body["outcome"]) == (200, "paired")
    assert (await send(service, "request", "c", request, ts=clock.now))[1]["outcome"] == "waiting"
    big = {"instances": [{"text": "x" * 1000}]}
    status, body = await send(service, "request", "d", big, ts=clock.now)
    assert (status, body["details"][0]["reason"]) == (413, "too_large")
    text = await service.scrape()
    assert sample(text, "truthloop_cloudevents_refused_total", reason="too_many_waiting") == 1


async def test_a_bad_event_is_refused_naming_the_attribute(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    request, _ = inference()
    headers, body = logged("request", "x1", request, ts=clock.now)

    async def refused(**changed: str | None) -> tuple[int, str, str]:
        sent = {**headers, **changed}
        status, answer = await service.call(
            "POST", PATH, data=body, headers={k: v for k, v in sent.items() if v is not None}
        )
        (found,) = answer["details"]
        return status, found["field"], found["reason"]

    assert await refused(**{"Ce-Id": None}) == (400, "ce-id", "missing")
    assert await refused(**{"Ce-Type": "com.example.other"}) == (400, "ce-type", "invalid")
    assert await refused(**{"Ce-Specversion": "0.3"}) == (400, "ce-specversion", "invalid")
    assert await refused(**{"Ce-Time": "yesterday"}) == (400, "ce-time", "invalid")
    assert await refused(**{"Ce-Metadata": "[1]"}) == (400, "ce-metadata", "wrong_type")
    assert await refused(**{"Ce-Namespace": None}) == (400, "monitor", "missing")
    assert await refused(**{"Ce-Inferenceservicename": "fraud"}) == (
        404,
        "monitor",
        "unknown_monitor",
    )


async def test_the_logger_url_names_the_monitor_and_the_version(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    request, response = inference()
    meta = {"isvc": "churn-v2", "namespace": "serving", "ts": clock.now - 1}
    query = "?monitor=ml/churn&version=2026-01-rc1"
    meta["metadata"] = {"X-Entity-Id": ["c-1"]}
    assert (await send(service, "request", "n1", request, query=query, **meta))[0] == 200
    status, body = await send(service, "response", "n1", response, query=query, **meta)
    assert (status, body["outcome"]) == (200, "paired")
    (stored,) = await timeline(service)
    assert stored["model_version"] == "2026-01-rc1"
    status, body = await send(service, "request", "n2", request, query="?monitor=ml", **meta)
    assert (status, body["details"][0]["field"]) == (400, "monitor")


async def test_a_pair_the_capture_spec_finds_nothing_in_is_refused_and_counted(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    request, _ = inference()
    await send(service, "request", "q1", request, ts=clock.now)
    status, body = await send(service, "response", "q1", {"outputs": []}, ts=clock.now)
    assert status == 400
    (found,) = body["details"]
    assert (found["field"], found["reason"]) == ("data", "not_captured")
    assert found["message"].startswith("prediction_missing: ")
    await send(service, "request", "q2", request, ts=clock.now)
    status, body = await send(service, "response", "q2", {"predictions": ["cat"]}, ts=clock.now)
    assert (status, body["details"][0]["reason"]) == (400, "unusable_label")
    text = await service.scrape()
    assert sample(text, "truthloop_cloudevents_refused_total", reason="prediction_missing") == 1
    assert sample(text, "truthloop_cloudevents_refused_total", reason="invalid_records") == 1


async def test_a_structured_event_pairs_with_a_binary_one(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn())
    request, _ = inference()
    await send(service, "request", "s1", request, ts=clock.now, metadata={"X-Entity-Id": ["c-1"]})
    event = {
        "specversion": "1.0",
        "id": "s1",
        "source": "elsewhere",
        "type": "org.kubeflow.serving.inference.response",
        "namespace": "ml",
        "inferenceservicename": "churn",
        "component": "predictor",
        "data_base64": base64.b64encode(b'{"predictions": [0]}').decode(),
    }
    structured = {"Content-Type": "application/cloudevents+json"}
    status, body = await service.call("POST", PATH, data=json.dumps(event), headers=structured)
    assert (status, body["outcome"]) == (200, "paired"), body
    assert [r["prediction"] for r in await timeline(service)] == [0]


async def test_the_logger_authenticates_with_the_token_in_its_url(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """KServe's logger sends no header of its choosing: `http://user:<token>@host/...` makes Go
    send Basic credentials, whose password is the namespace's token."""
    service = await start_service(token="admin-s3cret")
    await service.put_monitor(churn())
    await service.put_monitor(churn(namespace="other"))
    await service.ok("PUT", "/v1/tokens/ml", json={"sha256": scopes.digest("token-of-ml")})
    request, _ = inference()

    def basic(password: str) -> str:
        return "Basic " + base64.b64encode(f"truthloop:{password}".encode()).decode()

    status, body = await send(service, "request", "t1", request, ts=clock.now, auth=basic("nope"))
    assert (status, body["details"][0]["reason"]) == (401, "unauthorized")
    status, body = await send(
        service, "request", "t1", request, ts=clock.now, auth=basic("token-of-ml")
    )
    assert (status, body["outcome"]) == (200, "waiting")
    status, body = await send(
        service,
        "request",
        "t2",
        request,
        ts=clock.now,
        namespace="other",
        auth=basic("token-of-ml"),
    )
    assert (status, body["details"][0]["reason"]) == (403, "wrong_namespace")


async def test_a_monitor_sampling_a_share_stores_none_of_the_rest(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    await service.put_monitor(churn(capture={**CAPTURE, "sampleRate": 0.5}))
    request, _ = inference()
    ids = [f"z{n}" for n in range(8)]
    kept = {i for i in ids if capture.sampled(i, 0.5)}
    assert 0 < len(kept) < len(ids)
    for event_id in ids:
        status, body = await send(service, "request", event_id, request, ts=clock.now)
        assert (status, body["outcome"]) == (200, "waiting" if event_id in kept else "sampled_out")


LOGGED_BY_KSERVE = [name for name in exchanges.names() if name.startswith(("kserve", "mlserver"))]
"""The recorded exchanges of servers KServe runs (its own, and MLServer, its v2 runtime)."""


def go_header(name: str) -> str:
    """A header's name as Go writes it (`X-Entity-IDs` → `X-Entity-Ids`), as the logger's
    `metadata` carries it."""
    return "-".join(part.capitalize() for part in name.split("-"))


async def test_a_logged_batch_gives_the_rows_the_sidecar_captures_labeled_by_row_id(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """Each recorded exchange of KServe's servers, as its logger sends it, stores the rows a
    sidecar captures from it, with IDs `<id>.<row>` that `/v1/feedback` labels."""
    service = await start_service()
    for name in LOGGED_BY_KSERVE:
        exchange = exchanges.load(name)
        await service.put_monitor(monitor_body(name=name, capture=exchanges.capture(exchange)))
        metadata = {go_header(k): [v] for k, v in exchange["headers"].items()}
        event_id = f"{name}-0009174a"
        for half in ("request", "response"):
            status, body = await send(
                service, half, event_id, exchange[half], ts=clock.now - 1, isvc=name,
                metadata=metadata,
            )  # fmt: skip
            assert status == 200, (name, body)
        rows = exchange["rows"]
        assert (body["outcome"], body["accepted"]) == ("paired", len(rows)), name
        registered = service.engine.registered(f"ml/{name}")
        query = DatasetQuery(registered.id, clock.now - 60, clock.now + 60, labeled=False)
        stored = [r for chunk in [c async for c in service.engine.store.chunks(query, 100)]
                  for r in chunk]  # fmt: skip
        assert [
            {"id": r.prediction_id, "entity_id": r.entity_id, "prediction": r.prediction,
             "score": r.score, "features": r.features}
            for r in sorted(stored, key=lambda r: r.prediction_id)
        ] == [
            {"id": f"{event_id}.{i}", **row} for i, row in enumerate(rows)
        ], name  # fmt: skip
        labels = [
            {"monitor": f"ml/{name}", "prediction_id": f"{event_id}.{i}", "actual": 1}
            for i in range(len(rows))
        ]
        assert await service.feedback(*labels) == {"matched": len(rows), "pending": 0}


async def test_a_gzipped_answer_is_read_inflated(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """The logger logs the bytes the model server wrote: MLServer's gzipped answer too."""
    limits = CloudEventSettings(max_event_bytes=2000)
    service = await start_service(cloudevents=limits)
    await service.put_monitor(churn())
    request, response = inference()
    meta = {"metadata": {"X-Entity-Id": ["c-1"]}, "ts": clock.now}
    await send(service, "request", "g1", request, **meta)
    status, body = await send(
        service, "response", "g1", gzip.compress(json.dumps(response).encode()), **meta
    )
    assert (status, body["outcome"]) == (200, "paired")
    bomb = gzip.compress(json.dumps({"predictions": [0] * 5000}).encode())
    status, body = await send(service, "response", "g2", bomb, **meta)
    assert (status, body["details"][0]["field"], body["details"][0]["reason"]) == (
        413,
        "data",
        "too_large",
    )
