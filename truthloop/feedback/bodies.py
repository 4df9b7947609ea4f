"""Request bodies and query parameters, read defensively: every failure is a `ClientError`.

JSON is decoded with msgspec, which refuses NaN and Infinity literals and out-of-range numbers;
a body larger than the app's `client_max_size` is 413, a content type the endpoint does not take
415, a content coding other than gzip or deflate 415, a body that does not decode in its coding
400, an empty body 400. Every query value must be printable text (no control characters), so
nothing the store cannot hold reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
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


async def read(request: web.Request, accepted: frozenset[str]) -> bytes:
    """The raw body, once its content type and size (the app's `client_max_size`) are fine."""
    if request.content_type not in accepted:
        raise UnsupportedMediaType(
            f"content type {request.content_type!r} is not accepted here",
            [detail("Content-Type", f"expected {' or '.join(sorted(accepted))}", "unsupported")],
        )
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in CODINGS:
        raise UnsupportedEncoding(
            f"content coding {coding!r} is not accepted",
            [detail("Content-Encoding", "expected gzip, deflate or none", "unsupported")],
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(
            "request body too large",
            [detail("body", "exceeds the service's limit (--max-body)", "too_large")],
        ) from e
    except web.RequestPayloadError as e:
        if isinstance(e.__cause__, ContentEncodingError):
            raise BadRequest(
                "the body does not decode",
                [detail("Content-Encoding", f"the body is not valid {coding}", "invalid")],
            ) from e
        raise BadRequest(
            "the body was not received whole", [detail("body", str(e), "invalid")]
        ) from e
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
