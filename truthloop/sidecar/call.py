"""A call to the model: get a connection, send, time out, retry a stale keep-alive once.

`ModelCall` is the part a client's request and a shadow request have in common, and the
`upstream.Sink` that hears the response: each subclass hears it its way, and says what to send
(`_send`) and what to do when the model fails (`_model_failed`, with a reason code from
`stats.ERROR_STATUS`).
"""

from __future__ import annotations

import abc
import asyncio
import time
from typing import Any

from truthloop.sidecar.context import Context
from truthloop.sidecar.endpoint import Endpoint
from truthloop.sidecar.upstream import Sink, Upstream


class ModelCall(Sink, abc.ABC):
    __slots__ = (
        "_connecting",
        "_retried",
        "_timer",
        "calling",
        "client",
        "ctx",
        "head_only",
        "t_model",
        "up",
    )

    def __init__(self, ctx: Context[Any], head_only: bool, client: Endpoint | None) -> None:
        self.ctx = ctx
        self.head_only = head_only
        """The request is a HEAD (its response has no body)."""
        self.client = client
        """The client connection the response is written to, if any."""
        self.up: Upstream | None = None
        self.calling = False
        """Waiting for the model's answer (a connection, or the response)."""
        self.t_model = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retried = False

    @abc.abstractmethod
    def _send(self, up: Upstream) -> None:
        """Write the request (as far as it is known) on the freshly attached `up`."""

    @abc.abstractmethod
    def _rewind(self) -> bool:
        """Make the whole request ready to be sent again; False if it is no longer in memory."""

    @abc.abstractmethod
    def _model_failed(self, reason: str) -> None:
        """The call is over without a complete response; `reason` is a key of ERROR_STATUS."""

    # The call.

    def call_model(self, fresh: bool = False) -> None:
        """Send the request on an idle pooled connection, or a new one (always, when `fresh`)."""
        ctx = self.ctx
        self.calling = True
        self.t_model = time.perf_counter()
        if ctx.model_timeout is not None:
            self._timer = ctx.loop.call_later(ctx.model_timeout, self._timed_out)
        up = None if fresh else ctx.pool.take()
        if up is None:
            self._connecting = ctx.loop.create_task(self._connect())
        else:
            self._attach(up)

    def model_done(self) -> float:
        """End the call after the response ended; returns the seconds the model took."""
        self.calling = False
        self.up = None  # already back in the pool, or closed, by the Upstream
        if self._timer is not None:
            self.cancel_timer()
        return time.perf_counter() - self.t_model

    def drop_call(self) -> None:
        """Abandon the call (the client went away): close its connection, hear nothing more."""
        self._end_call()

    def on_failed(self, reason: str, retryable: bool) -> None:
        self.up = None
        if retryable and not self._retried and self._rewind():
            self._retried = True
            self.ctx.stats.retries += 1
            self._connecting = self.ctx.loop.create_task(self._connect())
            return
        self._end_call()
        self._model_failed(reason)

    async def _connect(self) -> None:
        try:
            up = await self.ctx.pool.connect()
        except OSError:
            self._connecting = None
            self._end_call()
            self._model_failed("model_unreachable")
            return
        self._connecting = None
        if self.calling:
            self._attach(up)
        else:
            self.ctx.pool.release(up)

    def _attach(self, up: Upstream) -> None:
        self.up = up
        up.begin(self, self.head_only, self.client)
        self._send(up)
        up.deliver_early()

    def cancel_timer(self) -> None:
        """No more model_timeout for this call (a tunnel, once connected, lives on its own)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._end_call()
        self._model_failed("model_timeout")

    def _end_call(self) -> None:
        self.calling = False
        self.cancel_timer()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        up, self.up = self.up, None
        if up is not None and up.sink is self:
            up.abort()
