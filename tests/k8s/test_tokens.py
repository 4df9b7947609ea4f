"""Namespace tokens on a real apiserver: the operator, as the chart deploys it, mints each
monitored namespace's token into the Secret its pods mount, and that token cannot touch another
namespace's monitor at the real feedback service."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import Service, wait_until
from tests.support.k8s_objects import churn_monitor

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def other_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = "t-other-" + secrets.token_hex(3)
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def token_of(plane: ControlPlane, namespace: str) -> str:
    """The namespace's token as a pod mounting its Secret reads it ("" while there is none)."""
    done = plane.kubectl(
        "get",
        "secret",
        "truthloop-token",
        "-n",
        namespace,
        "-o",
        "jsonpath={.data.token}",
        check=False,
    )
    return base64.b64decode(done.stdout).decode() if done.returncode == 0 else ""


def call(service: Service, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        service.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_namespace_s_token_cannot_touch_another_namespace_s_monitor(
    control_plane: ControlPlane, feedback_service: Service, namespace: str, other_namespace: str
) -> None:
    control_plane.apply(churn_monitor(namespace), churn_monitor(other_namespace))
    token = wait_until(lambda: token_of(control_plane, namespace), "the namespace's token Secret")
    theirs = wait_until(lambda: token_of(control_plane, other_namespace), "the other's token")
    assert token != theirs
    record = {
        "prediction_id": "p1",
        "model_version": "v1",
        "ts": time.time() - 5,
        "prediction": 1,
        "served_by": "model",
    }
    own = [{**record, "monitor": f"{namespace}/churn"}]
    assert call(feedback_service, token, "POST", "/v1/predictions", own)[0] == 200
    foreign = [{**record, "monitor": f"{other_namespace}/churn"}]
    status, body = call(feedback_service, token, "POST", "/v1/predictions", foreign)
    assert (status, body["details"][0]["reason"]) == (403, "wrong_namespace")
    for method, path, sent in [
        ("DELETE", f"/v1/monitors/{other_namespace}/churn", None),
        ("POST", f"/v1/monitors/{other_namespace}/churn/fallback", {"mode": "engaged"}),
        ("DELETE", f"/v1/monitors/{namespace}/churn", None),
    ]:
        status, body = call(feedback_service, token, method, path, sent)
        assert (status, body["details"][0]["reason"]) == (403, "admin_only"), (method, path)
