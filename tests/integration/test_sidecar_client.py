"""The sidecar's HTTP client (shipping's POSTs, the follower's GETs) against real servers on
127.0.0.1, under uvloop (production) and asyncio's own loop: bodies arrive whole over one
kept-alive connection, a closed connection is replaced, and a broken or hostile service costs a
bounded answer, an error or a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.integration.proxy_harness import LOOPS
from truthloop.sidecar.client import Client, ClientError

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def both_loops(fn: Callable[[], Awaitable[None]]) -> Callable[[str], None]:
    """The test once under each loop."""

    @pytest.mark.parametrize("loop", LOOPS)
    def test(loop: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(asyncio.wait_for(fn(), 30))

    test.__name__, test.__qualname__, test.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return test


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw server running `script` on each connection: its URL, and a list that counts the
    connections it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(ConnectionError):
            await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's body (by its Content-Length); b"" at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return await reader.readexactly(int(value))
    return b""


def answer(status: int, body: bytes = b"{}", *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 %d X" % status, b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


PATH = "/v1/predictions"

HEADERS = {
    "Content-Type": "application/x-ndjson",
    "Authorization": "Bearer s3cret",
    "X-Truthloop-Monitor": "ml/churn",
}


@both_loops
async def test_bodies_arrive_whole_with_their_headers_over_one_kept_alive_connection() -> None:
    seen: list[tuple[bytes, dict[str, str], Any]] = []

    async def predictions(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        seen.append((await request.read(), dict(request.headers), peer))
        return web.json_response({"accepted": len(seen)})

    app = web.Application(client_max_size=8 * 2**20)
    app.router.add_post("/v1/predictions", predictions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = Client(f"http://127.0.0.1:{port}", dict(HEADERS), timeout=10)
    bodies = [b"a\n", bytearray(b"b" * 1_000_003), b"c\n"]
    try:
        answers = [await client.request("POST", PATH, body) for body in bodies]
    finally:
        client.close()
        await runner.cleanup()
    assert answers == [(200, b'{"accepted": %d}' % n) for n in (1, 2, 3)]
    assert [body for body, _, _ in seen] == bodies
    for _, headers, _ in seen:
        assert {name: headers[name] for name in HEADERS} == HEADERS
        assert headers["Host"] == f"127.0.0.1:{port}"
    assert len({peer for _, _, peer in seen}) == 1


@both_loops
async def test_a_connection_the_service_closes_is_replaced_and_the_request_sent_again() -> None:
    """The service answers one request per connection: it says so once (Connection: close),
    then closes without a word as the next request comes (it closed an idle connection just
    as the sidecar reused it)."""
    served: list[bytes] = []

    async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await read_request(reader))
        close = (b"Connection: close",) if len(served) == 1 else ()
        writer.write(answer(200, b"ok", *close))
        await writer.drain()
        await read_request(reader)  # the next request on this connection is not answered

    async with scripted(one_request) as (url, accepted):
        client = Client(url, dict(HEADERS), timeout=10)
        answers = [await client.request("POST", PATH, b"%d\n" % i) for i in range(4)]
        client.close()
    assert answers == [(200, b"ok")] * 4
    assert served == [b"0\n", b"1\n", b"2\n", b"3\n"]
    assert len(accepted) == 4  # twice a kept connection was reused in vain


@both_loops
async def test_an_answer_body_is_kept_up_to_the_bound_and_an_endless_one_ends_there() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # a chunked body that never ends
            writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            await writer.drain()

    async with scripted(flood) as (url, accepted):
        client = Client(url, dict(HEADERS), timeout=60, max_answer_bytes=100_000)
        status, body = await client.request("POST", PATH, b"a\n")
        assert (status, body) == (400, b"x" * 100_000)
        assert await client.request("POST", PATH, b"b\n") == (400, b"x" * 100_000)
        client.close()
    assert len(accepted) == 2  # the cut answer's connection was dropped


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 200_000, "answer head passed 100000 bytes"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not HTTP"),
        (b"", "closed the connection before answering"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "closed the connection before answering"),
    ],
    ids=["endless head", "not http", "closed", "closed mid-head"],
)
@pytest.mark.parametrize("loop", LOOPS)
def test_an_answer_that_is_not_a_bounded_http_answer_is_an_error(
    loop: str, reply: bytes, message: str
) -> None:
    async def reply_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def main() -> None:
        async with scripted(reply_then_close) as (url, accepted):
            client = Client(url, dict(HEADERS), timeout=10, max_answer_bytes=100_000)
            with pytest.raises(ClientError, match=message):
                await client.request("POST", PATH, b"a\n")
            client.close()
        assert len(accepted) == 1  # a new connection's failure is not retried

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(main(), 30))


@both_loops
async def test_a_service_that_does_not_answer_times_out_and_its_connection_is_dropped() -> None:
    calls: list[int] = []

    async def silent_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            calls.append(1)
            if len(calls) > 1:
                writer.write(answer(200))

    async with scripted(silent_once) as (url, accepted):
        client = Client(url, dict(HEADERS), timeout=0.2)
        with pytest.raises(TimeoutError):
            await client.request("POST", PATH, b"a\n")
        assert await client.request("POST", PATH, b"b\n") == (200, b"{}")
        client.close()
    assert len(accepted) == 2  # a late answer to the first can never meet the second


@both_loops
async def test_an_answer_before_the_body_was_sent_counts_and_the_connection_is_dropped() -> None:
    async def refuse_unread(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(413, b'{"error": "too large"}'))
        await writer.drain()
        await reader.read()  # until the client goes

    async with scripted(refuse_unread) as (url, accepted):
        client = Client(url, dict(HEADERS), timeout=10, slice_bytes=1024)
        assert await client.request("POST", PATH, b"x" * 50_000_000) == (
            413,
            b'{"error": "too large"}',
        )
        assert await client.request("POST", PATH, b"x" * 10) == (413, b'{"error": "too large"}')
        client.close()
    assert len(accepted) == 2


@both_loops
async def test_an_interim_100_continue_is_skipped() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(202, b"later"))
        await writer.drain()

    async with scripted(interim) as (url, _):
        client = Client(url, dict(HEADERS), timeout=10)
        assert await client.request("POST", PATH, b"a\n") == (202, b"later")
        client.close()


@both_loops
async def test_a_service_not_listening_is_an_os_error() -> None:
    async with scripted(read_request) as (url, _):
        pass  # closed: its port refuses connections now
    client = Client(url, dict(HEADERS), timeout=10)
    with pytest.raises(ConnectionRefusedError):
        await client.request("POST", PATH, b"a\n")


@both_loops
async def test_gets_go_under_the_base_path_without_a_body_over_the_kept_connection() -> None:
    seen: list[tuple[str, str, dict[str, str], Any]] = []

    async def state(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        seen.append((request.method, request.path_qs, dict(request.headers), peer))
        return web.json_response({"version": len(seen)})

    app = web.Application()
    app.router.add_get("/base/v1/monitors/ml/churn/state", state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    client = Client(f"http://127.0.0.1:{port}/base/", timeout=10)
    targets = ["/v1/monitors/ml/churn/state", "/v1/monitors/ml/churn/state?since=1&wait=30"]
    try:
        answers = [await client.request("GET", target) for target in targets]
    finally:
        client.close()
        await runner.cleanup()
    assert answers == [(200, b'{"version": 1}'), (200, b'{"version": 2}')]
    assert [(method, path) for method, path, _, _ in seen] == [
        ("GET", "/base" + target) for target in targets
    ]
    for _, _, headers, _ in seen:
        assert "Content-Length" not in headers
        assert "Transfer-Encoding" not in headers
        assert headers["Host"] == f"127.0.0.1:{port}"
    assert len({peer for _, _, _, peer in seen}) == 1


@both_loops
async def test_a_connection_closed_mid_body_is_one_error_and_leaves_no_unread_one() -> None:
    """The service goes while the body is being sent: the request raises ClientError once, and
    the answer's own error is read, not left for the loop to report as "Future exception was
    never retrieved" (seen in a full test run)."""
    unread: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context))

    async def close_after_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async with scripted(close_after_head) as (url, _):
        client = Client(url, dict(HEADERS), timeout=10, slice_bytes=1024)
        with pytest.raises(ClientError):
            await client.request("POST", PATH, b"x" * 50_000_000)
        client.close()
    gc.collect()
    assert unread == []
