"""Request bodies and query parameters, read defensively: every failure is a `ClientError`.

JSON is decoded with msgspec, which refuses NaN and Infinity literals and out-of-range numbers;
a body larger than the app's `client_max_size` is 413, a content type the endpoint does not take
415, a content coding other than gzip or deflate 415, a body that does not decode in its coding
400, an empty body 400. Every query value must be printable text (no control characters), so
nothing the store cannot hold reaches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from truthloop.core import records
from truthloop.core.spec import MAX_WINDOW, parse_duration
from truthloop.feedback.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedEncoding,
    UnsupportedMediaType,
    detail,
)

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})

CODINGS = frozenset({"", "identity", "gzip", "deflate"})
"""Content codings aiohttp decodes (brotli and zstd only with optional packages, so not here)."""

T = TypeVar("T")
Parse = Callable[[str], T]
"""Parses a query value; raises ValueError when it cannot."""

_decode = msgspec.json.Decoder().decode


STREAM_CHUNK = 256 * 1024
"""Bytes a streamed body is handed on in (fewer, larger pieces: each may cross to a thread)."""


def _accept(request: web.Request, accepted: frozenset[str]) -> str:
    """The body's content coding, once it and the content type are ones the endpoint takes."""
    if request.content_type not in accepted:
        raise UnsupportedMediaType(
            f"content type {request.content_type!r} is not accepted here",
            [detail("Content-Type", f"expected {' or '.join(sorted(accepted))}", "unsupported")],
        )
    return _coding(request)


def _coding(request: web.Request) -> str:
    """The body's content coding, once it is one aiohttp decodes."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in CODINGS:
        raise UnsupportedEncoding(
            f"content coding {coding!r} is not accepted",
            [detail("Content-Encoding", "expected gzip, deflate or none", "unsupported")],
        )
    return coding


async def payload(request: web.Request, limit: int) -> bytes:
    """A body of any content type (a CloudEvent's data is in its sender's), decoded, at most
    `limit` bytes (413 past it, whatever the app's `client_max_size`); it may be empty."""
    coding = _coding(request)
    too_large = PayloadTooLarge(
        "request body too large",
        [detail("body", f"exceeds the limit of {limit} bytes", "too_large")],
    )
    if request.content_length is not None and request.content_length > limit and not coding:
        raise too_large
    size = 0
    parts = []
    try:
        async for data in request.content.iter_any():
            size += len(data)
            if size > limit:
                raise too_large
            parts.append(data)
    except web.RequestPayloadError as e:
        raise _unreceived(e, coding) from e
    return b"".join(parts)


def stream(
    request: web.Request, accepted: Mapping[str, T], limit: int
) -> tuple[T, AsyncIterator[bytes]]:
    """A body too large to hold (a reference data set): what its content type maps to in
    `accepted`, and its bytes as they arrive, decoded, in pieces of about `STREAM_CHUNK`.

    Bounded by `limit` (not the app's `client_max_size`, which only `read` applies): a declared
    `Content-Length` above it is refused at once, a body that grows past it while it streams
    raises `PayloadTooLarge` from the iterator. A body that does not decode, or breaks off,
    raises `BadRequest` from it; an empty one too."""
    coding = _accept(request, frozenset(accepted))
    too_large = PayloadTooLarge(
        "request body too large",
        [detail("body", f"exceeds the service's limit of {limit} bytes", "too_large")],
    )
    if request.content_length is not None and request.content_length > limit and not coding:
        raise too_large

    async def pieces() -> AsyncIterator[bytes]:
        size = 0
        pending = bytearray()
        try:
            async for data in request.content.iter_any():
                size += len(data)
                if size > limit:
                    raise too_large
                pending += data
                if len(pending) >= STREAM_CHUNK:
                    yield bytes(pending)
                    pending.clear()
        except web.RequestPayloadError as e:
            raise _unreceived(e, coding) from e
        if not size:
            raise BadRequest("empty request body", [detail("body", "is empty", "missing")])
        if pending:
            yield bytes(pending)

    return accepted[request.content_type], pieces()


def _unreceived(error: web.RequestPayloadError, coding: str) -> BadRequest:
    """A body that does not decode in its coding, or was not received whole."""
    if isinstance(error.__cause__, ContentEncodingError):
        return BadRequest(
            "the body does not decode",
            [detail("Content-Encoding", f"the body is not valid {coding}", "invalid")],
        )
    return BadRequest("the body was not received whole", [detail("body", str(error), "invalid")])


async def read(request: web.Request, accepted: frozenset[str]) -> bytes:
    """The raw body, once its content type and size (the app's `client_max_size`) are fine."""
    coding = _accept(request, accepted)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(
            "request body too large",
            [detail("body", "exceeds the service's limit (--max-body)", "too_large")],
        ) from e
    except web.RequestPayloadError as e:
        raise _unreceived(e, coding) from e
    if not body.strip():
        raise BadRequest("empty request body", [detail("body", "is empty", "missing")])
    return body


def decode_json(body: bytes, field: str = "body", index: int | None = None) -> Any:
    try:
        return _decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
        raise BadRequest(
            "request body is not valid JSON", [detail(field, str(e), "invalid_json", index)]
        ) from None


async def json_body(request: web.Request) -> Any:
    return decode_json(await read(request, JSON_TYPES))


def query(request: web.Request, name: str, parse: Parse[T], default: T, expected: str) -> T:
    """A query parameter parsed by `parse`, or `default` if absent; a value that is not
    printable text is refused before `parse` sees it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        if not raw.isprintable():
            raise ValueError(raw)
        return parse(raw)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise BadRequest(
            f"bad query parameter {name}",
            [detail(name, f"expected {expected}, got {shown!r}", "invalid")],
        ) from None


def identifier(max_length: int) -> Parse[str]:
    """An identifier as records name them (`records.identifier_problem`)."""

    def parse(text: str) -> str:
        if records.identifier_problem(text, max_length):
            raise ValueError(text)
        return text

    return parse


def duration(text: str) -> float:
    """A window or a step: longer than 0s and at most the longest window a spec may have."""
    seconds = parse_duration(text)
    if not 0 < seconds <= MAX_WINDOW:
        raise ValueError(text)
    return seconds


def timestamp(text: str) -> float:
    """A time: RFC 3339 with its offset (`2026-01-01T00:00:00Z`), or epoch seconds."""
    try:
        seconds = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(text) from None
        seconds = moment.timestamp()
    if not 0 <= seconds < 2**40:  # also refuses nan
        raise ValueError(text)
    return seconds


def boolean(text: str) -> bool:
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(text)
    return value


def bounded_int(lo: int, hi: int) -> Parse[int]:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(text)
        return value

    return parse


def bounded_float(lo: float, hi: float) -> Parse[float]:
    def parse(text: str) -> float:
        value = float(text)
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(text)
        return value

    return parse


def choice(*options: str) -> Parse[str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text

    return parse
