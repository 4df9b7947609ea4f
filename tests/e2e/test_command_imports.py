"""Each `truthloop` subcommand loads only the libraries it runs on: the sidecar, which sits in
every model pod, never pays for the operator's (kopf, kubernetes) or the demo's, nor for aiohttp
(its admin port, shipping and state follower run on httptools, as its proxy does), nor for CEL
(cel-python, lark) while its monitor has no fallback rules; `truthloop --help` and `validate`,
a new user's first commands, load none of the services' libraries (kopf and kubernetes alone
took about 3 s).

The real command is started with `PYTHONPROFILEIMPORTTIME`, so its standard error lists every
module the process imported, up to the moment it serves and until it stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.processes import Command
from tests.e2e.test_run import up
from tests.support.feedback import monitor_body
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
OTHER_ROLES = {"kopf", "kubernetes", "numpy", "cryptography", "pydantic", "rich", "asyncpg"}
"""What the operator, the demo and the PostgreSQL store import; the sidecar needs none of it."""
AIOHTTP = {"aiohttp", "multidict", "yarl", "frozenlist", "aiosignal", "aiohappyeyeballs"}
"""aiohttp and the packages only it loads, which the services use and the sidecar does not."""
CEL = {"celpy", "lark"}


def imported(stderr: list[str]) -> set[str]:
    """Top-level packages named in `-X importtime` lines (`import time: self | total | name`)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in stderr
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("rules", [True, False], ids=["with rules", "without rules"])
def test_a_started_sidecar_has_imported_none_of_the_other_roles_libraries_nor_aiohttp(
    tmp_path: Path, rules: bool
) -> None:
    spec = tmp_path / "monitor.json"
    body = monitor_body() if rules else monitor_body(fallback={"recoverAfter": "2m"})
    spec.write_text(json.dumps(body))
    args = [
        "sidecar",
        "--listen", "127.0.0.1:0",
        "--admin", "127.0.0.1:0",
        "--model", "http://127.0.0.1:9",
        "--feedback-url", "http://127.0.0.1:9",
        "--monitor", "ml/churn",
        "--spool-dir", str(tmp_path / "spool"),
        "--spec-file", str(spec),
    ]  # fmt: skip
    command = Command(args, env={"PYTHONPROFILEIMPORTTIME": "1", "TRUTHLOOP_LOG_LEVEL": "WARNING"})
    try:
        admin = command.wait_for(r"^admin listening on (http://\S+)", within=60)[1]
        health = admin + "/healthz"  # serving: its SIGTERM handler is in place
        asyncio.run(eventually(lambda: up(health), "the sidecar's /healthz", within=60))
        os.kill(command.process.pid, signal.SIGTERM)
        assert command.finish(within=60) == 0, "\n".join(command.errors[-20:])
    finally:
        command.close()
    modules = imported(command.errors)
    assert {"truthloop", "httptools"} <= modules, "the profile lists what was imported"
    assert modules & OTHER_ROLES == set()
    assert modules & AIOHTTP == set()
    assert modules & CEL == (CEL if rules else set())


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["--help"], "run the Kubernetes operator"),
        (["validate", "-f", str(ROOT / "examples" / "monitor-churn.yaml")], "ok ModelMonitor"),
    ],
    ids=["--help", "validate"],
)
def test_help_and_validate_import_none_of_the_services_libraries(
    args: list[str], printed: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "truthloop", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert printed in done.stdout
    modules = imported(done.stderr.splitlines())
    assert "truthloop" in modules, "the profile lists what was imported"
    assert modules & (OTHER_ROLES | AIOHTTP) == set()
