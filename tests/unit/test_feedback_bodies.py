"""How the feedback service reads a request body it cannot take whole: a 400 naming the body."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import streams, web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import TransferEncodingError
from aiohttp.test_utils import make_mocked_request

from truthloop.feedback import bodies
from truthloop.feedback.errors import BadRequest


async def test_a_body_cut_in_its_chunked_framing_is_a_bad_request() -> None:
    # What aiohttp's pure-Python parser hands the handler when the chunked framing breaks.
    loop = asyncio.get_running_loop()
    payload = streams.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    cause = TransferEncodingError("Not enough data to satisfy transfer length header.")
    error = web.RequestPayloadError(str(cause))
    error.__cause__ = cause
    payload.set_exception(error)
    request = make_mocked_request(
        "POST", "/v1/predictions", headers={"Content-Type": "application/json"}, payload=payload
    )
    with pytest.raises(BadRequest) as refused:
        await bodies.read(request, bodies.JSON_TYPES)
    [detail] = refused.value.details
    assert (detail.field, detail.reason) == ("body", "invalid")
    assert "transfer length" in detail.message
