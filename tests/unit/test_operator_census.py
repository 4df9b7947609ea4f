"""A monitor's census from the operator's pod and Service facts: counts, reasons, bypasses."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from tests.support.pods import NATIVE, container, monitor, pod
from truthloop.operator import census, inject

CREATED = "2026-01-01T12:00:00Z"
BEFORE, AFTER = "2026-01-01T11:00:00Z", "2026-01-01T13:00:00Z"


def running(
    name: str, born: str, *containers: dict[str, Any], owner: tuple[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:  # fmt: skip
    body = pod(*containers, **meta)
    body["metadata"].update(name=name, creationTimestamp=born)
    if owner:
        kind, owner_name = owner
        body["metadata"]["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "controller": True, "apiVersion": "apps/v1"}
        ]
    body["status"] = {"phase": "Running"}
    return body


def injected(body: dict[str, Any], targets: list[inject.Target]) -> dict[str, Any]:
    decision = inject.inject(body, targets, NATIVE)
    assert decision.injected
    return jsonpatch.apply_patch(copy.deepcopy(body), [dict(op) for op in decision.patch])


def service(name: str, selector: dict[str, str], *ports: dict[str, Any]) -> dict[str, Any]:
    return census.service_facts(
        {"metadata": {"name": name}, "spec": {"selector": selector, "ports": list(ports)}}
    )


def count(pods: list[dict[str, Any]], services: list[dict[str, Any]] = ()) -> census.Census:  # type: ignore[assignment]
    targets = [monitor()]
    facts = [census.pod_facts(p) for p in pods]
    return census.count(targets[0], targets, facts, services, NATIVE, CREATED)


def test_injected_predating_and_missed_pods() -> None:
    targets = [monitor()]
    pods = [
        injected(running("a", AFTER, owner=("ReplicaSet", "churn-7d9f")), targets),
        running("b", BEFORE, owner=("ReplicaSet", "churn-7d9f")),
        running("c", BEFORE, owner=("StatefulSet", "churn-db")),
        running("d", AFTER, owner=("ReplicaSet", "churn-8e1a")),
        running("e", BEFORE, labels={"app": "fraud"}),
        running("f", BEFORE, annotations={inject.INJECT: "false"}),
    ]
    done = running("g", BEFORE)
    done["status"]["phase"] = "Succeeded"
    counted = count([*pods, done])
    assert (counted.injected, counted.total) == (1, 4)
    assert [reason for reason, _ in counted.refused] == [
        census.PREDATES,
        census.PREDATES,
        census.MISSED,
    ]
    assert counted.stale == (
        census.Owner("ReplicaSet", "churn-7d9f"),
        census.Owner("StatefulSet", "churn-db"),
    )
    assert counted.main_refusal() == (census.PREDATES, census.PREDATES_TEXT, 2)


def test_what_to_do_about_an_older_pod_follows_the_spec() -> None:
    """With spec.restartExisting set, the text does not ask to set it."""
    pods = [
        running("b", BEFORE, owner=("ReplicaSet", "churn-7d9f")),
        running("c", BEFORE, bare=True),
    ]
    facts = [census.pod_facts(p) for p in pods]
    for restart, texts in (
        (False, [census.PREDATES_TEXT, census.PREDATES_TEXT]),
        (True, [census.PREDATES_ROLLED_TEXT, census.PREDATES_UNROLLED_TEXT]),
    ):
        targets = [monitor(restartExisting=restart)]
        counted = census.count(targets[0], targets, facts, [], NATIVE, CREATED)
        assert [text for _, text in counted.refused] == texts
        assert all(("set spec.restartExisting" in text) is not restart for text in texts)


def test_pods_the_webhook_would_refuse_say_why() -> None:
    numbered = [monitor(port=8080)]
    facts = [census.pod_facts(running("a", BEFORE))]
    counted = census.count(numbered[0], numbered, facts, [], NATIVE, CREATED)
    assert [reason for reason, _ in counted.refused] == ["port_number_needs_env"]
    assert counted.stale == ()


def test_services_that_target_the_model_port_bypass_the_sidecar() -> None:
    targets = [monitor()]
    pods = [injected(running("a", AFTER, container(ports=[("http", 8080)])), targets)]
    services = [
        service("by-name", {"app": "churn"}, {"name": "web", "port": 80, "targetPort": "http"}),
        service("by-number", {"app": "churn"}, {"name": "web", "port": 80, "targetPort": 8080}),
        service("implicit", {"app": "churn"}, {"port": 8080}),
        service("renamed", {"app": "churn"}, {"port": 81, "targetPort": "tl-model"}),
        service("elsewhere", {"app": "fraud"}, {"port": 80, "targetPort": 8080}),
        service("headless-selectorless", {}, {"port": 80, "targetPort": 8080}),
    ]
    counted = count(pods, services)
    assert counted.bypass == (
        "Service by-number port web targets the model's port 8080 directly",
        "Service implicit port 8080 targets the model's port 8080 directly",
        "Service renamed port 81 targets the model's port tl-model directly",
    )


def test_a_bare_pod_keeps_its_port_name_so_a_service_by_that_name_bypasses() -> None:
    targets = [monitor()]
    bare = running("a", AFTER, container(ports=[("http", 8080)]), bare=True)
    pods = [injected(bare, targets)]
    services = [
        service("by-name", {"app": "churn"}, {"name": "web", "port": 80, "targetPort": "http"}),
        service("sidecar", {"app": "churn"}, {"name": "web", "port": 80, "targetPort": "tl-proxy"}),
    ]
    counted = count(pods, services)
    assert counted.bypass == ("Service by-name port web targets the model's port http directly",)
