"""The proxy holds the model's response for the tap's verdict (the abstain of human review).

While `tap.wants_verdict`, a 2xx JSON response that fits `capture_max` reaches the client only
after `tap.verdict` saw it whole, and the verdict's answer replaces it; every other response
passes as it comes, the reason counted. `EchoModel` behind the proxy, raw-socket clients in front
(`proxy_harness`); every test runs under uvloop and under asyncio's own loop.
"""

from __future__ import annotations

from tests.integration.proxy_harness import KiB, MiB, World, scenario
from tests.support import http1
from tests.support.echo_model import pattern
from truthloop.sidecar.exchange import Headers, LocalResponse

ABSTAIN = LocalResponse(
    202, ((b"Content-Type", b"application/json"), (b"X-Truthloop-Abstain", b"true")), b"{}"
)


def abstain_on(marker: bytes):
    """A verdict that abstains on the bodies holding `marker`."""

    def judge(pid: str, status: int, headers: Headers, body: bytes) -> LocalResponse | None:
        return ABSTAIN if marker in body else None

    return judge


def post(body: bytes, query: str = "json=1") -> bytes:
    return http1.request("POST", f"/echo?{query}", body=body)


@scenario
async def test_a_held_response_is_replaced_by_the_verdict_and_reported_as_the_models(
    w: World,
) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"unsure")

    resp = await w.client.exchange(post(b'{"score": "unsure"}'))

    assert resp.status == 202
    assert resp.body == b"{}"
    assert resp.header("x-truthloop-abstain") == b"true"
    assert resp.header("content-length") == b"2"
    [ex] = w.tap.exchanges
    assert resp.header("x-prediction-id") == ex.prediction_id.encode()
    assert w.tap.judged == [(ex.prediction_id, 200, b'{"score": "unsure"}')]
    # The exchange is the model's (its prediction is what a reviewer needs), flagged.
    assert ex.abstained
    assert (ex.status, ex.served_by, ex.response_body) == (200, "model", b'{"score": "unsure"}')
    assert ex.request_body == b'{"score": "unsure"}'


@scenario
async def test_a_response_the_verdict_keeps_goes_out_as_the_model_framed_it(w: World) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"unsure")
    body = b'{"score": 0.9}' * 100

    for query in ("json=1", "json=1&chunked=1"):
        resp = await w.client.exchange(post(body, query))

        assert resp.status == 200
        assert resp.body == body
        assert resp.chunked == ("chunked" in query)
        assert not resp.has("x-truthloop-abstain")
        ex = w.tap.exchanges[-1]
        assert not ex.abstained
        assert resp.header("x-prediction-id") == ex.prediction_id.encode()
    assert len(w.tap.judged) == 2


@scenario
async def test_without_wants_verdict_nothing_is_held(w: World) -> None:
    w.tap.judge = abstain_on(b"unsure")

    resp = await w.client.exchange(post(b'{"score": "unsure"}'))

    assert resp.status == 200
    assert resp.body == b'{"score": "unsure"}'
    assert w.tap.judged == []
    assert not w.tap.exchanges[0].abstained


@scenario
async def test_keep_alive_and_pipelining_carry_on_after_an_abstain(w: World) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"unsure")
    bodies = [b'{"n": 1}', b'{"n": "unsure"}', b'{"n": 3}', b'{"n": "unsure", "m": 4}']

    await w.client.send(b"".join(post(b) for b in bodies))
    answers = [await w.client.response() for _ in bodies]

    assert [a.status for a in answers] == [200, 202, 200, 202]
    assert [a.body for a in answers] == [bodies[0], b"{}", bodies[2], b"{}"]
    again = await w.client.exchange(post(b'{"n": 5}'))
    assert again.body == b'{"n": 5}'
    assert [ex.abstained for ex in w.tap.exchanges] == [False, True, False, True, False]
    assert w.model.connections == 1


@scenario
async def test_a_response_over_capture_max_passes_through_untouched(w: World) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"")  # would abstain on anything it saw
    big = pattern(2 * MiB)  # over the default 1 MiB

    # Announced too large: never held.
    resp = await w.client.exchange(http1.request("GET", f"/bytes?size={len(big)}&json=1"))
    assert resp.body == big
    # Chunked: held until it outgrows the bound, then sent whole, byte for byte.
    resp = await w.client.exchange(http1.request("GET", f"/bytes?size={len(big)}&json=1&chunked=1"))
    assert resp.body == big
    assert resp.chunked

    assert w.tap.judged == []
    assert w.proxy.stats.verdict_passed == {"too_large": 2}
    assert [ex.skip_reason for ex in w.tap.exchanges] == ["body_too_large"] * 2
    assert not any(ex.abstained for ex in w.tap.exchanges)


@scenario
async def test_responses_that_cannot_be_held_pass_and_are_counted(w: World) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"")
    p = await w.make_proxy(capture_max_bytes=64 * KiB)
    c = await w.connect(p)

    assert (await c.exchange(post(b"{}", "json=0"))).status == 200  # application/octet-stream
    assert (await c.exchange(http1.request("GET", "/status/404"))).status == 404
    assert (await c.exchange(http1.request("GET", "/status/204"))).status == 204
    assert (await c.exchange(http1.request("HEAD", "/echo?json=1"), bodyless=True)).status == 200
    assert (await c.exchange(http1.request("GET", "/eof"))).body == b"until the end"
    c = await w.connect(p)  # /eof closes its connection
    # A request body too large to keep: its response cannot be captured, so it is not held.
    assert (await c.exchange(post(pattern(100 * KiB)))).status == 200

    assert w.tap.judged == []
    assert p.stats.verdict_passed == {
        "not_json": 1,
        "status_4xx": 1,
        "no_body": 2,
        "unframed": 1,
        "too_large": 1,
    }


@scenario
async def test_a_verdict_that_raises_sends_the_models_response(w: World) -> None:
    def broken(pid: str, status: int, headers: Headers, body: bytes) -> LocalResponse | None:
        raise RuntimeError("a broken verdict")

    w.tap.wants_verdict = True
    w.tap.judge = broken

    resp = await w.client.exchange(post(b'{"a": 1}'))

    assert (resp.status, resp.body) == (200, b'{"a": 1}')
    assert w.proxy.stats.verdict_passed == {"error": 1}
    assert (await w.client.exchange(post(b'{"b": 2}'))).body == b'{"b": 2}'


@scenario
async def test_a_model_that_fails_mid_held_body_gets_the_client_a_whole_502(w: World) -> None:
    w.tap.wants_verdict = True
    w.tap.judge = abstain_on(b"")

    resp = await w.client.exchange(http1.request("GET", "/close-early"))

    # Nothing of the held response was sent: the client hears a clean error, not a cut body.
    assert resp.status == 502
    assert w.proxy.stats.upstream_errors == {"model_closed": 1}
    assert w.tap.judged == []
    assert (await w.client.exchange(post(b"{}"))).status == 202
