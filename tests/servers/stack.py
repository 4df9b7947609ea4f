"""truthloop in front of a real model server: the feedback service (SQLite) with the server's
monitor registered, and a sidecar proxying to the server, both in the test's loop on 127.0.0.1.
The monitor is `ml/churn` with the capture and fallback rules a test gives."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from tests.integration import sidecar_harness as harness
from tests.servers.servers import Server
from tests.support.churn_model import monitor
from tests.support.feedback import Service
from tests.support.waiting import eventually
from truthloop.feedback import settings as feedback_settings
from truthloop.sidecar.app import Sidecar

MONITOR = "ml/churn"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def prediction_id(self) -> str:
        return self.headers["X-Prediction-ID"]


@dataclass
class Stack:
    service: Service
    sidecar: Sidecar
    store: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.port}"

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
        """A JSON request to the model through the sidecar."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, json=body, headers=headers or {}) as response,
        ):
            return Answer(
                response.status, dict(response.headers), await response.json(content_type=None)
            )

    async def shipped(self, count: int) -> None:
        """Wait until the sidecar has shipped `count` records in all."""
        stats, capture = self.sidecar.shipper.stats, self.sidecar.capture.stats
        await eventually(
            lambda: stats.shipped >= count, f"{count} records shipped (capture: {capture})"
        )

    async def label(self, actuals: dict[str, Any]) -> Any:
        """POST /v1/feedback: each prediction ID's actual."""
        items = [{"monitor": MONITOR, "prediction_id": p, "actual": a} for p, a in actuals.items()]
        return await self.service.feedback(*items)

    async def dataset(self) -> dict[str, dict[str, Any]]:
        """The labeled records of the last hour (GET .../dataset), by prediction ID."""
        rows = await self.service.ok("GET", f"/v1/monitors/{MONITOR}/dataset?window=1h&format=json")
        return {row["prediction_id"]: row for row in rows}

    async def stored(
        self, served_by: str, count: int
    ) -> dict[str, tuple[str | None, Any, float | None]]:
        """prediction_id → (entity, prediction, score) of the records `served_by` wrote, read
        from the service's file once it holds `count` of them."""

        def read() -> dict[str, tuple[str | None, Any, float | None]]:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
                rows = db.execute(
                    "SELECT prediction_id, entity_id, prediction, score FROM predictions "
                    "WHERE served_by = ?",
                    (served_by,),
                )
                return {pid: (e, json.loads(value), score) for pid, e, value, score in rows}

        return await eventually(lambda: len(found := read()) >= count and found, f"{count} stored")

    async def fallback(self, mode: str) -> None:
        """Engage or disengage the fallback at the service; wait until the sidecar follows."""
        await self.service.ok("POST", f"/v1/monitors/{MONITOR}/fallback", json={"mode": mode})
        live = self.sidecar.live
        engaged = mode == "engaged"
        await eventually(lambda: live.current.fallback_active == engaged, f"fallback {mode}")


@contextlib.asynccontextmanager
async def running(
    model: Server,
    tmp: Path,
    *,
    capture: dict[str, Any],
    rules: list[dict[str, Any]],
    grpc: bool = False,
) -> AsyncIterator[Stack]:
    """The stack in front of `model`'s REST port, or its gRPC port with `grpc`."""
    body = monitor(capture=capture, fallback={"mode": "auto", "rules": rules})
    store = tmp / "feedback.db"
    service = Service(feedback_settings.make(store=f"sqlite:///{store}", clock=time.time))
    await service.start()
    try:
        await service.put_monitor(body)
        port = model.grpc_port if grpc else model.port
        assert port is not None, "the server serves no gRPC"
        target = SimpleNamespace(port=port)
        config = harness.settings(target, service.base, tmp / "spool", spec=body)  # type: ignore[arg-type]
        config = replace(config, follower=replace(config.follower, wait=0.5))
        async with harness.running(config) as sidecar:
            yield Stack(service, sidecar, store)
    finally:
        await service.stop()
