"""Request bodies and query parameters, read defensively: every failure is a `ClientError`.

JSON is decoded with msgspec, which refuses NaN and Infinity literals and out-of-range numbers;
a body larger than the app's `client_max_size` is 413, a content type the endpoint does not take
415, an empty body 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from truthloop.core.spec import parse_duration
from truthloop.feedback.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, detail

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})

T = TypeVar("T")

_decode = msgspec.json.Decoder().decode


async def read(request: web.Request, accepted: frozenset[str]) -> bytes:
    """The raw body, once its content type and size (the app's `client_max_size`) are fine."""
    if request.content_type not in accepted:
        raise UnsupportedMediaType(
            f"content type {request.content_type!r} is not accepted here",
            [detail("Content-Type", f"expected {' or '.join(sorted(accepted))}", "unsupported")],
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(
            "request body too large",
            [detail("body", "exceeds the service's limit (--max-body)", "too_large")],
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


def query(
    request: web.Request, name: str, parse: Callable[[str], T], default: T, expected: str
) -> T:
    """A query parameter parsed by `parse` (which raises ValueError), or `default` if absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise BadRequest(
            f"bad query parameter {name}",
            [detail(name, f"expected {expected}, got {shown!r}", "invalid")],
        ) from None


def duration(text: str) -> float:
    seconds = parse_duration(text)
    if not 0 < seconds <= 400 * 86400:
        raise ValueError(text)
    return seconds


def boolean(text: str) -> bool:
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(text)
    return value


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(text)
        return value

    return parse


def bounded_float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(text)
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text

    return parse
