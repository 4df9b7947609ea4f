"""One token per namespace: what a namespace's token may do at the service, on both stores.

The operator (admin) token registers a namespace token by its SHA-256 (`PUT /v1/tokens/{ns}`);
that token may then capture, send feedback and read for its namespace's monitors and nothing
else: another namespace's monitor, a spec PUT or DELETE, a manual fallback switch are 403 with
a JSON body naming why.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.feedback import FakeClock, Service, ServiceFactory, monitor_body, record
from truthloop.core import scopes

pytest_plugins = ["tests.support.feedback_fixtures"]

ADMIN = "admin-s3cret"
TOKEN_A = "token-of-namespace-a"


async def as_token(
    service: Service, token: str, method: str, path: str, json: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with service.http.request(
        method, service.base + path, json=json, headers=headers
    ) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def two_namespaces(start_service: ServiceFactory) -> Service:
    service = await start_service(token=ADMIN)
    await service.put_monitor(monitor_body(namespace="a"))
    await service.put_monitor(monitor_body(namespace="b"))
    answer = await service.ok("PUT", "/v1/tokens/a", json={"sha256": scopes.digest(TOKEN_A)})
    assert answer == {"namespace": "a", "sha256": scopes.digest(TOKEN_A)}
    return service


async def test_a_namespace_token_captures_sends_feedback_and_reads_for_its_namespace(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await two_namespaces(start_service)
    batch = [record("p1", 1, ts=clock.now - 5, monitor="a/churn", entity_id="u1")]
    assert await as_token(service, TOKEN_A, "POST", "/v1/predictions", batch) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    actual = {"monitor": "a/churn", "prediction_id": "p1", "actual": 1}
    assert await as_token(service, TOKEN_A, "POST", "/v1/feedback", actual) == (
        200,
        {"matched": 1, "pending": 0},
    )
    status, body = await as_token(service, TOKEN_A, "GET", "/v1/monitors/a/churn/metrics")
    assert (status, body["labeled"]) == (200, 1)


async def test_a_namespace_token_is_refused_for_another_namespace_s_monitors(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await two_namespaces(start_service)
    batch = [
        record("p1", 1, ts=clock.now - 5, monitor="a/churn"),
        record("p2", 1, ts=clock.now - 5, monitor="b/churn"),
    ]
    status, body = await as_token(service, TOKEN_A, "POST", "/v1/predictions", batch)
    assert status == 403, body
    assert body["details"] == [
        {
            "index": 1,
            "field": "monitor",
            "message": "b/churn is not in namespace a, the token's",
            "reason": "wrong_namespace",
        }
    ]
    actual = {"monitor": "b/churn", "prediction_id": "p2", "actual": 1}
    status, body = await as_token(service, TOKEN_A, "POST", "/v1/feedback", actual)
    assert status == 403, body
    assert (body["details"][0]["field"], body["details"][0]["reason"]) == (
        "monitor",
        "wrong_namespace",
    )
    assert (await service.metrics("a/churn"))["samples"] == 0  # the whole batch was refused


async def test_a_namespace_token_may_not_change_even_its_own_namespace_s_monitors(
    start_service: ServiceFactory,
) -> None:
    service = await two_namespaces(start_service)
    attempts = [
        ("PUT", "/v1/monitors/a/churn", monitor_body(namespace="a")),
        ("PUT", "/v1/monitors/a/new", monitor_body(name="new", namespace="a")),
        ("DELETE", "/v1/monitors/a/churn", None),
        ("POST", "/v1/monitors/a/churn/fallback", {"mode": "engaged"}),
        ("POST", "/v1/monitors/b/churn/fallback", {"mode": "engaged"}),
        ("DELETE", "/v1/monitors/b/churn", None),
        ("POST", "/v1/alertmanager", {"alerts": []}),
        ("PUT", "/v1/tokens/b", {"sha256": scopes.digest("mine now")}),
    ]
    for method, path, json in attempts:
        status, body = await as_token(service, TOKEN_A, method, path, json)
        assert status == 403, (method, path, body)
        detail = body["details"][0]
        assert (detail["field"], detail["reason"]) == ("Authorization", "admin_only")
    assert (await service.state("a/churn"))["fallback"]["active"] is False
    assert (await service.state("b/churn"))["fallback"]["active"] is False
    assert await service.ok("GET", "/v1/monitors/a/churn")
    status, _ = await as_token(service, "mine now", "POST", "/v1/predictions", [])
    assert status == 401


async def test_the_admin_token_may_do_everything(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await two_namespaces(start_service)  # its session carries the admin token
    batch = [
        record("p1", 1, ts=clock.now - 5, monitor="a/churn"),
        record("p2", 1, ts=clock.now - 5, monitor="b/churn"),
    ]
    assert await service.predictions(batch) == {"accepted": 2, "duplicates": 0}
    await service.ok("POST", "/v1/monitors/b/churn/fallback", json={"mode": "engaged"})
    assert await service.ok("DELETE", "/v1/monitors/b/churn") == {"deleted": "b/churn"}


async def test_a_new_token_for_a_namespace_replaces_its_old_one_across_a_restart(
    start_service: ServiceFactory,
) -> None:
    service = await two_namespaces(start_service)
    await service.ok("PUT", "/v1/tokens/a", json={"sha256": scopes.digest("rotated")})
    assert (await as_token(service, TOKEN_A, "POST", "/v1/predictions", []))[0] == 401
    assert (await as_token(service, "rotated", "POST", "/v1/predictions", []))[0] == 200
    await service.stop()
    again = await start_service(token=ADMIN)
    assert (await as_token(again, "rotated", "POST", "/v1/predictions", []))[0] == 200
    assert (await as_token(again, TOKEN_A, "POST", "/v1/predictions", []))[0] == 401


async def test_a_token_registration_names_what_is_wrong(start_service: ServiceFactory) -> None:
    service = await start_service(token=ADMIN)
    bad = [
        ("/v1/tokens/a", {"sha256": "ABC"}, "sha256"),
        ("/v1/tokens/a", {"token": "x"}, "sha256"),
        ("/v1/tokens/Not_A_Namespace", {"sha256": scopes.digest("x")}, "namespace"),
        (f"/v1/tokens/{'a' * 64}", {"sha256": scopes.digest("x")}, "namespace"),
    ]
    for path, json, field in bad:
        status, body = await service.call("PUT", path, json=json)
        assert (status, body["details"][0]["field"]) == (400, field), body


async def test_an_overlong_token_is_refused_like_a_wrong_one(
    start_service: ServiceFactory,
) -> None:
    service = await two_namespaces(start_service)
    long = "x" * 5000
    await service.ok("PUT", "/v1/tokens/b", json={"sha256": scopes.digest(long)})
    status, body = await as_token(service, long, "POST", "/v1/predictions", [])
    assert (status, body["details"][0]["reason"]) == (401, "unauthorized")


async def test_a_refused_batch_of_a_namespace_token_marks_no_other_namespace_s_capture(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await two_namespaces(start_service)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            service.base + "/v1/predictions",
            json=[record("p", 1, ts=clock.now - 5, monitor="b/churn")],
            headers={"Authorization": f"Bearer {TOKEN_A}", "X-Truthloop-Monitor": "b/churn"},
        ) as response,
    ):
        assert response.status == 403
    assert (await service.state("b/churn"))["capture"]["refused"] is None
