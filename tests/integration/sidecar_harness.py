"""Running a real sidecar in the test's loop, and a load client that remembers what it saw."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from tests.support.churn_model import MONITOR
from truthloop.sidecar import app as sidecar_app
from truthloop.sidecar.app import AdminSettings, Sidecar, SidecarSettings
from truthloop.sidecar.backoff import BackoffSettings
from truthloop.sidecar.follower import FollowerSettings
from truthloop.sidecar.proxy import ProxySettings
from truthloop.sidecar.shipper import ShipperSettings

FAST = BackoffSettings(base=0.02, cap=0.2)


class Served(Protocol):
    """A model server listening on 127.0.0.1 (the churn `Model`, or one speaking a protocol)."""

    @property
    def port(self) -> int: ...


def settings(
    model: Served,
    feedback_url: str,
    spool_dir: Path,
    *,
    spec: Any = MONITOR,
    **shipper: Any,
) -> SidecarSettings:
    """A sidecar on free ports in front of `model`, with quick retries and short batches."""
    return SidecarSettings(
        proxy=ProxySettings(
            listen_host="127.0.0.1", listen_port=0, model_host="127.0.0.1", model_port=model.port
        ),
        shipper=replace(
            ShipperSettings(
                feedback_url=feedback_url,
                spool_dir=spool_dir,
                linger=0.02,
                timeout=0.5,
                backoff=FAST,
            ),
            **shipper,
        ),
        follower=FollowerSettings(
            feedback_url=feedback_url, monitor="ml/churn", wait=5.0, slack=1.0, backoff=FAST
        ),
        admin=AdminSettings(host="127.0.0.1", port=0, ready_ttl=0.0),
        model_version="v7",
        spec=spec,
        drain_seconds=2.0,
    )


@contextlib.asynccontextmanager
async def running(config: SidecarSettings) -> AsyncIterator[Sidecar]:
    sidecar = await sidecar_app.start(config)
    try:
        yield sidecar
    finally:
        await sidecar.close()


async def scrape(car: Sidecar) -> str:
    """The sidecar's admin `/metrics` page."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{car.admin_port}/metrics") as response,
    ):
        return await response.text()


@dataclass
class Seen:
    """One answer as the client saw it."""

    status: int
    prediction_id: str | None
    served_by: str | None
    body: Any
    seconds: float


@dataclass
class Client:
    """Sends churn requests to the sidecar and remembers every answer by entity."""

    url: str
    seen: dict[str, Seen] = field(default_factory=dict)

    @staticmethod
    def request(i: int) -> dict[str, Any]:
        return {"user_id": f"u{i}", "features": {"tenure": i % 12, "plan": "basic"}}

    async def one(self, session: aiohttp.ClientSession, i: int) -> Seen:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with session.post(self.url + "/predict", json=self.request(i)) as response:
            body = await response.json()
            seen = Seen(
                response.status,
                response.headers.get("X-Prediction-ID"),
                response.headers.get("X-Served-By"),
                body,
                loop.time() - started,
            )
        self.seen[f"u{i}"] = seen
        return seen

    async def run_one(self, i: int) -> Seen:
        async with aiohttp.ClientSession() as session:
            return await self.one(session, i)

    async def run(self, indices: range, concurrency: int = 32) -> None:
        """Every index once, `concurrency` at a time over kept-alive connections."""
        queue = iter(indices)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for i in queue:
                    await self.one(session, i)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
