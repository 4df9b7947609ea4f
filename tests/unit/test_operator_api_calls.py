"""The operator's API calls follow its settings: what is off needs no RBAC."""

from __future__ import annotations

from dataclasses import replace

from truthloop.operator import kube
from truthloop.operator.settings import Settings, SidecarSettings, WebhookSettings


def grants(settings: Settings) -> set[tuple[str, str, str, str, tuple[str, ...]]]:
    return {(c.verb, c.group, c.resource, c.scope, c.names) for c in kube.api_calls(settings)}


def test_the_default_operator() -> None:
    calls = grants(Settings())
    assert ("patch", "truthloop.dev", "modelmonitors/status", "served", ()) in calls
    assert ("patch", "", "secrets", "served", ("truthloop-token",)) in calls
    assert ("get", "", "secrets", "served", ("truthloop-token",)) in calls  # its own token
    assert ("get", "", "secrets", "own", ("truthloop-webhook-cert",)) in calls
    assert ("patch", "apps", "deployments", "served", ()) in calls
    hooks = {(c[0], c[2], c[3], c[4]) for c in calls if c[1] == "admissionregistration.k8s.io"}
    assert hooks == {
        (verb, f"{kind}webhookconfigurations", "cluster", ("truthloop",))
        for verb in ("get", "patch")
        for kind in ("mutating", "validating")
    }
    leases = {(c[0], c[3], c[4]) for c in calls if c[2] == "leases"}
    assert leases == {
        ("get", "own", ("truthloop-operator",)),
        ("create", "own", ()),
        ("update", "own", ("truthloop-operator",)),
    }
    assert not [c for c in calls if c[0] == "delete" or (c[0] == "update" and c[2] != "leases")]
    assert not [c for c in calls if c[2] == "modelmonitors" and c[0] == "patch"]
    assert not [c for c in calls if c[2] == "secrets" and c[0] == "list"]
    assert not [c for c in calls if c[2] == "secrets" and c[0] == "get" and not c[4]]


def test_what_is_turned_off_is_not_called() -> None:
    lean = Settings(
        restart_existing=False,
        sidecar=replace(SidecarSettings(), token_secret=None),
        webhook=WebhookSettings(cert_dir="/etc/certs", configuration="tl"),
    )
    calls = grants(lean)
    assert not [c for c in calls if c[1] == "apps"]
    assert not [c for c in calls if c[2] == "secrets"]
    hook = ("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "cluster")
    assert (*hook, ("tl",)) in calls
