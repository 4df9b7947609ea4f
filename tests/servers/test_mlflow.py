"""MLflow's scoring server (`mlflow models serve`) serving a LogisticRegression saved as an MLflow
model, the sidecar in front, spoken to by MLflow's own client (a data frame sent as
`dataframe_split`): each row is captured with its columns as features and its customer as the
entity (a column the model's signature does not name, which MLflow ignores), labeled by entity,
and the fallback answers `{"predictions": [...]}`, one per row, as MLflow's client reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.servers import exchanges, servers
from tests.servers.servers import Server
from tests.servers.stack import MONITOR, Stack, running

ROWS = 30
COLUMNS = ["tenure", "charges", "calls", "age"]
CAPTURE = {"protocol": "mlflow", "entityId": {"pointer": "/customer_id"}}
RULES = [{"when": "double(request.tenure) > 0.0", "prediction": "1"}, {"prediction": "0"}]


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with servers.mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def frame(seed: int) -> list[dict[str, Any]]:
    """ROWS customers: the model's 4 columns and a `customer_id`."""
    x = np.round(np.random.default_rng(seed).normal(size=(ROWS, 4)), 4).tolist()
    return [
        {**dict(zip(COLUMNS, row, strict=True)), "customer_id": f"m-{i}"} for i, row in enumerate(x)
    ]


async def client(loop: Stack, rows: list[dict[str, Any]]) -> list[Any]:
    """The predictions MLflow's client, in its own venv, read from the sidecar's answer."""
    order = {"host": "127.0.0.1", "port": loop.sidecar.port, "rows": rows}
    path = servers.venv("mlflow")
    answer: list[Any] = await asyncio.to_thread(
        servers.run_in, path, "mlflow_client.py", stdin=order
    )
    return answer


@pytest.mark.parametrize("name", exchanges.names("mlflow"))
async def test_mlflow_answers_as_recorded(mlflow: Server, name: str) -> None:
    exchange = exchanges.load(name)
    status, body = await exchanges.replay(mlflow.url, exchange)
    assert status == 200
    assert exchanges.rounded(body) == exchanges.rounded(exchange["response"])


async def test_a_data_frame_is_captured_per_row_and_labeled_by_entity(
    mlflow: Server, tmp_path: Path
) -> None:
    rows = frame(seed=3)
    async with running(mlflow, tmp_path, capture=CAPTURE, rules=RULES) as loop:
        predicted = await client(loop, rows)
        assert len(predicted) == ROWS
        await loop.shipped(ROWS)
        actuals = {
            row["customer_id"]: (p if i % 3 else 1 - p)
            for i, (row, p) in enumerate(zip(rows, predicted, strict=True))
        }
        items = [{"monitor": MONITOR, "entity_id": e, "actual": a} for e, a in actuals.items()]
        assert await loop.service.feedback(*items) == {"matched": ROWS, "pending": 0}
        labeled = await loop.dataset()

    by_entity = {record["entity_id"]: record for record in labeled.values()}
    assert set(by_entity) == set(actuals)
    [base] = {pid.rsplit(".", 1)[0] for pid in labeled}  # one request's rows, <base>.<row>
    for i, row in enumerate(rows):
        record = by_entity[row["customer_id"]]
        assert record["prediction_id"] == f"{base}.{i}"
        assert (record["prediction"], record["score"]) == (predicted[i], None)
        assert record["features"] == row
        assert record["actual"] == actuals[row["customer_id"]]


async def test_the_fallback_answers_every_row_as_mlflow_s_client_reads_it(
    mlflow: Server, tmp_path: Path
) -> None:
    rows = frame(seed=5)
    guesses = [1 if row["tenure"] > 0.0 else 0 for row in rows]
    async with running(mlflow, tmp_path, capture=CAPTURE, rules=RULES) as loop:
        await loop.fallback("engaged")
        predicted = await client(loop, rows)
        stored = await loop.stored("fallback", ROWS)
    assert predicted == guesses
    by_entity = {entity: prediction for entity, prediction, _ in stored.values()}
    assert by_entity == {row["customer_id"]: g for row, g in zip(rows, guesses, strict=True)}
