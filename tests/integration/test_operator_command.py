"""`truthloop operator` as a process: it serves a namespace, reports ready, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.support.feedback import monitor_body
from tests.support.operator_harness import KUBECONFIG, WorldFactory
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytest_plugins = ["tests.support.operator_fixtures"]


async def test_the_command_serves_reports_ready_and_stops_on_sigterm(
    start_world: WorldFactory, tmp_path: Path
) -> None:
    world = await start_world(namespaces=("ml",))  # the command alone serves "team"
    admin, webhook = free_port(), free_port()
    token = tmp_path / "token"
    token.write_text("s3cret")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "truthloop", "operator",
        "--namespace", "team",
        "--feedback-url", world.service.base,
        "--token-file", str(token),
        "--admin", f"127.0.0.1:{admin}",
        "--webhook-host", "127.0.0.1", "--webhook-port", str(webhook), "--webhook-insecure",
        "--status-interval", "0.5",
        env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def ready() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{admin}/readyz") as response,
                ):
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, "the command's /readyz", within=20)
        await world.create(monitor_body(namespace="team"))
        await eventually(
            lambda: world.status("team", "churn").get("phase") == "Collecting", "served"
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{admin}/metrics") as response,
        ):
            assert "truthloop_operator_status_patches_total" in await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
