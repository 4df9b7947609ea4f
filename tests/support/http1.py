"""A deliberately plain HTTP/1.1 reader and writer over asyncio streams, for the proxy's tests.

It is written from RFC 9112 independently of httptools, so the proxy's framing is checked by a
second implementation: `Message.chunked` tells how the body came on the wire, `read_message`
refuses what is malformed (ValueError) and raises IncompleteReadError on a cut body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

Fields = list[tuple[bytes, bytes]]


@dataclass
class Message:
    start: bytes
    """The request line or status line."""
    fields: Fields
    body: bytes = b""
    chunked: bool = False
    """The body came chunked."""
    trailers: Fields = field(default_factory=list)
    interim: list[Message] = field(default_factory=list)
    """1xx responses that came before this one."""

    def header(self, name: str) -> bytes | None:
        """The first field named `name` (case-insensitive), or None."""
        wanted = name.lower().encode()
        return next((v for n, v in self.fields if n.lower() == wanted), None)

    def has(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def status(self) -> int:
        return int(self.start.split(b" ", 2)[1])

    @property
    def method(self) -> bytes:
        return self.start.split(b" ", 1)[0]

    @property
    def target(self) -> bytes:
        return self.start.split(b" ", 2)[1]


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, Fields] | None:
    """(start line, fields), or None at a clean end of stream before any byte."""
    start = await reader.readline()
    if not start:
        return None
    if not start.endswith(b"\r\n"):
        raise asyncio.IncompleteReadError(start, None)
    fields: Fields = []
    while True:
        line = await reader.readline()
        if not line.endswith(b"\r\n"):
            raise asyncio.IncompleteReadError(line, None)
        if line == b"\r\n":
            return start[:-2], fields
        name, sep, value = line[:-2].partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line {line!r}")
        fields.append((name, value.strip()))


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, Fields]:
    parts = []
    while True:
        size_line = await reader.readline()
        if not size_line.endswith(b"\r\n"):
            raise asyncio.IncompleteReadError(size_line, None)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
    trailers: Fields = []
    while (line := await reader.readline()) != b"\r\n":
        if not line.endswith(b"\r\n"):
            raise asyncio.IncompleteReadError(line, None)
        name, _, value = line[:-2].partition(b":")
        trailers.append((name, value.strip()))
    return b"".join(parts), trailers


async def read_message(
    reader: asyncio.StreamReader, *, request: bool, bodyless: bool = False
) -> Message | None:
    """The next request (or final response, 1xx collected in `interim`); None at a clean EOF.

    A response without Content-Length or chunked framing is read to the end of the stream.
    """
    interim: list[Message] = []
    while True:
        head = await read_head(reader)
        if head is None:
            if interim:
                raise asyncio.IncompleteReadError(b"", None)
            return None
        msg = Message(*head)
        if request or not 100 <= msg.status < 200:
            break
        interim.append(msg)
    msg.interim = interim
    te = msg.header("transfer-encoding")
    length = msg.header("content-length")
    if te is not None and length is not None:
        raise ValueError("both Transfer-Encoding and Content-Length")
    if bodyless or (not request and msg.status in (204, 304)):
        return msg
    if te is not None:
        if te.lower() != b"chunked":
            raise ValueError(f"unexpected Transfer-Encoding {te!r}")
        msg.body, msg.trailers = await read_chunked(reader)
        msg.chunked = True
    elif length is not None:
        msg.body = await reader.readexactly(int(length))
    elif not request:
        msg.body = await reader.read()
    return msg


def request(
    method: str,
    target: str,
    fields: Fields | None = None,
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
    version: str = "1.1",
) -> bytes:
    """The bytes of one request: Host added, Content-Length for `body`, or chunked `chunks`."""
    fields = list(fields or [])
    names = {n.lower() for n, _ in fields}
    if b"host" not in names:
        fields.insert(0, (b"Host", b"test"))
    if chunks is not None:
        fields.append((b"Transfer-Encoding", b"chunked"))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    else:
        if body or method in ("POST", "PUT"):
            fields.append((b"Content-Length", b"%d" % len(body)))
        payload = body
    head = f"{method} {target} HTTP/{version}\r\n".encode()
    return head + b"".join(b"%s: %s\r\n" % f for f in fields) + b"\r\n" + payload
