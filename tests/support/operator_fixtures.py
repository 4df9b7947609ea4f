"""Fixtures for the operator's tests; load with `pytest_plugins`.

`start_world(**settings)` runs the three parts for real: the feedback service (SQLite in a temp
directory, a fake clock, a write token) on a fixed 127.0.0.1 port so it can be stopped and started
again, the mock apiserver, and the operator against both. `world` is one with default settings.
When a world stops, every API request its operator made must be one `kube.api_calls` declares (the
chart's RBAC is made from that list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.feedback import FakeClock
from tests.support.operator_harness import (
    TOKEN,
    OperatorThread,
    World,
    WorldFactory,
    apiserver,
    settings,
    undeclared,
)
from tests.support.ports import free_port


@pytest.fixture
async def start_world(tmp_path: Path) -> AsyncIterator[WorldFactory]:
    """Start a world; keyword arguments override the operator's test settings."""
    worlds: list[World] = []
    async with apiserver() as api:

        async def start(**overrides: Any) -> World:
            world = World(api, f"sqlite://{tmp_path}/feedback.db", FakeClock(), free_port())
            worlds.append(world)
            await world.start_feedback()
            world.operator = OperatorThread(settings(world.service.base, token=TOKEN, **overrides))
            await world.operator.start(api)
            return world

        try:
            yield start
        finally:
            for world in worlds:
                for replica in world.replicas:
                    await replica.stop()
                if world.operator is not None:
                    await world.operator.stop()
                    others = [r.settings for r in world.replicas] + world.commands
                    assert undeclared(api, world.operator.settings, *others) == []
                if world.feedback is not None:
                    await world.stop_feedback()


@pytest.fixture
async def world(start_world: WorldFactory) -> World:
    return await start_world()
