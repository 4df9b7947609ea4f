"""KServe's Python model server serving a LogisticRegression fitted here (as KServe's sklearn
server does), the sidecar in front, spoken to by KServe's own REST client in v1 and v2: each
batch is captured row by row with the entity of its row from a header list, labeled by row ID,
and the fallback's answers are ones KServe's client reads, a value for every row."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.servers import exchanges, servers
from tests.servers.servers import MODEL, Server
from tests.servers.stack import Stack, running

ROWS = 30
ENTITIES = "X-Entity-IDs"
PROTOCOLS = {
    "v1": {"protocol": "kserve-v1", "entityId": {"header": ENTITIES, "perRow": True}},
    "v2": {
        "protocol": "open-inference-v2",
        "prediction": {"pointer": "/output-0"},
        "entityId": {"header": ENTITIES, "perRow": True},
    },
}
RULES = {
    "v1": [{"when": "request[0] > 0.0", "prediction": "1"}, {"prediction": "0"}],
    "v2": [{"when": "request['input-0'][0] > 0.0", "prediction": "1"}, {"prediction": "0"}],
}
"""The fallback's guess from the first feature, read from a v1 row (a list) or a v2 row (the
input's per-row slice)."""


@pytest.fixture(scope="module")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with servers.kserve(tmp_path_factory.mktemp("kserve")) as server:
        yield server


def rows(seed: int) -> tuple[list[list[float]], list[str]]:
    x = np.round(np.random.default_rng(seed).normal(size=(ROWS, 4)), 4).tolist()
    return x, [f"c-{seed}-{i}" for i in range(ROWS)]


async def client(
    loop: Stack, protocol: str, x: list[list[float]], entities: list[str], binary: bool = False
) -> Any:
    """What KServe's client, in its own venv, made of a batch sent through the sidecar: the body
    (v2: the InferResponse's outputs as arrays) and the answer's headers. `binary`: the v2 tensor
    in the binary data extension, as the client sends it unless told otherwise."""
    call = {"protocol": protocol, "rows": x, "headers": {ENTITIES: ",".join(entities)}}
    order = {"base": loop.url, "model": MODEL, "calls": [{**call, "id": "b-1", "binary": binary}]}
    path = servers.venv("kserve")
    [answer] = await asyncio.to_thread(servers.run_in, path, "kserve_client.py", stdin=order)
    return answer


def predictions(protocol: str, body: Any) -> list[Any]:
    """One value per row: v1's `predictions`, v2's `output-0` (the fallback's is [N, 1])."""
    if protocol == "v1":
        return list(body["predictions"])
    return [v[0] if isinstance(v, list) else v for v in body["outputs"]["output-0"]]


@pytest.mark.parametrize("name", exchanges.names("kserve"))
async def test_kserve_answers_as_recorded(kserve: Server, name: str) -> None:
    exchange = exchanges.load(name)
    status, body = await exchanges.replay(kserve.url, exchange)
    assert status == 200
    assert exchanges.rounded(body) == exchanges.rounded(exchange["response"])


CALLS = [("v1", False), ("v2", False), ("v2", True)]
"""(protocol, binary): v2 with JSON tensors, and with the binary data extension (the client's
default: the JSON header in its first `Inference-Header-Content-Length` bytes, the tensor's raw
bytes after it)."""


@pytest.mark.parametrize(("protocol", "binary"), CALLS)
async def test_a_batch_is_captured_per_row_and_labeled_by_row_id(
    kserve: Server, tmp_path: Path, protocol: str, binary: bool
) -> None:
    x, entities = rows(seed=3)
    spec = PROTOCOLS[protocol]
    async with running(kserve, tmp_path, capture=spec, rules=RULES[protocol]) as loop:
        answer = await client(loop, protocol, x, entities, binary)
        classes = predictions(protocol, answer["body"])
        assert len(classes) == ROWS
        base = answer["headers"]["x-prediction-id"]
        await loop.shipped(ROWS)
        actuals = {f"{base}.{i}": (c if i % 3 else 1 - c) for i, c in enumerate(classes)}
        assert await loop.label(actuals) == {"matched": ROWS, "pending": 0}
        labeled = await loop.dataset()

    name = "" if protocol == "v1" else "input-0."
    assert set(labeled) == set(actuals)
    for i in range(ROWS):
        record = labeled[f"{base}.{i}"]
        assert (record["served_by"], record["entity_id"]) == ("model", entities[i])
        assert (record["prediction"], record["score"]) == (classes[i], None)
        assert record["features"] == {f"{name}{k}": x[i][k] for k in range(4)}
        assert record["actual"] == actuals[f"{base}.{i}"]


@pytest.mark.parametrize(("protocol", "binary"), CALLS)
async def test_the_fallback_answers_every_row_as_kserve_s_client_reads_it(
    kserve: Server, tmp_path: Path, protocol: str, binary: bool
) -> None:
    x, entities = rows(seed=5)
    guesses = [1 if row[0] > 0.0 else 0 for row in x]
    spec = PROTOCOLS[protocol]
    async with running(kserve, tmp_path, capture=spec, rules=RULES[protocol]) as loop:
        await loop.fallback("engaged")
        answer = await client(loop, protocol, x, entities, binary)
        base = answer["headers"]["x-prediction-id"]
        stored = await loop.stored("fallback", ROWS)

    assert answer["headers"]["x-served-by"] == "fallback"
    assert predictions(protocol, answer["body"]) == guesses
    if protocol == "v2":
        assert answer["body"]["model_name"] == MODEL
        assert answer["body"]["id"] == "b-1"
        assert answer["body"]["outputs"]["output-0"] == [[g] for g in guesses]
    assert stored == {f"{base}.{i}": (entities[i], guesses[i], None) for i in range(ROWS)}
