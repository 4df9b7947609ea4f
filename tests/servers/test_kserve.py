"""KServe's Python model server serving a LogisticRegression fitted here (as KServe's sklearn
server does), spoken to in v1 and v2: it still answers the recorded exchanges as it did when they
were recorded, so what the main tier checks against them is what KServe says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import exchanges, servers
from tests.servers.servers import Server


@pytest.fixture(scope="module")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with servers.kserve(tmp_path_factory.mktemp("kserve")) as server:
        yield server


@pytest.mark.parametrize("name", exchanges.names("kserve"))
async def test_kserve_answers_as_recorded(kserve: Server, name: str) -> None:
    exchange = exchanges.load(name)
    status, body = await exchanges.replay(kserve.url, exchange)
    assert status == 200
    assert exchanges.rounded(body) == exchanges.rounded(exchange["response"])
