"""The admin port: health, readiness following the model's port, metrics from its own registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.support.ports import free_port
from truthloop.sidecar import admin, server


@pytest.fixture
async def model_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def healthy() -> dict[str, object]:
    return {"refused": None, "since": None, "spooled_records": 0}


async def serve(routes: dict[bytes, server.Handler]) -> tuple[server.Server, str]:
    running = await server.start(routes, "127.0.0.1", 0, server.Limits())
    return running, f"http://127.0.0.1:{running.port}"


async def test_ready_while_the_model_accepts_connections_unready_when_not(model_port: int) -> None:
    registry = CollectorRegistry()
    up = admin.ModelProbe("127.0.0.1", model_port, ttl=0.0)
    down = admin.ModelProbe("127.0.0.1", free_port(), ttl=0.0)
    serving_up, url_up = await serve(admin.routes(registry, up, healthy))
    serving_down, url_down = await serve(admin.routes(registry, down, healthy))
    async with aiohttp.ClientSession() as session:
        async with session.get(url_up + "/readyz") as r:
            assert r.status == 200
        async with session.get(url_down + "/readyz") as r:
            assert r.status == 503
            assert "model" in (await r.json())["status"]
        async with session.get(url_down + "/healthz") as r:
            assert r.status == 200
    await serving_up.close()
    await serving_down.close()


async def test_readiness_probes_are_cached_for_their_ttl(model_port: int) -> None:
    probe = admin.ModelProbe("127.0.0.1", model_port, ttl=60.0)
    assert await probe.ready()
    probe.port = free_port()  # the model went away: not seen until the ttl passes
    assert all(await asyncio.gather(*(probe.ready() for _ in range(10))))


async def test_metrics_come_from_the_given_registry(model_port: int) -> None:
    registry = CollectorRegistry()
    Counter("truthloop_sidecar_example", "An example.", registry=registry).inc(3)
    serving, url = await serve(
        admin.routes(registry, admin.ModelProbe("127.0.0.1", model_port), healthy)
    )
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as r:
        text = await r.text()
    await serving.close()
    assert "truthloop_sidecar_example_total 3.0" in text
    assert "python_gc" not in text  # not the global registry
