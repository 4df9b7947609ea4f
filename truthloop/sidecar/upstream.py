"""Connections to the model: a keep-alive pool and the protocol that reads the model's responses.

An `Upstream` carries one request at a time (nothing is pipelined towards the model, so one slow
answer never holds up another client's). Whoever sends a request on it is its `Sink` and hears the
response as events: interim 1xx heads, the head, body chunks, the end — or a failure with a reason
code. At the end the connection goes back to the pool when the model allows keep-alive and the
request went out whole; otherwise it is closed.

A connection taken from the pool that closes before any byte of the answer arrived fails with
`retryable=True`: that is the model closing an idle keep-alive connection just as it was reused,
and the sink may send the request again on a fresh connection.

In `raw` mode (an Upgrade or CONNECT tunnel) bytes go to the sink unparsed.

A model may speak first on a fresh connection (an HTTP/2 server sends its SETTINGS as soon as it
accepts one), and under uvloop those bytes can arrive before the call that opened the connection
has attached to it: they are kept (`EARLY_LIMIT`) and handed to the sink once it has sent its
request (`deliver_early`). Bytes nobody asked for on a connection already used close it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import httptools

from truthloop.sidecar.endpoint import Endpoint
from truthloop.sidecar.headers import Field
from truthloop.sidecar.stats import ProxyStats

log = logging.getLogger("truthloop.sidecar.upstream")

EARLY_LIMIT = 64 * 1024
"""Bytes a fresh connection's model may send before it is asked (more closes the connection)."""


class Sink(Protocol):
    """The side of an exchange that hears the model's response."""

    __slots__ = ()

    def on_interim(self, status: int, reason: bytes, fields: list[Field]) -> None:
        """A 1xx head other than 101 (e.g. 100 Continue, 103 Early Hints)."""

    def on_head(self, status: int, reason: bytes, fields: list[Field]) -> bool:
        """The final head. Returns whether the body ends only when the model closes (neither
        Content-Length nor chunked) — the sink parses the fields anyway, so it tells."""

    def on_body(self, chunk: bytes) -> None: ...

    def on_end(self) -> None:
        """The response is complete (the connection is already back in the pool or closed)."""

    def on_failed(self, reason: str, retryable: bool) -> None:
        """The response cannot complete: `model_closed` or `bad_response`."""

    def on_raw(self, data: bytes) -> None:
        """Tunnel bytes from the model (raw mode only)."""

    def pause_request(self) -> None:
        """The model reads the request body slower than it comes: stop reading the client."""

    def resume_request(self) -> None: ...


class Upstream(Endpoint):
    """One connection to the model."""

    __slots__ = (
        "_early",
        "_eof_ends",
        "_head_only",
        "_interim",
        "_parser",
        "_paused",
        "_reason",
        "_status",
        "client",
        "fields",
        "pool",
        "raw",
        "received",
        "request_sent",
        "reused",
        "sink",
    )

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool = pool
        self.sink: Sink | None = None
        self.client: Endpoint | None = None
        """Where the sink writes the response: corked while a read from the model is parsed, so
        what it produces goes out in one send."""
        self.reused = False
        """Taken from the pool (as opposed to freshly connected) for the current request."""
        self.received = False
        """Some byte of the current response has arrived."""
        self.request_sent = False
        """The current request went out whole (a precondition for reuse)."""
        self.raw = False
        self.fields: list[Field] = []
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._reason = b""
        self._head_only = False
        self._interim = False
        self._eof_ends = False
        self._paused = False
        self._early: list[bytes] | None = []
        """What the model sent before the connection's first sink was attached; None after."""

    def begin(self, sink: Sink, head_only: bool, client: Endpoint | None) -> None:
        """Make `sink` hear the next response; `head_only`: it answers a HEAD (no body follows);
        `client`: the connection the sink writes the response to, if any."""
        self.sink = sink
        self.client = client
        self.received = False
        self.request_sent = False
        self._head_only = head_only

    def deliver_early(self) -> None:
        """Hand the sink, once it has sent its request, what the model sent before it was asked
        (from here on, bytes nobody asked for close the connection)."""
        early, self._early = self._early, None
        if early:
            self.data_received(b"".join(early))

    @property
    def spoke_first(self) -> bool:
        """The model sent bytes on this fresh connection before any request."""
        return bool(self._early)

    @property
    def reading_paused(self) -> bool:
        return self._paused

    def pause_reading(self) -> None:
        """Stop reading the response (the client reads slower than the model writes)."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection now, mid-request (client gone, timeout); the sink hears nothing."""
        self.sink = None
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol.

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            early = self._early
            if early is not None and sum(map(len, early)) + len(data) <= EARLY_LIMIT:
                early.append(data)  # a fresh connection whose call is not attached yet
                return
            # bytes nobody asked for: the connection's state is unknown
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.abort()
            return
        self.received = True
        if self.raw:
            sink.on_raw(data)
            return
        client = self.client
        if client is not None:
            client.corked = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            if isinstance(e, httptools.HttpParserCallbackError) and e.__context__ is not None:
                log.error("response handling failed", exc_info=e.__context__)
            self._fail("bad_response")
        except httptools.HttpParserUpgrade:
            self._fail("bad_response")  # 101 to a request that asked for no upgrade
        finally:
            if client is not None:
                client.uncork()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        sink = self.sink
        if sink is None:
            return
        if self.raw or self._eof_ends:
            self.sink = None
            sink.on_end()
        else:
            self._fail("model_closed")

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_request()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_request()

    # httptools callbacks.

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._status == 0:  # after the head, these would be trailers: dropped
            self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        fields, self.fields = self.fields, []
        sink = self.sink
        assert sink is not None
        if status < 200:
            self._interim = True
            sink.on_interim(status, self._reason, fields)
            return
        self._status = status
        bodyless = self._head_only or status in (204, 304)
        self._eof_ends = sink.on_head(status, self._reason, fields) and not bodyless
        if self._head_only:
            # httptools cannot be told that a HEAD response has no body; this parser would wait
            # for Content-Length bytes, so the exchange ends here and a fresh parser reads on.
            keep_alive = self._parser.should_keep_alive()
            self._parser = httptools.HttpResponseParser(self)
            self._finish(keep_alive)

    def on_body(self, chunk: bytes) -> None:
        if self.sink is not None:
            self.sink.on_body(chunk)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.sink is not None:
            self._finish(keep_alive=self._parser.should_keep_alive())

    # Internals.

    def _finish(self, keep_alive: bool) -> None:
        sink = self.sink
        assert sink is not None
        self.sink = None
        self.client = None
        self._status = 0
        self._eof_ends = False
        if keep_alive and self.request_sent:
            self.pool.release(self)
        elif self.transport is not None:
            self.transport.close()
        sink.on_end()

    def _fail(self, reason: str) -> None:
        sink = self.sink
        self.sink = None
        self.client = None
        self._status = 0
        self._eof_ends = False
        self.pool.discard(self)
        if self.transport is not None:
            self.transport.abort()
        if sink is not None:
            sink.on_failed(reason, retryable=self.reused and not self.received)


class Pool:
    """Idle keep-alive connections to the model, most recently used first.

    `max_idle` bounds the idle ones only: a request that finds none opens a new connection, so
    concurrency towards the model is never capped here (the model's own limits apply).
    """

    __slots__ = ("_closed", "_idle", "_loop", "host", "max_idle", "port", "stats")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        max_idle: int,
        stats: ProxyStats,
    ) -> None:
        self._loop = loop
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.stats = stats
        self._idle: list[Upstream] = []
        self._closed = False

    def take(self) -> Upstream | None:
        """An idle connection, or None."""
        idle = self._idle
        while idle:
            up = idle.pop()
            if up.transport is not None and not up.transport.is_closing():
                up.reused = True
                return up
        return None

    async def connect(self) -> Upstream:
        """A new connection (OSError if the model cannot be reached)."""
        _, up = await self._loop.create_connection(lambda: Upstream(self), self.host, self.port)
        self.stats.upstream_connects += 1
        up.reused = False
        return up

    def release(self, up: Upstream) -> None:
        if (
            self._closed
            or len(self._idle) >= self.max_idle
            or up.transport is None
            or up.spoke_first  # not an HTTP/1.1 server: nobody else should take it
        ):
            if up.transport is not None:
                up.transport.close()
            return
        if up._paused:
            up.resume_reading()
        self._idle.append(up)

    def discard(self, up: Upstream) -> None:
        if up in self._idle:
            self._idle.remove(up)

    def close(self) -> None:
        """Close the idle connections and refuse to keep any more."""
        self._closed = True
        idle, self._idle = self._idle, []
        for up in idle:
            if up.transport is not None:
                up.transport.close()
