"""The fakes a sidecar test runs against, started and stopped per test: the model, and the
feedback service's stand-in with the model's monitor registered (a module may override
`feedback`, e.g. to require a token)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.churn_model import MONITOR, Model
from tests.support.fake_feedback import FakeFeedback


@pytest.fixture
async def model() -> AsyncIterator[Model]:
    server = Model()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def feedback() -> AsyncIterator[FakeFeedback]:
    async with FakeFeedback(MONITOR) as service:
        yield service
