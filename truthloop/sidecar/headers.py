"""Header fields across the proxy: which ones are end-to-end, and how a message is framed.

RFC 9110 §7.6.1: a proxy drops the hop-by-hop fields — `Connection` and every field it names,
`Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` — and frames each hop
itself. `Content-Length` is split out too, because the proxy writes the framing field for the next
hop (the same length, or chunked). An Upgrade/CONNECT exchange never comes through here: it is
tunnelled as bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

Field = tuple[bytes, bytes]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
"""Hop-by-hop field names (lower case), besides `proxy-*` and those `Connection` lists."""

PREDICTION_ID = b"x-prediction-id"

_KEEP, _LENGTH, _CHUNKED, _CONNECTION, _PROXY_CONNECTION, _DROP = range(6)
_ACTIONS = {name: _DROP for name in HOP_BY_HOP} | {
    b"content-length": _LENGTH,
    b"transfer-encoding": _CHUNKED,
    b"connection": _CONNECTION,
    b"proxy-connection": _PROXY_CONNECTION,
}
_USUAL_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade", b""})
_FIELD = b": ".join
CRLF = b"\r\n"

_NAMES: dict[bytes, tuple[bytes, int]] = {}
"""Field names as sent -> (lower case, action). Clients and the model send the same few names on
every message, so each is lower-cased and classified once; past `_NAMES_MAX` names (a client
making them up), the others are classified every time."""
_NAMES_MAX = 1024


def _classify(name: bytes) -> tuple[bytes, int]:
    low = name.lower()
    action = _ACTIONS.get(low)
    if action is None:
        action = _DROP if low[:6] == b"proxy-" else _KEEP
    found = low, action
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = found
    return found


def split(fields: list[Field]) -> tuple[list[Field], bytes | None, bool, set[bytes], bool]:
    """(end-to-end fields without Content-Length, its value, Transfer-Encoding seen, names kept,
    a Connection or Proxy-Connection field seen).

    `names kept` holds the lower-case names of the end-to-end fields, so a caller can ask whether
    `host` or `expect` came without another scan. The last value tells whether the parser's
    keep-alive verdict may rest on a field (as an HTTP/1.0 one must).
    """
    out: list[Field] = []
    kept: set[bytes] = set()
    length: bytes | None = None
    chunked = False
    connection: list[bytes] = []
    proxy_connection = False
    known = _NAMES.get
    for f in fields:
        low, action = known(f[0]) or _classify(f[0])
        if action == _KEEP:
            out.append(f)
            kept.add(low)
        elif action == _LENGTH:
            length = f[1]
        elif action == _CHUNKED:
            chunked = True
        elif action == _CONNECTION:
            connection.append(f[1])
        elif action == _PROXY_CONNECTION:
            proxy_connection = True
    if connection:
        listed = {t.strip().lower() for v in connection for t in v.split(b",")} - _USUAL_TOKENS
        if listed:
            out = [f for f in out if f[0].lower() not in listed]
            kept -= listed
    return out, length, chunked, kept, proxy_connection or bool(connection)


def json_content(fields: list[Field]) -> bool:
    """Whether a message with these fields has a JSON body, or says nothing of its type:
    `application/json`, or a `+json` media type (parameters aside)."""
    for name, value in fields:
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def without(fields: list[Field], name: bytes) -> list[Field]:
    """`fields` without those named `name` (lower case)."""
    return [f for f in fields if f[0].lower() != name]


def head(start_line: bytes, fields: Iterable[Field], more: bytes = b"") -> bytes:
    """A message head: `start_line`, the fields, `more` (header lines ending in CRLF, or empty)
    and the blank line. Joined in C, with no per-field formatting: it runs twice per request."""
    return b"\r\n".join([start_line, *map(_FIELD, fields), more]) + CRLF
