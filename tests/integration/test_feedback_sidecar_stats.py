"""`POST /v1/sidecar-stats` and `GET .../sidecar` on both stores: pods' minutes add up, a step
says requests, errors, latency and fallback share; a namespace token posts for its namespace
only; a body out of bounds or naming an unknown key is refused whole, naming it; retention."""

from __future__ import annotations

import io
from typing import Any

import msgspec
import pytest

from tests.support.feedback import T0, FakeClock, Service, ServiceFactory, monitor_body
from truthloop.core import scopes, windows

pytest_plugins = ["tests.support.feedback_fixtures"]

ADMIN = "admin-s3cret"
TOKEN_A = "token-of-namespace-a"
HOUR = 3600.0


def minute(start: float, counts: dict[str, float] | None = None) -> dict[str, Any]:
    return {"start": start, "counts": counts or {}}


def posted(monitor: str, *minutes: dict[str, Any], pod: str = "churn-7d9-x") -> dict[str, Any]:
    return {"monitor": monitor, "pod": pod, "minutes": list(minutes)}


async def post(service: Service, body: Any, token: str | None = ADMIN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await service.call("POST", "/v1/sidecar-stats", json=body, headers=headers)


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    running = await start_service(token=ADMIN)
    await running.put_monitor(monitor_body())
    return running


NOW = windows.bucket_start(windows.bucket_of(T0))
"""The start of the minute holding the test clock's now."""


async def test_two_pods_add_up_and_each_step_says_what_its_minutes_did(
    service: Service,
) -> None:
    pod_a = posted(
        "ml/churn",
        minute(NOW - 60, {"requests:model": 90, "requests:fallback": 10,
                          "errors:model_timeout": 5, "latency_le:0.01": 80, "latency_le:0.1": 99,
                          "latency_le:+Inf": 100, "latency_sum": 2.0}),
        minute(NOW, {"requests:model": 50, "latency_le:0.01": 50, "latency_le:+Inf": 50}),
    )  # fmt: skip
    pod_b = posted(
        "ml/churn",
        minute(NOW - 60, {"requests:model": 100, "errors:model_unreachable": 2,
                          "latency_le:0.01": 100, "latency_le:0.1": 100, "latency_le:+Inf": 100,
                          "latency_sum": 0.5, "records_dropped:queue_full": 3}),
        pod="churn-7d9-y",
    )  # fmt: skip
    assert await post(service, pod_a) == (200, {"minutes": 2})
    assert await post(service, pod_b) == (200, {"minutes": 1})

    answer = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=5m&series=1m")
    assert answer["monitor"] == "ml/churn"
    assert answer["step"] == 60
    assert answer["window"]["end"] == NOW + 60
    assert [s["start"] for s in answer["series"]] == [NOW - 240 + 60 * i for i in range(5)]
    before, last = answer["series"][3], answer["series"][4]
    assert before["requests"] == 200
    assert before["served_by"] == {"model": 190, "fallback": 10}
    assert before["errors"] == {"model_timeout": 5, "model_unreachable": 2}
    assert before["error_rate"] == pytest.approx(7 / 200)
    assert before["fallback_share"] == pytest.approx(10 / 200)
    assert before["records_dropped"] == {"queue_full": 3}
    # 180 of 200 within 10 ms: the median inside the first bucket, the 99th in the second
    assert before["latency"]["p50"] == pytest.approx(0.01 * 100 / 180)
    assert before["latency"]["p99"] == pytest.approx(0.01 + 0.09 * (198 - 180) / (199 - 180))
    assert before["latency"]["mean"] == pytest.approx(2.5 / 200)
    assert before["model_latency"] == {"p50": None, "p99": None, "mean": None}
    assert (last["requests"], last["error_rate"]) == (50, 0.0)
    assert answer["series"][0] == {
        "start": NOW - 240,
        "requests": 0,
        "served_by": {"model": 0, "fallback": 0},
        "errors": {},
        "error_rate": None,
        "fallback_share": None,
        "latency": {"p50": None, "p99": None, "mean": None},
        "model_latency": {"p50": None, "p99": None, "mean": None},
        "records_dropped": {},
        "passthrough": {},
    }
    assert answer["total"]["requests"] == 250
    assert answer["total"]["errors"] == {"model_timeout": 5, "model_unreachable": 2}

    hourly = await service.ok("GET", "/v1/monitors/ml/churn/sidecar")
    assert (hourly["window"]["seconds"], hourly["step"]) == (HOUR, 60)
    assert len(hourly["series"]) == 60
    assert hourly["total"]["requests"] == 250
    daily = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=1d&points=100")
    assert daily["step"] == 15 * 60  # the nice step at least 1440 / 100 minutes
    assert sum(s["requests"] for s in daily["series"]) == 250


async def test_a_namespace_token_posts_minutes_for_its_namespace_only(service: Service) -> None:
    await service.put_monitor(monitor_body(namespace="a"))
    await service.ok("PUT", "/v1/tokens/a", json={"sha256": scopes.digest(TOKEN_A)})
    body = posted("a/churn", minute(NOW, {"requests:model": 1}))
    assert await post(service, body, TOKEN_A) == (200, {"minutes": 1})
    status, answer = await post(service, posted("ml/churn", *body["minutes"]), TOKEN_A)
    assert status == 403
    assert answer["details"][0]["field"] == "monitor"
    assert answer["details"][0]["reason"] == "wrong_namespace"
    status, answer = await post(service, body, token="not-a-token")
    assert status == 401
    assert answer["details"][0]["reason"] == "unauthorized"


GOOD = minute(NOW, {"requests:model": 1})


BAD = [  # body, the field named, the reason
    (posted("ml/churn", GOOD, minute(NOW, {"requests:tunnel": 1})),
     "minutes[1].counts.requests:tunnel", "unknown_key"),
    (posted("ml/churn", GOOD, minute(NOW, {"latency_le:0.003": 1})),
     "minutes[1].counts.latency_le:0.003", "unknown_key"),
    (posted("ml/churn", GOOD, minute(NOW, {"bytes": 3})), "minutes[1].counts.bytes",
     "unknown_key"),
    (posted("ml/churn", GOOD, minute(NOW, {"errors:Timeout": 3})),
     "minutes[1].counts.errors:Timeout", "unknown_key"),
    (posted("ml/churn", minute(NOW, {"requests:model": -1})),
     "minutes[0].counts.requests:model", "out_of_range"),
    (posted("ml/churn", GOOD, minute(-60)), "minutes[1].start", "out_of_range"),
    (posted("ml/churn", *[GOOD] * 61), "minutes", "too_many_items"),
    (posted("ml/churn", minute(NOW, {f"errors:e{i}": 1 for i in range(201)})),
     "minutes[0].counts", "too_many_items"),
    (posted("ml/churn", GOOD, pod="p" * 254), "pod", "too_long"),
    ({"monitor": "ml/churn", "minutes": [GOOD, {"start": "now", "counts": {}}]}, "minutes",
     "wrong_type"),
    ({"pod": "x", "minutes": [GOOD]}, "monitor", "missing"),
    (posted("ml/nobody", GOOD), "monitor", "unknown_monitor"),
]  # fmt: skip


async def test_a_bad_post_is_refused_whole_naming_the_field(service: Service) -> None:
    for body, field, reason in BAD:
        status, answer = await post(service, body)
        assert status == (404 if reason == "unknown_monitor" else 400), answer
        assert (answer["details"][0]["field"], answer["details"][0]["reason"]) == (field, reason)
    shown = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=5m")
    assert shown["total"]["requests"] == 0


async def test_a_body_over_a_mebibyte_is_413_and_queries_are_checked(service: Service) -> None:
    big = io.BytesIO(msgspec.json.encode(posted("ml/churn", GOOD, pod="x" * (1024 * 1024))))
    headers = {"Content-Type": "application/json"}
    status, answer = await service.call("POST", "/v1/sidecar-stats", data=big, headers=headers)
    assert (status, answer["details"][0]["reason"]) == (413, "too_large")
    refused = (
        ("window=0s", "window"),
        ("series=30s", "series"),
        ("step=1m", "step"),
        ("window=30d&series=1m", "series"),
        ("series=1m&points=5", "points"),
    )
    for query, field in refused:
        status, answer = await service.call("GET", f"/v1/monitors/ml/churn/sidecar?{query}")
        assert (status, answer["details"][0]["field"]) == (400, field), query
    status, answer = await service.call("GET", "/v1/monitors/ml/nobody/sidecar")
    assert (status, answer["details"][0]["reason"]) == (404, "unknown_monitor")


async def test_retention_deletes_old_minutes_at_the_tick(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service(retention=2 * HOUR)
    await service.put_monitor(monitor_body())
    body = posted(
        "ml/churn",
        minute(NOW - 150 * 60, {"requests:model": 3}),
        minute(NOW - 10 * 60, {"requests:model": 4}),
    )
    assert await post(service, body, token=None) == (200, {"minutes": 2})
    answer = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=3h&series=1h")
    assert answer["total"]["requests"] == 7
    await service.tick()
    answer = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=3h&series=1h")
    assert answer["total"]["requests"] == 4


async def test_connections_passed_through_show_in_the_state_and_status_for_an_hour(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service(token=ADMIN)
    await service.put_monitor(monitor_body())
    await service.tick()
    assert (await capture_of(service))["passthrough"] is None

    first = posted("ml/churn", minute(NOW - 20 * 60, {"passthrough:h2c": 2}))
    second = posted(
        "ml/churn",
        minute(NOW - 60, {"passthrough:h2c": 5, "passthrough:websocket": 1, "requests:model": 9}),
        pod="churn-7d9-y",
    )
    assert await post(service, first) == (200, {"minutes": 1})
    assert await post(service, second) == (200, {"minutes": 1})
    clock.advance(60)  # the leader reads the sidecars' minutes once a minute
    await service.tick()
    said = {"connections": {"h2c": 7, "websocket": 1}, "since": NOW - 20 * 60, "last": NOW - 60}
    assert (await capture_of(service))["passthrough"] == said
    status = (await service.ok("GET", "/v1/monitors/ml/churn"))["status"]
    assert status["capture"]["passthrough"] == said

    restarted = await start_service(token=ADMIN)  # the leader's reading is kept in the state
    assert (await capture_of(restarted))["passthrough"] == said
    await service.stop()

    clock.advance(40 * 60)  # the first minute is out of the hour; the stretch goes on
    await restarted.tick()
    later = {"connections": {"h2c": 5, "websocket": 1}, "since": NOW - 20 * 60, "last": NOW - 60}
    assert (await capture_of(restarted))["passthrough"] == later
    clock.advance(HOUR)
    await restarted.tick()
    assert (await capture_of(restarted))["passthrough"] is None


async def capture_of(service: Service) -> Any:
    return (await service.ok("GET", "/v1/monitors/ml/churn/state"))["capture"]
