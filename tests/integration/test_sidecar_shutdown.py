"""`truthloop sidecar` as a real process: SIGTERM spools what the absent service did not take, and
the next process ships it; bad flags are refused with a message, not a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.sidecar_harness import Client
from tests.support.churn_model import MONITOR, Model
from tests.support.fake_feedback import FakeFeedback
from tests.support.waiting import eventually
from truthloop import cli
from truthloop.core import quantity
from truthloop.sidecar import cli as sidecar_cli

pytest_plugins = ["tests.integration.sidecar_fixtures"]

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A `python -m truthloop sidecar` child; `port` is read from what it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0

    @classmethod
    async def start(cls, *args: str, log_level: str = "WARNING") -> Process:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "TRUTHLOOP_LOG_LEVEL": log_level}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "truthloop", "sidecar", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        process = cls(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while not process.port:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(await process.stderr())
                match = re.match(r"proxy listening on http://[^:]+:(\d+)", line)
                if match:
                    process.port = int(match[1])
        return process

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()

    async def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            return await self.proc.wait()


def spooled(directory: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in directory.glob("*.ndjson"))


def sidecar_flags(model: Model, feedback_url: str, tmp_path: Path) -> list[str]:
    spec = tmp_path / "monitor.json"
    spec.write_text(json.dumps(MONITOR))
    return [
        "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
        "--model", f"http://127.0.0.1:{model.port}", "--feedback-url", feedback_url,
        "--monitor", "ml/churn", "--spool-dir", str(tmp_path / "spool"), "--spec-file", str(spec),
        "--model-version", "v9", "--drain-seconds", "5",
    ]  # fmt: skip


async def test_sigterm_spools_the_queue_and_a_new_process_ships_it(
    model: Model, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"

    def flags(feedback_url: str) -> list[str]:
        return sidecar_flags(model, feedback_url, tmp_path)

    feedback = FakeFeedback(MONITOR)  # not started: its port refuses connections
    first = await Process.start(*flags(feedback.url))
    client = Client(f"http://127.0.0.1:{first.port}")
    await client.run(range(5000))
    assert {s.status for s in client.seen.values()} == {200}
    assert await first.terminate() == 0
    assert spooled(spool) == 5000

    await feedback.start()
    second = await Process.start(*flags(feedback.url))
    await eventually(lambda: len(feedback.records) == 5000, "the spool shipped", within=20)
    assert await second.terminate() == 0
    await feedback.stop()
    assert feedback.ids() == {s.prediction_id for s in client.seen.values()}
    assert {r["model_version"] for r in feedback.records.values()} == {"v9"}
    assert feedback.resent == 0
    assert spooled(spool) == 0


async def test_a_sigterm_as_soon_as_it_says_it_listens_stops_it_like_any_other(
    model: Model, tmp_path: Path
) -> None:
    """The signal handlers are in place before the banner: a SIGTERM sent the moment the first
    line is read takes the drain path (exit 0, the shipper closed), not the signal's default."""
    feedback = FakeFeedback()
    process = await Process.start(*sidecar_flags(model, feedback.url, tmp_path), log_level="INFO")
    assert await process.terminate() == 0
    assert "stopped: 0 records shipped, 0 spooled" in await process.stderr()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--queue-bytes", "lots", "--queue-bytes 'lots': expected a size like 32Mi"),
        ("--spool-bytes", "12", "--spool-bytes '12': expected at least 1Ki"),
        ("--listen", "8080", "--listen '8080': expected HOST:PORT"),
        ("--model", "ftp://x", "--model 'ftp://x': model: only http:// is supported"),
        ("--monitor", "churn", "--monitor 'churn': expected NAMESPACE/NAME"),
        ("--drain-seconds", "-1", "--drain-seconds '-1': expected a number of seconds"),
        ("--spec-file", "/nonexistent.json", "--spec-file /nonexistent.json: No such file"),
    ],
)
def test_bad_flags_are_named_with_exit_status_2(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {
        "--feedback-url": "http://127.0.0.1:1",
        "--monitor": "ml/churn",
        "--spool-dir": str(tmp_path),
        "--admin": "127.0.0.1:0",  # never the default 0.0.0.0:9090, which may be taken
    }
    args = [arg for name, v in {**good, flag: value}.items() for arg in (name, v)]
    assert cli.main(["sidecar", *args]) == 2
    assert message in capsys.readouterr().err


def test_every_flag_reads_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text("apiVersion: truthloop.dev/v1alpha1\nkind: ModelMonitor\n")
    for name, value in {
        "LISTEN": "127.0.0.1:18080", "MODEL_URL": "http://127.0.0.1:18081",
        "ADMIN": "127.0.0.1:19090", "FEEDBACK_URL": "http://fb:8080/", "MONITOR": "ml/churn",
        "SPOOL_DIR": str(tmp_path), "SPEC_FILE": str(spec), "MODEL_VERSION": "v2",
        "QUEUE_BYTES": "8Mi", "SPOOL_BYTES": "2Gi", "CAPTURE_MAX_BYTES": "64Ki",
        "DRAIN_SECONDS": "3.5", "MODEL_TIMEOUT": "2", "TOKEN": "t0k",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"TRUTHLOOP_{name}", value)
    parsed = sidecar_cli.settings_from(cli.build_parser().parse_args(["sidecar"]))
    assert (parsed.proxy.listen_host, parsed.proxy.listen_port) == ("127.0.0.1", 18080)
    assert parsed.proxy.model_port == 18081
    assert parsed.proxy.capture_max_bytes == 64 * 1024
    assert parsed.proxy.model_timeout == 2.0
    assert parsed.admin.port == 19090
    assert parsed.follower.feedback_url == parsed.shipper.feedback_url == "http://fb:8080"
    assert parsed.follower.monitor == "ml/churn"
    assert parsed.shipper.queue_bytes == 8 * 2**20
    assert parsed.shipper.spool_bytes == 2 * 2**30
    assert parsed.shipper.token == "t0k"
    assert parsed.model_version == "v2"
    assert parsed.drain_seconds == 3.5
    assert parsed.spec == {"apiVersion": "truthloop.dev/v1alpha1", "kind": "ModelMonitor"}


def test_a_json_spec_is_read_without_loading_the_yaml_library(tmp_path: Path) -> None:
    """The operator injects the spec as JSON: PyYAML is loaded only for a YAML spec. Nor is numpy
    loaded (for the abstain's decision, only once a response is held)."""
    spec = tmp_path / "monitor.json"
    spec.write_text(json.dumps(MONITOR))
    program = (
        "import sys\n"
        "from truthloop import cli\n"
        "from truthloop.sidecar import app, cli as sidecar\n"
        "args = cli.build_parser(['sidecar']).parse_args(sys.argv[1:])\n"
        "assert sidecar.settings_from(args).spec['kind'] == 'ModelMonitor'\n"
        "print('yaml' in sys.modules, 'numpy' in sys.modules)\n"
    )
    flags = ["sidecar", "--feedback-url", "http://127.0.0.1:1", "--monitor", "ml/churn"]
    flags += ["--spool-dir", str(tmp_path), "--spec-file", str(spec)]
    run = subprocess.run(
        [sys.executable, "-c", program, *flags], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "False False"


@pytest.mark.parametrize(
    ("text", "size"),
    [("32Mi", 32 * 2**20), ("1Gi", 2**30), ("500k", 500_000), ("1.5Ki", 1536), ("4096", 4096)],
)
def test_sizes_read_like_kubernetes_quantities(text: str, size: int) -> None:
    assert quantity.parse_bytes(text) == size
