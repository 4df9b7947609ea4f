"""A model server for the proxy's tests: plain asyncio streams, behaviour chosen by the path.

It counts connections, records every request it read whole (`requests`, with how its body came)
and every request whose body was cut off (`aborted`). Paths:

- `/echo` (any other path too): 200 with the request body; `?chunked=1` answers chunked,
  `?json=1` with `Content-Type: application/json` (any answer; else `application/octet-stream`).
- `/bytes?size=N[&chunked=1]`: N deterministic bytes.
- `/status/N`: status N with no body.
- `/eof`: a body delimited by closing the connection.
- `/close-early`: promises 1000 bytes, sends 10, closes.  `/drop`: closes without an answer.
- `/drop-next`: answers, and drops the next request on the same connection unanswered.
- `/hang`: never answers (`hung_closed` counts the proxy giving up).
- `/gate`: answers once `gate` is set.  `/stream`: sends a first chunk, the rest once `gate` is set.
- `/read-later`: reads the request body only once `gate` is set, then echoes it.
- `/hop`: answers with hop-by-hop fields.  `/interim`: a 103 before the 200.
- `/prediction-id`: answers with its own X-Prediction-ID.
- `/reject-expect`: 417 without reading the body.
- Upgrade requests and CONNECT: 101 / 200, then echoes raw bytes until the end of stream.

Every request with `Expect: 100-continue` gets `100 Continue` before its body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

from tests.support import http1


def pattern(size: int) -> bytes:
    """`size` bytes of every value 0..255, in a repeating pattern."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


class EchoModel:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[http1.Message] = []
        self.aborted = 0
        self.hung_closed = 0
        self.body_progress = 0
        """Body bytes of the request being read so far (Content-Length bodies)."""
        self.heads = 0
        """Request heads read (a request counts here before its body is read)."""
        self.gate = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        drop_next = False
        try:
            while True:
                head = await http1.read_head(reader)
                if head is None:
                    return
                self.heads += 1
                msg = http1.Message(*head)
                path = urllib.parse.urlsplit(msg.target.decode()).path
                if drop_next:
                    return
                if path == "/reject-expect":
                    writer.write(
                        b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if path == "/read-later":
                    await self.gate.wait()
                if (msg.header("expect") or b"").lower() == b"100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    await self._read_body(reader, msg)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.aborted += 1
                    return
                self.requests.append(msg)
                if msg.has("upgrade") or msg.method == b"CONNECT":
                    await self._tunnel(reader, writer, msg)
                    return
                keep = await self._answer(reader, writer, msg, path)
                await writer.drain()
                if keep == "drop-next":
                    drop_next = True
                elif not keep:
                    return
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader, msg: http1.Message) -> None:
        if msg.header("transfer-encoding") is not None:
            msg.body, msg.trailers = await http1.read_chunked(reader)
            msg.chunked = True
            return
        remaining = int(msg.header("content-length") or 0)
        self.body_progress = 0
        parts = []
        while remaining:
            part = await reader.readexactly(min(remaining, 65536))
            parts.append(part)
            remaining -= len(part)
            self.body_progress += len(part)
        msg.body = b"".join(parts)

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        msg: http1.Message,
        path: str,
    ) -> bool | str:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(msg.target.decode()).query))
        head_only = msg.method == b"HEAD"
        chunked = query.get("chunked") == "1"
        media = b"application/json" if query.get("json") == "1" else b"application/octet-stream"
        fields: list[tuple[bytes, bytes]] = [(b"Content-Type", media)]
        status = 200
        body = msg.body
        if path == "/bytes":
            body = pattern(int(query["size"]))
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            body = b""
            if status == 304:
                fields.append((b"ETag", b'"v1"'))
        elif path == "/eof":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            if not head_only:
                writer.write(b"until the end")
            return False
        elif path == "/close-early":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            return False
        elif path == "/drop":
            return False
        elif path == "/hang":
            with contextlib.suppress(ConnectionError):
                await reader.read()
            self.hung_closed += 1
            return False
        elif path == "/gate":
            await self.gate.wait()
            body = b"gate"
        elif path == "/stream":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await self.gate.wait()
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            return True
        elif path == "/hop":
            fields += [
                (b"Connection", b"X-Hop-Listed"),
                (b"X-Hop-Listed", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Proxy-Authenticate", b"Basic"),
                (b"Trailer", b"X-Trailer"),
                (b"Upgrade", b"h2c"),
                (b"X-Kept", b"yes"),
            ]
        elif path == "/interim":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        elif path == "/prediction-id":
            fields.append((b"X-Prediction-ID", b"from-the-model"))
        reason = b"OK" if status == 200 else b"Other"
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(
            b"%s: %s\r\n" % f for f in fields
        )
        if status in (204, 304):
            writer.write(head + b"\r\n")
        elif chunked:
            writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            if not head_only:
                for i in range(0, len(body), 65536):
                    part = body[i : i + 65536]
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                writer.write(b"0\r\n\r\n")
        else:
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body))
            if not head_only:
                writer.write(body)
        return "drop-next" if path == "/drop-next" else True

    async def _tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msg: http1.Message
    ) -> None:
        if msg.method == b"CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n"
                % msg.header("upgrade")
            )
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
