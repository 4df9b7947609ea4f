"""The local stack (`truthloop run`, `truthloop demo`): the real feedback service and sidecar in
front of the example churn model, on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from truthloop.examples import churn_model

from tests.support.waiting import eventually
from truthloop.local import stack as local

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CUSTOMER = {"tenure": 2, "monthly_charges": 99.5, "contract": "month-to-month", "support_calls": 4}
LOYAL = {"tenure": 60, "monthly_charges": 25.0, "contract": "two-year", "support_calls": 0}
HOUR = 3600.0


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return body


@contextlib.asynccontextmanager
async def churn_model_server() -> AsyncIterator[tuple[str, int]]:
    runner = web.AppRunner(churn_model.make_app(churn_model.fit(n=500)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][0], runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, monitor: dict[str, Any], **settings: Any
) -> AsyncIterator[local.Stack]:
    async with (
        churn_model_server() as model,
        local.running(
            local.StackSettings(monitor=monitor, model=model, workdir=tmp_path, **settings)
        ) as parts,
    ):
        yield parts


async def get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def predict(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[str, Any]:
    """The X-Prediction-ID and the answer of one request through the sidecar."""
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        return response.headers["X-Prediction-ID"], await response.json()


async def test_a_prediction_is_captured_on_the_stacks_clock_and_joined(tmp_path: Path) -> None:
    """Records carry the stack's clock (an hour ahead here, as a time-lapse clock would be)."""

    def clock() -> float:
        return time.time() + HOUR

    async with stack(tmp_path, example("monitor-churn.yaml"), clock=clock) as parts:
        assert parts.monitor == "default/churn"
        base = f"{parts.feedback_url}/v1/monitors/default/churn"
        async with aiohttp.ClientSession() as session:
            prediction_id, answer = await predict(
                session,
                parts.proxy_url + "/predict",
                {"features": CUSTOMER},
                {"X-Entity-ID": "customer-1"},
            )
            assert answer["prediction"] == 1

            async def captured() -> list[Any]:
                timeline = await get(session, f"{base}/predictions?entity_id=customer-1")
                return list(timeline["predictions"])

            [record] = await eventually(captured)
            assert record["prediction_id"] == prediction_id
            assert record["features"] == CUSTOMER
            assert abs(record["ts"] - clock()) < 60

            actual = {"monitor": "default/churn", "entity_id": "customer-1", "actual": 1}
            async with session.post(parts.feedback_url + "/v1/feedback", json=actual) as response:
                assert await response.json() == {"matched": 1, "pending": 0}
            metrics = await get(session, f"{base}/metrics")
            assert (metrics["samples"], metrics["labeled"]) == (1, 1)
            assert metrics["metrics"]["accuracy"]["value"] == 1.0


async def test_a_prediction_without_an_entity_is_labeled_by_its_id(tmp_path: Path) -> None:
    """No X-Entity-ID: the prediction is still captured (entity_id null), and a label sent for the
    X-Prediction-ID its client got matches it at once instead of waiting as pending."""
    async with stack(tmp_path, example("monitor-churn.yaml")) as parts:
        base = f"{parts.feedback_url}/v1/monitors/default/churn"
        async with aiohttp.ClientSession() as session:
            prediction_id, _ = await predict(
                session, parts.proxy_url + "/predict", {"features": CUSTOMER}
            )

            async def captured() -> bool:
                metrics = await get(session, f"{base}/metrics")
                return bool(metrics["samples"] == 1)

            await eventually(captured, "the prediction captured")
            actual = {"monitor": "default/churn", "prediction_id": prediction_id, "actual": 1}
            async with session.post(parts.feedback_url + "/v1/feedback", json=actual) as response:
                assert await response.json() == {"matched": 1, "pending": 0}
            async with session.get(f"{base}/dataset") as response:
                [row] = [json.loads(line) for line in (await response.text()).splitlines()]
            assert (row["prediction_id"], row["entity_id"]) == (prediction_id, None)
            assert (row["prediction"], row["actual"], row["correct"]) == (1, 1, True)


async def test_the_batch_example_with_the_churn_model(tmp_path: Path) -> None:
    """`examples/monitor-batch.yaml` in front of the churn model: one record per row, joined by the
    row's customer ID; engaged, the fallback answers every row by its rules."""
    rows = [{"customer_id": "c-1", **CUSTOMER}, {"customer_id": "c-2", **LOYAL}]
    async with stack(tmp_path, example("monitor-batch.yaml")) as parts:
        base = f"{parts.feedback_url}/v1/monitors/default/churn-batch"
        async with aiohttp.ClientSession() as session:
            prediction_id, answer = await predict(
                session, parts.proxy_url + "/v1/models/churn:predict", {"instances": rows}
            )
            assert answer == {"predictions": [1, 0]}

            async def captured() -> list[Any]:
                timeline = await get(session, f"{base}/predictions?entity_id=c-2")
                return list(timeline["predictions"])

            [record] = await eventually(captured)
            assert record["prediction_id"] == f"{prediction_id}.1"
            assert (record["prediction"], record["features"]) == (0, rows[1])

            actual = {"monitor": "default/churn-batch", "entity_id": "c-2", "actual": 1}
            async with session.post(parts.feedback_url + "/v1/feedback", json=actual) as response:
                assert await response.json() == {"matched": 1, "pending": 0}
            metrics = await get(session, f"{base}/metrics")
            assert (metrics["samples"], metrics["labeled"]) == (2, 1)

            async with session.post(f"{base}/fallback", json={"mode": "engaged"}) as response:
                assert response.status == 200

            async def answered_by_fallback() -> Any:
                async with session.post(
                    parts.proxy_url + "/v1/models/churn:predict",
                    json={"instances": [{**LOYAL, "monthly_charges": 90.0}, LOYAL]},
                ) as response:
                    if response.headers.get("X-Served-By") == "fallback":
                        return await response.json()
                    return None

            assert await eventually(answered_by_fallback) == {"predictions": [1, 0]}


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with _taken_port() as taken:
        port = taken.getsockname()[1]
        with pytest.raises(local.StartError, match=rf"sidecar: cannot start: .*{port}"):
            async with stack(tmp_path, example("monitor-churn.yaml"), listen=("127.0.0.1", port)):
                pytest.fail("started on a port in use")
        with pytest.raises(local.StartError, match=rf"feedback service: .*:{port}"):
            async with stack(tmp_path, example("monitor-churn.yaml"), feedback=("127.0.0.1", port)):
                pytest.fail("started on a port in use")


async def test_a_refused_monitor_names_the_field(tmp_path: Path) -> None:
    monitor = example("monitor-churn.yaml")
    monitor["spec"]["metrics"]["minSamples"] = 0
    with pytest.raises(local.StartError, match=r"refused the monitor: spec\.metrics\.minSamples"):
        async with stack(tmp_path, monitor):
            pytest.fail("started with a monitor the service refuses")
