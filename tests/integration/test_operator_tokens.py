"""One token per namespace: the operator mints each monitored namespace's token into the Secret
its sidecars mount, registers it with the (real) feedback service, and mints a new one when the
Secret is deleted or annotated `truthloop.dev/rotate`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kmock

from tests.support.feedback import monitor_body, record
from tests.support.operator_harness import TOKEN, World, WorldFactory, secret_value
from tests.support.waiting import eventually
from truthloop.operator.monitors import ROTATE
from truthloop.operator.settings import StatusSettings

pytest_plugins = ["tests.support.operator_fixtures"]

SECRETS = kmock.resource("", "v1", "secrets")
SECRET_PATH = "/api/v1/namespaces/{namespace}/secrets/truthloop-token"


def token_in(world: World, namespace: str) -> str | None:
    if not world.api.exists(SECRETS, namespace, "truthloop-token"):
        return None
    return secret_value(world.api.object(SECRETS, namespace, "truthloop-token"), "token")


async def status_as(world: World, token: str, method: str, path: str, json: Any = None) -> int:
    service = world.service
    headers = {"Authorization": f"Bearer {token}"}
    async with service.http.request(
        method, service.base + path, json=json, headers=headers
    ) as response:
        return response.status


async def test_each_namespace_gets_a_token_of_its_own_that_reaches_only_its_monitors(
    world: World,
) -> None:
    for namespace in ("ml", "shop"):
        await world.create(monitor_body(namespace=namespace))
    ml = await eventually(lambda: token_in(world, "ml"), "ml's token Secret")
    shop = await eventually(lambda: token_in(world, "shop"), "shop's token Secret")
    assert len({ml, shop, TOKEN}) == 3
    ts = world.clock.now - 5
    own = [record("p1", 1, ts=ts, monitor="ml/churn")]

    async def accepted() -> bool:  # registered before the Secret was written, so at once
        return await status_as(world, ml, "POST", "/v1/predictions", own) == 200

    assert await accepted()
    other = [record("p2", 1, ts=ts, monitor="shop/churn")]
    assert await status_as(world, ml, "POST", "/v1/predictions", other) == 403
    assert await status_as(world, shop, "POST", "/v1/predictions", other) == 200
    assert await status_as(world, ml, "DELETE", "/v1/monitors/ml/churn") == 403
    engage = {"mode": "engaged"}
    assert await status_as(world, ml, "POST", "/v1/monitors/ml/churn/fallback", engage) == 403
    assert not world.api.exists(SECRETS, "truthloop", "truthloop-token")


async def test_a_deleted_or_annotated_token_secret_gets_a_new_token(
    start_world: WorldFactory,
) -> None:
    quick = replace(
        StatusSettings(interval=0.5, backoff=(0.05, 0.1, 0.2), sweep_interval=3600),
        token_interval=0.0,
    )
    world = await start_world(status=quick)
    await world.create(monitor_body())
    first = await eventually(lambda: token_in(world, "ml"), "the token Secret")
    async with world.api.delete(SECRET_PATH.format(namespace="ml")) as response:
        assert response.status < 300
    second = await eventually(
        lambda: (token := token_in(world, "ml")) not in (None, first) and token, "a new token"
    )
    assert await status_as(world, first, "POST", "/v1/predictions", []) == 401
    assert await status_as(world, second, "POST", "/v1/predictions", []) == 200
    await world.patch(
        SECRET_PATH.format(namespace="ml"), {"metadata": {"annotations": {ROTATE: "now"}}}
    )
    third = await eventually(
        lambda: (token := token_in(world, "ml")) not in (second,) and token, "a rotated token"
    )
    secret = world.api.object(SECRETS, "ml", "truthloop-token")
    assert ROTATE not in (secret["metadata"].get("annotations") or {})
    assert await status_as(world, second, "POST", "/v1/predictions", []) == 401
    assert await status_as(world, third, "POST", "/v1/predictions", []) == 200
