"""A real sidecar posts its minute counters to a real feedback service on 127.0.0.1, which
answers them per step; a service that is away costs the requests nothing and gets the minutes
once it is back; the model's failures arrive as errors by reason. The sidecars here post every
0.2 s instead of every minute (posts within one minute add up)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import MONITOR, Model
from tests.support.feedback import Service
from tests.support.ports import free_port
from tests.support.waiting import eventually
from truthloop.feedback import settings as feedback_settings
from truthloop.sidecar.app import SidecarSettings

pytest_plugins = ["tests.integration.sidecar_fixtures"]

ADMIN = "admin-s3cret"


def service_at(tmp_path: Path) -> Service:
    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    return Service(feedback_settings.make(store=store, clock=time.time, token=ADMIN))


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    running = service_at(tmp_path)
    await running.start()
    await running.put_monitor(MONITOR)
    yield running
    await running.stop()


def sidecar_settings(
    model: Model, feedback_url: str, tmp_path: Path, token: str = ADMIN
) -> SidecarSettings:
    config = harness.settings(model, feedback_url, tmp_path / "spool", token=token)
    follower = replace(config.follower, wait=0.5)
    return replace(config, follower=follower, pod="churn-test-pod", minutes_interval=0.2)


async def sidecar_view(service: Service) -> Any:
    return await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=10m")


async def test_requests_and_their_latency_arrive_at_the_service(
    model: Model, service: Service, tmp_path: Path
) -> None:
    config = sidecar_settings(model, service.base, tmp_path)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(300), concurrency=8)
        assert {s.status for s in client.seen.values()} == {200}

        async def all_counted() -> Any:
            total = (await sidecar_view(service))["total"]
            return total if total["requests"] == 300 else None

        total = await eventually(all_counted, "300 requests in the sidecar's minutes")
    assert total["served_by"] == {"model": 300, "fallback": 0}
    assert (total["errors"], total["error_rate"], total["fallback_share"]) == ({}, 0.0, 0.0)
    slowest = max(s.seconds for s in client.seen.values())
    for histogram in ("latency", "model_latency"):
        p50, p99 = total[histogram]["p50"], total[histogram]["p99"]
        assert 0 < p50 <= p99 <= max(slowest, 0.0005) * 2.5, (histogram, p50, p99)
    assert sidecar.minutes.stats.posted >= 1
    assert not sidecar.minutes.stats.dropped
    assert not sidecar.minutes.pending


async def test_the_model_s_failures_arrive_as_errors_by_reason(
    model: Model, service: Service, tmp_path: Path
) -> None:
    config = sidecar_settings(model, service.base, tmp_path)
    gone = replace(config.proxy, model_port=free_port())  # no model listens there
    config = replace(config, proxy=gone)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(20), concurrency=4)
        assert {s.status for s in client.seen.values()} == {502}

        async def failed() -> Any:
            total = (await sidecar_view(service))["total"]
            return total if total["requests"] == 20 else None

        total = await eventually(failed, "20 failed requests in the sidecar's minutes")
    assert total["errors"] == {"model_unreachable": 20}
    assert total["error_rate"] == 1.0


async def test_a_service_away_costs_the_requests_nothing_and_gets_the_minutes_once_back(
    model: Model, tmp_path: Path
) -> None:
    registering = service_at(tmp_path)  # the monitor is known once the service is back
    await registering.start()
    await registering.put_monitor(MONITOR)
    await registering.stop()
    port = free_port()
    config = sidecar_settings(model, f"http://127.0.0.1:{port}", tmp_path)
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(100), concurrency=8)
        assert {s.status for s in client.seen.values()} == {200}
        await eventually(lambda: sidecar.minutes.pending, "a minute waiting for the service")
        assert not sidecar.minutes.stats.dropped
        assert sidecar.minutes.stats.posted == 0

        service = service_at(tmp_path)
        await service.start(port)
        try:

            async def all_counted() -> bool:
                total = (await sidecar_view(service))["total"]
                return bool(total["requests"] == 100)

            await eventually(all_counted, "the waiting minutes posted once the service is back")
            assert not sidecar.minutes.stats.dropped
        finally:
            await service.stop()


async def test_minutes_the_service_refuses_are_dropped_and_counted_not_retried(
    model: Model, service: Service, tmp_path: Path
) -> None:
    config = sidecar_settings(model, service.base, tmp_path, token="not-the-token")
    async with harness.running(config) as sidecar:
        client = Client(f"http://127.0.0.1:{sidecar.port}")
        await client.run(range(10), concurrency=2)
        assert {s.status for s in client.seen.values()} == {200}
        await eventually(lambda: sidecar.minutes.stats.dropped["http_401"], "a refused minute")
        assert not sidecar.minutes.pending
        assert sidecar.minutes.stats.posted == 0
        scraped = await harness.scrape(sidecar)
    assert 'truthloop_sidecar_minutes_dropped_total{reason="http_401"}' in scraped
    assert (await sidecar_view(service))["total"]["requests"] == 0
