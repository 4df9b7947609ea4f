"""Sidecar injection through the real AdmissionReview: pods of a Deployment (made by the
controller manager's ReplicaSet controller) and bare pods get the native sidecar; with the
operator stopped, pods are admitted as written (fail open) and ModelMonitor writes are refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import Operator, wait_until
from tests.support.k8s_objects import (
    LABELS,
    SIDECAR,
    bare_pod,
    churn_monitor,
    deployment,
    native_sidecars,
)


@pytest.fixture
def monitored(control_plane: ControlPlane, operator: Operator, namespace: str) -> str:
    """A namespace with the churn monitor, once the operator has taken it up (its status shows a
    phase), so the webhook knows it."""
    control_plane.apply(churn_monitor(namespace))
    wait_until(
        lambda: control_plane.table("mm", "churn", "-n", namespace)[0]["PHASE"],
        "the operator's first status",
    )
    return namespace


def test_pods_of_a_deployment_get_the_native_sidecar(
    control_plane: ControlPlane, monitored: str
) -> None:
    control_plane.apply(deployment(monitored, "churn-model"))
    selector = ",".join(f"{k}={v}" for k, v in LABELS.items())

    def pods() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = control_plane.get("pods", "-n", monitored, "-l", selector)[
            "items"
        ]
        return found

    [pod] = wait_until(pods, "the ReplicaSet's pod", within=30)
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert native_sidecars(pod) == [SIDECAR]
    assert pod["metadata"]["annotations"]["truthloop.dev/injected"]


def test_a_bare_pod_gets_the_native_sidecar(control_plane: ControlPlane, monitored: str) -> None:
    control_plane.apply(bare_pod(monitored, "churn-model"))
    pod = control_plane.get("pod", "churn-model", "-n", monitored)
    assert native_sidecars(pod) == [SIDECAR]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["model"]


def test_an_injected_bare_pod_s_unchanged_manifest_applies_again(
    control_plane: ControlPlane, monitored: str
) -> None:
    """GitOps: Argo CD and Flux apply a pod's manifest again and again, client- or server-side;
    the injection changed nothing the manifest says, so neither is refused."""
    manifest = yaml.safe_dump(bare_pod(monitored, "churn-model"))
    control_plane.kubectl("apply", "-f", "-", input=manifest)
    pod = control_plane.get("pod", "churn-model", "-n", monitored)
    assert native_sidecars(pod) == [SIDECAR]
    for how in ((), ("--server-side",)):
        done = control_plane.kubectl("apply", *how, "-f", "-", input=manifest, check=False)
        assert done.returncode == 0, f"kubectl apply {' '.join(how)}: {done.stderr}"
    again = control_plane.get("pod", "churn-model", "-n", monitored)
    assert native_sidecars(again) == [SIDECAR]
    assert again["spec"]["containers"] == pod["spec"]["containers"]


def test_a_stopped_operator_fails_open_for_pods_and_closed_for_monitors(
    control_plane: ControlPlane, operator: Operator, monitored: str
) -> None:
    with operator.stopped():
        control_plane.apply(bare_pod(monitored, "admitted-as-written"))
        pod = control_plane.get("pod", "admitted-as-written", "-n", monitored)
        assert native_sidecars(pod) == []
        refused = control_plane.apply(churn_monitor(monitored, "another"), check=False)
        assert refused.returncode != 0
        assert 'failed calling webhook "validate.truthloop.dev"' in refused.stderr
        # nor does the stopped operator leave its webhook certificate's private key on disk
        assert list(operator.temp.iterdir()) == []
