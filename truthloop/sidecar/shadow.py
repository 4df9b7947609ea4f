"""A shadow call: the model's answer to a request the fallback already answered.

It runs off the request path — the client has its response — so it only reports: an Exchange with
`served_by="model"`, `shadow=True` and the client's prediction_id, which lets the fallback and the
model be compared on the same traffic. Failures are counted (`shadow_failed`), never reported.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from truthloop.sidecar import headers
from truthloop.sidecar.call import ModelCall
from truthloop.sidecar.context import Context
from truthloop.sidecar.exchange import Exchange
from truthloop.sidecar.headers import Field
from truthloop.sidecar.upstream import Upstream


class Answered(Protocol):
    """The request the fallback answered, as its shadow call needs it (`downstream.Transaction`)."""

    method: bytes
    url: bytes
    fields: list[Field]
    pid: str
    """Its prediction ID, which the shadow's exchange shares."""
    started: float
    """Wall-clock Unix seconds when its head arrived."""
    t0: float
    """`time.perf_counter()` when its head arrived."""

    def shadow_head(self, body: bytes) -> bytes:
        """Its head for a call carrying `body` whole."""
        ...


class Shadow(ModelCall):
    __slots__ = (
        "_body",
        "_fields",
        "_head",
        "_kept",
        "_method",
        "_path",
        "_pid",
        "_resp_fields",
        "_size",
        "_started",
        "_status",
        "_t0",
    )

    def __init__(self, ctx: Context[Any], t: Answered, body: bytes) -> None:
        super().__init__(ctx, t.method == b"HEAD", None)
        self._head = t.shadow_head(body)
        self._body = body
        self._method = t.method
        self._path = t.url.decode("latin-1")
        self._fields = tuple(t.fields)
        self._pid = t.pid
        self._started = t.started
        self._t0 = t.t0
        self._status = 0
        self._resp_fields: tuple[Field, ...] = ()
        self._kept: list[bytes] | None = []
        self._size = 0

    def start(self) -> None:
        self.ctx.shadows.add(self)
        self.call_model()

    # ModelCall.

    def _send(self, up: Upstream) -> None:
        up.write(self._head)
        if self._body:
            up.write(self._body)
        up.request_sent = True

    def _rewind(self) -> bool:
        return True

    def _model_failed(self, reason: str) -> None:
        self.ctx.shadows.discard(self)
        self.ctx.stats.shadow_failed += 1

    # Sink.

    def on_interim(self, status: int, reason: bytes, fields: list[Field]) -> None:
        pass

    def on_head(self, status: int, reason: bytes, fields: list[Field]) -> bool:
        e2e, length, chunked, _, _ = headers.split(fields)
        if length is not None:
            e2e.append((b"Content-Length", length))
        self._status = status
        self._resp_fields = tuple(e2e)
        return length is None and not chunked

    def on_body(self, chunk: bytes) -> None:
        if self._kept is not None:
            self._size += len(chunk)
            if self._size <= self.ctx.capture_max:
                self._kept.append(chunk)
            else:
                self._kept = None

    def on_end(self) -> None:
        ctx = self.ctx
        seconds = self.model_done()
        ctx.shadows.discard(self)
        kept = self._kept
        ctx.report(
            Exchange(
                prediction_id=self._pid,
                method=self._method.decode(),
                path=self._path,
                request_headers=self._fields,
                request_body=None if kept is None else self._body,
                status=self._status,
                response_headers=self._resp_fields,
                response_body=None if kept is None else b"".join(kept),
                served_by="model",
                shadow=True,
                started=self._started,
                model_seconds=seconds,
                total_seconds=time.perf_counter() - self._t0,
                skip_reason="body_too_large" if kept is None else None,
                abstained=False,
            ),
            "shadow",
        )

    def on_raw(self, data: bytes) -> None:
        pass

    def pause_request(self) -> None:
        pass

    def resume_request(self) -> None:
        pass
