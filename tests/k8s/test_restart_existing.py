"""restartExisting on a real apiserver: a Deployment whose pod predates its monitor is rolled
once per monitor and spec generation, also when the operator restarts mid-rollout."""

from __future__ import annotations

import datetime
from typing import Any

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import Operator, wait_until
from tests.support.k8s_objects import churn_monitor, deployment

RESTARTED_FOR = "truthloop.dev/restarted-for"
RESTARTED_AT = "truthloop.dev/restartedAt"


def now() -> str:
    """The time as the apiserver writes timestamps (to the second)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_deployment_is_rolled_once_also_across_an_operator_restart(
    control_plane: ControlPlane, operator: Operator, namespace: str
) -> None:
    control_plane.apply(deployment(namespace, "churn-model"))
    (older,) = wait_until(
        lambda: control_plane.get("pods", "-n", namespace)["items"], "the Deployment's pod", 30
    )
    born = older["metadata"]["creationTimestamp"]
    wait_until(lambda: now() > born, "the monitor a second younger than the pod")
    monitor = churn_monitor(namespace)
    monitor["spec"]["restartExisting"] = True
    control_plane.apply(monitor)

    def rolled() -> dict[str, Any] | None:
        found: dict[str, Any] = control_plane.get("deployment", "churn-model", "-n", namespace)
        return found if RESTARTED_FOR in found["metadata"].get("annotations", {}) else None

    first = wait_until(rolled, "the Deployment rolled", within=30)
    uid = control_plane.get("mm", "churn", "-n", namespace)["metadata"]["uid"]
    assert first["metadata"]["annotations"][RESTARTED_FOR] == f"{uid}/1"
    stamp = first["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    with operator.stopped():
        stopped_at = now()
    # No kubelet: the rolled pod never becomes ready, so the older one stays, and the restarted
    # operator finds a pod that predates the monitor, as after any restart mid-rollout. It has
    # looked at it once it has written the monitor's status.
    wait_until(
        lambda: (
            control_plane.get("mm", "churn", "-n", namespace)["status"]["lastSyncTime"] > stopped_at
        ),
        "a status written by the restarted operator",
        within=60,
    )
    assert len(control_plane.get("pods", "-n", namespace)["items"]) == 2
    later = control_plane.get("deployment", "churn-model", "-n", namespace)
    assert later["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == stamp
    assert later["metadata"]["generation"] == first["metadata"]["generation"]
