"""MLServer (mlserver-sklearn) serving a LogisticRegression fitted here, spoken to in the Open
Inference Protocol v2: it still answers the recorded exchanges as it did when they were recorded,
so what the main tier checks against them is what MLServer says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import exchanges, servers
from tests.servers.servers import Server


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with servers.mlserver(tmp_path_factory.mktemp("mlserver")) as server:
        yield server


@pytest.mark.parametrize("name", exchanges.names("mlserver"))
async def test_mlserver_answers_as_recorded(mlserver: Server, name: str) -> None:
    exchange = exchanges.load(name)
    status, body = await exchanges.replay(mlserver.url, exchange)
    assert status == 200
    assert exchanges.rounded(body) == exchanges.rounded(exchange["response"])
