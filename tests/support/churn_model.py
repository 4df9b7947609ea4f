"""Servers the sidecar tests control: a fake feedback service, a hanging one, and a small model.

`FakeFeedback` records every capture record it accepts (and counts any it is sent again after it
answered 2xx for it), serves a monitor's spec and a long-polled fallback state, and can be taken
down (its port refuses connections) and brought back on the same port. Records and the state are
the service's own shapes (`core.wire`): a record that is not a `CaptureRecord` is refused (400).
`Hang` accepts connections and never answers. `Model` answers `{"prediction": ..., "score": ...}`
per request, or per row for `{"instances": [...]}`, echoing the entity, so a test can check what
was captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from truthloop.core import wire

MONITOR: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "churn", "namespace": "ml", "generation": 1},
    "spec": {
        "selector": {"matchLabels": {"app": "churn"}},
        "model": {"name": "churn"},
        "task": "binary",
        "capture": {
            "entityId": {"pointer": "/user_id"},
            "prediction": {"pointer": "/prediction"},
            "score": {"pointer": "/score"},
            "features": {"pointer": "/features"},
        },
        "fallback": {
            "mode": "auto",
            "rules": [
                {"when": "request.features.tenure < 6", "prediction": "1"},
                {"prediction": "0"},
            ],
        },
    },
}


def monitor(**spec: Any) -> dict[str, Any]:
    """A copy of MONITOR with top-level spec fields replaced."""
    body = copy.deepcopy(MONITOR)
    body["spec"].update(spec)
    return body


async def wait_for(condition: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll `condition` on the loop until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeFeedback:
    def __init__(self, body: dict[str, Any] | None = None, token: str | None = None) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: list[str] = []
        self.resent = 0
        self.posts = 0
        self.auth: list[str | None] = []
        self.monitors: list[str | None] = []
        self.monitor = copy.deepcopy(body or MONITOR)
        meta = self.monitor["metadata"]
        self.state = wire.MonitorState(
            monitor=f"{meta['namespace']}/{meta['name']}",
            generation=meta.get("generation", 1),
            version=1,
            phase="Collecting",
            fallback=wire.FallbackState(active=False, mode="auto"),
        )
        self.reject: Callable[[dict[str, Any]], str | None] = lambda record: None
        self.refuse_whole: Callable[[dict[str, Any]], bool] = lambda record: False
        """A batch holding such a record is refused with a 400 that names no item."""
        self.max_records: int | None = None
        """Batches of more records are refused 413."""
        self.status_override: int | None = None
        self.state_polls = 0
        self.spec_fetches = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = free_port()
        self.token = token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/predictions", self._predictions)
        app.router.add_get("/v1/monitors/{ns}/{name}", self._monitor)
        app.router.add_get("/v1/monitors/{ns}/{name}/state", self._state)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Down: the port refuses connections until `start` again."""
        if self._runner is not None:
            self._changed.set()
            await self._runner.cleanup()
            self._runner = None

    def set_state(self, *, active: bool | None = None, generation: int | None = None) -> None:
        """Engage (by hand) or release the fallback, or move the spec's generation."""
        state = self.state
        if active is not None:
            fallback = wire.FallbackState(
                active=active,
                mode="engaged" if active else "disengaged",
                since=time.time() if active else None,
                causes=(wire.MANUAL,) if active else (),
            )
            phase = "FallbackActive" if active else "Collecting"
            state = msgspec.structs.replace(state, fallback=fallback, phase=phase)
        if generation is not None:
            state = msgspec.structs.replace(state, generation=generation)
        self.state = msgspec.structs.replace(state, version=state.version + 1)
        self._changed.set()
        self._changed = asyncio.Event()

    def ids(self, served_by: str = "model") -> set[str]:
        return {pid for pid, by in self.records if by == served_by}

    async def _predictions(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.auth.append(request.headers.get("Authorization"))
        if self.status_override is not None:
            return web.json_response(
                {"error": "override", "details": []}, status=self.status_override
            )
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized", "details": []}, status=401)
        body = await request.read()
        assert request.content_type == "application/x-ndjson"
        try:
            records = [_RECORD(line) for line in body.splitlines() if line.strip()]
        except msgspec.ValidationError as e:
            return web.json_response({"error": f"not a capture record: {e}"}, status=400)
        items: list[dict[str, Any]] = msgspec.to_builtins(records)
        self.monitors.append(request.headers.get("X-Truthloop-Monitor"))
        if self.max_records is not None and len(items) > self.max_records:
            return web.json_response({"error": "too large", "details": []}, status=413)
        if any(self.refuse_whole(item) for item in items):
            detail = {"field": "body", "message": "no", "reason": "poison"}
            return web.json_response({"error": "invalid", "details": [detail]}, status=400)
        details = [
            {"index": i, "field": "prediction", "message": reason, "reason": reason}
            for i, item in enumerate(items)
            if (reason := self.reject(item))
        ]
        if details:
            return web.json_response({"error": "invalid", "details": details}, status=400)
        for item in items:
            key = (item["prediction_id"], item["served_by"])
            if key in self.records:
                self.resent += 1
            else:
                self.order.append(item["prediction_id"])
            self.records[key] = item
        return web.json_response({"accepted": len(items), "duplicates": 0})

    async def _monitor(self, request: web.Request) -> web.Response:
        self.spec_fetches += 1
        return web.json_response(self.monitor)

    async def _state(self, request: web.Request) -> web.Response:
        self.state_polls += 1
        since = request.query.get("since")
        wait = float(request.query.get("wait", "0"))
        if since is not None and int(since) == self.state.version and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
        return web.Response(body=msgspec.json.encode(self.state), content_type="application/json")


_RECORD = msgspec.json.Decoder(wire.CaptureRecord).decode


class Hang:
    """Accepts connections, reads, never answers."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Model:
    """A model server: `prediction` is 1 when `features.tenure` < 6, the score follows tenure."""

    def __init__(self) -> None:
        self.calls = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/predict", self._predict)
        app.router.add_get("/status/{code}", self._status)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @staticmethod
    def answer(row: dict[str, Any]) -> dict[str, Any]:
        tenure = row["features"]["tenure"]
        return {
            "user_id": row.get("user_id"),
            "prediction": 1 if tenure < 6 else 0,
            "score": round(1 / (1 + tenure), 6),
        }

    async def _predict(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        if "instances" in body:
            return web.json_response({"predictions": [self.answer(r) for r in body["instances"]]})
        return web.json_response(self.answer(body))

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "nope"}, status=int(request.match_info["code"]))
