"""An aiohttp app on 127.0.0.1 that a test can stop while clients still connect.

Python 3.11's asyncio sets up a connection it accepted just before its server closed only after
the close; that setup fails (`Server._attach`), and the accepted socket is never closed: a
ResourceWarning later, in whichever test the garbage collector happens to run. So the test owns
the listening socket, and `stop` first stops accepting, lets the connections already accepted
join the server (a few turns of the loop, no waiting on time), then shuts the runner down, which
closes them all.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

SETTLE_TURNS = 3
"""Loop turns for an accepted connection to reach the server: its task starts, its transport
attaches, its protocol hears `connection_made`."""


async def serve(runner: web.BaseRunner, port: int = 0) -> socket.socket:
    """Serve the set-up `runner` on 127.0.0.1:`port` (0: any; a stopped one's port may be reused
    at once); the listening socket, for `stop`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    return sock


async def stop(runner: web.BaseRunner, listening: socket.socket) -> None:
    """Accept nothing more on `listening`, let what was accepted arrive, then shut the runner
    down (which closes every connection, and the socket)."""
    asyncio.get_running_loop().remove_reader(listening.fileno())
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)
    await runner.cleanup()
