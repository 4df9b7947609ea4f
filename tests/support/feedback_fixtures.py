"""Fixtures for the feedback service's tests; load with `pytest_plugins`.

`store_url` is parametrized over the store backends, so every test that runs a service or a
store runs on each of them (PostgreSQL joins the params with its store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.feedback import (
    STORES,
    FakeClock,
    Service,
    ServiceFactory,
    make_settings,
    monitor_body,
)
from tests.support.postgres import fresh_schema
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import Store


@pytest.fixture(params=STORES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store of each backend (PostgreSQL: a schema of its own on the test
    server, see `tests.support.postgres`)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/feedback.db"
    else:
        async with fresh_schema() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The test's store, opened, for tests that speak to a store without a service."""
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start_service(store_url: str, clock: FakeClock) -> AsyncIterator[ServiceFactory]:
    """Start services on the test's store and clock (several in turn, to test restarts)."""
    started: list[Service] = []

    async def start(**overrides: Any) -> Service:
        service = Service(make_settings(store_url, clock, **overrides))
        await service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def replicas(store_url: str, start_service: ServiceFactory) -> tuple[Service, Service]:
    """Two services on the test's store, started in turn (the first to tick leads); PostgreSQL
    only, where replicas share the store (the test is skipped on SQLite)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL store")
    return await start_service(), await start_service()


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    """A running service with the `monitor_body()` monitor registered."""
    svc = await start_service()
    await svc.put_monitor(monitor_body())
    return svc
