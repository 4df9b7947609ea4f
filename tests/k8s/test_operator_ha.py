"""Operator HA on a real apiserver: two replicas as the chart runs them share the Lease; kill -9
the leader and the other takes over within seconds, while both serve the webhooks."""

from __future__ import annotations

import json
import os
import signal
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import NAMESPACE, Chart, Operator, Service, wait_until
from tests.support.k8s_objects import SIDECAR, bare_pod, churn_monitor, native_sidecars
from tests.support.pods import SELECTED_POD, review
from tests.support.ports import free_port

LEASE = "truthloop-operator"
QUICK = {"--status-interval": "1", "--lease-duration": "4"}
"""A status written every second and a 4 s Lease, so a takeover shows within seconds."""


def test_a_killed_leader_is_replaced_and_webhooks_are_served_throughout(
    control_plane: ControlPlane,
    operator: Operator,
    feedback_service: Service,
    namespace: str,
    tmp_path: Path,
) -> None:
    args = [a for a in operator.args if a.split("=", 1)[0] not in QUICK]
    args += [f"{flag}={value}" for flag, value in QUICK.items()]
    quick = Chart(args, operator.webhook_port)
    with operator.stopped():  # the session's operator releases the Lease; it is back after
        first = Operator(
            control_plane, quick, feedback_service.url, tmp_path / "first", free_port()
        )
        # the webhook configurations call the session operator's port: the second serves it
        second = Operator(control_plane, quick, feedback_service.url, tmp_path / "second")
        try:
            first.start()
            wait_until(lambda: leads(first), "the first replica leads")
            second.start()
            control_plane.apply(churn_monitor(namespace))
            wait_until(lambda: synced(control_plane, namespace), "the leader's first status")
            assert leads(first)
            assert not leads(second)
            assert injects(first, namespace), "the leader's webhook server"
            control_plane.apply(bare_pod(namespace, "before"))
            assert sidecars(control_plane, namespace, "before") == [SIDECAR], "the follower's"

            killed, process = holder(control_plane), first.process
            assert process is not None
            os.kill(process.process.pid, signal.SIGKILL)
            process.process.wait()
            control_plane.apply(bare_pod(namespace, "meanwhile"))
            assert sidecars(control_plane, namespace, "meanwhile") == [SIDECAR]
            wait_until(lambda: leads(second), "the second replica takes over", within=20)
            assert holder(control_plane) not in ("", killed)
            taken_over = synced(control_plane, namespace)
            wait_until(
                lambda: synced(control_plane, namespace) > taken_over,
                "the new leader's status writes",
            )
            control_plane.apply(bare_pod(namespace, "after"))
            assert sidecars(control_plane, namespace, "after") == [SIDECAR]
        finally:
            second.stop()
            first.stop()
        assert first.forbidden() + second.forbidden() == [], "the chart's RBAC refused a call"


def leads(replica: Operator) -> bool:
    """Whether the replica's /metrics says it holds the Lease."""
    try:
        with urllib.request.urlopen(f"{replica.admin_url}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return False
    return "truthloop_operator_leader 1.0" in text.splitlines()


def injects(replica: Operator, namespace: str) -> bool:
    """Whether the replica's webhook server gives a selected pod the sidecar (its certificate
    is the one the apiserver verifies for the other replica: not verified again here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        f"https://127.0.0.1:{replica.webhook_port}/inject-pods",
        data=json.dumps(review(SELECTED_POD, namespace=namespace)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5, context=context) as answer:
        return "patch" in json.loads(answer.read())["response"]


def holder(plane: ControlPlane) -> str:
    lease = plane.get("lease", LEASE, "-n", NAMESPACE)
    return str(lease["spec"].get("holderIdentity") or "")


def synced(plane: ControlPlane, namespace: str) -> str:
    """The monitor's status.lastSyncTime ("" before the first status)."""
    status = plane.get("mm", "churn", "-n", namespace).get("status") or {}
    return str(status.get("lastSyncTime") or "")


def sidecars(plane: ControlPlane, namespace: str, name: str) -> list[str]:
    return native_sidecars(plane.get("pod", name, "-n", namespace))
