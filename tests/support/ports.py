"""A free TCP port on 127.0.0.1, for a server that must keep its port across a restart or be
named before it starts (a port the OS picks at bind time cannot be)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now: bound, read and released (another may take it meanwhile;
    the tests accept that small race)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
