"""MLServer (mlserver-sklearn) serving a LogisticRegression fitted here, the sidecar in front,
spoken to in the Open Inference Protocol v2: a batch is captured row by row (features, class,
probability, entity) though MLServer gzips it, labeled by row ID, and the fallback's answer is
one MLServer's own types and codecs read, a value for every row. Its gRPC port behind the
sidecar is passed through."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.servers import exchanges, servers
from tests.servers.servers import Server
from tests.servers.stack import running
from tests.support import open_inference

ROWS = 40
CAPTURE = {
    "protocol": "open-inference-v2",
    "score": {"pointer": "/predict_proba/1"},
    "entityId": {"pointer": "/parameters/entity_ids", "perRow": True},
}
RULES = [{"when": "request.predict[0] > 0.0", "prediction": "1"}, {"prediction": "0"}]
"""The fallback's guess from the first feature (the model weighs it +1.5)."""


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with servers.mlserver(tmp_path_factory.mktemp("mlserver")) as server:
        yield server


def batch(rows: int = ROWS) -> tuple[list[list[float]], list[str], dict[str, Any]]:
    """(features, entities, v2 request): `rows` rows of 4 features in one [N, 4] input, the
    entities in the request's parameters, both of the model's outputs asked for."""
    x = np.round(np.random.default_rng(11).normal(size=(rows, 4)), 4).tolist()
    entities = [f"c-{i}" for i in range(rows)]
    request = {
        "id": "batch-1",
        "parameters": {"entity_ids": entities},
        "inputs": [
            {
                "name": "predict",
                "shape": [rows, 4],
                "datatype": "FP64",
                "data": [v for row in x for v in row],
            }
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    return x, entities, request


@pytest.mark.parametrize("name", exchanges.names("mlserver"))
async def test_mlserver_answers_as_recorded(mlserver: Server, name: str) -> None:
    exchange = exchanges.load(name)
    status, body = await exchanges.replay(mlserver.url, exchange)
    assert status == 200
    assert exchanges.rounded(body) == exchanges.rounded(exchange["response"])


async def test_a_batch_is_captured_per_row_and_labeled_by_row_id(
    mlserver: Server, tmp_path: Path
) -> None:
    x, entities, request = batch()
    async with running(mlserver, tmp_path, capture=CAPTURE, rules=RULES) as loop:
        answer = await loop.post("/v2/models/churn/infer", request)
        assert answer.status == 200, answer.body
        status, direct = await exchanges.replay(
            mlserver.url,
            {"method": "POST", "path": "/v2/models/churn/infer", "headers": {}, "request": request},
        )
        assert (answer.body, status) == (direct, 200), "the sidecar passes the answer on as is"
        outputs = {o["name"]: o["data"] for o in answer.body["outputs"]}
        classes, proba = outputs["predict"], outputs["predict_proba"]
        base = answer.prediction_id
        await loop.shipped(ROWS)

        actuals = {f"{base}.{i}": (classes[i] if i % 4 else 1 - classes[i]) for i in range(ROWS)}
        assert await loop.label(actuals) == {"matched": ROWS, "pending": 0}
        labeled = await loop.dataset()

    assert set(labeled) == set(actuals)
    for i in range(ROWS):
        record = labeled[f"{base}.{i}"]
        assert record["served_by"] == "model"
        assert record["entity_id"] == entities[i]
        assert record["prediction"] == classes[i]
        assert record["score"] == pytest.approx(proba[2 * i + 1])
        assert record["features"] == {f"predict.{k}": x[i][k] for k in range(4)}
        assert record["actual"] == actuals[f"{base}.{i}"]


async def test_the_fallback_answers_every_row_as_mlserver_s_types_read_it(
    mlserver: Server, tmp_path: Path
) -> None:
    x, entities, request = batch()
    guesses = [1 if row[0] > 0.0 else 0 for row in x]
    async with running(mlserver, tmp_path, capture=CAPTURE, rules=RULES) as loop:
        await loop.fallback("engaged")
        answer = await loop.post("/v2/models/churn/versions/v1/infer", request)
        assert answer.status == 200, answer.body
        assert answer.headers.get("X-Served-By") == "fallback"
        base = answer.prediction_id
        fallback = await loop.stored("fallback", ROWS)

    assert open_inference.problems(answer.body) == []
    [read] = servers.run_in(servers.venv("mlserver"), "mlserver_types.py", stdin=[answer.body])
    assert (read["model_name"], read["model_version"], read["id"]) == ("churn", "v1", "batch-1")
    assert read["outputs"]["predict"]["shape"] == [ROWS, 1]
    assert read["outputs"]["predict"]["values"] == [[g] for g in guesses]
    assert fallback == {f"{base}.{i}": (entities[i], guesses[i], None) for i in range(ROWS)}


async def test_grpc_passes_through_the_sidecar_to_mlserver_uncaptured(
    mlserver: Server, tmp_path: Path
) -> None:
    """MLServer's own gRPC client, two ModelInfer calls on one HTTP/2 connection to the sidecar
    in front of MLServer's gRPC port: tunnelled whole (h2c with prior knowledge), answered by the
    model as over REST, counted as passed through, nothing captured; the model still answers
    them while the fallback is engaged (it answers REST only)."""
    x, _, request = batch(rows=8)
    _, direct = await exchanges.replay(
        mlserver.url,
        {"method": "POST", "path": "/v2/models/churn/infer", "headers": {}, "request": request},
    )
    classes = next(o["data"] for o in direct["outputs"] if o["name"] == "predict")
    async with running(mlserver, tmp_path, capture=CAPTURE, rules=RULES, grpc=True) as loop:
        order = {"target": f"127.0.0.1:{loop.sidecar.port}", "model": "churn", "batches": [x, x]}
        path = servers.venv("mlserver")
        answers = await asyncio.to_thread(servers.run_in, path, "mlserver_grpc.py", stdin=order)
        await loop.fallback("engaged")
        engaged = await asyncio.to_thread(servers.run_in, path, "mlserver_grpc.py", stdin=order)
        passthrough = dict(loop.sidecar.proxy.stats.passthrough)
        captured = loop.sidecar.capture.stats.captured
    assert answers == engaged == [classes, classes]
    assert passthrough == {"h2c": 2}
    assert captured == 0
