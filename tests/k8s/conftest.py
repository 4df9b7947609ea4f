"""The k8s tier: tests against a real kube-apiserver, one control plane per session.

Every test here is marked `k8s` and `e2e` (`pytest -m k8s` runs only them; a plain `pytest` none,
as the e2e tier is asked for with `pytest -m e2e`) and skips,
saying how to provide the binaries, when KUBEBUILDER_ASSETS is not set (tests.support.envtest).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import envtest
from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import Chart, Operator, Service, install_chart, wait_until
from tests.support.ports import free_port

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.k8s)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for the whole session."""
    binaries = envtest.assets()
    if binaries is None:
        pytest.skip(f"no Kubernetes control plane: {envtest.HOW}")
    lacking = envtest.missing(binaries)
    if lacking:
        pytest.fail(f"{envtest.ASSETS}={binaries} lacks {', '.join(lacking)}; {envtest.HOW}")
    plane = ControlPlane.start(binaries)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> str:
    """The ModelMonitor CRD applied from crds/ and Established; its name."""
    control_plane.kubectl("apply", "--server-side", "-f", str(envtest.CRD))
    name = "modelmonitors.truthloop.dev"

    def established() -> bool:
        """Whether the CRD says Established. Not `kubectl wait`: it fails at once, rather than
        waiting, while the new CRD has no conditions yet (seen on a loaded machine)."""
        path = '{.status.conditions[?(@.type=="Established")].status}'
        done = control_plane.kubectl("get", f"crd/{name}", "-o", f"jsonpath={path}", check=False)
        return done.stdout.strip() == "True"

    wait_until(established, f"crd/{name} Established", within=30)
    return name


@pytest.fixture(scope="session")
def feedback_service(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The real feedback service, on SQLite, for the operator to register monitors with."""
    service = Service(tmp_path_factory.mktemp("feedback"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def chart(control_plane: ControlPlane, crd: str) -> Chart:
    """The chart's operator identity (ServiceAccount, RBAC) and webhooks, installed; the webhooks
    call 127.0.0.1 on `Chart.webhook_port`."""
    return install_chart(control_plane, free_port())


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    chart: Chart,
    feedback_service: Service,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    """`truthloop operator` as the chart deploys it (its RBAC, its webhooks, its arguments),
    running for the session; a test that stops it starts it again (`Operator.stopped`). At the
    end, no API call of it may have been forbidden: the chart's RBAC is enough."""
    folder = tmp_path_factory.mktemp("operator")
    running = Operator(control_plane, chart, feedback_service.url, folder)
    running.start()
    yield running
    running.stop()
    assert running.forbidden() == [], "the chart's RBAC refused the operator"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, ready for pods (its `default` ServiceAccount exists)."""
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name += "-" + secrets.token_hex(3)
    control_plane.kubectl("create", "namespace", name)
    wait_until(
        lambda: (
            control_plane.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        f"ServiceAccount {name}/default",
    )
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")
