"""`truthloop run` in front of the example churn model, both real processes: traffic through it is
captured, feedback joins it (both join styles and a vote, sent by examples/send_feedback.py and by
the curl line it prints), the metrics API shows it, and SIGTERM leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from truthloop.examples import send_feedback

from tests.e2e.processes import Command, group_members
from tests.support.ports import free_port
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = {"tenure": 2, "monthly_charges": 99.5, "contract": "month-to-month", "support_calls": 4}


def text(url: str, body: Any = None, headers: dict[str, str] | None = None) -> str:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    return json.loads(text(url, body, headers))


def up(url: str) -> bool:
    try:
        text(url)
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


def labeled(url: str, count: int) -> dict[str, Any] | None:
    """The monitor's metrics at `url` once `count` predictions are labeled."""
    metrics: dict[str, Any] = call(url)
    return metrics if metrics["labeled"] >= count else None


def run_churn(model: str, tmp_path: Path) -> Command:
    """`truthloop run` with the example churn monitor in front of `model`, every port picked
    free, its temporary directory in `tmp_path`."""
    args = ["run", "-f", str(ROOT / "examples" / "monitor-churn.yaml"), "--model-url", model]
    for flag in ("--listen", "--feedback-listen", "--admin"):
        args += [flag, "127.0.0.1:0"]
    return Command(args, env={"TMPDIR": str(tmp_path)})


@pytest.fixture
def model() -> Iterator[str]:
    """The example churn model, as its module docstring says to run it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "truthloop.examples.churn_model", "--port", str(port)],
        start_new_session=True,
    )
    try:
        health = f"http://127.0.0.1:{port}/healthz"
        asyncio.run(eventually(lambda: up(health), "the model's /healthz", within=30))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_run_captures_joins_and_measures(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_churn(model, tmp_path)
    try:
        traffic = run.wait_for(r"^  traffic   (http://\S+)  ", 30)[1]
        feedback = run.wait_for(r"^  feedback  (http://\S+)  .*removed at exit\)$", 10)[1]
        admin = run.wait_for(r"^  admin     (http://\S+)  ", 10)[1]
        printed_actual = shlex.split(run.wait_for(r"^curl -s \S+/v1/feedback .*", 10)[0])
        run.wait_for(r"^Ctrl-C stops\.$", 10)

        # The example sender: three predictions through the sidecar, labeled three ways.
        status = send_feedback.main(["--sidecar", traffic, "--feedback", feedback])
        out = capsys.readouterr().out
        assert status == 0, out
        assert out.count("by model)") == 3

        # The curl line printed for feedback works as printed, for the customer it names.
        headers = {"Content-Type": "application/json", "X-Entity-ID": "customer-42"}
        call(traffic + "/predict", {"features": CUSTOMER}, headers)
        actual = json.loads(printed_actual[-1])
        assert actual["entity_id"] == "customer-42"
        answer = call(printed_actual[2], actual, {"Content-Type": "application/json"})
        assert answer["matched"] + answer["pending"] == 1

        base = f"{feedback}/v1/monitors/default/churn"
        metrics = asyncio.run(eventually(lambda: labeled(base + "/metrics", 4), "4 labeled"))
        assert (metrics["samples"], metrics["labeled"]) == (4, 4)
        rows = [json.loads(line) for line in text(base + "/dataset").splitlines()]
        labels = {row["entity_id"].rsplit("-", 1)[-1]: row for row in rows}
        assert {
            key: (row["actual"], row["vote"], row["correct"]) for key, row in labels.items()
        } == {
            "a": (1, None, True),  # by prediction ID
            "b": (0, None, True),  # by entity ID: a loyal customer stayed
            "c": (None, "down", False),  # the reviewer's vote
            "42": (1, None, True),  # customer-42, by the printed curl line
        }
        assert "truthloop_sidecar_records_shipped_total 4.0" in text(admin + "/metrics")

        run.process.send_signal(signal.SIGTERM)
        assert run.finish(within=30) == 0, "\n".join(run.errors)
        assert group_members(run.process.pid) == []
        assert os.listdir(tmp_path) == []
    finally:
        run.close()


def test_run_prints_events_as_they_happen(tmp_path: Path) -> None:
    """After its banner, `run` tells what happens: the model unreachable (at the start, and each
    request it fails), the fallback engaged and released, and the phase as it changes."""
    run = run_churn(f"http://127.0.0.1:{free_port()}", tmp_path)  # nothing listens there
    try:
        traffic = run.wait_for(r"^  traffic   (http://\S+)  ", 30)[1]
        feedback = run.wait_for(r"^  feedback  (http://\S+)  ", 10)[1]
        run.wait_for(r"^Ctrl-C stops\.$", 10)
        run.wait_for(r"^\d\d:\d\d:\d\d the model does not accept connections", 30)

        with pytest.raises(urllib.error.HTTPError) as failed:
            call(traffic + "/predict", {"features": CUSTOMER}, {"X-Entity-ID": "c-1"})
        assert failed.value.code == 502
        failed.value.close()
        run.wait_for(r"^\d\d:\d\d:\d\d model error model_unreachable: 1 so far$", 30)

        fallback = f"{feedback}/v1/monitors/default/churn/fallback"
        json_type = {"Content-Type": "application/json"}
        call(fallback, {"mode": "engaged"}, json_type)
        run.wait_for(r"^\d\d:\d\d:\d\d phase FallbackActive \(was Collecting\)$", 30)
        run.wait_for(r"^\d\d:\d\d:\d\d fallback engaged \(manual\): the rules answer", 30)
        call(fallback, {"mode": "disengaged"}, json_type)
        run.wait_for(r"^\d\d:\d\d:\d\d phase Collecting \(was FallbackActive\)$", 30)
        run.wait_for(r"^\d\d:\d\d:\d\d fallback released: the model answers again$", 30)

        run.process.send_signal(signal.SIGTERM)
        assert run.finish(within=30) == 0, "\n".join(run.errors)
    finally:
        run.close()
