"""A body less its `Content-Encoding`, for capture (and the payload logger's events) to read the
JSON inside.

MLServer (as any server behind FastAPI's GZipMiddleware) gzips an answer of 500 bytes or more for
a client that accepts gzip, and nearly every HTTP client says it does: a 40-row v2 answer reached
capture as gzip and was counted `not_json`. The proxy passes the bytes on untouched; only the
copy capture reads is inflated, within the proxy's `capture_max_bytes`, so a small compressed
body cannot grow past what an uncompressed one may be.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS
_CODINGS = {b"gzip": (_GZIP,), b"x-gzip": (_GZIP,), b"deflate": (_ZLIB, _RAW)}
"""Each coding's zlib window bits, tried in order: `deflate` is zlib-wrapped by RFC 9110, raw
by some servers."""

TOO_LARGE = "body_too_large"
UNREADABLE = "content_encoding"
"""The skip reasons: a body that inflates past the limit, or one in a coding not read here (br,
zstd) or not valid in its own."""


def decoded(body: bytes, headers: Iterable[tuple[bytes, bytes]], limit: int) -> bytes | str:
    """`body` with the codings its `Content-Encoding` fields name undone (last applied first),
    or the reason it cannot be: TOO_LARGE, UNREADABLE. No such field: `body` itself."""
    codings = [
        token
        for name, value in headers
        if name.lower() == b"content-encoding"
        for token in (part.strip().lower() for part in value.split(b","))
        if token and token != b"identity"
    ]
    for coding in reversed(codings):
        if coding not in _CODINGS:
            return UNREADABLE
        inflated = inflate(body, coding, limit)
        if isinstance(inflated, str):
            return inflated
        body = inflated
    return body


def inflate(body: bytes, coding: bytes, limit: int) -> bytes | str:
    """`body` inflated from `coding` (`gzip`, `x-gzip`, `deflate`), or TOO_LARGE past `limit`
    bytes, or UNREADABLE (not valid in that coding, or cut short)."""
    for wbits in _CODINGS[coding]:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            return TOO_LARGE
        if inflater.eof and not inflater.unconsumed_tail:
            return out
    return UNREADABLE
