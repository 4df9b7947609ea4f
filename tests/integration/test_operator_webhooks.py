"""The admission webhooks, as the apiserver calls them: AdmissionReview v1 JSON POSTed to the
operator's webhook server (plain HTTP on 127.0.0.1 in tests)."""

from __future__ import annotations

import base64
import copy
import json
import logging
from typing import Any

import aiohttp
import jsonpatch
import pytest

from tests.support.feedback import monitor_body
from tests.support.operator_harness import World
from tests.support.pods import SELECTED_POD, review
from tests.support.waiting import eventually
from truthloop.operator import admission, inject

pytest_plugins = ["tests.support.operator_fixtures"]


async def post(world: World, path: str, body: Any) -> tuple[int, Any]:
    assert world.operator is not None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            world.operator.webhook_url + path,
            data=data,
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def with_monitor(world: World) -> inject.Target:
    created = await world.create(monitor_body())
    await eventually(lambda: world.status().get("phase"), "the monitor is seen")
    return inject.target(created)


def decisions(world: World, reason: str) -> float:
    assert world.operator is not None
    value = world.operator.runtime.metrics.registry.get_sample_value(
        "truthloop_operator_injections_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_selected_pod_gets_the_sidecar(world: World) -> None:
    target = await with_monitor(world)
    status, answer = await post(world, "/inject-pods", review(SELECTED_POD))
    assert status == 200
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    mutated = jsonpatch.apply_patch(copy.deepcopy(SELECTED_POD), patch)
    in_namespace = {**SELECTED_POD, "metadata": {**SELECTED_POD["metadata"], "namespace": "ml"}}
    expected = inject.inject(in_namespace, [target], world.operator.runtime.sidecar)  # type: ignore[union-attr]
    assert expected.injected
    assert mutated == jsonpatch.apply_patch(
        copy.deepcopy(SELECTED_POD), [dict(op) for op in expected.patch]
    )
    assert mutated["metadata"]["annotations"][inject.INJECTED] == "churn"
    assert mutated["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == "tl-model"
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == [inject.SIDECAR]
    assert decisions(world, "injected") == 1


async def test_other_pods_are_admitted_untouched(world: World) -> None:
    await with_monitor(world)
    other = copy.deepcopy(SELECTED_POD)
    other["metadata"]["labels"] = {"app": "fraud-model"}
    opted_out = copy.deepcopy(SELECTED_POD)
    opted_out["metadata"]["labels"][inject.INJECT] = "false"
    for pod in (other, opted_out):
        status, answer = await post(world, "/inject-pods", review(pod))
        assert status == 200
        assert answer["response"]["allowed"] is True
        assert "patch" not in answer["response"]
    assert decisions(world, "no_matching_monitor") == 1
    assert decisions(world, "opted_out") == 1


MONITORS = ("truthloop.dev", "v1alpha1", "modelmonitors")


async def test_a_bad_model_monitor_is_refused_with_the_field_path(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    bad = monitor_body(alerts=[{"name": "low", "metric": "accuracy", "below": "high"}])
    status, answer = await post(world, "/validate-modelmonitors", review(bad, MONITORS))
    assert status == 200
    response = answer["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert "spec.alerts[0].below" in response["status"]["message"]
    # The operator's log: a user's mistake, naming the object and the field; no ERROR.
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "refused" in r.getMessage()]
    assert len(said) == 1, said
    level, message = said[0]
    assert level == "WARNING"
    assert "ModelMonitor ml/churn refused" in message
    assert "spec.alerts[0].below" in message
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    good = monitor_body()
    status, answer = await post(world, "/validate-modelmonitors", review(good, MONITORS, "UPDATE"))
    assert status == 200
    assert answer["response"]["allowed"] is True


async def test_a_spec_past_the_bounds_is_refused_unless_an_update_leaves_it_as_it_was(
    world: World,
) -> None:
    """A monitor from before the durations were bounded keeps its labels editable; a new one, or
    a changed spec, must fit (the CRD's rules ratchet the same way on the apiserver)."""
    held = monitor_body(metrics={"window": "100d"})
    _, answer = await post(world, "/validate-modelmonitors", review(held, MONITORS))
    assert answer["response"]["allowed"] is False
    assert "spec.metrics.window: must be at most 90d" in answer["response"]["status"]["message"]
    labeled = {**held, "metadata": {**held["metadata"], "labels": {"team": "ml"}}}
    relabel = review(labeled, MONITORS, "UPDATE")
    relabel["request"]["oldObject"] = held
    _, answer = await post(world, "/validate-modelmonitors", relabel)
    assert answer["response"]["allowed"] is True, answer
    changed = review(monitor_body(metrics={"window": "100d", "minSamples": 5}), MONITORS, "UPDATE")
    changed["request"]["oldObject"] = held
    _, answer = await post(world, "/validate-modelmonitors", changed)
    assert answer["response"]["allowed"] is False


def broken(**request: Any) -> dict[str, Any]:
    """A pod review with some `request` fields replaced."""
    good = review(SELECTED_POD)
    return {**good, "request": {**good["request"], **request}}


MALFORMED = [
    ("not-json", "/inject-pods", b"{not json", 400),
    ("not-an-object", "/inject-pods", [], 400),
    ("wrong-kind", "/inject-pods", {**review(SELECTED_POD), "kind": "Pod"}, 400),
    (
        "old-version",
        "/inject-pods",
        {**review(SELECTED_POD), "apiVersion": "admission.k8s.io/v1beta1"},
        400,
    ),
    (
        "no-request",
        "/inject-pods",
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        400,
    ),
    ("no-object", "/inject-pods", broken(object=None), 400),
    ("no-uid", "/inject-pods", broken(uid=7), 400),
    ("no-user", "/inject-pods", broken(userInfo=None), 400),
    ("bad-operation", "/inject-pods", broken(operation="EXPLODE"), 400),
    ("wrong-resource", "/validate-modelmonitors", review(SELECTED_POD), 400),
    ("unknown-path", "/mutate-everything", review(SELECTED_POD), 404),
]


@pytest.mark.parametrize(
    ("path", "body", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_a_malformed_review_is_answered_with_an_error(
    world: World, path: str, body: Any, expected: int
) -> None:
    status, answer = await post(world, path, body)
    assert status == expected
    assert set(answer) == {"error", "details"}
    assert answer["error"]
    status, answer = await post(world, "/inject-pods", review(SELECTED_POD))
    assert status == 200, "the server still serves"
    assert answer["response"]["allowed"] is True
    assert world.operator is not None
    outcomes = world.operator.runtime.metrics.registry.get_sample_value(
        "truthloop_operator_admissions_total",
        {"webhook": path[1:] if path[1:] in admission.WEBHOOKS else "", "outcome": "malformed"},
    )
    assert outcomes == (1 if expected == 400 else None)
