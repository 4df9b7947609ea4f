"""`truthloop feedback` stops at once on SIGTERM whatever its clients hold open: a state long-poll
is answered with the current state, and neither a long-poll whose client left nor an idle
kept-alive connection holds the stop (a rolling update would wait for them otherwise)."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import Command
from tests.support.feedback import monitor_body
from tests.support.waiting import eventually

STOPPED_WITHIN = 10.0
"""Seconds a stop may take here: well below the long-polls' 30 s, so a stop that waits for one
fails the test."""

STATE = "/v1/monitors/ml/churn/state"


def call(url: str, body: Any = None, method: str = "GET") -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def followers(base: str) -> int:
    """The long-polls the service says are waiting on ml/churn's state."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("truthloop_state_followers{")]
    return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Command, str]]:
    """The service as a process, with monitor ml/churn registered; (the command, its URL)."""
    command = Command(
        ["feedback", "--listen", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path}/feedback.db"]
    )
    try:
        base = command.wait_for(r"^listening on (http://\S+)$", 30)[1]
        call(base + "/v1/monitors/ml/churn", monitor_body(), method="PUT")
        yield command, base
    finally:
        command.close()


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=STOPPED_WITHIN)


def send_get(connection: socket.socket, target: str) -> None:
    connection.sendall(f"GET {target} HTTP/1.1\r\nHost: feedback\r\n\r\n".encode())


def answer(connection: socket.socket) -> tuple[int, Any]:
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, json.loads(response.read())


def stop(command: Command) -> None:
    """SIGTERM; the service exits 0 in time and says what its stop waited for."""
    command.process.send_signal(signal.SIGTERM)
    assert command.finish(within=STOPPED_WITHIN) == 0, "\n".join(command.errors)
    assert any("stopping: answered" in line for line in command.errors), command.errors


def long_poll(base: str) -> tuple[socket.socket, int]:
    """A connection whose state long-poll (30 s) the service holds waiting; (it, the version)."""
    version: int = call(base + STATE)["version"]
    poll = connect(base)
    send_get(poll, f"{STATE}?since={version}&wait=30")
    asyncio.run(eventually(lambda: followers(base) == 1, "the long-poll waiting"))
    return poll, version


def test_a_waiting_long_poll_is_answered_with_the_state_and_does_not_hold_the_stop(
    service: tuple[Command, str],
) -> None:
    command, base = service
    poll, version = long_poll(base)
    with poll:
        stop(command)
        status, state = answer(poll)
    assert status == 200
    assert (state["monitor"], state["version"]) == ("ml/churn", version)
    assert "answered 1 state long-poll(s) at once" in "\n".join(command.errors)


def test_a_long_poll_whose_client_left_does_not_hold_the_stop(
    service: tuple[Command, str],
) -> None:
    command, base = service
    poll, _ = long_poll(base)
    poll.close()
    stop(command)


def test_an_idle_kept_alive_connection_does_not_hold_the_stop(
    service: tuple[Command, str],
) -> None:
    command, base = service
    with connect(base) as idle:
        send_get(idle, "/healthz")
        assert answer(idle) == (200, {"status": "ok"})
        stop(command)
        assert idle.recv(1) == b""  # closed by the service, not left open
