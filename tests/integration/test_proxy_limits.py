"""No client can make the proxy hold or wait on it without bound; legit traffic still passes.

Request heads are limited (414 for the URL, 431 for the header fields, as nginx does), a head that
does not arrive in time is answered 408, an idle keep-alive connection is closed, a request body
that stops coming is answered 408 (or cut, once its answer began), a client that stops reading its
answer is cut, and the number of client connections is capped (to what the file-descriptor limit
allows, too). A refused request never reaches the model, and a cut one drops its model connection.
The same proxy keeps serving big-but-allowed heads, pipelined requests, chunked bodies sent
piecemeal, bodies sent and answers read slowly but steadily, waits for `100 Continue`, slow model
answers, and tunnels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from tests.integration import sidecar_harness as harness
from tests.integration.proxy_harness import (
    Client,
    EagerModel,
    KiB,
    MiB,
    World,
    scenario,
    sweeps,
)
from tests.support import http1
from tests.support.churn_model import Model
from tests.support.fake_feedback import FakeFeedback
from tests.support.waiting import eventually
from truthloop import cli
from truthloop.flags import UsageError
from truthloop.sidecar import cli as sidecar_cli
from truthloop.sidecar.exchange import LocalResponse
from truthloop.sidecar.proxy import ProxySettings

pytest_plugins = ["tests.integration.sidecar_fixtures"]

TICK = 0.2
"""A timeout short enough for a test to wait out (on a condition)."""
SLOW = 0.4
"""A timeout the slow-but-steady clients below stay within: the proxy sweeps every tenth of it,
and they make progress every sweep."""


def refusal(resp: http1.Message) -> str:
    """The reason of a response the proxy made to refuse a request, which also closes."""
    assert resp.header("content-type") == b"application/json"
    assert resp.header("connection") == b"close"
    body = json.loads(resp.body)
    assert isinstance(body["error"], str)
    [detail] = body["details"]
    return detail["reason"]  # type: ignore[no-any-return]


async def send_until_answered(
    client: Client, head: bytes, filler: bytes, cap: int
) -> tuple[http1.Message, int]:
    """Send `head`, then `filler` over and over, each a read of its own for the proxy, until the
    proxy answers or `cap` bytes went; returns the answer and how many bytes were sent."""
    answer = asyncio.ensure_future(client.response())
    await client.send(head)
    sent = len(head)
    while not answer.done() and sent < cap:
        await client.send(filler)
        sent += len(filler)
        await asyncio.sleep(0)  # the proxy reads before the next piece is sent
    return await answer, sent


# Request heads.


@scenario
async def test_a_url_over_the_limit_is_414_and_never_reaches_the_model(w: World) -> None:
    ok = await w.client.exchange(http1.request("GET", "/" + "u" * (8 * KiB - 1)))
    c = await w.connect()
    resp = await c.exchange(http1.request("GET", "/" + "u" * (8 * KiB)))

    assert ok.status == 200
    assert resp.status == 414
    assert refusal(resp) == "url_too_long"
    assert await c.closed()
    assert w.model.heads == 1
    assert w.proxy.stats.connections_closed["url_too_long"] == 1
    assert len(w.tap.exchanges) == 1


@scenario
async def test_header_fields_up_to_the_limit_pass_and_one_byte_more_is_431(w: World) -> None:
    # Each field counts as `Name: value\r\n`: `Host: test` is 12 bytes, `X-Fill: ` and CRLF 10.
    fill = b"f" * (32 * KiB - 12 - 10)
    ok = await w.client.exchange(http1.request("GET", "/echo", [(b"X-Fill", fill)]))
    c = await w.connect()
    resp = await c.exchange(http1.request("GET", "/echo", [(b"X-Fill", fill + b"f")]))

    assert ok.status == 200
    assert w.model.requests[-1].header("x-fill") == fill
    assert resp.status == 431
    assert refusal(resp) == "headers_too_large"
    assert await c.closed()
    assert w.model.heads == 1
    assert w.proxy.stats.connections_closed["headers_too_large"] == 1


@scenario
async def test_more_header_fields_than_the_limit_is_431(w: World) -> None:
    many = [(b"X-%d" % i, b"1") for i in range(99)]  # and Host: 100 fields
    ok = await w.client.exchange(http1.request("GET", "/echo", many))
    c = await w.connect()
    resp = await c.exchange(http1.request("GET", "/echo", [*many, (b"X-One-More", b"1")]))

    assert ok.status == 200
    assert len(w.model.requests[-1].fields) == 100
    assert resp.status == 431
    assert refusal(resp) == "too_many_headers"
    assert w.model.heads == 1


@scenario
async def test_an_endless_header_is_cut_off_long_before_it_is_all_sent(w: World) -> None:
    resp, sent = await send_until_answered(
        w.client, b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Endless: ", b"e" * (4 * KiB), MiB
    )

    assert resp.status == 431
    assert refusal(resp) == "headers_too_large"
    assert sent < MiB
    assert await w.client.closed()
    assert w.model.heads == 0


@scenario
async def test_an_endless_url_is_cut_off_long_before_it_is_all_sent(w: World) -> None:
    resp, sent = await send_until_answered(w.client, b"GET /", b"u" * (4 * KiB), MiB)

    assert resp.status == 414
    assert refusal(resp) == "url_too_long"
    assert sent < MiB
    assert w.model.heads == 0


@scenario
async def test_endless_header_lines_are_cut_off(w: World) -> None:
    resp, sent = await send_until_answered(
        w.client, b"GET /echo HTTP/1.1\r\nHost: t\r\n", b"X-Line: 1\r\n" * 400, MiB
    )

    assert resp.status == 431
    assert refusal(resp) == "too_many_headers"
    assert sent < MiB


@scenario
async def test_an_endless_trailer_is_cut_off_and_its_request_dropped(w: World) -> None:
    head = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: "
    )
    resp, sent = await send_until_answered(w.client, head, b"t" * (4 * KiB), MiB)

    assert resp.status == 431
    assert refusal(resp) == "headers_too_large"
    assert sent < MiB
    await eventually(lambda: w.model.aborted == 1, "the model's request was dropped")
    assert w.tap.exchanges == []


@scenario
async def test_a_head_begun_in_the_same_read_as_a_request_is_held_to_its_limit(w: World) -> None:
    await w.client.send(
        http1.request("GET", "/echo") + b"GET /echo HTTP/1.1\r\nX-Endless: " + b"e" * (100 * KiB)
    )

    assert (await w.client.response()).status == 200
    resp = await w.client.response()  # at once, not after the header timeout
    assert resp.status == 431
    assert refusal(resp) == "headers_too_large"


@scenario
async def test_a_refused_head_behind_a_request_in_flight_is_answered_in_turn(w: World) -> None:
    await w.client.send(http1.request("GET", "/gate") + http1.request("GET", "/" + "u" * 9000))
    await eventually(lambda: w.model.heads == 1, "the first request reached the model")
    w.model.gate.set()

    first = await w.client.response()
    second = await w.client.response()
    assert first.body == b"gate"
    assert second.status == 414
    assert await w.client.closed()
    assert w.model.heads == 1


@scenario
async def test_nothing_sent_after_a_refused_head_is_read_while_earlier_ones_are_answered(
    w: World,
) -> None:
    await w.client.send(
        http1.request("GET", "/gate")
        + http1.request("POST", "/echo", body=b"second")
        + http1.request("GET", "/echo", [(b"X-%d" % i, b"1") for i in range(100)])
    )
    await eventually(lambda: w.proxy.stats.connections_closed["too_many_headers"] == 1, "refused")
    await w.client.send(http1.request("POST", "/echo", body=b"after the refusal"))
    await w.client.send(http1.request("GET", "/" + "u" * 9000))
    w.model.gate.set()

    assert (await w.client.response()).body == b"gate"
    assert (await w.client.response()).body == b"second"
    assert (await w.client.response()).status == 431
    assert await w.client.closed()
    assert w.model.heads == 2
    assert w.proxy.stats.connections_closed == {"too_many_headers": 1}


# Legit traffic under the limits.


@scenario
async def test_pipelined_heads_are_limited_each_not_together(w: World) -> None:
    pad = [(b"X-Pad", b"p" * KiB)]
    await w.client.send(
        b"".join(http1.request("GET", f"/echo?{i}", pad) for i in range(100))  # 100 KiB of heads
    )
    for _ in range(100):
        assert (await w.client.response()).status == 200
    assert w.model.heads == 100


@scenario
async def test_a_big_allowed_head_sent_in_small_pieces_passes(w: World) -> None:
    url = "/echo?" + "q" * (8 * KiB - 6)
    fields = [(b"X-Big-%d" % i, b"b" * (10 * KiB)) for i in range(3)]
    raw = http1.request("POST", url, fields, b"body")
    for i in range(0, len(raw), 512):
        await w.client.send(raw[i : i + 512])
        await asyncio.sleep(0)  # each piece a read of its own

    resp = await w.client.response()
    assert resp.body == b"body"
    assert w.model.requests[-1].target == url.encode()


@scenario
async def test_a_chunked_body_sent_in_small_pieces_passes(w: World) -> None:
    chunks = [b"%d," % i for i in range(20_000)]  # more framing than any head limit
    raw = http1.request("POST", "/echo", chunks=chunks)
    for i in range(0, len(raw), 3000):
        await w.client.send(raw[i : i + 3000])
        await asyncio.sleep(0)

    resp = await w.client.response()
    assert resp.body == b"".join(chunks)


@scenario
async def test_an_upgrade_deep_in_a_large_read_tunnels_from_the_right_byte(w: World) -> None:
    body = b"b" * (20 * KiB)  # the Upgrade head comes in the second slice the proxy parses
    await w.client.send(
        http1.request("POST", "/echo", body=body)
        + b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly"
    )

    assert (await w.client.response()).body == body
    async with asyncio.timeout(10):
        head = await http1.read_head(w.client.reader)
        assert head is not None
        assert head[0] == b"HTTP/1.1 101 Switching Protocols"
        assert await w.client.reader.readexactly(5) == b"early"


# Time limits.


@scenario
async def test_a_head_that_does_not_arrive_in_time_is_408_while_others_are_served(
    w: World,
) -> None:
    p = await w.make_proxy(header_timeout=TICK)
    slow = await w.connect(p)
    await slow.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    other = await w.connect(p)
    assert (await other.exchange(http1.request("POST", "/echo", body=b"ok"))).body == b"ok"

    resp = await slow.response()
    assert resp.status == 408
    assert refusal(resp) == "header_timeout"
    assert await slow.closed()
    assert p.stats.connections_closed["header_timeout"] == 1
    assert w.model.heads == 1


@scenario
async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    w: World,
) -> None:
    p = await w.make_proxy(header_timeout=TICK)
    silent = await w.connect(p)

    assert await silent.closed()  # without a byte: there was no request to answer
    assert p.stats.connections_closed["header_timeout"] == 1


@scenario
async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
    w: World,
) -> None:
    p = await w.make_proxy(keepalive_timeout=TICK)
    idle = await w.connect(p)
    assert (await idle.exchange(http1.request("POST", "/echo", body=b"1"))).body == b"1"

    assert await idle.closed()
    assert p.stats.connections_closed["keepalive_timeout"] == 1
    busy = await w.connect(p)
    assert (await busy.exchange(http1.request("POST", "/echo", body=b"2"))).body == b"2"


@scenario
async def test_a_head_begun_after_a_keep_alive_wait_has_the_header_timeout(w: World) -> None:
    p = await w.make_proxy(header_timeout=TICK)
    c = await w.connect(p)
    assert (await c.exchange(http1.request("POST", "/echo", body=b"1"))).body == b"1"
    await c.send(b"GET /echo HTTP/1.1\r\n")

    resp = await c.response()
    assert resp.status == 408
    assert refusal(resp) == "header_timeout"


@scenario
async def test_waits_the_client_is_not_to_blame_for_are_not_timed_out(w: World) -> None:
    p = await w.make_proxy(
        header_timeout=TICK, keepalive_timeout=TICK, body_timeout=TICK, send_timeout=TICK
    )
    expecting = await w.connect(p)  # the model says 100 Continue only once the gate opens
    await expecting.send(
        b"POST /read-later HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    waiting = await w.connect(p)
    await waiting.send(http1.request("GET", "/gate"))
    tunnel = await w.connect(p)
    await tunnel.upgrade()
    await eventually(lambda: w.model.heads == 3, "every head reached the model")
    slow = await w.connect(p)
    await slow.send(b"GET /echo HTTP/1.1\r\n")

    assert (await slow.response()).status == 408  # the timeouts have run out by now
    w.model.gate.set()
    async with asyncio.timeout(10):
        assert await expecting.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await expecting.reader.readline() == b"\r\n"
    await expecting.send(b"body")
    assert (await expecting.response()).body == b"body"
    assert (await waiting.response()).body == b"gate"
    await tunnel.send(b"still open")
    async with asyncio.timeout(10):
        assert await tunnel.reader.readexactly(10) == b"still open"
    assert p.stats.connections_closed["body_timeout"] == 0
    assert p.stats.connections_closed["send_timeout"] == 0


# Bodies that stop coming, answers nobody reads.


@scenario
async def test_a_body_that_stops_coming_is_408_and_its_model_connection_dropped(
    w: World,
) -> None:
    p = await w.make_proxy(body_timeout=TICK)
    stalled = await w.connect(p)
    await stalled.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    await eventually(lambda: w.model.heads == 1, "the head reached the model")
    other = await w.connect(p)
    assert (await other.exchange(http1.request("POST", "/echo", body=b"ok"))).body == b"ok"

    resp = await stalled.response()
    assert resp.status == 408
    assert refusal(resp) == "body_timeout"
    assert await stalled.closed()
    await eventually(lambda: w.model.aborted == 1, "the model's connection was dropped")
    assert p.stats.connections_closed["body_timeout"] == 1
    assert len(w.tap.exchanges) == 1  # the other request's


@scenario
async def test_a_body_that_stops_coming_after_its_answer_began_cuts_the_connection(
    w: World,
) -> None:
    async with EagerModel(chunks=1) as model:
        p = await w.make_proxy(model_port=model.port, body_timeout=TICK)
        c = await w.connect(p)
        await c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        async with asyncio.timeout(10):
            head = await http1.read_head(c.reader)
        assert head is not None
        assert head[0] == b"HTTP/1.1 200 OK"

        await c.cut()  # before the answer's end: the client sees it cut
        await eventually(lambda: model.closed == 1, "the model's connection was dropped")
        assert p.stats.connections_closed["body_timeout"] == 1
        assert p.stats.client_disconnects == 0


@scenario
async def test_a_body_sent_slowly_but_steadily_passes_past_the_body_timeout(w: World) -> None:
    p = await w.make_proxy(body_timeout=SLOW)
    pieces = [b"piece %02d;" % i for i in range(12)]  # over a sweep each: three body timeouts
    c = await w.connect(p)
    await c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 108\r\n\r\n")
    for piece in pieces:
        await sweeps(p, 1)
        await c.send(piece)

    assert (await c.response()).body == b"".join(pieces)
    assert p.stats.connections_closed == {}


@scenario
async def test_a_body_the_model_is_slow_to_read_is_not_timed_out(w: World) -> None:
    p = await w.make_proxy(body_timeout=TICK)
    c = await w.connect(p)
    body = bytes(range(256)) * (32 * KiB)  # 8 MiB: more than the kernel's buffers
    sending = asyncio.ensure_future(c.send(http1.request("POST", "/read-later", body=body)))
    await eventually(lambda: p.paused >= 1, "the proxy stopped reading the client for the model")
    await sweeps(p, 10)  # two body timeouts and more

    w.model.gate.set()
    await sending
    assert (await c.response()).body == body
    assert p.stats.connections_closed == {}


@scenario
async def test_a_client_that_stops_reading_is_cut_and_its_model_connection_dropped(
    w: World,
) -> None:
    async with EagerModel(chunks=None) as model:  # an endless answer
        p = await w.make_proxy(model_port=model.port, send_timeout=TICK)
        c = await w.connect(p, window=16 * KiB)
        await c.send(http1.request("GET", "/endless"))
        await eventually(lambda: p.paused >= 1, "the proxy waits on the client to read")

        await eventually(lambda: p.stats.connections_closed["send_timeout"] == 1, "the cut")
        await c.cut()
        await eventually(lambda: model.closed == 1, "the model's connection was dropped")
        assert p.stats.client_disconnects == 0


@scenario
async def test_a_close_left_waiting_on_a_client_that_reads_nothing_is_cut(w: World) -> None:
    p = await w.make_proxy(keepalive_timeout=TICK, send_timeout=TICK)
    c = await w.connect(p, window=16 * KiB)
    for sent in range(1, 1000):  # answers it does not read, until the kernel holds no more
        await c.send(http1.request("GET", "/bytes?size=10000"))
        await eventually(lambda: len(w.tap.exchanges) == sent, "the answer was handed over")  # noqa: B023
        if p.buffered_bytes:
            break
    assert 0 < p.buffered_bytes < 64 * KiB  # under the transport's high-water mark: not paused

    await eventually(lambda: p.stats.connections_closed["keepalive_timeout"] == 1, "the close")
    await eventually(lambda: p.stats.connections_closed["send_timeout"] == 1, "the cut")
    await eventually(lambda: p.stats.open_connections == 0, "the connection is gone")


@scenario
async def test_an_answer_read_slowly_but_steadily_passes_past_the_send_timeout(
    w: World,
) -> None:
    p = await w.make_proxy(send_timeout=SLOW)
    c = await w.connect(p, window=16 * KiB)
    size = 4 * MiB
    await c.send(http1.request("GET", f"/bytes?size={size}"))
    await eventually(lambda: p.paused >= 1, "the proxy waits on the client to read")
    async with asyncio.timeout(10):
        head = await http1.read_head(c.reader)
        assert head is not None
        got = 0
        while got < size:  # 256 KiB a sweep: 16 sweeps, four send timeouts
            await sweeps(p, 1)
            got += len(await c.reader.readexactly(min(256 * KiB, size - got)))

    assert p.stats.connections_closed == {}
    assert (await c.exchange(http1.request("POST", "/echo", body=b"after"))).body == b"after"


@scenario
async def test_a_tunnel_whose_client_reads_nothing_for_a_while_is_not_cut(w: World) -> None:
    p = await w.make_proxy(send_timeout=TICK, body_timeout=TICK)
    tunnel = await w.connect(p, window=16 * KiB)
    await tunnel.upgrade()
    data = bytes(range(256)) * (32 * KiB)  # 8 MiB, echoed: more than the kernel's buffers
    tunnel.writer.write(data)
    await eventually(lambda: p.paused >= 1, "the proxy waits on the client to read")
    await sweeps(p, 10)  # two send timeouts and more

    async with asyncio.timeout(10):
        assert await tunnel.reader.readexactly(len(data)) == data
    assert p.stats.connections_closed == {}


@scenario
async def test_pipelined_local_answers_wait_while_the_client_does_not_read(w: World) -> None:
    w.tap.wants_local = True
    w.tap.answer = lambda *_: LocalResponse(200, (), b"a" * KiB)
    c = await w.connect(window=16 * KiB)
    count = 4000  # 4 MiB of answers to 160 KiB of requests
    sending = asyncio.ensure_future(c.send(http1.request("GET", "/local") * count))
    await eventually(lambda: w.proxy.paused >= 1, "the proxy stopped reading the client")

    assert w.proxy.buffered_bytes < 512 * KiB
    for _ in range(count):
        assert (await c.response()).body == b"a" * KiB
    await sending


# The number of connections.


@scenario
async def test_at_the_connection_limit_an_idle_one_makes_room_else_the_new_one_is_closed(
    w: World,
) -> None:
    p = await w.make_proxy(max_connections=2)
    idle = await w.connect(p)
    assert (await idle.exchange(http1.request("POST", "/echo", body=b"1"))).body == b"1"
    waiting = await w.connect(p)
    await waiting.send(http1.request("GET", "/gate"))
    await eventually(lambda: w.model.heads == 2, "the request reached the model")

    third = await w.connect(p)
    assert await idle.closed()
    await third.send(b"GET /gate HTTP/1.1\r\n")  # a head begun: busy, not idle
    await eventually(lambda: p.stats.open_connections == 2, "the idle connection is gone")
    fourth = await w.connect(p)
    assert await fourth.closed()

    assert p.stats.connections_closed["max_connections"] == 2
    w.model.gate.set()
    assert (await waiting.response()).body == b"gate"


# The command.


async def test_refusals_are_counted_in_the_sidecars_metrics(
    model: Model, feedback: FakeFeedback, tmp_path: Path
) -> None:
    settings = harness.settings(model, feedback.url, tmp_path)
    settings = replace(settings, proxy=replace(settings.proxy, max_url_bytes=2 * KiB))
    async with (
        harness.running(settings) as car,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"http://127.0.0.1:{car.port}/{'u' * 3000}") as response:
            assert response.status == 414
        async with session.get(f"http://127.0.0.1:{car.admin_port}/metrics") as response:
            text = await response.text()
    assert 'truthloop_sidecar_client_connections_closed_total{reason="url_too_long"} 1.0' in text
    assert "# TYPE truthloop_sidecar_client_connections gauge" in text


def proxy_settings(*argv: str) -> ProxySettings:
    """The proxy's settings from `truthloop sidecar` flags (and the environment)."""
    required = ["--feedback-url", "http://fb:8080", "--monitor", "ml/churn", "--spool-dir", "s"]
    args = cli.build_parser().parse_args(["sidecar", *required, *argv])
    return sidecar_cli.settings_from(args).proxy


def test_limit_flags_and_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = proxy_settings()
    for name, value in {
        "MAX_URL_BYTES": "4Ki", "MAX_HEADER_BYTES": "64Ki", "MAX_HEADER_FIELDS": "50",
        "HEADER_TIMEOUT": "10", "KEEPALIVE_TIMEOUT": "30.5", "MAX_CONNECTIONS": "4096",
        "BODY_TIMEOUT": "20", "SEND_TIMEOUT": "40",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"TRUTHLOOP_{name}", value)
    parsed = proxy_settings()
    flagged = proxy_settings(
        "--max-url-bytes", "2Ki", "--header-timeout", "5", "--body-timeout", "6",
        "--send-timeout", "7",
    )  # fmt: skip

    assert (defaults.max_url_bytes, defaults.max_header_bytes) == (8 * KiB, 32 * KiB)
    assert defaults.max_header_fields == 100
    assert (defaults.header_timeout, defaults.keepalive_timeout) == (60.0, 75.0)
    assert defaults.max_connections == 1024
    assert (defaults.body_timeout, defaults.send_timeout) == (60.0, 60.0)
    assert (parsed.max_url_bytes, parsed.max_header_bytes) == (4 * KiB, 64 * KiB)
    assert parsed.max_header_fields == 50
    assert (parsed.header_timeout, parsed.keepalive_timeout) == (10.0, 30.5)
    assert parsed.max_connections == 4096
    assert (parsed.body_timeout, parsed.send_timeout) == (20.0, 40.0)
    assert (flagged.max_url_bytes, flagged.header_timeout) == (2 * KiB, 5.0)
    assert (flagged.body_timeout, flagged.send_timeout) == (6.0, 7.0)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-url-bytes", "long", "--max-url-bytes 'long': expected a size"),
        ("--max-header-bytes", "0", "max_header_bytes: expected 1 or more"),
        ("--max-header-fields", "many", "--max-header-fields 'many'"),
        ("--header-timeout", "0", "header_timeout: expected seconds above 0"),
        ("--keepalive-timeout", "-1", "--keepalive-timeout '-1': expected a number of seconds"),
        ("--max-connections", "0", "max_connections: expected 1 or more"),
        ("--body-timeout", "0", "body_timeout: expected seconds above 0"),
        ("--send-timeout", "-1", "--send-timeout '-1': expected a number of seconds"),
    ],
)
def test_bad_limit_flags_are_named(flag: str, value: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        proxy_settings(flag, value)
    assert message in str(refused.value)


# The file-descriptor limit.

ROOT = Path(__file__).resolve().parents[2]


class Sidecar:
    """`truthloop sidecar` as a child process with RLIMIT_NOFILE set to `nofile` (soft, hard), as
    `ulimit -n` would; its model and feedback service are absent, which its start does not need."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, admin_port: int) -> None:
        self.proc = proc
        self.port = port
        self.admin_port = admin_port

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, nofile: tuple[int, int], spool: Path) -> AsyncIterator[Sidecar]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRUTHLOOP_LOG_LEVEL": "WARNING"}
        absent = "http://127.0.0.1:1"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "truthloop", "sidecar", "--listen", "127.0.0.1:0",
            "--admin", "127.0.0.1:0", "--model", absent, "--feedback-url", absent,
            "--monitor", "ml/churn", "--spool-dir", str(spool),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
        )  # fmt: skip
        assert proc.stdout is not None
        ports: dict[str, int] = {}
        try:
            async with asyncio.timeout(20):
                while len(ports) < 2:
                    line = (await proc.stdout.readline()).decode()
                    assert line, "the sidecar exited before it listened"
                    if m := re.match(r"(proxy|admin) listening on http://[^:]+:(\d+)", line):
                        ports[m[1]] = int(m[2])
            yield cls(proc, ports["proxy"], ports["admin"])
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await proc.wait()

    def soft_limit(self) -> int:
        """The child's soft RLIMIT_NOFILE now."""
        limits = Path(f"/proc/{self.proc.pid}/limits").read_text()
        m = re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE)
        assert m is not None
        return int(m[1])

    async def metric(self, sample: str) -> float | None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.admin_port}/metrics") as response,
        ):
            text = await response.text()
        m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
        return float(m[1]) if m else None

    async def until_metric(self, sample: str, value: float) -> None:
        async def reached() -> bool:
            return await self.metric(sample) == value

        await eventually(reached, f"{sample} at {value}")

    async def warnings(self) -> str:
        """What it logged, once it has stopped."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stderr is not None
        async with asyncio.timeout(20):
            logged = (await self.proc.stderr.read()).decode()
            await self.proc.wait()
        return logged


LIMIT = "truthloop_sidecar_client_connections_limit"
CLOSED_AT_THE_CAP = 'truthloop_sidecar_client_connections_closed_total{reason="max_connections"}'


async def test_a_low_soft_descriptor_limit_is_raised_to_what_the_connections_need(
    tmp_path: Path,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard limit here ({hard}) is below what 1024 connections need")
    async with Sidecar.running((256, hard), tmp_path) as car:
        soft = car.soft_limit()
        assert await car.metric(LIMIT) == 1024
        logged = await car.warnings()

    assert 2 * 1024 < soft < 4096  # twice the connections and some, not the hard limit
    assert "descriptor" not in logged


async def test_under_a_hard_descriptor_limit_fewer_connections_are_served_and_it_is_said(
    tmp_path: Path,
) -> None:
    async with Sidecar.running((256, 256), tmp_path) as car:
        cap = await car.metric(LIMIT)
        assert cap is not None
        assert 16 < cap < 128  # (256 less what the rest of the process needs) / 2
        clients = [await Client.open(car.port) for _ in range(int(cap) + 1)]
        await car.until_metric(CLOSED_AT_THE_CAP, 1)
        assert await car.metric("truthloop_sidecar_client_connections") == cap
        for c in clients:
            c.close()
        logged = await car.warnings()

    assert f"serving at most {int(cap)} client connections" in logged
    assert "max_connections 1024" in logged
