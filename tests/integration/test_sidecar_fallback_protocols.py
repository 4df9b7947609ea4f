"""The fallback through a running sidecar answers a model server's protocol for every row of a
batch, in that protocol's shape, and the sidecar captures each row of its answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration import sidecar_harness as harness
from tests.support import open_inference
from tests.support.churn_model import monitor
from tests.support.fake_feedback import FakeFeedback
from tests.support.waiting import eventually

pytest_plugins = ["tests.integration.sidecar_fixtures"]

TENURES = (1.0, 10.0, 5.0)
EXPECTED = [1, 0, 1]
"""The rules' (and the model's) answers to TENURES: churn below 6 months."""


class ServerModel:
    """A scikit-learn classifier as MLServer (v2) and KServe (v1) serve it: rows of [tenure,
    plan] in, `predict` and `predict_proba` out; churn (1) below 6 months, the score follows."""

    def __init__(self) -> None:
        self.calls = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", self._v2)
        app.router.add_get("/v2/health/ready", self._ready)
        app.router.add_post("/v1/models/{name}:predict", self._v1)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @staticmethod
    def predict(tenure: float) -> tuple[int, float]:
        return (1 if tenure < 6 else 0), round(1 / (1 + tenure), 6)

    async def _v2(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        (tensor,) = body["inputs"]
        rows, width = tensor["shape"]
        answers = [self.predict(tensor["data"][r * width]) for r in range(rows)]
        outputs = [
            {"name": "predict", "shape": [rows, 1], "datatype": "INT64", "data": []},
            {"name": "predict_proba", "shape": [rows, 2], "datatype": "FP64", "data": []},
        ]
        for label, score in answers:
            outputs[0]["data"].append(label)
            outputs[1]["data"] += [1 - score, score]
        name = request.match_info["name"]
        return web.json_response({"model_name": name, "id": body.get("id"), "outputs": outputs})

    async def _v1(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        return web.json_response(
            {"predictions": [self.predict(row[0])[0] for row in body["instances"]]}
        )

    async def _ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True})


@pytest.fixture
async def model() -> AsyncIterator[ServerModel]:
    server = ServerModel()
    await server.start()
    yield server
    await server.stop()


def engaged(feedback: FakeFeedback, capture: dict[str, Any], rule: str) -> dict[str, Any]:
    spec = monitor(capture=capture, fallback={"mode": "engaged", "rules": [{"prediction": rule}]})
    feedback.monitors["ml/churn"] = spec
    feedback.set_fallback("ml/churn", active=True)
    return spec


async def post(url: str, body: Any) -> tuple[int, str | None, str | None, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return (
            response.status,
            response.headers.get("X-Served-By"),
            response.headers.get("X-Prediction-ID"),
            await response.json(),
        )


async def captured_rows(feedback: FakeFeedback, pid: str, served_by: str) -> list[Any]:
    """The predictions captured for each row of the exchange `pid`, once all are in."""
    keys = [(f"{pid}.{row}", served_by) for row in range(len(TENURES))]
    await eventually(lambda: all(key in feedback.records for key in keys), f"{served_by} rows")
    return [feedback.records[key]["prediction"] for key in keys]


async def test_a_v2_batch_is_answered_as_an_inference_response_and_captured_per_row(
    model: ServerModel, feedback: FakeFeedback, tmp_path: Path
) -> None:
    capture = {"protocol": "open-inference-v2", "score": {"pointer": "/predict_proba/1"}}
    spec = engaged(feedback, capture, "request.predict[0] < 6.0 ? 1 : 0")
    config = harness.settings(model, feedback.url, tmp_path, spec=spec)
    async with harness.running(config) as car:
        base = f"http://127.0.0.1:{car.port}"
        data = [x for tenure in TENURES for x in (tenure, 2.0)]
        request = {
            "id": "batch-1",
            "inputs": [{"name": "predict", "shape": [3, 2], "datatype": "FP64", "data": data}],
        }
        status, served_by, pid, body = await post(f"{base}/v2/models/churn/infer", request)
        assert (status, served_by) == (200, "fallback")
        assert body == {
            "model_name": "churn",
            "id": "batch-1",
            "parameters": {},
            "outputs": [
                {"name": "predict", "shape": [3, 1], "datatype": "INT64", "data": EXPECTED}
            ],
        }
        assert open_inference.problems(body) == []
        assert pid is not None
        assert await captured_rows(feedback, pid, "fallback") == EXPECTED
        assert await captured_rows(feedback, pid, "model") == EXPECTED  # the shadow answer

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/v2/health/ready") as ready,
        ):
            assert (ready.status, ready.headers.get("X-Served-By")) == (200, None)
        assert car.fallback.stats.answered == 1
        assert car.fallback.stats.passed == {"not_inference": 1}


async def test_a_kserve_v1_batch_is_answered_with_predictions_and_captured_per_row(
    model: ServerModel, feedback: FakeFeedback, tmp_path: Path
) -> None:
    spec = engaged(feedback, {"protocol": "kserve-v1"}, "request[0] < 6.0 ? 1 : 0")
    config = harness.settings(model, feedback.url, tmp_path, spec=spec)
    async with harness.running(config) as car:
        url = f"http://127.0.0.1:{car.port}/v1/models/churn:predict"
        status, served_by, pid, body = await post(url, {"instances": [[t, 2.0] for t in TENURES]})
        assert (status, served_by, body) == (200, "fallback", {"predictions": EXPECTED})
        assert pid is not None
        assert await captured_rows(feedback, pid, "fallback") == EXPECTED
        assert await captured_rows(feedback, pid, "model") == EXPECTED
        assert car.fallback.stats.answered == 1
