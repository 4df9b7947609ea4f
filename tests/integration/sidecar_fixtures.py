"""The fakes a sidecar test runs against, started and stopped per test: the model, and the
feedback service's stand-in (a module may override `feedback`, e.g. to require a token)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.sidecar_fakes import FakeFeedback, Model


@pytest.fixture
async def model() -> AsyncIterator[Model]:
    server = Model()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def feedback() -> AsyncIterator[FakeFeedback]:
    service = FakeFeedback()
    await service.start()
    yield service
    await service.stop()
