"""A small stand-in for the feedback service's monitor API, for the operator client's tests.

It speaks the real service's routes and shapes for what the operator uses — `PUT|GET|DELETE
/v1/monitors/{ns}/{name}`, `GET .../state?wait=&since=` (a long-poll on a version), `GET
/v1/monitors` — and lets a test script the answers: `fail` queues HTTP statuses (with an optional
Retry-After) for the next requests, `stall` delays every answer, `set_state` moves a monitor's
state and wakes long-polls. States and statuses are the service's own shapes (`core.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from truthloop.core import wire


class FakeFeedback:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.monitors: dict[str, dict[str, Any]] = {}
        self.states: dict[str, wire.MonitorState] = {}
        self.failures: list[tuple[int, str | None]] = []
        self.requests: list[tuple[str, str]] = []
        self.stall = 0.0
        """Seconds every request waits before it is answered (for timeouts)."""
        self._changed = asyncio.Condition()
        self.base = ""

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self.failures.extend([(status, retry_after)] * times)

    async def set_state(self, key: str, **changes: Any) -> None:
        """Change fields of the monitor's `wire.MonitorState`; its version moves."""
        async with self._changed:
            state = self.states[key]
            changes["version"] = state.version + 1
            self.states[key] = msgspec.structs.replace(state, **changes)
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeFeedback]:
        app = web.Application(middlewares=[self._middleware])
        monitor = "/v1/monitors/{namespace}/{name}"
        app.add_routes(
            [
                web.get("/v1/monitors", self._list),
                web.put(monitor, self._put),
                web.get(monitor, self._get),
                web.delete(monitor, self._delete),
                web.get(monitor + "/state", self._state),
            ]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"
        try:
            yield self
        finally:
            async with self._changed:
                self._changed.notify_all()
            await runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.failures:
            status, retry = self.failures.pop(0)
            headers = {"Retry-After": retry} if retry else {}
            body = {"error": "scripted failure", "details": [{"field": "spec.x", "message": "no"}]}
            return web.json_response(body, status=status, headers=headers)
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        if self.token and request.method != "GET" and not authorized:
            return web.json_response({"error": "writes need a bearer token"}, status=401)
        return await handler(request)

    @staticmethod
    def _key(request: web.Request) -> str:
        return f"{request.match_info['namespace']}/{request.match_info['name']}"

    def _missing(self, key: str) -> web.Response:
        return web.json_response({"error": f"no monitor {key} is registered"}, status=404)

    async def _list(self, request: web.Request) -> web.Response:
        return _answer({"items": [self._view(key) for key in self.monitors]})

    async def _put(self, request: web.Request) -> web.Response:
        key = self._key(request)
        body = await request.json()
        created = key not in self.monitors
        self.monitors[key] = body
        generation = body.get("metadata", {}).get("generation", 1)
        if created:
            self.states[key] = wire.MonitorState(
                monitor=key,
                generation=generation,
                version=1,
                phase="Collecting",
                fallback=wire.FallbackState(active=False, mode="auto"),
            )
        else:
            await self.set_state(key, generation=generation)
        return _answer(self._view(key), status=201 if created else 200)

    async def _get(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if key not in self.monitors:
            return self._missing(key)
        return _answer(self._view(key))

    async def _delete(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if key not in self.monitors:
            return self._missing(key)
        del self.monitors[key]
        self.states.pop(key)
        return web.json_response({"deleted": key})

    async def _state(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if key not in self.states:
            return self._missing(key)
        wait = float(request.query.get("wait", "0"))
        since = request.query.get("since")
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: (
                            key not in self.states
                            or since is None
                            or str(self.states[key].version) != since
                        )
                    ),
                    wait,
                )
        if key not in self.states:
            return self._missing(key)
        return _answer(self.states[key])

    def _view(self, key: str) -> dict[str, Any]:
        return {**self.monitors[key], "status": wire.MonitorStatus.of(self.states[key])}


def _answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )
