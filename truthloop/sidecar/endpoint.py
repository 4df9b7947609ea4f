"""The write side both ends of the proxy share: TCP_NODELAY, corking, and what is still unsent.

While one read is being parsed, everything it makes the proxy write to the other end (a head and a
body chunk, say) is corked and goes out in one `writelines` — one send instead of several.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
from typing import cast


class Endpoint(asyncio.Protocol):
    __slots__ = ("_wbuf", "corked", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.corked = False
        """Set (a plain attribute, not a method call: twice per request) by whoever parses a read
        that writes here; `uncork` sends what was written meanwhile."""
        self._wbuf: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        if self.corked:
            self._wbuf.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def uncork(self) -> None:
        self.corked = False
        if self._wbuf:
            data, self._wbuf = self._wbuf, []
            if self.transport is not None and not self.transport.is_closing():
                self.transport.writelines(data)

    def unsent(self) -> int:
        """Bytes written here that the peer has not taken yet: in the transport's buffer, and in
        the kernel's send queue (sent and not acknowledged, or not sent yet) where the system
        tells it (Linux). The kernel's queue can hold megabytes, so a reader's progress shows
        there long before the transport's buffer shrinks."""
        transport = self.transport
        if transport is None:
            return 0
        size = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            except OSError:
                return size
            size += struct.unpack("i", queued)[0]
        return size
