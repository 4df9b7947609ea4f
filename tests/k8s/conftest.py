"""The k8s tier: tests against a real kube-apiserver, one control plane per session.

Every test here is marked `k8s` (`pytest -m k8s` runs only them, `-m 'not k8s'` none) and skips,
saying how to provide the binaries, when KUBEBUILDER_ASSETS is not set (tests.support.envtest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import envtest
from tests.support.envtest import ControlPlane

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.k8s)


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
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{name}")
    return name
