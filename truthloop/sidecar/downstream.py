"""The client side of the proxy: a `Downstream` per client connection, a `Transaction` per request.

Requests on one connection are answered in order: the first in the queue is served, the ones
pipelined behind it wait (their bytes buffered, the socket paused) until it is done. A request
is served in one of three ways, chosen when its turn comes:

- forwarded to the model, body streamed both ways as it arrives, with the framing redone per hop
  (Content-Length kept, chunked re-chunked, a close-delimited body chunked to HTTP/1.1 clients);
- answered locally, while `tap.wants_local`: the body is read whole (up to `capture_max`; larger
  goes to the model) and `tap.local_response` may answer it, then maybe a shadow call to the model;
- forwarded to the model with a verdict, while `tap.wants_verdict`: as forwarded, but a 2xx JSON
  response that fits `capture_max` is held whole (nothing of it written) and `tap.verdict` may
  answer the client in its place; any other response, or one that outgrows the bound, is sent
  as it comes (from the point it outgrew it, with what was held first);
- tunnelled, for Upgrade and CONNECT: the head and every byte after it go to a model connection of
  its own, and back, uncaptured, until either side closes. This is safe to pass through because the
  sidecar only ever connects to its one model address — CONNECT cannot make it an open proxy.

A connection that begins with the HTTP/2 preface (`PREFACE`: HTTP/2 over cleartext with prior
knowledge, how gRPC speaks without TLS) is tunnelled whole the same way, on a fresh model
connection, before httptools sees a byte of it: its first bytes are held while they are a prefix
of the preface (within `header_timeout`, as a head), then either tunnelled or parsed as HTTP/1.x.
Each tunnel is counted by protocol (`stats.passthrough`) as it starts.

Flow control: a client that reads slowly pauses reading from the model, a model that reads slowly
pauses reading from the client, and waiting requests pause the client, so the proxy holds at most
a read's worth of a body in flight (and `capture_max` for a local answer). While a client is not
reading what it was sent, its next request waits to start: answers it does not read do not pile up.

A finished exchange is reported to the tap after its last byte was handed to the transport; a
client that goes away mid-exchange drops the model's connection and is counted, not reported.

Limits, so that no client can make the proxy hold or wait on it without bound (nginx's, by
default): a request head's URL, header bytes and field count are counted as httptools hands them
over, and a head still incomplete after `Context.max_head_bytes` on the wire is cut off (httptools
holds a field it has not finished, so its size is seen only on the wire); trailers count alike. A
connection waits for a head at most `header_timeout`, between requests at most `keepalive_timeout`,
and for the next byte of a body at most `body_timeout` (not while the proxy is not reading it, nor
before the `100 Continue` the client waits for). A refused request is answered (414, 431, 408 or
400, JSON) in its turn and never reaches the model; then the proxy stops parsing, sends its end of
stream and reads and drops what the client still sends for up to `LINGER` seconds, so the answer
is not lost to a reset. A body that stops after its answer began, and a client that takes nothing
of what it was sent for `send_timeout` (what is unsent for it not shrinking), are cut: the
connection is aborted and the model connections of its requests dropped. Tunnels are timed by
neither.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http
import itertools
import logging
import time

import httptools
import msgspec

from truthloop.sidecar import headers
from truthloop.sidecar.call import ModelCall
from truthloop.sidecar.context import FEED_SLICE, Context
from truthloop.sidecar.endpoint import Endpoint
from truthloop.sidecar.exchange import Exchange
from truthloop.sidecar.headers import Field
from truthloop.sidecar.shadow import Shadow
from truthloop.sidecar.stats import ERROR_STATUS
from truthloop.sidecar.upstream import Upstream

log = logging.getLogger("truthloop.sidecar.proxy")

HEAD = b"HEAD"
PRI = b"PRI"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 §3.4)."""
H2C = "h2c"
UPGRADES = {b"h2c": H2C, b"websocket": "websocket"}
"""`stats.passthrough`'s protocol of an Upgrade tunnel by its token (another one: `other`)."""
CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PENDING_LIMIT = 64 * 1024
"""Body bytes held for a request still waiting for its model connection before reading pauses."""

LINGER = 5.0
"""Seconds a refused client's bytes are read and dropped while it reads the answer (nginx's
lingering close): closing on unread bytes would reset the connection and lose the answer."""

# What a connection waits for when it has a deadline (and the reason it is closed when it passes).
HEADER_TIMEOUT = "header_timeout"
KEEPALIVE_TIMEOUT = "keepalive_timeout"
BODY_TIMEOUT = "body_timeout"
_LINGERING = "lingering"
SEND_TIMEOUT = "send_timeout"
"""Why a client that stopped reading is cut (its deadline is `Downstream.send_deadline`)."""

ERROR_MESSAGES = {
    "model_unreachable": "cannot connect to the model",
    "model_closed": "the model closed the connection before answering",
    "bad_response": "the model's response is not valid HTTP/1.1",
    "model_timeout": "the model did not answer within the model timeout",
}

# Why reading from the client is paused (bits; reading resumes when none is left).
_PIPELINE = 1
"""A request waits behind another, or the connection is finished reading."""
_UPSTREAM = 2
"""The model reads the request body slower than the client sends it."""
_BUFFER = 4
"""Body bytes wait for a model connection."""

# Transaction states.
_QUEUED = 0
_LOCAL = 1
_CALLING = 2
_TUNNEL = 3
_DONE = 4


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> bytes:
    """The status line of a response the proxy makes itself (a local answer, an error): looking
    the phrase up in http.HTTPStatus costs more than the rest of the head, so once per status."""
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s" % (status, phrase)


def refusal_responses(
    max_url_bytes: int,
    max_header_bytes: int,
    max_header_fields: int,
    header_timeout: float,
    body_timeout: float,
) -> dict[str, bytes]:
    """The whole answer, closing the connection, for each reason a request is refused."""
    refusals = {
        "bad_request": (400, "malformed HTTP request", None, None),
        "url_too_long": (414, "request URL too long", "url", f"over {max_url_bytes} bytes"),
        "headers_too_large": (
            431, "request header fields too large", "headers", f"over {max_header_bytes} bytes"
        ),
        "too_many_headers": (
            431, "too many request header fields", "headers", f"over {max_header_fields} fields"
        ),
        HEADER_TIMEOUT: (
            408, "request head not received in time", None, f"over {header_timeout:g} seconds"
        ),
        BODY_TIMEOUT: (
            408, "request body not received in time", "body",
            f"no byte for over {body_timeout:g} seconds",
        ),
    }  # fmt: skip
    responses = {}
    for reason, (status, error, field, message) in refusals.items():
        detail = {"field": field, "reason": reason, "message": message}
        body = msgspec.json.encode(
            {"error": error, "details": [{k: v for k, v in detail.items() if v is not None}]}
        )
        responses[reason] = (
            headers.head(
                _status_line(status),
                [
                    (b"Content-Type", b"application/json"),
                    (b"Content-Length", b"%d" % len(body)),
                    (b"Connection", b"close"),
                ],
            )
            + body
        )
    return responses


def _fields_size(fields: list[Field]) -> int:
    """Header bytes as `max_header_bytes` counts them: `Name: value` and CRLF per field."""
    return sum(map(len, itertools.chain.from_iterable(fields))) + 4 * len(fields)


class HeadRefused(Exception):
    """Raised from a parser callback when a head breaks a limit; `reason` names which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transaction(ModelCall):
    """One request on a client connection, from its head to the last byte of its response."""

    __slots__ = (
        "close_after",
        "conn",
        "continued",
        "e2e",
        "expect",
        "fields",
        "has_host",
        "held",
        "http11",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "pid",
        "prior_knowledge",
        "req_chunked",
        "req_done",
        "req_kept",
        "req_length",
        "req_size",
        "resp_chunked",
        "resp_fields",
        "resp_kept",
        "resp_size",
        "started",
        "state",
        "status",
        "t0",
        "too_large",
        "upgrade",
        "url",
        "verdict",
    )

    def __init__(
        self,
        conn: Downstream,
        method: bytes,
        url: bytes,
        fields: list[Field],
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        ModelCall.__init__(self, conn.ctx, method == HEAD, conn)
        self.conn = conn
        self.method = method
        self.url = url
        self.fields = fields
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.prior_knowledge = False
        """A tunnel of HTTP/2 with prior knowledge: no head, its preface the first tunnel bytes."""
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.pid = conn.ctx.new_id()
        self.state = _QUEUED
        e2e, length, chunked, kept, connection = headers.split(fields)
        # llhttp keeps an HTTP/1.0 connection alive only if a Connection field asks for it, so
        # keep-alive without one means HTTP/1.1: the parser's version (a string it formats, ~2%
        # of a proxied request's instructions) is asked for only otherwise.
        self.http11 = (keep_alive and not connection) or conn.http_version() == "1.1"
        self.e2e = e2e
        self.req_length = length
        self.req_chunked = chunked
        self.expect = b"expect" in kept
        self.has_host = b"host" in kept
        self.continued = False
        """The client has had its `100 Continue` (relayed, or ours while answering locally)."""
        self.req_done = False
        self.req_size = 0
        self.req_kept: list[bytes] | None = []
        self.pending: list[bytes] = []
        """Body bytes (or tunnel bytes) not yet written to a model connection."""
        self.pending_size = 0
        self.status = 0
        """The response status once its head was written to the client."""
        self.resp_fields: tuple[Field, ...] = ()
        self.resp_kept: list[bytes] | None = []
        self.resp_size = 0
        self.resp_chunked = False
        self.too_large = False
        self.close_after = False
        self.verdict = False
        """The tap wants a verdict on the model's response (asked when the model is called)."""
        self.held: tuple[int, bytes] | None = None
        """The model's status and response head, held (unwritten) with its body in `resp_kept`
        until `tap.verdict` is asked."""

    # Its turn.

    def start(self) -> None:
        if self.upgrade:
            self.state = _TUNNEL
            self.ctx.stats.passthrough[self._protocol()] += 1
            self.call_model(fresh=self.prior_knowledge)
        elif self.ctx.tap.wants_local:
            self.state = _LOCAL
            self.conn.unblock(_BUFFER)  # the body is read whole now, up to capture_max
            if self.req_done:
                self._answer_locally()
            elif self.pending_size > self.ctx.capture_max:
                self._local_too_large()
            elif self.expect:
                self.continued = True
                self.conn.write(CONTINUE)
        else:
            self._ask_model()

    def _protocol(self) -> str:
        """What a tunnel carries, as `stats.passthrough` counts it."""
        if self.prior_knowledge:
            return H2C
        if self.method == b"CONNECT":
            return "connect"
        for name, value in self.fields:
            if name.lower() == b"upgrade":
                return UPGRADES.get(value.split(b",")[0].strip().lower(), "other")
        return "other"

    def _ask_model(self) -> None:
        """Forward the request: the model answers the client (maybe with a verdict)."""
        self.state = _CALLING
        self.verdict = self.ctx.tap.wants_verdict
        self.call_model()

    def cancel(self) -> None:
        """The client is gone."""
        self.state = _DONE
        self.drop_call()

    # The request, as the client's parser produces it.

    def request_body(self, chunk: bytes) -> None:
        state = self.state
        if state == _DONE:
            return  # answered early (or failed): the rest of the body is not needed
        n = len(chunk)
        self.req_size += n
        kept = self.req_kept
        if kept is not None:
            if self.req_size <= self.ctx.capture_max:
                kept.append(chunk)
            else:
                self._too_large()
        up = self.up
        if up is not None:
            if self.req_chunked:
                up.write(b"%x\r\n" % n)
                up.write(chunk)
                up.write(CRLF)
            else:
                up.write(chunk)
            return
        self.pending.append(chunk)
        self.pending_size += n
        if state == _LOCAL:
            if self.pending_size > self.ctx.capture_max:
                self._local_too_large()
        elif self.pending_size > PENDING_LIMIT:
            self.conn.block(_BUFFER)

    def request_end(self) -> None:
        state = self.state
        if state in (_DONE, _TUNNEL):
            return
        self.req_done = True
        if state == _LOCAL:
            self._answer_locally()
        elif self.up is not None:
            if self.req_chunked:
                self.up.write(LAST_CHUNK)
            self.up.request_sent = True

    def tunnel_in(self, data: bytes) -> None:
        """Bytes from the client after an Upgrade/CONNECT head."""
        if self.up is not None:
            self.up.write(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > PENDING_LIMIT:
            self.conn.block(_BUFFER)

    def tunnel_eof(self) -> None:
        """The client will send no more: pass the half-close on."""
        up = self.up
        if up is not None and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()
        else:
            self.cancel()
            self.conn.close_soon()

    def tunnel_client_closed(self) -> None:
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.close()  # its connection_lost reports the exchange
        else:
            self.cancel()

    # ModelCall.

    def _send(self, up: Upstream) -> None:
        conn = self.conn
        conn.hold(up)
        if conn.writing_paused:
            up.pause_reading()
        if self.state == _TUNNEL:
            self.cancel_timer()  # model_timeout bounds the connect, not the tunnel's life
            up.raw = True
            if not self.prior_knowledge:  # else its preface is the first of the pending bytes
                up.write(headers.head(b" ".join((self.method, self.url, b"HTTP/1.1")), self.fields))
            for data in self.pending:
                up.write(data)
        else:
            expect = self.expect and not self.continued
            if self.req_length is not None:
                framing = b"Content-Length: %s\r\n" % self.req_length
            elif self.req_chunked:
                framing = b"Transfer-Encoding: chunked\r\n"
            else:
                framing = b""
            up.write(self._request_head(framing, expect))
            chunked = self.req_chunked
            for chunk in self.pending:
                if chunked:
                    up.write(b"%x\r\n" % len(chunk))
                    up.write(chunk)
                    up.write(CRLF)
                else:
                    up.write(chunk)
            if self.req_done:
                if chunked:
                    up.write(LAST_CHUNK)
                up.request_sent = True
        self.pending = []
        self.pending_size = 0
        conn.unblock(_BUFFER)

    def _request_head(self, framing: bytes, expect: bool) -> bytes:
        fields = self.e2e if expect or not self.expect else headers.without(self.e2e, b"expect")
        host = b"" if self.has_host else b"Host: %s\r\n" % self.ctx.host
        return headers.head(b" ".join((self.method, self.url, b"HTTP/1.1")), fields, framing + host)

    def _rewind(self) -> bool:
        if not self.req_done or self.req_kept is None or self.status or self.state == _TUNNEL:
            return False
        self.pending = list(self.req_kept)
        return True

    def _model_failed(self, reason: str) -> None:
        self.ctx.stats.upstream_errors[reason] += 1
        if self.prior_knowledge:  # an HTTP/2 client cannot read an HTTP/1.1 answer: it is closed
            self.state = _DONE
            self.conn.close_soon()
            return
        if self.held is not None:  # not begun for the client: it gets the error whole
            self.held = None
            self.resp_kept = []
        if self.status:  # the head is out: all the client can learn is that the body is cut
            self.state = _DONE
            self.conn.fail(self)
            return
        self.state = _DONE
        body = msgspec.json.encode(
            {"error": ERROR_MESSAGES[reason], "details": [{"reason": reason}]}
        )
        self._respond_whole(
            ERROR_STATUS[reason], [(b"Content-Type", b"application/json")], body, "model", None
        )

    # Sink: the model's response.

    def on_interim(self, status: int, reason: bytes, fields: list[Field]) -> None:
        if status == 100:
            if self.expect and not self.continued:
                self.continued = True
                self.conn.write(CONTINUE)
        elif self.http11:
            e2e = headers.split(fields)[0]
            self.conn.write(headers.head(b"HTTP/1.1 %d %s" % (status, reason), e2e))

    def on_head(self, status: int, reason: bytes, fields: list[Field]) -> bool:
        e2e, length, chunked, kept, _ = headers.split(fields)
        if self.method == HEAD or status == 204 or status == 304:
            if length is not None:
                e2e.append((b"Content-Length", length))
            elif chunked:
                e2e.append((b"Transfer-Encoding", b"chunked"))
        elif length is not None:
            e2e.append((b"Content-Length", length))
        elif self.http11:
            e2e.append((b"Transfer-Encoding", b"chunked"))
            self.resp_chunked = True
        else:
            self.close_after = True  # HTTP/1.0 client: the body ends when the connection does
        if 200 <= status < 300:
            if headers.PREDICTION_ID in kept:
                e2e = headers.without(e2e, headers.PREDICTION_ID)
            e2e.append((b"X-Prediction-ID", self.pid.encode()))
        self._add_connection(e2e)
        self.resp_fields = tuple(e2e)
        head = headers.head(b"HTTP/1.1 %d %s" % (status, reason), e2e)
        if self.verdict and self._holds(status, e2e, length, chunked):
            self.held = (status, head)
        else:
            self.status = status
            self.conn.write(head)
        return length is None and not chunked

    def _holds(self, status: int, e2e: list[Field], length: bytes | None, chunked: bool) -> bool:
        """Whether the response whose head this is can be held for a verdict; counts why not."""
        if not 200 <= status < 300:
            passed = f"status_{status // 100}xx"
        elif self.method == HEAD or status == 204:
            passed = "no_body"
        elif not headers.json_content(e2e):
            passed = "not_json"
        elif length is None and not chunked:
            passed = "unframed"
        elif self.resp_kept is None or (
            length is not None and (not length.isdigit() or int(length) > self.ctx.capture_max)
        ):
            passed = "too_large"
        else:
            return True
        self.ctx.stats.verdict_passed[passed] += 1
        return False

    def on_body(self, chunk: bytes) -> None:
        kept = self.resp_kept
        if kept is not None:
            self.resp_size += len(chunk)
            if self.resp_size <= self.ctx.capture_max:
                kept.append(chunk)
                if self.held is not None:
                    return
            else:
                self._too_large()  # sends what was held first
        conn = self.conn
        if self.resp_chunked:
            conn.write(b"%x\r\n" % len(chunk))
            conn.write(chunk)
            conn.write(CRLF)
        else:
            conn.write(chunk)

    def on_end(self) -> None:
        seconds = self.model_done()
        if self.state == _TUNNEL:
            self.state = _DONE
            if not self.prior_knowledge:  # a connection, not a request: `passthrough` counts it
                self._report("model", seconds, "upgrade")
            self.conn.close_soon()
            return
        if self.held is not None:
            self._judge(seconds)
            return
        if self.resp_chunked:
            self.conn.write(LAST_CHUNK)
        self.state = _DONE
        self._report("model", seconds, None)
        self.conn.done(self)

    # A held response.

    def _judge(self, seconds: float) -> None:
        """The held response is whole: send the tap's verdict in its place, or it."""
        assert self.held is not None
        assert self.resp_kept is not None
        status = self.held[0]
        body = b"".join(self.resp_kept)
        ctx = self.ctx
        try:
            local = ctx.tap.verdict(self.pid, status, self.resp_fields, body)
        except Exception:
            ctx.stats.verdict_passed["error"] += 1
            log.debug("verdict failed; sending the model's response", exc_info=True)
            local = None
        self.state = _DONE
        if local is None:
            self._release()
            if self.resp_chunked:
                self.conn.write(LAST_CHUNK)
            self._report("model", seconds, None)
            self.conn.done(self)
            return
        self.held = None
        self.status = status  # the exchange reported is the model's; the client gets `local`
        fields = headers.split(list(local.headers))[0]
        fields.append((b"Content-Length", b"%d" % len(local.body)))
        fields.append((b"X-Prediction-ID", self.pid.encode()))
        self._add_connection(fields)
        head = headers.head(_status_line(local.status), fields)
        self.conn.write(head if local.status in (204, 304) else head + local.body)
        self._report("model", seconds, None, abstained=True)
        self.conn.done(self)

    def _release(self) -> None:
        """Send the held response's head and what came of its body, as the model sent them."""
        assert self.held is not None
        assert self.resp_kept is not None
        (self.status, head), self.held = self.held, None
        conn = self.conn
        conn.write(head)
        body = b"".join(self.resp_kept)
        if not body:
            return
        if self.resp_chunked:
            conn.write(b"%x\r\n" % len(body))
            conn.write(body)
            conn.write(CRLF)
        else:
            conn.write(body)

    def on_raw(self, data: bytes) -> None:
        if not self.status and not self.prior_knowledge:
            parts = data.split(b" ", 2)
            if len(parts) > 1 and parts[1].isdigit():
                self.status = int(parts[1])
        self.conn.write(data)

    def pause_request(self) -> None:
        self.conn.block(_UPSTREAM)

    def resume_request(self) -> None:
        self.conn.unblock(_UPSTREAM)

    # Answering locally.

    def _answer_locally(self) -> None:
        ctx = self.ctx
        body = b"".join(self.pending)
        try:
            local = ctx.tap.local_response(
                self.method.decode(), self.url.decode("latin-1"), tuple(self.fields), body
            )
        except Exception:
            ctx.stats.local_errors += 1
            log.debug("local_response failed; asking the model", exc_info=True)
            local = None
        if local is None:
            self._ask_model()
            return
        self.state = _DONE
        self.pending = []
        fields = headers.split(list(local.headers))[0]
        fields.append((b"X-Served-By", b"fallback"))
        self._respond_whole(local.status, fields, local.body, "fallback", None)
        if ctx.tap.shadow:
            if len(ctx.shadows) < ctx.shadow_limit:
                Shadow(ctx, self, body).start()
            else:
                ctx.stats.shadow_skipped += 1

    def _local_too_large(self) -> None:
        self.ctx.stats.local_too_large += 1
        self._ask_model()

    def shadow_head(self, body: bytes) -> bytes:
        """This request's head for a shadow call carrying `body` whole."""
        framing = b"Content-Length: %d\r\n" % len(body)
        if not body and self.req_length is None and not self.req_chunked:
            framing = b""
        return self._request_head(framing, expect=False)

    # Writing a whole response (local answers, errors) and reporting.

    def _respond_whole(
        self,
        status: int,
        fields: list[Field],
        body: bytes,
        served_by: str,
        model_seconds: float | None,
    ) -> None:
        fields.append((b"Content-Length", b"%d" % len(body)))
        if 200 <= status < 300:
            fields.append((b"X-Prediction-ID", self.pid.encode()))
        self._add_connection(fields)
        self.status = status
        self.resp_fields = tuple(fields)
        head = headers.head(_status_line(status), fields)
        conn = self.conn
        if self.method == HEAD or status == 204 or status == 304:
            conn.write(head)
        else:
            conn.write(head + body)
        if self.resp_kept is not None:
            if len(body) <= self.ctx.capture_max:
                self.resp_kept.append(body)
            else:
                self._too_large()
        self._report(served_by, model_seconds, None)
        conn.done(self)

    def _add_connection(self, fields: list[Field]) -> None:
        """Close after this response when the client asked, the body is not all read, or the
        proxy is stopping; an HTTP/1.0 client that asked for keep-alive is told it has it."""
        if self.close_after or not self.keep_alive or not self.req_done or self.ctx.closing:
            self.close_after = True
            fields.append((b"Connection", b"close"))
        elif not self.http11:
            fields.append((b"Connection", b"keep-alive"))

    def _too_large(self) -> None:
        if self.held is not None:
            self.ctx.stats.verdict_passed["too_large"] += 1
            self._release()
        self.too_large = True
        self.req_kept = None
        self.resp_kept = None

    def _report(
        self,
        served_by: str,
        model_seconds: float | None,
        skip: str | None,
        abstained: bool = False,
    ) -> None:
        if skip is None and self.too_large:
            skip = "body_too_large"
        req, resp = self.req_kept, self.resp_kept
        self.ctx.report(
            # Positional, in field order: keywords to a class call cost a dict per request.
            Exchange(
                self.pid,
                self.method.decode(),
                self.url.decode("latin-1"),
                tuple(self.fields),
                None if req is None or skip else b"".join(req),
                self.status,
                self.resp_fields,
                None if resp is None or skip else b"".join(resp),
                served_by,
                False,  # shadow
                self.started,
                model_seconds,
                time.perf_counter() - self.t0,
                skip,
                abstained,
            ),
            "tunnel" if skip == "upgrade" else served_by,
        )


class _Lingering:
    """Stands in for a tunnel once a refusal is answered: the client's bytes are dropped unparsed,
    and its end of stream closes the connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Downstream) -> None:
        self.conn = conn

    def tunnel_in(self, data: bytes) -> None:
        pass

    def tunnel_eof(self) -> None:
        self.conn.close_soon()

    def tunnel_client_closed(self) -> None:
        pass


class _Preface:
    """Stands in for a tunnel at a connection's start, until its first bytes tell whether it
    begins with the HTTP/2 preface: held while they are a prefix of it (the head's time runs),
    then tunnelled whole if they are the preface, else parsed as HTTP/1.x from the first byte."""

    __slots__ = ("conn", "seen")

    def __init__(self, conn: Downstream) -> None:
        self.conn = conn
        self.seen = b""

    def tunnel_in(self, data: bytes) -> None:
        seen = self.seen + data if self.seen else data
        begun = PREFACE[: len(seen)]
        if not seen.startswith(begun):
            self.conn.tunnel = None
            self.conn.data_received(seen)
        elif len(begun) == len(PREFACE):
            self.conn.pass_through(seen)
        else:
            self.seen = seen

    def tunnel_eof(self) -> None:
        self.conn.close_soon()

    def tunnel_client_closed(self) -> None:
        pass


class Downstream(Endpoint):
    """One client connection: parses requests, keeps them in order, relays flow control."""

    __slots__ = (
        "_blocks",
        "_feeding",
        "_fields",
        "_held",
        "_in_head",
        "_parser",
        "_parsing",
        "_refusal",
        "_send_mark",
        "_starting",
        "_unparsed",
        "_url",
        "_url_size",
        "ctx",
        "deadline",
        "expiry",
        "queue",
        "send_deadline",
        "tunnel",
        "writing_paused",
    )

    def __init__(self, ctx: Context[Downstream]) -> None:
        super().__init__()
        self.ctx = ctx
        self.queue: collections.deque[Transaction] = collections.deque()
        """Requests being answered (the first) and waiting (the rest), in arrival order."""
        self.tunnel: Transaction | _Lingering | _Preface | None = _Preface(self)
        """Where the client's bytes go unparsed: the look for the HTTP/2 preface at the start, a
        tunnel (Upgrade, CONNECT, HTTP/2 with prior knowledge), or nowhere."""
        self.writing_paused = False
        self.deadline = 0.0
        """Loop time when `expiry` runs out; 0 while a request is under way (no deadline)."""
        self.expiry = HEADER_TIMEOUT
        """What runs out at `deadline`: the time for a head (HEADER_TIMEOUT), for a next request
        (KEEPALIVE_TIMEOUT), for a body's next byte (BODY_TIMEOUT), or for a lingering close; but
        the last, each is also the reason counted."""
        self.send_deadline = 0.0
        """Loop time when a client that reads nothing more is cut; 0 unless the proxy waits on it
        to read (its writes paused, or a close waiting for them to go out)."""
        self._send_mark = 0
        """What was unsent for the client at the last look: less is the client's progress."""
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._url_size = 0
        self._fields: list[Field] = []
        self._unparsed = 0
        """Bytes fed since httptools last produced a head, a body chunk or an end (less what came
        after it in the same slice): a head or trailer it is still holding, or part of one."""
        self._in_head = True
        self._parsing: Transaction | None = None
        self._blocks = 0
        self._refusal: str | None = None
        """Why the request being parsed was refused: answered once those before it are."""
        self._feeding = False
        self._starting = False
        self._held: list[Upstream] = []

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ctx = self.ctx
        if len(ctx.connections) >= ctx.max_connections and not _make_room(ctx):
            ctx.stats.connections_closed["max_connections"] += 1
            transport.close()
            return
        super().connection_made(transport)
        ctx.connections.add(self)
        ctx.stats.open_connections = len(ctx.connections)
        self.deadline = ctx.clock + ctx.header_timeout
        if ctx.closing:  # accepted just as the proxy stopped listening
            self.close_soon()

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.tunnel_in(data)
            return
        queue = self.queue
        self._feeding = True
        if queue:
            up = queue[0].up
            if up is not None:
                self.hold(up)
        n = len(data)
        try:
            if n > FEED_SLICE:
                self._feed_slices(data)
            else:
                self._unparsed += n  # forgiven by a head, a body chunk or an end
                self._parser.feed_data(data)
                if self._unparsed or self._fields:  # a head or a trailer is still coming
                    self._check_unfinished()
        except httptools.HttpParserUpgrade as e:
            self._upgrade(data[e.args[0] :])
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, HeadRefused):
                self._refuse(e.__context__.reason)
            else:
                self._bad_request(e)
        finally:
            self._feeding = False
            held = self._held
            if held:
                for up in held:
                    up.uncork()
                held.clear()
        if self._parsing is not None:  # a body is still coming: its next byte has body_timeout
            ctx = self.ctx
            self.deadline = ctx.clock + ctx.body_timeout
            self.expiry = BODY_TIMEOUT

    def eof_received(self) -> bool | None:
        """A tunnel passes the half-close on; otherwise, as nginx does, a client's end of stream
        with a request in flight is a disconnect (most clients close, few half-close)."""
        if self.tunnel is not None:
            self.tunnel.tunnel_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.stats.open_connections = len(ctx.connections)
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.tunnel_client_closed()
        elif self.queue:
            ctx.stats.client_disconnects += 1
            for t in self.queue:
                t.cancel()
        self.queue.clear()
        if ctx.drained is not None and not ctx.connections:
            ctx.drained.set()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.queue and self.queue[0].up is not None:
            self.queue[0].up.pause_reading()
        if self.tunnel is None:  # a tunnel's client may take its time
            self._watch_sending()

    def resume_writing(self) -> None:
        self.writing_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():  # a close waits on it still
            self.send_deadline = 0.0
        queue = self.queue
        if queue:
            up = queue[0].up
            if up is not None:
                up.resume_reading()
            elif queue[0].state == _QUEUED:  # it waited for the client to read
                self._start_queued()

    # httptools callbacks.

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > self.ctx.max_url_bytes:
            raise HeadRefused("url_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # otherwise a chunked body's trailer: dropped (bounded on the wire)
            self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        ctx = self.ctx
        fields = self._fields
        if len(fields) > ctx.max_header_fields:
            raise HeadRefused("too_many_headers")
        if self._unparsed > ctx.measure_above and _fields_size(fields) > ctx.max_header_bytes:
            raise HeadRefused("headers_too_large")
        p = self._parser
        url = self._url
        t = Transaction(
            self, p.get_method(), b"".join(url), fields, p.should_keep_alive(), p.should_upgrade()
        )
        url.clear()
        self._url_size = 0
        self._fields = []
        self._unparsed = 0
        self._in_head = False
        self.deadline = 0.0
        self._parsing = t
        queue = self.queue
        queue.append(t)
        if len(queue) > 1:
            self.block(_PIPELINE)
        elif not self.writing_paused:  # else it starts once the client reads (resume_writing)
            t.start()

    def on_body(self, body: bytes) -> None:
        self._unparsed = 0
        if self._parsing is not None:
            self._parsing.request_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._unparsed = 0
        t, self._parsing = self._parsing, None
        if t is not None:
            t.request_end()

    @property
    def idle(self) -> bool:
        """No byte of a request came since the connection began to wait (new, or between
        requests); once one comes, the sweep gives a keep-alive wait the head's time instead."""
        return not (self._unparsed or self._url_size or self._fields)

    @property
    def reading_paused(self) -> bool:
        return self._blocks != 0

    @property
    def sending(self) -> bool:
        """Bytes written for the client still wait to go out (it has not read them all yet)."""
        return self.transport is not None and self.transport.get_write_buffer_size() > 0

    def http_version(self) -> str:
        """The version of the request whose head was just parsed, like "1.1"."""
        return self._parser.get_http_version()

    # For transactions.

    def hold(self, up: Upstream) -> None:
        """Cork `up` until the current read is parsed (a no-op outside one)."""
        if self._feeding and not up.corked:
            up.corked = True
            self._held.append(up)

    def block(self, reason: int) -> None:
        if not self._blocks and self.transport is not None:
            self.transport.pause_reading()
        self._blocks |= reason

    def unblock(self, reason: int) -> None:
        if self._blocks & reason:
            self._blocks &= ~reason
            transport = self.transport
            if not self._blocks and transport is not None and not transport.is_closing():
                transport.resume_reading()

    def done(self, t: Transaction) -> None:
        """`t`'s response is written: close, or start the next request."""
        queue = self.queue
        if queue and queue[0] is t:
            queue.popleft()
        refused = not queue and self._refusal is not None
        if t.close_after or self.ctx.closing or refused:
            for other in queue:
                other.cancel()
            queue.clear()
            if refused and not t.close_after:
                self._answer_refusal()
            else:
                self.close_soon()
            return
        if self._blocks:  # what held the finished request back no longer applies
            more = len(queue) <= 1 and self._refusal is None  # (nothing is read after a refusal)
            self.unblock(_UPSTREAM | _BUFFER | (_PIPELINE if more else 0))
        if not queue:  # a next request has keepalive_timeout to begin (a head begun, its own)
            ctx = self.ctx
            self.deadline = ctx.clock + ctx.keepalive_timeout
            self.expiry = KEEPALIVE_TIMEOUT
        else:
            self._start_queued()

    def _start_queued(self) -> None:
        """Start the waiting requests in turn, unless the client is not reading what it was sent.

        Requests answered at once (locally, or refused) finish inside `start`, so the next ones
        are started by this loop rather than by recursion, however many were pipelined.
        """
        if self._starting:
            return
        self._starting = True
        queue = self.queue
        try:
            while queue and queue[0].state == _QUEUED and not self.writing_paused:
                queue[0].start()
        finally:
            self._starting = False

    def fail(self, t: Transaction) -> None:
        """`t` broke after its head was sent: cut the connection so the client sees it."""
        if self.queue and self.queue[0] is t:
            self.queue.popleft()
        for other in self.queue:
            other.cancel()
        self.queue.clear()
        self.uncork()
        if self.transport is not None:
            self.transport.abort()

    def close_soon(self) -> None:
        """Close after what was written so far (corked bytes included) has gone out, which waits
        on the client to read it: within send_timeout, as when writing is paused."""
        self.uncork()
        transport = self.transport
        if transport is not None:
            transport.close()
            if not self.send_deadline and transport.get_write_buffer_size():
                self._watch_sending()

    def sweep(self, now: float) -> None:
        """Called about every second while the connection has a deadline: a client that read
        nothing since send_timeout is cut; a keep-alive wait that has seen a byte becomes a
        head's wait from now; a body's wait is put off while the proxy holds the body back or
        the client waits for its `100 Continue`, and dropped once the body is whole; a deadline
        past expires."""
        if self.send_deadline and self._stalled(now):
            return
        if not self.deadline:
            return
        expiry = self.expiry
        if expiry is KEEPALIVE_TIMEOUT and not self.idle:
            self.deadline = now + self.ctx.header_timeout
            self.expiry = HEADER_TIMEOUT
        elif expiry is BODY_TIMEOUT:
            t = self._parsing
            if t is None or t.state == _DONE:
                self.deadline = 0.0
            elif self._blocks or (t.expect and not t.continued):
                self.deadline = now + self.ctx.body_timeout
            elif self.deadline <= now:
                self._refuse(BODY_TIMEOUT)
        elif self.deadline <= now:
            self._expire()

    def _watch_sending(self) -> None:
        """The proxy waits on the client to read: it has send_timeout to make progress."""
        self.send_deadline = self.ctx.clock + self.ctx.send_timeout
        self._send_mark = self.unsent()

    def _stalled(self, now: float) -> bool:
        """Cut a client that has taken nothing (what is unsent for it did not shrink) since its
        send_deadline was set or put off; whether it was cut."""
        if not self.sending:  # the transport has handed everything to the kernel
            self.send_deadline = 0.0
            return False
        unsent = self.unsent()
        if unsent < self._send_mark:
            self.send_deadline = now + self.ctx.send_timeout
        self._send_mark = unsent
        if self.send_deadline > now:
            return False
        self.ctx.stats.connections_closed[SEND_TIMEOUT] += 1
        self._cut()
        return True

    def _expire(self) -> None:
        """Close an idle connection, answer a head that did not come whole in time with 408,
        end a lingering close (a body's time is up in `sweep`)."""
        expiry = self.expiry
        self.deadline = 0.0
        if expiry is _LINGERING:
            if self.transport is not None:
                self.transport.abort()
            return
        if self.idle:  # nothing of a request came: nothing to answer
            self.ctx.stats.connections_closed[expiry] += 1
            self.close_soon()
        else:
            self._refuse(HEADER_TIMEOUT)

    # Internals.

    def _feed_slices(self, data: bytes) -> None:
        """Feed a large read a slice at a time, checking the head after each: what follows the end
        of a request within a slice is not counted, so a slice is all a head gets past its limit."""
        view = memoryview(data)
        for at in range(0, len(data), FEED_SLICE):
            part = view[at : at + FEED_SLICE]
            self._unparsed += len(part)
            try:
                self._parser.feed_data(part)
            except httptools.HttpParserUpgrade as e:
                raise httptools.HttpParserUpgrade(at + e.args[0]) from None
            if self._check_unfinished():
                return

    def _check_unfinished(self) -> bool:
        """Refuse a head (or trailer) still coming that is already over a limit; whether so."""
        ctx = self.ctx
        if len(self._fields) > ctx.max_header_fields:
            self._refuse("too_many_headers")
        elif self._unparsed > ctx.max_head_bytes:
            self._refuse("headers_too_large")
        else:
            return False
        return True

    def pass_through(self, data: bytes) -> None:
        """The connection began with the HTTP/2 preface: `data` and all that follows go to the
        model and back, uncaptured and untimed."""
        self.deadline = 0.0
        t = Transaction(self, PRI, b"*", [], True, True)
        t.prior_knowledge = True
        self.tunnel = t
        self.queue.append(t)
        t.start()
        t.tunnel_in(data)

    def _upgrade(self, tail: bytes) -> None:
        t = self.queue[-1]
        self.tunnel = t
        self._parsing = None
        if tail:
            t.tunnel_in(tail)

    def _bad_request(self, e: httptools.HttpParserError) -> None:
        if isinstance(e, httptools.HttpParserCallbackError) and e.__context__ is not None:
            log.error("request handling failed", exc_info=e.__context__)
        self.ctx.stats.bad_requests += 1
        self._refuse("bad_request")

    def _refuse(self, reason: str) -> None:
        """Parse no more: answer `reason` (a key of `Context.refusals`) once the requests before
        are answered, and close. A request refused mid-body (its trailers) is dropped."""
        if reason != "bad_request":  # counted in `bad_requests`
            self.ctx.stats.connections_closed[reason] += 1
        self.block(_PIPELINE)
        self._refusal = reason
        self.deadline = 0.0
        # Nothing more is parsed: let go of the head so far, httptools' unfinished field with it.
        self._parser = httptools.HttpRequestParser(self)
        self._url.clear()
        self._url_size = 0
        self._fields = []
        t, self._parsing = self._parsing, None
        if t is not None and t.state != _DONE:
            if t.status:  # its answer began: all the client can learn is that it is cut
                self._cut()
                return
            t.cancel()
            if self.queue and self.queue[-1] is t:
                self.queue.pop()
        if not self.queue:
            self._answer_refusal()

    def _cut(self) -> None:
        """Abort the connection (its client cannot be answered any more), dropping the model
        connections of its requests; not counted as the client's disconnect."""
        for t in self.queue:
            t.cancel()
        self.queue.clear()
        self.deadline = self.send_deadline = 0.0
        if self.transport is not None:
            self.transport.abort()

    def _answer_refusal(self) -> None:
        """Write the refusal, send our end of stream and drop what the client still sends until
        it closes or LINGER seconds pass, so that the answer is not lost to a reset."""
        assert self._refusal is not None
        self.write(self.ctx.refusals[self._refusal])
        self.uncork()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.tunnel = _Lingering(self)
        self.deadline = self.ctx.clock + LINGER
        self.expiry = _LINGERING
        self._blocks = 0
        transport.resume_reading()


def _make_room(ctx: Context[Downstream]) -> bool:
    """At the connection limit: close the longest-idle keep-alive connection, as nginx reuses
    one; False if there is none (every connection is busy, has begun a head, or has not read its
    last answer: once out of `connections`, a close that waits on its client is not swept)."""
    idle = [
        c
        for c in ctx.connections
        if c.deadline and c.idle and c.expiry is KEEPALIVE_TIMEOUT and not c.sending
    ]
    if not idle:
        return False
    oldest = min(idle, key=_deadline)
    ctx.stats.connections_closed["max_connections"] += 1
    ctx.connections.discard(oldest)  # gone now for the count, though its close completes later
    oldest.close_soon()
    return True


def _deadline(conn: Downstream) -> float:
    return conn.deadline
