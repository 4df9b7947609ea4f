"""gRPC through the proxy: a connection that begins with the HTTP/2 preface is tunnelled whole to
the model, uncaptured and counted, while HTTP/1.1 on the same proxy is served and reported as
ever.

A real gRPC server and client (grpcio, `tests.support.grpc_model`) on 127.0.0.1; the model port
is a `Mux` that speaks gRPC and HTTP/1.1 (`EchoModel`) as one server would. gRPC calls block, so
they run in threads while the proxy runs on the test's loop (uvloop, and asyncio's own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest

from tests.integration.proxy_harness import DEADLINE, LOOPS, Client, MiB, RecordingTap
from tests.support import http1
from tests.support.echo_model import EchoModel
from tests.support.grpc_model import PREFACE, GrpcModel, Mux, Stub
from tests.support.ports import free_port
from tests.support.waiting import eventually
from truthloop.sidecar.downstream import _Preface
from truthloop.sidecar.proxy import Proxy, ProxySettings, start_proxy

T = TypeVar("T")

SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""An empty HTTP/2 SETTINGS frame (a client's first frame after the preface)."""


def on_both_loops(fn: Callable[[], Awaitable[None]]) -> Callable[[str], None]:
    """A test run under uvloop (production) and asyncio's own loop (the fallback without it)."""

    @pytest.mark.parametrize("loop", LOOPS)
    def test(loop: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(asyncio.wait_for(fn(), 6 * DEADLINE))

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


@dataclass
class Stack:
    grpc: GrpcModel
    mux: Mux
    echo: EchoModel
    tap: RecordingTap
    proxy: Proxy


@contextlib.asynccontextmanager
async def stack(**settings: Any) -> AsyncIterator[Stack]:
    echo = EchoModel()
    await echo.start()
    with GrpcModel() as server:
        async with Mux(server.port, echo.port) as mux:
            tap = RecordingTap()
            proxy = await start_proxy(
                ProxySettings(
                    **{"listen_host": "127.0.0.1", "listen_port": 0, "model_port": mux.port}
                    | settings
                ),
                tap,
            )
            try:
                yield Stack(server, mux, echo, tap, proxy)
            finally:
                await proxy.close(grace=1.0)
    await echo.stop()


async def in_thread(fn: Callable[[], T]) -> T:
    async with asyncio.timeout(3 * DEADLINE):
        return await asyncio.to_thread(fn)


@on_both_loops
async def test_unary_and_streaming_calls_pass_through_uncaptured() -> None:
    async with stack() as s:
        with Stub(s.proxy.port) as stub:
            assert await in_thread(lambda: stub.say(b"hello", timeout=DEADLINE)) == b"said:hello"
            counted = await in_thread(lambda: list(stub.count(b"5", timeout=DEADLINE)))
            assert counted == [b"0", b"1", b"2", b"3", b"4"]
            joined = await in_thread(lambda: stub.join(iter([b"a", b"b", b"c"]), timeout=DEADLINE))
            assert joined == b"a,b,c"
            chat = await in_thread(lambda: list(stub.chat(iter([b"x", b"y"]), timeout=DEADLINE)))
            assert chat == [b"X", b"Y"]
        assert s.proxy.stats.passthrough == {"h2c": 1}  # one channel, one connection
        assert s.mux.piped == {"grpc": 1, "http": 0}
        assert s.tap.exchanges == []  # nothing of it is captured
        assert not s.proxy.stats.requests
        assert not s.proxy.stats.bad_requests


@on_both_loops
async def test_a_grpc_server_that_speaks_first_is_heard() -> None:
    """A gRPC server sends its SETTINGS as soon as it accepts a connection, before the proxy has
    attached the tunnel to it (under uvloop the bytes can come first): they reach the client."""
    with GrpcModel() as server:
        settings = ProxySettings(listen_host="127.0.0.1", listen_port=0, model_port=server.port)
        proxy = await start_proxy(settings, RecordingTap())
        try:
            for i in range(3):  # a connection each
                with Stub(proxy.port) as stub:
                    said = await in_thread(lambda: stub.say(b"%d" % i, timeout=DEADLINE))  # noqa: B023
                    assert said == b"said:%d" % i
            assert proxy.stats.passthrough == {"h2c": 3}
            assert not proxy.stats.upstream_errors
        finally:
            await proxy.close(grace=1.0)


@on_both_loops
async def test_many_concurrent_calls_share_one_connection() -> None:
    async with stack() as s:
        with Stub(s.proxy.port) as stub:

            def calls() -> tuple[list[bytes], list[list[bytes]]]:
                unary = [stub.say.future(b"%d" % i, timeout=DEADLINE) for i in range(300)]
                streams = [stub.count(b"%d" % (i * 10), timeout=DEADLINE) for i in range(20)]
                counted = [list(stream) for stream in streams]
                return [f.result() for f in unary], counted

            said, counted = await in_thread(calls)
        assert said == [b"said:%d" % i for i in range(300)]
        assert counted == [[b"%d" % j for j in range(i * 10)] for i in range(20)]
        assert s.proxy.stats.passthrough == {"h2c": 1}
        assert s.mux.piped["grpc"] == 1


@on_both_loops
async def test_large_messages_flow_both_ways() -> None:
    """Megabytes each way on one connection: the tunnel's flow control holds a read's worth."""
    async with stack() as s:
        with Stub(s.proxy.port) as stub:
            big = bytes(range(256)) * (3 * MiB // 256)
            answer = await in_thread(lambda: stub.say(big, timeout=DEADLINE))
            assert answer == b"said:" + big
            chat = await in_thread(lambda: list(stub.chat(iter([big] * 4), timeout=DEADLINE)))
            assert chat == [big.upper()] * 4


@on_both_loops
async def test_http1_on_the_same_proxy_is_served_and_reported() -> None:
    async with stack() as s:
        with Stub(s.proxy.port) as stub:
            assert await in_thread(lambda: stub.say(b"x", timeout=DEADLINE)) == b"said:x"
            client = await Client.open(s.proxy.port)
            try:
                body = b'{"features": {"a": 1}}'
                resp = await client.exchange(http1.request("POST", "/echo", [], body))
            finally:
                client.close()
            assert resp.status == 200
            assert resp.body == body
            assert await in_thread(lambda: stub.say(b"y", timeout=DEADLINE)) == b"said:y"
        await eventually(lambda: len(s.tap.exchanges) == 1, "the HTTP/1.1 exchange was reported")
        [ex] = s.tap.exchanges
        assert (ex.method, ex.path, ex.request_body, ex.skip_reason) == (
            "POST",
            "/echo",
            body,
            None,
        )
        assert s.proxy.stats.passthrough == {"h2c": 1}
        assert s.mux.piped == {"grpc": 1, "http": 1}


@on_both_loops
async def test_a_preface_split_over_reads_is_still_tunnelled() -> None:
    async with stack() as s:
        for pieces in ([3, 5, 8, 8], [1] * len(PREFACE), [23, 1]):
            await _split(s, pieces)
        assert s.proxy.stats.passthrough == {"h2c": 3}
        assert s.mux.piped == {"grpc": 3, "http": 0}


async def _split(s: Stack, pieces: list[int]) -> None:
    """Send the preface in `pieces` (each read by the proxy before the next is sent), then a
    SETTINGS frame: the gRPC server's own SETTINGS frame comes back."""
    client = await Client.open(s.proxy.port)
    try:
        at = 0
        for n in pieces:
            await client.send(PREFACE[at : at + n])
            at += n
            if at < len(PREFACE):
                await eventually(lambda: held(s.proxy) == {at}, "the proxy holds the piece")  # noqa: B023
        await client.send(SETTINGS_FRAME)
        async with asyncio.timeout(DEADLINE):
            frame = await client.reader.readexactly(9)  # the server's own SETTINGS frame
        assert frame[3] == 4
    finally:
        client.close()


def held(proxy: Proxy) -> set[int]:
    """How many bytes of a preface each connection still looking for one holds."""
    return {
        len(conn.tunnel.seen)
        for conn in proxy._ctx.connections
        if isinstance(conn.tunnel, _Preface)
    }


@on_both_loops
async def test_a_preface_that_stops_halfway_is_closed_at_the_header_timeout() -> None:
    async with stack(header_timeout=0.2) as s:
        client = await Client.open(s.proxy.port)
        try:
            await client.send(PREFACE[:10])
            assert await client.closed()  # no HTTP/1.1 answer: the client speaks HTTP/2
        finally:
            client.close()
        assert s.proxy.stats.connections_closed == {"header_timeout": 1}
        assert not s.proxy.stats.passthrough
        assert s.mux.piped == {"grpc": 0, "http": 0}


@on_both_loops
async def test_an_http1_request_that_begins_like_the_preface_is_parsed() -> None:
    async with stack() as s:
        client = await Client.open(s.proxy.port)
        try:
            await client.send(b"P")
            await eventually(lambda: s.proxy.stats.open_connections == 1)
            resp = await client.exchange(
                b"UT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
            )
        finally:
            client.close()
        assert resp.status == 200
        assert s.echo.requests[-1].method == b"PUT"
        assert not s.proxy.stats.passthrough


@on_both_loops
async def test_a_model_that_cannot_be_reached_closes_the_connection() -> None:
    """The client cannot read an HTTP/1.1 502: it sees the connection closed, fails the call at
    once (UNAVAILABLE) and backs off before it connects again."""
    tap = RecordingTap()
    settings = ProxySettings(listen_host="127.0.0.1", listen_port=0, model_port=free_port())
    proxy = await start_proxy(settings, tap)
    try:
        with Stub(proxy.port) as stub, pytest.raises(grpc.RpcError) as failed:
            await in_thread(lambda: stub.say(b"x", timeout=DEADLINE))
        error: Any = failed.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert proxy.stats.upstream_errors["model_unreachable"] >= 1
        assert proxy.stats.passthrough["h2c"] >= 1
    finally:
        await proxy.close(grace=1.0)
