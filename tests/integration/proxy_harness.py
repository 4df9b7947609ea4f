"""A proxy in front of `EchoModel` with raw-socket clients, for the proxy's integration tests.

Real sockets on 127.0.0.1; the clients speak through `tests.support.http1`, independent of
httptools. `scenario` runs a test under uvloop (production) and asyncio's own loop (the fallback
when uvloop is missing). No sleeps: waits are on conditions, bounded by deadlines; a client that
is slow on purpose paces itself by the proxy's timeout sweeps (`sweeps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from tests.support import http1
from tests.support.echo_model import EchoModel
from tests.support.waiting import eventually
from truthloop.sidecar.exchange import Exchange, Headers, LocalResponse
from truthloop.sidecar.proxy import Proxy, ProxySettings, start_proxy

KiB = 1024
MiB = 1024 * KiB
DEADLINE = 10.0


@dataclass
class RecordingTap:
    """Records what the proxy reports; answers locally with `answer` while `wants_local`, and
    in the model's place with `judge` while `wants_verdict`."""

    wants_local: bool = False
    shadow: bool = False
    wants_verdict: bool = False
    answer: Callable[[str, str, Headers, bytes], LocalResponse | None] | None = None
    judge: Callable[[str, int, Headers, bytes], LocalResponse | None] | None = None
    judged: list[tuple[str, int, bytes]] = field(default_factory=list)
    fail_observe: bool = False
    exchanges: list[Exchange] = field(default_factory=list)
    asked: list[tuple[str, str, bytes]] = field(default_factory=list)

    def local_response(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        self.asked.append((method, path, body))
        return self.answer(method, path, headers, body) if self.answer else None

    def verdict(
        self, prediction_id: str, status: int, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        self.judged.append((prediction_id, status, body))
        return self.judge(prediction_id, status, headers, body) if self.judge else None

    def observe(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if self.fail_observe:
            raise RuntimeError("a broken tap")


async def sweeps(proxy: Proxy, count: int) -> None:
    """Wait until the proxy's timeout sweep has run `count` more times: the pace of a client that
    is slow on purpose, measured on the clock the proxy's timeouts are measured on."""
    ctx = proxy._ctx
    for _ in range(count):
        last = ctx.clock
        await eventually(lambda: ctx.clock != last, "the proxy swept its connections")  # noqa: B023


class Client:
    """A raw HTTP/1.1 connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, window: int | None = None) -> Client:
        """`window`: about how many bytes of the answer the client takes in before it stops
        reading the socket (a small receive buffer, and a stream that pauses early), for a client
        that reads slowly or not at all; otherwise it takes what comes."""
        if window is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=16 * MiB)
            return cls(reader, writer)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window // 2)  # Linux doubles it
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=window // 2)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, bodyless: bool = False) -> http1.Message:
        async with asyncio.timeout(DEADLINE):
            msg = await http1.read_message(self.reader, request=False, bodyless=bodyless)
        assert msg is not None, "the proxy closed the connection instead of answering"
        return msg

    async def closed(self) -> bool:
        """Whether the proxy closes the connection (no more bytes, end of stream)."""
        async with asyncio.timeout(DEADLINE):
            try:
                return await self.reader.read() == b""
            except ConnectionError:
                return True

    async def upgrade(self) -> None:
        """Turn the connection into a tunnel to the model, which echoes what it is sent."""
        await self.send(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        async with asyncio.timeout(DEADLINE):
            head = await http1.read_head(self.reader)
        assert head is not None
        assert head[0] == b"HTTP/1.1 101 Switching Protocols"

    async def cut(self) -> None:
        """Read until the proxy ends the connection (closed or reset), whatever comes first."""
        async with asyncio.timeout(DEADLINE):
            with contextlib.suppress(ConnectionError):
                while await self.reader.read(65536):
                    pass

    async def exchange(self, data: bytes, *, bodyless: bool = False) -> http1.Message:
        await self.send(data)
        return await self.response(bodyless=bodyless)

    def close(self) -> None:
        self.writer.close()


@dataclass
class World:
    """A model, a tap, a proxy in front of the model and a client connected to it."""

    model: EchoModel
    tap: RecordingTap
    proxy: Proxy
    client: Client
    proxies: list[Proxy]
    clients: list[Client]

    async def make_proxy(self, **settings: Any) -> Proxy:
        """Another proxy in front of the model, with some settings changed."""
        p = await start_proxy(_settings(self.model, **settings), self.tap)
        self.proxies.append(p)
        return p

    async def connect(self, proxy: Proxy | None = None, *, window: int | None = None) -> Client:
        c = await Client.open((proxy or self.proxy).port, window=window)
        self.clients.append(c)
        return c


class EagerModel:
    """A model that answers every request at once, before reading its body: a chunked 200 with
    `chunks` chunks of 64 KiB (None: without end, as fast as the proxy takes them), then reads
    until the proxy closes. `closed` counts the connections the proxy closed on it."""

    def __init__(self, chunks: int | None) -> None:
        self.chunks = chunks
        self.closed = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> EagerModel:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await http1.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            while self.chunks is None or sent < self.chunks:
                writer.write(b"10000\r\n" + b"e" * 65536 + b"\r\n")
                await writer.drain()
                sent += 1
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            self.closed += 1
            writer.close()


def _settings(model: EchoModel, **settings: Any) -> ProxySettings:
    return ProxySettings(
        **({"listen_host": "127.0.0.1", "listen_port": 0, "model_port": model.port} | settings)
    )


@contextlib.asynccontextmanager
async def world() -> AsyncIterator[World]:
    model = EchoModel()
    await model.start()
    tap = RecordingTap()
    proxy = await start_proxy(_settings(model), tap)
    client = await Client.open(proxy.port)
    w = World(model, tap, proxy, client, [proxy], [client])
    try:
        yield w
    finally:
        for c in w.clients:
            c.close()
        for p in w.proxies:
            await p.close(grace=1.0)
        await model.stop()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def scenario(fn: Callable[[World], Awaitable[None]]) -> Callable[[str], None]:
    """A test run in a fresh `world()`, once under uvloop (production) and once under asyncio's
    own loop (the fallback when uvloop is missing)."""

    @pytest.mark.parametrize("loop", LOOPS)
    def test(loop: str) -> None:
        async def main() -> None:
            async with world() as w:
                await fn(w)

        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(asyncio.wait_for(main(), 3 * DEADLINE))

    test.__name__ = fn.__name__
    test.__qualname__ = fn.__qualname__
    test.__doc__ = fn.__doc__
    return test
