"""A real gRPC server (grpcio) and a model port that speaks both gRPC and HTTP/1.1.

`GrpcModel` serves `test.Echo` with a generic handler and raw bytes (no protoc): `Say` (unary:
the request with `said:` before it), `Count` (server streaming: `b"<i>"` for i below the number
the request holds), `Join` (client streaming: the requests joined) and `Chat` (bidirectional:
each request back, upper-cased). It runs on grpcio's own threads, so the test's loop (and the
proxy on it) is free while a call waits; calls are made from threads too (`asyncio.to_thread`).

`Mux` is a model port as a server speaking HTTP/1.1 and h2c on one port would be: a connection
that begins with the HTTP/2 preface is piped to the gRPC server, any other to an HTTP/1.1 model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "test.Echo"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"said:" + request


def _count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request)):
        yield b"%d" % i


def _join(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b",".join(requests)


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield request.upper()


class GrpcModel:
    """The gRPC server on 127.0.0.1 (`port` once started)."""

    def __init__(self, workers: int = 64) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Say": grpc.unary_unary_rpc_method_handler(_say),
                "Count": grpc.unary_stream_rpc_method_handler(_count),
                "Join": grpc.stream_unary_rpc_method_handler(_join),
                "Chat": grpc.stream_stream_rpc_method_handler(_chat),
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> GrpcModel:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()


class Stub:
    """The client side of `test.Echo` on one channel (one HTTP/2 connection, its own) to `port`."""

    def __init__(self, port: int) -> None:
        # Its own subchannel pool: channels to one address would otherwise share a connection.
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        method = f"/{SERVICE}/"
        self.say = self.channel.unary_unary(method + "Say")
        self.count = self.channel.unary_stream(method + "Count")
        self.join = self.channel.stream_unary(method + "Join")
        self.chat = self.channel.stream_stream(method + "Chat")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Stub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Mux:
    """A port that pipes each connection to `grpc_port` (it began with the HTTP/2 preface) or to
    `http_port` (anything else); `piped` counts the connections by where they went."""

    def __init__(self, grpc_port: int, http_port: int) -> None:
        self._to = {"grpc": grpc_port, "http": http_port}
        self.piped = {"grpc": 0, "http": 0}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Mux:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._route(reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = b""
        while len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            data = await reader.read(len(PREFACE) - len(seen))
            if not data:
                return
            seen += data
        where = "grpc" if seen == PREFACE else "http"
        self.piped[where] += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._to[where])
        self._writers.add(up_writer)
        try:
            up_writer.write(seen)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            self._writers.discard(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()
