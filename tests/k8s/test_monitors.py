"""ModelMonitors on a real apiserver: mistakes refused naming the field, the status in columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import wait_until
from tests.support.k8s_objects import churn_monitor

pytestmark = pytest.mark.usefixtures("operator")


def test_a_mistake_the_schema_catches_is_refused_naming_the_field(
    control_plane: ControlPlane, namespace: str
) -> None:
    body = churn_monitor(namespace, "bad")
    body["spec"]["task"] = "ranking"
    done = control_plane.apply(body, check=False)
    assert done.returncode != 0
    assert "spec.task" in done.stderr
    assert control_plane.kubectl("get", "mm", "bad", "-n", namespace, check=False).returncode != 0


def bad_rule(body: dict[str, Any]) -> None:
    body["spec"]["fallback"]["rules"][0]["when"] = "request.features.monthly_charges >"


def metric_of_another_task(body: dict[str, Any]) -> None:
    body["spec"]["alerts"][0]["metric"] = "rmse"  # regression's; the monitor is binary


@pytest.mark.parametrize(
    ("mistake", "field"),
    [(bad_rule, "spec.fallback.rules[0].when"), (metric_of_another_task, "spec.alerts[0].metric")],
)
def test_a_mistake_only_the_webhook_catches_is_refused_naming_the_field(
    control_plane: ControlPlane,
    namespace: str,
    mistake: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    body = churn_monitor(namespace, "bad")
    mistake(body)
    done = control_plane.apply(body, check=False)
    assert done.returncode != 0
    assert 'admission webhook "validate.truthloop.dev" denied' in done.stderr
    assert field in done.stderr
    assert control_plane.kubectl("get", "mm", "bad", "-n", namespace, check=False).returncode != 0


def test_kubectl_get_shows_the_status_columns(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(churn_monitor(namespace))

    def row() -> dict[str, str]:
        [columns] = control_plane.table("mm", "churn", "-n", namespace)
        return columns if columns["PHASE"] else {}

    columns = wait_until(row, "the operator's first status", within=5)
    assert columns["MODEL"] == "churn"
    assert columns["PHASE"] == "Collecting"
    assert columns["FALLBACK"] == "false"
    assert columns["SYNCED"]
