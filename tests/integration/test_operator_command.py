"""`truthloop operator` as a process: it serves a namespace, reports ready, and stops on SIGTERM."""

from __future__ import annotations

from pathlib import Path

from tests.support.feedback import monitor_body
from tests.support.operator_harness import WorldFactory
from tests.support.waiting import eventually

pytest_plugins = ["tests.support.operator_fixtures"]


async def test_the_command_serves_reports_ready_and_stops_on_sigterm(
    start_world: WorldFactory, tmp_path: Path
) -> None:
    world = await start_world(namespaces=("ml",))  # the command alone serves "team"
    command = await world.start_command(tmp_path, "--namespace", "team", "--lease-name", "team")
    try:
        await eventually(command.ready, "the command's /readyz", within=20)
        await world.create(monitor_body(namespace="team"))
        await eventually(
            lambda: world.status("team", "churn").get("phase") == "Collecting", "served"
        )
        _, metrics = await command.admin("/metrics")
        assert "truthloop_operator_status_patches_total" in metrics
    finally:
        code = await command.stop()
    stderr = command.log.read_text()
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr
