"""One default port per role, the same in every command, in the operator's defaults and in the
chart: the sidecar :8080 (its admin :9090), the feedback service :8081, the operator's admin
:8090. `truthloop feedback` and `truthloop run` put the service at the same address, and a
sidecar started beside them does not take the service for its model."""

from __future__ import annotations

import argparse
import os
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from truthloop import cli
from truthloop.operator.settings import FeedbackSettings, SidecarSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "truthloop"
SIDECAR, SIDECAR_ADMIN, FEEDBACK, OPERATOR_ADMIN = 8080, 9090, 8081, 8090


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, int]]:
    """command → flag → the port of its default (this process's TRUTHLOOP_* variables unset)."""
    for variable in [v for v in os.environ if v.startswith("TRUTHLOOP_")]:
        monkeypatch.delenv(variable)
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {
            action.option_strings[0]: int(port)
            for action in command._actions
            if action.option_strings and (port := str(action.default).rpartition(":")[2]).isdigit()
        }
        for name, command in commands.choices.items()
    }


def url_port(url: str) -> int | None:
    return urllib.parse.urlsplit(url).port


def test_each_role_has_one_default_port_in_every_command(
    ports: dict[str, dict[str, int]],
) -> None:
    assert ports["feedback"]["--listen"] == ports["run"]["--feedback-listen"] == FEEDBACK
    assert ports["sidecar"]["--listen"] == ports["run"]["--listen"] == SIDECAR
    assert ports["sidecar"]["--admin"] == ports["run"]["--admin"] == SIDECAR_ADMIN
    assert ports["operator"]["--admin"] == OPERATOR_ADMIN
    assert ports["sidecar"]["--model"] not in {SIDECAR, SIDECAR_ADMIN, FEEDBACK, OPERATOR_ADMIN}
    assert url_port(FeedbackSettings().url) == url_port(SidecarSettings().feedback_url) == FEEDBACK
    assert ports["reference"]["--feedback-url"] == FEEDBACK


def test_the_chart_serves_the_feedback_service_on_its_port() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["feedback"]["service"]["port"] == FEEDBACK
    deployment = (CHART / "templates" / "feedback-deployment.yaml").read_text()
    assert re.findall(r"--listen=0\.0\.0\.0:(\d+)", deployment) == [str(FEEDBACK)]
    assert re.findall(r"containerPort: (\d+)", deployment) == [str(FEEDBACK)]
