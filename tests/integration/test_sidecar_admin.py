"""The admin port: health, readiness following the model's port, metrics from its own registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from tests.integration.sidecar_fakes import free_port
from truthloop.sidecar import admin


@pytest.fixture
async def model_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def healthy() -> dict[str, object]:
    return {"refused": None, "since": None, "spooled_records": 0}


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_ready_while_the_model_accepts_connections_unready_when_not(model_port: int) -> None:
    registry = CollectorRegistry()
    up = admin.ModelProbe("127.0.0.1", model_port, ttl=0.0)
    down = admin.ModelProbe("127.0.0.1", free_port(), ttl=0.0)
    runner_up, url_up = await serve(admin.build(registry, up, healthy))
    runner_down, url_down = await serve(admin.build(registry, down, healthy))
    async with aiohttp.ClientSession() as session:
        async with session.get(url_up + "/readyz") as r:
            assert r.status == 200
        async with session.get(url_down + "/readyz") as r:
            assert r.status == 503
            assert "model" in (await r.json())["status"]
        async with session.get(url_down + "/healthz") as r:
            assert r.status == 200
    await runner_up.cleanup()
    await runner_down.cleanup()


async def test_readiness_probes_are_cached_for_their_ttl(model_port: int) -> None:
    probe = admin.ModelProbe("127.0.0.1", model_port, ttl=60.0)
    assert await probe.ready()
    probe.port = free_port()  # the model went away: not seen until the ttl passes
    assert all(await asyncio.gather(*(probe.ready() for _ in range(10))))


async def test_metrics_come_from_the_given_registry(model_port: int) -> None:
    registry = CollectorRegistry()
    Counter("truthloop_sidecar_example", "An example.", registry=registry).inc(3)
    runner, url = await serve(
        admin.build(registry, admin.ModelProbe("127.0.0.1", model_port), healthy)
    )
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as r:
        text = await r.text()
    await runner.cleanup()
    assert "truthloop_sidecar_example_total 3.0" in text
    assert "python_gc" not in text  # not the global registry
