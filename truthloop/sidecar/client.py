"""Requests to the feedback service over one kept-alive HTTP/1.1 connection, on the proxy's loop.

Shipping and the state follower talk to the service on the event loop that serves the
model's requests, so a request must never take a long turn of the loop: the head is written, then
a body in `slice_bytes` slices, one a turn (waiting while the socket's buffer is full), and the
answer is parsed by httptools as it arrives. One request at a time per `Client`; the connection
is kept for the next one and opened again once the service closed it. A request on a reused
connection that fails before any answer came is sent once more on a new connection: the service
may have closed the idle connection just then, and a repeat is harmless (a GET reads, and the
service deduplicates POSTed records).

A broken or hostile service cannot make the sidecar buffer without bound: an answer's head may
take `max_answer_bytes` (more is an error) and its body is kept up to `max_answer_bytes` (cut
there, the status still counts, and the connection dropped).

`request` raises `ClientError` (a `ConnectionError`) when the connection is lost or the answer is
not HTTP, another `OSError` when the service cannot be reached, and `TimeoutError` when the
exchange takes longer than its timeout. On any error, and when the caller is cancelled, the
connection is dropped, so a late answer never meets the next request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import cast

import httptools

MiB = 1024 * 1024


class ClientError(ConnectionError):
    """The exchange failed on the way: the connection was lost or the answer is not HTTP."""


class _Connection(asyncio.Protocol):
    """One connection: feeds httptools what arrives and resolves `answer` with (status, body)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.heard = False
        """Some of the answer to the current request arrived: if it fails now, the request is
        not sent again."""
        self.reusable = True
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._received = 0
        self._body = bytearray()
        self._paused: asyncio.Future[None] | None = None

    @property
    def open(self) -> bool:
        return self.transport is not None and self.reusable

    def expect(self, answer: asyncio.Future[tuple[int, bytes]]) -> None:
        """Make `answer` the future of the request about to be written."""
        self.answer = answer
        self.heard = False
        self._status = self._received = 0
        self._body = bytearray()

    async def writable(self) -> None:
        """Return once the transport takes more bytes; ClientError if the connection is gone."""
        if self._paused is not None:
            await asyncio.shield(self._paused)
        if self.transport is None:
            raise ClientError("the feedback service closed the connection")

    def drop(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.answer.done():
            self._fail(ClientError("the feedback service sent bytes no request asked for"))
            return
        self.heard = True
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ClientError(f"the feedback service's answer is not HTTP: {e}"))
            return
        if not self._status and self._received > self.limit:
            self._fail(ClientError(f"the feedback service's answer head passed {self.limit} bytes"))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()
        if self._status >= 200:  # a body that ends with the connection
            self._settle(cut=False)
        else:
            self._fail(ClientError("the feedback service closed the connection before answering"))

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = self.limit - len(self._body)
        self._body += body[:room]
        if len(body) > room:
            self._settle(cut=True)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue and the like: the answer follows
            self._status = 0
            return
        self._settle(cut=not self._parser.should_keep_alive())

    def _settle(self, cut: bool) -> None:
        answer = self.answer
        if answer is None or answer.done():
            return
        answer.set_result((self._status, bytes(self._body)))
        if cut:
            self.drop()

    def _fail(self, error: ClientError) -> None:
        self.drop()
        answer = self.answer
        if answer is not None and not answer.done():
            answer.set_exception(error)


class Client:
    """Requests to the service at `base_url` (its path, if any, prefixes every target), each with
    `headers` (kept in `headers`, changed by the caller at will; values must be printable ASCII).
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        *,
        timeout: float,
        slice_bytes: int = 64 * 1024,
        max_answer_bytes: int = 1 * MiB,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.headers = {} if headers is None else headers
        self.timeout = timeout
        """Seconds a request may take, connecting included (a long-poll's client allows for
        its wait; a caller may shorten one request with `asyncio.timeout`)."""
        self.slice_bytes = slice_bytes
        self.max_answer_bytes = max_answer_bytes
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._authority = parts.netloc.rpartition("@")[2]
        self._connection: _Connection | None = None

    async def request(
        self, method: str, target: str, body: bytes | bytearray | None = None
    ) -> tuple[int, bytes]:
        """The service's status and answer body (at most `max_answer_bytes` of it) to `method`
        on `target` (a path, and query, under the base URL), within `timeout`. A request
        without a body (a GET) sends no `Content-Length`."""
        head = self._head(method, target, body)
        async with asyncio.timeout(self.timeout):
            connection = self._connection
            if connection is not None and connection.open:
                try:
                    return await self._exchange(connection, head, body)
                except ClientError:
                    if connection.heard:
                        raise
            return await self._exchange(await self._connect(), head, body)

    def close(self) -> None:
        """Drop the connection (the next request opens one)."""
        if self._connection is not None:
            self._connection.drop()
            self._connection = None

    def _head(self, method: str, target: str, body: bytes | bytearray | None) -> bytes:
        fields = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        length = "" if body is None else f"Content-Length: {len(body)}\r\n"
        return (
            f"{method} {self._prefix + target or '/'} HTTP/1.1\r\nHost: {self._authority}\r\n"
            f"{fields}{length}\r\n"
        ).encode("ascii")

    async def _connect(self) -> _Connection:
        self.close()
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self.max_answer_bytes),
            self._host,
            self._port,
            ssl=self._tls or None,
        )
        self._connection = connection
        return connection

    async def _exchange(
        self, connection: _Connection, head: bytes, body: bytes | bytearray | None
    ) -> tuple[int, bytes]:
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        connection.expect(answer)
        try:
            transport = connection.transport
            if transport is None:
                raise ClientError("the feedback service closed the connection")
            transport.write(head)
            view = memoryview(body or b"")
            for start in range(0, len(view), self.slice_bytes):
                if start:
                    await asyncio.sleep(0)  # one slice a turn of the loop
                await connection.writable()
                if answer.done():  # answered before the whole body was sent: not reusable
                    connection.drop()
                    break
                transport.write(view[start : start + self.slice_bytes])
            return await answer
        except BaseException:
            connection.drop()
            _abandon(answer)
            raise
        finally:
            if not connection.open and self._connection is connection:
                self._connection = None


def _abandon(answer: asyncio.Future[tuple[int, bytes]]) -> None:
    """Let go of an answer the request no longer waits for: an error the connection already put
    in it is read (the request raised its own), and one it would put later cannot land; else the
    loop reports "Future exception was never retrieved"."""
    if not answer.done():
        answer.cancel()
    elif not answer.cancelled():
        answer.exception()
