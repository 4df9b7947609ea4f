"""A stand-in for the feedback service, for the sidecar's and the operator's tests.

It speaks the real service's routes and shapes (`core.wire`) for what those two use:
- the monitor registry, `PUT|GET|DELETE /v1/monitors/{namespace}/{name}` and `GET /v1/monitors`
  (the operator registers monitors, a sidecar fetches its spec); a GET answers the object with
  its `status`;
- the state long-poll, `GET .../state?wait=&since=` on a version that `set_state` and
  `set_fallback` move;
- the capture intake, `POST /v1/predictions` of NDJSON `CaptureRecord`s (anything else is a
  400): it keeps each record it accepts by (prediction_id, served_by), in arrival order, and
  counts those sent again after it answered 2xx for them;
- the namespace tokens, `PUT /v1/tokens/{namespace}` of `{"sha256": ...}` (kept in `tokens`).

A test scripts the answers. For any request: `fail` queues statuses (with an optional
Retry-After) for the next ones, `stall` delays every answer, and writes need the bearer `token`
when there is one. For the intake: `status_override` answers every POST with that status,
`max_records` refuses larger batches (413), `refuse_whole` a batch that holds such a record (a
400 that names no item), `reject` the items it gives a reason for (a 400 naming them). Every
request is logged (`requests`), before any script answers it.

The port is chosen when the fake is made, so a test can name the service before it starts (the
port refuses connections), stop it and start it again on the same port. `Hang` is a service that
accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from aiohttp import web

from tests.support import sites
from tests.support.ports import free_port
from truthloop.core import wire

PREDICTIONS = "/v1/predictions"
MONITORS = "/v1/monitors"
MONITOR = "/v1/monitors/{namespace}/{name}"
STATE = MONITOR + "/state"
TOKEN = "/v1/tokens/{namespace}"


class Seen(NamedTuple):
    """A request as it arrived."""

    method: str
    route: str
    """The pattern it matched (PREDICTIONS, MONITORS, MONITOR, STATE), else its path."""
    authorization: str | None
    monitor: str | None
    """Its X-Truthloop-Monitor header."""


class FakeFeedback:
    def __init__(self, *monitors: dict[str, Any], token: str | None = None) -> None:
        """A service that has these ModelMonitor objects registered."""
        self.token = token
        self.port = free_port()
        self.monitors: dict[str, dict[str, Any]] = {}
        """The registered objects by "namespace/name"; a test may replace one's body."""
        self.states: dict[str, wire.MonitorState] = {}
        self.tokens: dict[str, str] = {}
        """The SHA-256 of each namespace's registered token."""
        self.requests: list[Seen] = []
        self.failures: list[tuple[int, str | None]] = []
        self.stall = 0.0
        """Seconds every request waits before it is answered (for timeouts)."""
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: list[str] = []
        """The prediction IDs of the records kept, in the order they first arrived."""
        self.resent = 0
        self.status_override: int | None = None
        self.max_records: int | None = None
        self.refuse_whole: Callable[[dict[str, Any]], bool] = lambda record: False
        self.reject: Callable[[dict[str, Any]], str | None] = lambda record: None
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._listening: socket.socket | None = None
        """The port's listening socket while started."""
        for body in monitors:
            meta = body["metadata"]
            self.register(f"{meta['namespace']}/{meta['name']}", body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._script])
        app.add_routes(
            [
                web.post(PREDICTIONS, self._predictions),
                web.get(MONITORS, self._list),
                web.put(MONITOR, self._put),
                web.get(MONITOR, self._get),
                web.delete(MONITOR, self._delete),
                web.get(STATE, self._state),
                web.put(TOKEN, self._token),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        self._listening = await sites.serve(self._runner, self.port)

    async def stop(self) -> None:
        """Down: long-polls are answered at once, and the port refuses connections until `start`
        again."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            listening, self._listening = self._listening, None
            assert listening is not None
            self._wake()
            await sites.stop(runner, listening)

    async def __aenter__(self) -> FakeFeedback:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what a test scripts and reads

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` and a field error."""
        self.failures.extend([(status, retry_after)] * times)

    def register(self, key: str, body: dict[str, Any]) -> bool:
        """Keep `body` as monitor `key`'s, as a PUT does: a new monitor starts Collecting at the
        body's generation, a known one's state moves to it. True when the monitor is new."""
        generation = body.get("metadata", {}).get("generation", 1)
        created = key not in self.monitors
        self.monitors[key] = copy.deepcopy(body)
        if created:
            self.states[key] = wire.MonitorState(
                monitor=key,
                generation=generation,
                version=1,
                phase="Collecting",
                fallback=wire.FallbackState(active=False, mode="auto"),
            )
        else:
            self.set_state(key, generation=generation)
        return created

    def set_state(self, key: str, **changes: Any) -> None:
        """Change fields of the monitor's `wire.MonitorState`: its version moves, long-polls
        waiting on it are answered."""
        state = self.states[key]
        self.states[key] = msgspec.structs.replace(state, **changes, version=state.version + 1)
        self._wake()

    def set_fallback(self, key: str, active: bool) -> None:
        """The fallback engaged (or released) by hand, as `POST .../fallback` does."""
        self.set_state(
            key,
            phase="FallbackActive" if active else "Collecting",
            fallback=wire.FallbackState(
                active=active,
                mode="engaged" if active else "disengaged",
                since=time.time() if active else None,
                causes=(wire.MANUAL,) if active else (),
            ),
        )

    def calls(self, method: str, route: str) -> list[Seen]:
        """The requests so far by `method` to `route` (a pattern, e.g. PREDICTIONS)."""
        return [seen for seen in self.requests if seen.method == method and seen.route == route]

    @property
    def posts(self) -> int:
        """Batches sent, whatever the answer."""
        return len(self.calls("POST", PREDICTIONS))

    @property
    def auth(self) -> list[str | None]:
        """The Authorization header of each batch sent."""
        return [seen.authorization for seen in self.calls("POST", PREDICTIONS)]

    @property
    def state_polls(self) -> int:
        return len(self.calls("GET", STATE))

    @property
    def spec_fetches(self) -> int:
        return len(self.calls("GET", MONITOR))

    def ids(self, served_by: str = "model") -> set[str]:
        return {pid for pid, by in self.records if by == served_by}

    # -- the service

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @web.middleware
    async def _script(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        self.requests.append(
            Seen(
                request.method,
                resource.canonical if resource is not None else request.path,
                request.headers.get("Authorization"),
                request.headers.get("X-Truthloop-Monitor"),
            )
        )
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.failures:
            status, retry = self.failures.pop(0)
            headers = {"Retry-After": retry} if retry else {}
            body = {"error": "scripted failure", "details": [{"field": "spec.x", "message": "no"}]}
            return web.json_response(body, status=status, headers=headers)
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        if self.token and request.method != "GET" and not authorized:
            body = {"error": "writes need a bearer token", "details": []}
            return web.json_response(body, status=401)
        return await handler(request)

    @staticmethod
    def _key(request: web.Request) -> str:
        return f"{request.match_info['namespace']}/{request.match_info['name']}"

    def _missing(self, key: str) -> web.Response:
        return web.json_response({"error": f"no monitor {key} is registered"}, status=404)

    def _view(self, key: str) -> dict[str, Any]:
        return {**self.monitors[key], "status": wire.MonitorStatus.of(self.states[key])}

    async def _list(self, request: web.Request) -> web.Response:
        return _answer({"items": [self._view(key) for key in self.monitors]})

    async def _put(self, request: web.Request) -> web.Response:
        key = self._key(request)
        created = self.register(key, await request.json())
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
        del self.states[key]
        self._wake()
        return web.json_response({"deleted": key})

    async def _token(self, request: web.Request) -> web.Response:
        namespace, sha256 = request.match_info["namespace"], (await request.json())["sha256"]
        self.tokens[namespace] = sha256
        return web.json_response({"namespace": namespace, "sha256": sha256})

    async def _state(self, request: web.Request) -> web.Response:
        key = self._key(request)
        since = request.query.get("since")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(request.query.get("wait", "0"))):
                while self._runner is not None and self._unchanged(key, since):
                    await self._changed.wait()
        if key not in self.states:
            return self._missing(key)
        return _answer(self.states[key])

    def _unchanged(self, key: str, since: str | None) -> bool:
        state = self.states.get(key)
        return state is not None and since is not None and str(state.version) == since

    async def _predictions(self, request: web.Request) -> web.Response:
        if self.status_override is not None:
            error = {"error": "override", "details": []}
            return web.json_response(error, status=self.status_override)
        body = await request.read()
        assert request.content_type == "application/x-ndjson"
        try:
            records = [_RECORD(line) for line in body.splitlines() if line.strip()]
        except msgspec.ValidationError as e:
            return web.json_response({"error": f"not a capture record: {e}"}, status=400)
        items: list[dict[str, Any]] = msgspec.to_builtins(records)
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


_RECORD = msgspec.json.Decoder(wire.CaptureRecord).decode


def _answer(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


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
