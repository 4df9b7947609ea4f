"""Sidecar injection: a table of pod shapes, golden patches, and idempotence as a property.

Every injected pod is checked the way the apiserver would see it: the patch applies (jsonpatch),
the result validates against the Kubernetes 1.33 schemas (kubernetes-validate, strict), and the
pod-level rules a schema cannot say hold (unique container names, unique port names and numbers,
valid port names, probes that name ports their container declares). Golden patch files live in
tests/unit/golden/; `TRUTHLOOP_UPDATE_GOLDEN=1 pytest tests/unit/test_inject.py` rewrites them.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.pods import NATIVE, REGULAR, container, http_probe, monitor, pod
from truthloop import cli
from truthloop.operator import inject
from truthloop.operator.settings import SidecarSettings
from truthloop.sidecar import cli as sidecar_cli

GOLDEN = Path(__file__).parent / "golden"
IANA_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]$|^[a-z]$")


def applied(original: dict[str, Any], decision: inject.Decision) -> dict[str, Any]:
    return jsonpatch.apply_patch(copy.deepcopy(original), [dict(op) for op in decision.patch])


def sidecar_of(patched: dict[str, Any]) -> dict[str, Any]:
    spec = patched["spec"]
    (found,) = [
        c
        for c in spec.get("initContainers", []) + spec["containers"]
        if c["name"] == inject.SIDECAR
    ]
    return found


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def model_of(patched: dict[str, Any], name: str = "model") -> dict[str, Any]:
    (found,) = [c for c in patched["spec"]["containers"] if c["name"] == name]
    return found


def ports_of(c: dict[str, Any]) -> dict[str | None, int]:
    return {p.get("name"): p["containerPort"] for p in c.get("ports", [])}


def check_valid_pod(patched: dict[str, Any]) -> None:
    """The apiserver's view: the 1.33 schema, and the pod rules a schema cannot express."""
    try:
        kubernetes_validate.validate(patched, "1.33", strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(str(e).splitlines()[0]) from None
    spec = patched["spec"]
    everyone = spec.get("initContainers", []) + spec["containers"]
    names = [c["name"] for c in everyone]
    assert len(names) == len(set(names)), names
    ports = [p for c in everyone for p in c.get("ports", [])]
    numbers = [(p["containerPort"], p.get("protocol", "TCP")) for p in ports]
    assert len(numbers) == len(set(numbers)), numbers
    port_names = [p["name"] for p in ports if "name" in p]
    assert len(port_names) == len(set(port_names)), port_names
    assert all(len(n) <= 15 and IANA_PORT_NAME.match(n) for n in port_names), port_names
    for c in everyone:
        own = {p.get("name") for p in c.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            for handler in ("httpGet", "tcpSocket"):
                port = c.get(kind, {}).get(handler, {}).get("port")
                if isinstance(port, str):
                    assert port in own, (c["name"], kind, port)
    volumes = [v["name"] for v in spec.get("volumes", [])]
    assert len(volumes) == len(set(volumes)), volumes
    for c in everyone:
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes


# -- the table ---------------------------------------------------------------------------------

Check = Callable[[dict[str, Any], inject.Decision], None]


@dataclass
class Case:
    id: str
    pod: dict[str, Any]
    reason: inject.Reason
    monitors: list[inject.Target] = field(default_factory=lambda: [monitor()])
    settings: SidecarSettings = NATIVE
    check: Check | None = None
    golden: bool = False


def named_port_basics(p: dict[str, Any], d: inject.Decision) -> None:
    model, sidecar = model_of(p), sidecar_of(p)
    assert ports_of(model) == {"tl-model": 8080}
    assert ports_of(sidecar) == {"http": 15080, "tl-admin": 15090}
    env = env_of(sidecar)
    assert env["TRUTHLOOP_LISTEN"] == "0.0.0.0:15080"
    assert env["TRUTHLOOP_MODEL_URL"] == "http://127.0.0.1:8080"
    assert env["TRUTHLOOP_ADMIN"] == "0.0.0.0:15090"
    assert env["TRUTHLOOP_MONITOR"] == "ml/churn"
    assert env["TRUTHLOOP_SPOOL_DIR"] == inject.SPOOL_PATH
    assert json.loads(env["TRUTHLOOP_SPEC"])["metadata"] == {
        "name": "churn",
        "namespace": "ml",
        "generation": 3,
    }
    assert env["TRUTHLOOP_MODEL_VERSION"] == {
        "fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/version']"}
    }
    assert "TRUTHLOOP_TOKEN" not in env  # an environment variable never sees a rotation
    assert env["TRUTHLOOP_TOKEN_FILE"] == inject.TOKEN_FILE
    assert {
        "name": inject.TOKEN_VOLUME,
        "secret": {
            "secretName": "truthloop-token",
            "optional": True,
            "items": [{"key": "token", "path": "token"}],
        },
    } in p["spec"]["volumes"]
    assert {"name": inject.TOKEN_VOLUME, "mountPath": inject.TOKEN_DIR, "readOnly": True} in (
        sidecar["volumeMounts"]
    )
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "tl-admin"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "tl-admin"}
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"]
    assert security["readOnlyRootFilesystem"]
    assert not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert {"name": inject.SPOOL_VOLUME, "emptyDir": {"sizeLimit": str(2**30 + 64 * 2**20)}} in (
        p["spec"]["volumes"]
    )
    assert p["metadata"]["annotations"][inject.INJECTED] == "churn"
    assert p["metadata"]["annotations"][inject.GENERATION] == "3"
    assert d.monitor == "ml/churn"


def probe_port(c: dict[str, Any], kind: str, handler: str = "httpGet") -> Any:
    return c[kind][handler]["port"]


def moved_model(number: int = 15081, env: str = "PORT") -> Check:
    def check(p: dict[str, Any], d: inject.Decision) -> None:
        model, sidecar = model_of(p), sidecar_of(p)
        assert ports_of(model)["tl-model"] == number
        assert env_of(model)[env] == str(number)
        assert env_of(sidecar)["TRUTHLOOP_MODEL_URL"] == f"http://127.0.0.1:{number}"
        assert env_of(sidecar)["TRUTHLOOP_LISTEN"] == "0.0.0.0:8080"

    return check


def checks(*parts: Check) -> Check:
    def check(p: dict[str, Any], d: inject.Decision) -> None:
        for part in parts:
            part(p, d)

    return check


def readiness_by_name_rewritten(p: dict[str, Any], d: inject.Decision) -> None:
    assert probe_port(model_of(p), "readinessProbe") == "tl-model"


def liveness_by_number_kept(p: dict[str, Any], d: inject.Decision) -> None:
    assert probe_port(model_of(p), "livenessProbe") == 8080


def tcp_startup_and_prestop_rewritten(p: dict[str, Any], d: inject.Decision) -> None:
    model = model_of(p)
    assert probe_port(model, "startupProbe", "tcpSocket") == "tl-model"
    assert model["lifecycle"]["preStop"]["httpGet"]["port"] == "tl-model"


def only_the_model_changes(p: dict[str, Any], d: inject.Decision) -> None:
    assert ports_of(model_of(p)) == {"metrics": 9100, "tl-model": 8080}
    assert ports_of(model_of(p, "auth")) == {"proxy": 4180}
    assert probe_port(model_of(p, "auth"), "readinessProbe") == "proxy"


def probes_follow_the_moved_model(p: dict[str, Any], d: inject.Decision) -> None:
    model = model_of(p)
    assert probe_port(model, "readinessProbe") == 15081
    assert probe_port(model, "livenessProbe") == "tl-model"
    assert model["startupProbe"]["grpc"]["port"] == 15081
    assert env_of(model)["WORKERS"] == "2"
    assert ports_of(sidecar_of(p))["http"] == 8080


def sidecar_takes_the_old_name(p: dict[str, Any], d: inject.Decision) -> None:
    assert ports_of(sidecar_of(p))["web"] == 8080


def undeclared_port_is_declared(p: dict[str, Any], d: inject.Decision) -> None:
    assert ports_of(model_of(p)) == {"tl-model": 15081}
    assert env_of(model_of(p))["APP_PORT"] == "15081"
    assert ports_of(sidecar_of(p)) == {"tl-proxy": 5000, "tl-admin": 15090}


def unnamed_port_gets_proxy_name(p: dict[str, Any], d: inject.Decision) -> None:
    assert ports_of(sidecar_of(p))["tl-proxy"] == 8080


def native_after_init_containers(p: dict[str, Any], d: inject.Decision) -> None:
    assert [c["name"] for c in p["spec"]["initContainers"]] == ["migrate", inject.SIDECAR]


def regular_first_container(p: dict[str, Any], d: inject.Decision) -> None:
    assert [c["name"] for c in p["spec"]["containers"]] == [inject.SIDECAR, "model", "log"]
    assert [c["name"] for c in p["spec"]["initContainers"]] == ["migrate"]
    assert "restartPolicy" not in sidecar_of(p)
    assert "startupProbe" not in sidecar_of(p)
    assert p["metadata"]["annotations"][inject.DEFAULT_CONTAINER] == "model"


def default_container_kept(p: dict[str, Any], d: inject.Decision) -> None:
    assert p["metadata"]["annotations"][inject.DEFAULT_CONTAINER] == "model"


def annotations_kept(p: dict[str, Any], d: inject.Decision) -> None:
    assert p["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert p["metadata"]["annotations"]["a~b/c"] == "d"


def next_free_ports(p: dict[str, Any], d: inject.Decision) -> None:
    assert ports_of(sidecar_of(p)) == {"http": 15081, "tl-admin": 15091}


def host_port_moves(p: dict[str, Any], d: inject.Decision) -> None:
    assert "hostPort" not in model_of(p)["ports"][0]
    assert sidecar_of(p)["ports"][0]["hostPort"] == 80


def no_token(p: dict[str, Any], d: inject.Decision) -> None:
    assert "TRUTHLOOP_TOKEN" not in env_of(sidecar_of(p))


def model_stays_put(p: dict[str, Any], d: inject.Decision) -> None:
    assert env_of(model_of(p))["PORT"] == "8080"
    assert ports_of(model_of(p)) == {"tl-model": 8080}


def whole_lists_added(p: dict[str, Any], d: inject.Decision) -> None:
    paths = {op["path"] for op in d.patch}
    assert {"/metadata/annotations", "/spec/volumes", "/spec/initContainers"} <= paths


CASES = [
    Case("named-port", pod(), "injected", check=named_port_basics, golden=True),
    Case(
        "named-port-readiness-by-name",
        pod(container(readinessProbe=http_probe("http"))),
        "injected",
        check=readiness_by_name_rewritten,
    ),
    Case(
        "named-port-liveness-by-number",
        pod(container(livenessProbe=http_probe(8080))),
        "injected",
        check=liveness_by_number_kept,
    ),
    Case(
        "named-port-tcp-startup-and-prestop-by-name",
        pod(
            container(
                startupProbe={"tcpSocket": {"port": "http"}},
                lifecycle={"preStop": {"httpGet": {"path": "/drain", "port": "http"}}},
            )
        ),
        "injected",
        check=tcp_startup_and_prestop_rewritten,
    ),
    Case(
        "model-is-second-of-three",
        pod(
            container("auth", [("proxy", 4180)], readinessProbe=http_probe("proxy")),
            container("model", [("metrics", 9100), ("http", 8080)]),
            container("log", []),
        ),
        "injected",
        check=only_the_model_changes,
        golden=True,
    ),
    Case("named-port-missing", pod(container(ports=[("web", 8080)])), "port_not_found"),
    Case(
        "named-port-is-udp",
        pod(container(raw_ports=[{"name": "http", "containerPort": 53, "protocol": "UDP"}])),
        "port_not_found",
    ),
    Case(
        "number-without-env",
        pod(container(ports=[("http", 8080)])),
        "port_number_needs_env",
        monitors=[monitor(port=8080)],
    ),
    Case(
        "number-with-env-present",
        pod(
            container(
                env=[{"name": "PORT", "value": "8080"}, {"name": "WORKERS", "value": "2"}],
                readinessProbe=http_probe(8080),
                livenessProbe=http_probe("http"),
                startupProbe={"grpc": {"port": 8080}},
            )
        ),
        "injected",
        monitors=[monitor(port=8080, env="PORT")],
        check=checks(moved_model(), probes_follow_the_moved_model),
        golden=True,
    ),
    Case(
        "number-with-env-absent",
        pod(container(ports=[("web", 8080)])),
        "injected",
        monitors=[monitor(port=8080, env="PORT")],
        check=checks(moved_model(), sidecar_takes_the_old_name),
    ),
    Case(
        "number-undeclared-single-container",
        pod(container(ports=[])),
        "injected",
        monitors=[monitor(port=5000, env="APP_PORT")],
        check=undeclared_port_is_declared,
    ),
    Case(
        "number-undeclared-several-containers",
        pod(container(ports=[]), container("log", [])),
        "model_container_unknown",
        monitors=[monitor(port=5000, env="APP_PORT")],
    ),
    Case(
        "number-declared-unnamed",
        pod(container(ports=[(None, 8080)])),
        "injected",
        monitors=[monitor(port=8080, env="PORT")],
        check=unnamed_port_gets_proxy_name,
    ),
    Case(
        "already-injected-annotation",
        pod(annotations={inject.INJECTED: "churn"}),
        "sidecar_already_exists",
    ),
    Case(
        "already-has-sidecar-container",
        pod(container(), container(inject.SIDECAR, [])),
        "sidecar_already_exists",
    ),
    Case("opt-out-annotation", pod(annotations={inject.INJECT: "false"}), "opted_out"),
    Case("opt-out-label", pod(labels={"app": "churn", inject.INJECT: "false"}), "opted_out"),
    Case("opt-in-annotation-is-no-opt-out", pod(annotations={inject.INJECT: "true"}), "injected"),
    Case("no-match", pod(labels={"app": "fraud"}), "no_matching_monitor"),
    Case("no-labels", pod(labels={}), "no_matching_monitor"),
    Case(
        "monitor-of-another-namespace",
        pod(),
        "no_matching_monitor",
        monitors=[monitor(namespace="other")],
    ),
    Case("host-network", pod(hostNetwork=True), "host_network"),
    Case(
        "match-expressions",
        pod(labels={"app": "churn", "tier": "gold", "track": "stable"}),
        "injected",
        monitors=[
            monitor(
                selector={
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
                        {"key": "track", "operator": "NotIn", "values": ["canary"]},
                        {"key": "app", "operator": "Exists"},
                        {"key": "debug", "operator": "DoesNotExist"},
                    ]
                }
            )
        ],
    ),
    Case(
        "match-expressions-excluded",
        pod(labels={"app": "churn", "track": "canary"}),
        "no_matching_monitor",
        monitors=[
            monitor(
                selector={
                    "matchLabels": {"app": "churn"},
                    "matchExpressions": [
                        {"key": "track", "operator": "NotIn", "values": ["canary"]}
                    ],
                }
            )
        ],
    ),
    Case(
        "two-monitors-select",
        pod(),
        "several_monitors",
        monitors=[monitor(), monitor(name="churn-shadow")],
    ),
    Case(
        "init-containers-native",
        pod(initContainers=[container("migrate", [])]),
        "injected",
        check=native_after_init_containers,
    ),
    Case(
        "old-cluster-regular-container",
        pod(container("model"), container("log", []), initContainers=[container("migrate", [])]),
        "injected",
        settings=REGULAR,
        check=regular_first_container,
        golden=True,
    ),
    Case(
        "old-cluster-keeps-default-container",
        pod(container("log", []), container(), annotations={inject.DEFAULT_CONTAINER: "model"}),
        "injected",
        settings=REGULAR,
        check=default_container_kept,
    ),
    Case(
        "annotations-with-slashes-kept",
        pod(annotations={"prometheus.io/scrape": "true", "a~b/c": "d"}),
        "injected",
        check=annotations_kept,
    ),
    Case(
        "preferred-ports-taken",
        pod(container(ports=[("http", 8080), ("admin", 15090), ("alt", 15080)])),
        "injected",
        check=next_free_ports,
    ),
    Case(
        "relocation-port-taken",
        pod(container(ports=[("http", 8080), ("stats", 15081)])),
        "injected",
        monitors=[monitor(port=8080, env="PORT")],
        check=moved_model(15082),
    ),
    Case(
        "volume-name-conflict",
        pod(volumes=[{"name": inject.SPOOL_VOLUME, "emptyDir": {}}]),
        "name_conflict",
    ),
    Case(
        "token-volume-name-conflict",
        pod(volumes=[{"name": inject.TOKEN_VOLUME, "emptyDir": {}}]),
        "name_conflict",
    ),
    Case(
        "port-name-conflict",
        pod(container(ports=[("http", 8080), ("tl-admin", 9000)])),
        "name_conflict",
    ),
    Case(
        "host-port-moves-to-sidecar",
        pod(container(raw_ports=[{"name": "http", "containerPort": 8080, "hostPort": 80}])),
        "injected",
        check=host_port_moves,
    ),
    Case(
        "no-token-secret",
        pod(),
        "injected",
        settings=replace(NATIVE, token_secret=None),
        check=no_token,
    ),
    Case(
        "named-port-ignores-model-port-env",
        pod(container(env=[{"name": "PORT", "value": "8080"}])),
        "injected",
        monitors=[monitor(env="PORT")],
        check=model_stays_put,
    ),
    Case("pod-without-lists", pod(), "injected", check=whole_lists_added),
]


def test_the_table_covers_every_reason() -> None:
    assert len(CASES) >= 25
    assert {case.reason for case in CASES} == set(inject.REASONS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_inject(case: Case) -> None:
    original = copy.deepcopy(case.pod)
    decision = inject.inject(case.pod, case.monitors, case.settings)
    assert case.pod == original, "inject() must not change its input"
    assert decision.reason == case.reason, decision.message
    assert decision.message
    if not decision.injected:
        assert decision.patch == ()
        return
    patched = applied(case.pod, decision)
    check_valid_pod(patched)
    if case.check is not None:
        case.check(patched, decision)
    again = inject.inject(patched, case.monitors, case.settings)
    assert again.reason == "sidecar_already_exists"
    assert again.patch == ()
    if case.golden:
        compare_golden(case.id, decision)


def compare_golden(name: str, decision: inject.Decision) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps([dict(op) for op in decision.patch], indent=2, sort_keys=True) + "\n"
    if os.environ.get("TRUTHLOOP_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with TRUTHLOOP_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"the patch differs from {path}"


def test_the_namespace_of_the_review_wins_over_an_empty_one() -> None:
    unnamespaced = pod()
    del unnamespaced["metadata"]["namespace"]
    assert inject.inject(unnamespaced, [monitor()], NATIVE, "ml").injected
    assert inject.inject(unnamespaced, [monitor()], NATIVE, "other").reason == "no_matching_monitor"


def test_the_spec_snapshot_is_what_the_sidecar_parses() -> None:
    target = monitor(port=8080, env="PORT")
    snapshot = json.loads(target.snapshot)
    assert snapshot["kind"] == "ModelMonitor"
    assert inject.target(snapshot).monitor == target.monitor


def test_a_monitor_accepted_before_durations_were_bounded_still_injects() -> None:
    """A monitor in the cluster from before the bounds keeps its pods injected after an
    upgrade (its next change must fit them: the CRD and the webhook refuse it then)."""
    snapshot = json.loads(monitor().snapshot)
    snapshot["spec"]["metrics"] = {"window": "120d"}
    assert inject.target(snapshot).monitor.spec.metrics.window == 120 * 86400


# -- idempotence, as a property ----------------------------------------------------------------

NAMES = ["http", "web", "grpc", "metrics", "tl-proxy"]
NUMBERS = [80, 5000, 8080, 9090, 15080, 15081, 15090]


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    def one(index: int, init: bool = False) -> dict[str, Any]:
        declared = draw(
            st.lists(
                st.tuples(st.sampled_from([None, *NAMES]), st.sampled_from(NUMBERS)),
                max_size=3,
                unique_by=(lambda t: t[0] or f"#{t[1]}", lambda t: t[1]),
            )
        )
        c = container(f"{'init' if init else 'c'}{index}", declared)
        for kind in ("readinessProbe", "livenessProbe"):
            if declared and draw(st.booleans()):
                name, number = draw(st.sampled_from(declared))
                c[kind] = http_probe(name if name and draw(st.booleans()) else number)
        if draw(st.booleans()):
            c["env"] = [{"name": "PORT", "value": str(draw(st.sampled_from(NUMBERS)))}]
        return c

    containers = [one(i) for i in range(draw(st.integers(1, 3)))]
    inits = [one(i, init=True) for i in range(draw(st.integers(0, 1)))]
    # Port names and numbers are unique in a valid pod: drop the repeats across containers.
    seen_names: set[str] = set()
    seen_numbers: set[int] = set()
    for c in containers + inits:
        kept = []
        for p in c.get("ports", []):
            if p.get("name") in seen_names or p["containerPort"] in seen_numbers:
                continue
            seen_names.add(p.get("name", ""))
            seen_numbers.add(p["containerPort"])
            kept.append(p)
        c["ports"] = kept
        for kind in ("readinessProbe", "livenessProbe"):
            port = c.get(kind, {}).get("httpGet", {}).get("port")
            if port is not None and port not in [q.get("name") for q in kept] + [
                q["containerPort"] for q in kept
            ]:
                del c[kind]
    labels = draw(st.sampled_from([{"app": "churn"}, {"app": "churn", "tier": "gold"}, {}]))
    annotations = draw(st.sampled_from([None, {}, {"x/y": "1"}, {inject.INJECT: "false"}]))
    extra = {"initContainers": inits} if inits else {}
    if draw(st.booleans()):
        extra["hostNetwork"] = draw(st.booleans())
    bare = draw(st.booleans())
    return pod(*containers, labels=labels, annotations=annotations, bare=bare, **extra)


monitors_strategy = st.lists(
    st.builds(
        monitor,
        name=st.sampled_from(["churn", "shadow"]),
        port=st.sampled_from(["http", "web", 8080, 5000]),
        env=st.sampled_from([None, "PORT"]),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda t: t.monitor.name,
)


@settings(max_examples=100, deadline=None)
@given(pods(), monitors_strategy, st.sampled_from([NATIVE, REGULAR]))
def test_injecting_an_injected_pod_changes_nothing(
    original: dict[str, Any], targets: list[inject.Target], sidecar: SidecarSettings
) -> None:
    first = inject.inject(original, targets, sidecar)
    if not first.injected:
        assert first.patch == ()
        return
    once = applied(original, first)
    second = inject.inject(once, targets, sidecar)
    assert second.reason == "sidecar_already_exists"
    assert applied(once, second) == once
    spec = once["spec"]
    everyone = spec.get("initContainers", []) + spec["containers"]
    numbers = [p["containerPort"] for c in everyone for p in c.get("ports", [])]
    assert len(numbers) == len(set(numbers))
    names = [p["name"] for c in everyone for p in c.get("ports", []) if "name" in p]
    assert len(names) == len(set(names))


KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name"}


def reapplied(live: Any, manifest: Any, key: str | None = None) -> Any:
    """What `kubectl apply` (client- or server-side) of an unchanged `manifest` makes of the live
    object: every field the manifest names takes its value, lists of named things merge by name
    (ports by number), the rest of the live object stays."""
    if isinstance(live, dict) and isinstance(manifest, dict):
        merged = dict(live)
        for k, v in manifest.items():
            merged[k] = reapplied(live[k], v, k) if k in live else v
        return merged
    if isinstance(live, list) and isinstance(manifest, list) and key in (*KEYS, "ports"):
        field_ = KEYS.get(key, "containerPort")
        written = {m[field_]: m for m in manifest}
        kept = [
            reapplied(x, written.pop(x[field_]), None) if x[field_] in written else x for x in live
        ]
        return kept + list(written.values())
    return manifest


@settings(max_examples=100, deadline=None)
@given(pods(), monitors_strategy, st.sampled_from([NATIVE, REGULAR]))
def test_re_applying_a_bare_pod_s_manifest_changes_nothing(
    original: dict[str, Any], targets: list[inject.Target], sidecar: SidecarSettings
) -> None:
    """GitOps tools apply a directly created pod's manifest again and again; a pod may not change
    its containers, so the injection must leave what the manifest says as it is."""
    bare = {**original, "metadata": {**original["metadata"], "ownerReferences": []}}
    decision = inject.inject(bare, targets, sidecar)
    live = applied(bare, decision)
    assert reapplied(live, bare) == live


def test_a_bare_pod_keeps_its_ports_and_the_sidecar_takes_one_of_its_own() -> None:
    probed = container(readinessProbe=http_probe("http"), env=[{"name": "PORT", "value": "5000"}])
    for port, env in (("http", None), (8080, None), (8080, "PORT")):
        original = pod(probed, bare=True)
        decision = inject.inject(original, [monitor(port=port, env=env)], NATIVE)
        assert decision.injected, decision
        live = applied(original, decision)
        check_valid_pod(live)
        assert model_of(live) == probed
        sidecar = sidecar_of(live)
        assert ports_of(sidecar) == {"tl-proxy": 15080, "tl-admin": 15090}
        assert env_of(sidecar)["TRUTHLOOP_LISTEN"] == "0.0.0.0:15080"
        assert env_of(sidecar)["TRUTHLOOP_MODEL_URL"] == "http://127.0.0.1:8080"
        assert reapplied(live, original) == live


def test_the_sidecar_command_accepts_what_is_injected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract between the two shells: the injected environment parses as sidecar settings."""
    original = pod(container(ports=[("web", 5000)]))
    decision = inject.inject(original, [monitor(port=5000, env="PORT")], NATIVE)
    container_ = sidecar_of(applied(original, decision))
    for variable in container_["env"]:
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
    monkeypatch.setenv("TRUTHLOOP_MODEL_VERSION", "v3")  # the downward API's part
    settings = sidecar_cli.settings_from(cli.build_parser().parse_args(container_["args"]))
    assert (settings.proxy.listen_port, settings.proxy.model_port) == (5000, 15081)
    assert settings.admin.port == 15090
    assert settings.follower.monitor == "ml/churn"
    assert str(settings.shipper.spool_dir) == inject.SPOOL_PATH
    assert settings.spec == json.loads(env_of(container_)["TRUTHLOOP_SPEC"])
    assert settings.model_version == "v3"


@pytest.mark.parametrize(
    ("spool_bytes", "limit"),
    [("1Gi", 2**30 + 2**26), ("100Mi", 100 * 2**20 + 32 * 2**20), ("64Gi", 68 * 2**30)],
)
def test_the_spool_volume_is_limited_a_little_above_the_spool_s_own_bound(
    spool_bytes: str, limit: int
) -> None:
    settings = replace(NATIVE, spool_bytes=spool_bytes)
    assert inject.spool_size_limit(settings) == str(limit)


def test_without_a_token_secret_nothing_of_a_token_is_injected() -> None:
    original = pod()
    decision = inject.inject(original, [monitor()], replace(NATIVE, token_secret=None))
    patched = applied(original, decision)
    assert "TRUTHLOOP_TOKEN_FILE" not in env_of(sidecar_of(patched))
    assert inject.TOKEN_VOLUME not in {v["name"] for v in patched["spec"]["volumes"]}
