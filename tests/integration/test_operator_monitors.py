"""The operator for real: ModelMonitors in the mock apiserver, the real feedback service on
127.0.0.1, and kopf in its own thread. Every wait is a condition with a deadline."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import kmock
import numpy as np

from tests.integration import test_feedback_drift as drift_tests
from tests.integration.test_feedback_reference_chunks import labeled
from tests.support.apiserver_mock import MONITORS
from tests.support.feedback import monitor_body, record
from tests.support.operator_harness import (
    MONITOR_PATH,
    TOKEN,
    OperatorThread,
    World,
    WorldFactory,
    secret_value,
)
from tests.support.pods import NATIVE
from tests.support.waiting import eventually
from truthloop.operator import inject
from truthloop.operator.settings import StatusSettings

pytest_plugins = ["tests.support.operator_fixtures"]

PODS = "/api/v1/namespaces/ml/pods"
SECRETS = kmock.resource("", "v1", "secrets")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
HTTP_PORT = {"name": "http", "containerPort": 8080}


def churn(**spec: Any) -> dict[str, Any]:
    """The feedback tests' monitor, selecting `app: churn-model` pods on their port `http`."""
    return monitor_body(**spec)


async def registered(world: World, name: str = "churn") -> dict[str, Any]:
    """The service's view of the monitor, once it is registered there."""

    async def look() -> Any:
        status, body = await world.service.call("GET", f"/v1/monitors/ml/{name}")
        return body if status == 200 else None

    return dict(await eventually(look, f"ml/{name} registered"))


async def test_a_new_monitor_is_registered_and_collecting(world: World) -> None:
    created = await world.create(churn())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    assert (await registered(world))["spec"] == created["spec"]
    assert world.condition("Registered")["status"] == "True"
    assert world.condition("Ready")["reason"] == "Monitoring"
    assert world.status()["observedGeneration"] == 1
    await eventually(lambda: world.events("Collecting"), "a Collecting event")
    secret = world.api.object(SECRETS, "ml", "truthloop-token")
    assert secret_value(secret, "token") != TOKEN  # the namespace's own (test_operator_tokens)
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "truthloop.dev/v1alpha1",
            "kind": "ModelMonitor",
            "name": "churn",
            "uid": created["metadata"]["uid"],
        }
    ]


async def test_feedback_moves_the_status_metrics(world: World) -> None:
    await world.create(churn())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    ts = world.clock.now - 10
    await world.service.predictions([record(f"p{i}", 1, ts=ts) for i in range(10)])
    await world.service.feedback(
        *(
            {"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": int(i < 8)}
            for i in range(10)
        )
    )
    await world.service.tick()
    await eventually(lambda: world.status().get("labeled") == 10, "10 labeled")
    status = world.status()
    assert status["samples"] == 10
    assert status["metrics"]["accuracy"] == 0.8
    assert status["metric"].startswith("accuracy=0.8 [")
    assert status["phase"] == "Healthy"
    await eventually(lambda: world.events("Healthy"), "a Healthy event")


async def test_an_alert_engages_the_fallback_with_an_event(world: World) -> None:
    await world.create(churn())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    ts = world.clock.now - 5
    await world.service.predictions([record(f"p{i}", 1, ts=ts) for i in range(6)])
    await world.service.feedback(
        *({"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 0} for i in range(6))
    )
    await world.service.tick()
    await eventually(lambda: world.status().get("phase") == "FallbackActive", "FallbackActive")
    status = world.status()
    assert status["fallback"]["active"] is True
    assert status["fallback"]["reason"].startswith("accuracy-low: accuracy 0 < 0.7")
    assert world.condition("Breached")["reason"] == "AlertFiring"
    assert world.condition("FallbackActive")["status"] == "True"
    (engaged,) = await eventually(lambda: world.events("FallbackEngaged"), "the Event")
    assert engaged["type"] == "Normal"
    assert engaged["message"] == status["fallback"]["reason"]
    assert engaged["involvedObject"]["kind"] == "ModelMonitor"


async def test_an_invalid_spec_is_reported_and_not_registered(world: World) -> None:
    bad = churn(alerts=[{"name": "accuracy-low", "metric": "accuracy", "below": "high"}])
    await world.create(bad)
    await eventually(lambda: world.status().get("phase") == "Invalid", "phase Invalid")
    valid = world.condition("SpecValid")
    assert valid["status"] == "False"
    assert "spec.alerts[0].below" in valid["message"]
    (warning,) = await eventually(lambda: world.events("InvalidSpec"), "an InvalidSpec event")
    assert warning["type"] == "Warning"
    assert "spec.alerts[0].below" in warning["message"]
    status, _ = await world.service.call("GET", "/v1/monitors/ml/churn")
    assert status == 404
    fixed = copy.deepcopy(bad["spec"])
    fixed["alerts"][0]["below"] = 0.7
    await world.patch(monitor_path("churn"), {"spec": fixed})
    await eventually(lambda: world.status().get("phase") == "Collecting", "fixed: Collecting")
    assert world.status()["observedGeneration"] == 2
    assert (await registered(world))["metadata"]["generation"] == 2


async def test_a_dead_feedback_service_blocks_nothing(start_world: WorldFactory) -> None:
    world = await start_world(status=quick_sweep())
    await world.create(churn())
    await world.create(churn(name="fraud"))
    await eventually(lambda: world.status(name="fraud").get("phase") == "Collecting", "fraud")
    await registered(world, "churn")
    await world.stop_feedback()
    await eventually(
        lambda: world.condition("Ready", name="fraud").get("reason") == "FeedbackUnavailable",
        "fraud: Ready=False FeedbackUnavailable",
    )
    await eventually(lambda: world.events("FeedbackUnavailable", name="fraud"), "the warning")
    await world.delete("ml", "churn")
    await eventually(lambda: not world.api.exists(MONITORS, "ml", "churn"), within=10)
    await world.start_feedback()
    await eventually(lambda: world.condition("Ready", name="fraud").get("status") == "True")

    async def swept() -> bool:
        status, _ = await world.service.call("GET", "/v1/monitors/ml/churn")
        return status == 404

    await eventually(swept, "the sweep deleted ml/churn from the service")
    assert (await world.service.call("GET", "/v1/monitors/ml/fraud"))[0] == 200


async def test_no_status_patch_when_nothing_changed(world: World) -> None:
    await world.create(churn())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    await eventually(lambda: world.events("Collecting"), "the Collecting event")
    writes, passes = len(world.api.writes), world.passes()
    await eventually(lambda: world.passes() >= passes + 4, "four more passes")
    # Only the heartbeat, at most once per status interval (0.5 s here; times are to the second).
    beats = [
        body["status"]
        for method, path, body in world.api.writes[writes:]
        if method == "PATCH" and path.endswith("/modelmonitors/churn/status")
    ]
    assert all(list(beat) == ["lastSyncTime"] for beat in beats), beats
    times = [beat["lastSyncTime"] for beat in beats]
    assert times == sorted(set(times))


async def test_pods_and_services_show_in_the_status(world: World) -> None:
    created = await world.create(churn(port="http"))
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    target = inject.target(created)
    model = {"name": "model", "image": "m:1", "ports": [HTTP_PORT]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "churn-a", "namespace": "ml", "labels": {"app": "churn-model"}},
        "spec": {"containers": [model]},
        "status": {"phase": "Running"},
    }
    decision = inject.inject(pod, [target], NATIVE)
    assert decision.injected
    sidecar_pod = apply(pod, decision)
    await world.create(sidecar_pod, PODS)
    await world.create({**pod, "metadata": {**pod["metadata"], "name": "churn-b"}}, PODS)
    direct = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "churn-direct", "namespace": "ml"},
        "spec": {"selector": {"app": "churn-model"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    await world.create(direct, "/api/v1/namespaces/ml/services")
    await eventually(lambda: world.status().get("injectedPods") == 1, "one injected pod")
    await eventually(lambda: world.condition("TrafficBypass").get("status") == "True")
    assert "churn-direct" in world.condition("TrafficBypass")["message"]
    await eventually(lambda: world.condition("PodsInjected").get("reason") == "WebhookMissed")
    pods = world.condition("PodsInjected")
    assert pods["status"] == "False"
    assert pods["message"].startswith("1 of 2 selected pods have the sidecar")
    await eventually(lambda: world.events("TrafficBypass"), "a TrafficBypass warning")
    await eventually(lambda: world.events("PodsNotInjected"), "a PodsNotInjected warning")


async def older_deployment_and_pod(world: World) -> None:
    """A Deployment whose ReplicaSet's pod is an hour older than the monitor to come."""
    world.api.age = 3600
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "churn-model", "namespace": "ml"},
        "spec": {"template": {"metadata": {"labels": {"app": "churn-model"}}}},
    }
    await world.create(deployment, "/apis/apps/v1/namespaces/ml/deployments")
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "churn-model-5d4f",
            "namespace": "ml",
            "ownerReferences": [{"kind": "Deployment", "name": "churn-model", "controller": True}],
        },
    }
    await world.create(replicaset, "/apis/apps/v1/namespaces/ml/replicasets")
    old = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "churn-model-5d4f-x",
            "namespace": "ml",
            "labels": {"app": "churn-model"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "churn-model-5d4f", "controller": True}
            ],
        },
        "spec": {"containers": [{"name": "m", "image": "m", "ports": [HTTP_PORT]}]},
    }
    await world.create(old, PODS)
    world.api.age = 0


async def test_restart_existing_rolls_the_workloads_of_older_pods_once(world: World) -> None:
    await older_deployment_and_pod(world)
    await world.create(churn(restartExisting=True))
    path = "/apis/apps/v1/namespaces/ml/deployments/churn-model"
    await eventually(lambda: world.api.count("PATCH", path) == 1, "the Deployment rolled")
    rolled = world.api.object(DEPLOYMENTS, "ml", "churn-model")
    annotations = rolled["spec"]["template"]["metadata"]["annotations"]
    assert "truthloop.dev/restartedAt" in annotations
    (event,) = await eventually(lambda: world.events("RestartedWorkload"), "the Event")
    assert "Deployment churn-model" in event["message"]
    passes = world.passes()
    await eventually(lambda: world.passes() >= passes + 3, "three more passes")
    assert world.api.count("PATCH", path) == 1


async def test_restart_existing_does_not_roll_again_after_an_operator_restart(
    world: World,
) -> None:
    """The record of what was rolled is on the workload, not in the operator's memory."""
    await older_deployment_and_pod(world)
    created = await world.create(churn(restartExisting=True))
    path = "/apis/apps/v1/namespaces/ml/deployments/churn-model"
    await eventually(lambda: world.api.count("PATCH", path) == 1, "the Deployment rolled")
    rolled = world.api.object(DEPLOYMENTS, "ml", "churn-model")
    record = f"{created['metadata']['uid']}/{created['metadata']['generation']}"
    assert rolled["metadata"]["annotations"]["truthloop.dev/restarted-for"] == record
    assert world.operator is not None
    await world.operator.stop()
    world.operator = OperatorThread(world.operator.settings)
    await world.operator.start(world.api)
    await eventually(lambda: world.passes() >= 3, "three passes of the new operator")
    await eventually(lambda: world.api.count("GET", path) >= 1, "the record read")
    assert world.api.count("PATCH", path) == 1
    # A new generation is a new record: rolled once more.
    await world.patch(
        f"{MONITOR_PATH.format(namespace='ml')}/churn",
        {"spec": {"metrics": {"window": "2h", "minSamples": 5}}},
    )
    await eventually(lambda: world.api.count("PATCH", path) == 2, "rolled for generation 2")


async def test_restart_existing_may_be_disallowed(start_world: WorldFactory) -> None:
    world = await start_world(restart_existing=False)
    await older_deployment_and_pod(world)
    await world.create(churn(restartExisting=True))
    (warning,) = await eventually(lambda: world.events("RestartNotAllowed"), "the warning")
    assert warning["type"] == "Warning"
    passes = world.passes()
    await eventually(lambda: world.passes() >= passes + 3, "three more passes")
    assert world.api.count("PATCH", "/deployments/churn-model") == 0
    assert len(world.events("RestartNotAllowed")) == 1


# -- helpers ----------------------------------------------------------------------------------


def monitor_path(name: str) -> str:
    return f"/apis/truthloop.dev/v1alpha1/namespaces/ml/modelmonitors/{name}"


def quick_sweep() -> StatusSettings:
    return StatusSettings(interval=0.5, backoff=(0.05, 0.1, 0.2), sweep_interval=0.3)


def apply(pod: dict[str, Any], decision: inject.Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(copy.deepcopy(pod), [dict(op) for op in decision.patch])


def _inputs(n: int, seed: int, tenure: float) -> list[dict[str, Any]]:
    """Churn inputs with tenure around `tenure` months and a plan; the prediction follows."""
    rng = np.random.default_rng(seed)
    values = rng.normal(tenure, 3.0, n)
    plans = rng.choice(["basic", "pro"], n, p=[0.7, 0.3] if tenure < 20 else [0.2, 0.8])
    return [
        {"tenure": round(float(t), 3), "plan": str(p), "prediction": int(t < 12)}
        for t, p in zip(values, plans, strict=True)
    ]


async def test_drift_is_a_condition_naming_the_drifted_features(world: World) -> None:
    await world.create(churn())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    assert world.condition("Drift")["reason"] == "NoReference"
    reference = _inputs(2000, 1, 12.0)
    text = "tenure,plan,prediction\n" + "".join(
        f"{r['tenure']},{r['plan']},{r['prediction']}\n" for r in reference
    )
    await world.service.ok(
        "POST",
        "/v1/monitors/ml/churn/reference",
        data=text.encode(),
        headers={"Content-Type": "text/csv"},
    )

    async def capture(rows: list[dict[str, Any]], prefix: str) -> None:
        ts = world.clock.now - 5
        features = [{"tenure": r["tenure"], "plan": r["plan"]} for r in rows]
        await world.service.predictions(
            [
                record(f"{prefix}{i}", r["prediction"], ts=ts, features=f)
                for i, (r, f) in enumerate(zip(rows, features, strict=True))
            ]
        )
        await world.service.tick()

    await capture(_inputs(1200, 2, 12.0), "a")
    await eventually(lambda: world.condition("Drift")["reason"] == "NoDrift", "Drift False")
    assert world.condition("Drift")["status"] == "False"
    assert world.status()["drift"] == {
        "status": "ok",
        "drifted": False,
        "share": 0.0,
        "features": [],
    }
    assert world.status()["phase"] == "Collecting"

    world.clock.advance(7200)
    await capture(_inputs(1200, 3, 30.0), "b")
    await eventually(lambda: world.condition("Drift")["status"] == "True", "Drift True")
    drift = world.condition("Drift")
    assert drift["reason"] == "DatasetDrift"
    assert drift["message"].startswith("2 of 2 features drifted (share 1 >= 0.5): tenure, plan")
    assert world.status()["drift"]["features"] == ["tenure", "plan"]
    (event,) = await eventually(lambda: world.events("DriftDetected"), "a DriftDetected Event")
    assert (event["type"], event["message"]) == ("Warning", drift["message"])


async def test_the_metric_column_shows_the_estimate_until_the_window_has_min_samples_labels(
    world: World,
) -> None:
    await world.create(churn(metrics={"window": "1h", "minSamples": 20}))
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    await world.service.ok(
        "POST",
        "/v1/monitors/ml/churn/reference",
        data=drift_tests.as_csv(labeled(4000, seed=5)),
        headers=drift_tests.CSV,
    )
    table = drift_tests.rows(300, seed=6)
    await drift_tests.capture(world.service, drift_tests.captured(table, world.clock.now - 5, "a"))
    await world.service.tick()
    await eventually(
        lambda: world.status().get("metric", "").startswith("accuracy≈"), "the estimate shown"
    )
    status = world.status()
    shown = float(status["metric"].removeprefix("accuracy≈").split()[0])
    assert abs(shown - status["metrics"]["accuracyEstimated"]) < 0.001
    assert status["metrics"]["accuracyEstimatedLower"] < status["metrics"]["accuracyEstimated"]
    assert status["phase"] == "Collecting"

    await world.service.feedback(
        *(
            {"monitor": "ml/churn", "prediction_id": f"a{i}", "actual": table[i]["prediction"]}
            for i in range(20)
        )
    )
    await world.service.tick()
    await eventually(
        lambda: world.status().get("metric", "").startswith("accuracy=1 ["), "the realized one"
    )
