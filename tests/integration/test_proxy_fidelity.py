"""The proxy passes HTTP/1.1 through faithfully, reports every exchange, and fails cleanly.

`EchoModel` behind the proxy, raw-socket clients in front (`proxy_harness`); every test runs under
uvloop and under asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import uuid

import aiohttp
import pytest

from tests.integration.proxy_harness import DEADLINE, MiB, World, scenario
from tests.support import http1
from tests.support.echo_model import pattern
from tests.support.ports import free_port
from tests.support.waiting import eventually
from truthloop.sidecar.exchange import Headers, LocalResponse


def is_uuid7(value: bytes | None) -> bool:
    return value is not None and uuid.UUID(value.decode()).version == 7


# Bodies and framing.


@scenario
async def test_content_length_bodies_pass_through_and_are_reported(w: World) -> None:
    resp = await w.client.exchange(
        http1.request("POST", "/echo?x=1&y=%20", [(b"X-Entity-ID", b"u1")], b'{"a": 1}')
    )

    assert resp.status == 200
    assert resp.body == b'{"a": 1}'
    assert resp.header("content-length") == b"8"
    seen = w.model.requests[-1]
    assert seen.start == b"POST /echo?x=1&y=%20 HTTP/1.1"
    assert seen.header("x-entity-id") == b"u1"
    assert seen.body == b'{"a": 1}'
    assert not seen.chunked
    [ex] = w.tap.exchanges
    assert (ex.method, ex.path, ex.status, ex.served_by, ex.shadow) == (
        "POST",
        "/echo?x=1&y=%20",
        200,
        "model",
        False,
    )
    assert ex.request_body == b'{"a": 1}'
    assert ex.response_body == b'{"a": 1}'
    assert (b"X-Entity-ID", b"u1") in ex.request_headers
    assert ex.skip_reason is None
    assert ex.model_seconds is not None
    assert 0 <= ex.model_seconds <= ex.total_seconds


@scenario
async def test_chunked_bodies_stay_chunked_both_ways(w: World) -> None:
    chunks = [b"first,", b"", b"second," * 100, b"third"]
    resp = await w.client.exchange(
        http1.request("POST", "/echo?chunked=1", chunks=[c for c in chunks if c])
    )

    assert w.model.requests[-1].chunked
    assert w.model.requests[-1].body == b"".join(chunks)
    assert resp.chunked
    assert resp.body == b"".join(chunks)
    assert not resp.has("content-length")
    assert w.tap.exchanges[-1].request_body == b"".join(chunks)
    assert w.tap.exchanges[-1].response_body == b"".join(chunks)


@scenario
async def test_trailers_of_a_chunked_request_are_dropped(w: World) -> None:
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    resp = await w.client.exchange(raw)

    assert resp.body == b"abc"
    assert w.model.requests[-1].trailers == []
    assert not w.model.requests[-1].has("x-trailer")


@scenario
async def test_close_delimited_response_reaches_http11_client_chunked(w: World) -> None:
    resp = await w.client.exchange(http1.request("GET", "/eof"))

    assert resp.body == b"until the end"
    assert resp.chunked
    # The proxy's connection to the client outlives the model's.
    assert (await w.client.exchange(http1.request("GET", "/echo"))).status == 200


@scenario
async def test_close_delimited_response_reaches_http10_client_close_delimited(w: World) -> None:
    c = await w.connect()
    resp = await c.exchange(http1.request("GET", "/eof", version="1.0"))

    assert resp.body == b"until the end"
    assert not resp.chunked
    assert resp.header("connection") == b"close"


@scenario
async def test_ten_mebibyte_bodies_stream_both_ways_and_are_not_kept(w: World) -> None:
    body = os.urandom(10 * MiB)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{w.proxy.port}/echo", data=io.BytesIO(body)) as resp,
    ):
        echoed = await resp.read()
        pid = resp.headers["X-Prediction-ID"]

    assert echoed == body
    assert w.model.requests[-1].body == body
    [ex] = w.tap.exchanges
    assert ex.prediction_id == pid
    assert ex.request_body is None
    assert ex.response_body is None
    assert ex.skip_reason == "body_too_large"


@scenario
async def test_ten_mebibyte_chunked_response(w: World) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{w.proxy.port}/bytes?size={10 * MiB}&chunked=1") as resp,
    ):
        body = await resp.read()
        assert resp.headers["Transfer-Encoding"] == "chunked"

    assert body == pattern(10 * MiB)
    assert w.tap.exchanges[-1].skip_reason == "body_too_large"


@scenario
async def test_bodies_up_to_capture_max_are_kept_and_one_byte_more_is_not(w: World) -> None:
    p = await w.make_proxy(capture_max_bytes=1000)
    c = await w.connect(p)
    await c.exchange(http1.request("POST", "/echo", body=b"k" * 1000))
    await c.exchange(http1.request("POST", "/echo", body=b"k" * 1001))

    kept, too_large = w.tap.exchanges
    assert kept.request_body == kept.response_body == b"k" * 1000
    assert too_large.request_body is too_large.response_body is None
    assert too_large.skip_reason == "body_too_large"


@scenario
async def test_request_body_is_streamed_to_the_model_before_it_is_all_sent(w: World) -> None:
    total = 4 * MiB
    await w.client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total + b"a" * MiB
    )
    await eventually(lambda: w.model.body_progress >= MiB, "the first MiB reached the model")
    await w.client.send(b"a" * (total - MiB))

    resp = await w.client.response()
    assert len(resp.body) == total


@scenario
async def test_response_body_is_streamed_to_the_client_before_the_model_finishes(w: World) -> None:
    await w.client.send(http1.request("GET", "/stream"))
    async with asyncio.timeout(DEADLINE):
        head = await http1.read_head(w.client.reader)
        assert head is not None
        assert await w.client.reader.readline() == b"5\r\n"
        assert await w.client.reader.readline() == b"first\r\n"
    assert not w.model.gate.is_set()
    w.model.gate.set()
    body, _ = await http1.read_chunked(w.client.reader)
    assert body == b"second"


@scenario
async def test_a_slow_client_holds_back_the_model_not_the_proxys_memory(w: World) -> None:
    size = 64 * MiB
    await w.client.send(http1.request("GET", f"/bytes?size={size}"))
    await eventually(lambda: w.proxy.paused == 1, "the proxy stopped reading the model")

    assert w.proxy.buffered_bytes <= MiB
    resp = await w.client.response()
    assert len(resp.body) == size


@scenario
async def test_a_slow_model_holds_back_the_client_not_the_proxys_memory(w: World) -> None:
    size = 64 * MiB
    w.client.writer.write(http1.request("POST", "/read-later", body=b"s" * size))
    await eventually(lambda: w.model.heads == 1, "the request head reached the model")
    await eventually(lambda: w.proxy.paused == 1, "the proxy stopped reading the client")

    assert w.proxy.buffered_bytes <= MiB
    w.model.gate.set()
    resp = await w.client.response()
    assert len(resp.body) == size


@scenario
async def test_binary_bodies_are_byte_exact(w: World) -> None:
    body = bytes(range(256)) * 4 + b"\r\n0\r\n\r\n" + os.urandom(4096)
    resp = await w.client.exchange(http1.request("PUT", "/echo", body=body))

    assert resp.body == body
    assert w.model.requests[-1].body == body
    assert w.tap.exchanges[-1].request_body == body
    assert w.tap.exchanges[-1].response_body == body


# Methods and statuses without a body.


@scenario
async def test_head_has_the_length_but_no_body_and_the_connections_stay_usable(w: World) -> None:
    resp = await w.client.exchange(http1.request("HEAD", "/bytes?size=1000"), bodyless=True)
    chunked = await w.client.exchange(
        http1.request("HEAD", "/bytes?size=1000&chunked=1"), bodyless=True
    )
    after = await w.client.exchange(http1.request("POST", "/echo", body=b"after"))

    assert resp.status == 200
    assert resp.header("content-length") == b"1000"
    assert chunked.header("transfer-encoding") == b"chunked"
    assert after.body == b"after"
    assert w.model.connections == 1


@scenario
async def test_no_body_statuses(w: World) -> None:
    for status in (204, 304):
        resp = await w.client.exchange(http1.request("GET", f"/status/{status}"))
        after = await w.client.exchange(http1.request("POST", "/echo", body=b"after"))

        assert resp.status == status
        assert resp.body == b""
        assert not resp.has("transfer-encoding")
        assert after.body == b"after"
    assert w.model.connections == 1


# Connections.


@scenario
async def test_keep_alive_connections_to_the_model_are_reused(w: World) -> None:
    for _ in range(3):
        c = await w.connect()
        for i in range(5):
            assert (await c.exchange(http1.request("POST", "/echo", body=b"%d" % i))).body == (
                b"%d" % i
            )
        c.close()

    assert w.model.connections == 1
    assert w.proxy.stats.upstream_connects == 1
    assert w.proxy.stats.requests["model"] == 15


@scenario
async def test_pipelined_requests_are_answered_in_order(w: World) -> None:
    await w.client.send(
        http1.request("GET", "/gate")
        + http1.request("POST", "/echo", body=b"second")
        + http1.request("POST", "/echo?chunked=1", chunks=[b"th", b"ird"])
        + http1.request("HEAD", "/bytes?size=10")
        + http1.request("POST", "/echo", body=b"fifth")
    )
    await eventually(lambda: w.model.heads >= 1, "the first request reached the model")
    w.model.gate.set()

    bodies = [(await w.client.response(bodyless=i == 3)).body for i in range(5)]
    assert bodies == [b"gate", b"second", b"third", b"", b"fifth"]
    assert [ex.path for ex in w.tap.exchanges] == [
        "/gate",
        "/echo",
        "/echo?chunked=1",
        "/bytes?size=10",
        "/echo",
    ]


@scenario
async def test_connection_close_is_honoured(w: World) -> None:
    resp = await w.client.exchange(
        http1.request("POST", "/echo", [(b"Connection", b"close")], b"bye")
    )

    assert resp.body == b"bye"
    assert resp.header("connection") == b"close"
    assert await w.client.closed()
    assert not w.model.requests[-1].has("connection")


@scenario
async def test_http10_keep_alive_is_answered_as_such(w: World) -> None:
    c = await w.connect()
    first = await c.exchange(
        http1.request("POST", "/echo", [(b"Connection", b"keep-alive")], b"1", version="1.0")
    )
    second = await c.exchange(
        http1.request("POST", "/echo", [(b"Connection", b"keep-alive")], b"2", version="1.0")
    )
    assert first.header("connection") == b"keep-alive"
    assert second.body == b"2"


@scenario
async def test_http10_with_proxy_connection_is_answered_as_http10(w: World) -> None:
    # llhttp reads Proxy-Connection like Connection; the proxy tells HTTP/1.1 from the parser's
    # keep-alive verdict only when neither field came, so this one is asked for its version.
    c = await w.connect()
    resp = await c.exchange(
        http1.request("POST", "/echo", [(b"Proxy-Connection", b"keep-alive")], b"1", version="1.0")
    )
    assert resp.header("connection") == b"keep-alive"


@scenario
async def test_http10_request_without_host_gets_one_towards_the_model(w: World) -> None:
    c = await w.connect()
    await c.send(b"GET /echo HTTP/1.0\r\n\r\n")
    resp = await c.response()

    assert resp.status == 200
    assert w.model.requests[-1].header("host") == b"127.0.0.1:%d" % w.model.port
    assert await c.closed()


@scenario
async def test_expect_100_continue_is_relayed_from_the_model(w: World) -> None:
    await w.client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    async with asyncio.timeout(DEADLINE):
        assert await w.client.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await w.client.reader.readline() == b"\r\n"
    await w.client.send(b"body")

    resp = await w.client.response()
    assert resp.body == b"body"
    assert w.model.requests[-1].header("expect") == b"100-continue"


@scenario
async def test_a_model_refusing_the_expectation_answers_without_the_body(w: World) -> None:
    resp = await w.client.exchange(
        b"POST /reject-expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Length: 4\r\n\r\n"
    )

    assert resp.status == 417
    assert resp.interim == []
    assert resp.header("connection") == b"close"  # the body was never read: start afresh
    assert await w.client.closed()


@scenario
async def test_interim_responses_are_relayed(w: World) -> None:
    resp = await w.client.exchange(http1.request("GET", "/interim"))

    assert [m.status for m in resp.interim] == [103]
    assert resp.interim[0].header("link") == b"</a.css>; rel=preload"
    assert resp.status == 200


@scenario
async def test_hop_by_hop_fields_are_dropped_both_ways(w: World) -> None:
    resp = await w.client.exchange(
        http1.request(
            "GET",
            "/hop",
            [
                (b"Connection", b"keep-alive, X-Listed"),
                (b"X-Listed", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Proxy-Authorization", b"Basic abc"),
                (b"Proxy-Connection", b"keep-alive"),
                (b"TE", b"trailers"),
                (b"Upgrade", b"h2c"),  # without `Connection: upgrade`: not an upgrade request
                (b"X-End-To-End", b"kept"),
            ],
        )
    )

    seen = w.model.requests[-1]
    for name in ("connection", "x-listed", "keep-alive", "proxy-authorization", "te", "upgrade"):
        assert not seen.has(name), name
    assert not seen.has("proxy-connection")
    assert seen.header("x-end-to-end") == b"kept"
    for name in ("x-hop-listed", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert not resp.has(name), name
    assert resp.header("x-kept") == b"yes"
    assert resp.header("connection") is None


# Prediction IDs and reporting.


@scenario
async def test_prediction_id_on_2xx_only_and_reported(w: World) -> None:
    ok = await w.client.exchange(http1.request("POST", "/echo", body=b"x"))
    missing = await w.client.exchange(http1.request("GET", "/status/404"))
    model_own = await w.client.exchange(http1.request("GET", "/prediction-id"))

    assert is_uuid7(ok.header("x-prediction-id"))
    assert not missing.has("x-prediction-id")
    assert [v for n, v in model_own.fields if n.lower() == b"x-prediction-id"] == [
        model_own.header("x-prediction-id")
    ]
    assert is_uuid7(model_own.header("x-prediction-id"))
    assert [ex.status for ex in w.tap.exchanges] == [200, 404, 200]
    assert w.tap.exchanges[0].prediction_id.encode() == ok.header("x-prediction-id")
    assert len({ex.prediction_id for ex in w.tap.exchanges}) == 3


@scenario
async def test_observe_is_called_once_per_exchange_after_the_response(w: World) -> None:
    clients = [await w.connect() for _ in range(4)]
    responses = await asyncio.gather(
        *(
            c.exchange(http1.request("POST", f"/echo?c={i}", body=b"%d" % i))
            for i, c in enumerate(clients)
        )
    )

    assert sorted(ex.path for ex in w.tap.exchanges) == [f"/echo?c={i}" for i in range(4)]
    by_id = {ex.prediction_id.encode(): ex for ex in w.tap.exchanges}
    for resp in responses:
        ex = by_id[resp.header("x-prediction-id")]  # type: ignore[index]
        assert ex.response_body == resp.body == ex.request_body


@scenario
async def test_a_failing_tap_never_fails_a_request(w: World) -> None:
    w.tap.fail_observe = True
    first = await w.client.exchange(http1.request("POST", "/echo", body=b"1"))
    second = await w.client.exchange(http1.request("POST", "/echo", body=b"2"))

    assert (first.body, second.body) == (b"1", b"2")
    assert w.proxy.stats.observe_errors == 2


# Failures of the client and of the w.model.


@scenario
async def test_client_disconnect_mid_body_cancels_the_model_request(w: World) -> None:
    await w.client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (10 * MiB) + b"a" * MiB
    )
    await eventually(lambda: w.model.body_progress >= MiB, "the body started reaching the model")
    w.client.writer.transport.abort()

    await eventually(lambda: w.model.aborted == 1, "the model saw its request cut off")
    await eventually(lambda: w.proxy.stats.client_disconnects == 1, "the disconnect was counted")
    assert w.tap.exchanges == []


@scenario
async def test_client_disconnect_while_waiting_for_the_model(w: World) -> None:
    await w.client.send(http1.request("GET", "/hang"))
    await eventually(lambda: w.model.heads == 1, "the request reached the model")
    w.client.writer.transport.abort()

    await eventually(lambda: w.model.hung_closed == 1, "the model's connection was closed")
    assert w.proxy.stats.client_disconnects == 1


@scenario
async def test_model_closing_mid_body_cuts_the_client_and_the_proxy_carries_on(w: World) -> None:
    c = await w.connect()
    await c.send(http1.request("GET", "/close-early"))
    with pytest.raises(asyncio.IncompleteReadError):
        await c.response()
    assert await c.closed()
    assert w.proxy.stats.upstream_errors["model_closed"] == 1
    assert w.tap.exchanges == []

    again = await w.connect()
    assert (await again.exchange(http1.request("POST", "/echo", body=b"ok"))).body == b"ok"


@scenario
async def test_model_closing_without_an_answer_is_a_502(w: World) -> None:
    resp = await w.client.exchange(http1.request("GET", "/drop"))

    assert resp.status == 502
    assert resp.header("content-type") == b"application/json"
    assert json.loads(resp.body)["details"] == [{"reason": "model_closed"}]
    assert w.proxy.stats.upstream_errors["model_closed"] == 1
    assert w.tap.exchanges[-1].status == 502
    assert (await w.client.exchange(http1.request("POST", "/echo", body=b"ok"))).body == b"ok"


@scenario
async def test_a_stale_keep_alive_connection_is_retried_on_a_fresh_one(w: World) -> None:
    await w.client.exchange(http1.request("GET", "/drop-next"))
    resp = await w.client.exchange(http1.request("POST", "/echo", body=b"again"))

    assert resp.body == b"again"
    assert w.proxy.stats.retries == 1
    assert w.model.connections == 2
    assert not w.proxy.stats.upstream_errors


@scenario
async def test_model_down_is_a_502_with_a_json_body(w: World) -> None:
    p = await w.make_proxy(model_port=free_port())
    c = await w.connect(p)
    resp = await c.exchange(http1.request("POST", "/echo", body=b"x"))

    assert resp.status == 502
    assert json.loads(resp.body) == {
        "error": "cannot connect to the model",
        "details": [{"reason": "model_unreachable"}],
    }
    assert not resp.has("x-prediction-id")
    assert p.stats.upstream_errors["model_unreachable"] == 1
    assert (await c.exchange(http1.request("GET", "/echo"))).status == 502  # still serving


@scenario
async def test_model_timeout_is_a_504_and_the_model_request_is_dropped(w: World) -> None:
    p = await w.make_proxy(model_timeout=0.05)
    c = await w.connect(p)
    resp = await c.exchange(http1.request("GET", "/hang"))

    assert resp.status == 504
    assert json.loads(resp.body)["details"] == [{"reason": "model_timeout"}]
    assert p.stats.upstream_errors["model_timeout"] == 1
    await eventually(lambda: w.model.hung_closed == 1, "the model's connection was closed")
    assert (await c.exchange(http1.request("POST", "/echo", body=b"ok"))).body == b"ok"


@scenario
async def test_malformed_request_is_a_400_and_closes(w: World) -> None:
    resp = await w.client.exchange(b"NOT HTTP AT ALL\r\n\r\n")

    assert resp.status == 400
    assert json.loads(resp.body)["details"] == [{"reason": "bad_request"}]
    assert await w.client.closed()
    assert w.proxy.stats.bad_requests == 1


# Upgrade and CONNECT.


@scenario
async def test_upgrade_is_tunnelled_uncaptured(w: World) -> None:
    await w.client.send(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly"
    )
    async with asyncio.timeout(DEADLINE):
        head = await http1.read_head(w.client.reader)
        assert head is not None
        assert head[0] == b"HTTP/1.1 101 Switching Protocols"
        assert await w.client.reader.readexactly(5) == b"early"
        await w.client.send(b"\x00binary\xff")
        assert await w.client.reader.readexactly(8) == b"\x00binary\xff"
    assert w.model.requests[-1].header("upgrade") == b"echo"
    assert w.model.requests[-1].header("connection") == b"Upgrade"

    w.client.writer.write_eof()
    assert await w.client.closed()
    await eventually(lambda: len(w.tap.exchanges) == 1, "the tunnel was reported")
    [ex] = w.tap.exchanges
    assert ex.status == 101
    assert ex.skip_reason == "upgrade"
    assert ex.request_body is ex.response_body is None
    assert w.proxy.stats.requests["tunnel"] == 1
    assert w.proxy.stats.passthrough == {"other": 1}


@scenario
async def test_tunnels_are_counted_by_protocol_as_they_start(w: World) -> None:
    upgrades = [b"h2c", b"WebSocket", b"h2c, other"]
    for token in upgrades:
        c = await w.connect()
        await c.send(
            b"GET /u HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" % token
        )
        async with asyncio.timeout(DEADLINE):
            head = await http1.read_head(c.reader)
        assert head is not None
        assert head[0] == b"HTTP/1.1 101 Switching Protocols"
    await w.client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    await eventually(lambda: w.proxy.stats.passthrough["connect"] == 1, "CONNECT was counted")
    assert w.proxy.stats.passthrough == {"h2c": 2, "websocket": 1, "connect": 1}


@scenario
async def test_connect_is_tunnelled(w: World) -> None:
    await w.client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    async with asyncio.timeout(DEADLINE):
        head = await http1.read_head(w.client.reader)
        assert head is not None
        assert head[0].startswith(b"HTTP/1.1 200")
        await w.client.send(b"tls bytes")
        assert await w.client.reader.readexactly(9) == b"tls bytes"
    assert w.model.requests[-1].start == b"CONNECT example.com:443 HTTP/1.1"


# Local answers (the fallback) and shadow calls.


def fallback_answer(method: str, path: str, headers: Headers, body: bytes) -> LocalResponse:
    return LocalResponse(200, ((b"Content-Type", b"application/json"),), b'{"prediction": 0}')


@scenario
async def test_local_answer_is_served_without_the_model(w: World) -> None:
    w.tap.wants_local = True
    w.tap.answer = fallback_answer
    resp = await w.client.exchange(http1.request("POST", "/predict?v=1", body=b'{"x": 1}'))

    assert resp.status == 200
    assert resp.body == b'{"prediction": 0}'
    assert resp.header("x-served-by") == b"fallback"
    assert is_uuid7(resp.header("x-prediction-id"))
    assert w.model.requests == []
    assert w.tap.asked == [("POST", "/predict?v=1", b'{"x": 1}')]
    [ex] = w.tap.exchanges
    assert ex.served_by == "fallback"
    assert ex.model_seconds is None
    assert ex.request_body == b'{"x": 1}'
    assert ex.response_body == b'{"prediction": 0}'
    assert ex.prediction_id.encode() == resp.header("x-prediction-id")
    assert w.proxy.stats.requests["fallback"] == 1


@scenario
async def test_many_requests_pipelined_behind_a_slow_one_are_answered_locally(w: World) -> None:
    n = 2000
    await w.client.send(
        http1.request("GET", "/gate") + b"".join(http1.request("GET", f"/p?{i}") for i in range(n))
    )
    await eventually(lambda: w.model.heads == 1, "the first request reached the model")
    w.tap.wants_local = True
    w.tap.answer = fallback_answer
    w.model.gate.set()

    assert (await w.client.response()).body == b"gate"
    for _ in range(n):
        assert (await w.client.response()).header("x-served-by") == b"fallback"
    assert [ex.path for ex in w.tap.exchanges[1:]] == [f"/p?{i}" for i in range(n)]


@scenario
async def test_shadow_call_reports_the_models_answer_with_the_same_id(w: World) -> None:
    w.tap.wants_local = True
    w.tap.shadow = True
    w.tap.answer = fallback_answer
    resp = await w.client.exchange(
        http1.request("POST", "/echo", [(b"Expect", b"100-continue")], b'{"x": 2}')
    )

    assert resp.header("x-served-by") == b"fallback"
    await eventually(lambda: len(w.tap.exchanges) == 2, "the shadow exchange was reported")
    local, shadow = w.tap.exchanges
    assert (local.served_by, local.shadow) == ("fallback", False)
    assert (shadow.served_by, shadow.shadow) == ("model", True)
    assert shadow.prediction_id == local.prediction_id
    assert shadow.request_body == b'{"x": 2}'
    assert shadow.response_body == b'{"x": 2}'
    assert shadow.model_seconds is not None
    assert w.model.requests[-1].body == b'{"x": 2}'
    assert not w.model.requests[-1].has("expect")


@scenario
async def test_shadow_calls_beyond_the_limit_are_skipped_and_counted(w: World) -> None:
    w.tap.wants_local = True
    w.tap.shadow = True
    w.tap.answer = fallback_answer
    p = await w.make_proxy(shadow_concurrency=1)
    c = await w.connect(p)
    await c.exchange(http1.request("GET", "/gate"))  # its shadow waits at the gate
    await c.exchange(http1.request("GET", "/gate"))

    assert p.stats.shadow_skipped == 1
    w.model.gate.set()
    await eventually(lambda: len(w.tap.exchanges) == 3, "the one shadow call finished")
    assert [ex.shadow for ex in w.tap.exchanges] == [False, False, True]


@scenario
async def test_no_local_answer_goes_to_the_model(w: World) -> None:
    w.tap.wants_local = True
    resp = await w.client.exchange(
        http1.request("POST", "/echo", [(b"Expect", b"100-continue")], b"to the model")
    )

    assert [m.status for m in resp.interim] == [100]  # the proxy's own, once
    assert resp.body == b"to the model"
    assert not resp.has("x-served-by")
    assert w.tap.asked == [("POST", "/echo", b"to the model")]
    assert w.tap.exchanges[-1].served_by == "model"
    assert not w.model.requests[-1].has("expect")


@scenario
async def test_a_failing_local_answer_falls_through_to_the_model(w: World) -> None:
    def broken(method: str, path: str, headers: Headers, body: bytes) -> LocalResponse:
        raise ValueError("a broken rule")

    w.tap.wants_local = True
    w.tap.answer = broken
    resp = await w.client.exchange(http1.request("POST", "/echo", body=b"x"))

    assert resp.body == b"x"
    assert w.proxy.stats.local_errors == 1


@scenario
async def test_a_body_too_large_to_answer_locally_goes_to_the_model(w: World) -> None:
    w.tap.wants_local = True
    w.tap.answer = fallback_answer
    p = await w.make_proxy(capture_max_bytes=1000)
    c = await w.connect(p)
    body = b"b" * 5000
    resp = await c.exchange(http1.request("POST", "/echo", chunks=[body[:700], body[700:]]))

    assert resp.body == body
    assert w.tap.asked == []
    assert p.stats.local_too_large == 1
    assert w.tap.exchanges[-1].skip_reason == "body_too_large"


# Stopping.


@scenario
async def test_close_waits_for_requests_in_flight(w: World) -> None:
    await w.client.send(http1.request("GET", "/gate"))
    await eventually(lambda: w.model.heads == 1, "the request reached the model")
    closing = asyncio.create_task(w.proxy.close(grace=DEADLINE))
    idle = None
    with contextlib.suppress(OSError):
        idle = await w.connect()
    assert idle is None or await idle.closed()
    w.model.gate.set()

    resp = await w.client.response()
    assert resp.body == b"gate"
    assert resp.header("connection") == b"close"
    await closing
