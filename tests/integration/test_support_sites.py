"""A test service stopped while a client connects leaks no socket (the ResourceWarning that made
operator tests fail at random, in whichever test the garbage collector ran)."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

from tests.support.feedback import FakeClock, Service, make_settings


async def test_a_service_stopped_as_a_client_connects_leaks_no_socket(tmp_path: Path) -> None:
    service = Service(make_settings(f"sqlite:///{tmp_path / 'x.db'}", FakeClock()))
    await service.start()
    port = int(service.base.rsplit(":", 1)[1])
    client = socket.create_connection(("127.0.0.1", port))
    try:
        await asyncio.sleep(0)  # the accept is under way, the connection not yet the server's
        await service.stop()
    finally:
        client.close()
    gc.collect()  # a leaked socket says so now, as an error (warnings are errors here)
