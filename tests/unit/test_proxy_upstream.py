"""Model connections: what one is left in when its response ends (no sockets; a fake transport)."""

from __future__ import annotations

import asyncio

from truthloop.sidecar.headers import Field
from truthloop.sidecar.stats import ProxyStats
from truthloop.sidecar.upstream import Pool, Upstream

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.closed = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


class LaggingClientSink:
    """Hears the response; its client falls behind on the body, as a slow reader does."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.body = b""
        self.ended = False

    def on_interim(self, status: int, reason: bytes, fields: list[Field]) -> None: ...

    def on_head(self, status: int, reason: bytes, fields: list[Field]) -> bool:
        return False

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        self.up.pause_reading()  # the client's buffer passed its high-water mark

    def on_end(self) -> None:
        self.ended = True

    def on_failed(self, reason: str, retryable: bool) -> None:
        raise AssertionError(reason)

    def on_raw(self, data: bytes) -> None: ...

    def pause_request(self) -> None: ...

    def resume_request(self) -> None: ...


async def test_a_response_ending_while_reading_is_paused_goes_back_to_the_pool_reading() -> None:
    pool = Pool(asyncio.get_running_loop(), "127.0.0.1", 1, max_idle=4, stats=ProxyStats())
    up = Upstream(pool)
    transport = FakeTransport()
    up.connection_made(transport)  # type: ignore[arg-type]
    sink = LaggingClientSink(up)
    up.begin(sink, head_only=False, client=None)
    up.request_sent = True

    up.data_received(RESPONSE)

    assert sink.ended
    assert sink.body == b"hello"
    assert pool.take() is up
    assert transport.reading, "a pooled connection must read, or its next response never comes"
    assert not up.reading_paused
