"""A real sidecar in front of a model port that speaks gRPC and HTTP/1.1, with a real feedback
service on 127.0.0.1: gRPC calls pass through uncaptured and are counted (Prometheus, the minute
counters), HTTP/1.1 predictions on the same sidecar are captured, and the service's state and
status of the monitor say that connections went through uncaptured.

The service's clock starts at the wall clock's now (the sidecar posts wall-clock minutes) and is
moved on by the test: the leader reads the sidecars' minutes once a minute of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.integration import sidecar_harness as harness
from tests.integration.sidecar_harness import Client
from tests.support.churn_model import MONITOR, Model
from tests.support.feedback import FakeClock, Service, make_settings, sample
from tests.support.grpc_model import GrpcModel, Mux, Stub
from tests.support.waiting import eventually
from truthloop.sidecar.exchange import Exchange
from truthloop.sidecar.metrics import Latency

pytest_plugins = ["tests.integration.sidecar_fixtures"]

ADMIN = "admin-s3cret"
DEADLINE = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def service(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Service]:
    running = Service(make_settings(f"sqlite:///{tmp_path / 'feedback.db'}", clock, token=ADMIN))
    await running.start()
    await running.put_monitor(MONITOR)
    yield running
    await running.stop()


async def test_grpc_passes_through_counted_and_the_status_says_so(
    model: Model, service: Service, clock: FakeClock, tmp_path: Path
) -> None:
    config = harness.settings(model, service.base, tmp_path / "spool", token=ADMIN)
    config = replace(config, pod="grpc-test-pod", minutes_interval=0.2)
    with GrpcModel() as server:
        async with Mux(server.port, model.port) as mux:
            config = replace(config, proxy=replace(config.proxy, model_port=mux.port))
            async with harness.running(config) as sidecar:
                with Stub(sidecar.port) as stub:

                    def calls() -> list[bytes]:
                        futures = [stub.say.future(b"%d" % i, timeout=DEADLINE) for i in range(50)]
                        return [f.result() for f in futures]

                    said = await asyncio.to_thread(calls)
                    assert said == [b"said:%d" % i for i in range(50)]
                client = Client(f"http://127.0.0.1:{sidecar.port}")
                await client.run(range(20), concurrency=4)
                assert {s.status for s in client.seen.values()} == {200}
                text = await harness.scrape(sidecar)
                await eventually(
                    lambda: sidecar.shipper.stats.shipped == 20, "the predictions were shipped"
                )

                async def passed() -> Any:
                    view = await service.ok("GET", "/v1/monitors/ml/churn/sidecar?window=10m")
                    return view["total"]["passthrough"] == {"h2c": 1}

                await eventually(passed, "the sidecar's minutes counted the gRPC connection")
    assert mux.piped == {"grpc": 1, "http": 4}
    name = "truthloop_sidecar_passthrough_connections_total"
    assert sample(text, name, protocol="h2c") == 1.0
    assert sidecar.capture.stats.captured == 20

    clock.advance(60)
    await service.tick()
    state = await service.ok("GET", "/v1/monitors/ml/churn/state")
    assert state["capture"]["passthrough"]["connections"] == {"h2c": 1}
    status = (await service.ok("GET", "/v1/monitors/ml/churn"))["status"]
    assert status["capture"]["passthrough"]["connections"] == {"h2c": 1}
    assert status["samples"] == 20  # the HTTP/1.1 predictions were captured


def test_a_tunnel_is_not_a_request_s_latency() -> None:
    """An Upgrade tunnel lives as long as its connection: its time is not put in the histogram
    the minutes' latency quantiles come from."""
    latency = Latency(CollectorRegistry())
    request = Exchange(
        "p", "GET", "/", (), None, 200, (), None, "model", False, 0.0, 0.01, 0.02, None, False
    )
    latency.observe(request)
    latency.observe(request._replace(status=101, total_seconds=3600.0, skip_reason="upgrade"))
    counts = latency.cumulative()
    assert counts["latency_le:+Inf"] == 1.0
    assert counts["latency_sum"] == pytest.approx(0.02)
