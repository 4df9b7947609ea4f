"""A small HTTP/1.1 server that answers GETs from a table of paths: the sidecar's admin port.

The kubelet probes it and Prometheus scrapes it, so it needs no framework: httptools parses the
requests (as on the proxy's data path), each path's handler returns an `Answer`, and HEAD gets the
GET's head. A path not in the table is answered 404 (`not_found`), another method 405
(`method_not_allowed`, with `Allow`), a handler's failure 500 (logged); each with the project's
JSON error body. Connections are kept alive; requests on one are answered in order, and reading
pauses while one is answered.

No client can make it hold or wait on it without bound: request heads have the proxy's limits
(`Limits`: URL 414 `url_too_long`, header bytes and fields 431 `headers_too_large` and
`too_many_headers`; a head, or trailers, still unfinished on the wire past the two limits is cut
alike), a body is read and dropped up to `MAX_BODY` bytes (more: 413 `body_too_large`), a head
must come within `header_timeout` and a body's next byte within `body_timeout` (408), an idle
connection is closed after `keepalive_timeout`, an answer the client does not read within
`send_timeout` is cut, and past `max_connections` the connection that has waited longest for a
request is closed. A refused request is answered with `Connection: close`, then what the client
still sends is read and dropped for `downstream.LINGER` seconds, so the answer is not lost to a
reset.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httptools
import msgspec

from truthloop.sidecar import downstream
from truthloop.sidecar.context import HEAD_SLACK

log = logging.getLogger("truthloop.sidecar.server")

KiB = 1024
MAX_BODY = 64 * KiB
"""Request body bytes read (and dropped) at most: the admin port takes no bodies."""
METHODS = (b"GET", b"HEAD")


@dataclass(frozen=True, slots=True)
class Answer:
    """What a handler answers: the status, the body and its type."""

    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[], Awaitable[Answer]]


def json(status: int, value: Any) -> Answer:
    return Answer(status, msgspec.json.encode(value))


def error(status: int, summary: str, field: str, reason: str, message: str) -> Answer:
    """The project's JSON error body, with one detail."""
    detail = {"field": field, "message": message, "reason": reason}
    return json(status, {"error": summary, "details": [detail]})


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may ask of the server (the proxy's defaults, but for time and connections,
    which fit probes and scrapes)."""

    max_url_bytes: int = 8 * KiB
    """Longest request target taken; longer: 414."""
    max_header_bytes: int = 32 * KiB
    """Largest header section taken (each field as `Name: value` and CRLF); larger: 431."""
    max_header_fields: int = 100
    """Most header fields taken; more: 431."""
    header_timeout: float = 10.0
    """Seconds for a whole request head, from connecting or from its first byte; then 408 (or
    closed, if nothing came)."""
    body_timeout: float = 10.0
    """Seconds a body's next byte may take; then 408."""
    keepalive_timeout: float = 75.0
    """Seconds an idle connection waits for its next request before it is closed."""
    send_timeout: float = 30.0
    """Seconds a client may take to read an answer (while the server waits on it) before it is
    cut."""
    max_connections: int = 64
    """Connections open at once; past it the one that has waited longest for a request is
    closed to make room, and if every one is being answered the new one is closed."""


_Request = tuple[bytes, bytes, bool]
"""(method, path, keep the connection alive after the answer)."""


class Server:
    """A listening server; `port` is the port it got, `close()` stops it."""

    def __init__(self, routes: Mapping[bytes, Handler], limits: Limits) -> None:
        self.routes = routes
        self.limits = limits
        self.connections: set[_Connection] = set()
        self.refusals = downstream.refusal_responses(
            limits.max_url_bytes,
            limits.max_header_bytes,
            limits.max_header_fields,
            limits.header_timeout,
            limits.body_timeout,
        )
        limit = f"over {MAX_BODY} bytes"
        too_large = error(413, "request body too large", "body", "body_too_large", limit)
        self.refusals["body_too_large"] = _message(too_large, keep_alive=False)
        self.max_head_bytes = limits.max_url_bytes + limits.max_header_bytes + HEAD_SLACK
        """Bytes a head may take on the wire before it is whole (httptools holds a field until
        it is whole, so the limits above see it only then)."""
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.abort()
        await self._server.wait_closed()

    async def answer(self, method: bytes, path: bytes, keep_alive: bool) -> bytes:
        """The whole answer (a HEAD's without its body) to `method` on `path`."""
        handler = self.routes.get(path)
        allow = b""
        if handler is None:
            answer = error(404, "not found", "path", "not_found", "no such path on this port")
        elif method not in METHODS:
            answer = error(405, "method not allowed", "method", "method_not_allowed", "GET or HEAD")
            allow = b"Allow: GET, HEAD\r\n"
        else:
            try:
                answer = await handler()
            except Exception:
                log.exception("answering %s failed", path.decode("latin-1"))
                answer = json(500, {"error": "internal error", "details": []})
        whole = _message(answer, keep_alive, allow)
        return whole[: len(whole) - len(answer.body)] if method == b"HEAD" else whole

    def make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        waiting = [c for c in self.connections if c.task is None]
        if not waiting:
            return False
        oldest = min(waiting, key=_since)
        self.connections.discard(oldest)
        oldest.abort()
        return True


async def start(routes: Mapping[bytes, Handler], host: str, port: int, limits: Limits) -> Server:
    """A server answering `routes` on host:port (0: a free port); OSError if it cannot listen."""
    server = Server(routes, limits)
    await server._listen(host, port)
    return server


def _message(answer: Answer, keep_alive: bool, more: bytes = b"") -> bytes:
    status = http.HTTPStatus(answer.status)
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, status.phrase.encode()),
            b"Content-Type: %s\r\n" % answer.content_type.encode(),
            b"Content-Length: %d\r\n" % len(answer.body),
            b"" if keep_alive else b"Connection: close\r\n",
            more,
            b"\r\n",
            answer.body,
        )
    )


def _since(connection: _Connection) -> float:
    return connection.since


class _Refused(Exception):
    """Raised from a parser callback when a request breaks a limit; `reason` names which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Connection(asyncio.Protocol):
    """One client connection: parses its requests, answers them in order, keeps the time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        """Answering the queue; None while the connection waits for (the rest of) a request."""
        self.since = 0.0
        """Loop time it began to wait for a request."""
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[_Request | str] = collections.deque()
        """Requests to answer, and at the end maybe a refusal (a key of `Server.refusals`)."""
        self._url: list[bytes] = []
        self._url_size = 0
        self._fields = 0
        self._field_bytes = 0
        self._unparsed = 0
        """Bytes fed since httptools last produced a head, a body chunk or an end."""
        self._in_head = True
        self._body = 0
        self._request: _Request = (b"", b"", False)
        self._stopped = False
        """Nothing more is parsed: a refusal or an upgrade, or the client's end of stream."""
        self._idle = False
        self._timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        server = self.server
        if len(server.connections) >= server.limits.max_connections and not server.make_room():
            self.transport.abort()
            return
        server.connections.add(self)
        self.since = self._loop.time()
        self._arm(server.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return  # a refused client's bytes, read and dropped while it reads the answer
        if self._idle:
            self._idle = False
            self._arm(self.server.limits.header_timeout)
        self._unparsed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stopped = True  # the request is answered; what follows is not HTTP
        except httptools.HttpParserError as e:
            refused = e.__context__
            self._refuse(refused.reason if isinstance(refused, _Refused) else "bad_request")
        else:
            if self._unparsed > self.server.max_head_bytes:  # a head, or trailers, held unfinished
                self._refuse("headers_too_large")
        if self._queue and self.task is None:
            assert self.transport is not None
            self.transport.pause_reading()
            self.task = self._loop.create_task(self._answer_queue())

    def eof_received(self) -> bool:
        """Answer what was asked, then close; close at once if nothing was."""
        self._stopped = True
        return self.task is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._disarm()
        if self.task is not None:
            self.task.cancel()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > self.server.limits.max_url_bytes:
            raise _Refused("url_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: dropped (bounded on the wire, as a head)
        limits = self.server.limits
        self._fields += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._fields > limits.max_header_fields:
            raise _Refused("too_many_headers")
        if self._field_bytes > limits.max_header_bytes:
            raise _Refused("headers_too_large")

    def on_headers_complete(self) -> None:
        p = self._parser
        path = b"".join(self._url).partition(b"?")[0]
        self._request = (p.get_method(), path, p.should_keep_alive() and not p.should_upgrade())
        self._url = []
        self._url_size = self._fields = self._field_bytes = self._unparsed = self._body = 0
        self._in_head = False
        self._arm(self.server.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        self._unparsed = 0
        self._body += len(body)
        if self._body > MAX_BODY:
            raise _Refused("body_too_large")
        self._arm(self.server.limits.body_timeout)

    def on_message_complete(self) -> None:
        self._queue.append(self._request)
        self._in_head = True
        self._unparsed = 0
        self._disarm()

    # Answering, and the time

    async def _answer_queue(self) -> None:
        transport = self.transport
        assert transport is not None
        limits = self.server.limits
        try:
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, str):
                    self._linger(self.server.refusals[item])
                    return
                method, path, keep_alive = item
                keep_alive = keep_alive and not (self._stopped and not self._queue)
                transport.write(await self.server.answer(method, path, keep_alive))
                if not keep_alive:
                    transport.close()
                    self._arm(limits.send_timeout)  # the close waits for the client to read
                    return
                if self._writable is not None:
                    async with asyncio.timeout(limits.send_timeout):
                        await self._writable
        except TimeoutError:
            transport.abort()
            return
        finally:
            self.task = None
        if self._stopped:  # the client's end of stream came while its last answer was made
            transport.close()
            return
        self.since = self._loop.time()
        if self._in_head and not self._unparsed:
            self._idle = True
            self._arm(limits.keepalive_timeout)
        else:  # part of the next request is here already
            self._arm(limits.header_timeout)
        transport.resume_reading()

    def _refuse(self, reason: str) -> None:
        """Parse no more; answer `reason` after the requests before it."""
        self._stopped = True
        self._queue.append(reason)
        self._disarm()

    def _linger(self, refusal: bytes) -> None:
        """Write the refusal and our end of stream, then drop what the client still sends until
        it closes or LINGER seconds pass."""
        transport = self.transport
        if transport is None:
            return
        transport.write(refusal)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._arm(downstream.LINGER)
        transport.resume_reading()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        """Time is up: a request that began is refused (408), anything else is closed."""
        self._timer = None
        transport = self.transport
        if transport is None or self.task is not None:
            return  # being answered: the time starts again after the answers
        if self._stopped or transport.is_closing():
            transport.abort()  # lingered long enough, or a close the client does not read
        elif self._in_head and not self._unparsed:
            transport.close()  # nothing of a request came
        else:
            self._refuse(downstream.HEADER_TIMEOUT if self._in_head else downstream.BODY_TIMEOUT)
            transport.pause_reading()
            self.task = self._loop.create_task(self._answer_queue())
