"""The Helm chart through a real `helm` (v4, from a PyPI wheel: tests/support/k8s_tools.py).

Every case (default values and the files under helm_values/) is linted with `--strict`, rendered
with `helm template`, and each rendered object validated against the Kubernetes 1.33 schemas;
the Prometheus Operator kinds (ServiceMonitor, PodMonitor, PrometheusRule) are CRDs that
kubernetes-validate has no schema for, so their shape is checked against the fields of the
Prometheus Operator's v1 CRDs (tests/support/prometheus_shapes.py). The operator's RBAC is
derived, not listed: the rendered Deployment's arguments go through the real `truthloop operator`
flag parser, the settings through `kube.api_calls`, and the ClusterRoles/Roles bound to its
ServiceAccount must grant exactly those calls. All helm runs happen at once in one module fixture.

The Grafana dashboard's and the PrometheusRule's queries are parsed and held to the series a real
feedback service and a real sidecar expose after traffic that makes every kind of series exist
(tests/support/promql.py): metric, label and label-value names, by()/on() labels and legends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import kmock
import kubernetes_validate
import pytest
import yaml

from tests.integration import sidecar_harness
from tests.integration import test_feedback_drift as drift_tests
from tests.integration.test_feedback_reference_chunks import labeled
from tests.support import promql
from tests.support.churn_model import Model
from tests.support.feedback import FakeClock, Service, as_csv, make_settings, monitor_body
from tests.support.helm_apiserver import HelmApiserver
from tests.support.k8s_tools import ToolUnavailable, ensure_tool
from tests.support.prometheus_shapes import PROMETHEUS_SCHEMAS
from tests.support.promql import Catalog
from tests.support.waiting import eventually
from truthloop import __version__
from truthloop import cli as truthloop_cli
from truthloop.feedback import cli as feedback_cli
from truthloop.feedback import exporter
from truthloop.operator import admission, kube
from truthloop.operator import cli as operator_cli
from truthloop.operator.settings import Settings
from truthloop.sidecar.app import Sidecar

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "truthloop"
VALUES = Path(__file__).parent / "helm_values"
KUBERNETES = "1.33"
PROMETHEUS_KINDS = set(PROMETHEUS_SCHEMAS)


@dataclass(frozen=True)
class Case:
    values: str | None
    release: str = "truthloop"
    namespace: str = "truthloop"

    def flags(self) -> list[str]:
        files = ["-f", str(VALUES / self.values)] if self.values else []
        return ["-n", self.namespace, *files]


CASES = {
    "default": Case(None),
    "postgres-replicas": Case("postgres-replicas.yaml"),
    "prometheus": Case("prometheus.yaml"),
    "namespaced": Case("namespaced.yaml", release="tl", namespace="ml-platform"),
    "sidecar-resources": Case("sidecar-resources.yaml"),
}

NOTES = ("prometheus", "postgres-replicas", "namespaced")
"""The cases whose NOTES.txt is rendered (`helm install --dry-run=client`)."""

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# values the schema must refuse: (helm flags, what the error must name)
REFUSED = {
    "sqlite-with-3-replicas": (["--set", "feedback.replicas=3"], "/feedback/replicas"),
    "negative-queue-bytes": (["--set", "sidecar.queueBytes=-1"], "/sidecar/queueBytes"),
    "negative-queue-quantity": (
        ["--set-string", "sidecar.queueBytes=-32Mi"],
        "/sidecar/queueBytes",
    ),
    "negative-volume-size": (
        ["--set-string", "feedback.store.sqlite.persistence.size=-10Gi"],
        "/feedback/store/sqlite/persistence/size",
    ),
    "negative-sidecar-memory": (
        ["--set-string", "sidecar.resources.limits.memory=-1Gi"],
        "/sidecar/resources/limits/memory",
    ),
    "unknown-top-level-key": (["--set", "feedbak.replicas=1"], "'feedbak'"),
    "unknown-nested-key": (["--set", "sidecar.resources.requests.gpu=1"], "'gpu'"),
    "webhook-timeout-over-5s": (
        ["--set", "operator.webhook.timeoutSeconds=10"],
        "/operator/webhook/timeoutSeconds",
    ),
    "native-maybe": (["--set", "sidecar.native=maybe"], "/sidecar/native"),
    "no-operator": (["--set", "operator.replicas=0"], "/operator/replicas"),
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Rendered:
    lint: dict[str, Run]
    template: dict[str, Run]
    notes: dict[str, Run]
    refused: dict[str, Run]
    parsed: dict[str, list[dict[str, Any]]]

    def objects(self, case: str) -> list[dict[str, Any]]:
        """The case's rendered objects (a fresh copy: tests may not share mutations)."""
        run = self.template[case]
        assert run.returncode == 0, run.stderr
        return copy.deepcopy(self.parsed[case])


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return ensure_tool("helm")
    except ToolUnavailable as e:
        pytest.skip(f"no helm binary for these tests: {e}")


@pytest.fixture(scope="module")
def rendered(helm: Path) -> Rendered:
    """Every helm run of this module, started at once and awaited together."""
    kube_version = ["--kube-version", f"{KUBERNETES}.0"]
    jobs = {
        ("lint", name): ["lint", "--strict", str(CHART), *c.flags(), *kube_version]
        for name, c in CASES.items()
    }
    jobs |= {
        ("template", name): [
            *("template", c.release, str(CHART), "--include-crds"),
            *c.flags(),
            *kube_version,
        ]
        for name, c in CASES.items()
    }
    jobs |= {
        ("notes", name): [
            *("install", CASES[name].release, str(CHART), "--dry-run=client"),
            *CASES[name].flags(),
        ]
        for name in NOTES
    }
    jobs |= {
        ("refused", name): ["template", "truthloop", str(CHART), *flags]
        for name, (flags, _) in REFUSED.items()
    }
    with tempfile.TemporaryDirectory() as home:
        env = _helm_env(home)

        def run(args: list[str]) -> Run:
            done = subprocess.run(
                [str(helm), *args], capture_output=True, text=True, env=env, check=False
            )
            return Run(done.returncode, done.stdout, done.stderr)

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = {key: pool.submit(run, args) for key, args in jobs.items()}
            results = {key: future.result() for key, future in futures.items()}
    runs: dict[str, dict[str, Run]] = {k: {} for k in ("lint", "template", "notes", "refused")}
    for (kind, name), result in results.items():
        runs[kind][name] = result
    parsed = {
        name: [doc for doc in yaml.load_all(run.stdout, Loader=LOADER) if doc]
        for name, run in runs["template"].items()
        if run.returncode == 0
    }
    return Rendered(**runs, parsed=parsed)


def _helm_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    return env | {
        "HELM_CACHE_HOME": f"{home}/cache",
        "HELM_CONFIG_HOME": f"{home}/config",
        "HELM_DATA_HOME": f"{home}/data",
        "KUBECONFIG": f"{home}/no-kubeconfig",
    }


# -- lint, render, schemas --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict_passes(rendered: Rendered, case: str) -> None:
    run = rendered.lint[case]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[ERROR]" not in run.stdout, run.stdout
    assert "[WARNING]" not in run.stdout, run.stdout


@pytest.mark.parametrize("case", CASES)
def test_every_object_is_valid_for_kubernetes_1_33(rendered: Rendered, case: str) -> None:
    objects = rendered.objects(case)
    assert objects, "nothing rendered"
    for obj in objects:
        if obj["kind"] in PROMETHEUS_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = f"{obj['kind']} {obj['metadata'].get('name')}"
            pytest.fail(f"{case}: {where}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("case", REFUSED)
def test_the_schema_refuses_bad_values(rendered: Rendered, case: str) -> None:
    run = rendered.refused[case]
    _, names = REFUSED[case]
    assert run.returncode != 0, f"{case} was rendered"
    assert "don't meet the specifications of the schema" in run.stderr, run.stderr
    assert names in run.stderr, run.stderr


def test_the_chart_crd_is_byte_identical_to_the_source() -> None:
    source = (ROOT / "crds" / "modelmonitor.yaml").read_bytes()
    assert (CHART / "crds" / "modelmonitor.yaml").read_bytes() == source, "run scripts/sync-crd"
    check = [sys.executable, str(ROOT / "scripts" / "sync-crd"), "--check"]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0


def test_the_rendered_crd_is_the_chart_crd(rendered: Rendered) -> None:
    crds = [o for o in rendered.objects("default") if o["kind"] == "CustomResourceDefinition"]
    source = yaml.safe_load((ROOT / "crds" / "modelmonitor.yaml").read_text())
    assert crds == [source]


def test_the_schema_covers_every_value_and_only_values() -> None:
    """Each leaf of values.yaml has a schema, and each schema property a default in values.yaml."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(values)
    declared = set(_schema_paths(schema, schema, ""))
    given = set(_value_paths(values, ""))
    assert given - declared == set(), "values without a schema"
    assert declared - given - {"/global"} == set(), "schema properties without a default"


def test_every_value_is_in_the_install_guide() -> None:
    """docs/install.md's table names each value (or the map that holds it)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = set(re.findall(r"`([a-zA-Z.]+)`", (ROOT / "docs" / "install.md").read_text()))
    missing = []
    for path in _value_paths(values, ""):
        parts = path.strip("/").split("/")
        prefixes = {".".join(parts[:n]) for n in range(min(2, len(parts)), len(parts) + 1)}
        if not prefixes & documented:
            missing.append(".".join(parts))
    assert missing == []


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _schema_paths(root: dict[str, Any], node: dict[str, Any], at: str) -> Iterator[str]:
    node = _resolve(root, node)
    properties = node.get("properties")
    leaf = at.rsplit("/", 1)[-1] in _FREE_MAPS
    if node.get("type") == "object" and properties and not leaf:
        for key, sub in properties.items():
            yield from _schema_paths(root, sub, f"{at}/{key}")
    else:
        yield at


def _value_paths(value: Any, at: str) -> Iterator[str]:
    if isinstance(value, dict) and value and at.rsplit("/", 1)[-1] not in _FREE_MAPS:
        for key, sub in value.items():
            yield from _value_paths(sub, f"{at}/{key}")
    else:
        yield at


# maps whose keys are the user's (labels, selectors) or optional (resource names): leaves here
_FREE_MAPS = {
    *("labels", "annotations", "podAnnotations", "podLabels", "nodeSelector", "affinity"),
    *("requests", "limits"),
}


# -- RBAC: exactly the operator's API calls ---------------------------------------------------

Grant = tuple[str, str, str, str, str | None]
"""(where: "*" cluster-wide or a namespace, verb, API group, resource, resourceName or None)"""


def operator_settings(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the rendered operator container runs with, through the real flag parser."""
    container = _container(objects, "operator")
    _environment(container, monkeypatch)
    args = truthloop_cli.build_parser().parse_args(container["args"])
    assert args.command == "operator"
    return operator_cli.settings_from(args)


def _environment(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's environment in this process (Secret values as placeholders)."""
    for name in list(os.environ):
        if name.startswith("TRUTHLOOP_") or name == "POD_NAMESPACE":
            monkeypatch.delenv(name)
    placeholders = {"TRUTHLOOP_STORE": "postgresql://truthloop@postgres:5432/truthloop"}
    for var in container.get("env", []):
        value = var.get("value", placeholders.get(var["name"], "from-a-secret"))
        monkeypatch.setenv(var["name"], value)


def declared_grants(settings: Settings) -> set[Grant]:
    served = settings.namespaces or ("*",)
    where = {"cluster": ("*",), "served": served, "own": (settings.operator_namespace,)}
    return {
        (place, call.verb, call.group, call.resource, name)
        for call in kube.api_calls(settings)
        for place in where[call.scope]
        for name in (call.names or (None,))
    }


def rendered_grants(objects: list[dict[str, Any]], account: tuple[str, str]) -> set[Grant]:
    """What the roles bound to the ServiceAccount `account` (namespace, name) allow."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    grants: set[Grant] = set()
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]}
        if ("ServiceAccount", *account) not in subjects:
            continue
        assert subjects == {("ServiceAccount", *account)}, "a binding shares the operator's roles"
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        place = "*" if binding["kind"] == "ClusterRoleBinding" else namespace
        for rule in role["rules"]:
            for field in ("verbs", "apiGroups", "resources", "resourceNames"):
                assert "*" not in rule.get(field, []), f"wildcard in {role['metadata']['name']}"
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for name in rule.get("resourceNames") or [None]:
                            grants.add((place, verb, group, resource, name))
    return grants


@pytest.mark.parametrize("case", CASES)
def test_rbac_grants_exactly_the_calls_the_operator_makes(
    rendered: Rendered, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered.objects(case)
    settings = operator_settings(objects, monkeypatch)
    deployment = _workload(objects, "operator")
    account = (
        deployment["metadata"]["namespace"],
        _pod(objects, "operator")["serviceAccountName"],
    )
    declared, granted = declared_grants(settings), rendered_grants(objects, account)
    assert sorted(declared - granted, key=str) == [], "calls the chart does not allow"
    assert sorted(granted - declared, key=str) == [], "grants the operator never uses"


def test_rbac_follows_the_switches(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    """Namespaced without restartExisting and with a given certificate: no apps, and in its own
    namespace only the Lease."""
    objects = rendered.objects("namespaced")
    granted = rendered_grants(objects, ("ml-platform", "tl-truthloop-operator"))
    assert {g[0] for g in granted} == {"*", "ml", "ml-staging", "ml-platform"}
    assert not [g for g in granted if g[2] == "apps"]
    assert {g[1:] for g in granted if g[0] == "ml-platform"} == {
        ("get", "coordination.k8s.io", "leases", "tl-truthloop-operator"),
        ("update", "coordination.k8s.io", "leases", "tl-truthloop-operator"),
        ("create", "coordination.k8s.io", "leases", None),
    }
    cluster_wide = {g for g in granted if g[0] == "*"}
    assert {g[3] for g in cluster_wide} == {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    }
    assert {g[4] for g in cluster_wide} == {"tl-truthloop"}


@pytest.mark.parametrize("case", CASES)
def test_only_the_operator_has_kubernetes_access(rendered: Rendered, case: str) -> None:
    objects = rendered.objects(case)
    feedback = _pod(objects, "feedback")
    assert feedback["automountServiceAccountToken"] is False
    accounts = {
        (s["namespace"], s["name"])
        for o in objects
        if o["kind"].endswith("Binding")
        for s in o["subjects"]
    }
    operator = _workload(objects, "operator")
    assert accounts == {
        (
            operator["metadata"]["namespace"],
            _pod(objects, "operator")["serviceAccountName"],
        )
    }


# -- the operator's settings match the objects the chart makes --------------------------------


@pytest.mark.parametrize("case", CASES)
def test_the_operator_is_wired_to_the_chart_objects(
    rendered: Rendered, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered.objects(case)
    settings = operator_settings(objects, monkeypatch)
    namespace = CASES[case].namespace
    assert settings.operator_namespace == namespace
    feedback_service = _one(objects, "Service", component="feedback")
    port = feedback_service["spec"]["ports"][0]["port"]
    assert (
        settings.feedback.url
        == f"http://{feedback_service['metadata']['name']}.{namespace}.svc:{port}"
    )
    assert settings.feedback.token == "from-a-secret"
    webhook_service = _one(objects, "Service", component="operator")
    assert settings.webhook.service == webhook_service["metadata"]["name"]
    webhook_port = {p["name"]: p for p in webhook_service["spec"]["ports"]}["webhook"]
    assert webhook_port["port"] == 443
    container = _container(objects, "operator")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[webhook_port["targetPort"]] == settings.webhook.port
    assert ports["admin"] == settings.admin_port
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert _one(objects, kind)["metadata"]["name"] == settings.webhook.configuration
    token_secret = settings.sidecar.token_secret
    assert token_secret is not None
    refs = [v["valueFrom"]["secretKeyRef"] for v in container["env"] if "valueFrom" in v]
    assert refs == [{"name": token_secret, "key": "token"}]
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if CASES[case].values == "sidecar-resources.yaml":
        assert secrets == [], "the user's token Secret is used, none is rendered"
    else:
        assert [s["metadata"]["name"] for s in secrets] == [token_secret]
        assert len(base64.b64decode(secrets[0]["data"]["token"])) >= 32


def test_sidecar_values_reach_the_operator(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = operator_settings(rendered.objects("default"), monkeypatch).sidecar
    assert default.image == f"ghcr.io/truthloop/truthloop:{__version__}"
    assert (dict(default.requests), dict(default.limits)) == (
        {"cpu": "50m", "memory": "64Mi"},
        {"memory": "256Mi"},
    )
    assert (default.queue_bytes, default.spool_bytes) == ("32Mi", "1Gi")
    assert default.feedback_url == "http://truthloop-feedback.truthloop.svc:8081"
    custom = operator_settings(rendered.objects("sidecar-resources"), monkeypatch)
    sidecar = custom.sidecar
    assert sidecar.image == "registry.example.com/ml/truthloop-sidecar:0.1.0-patched"
    assert (dict(sidecar.requests), dict(sidecar.limits)) == (
        {"cpu": "0.1", "memory": "128Mi"},
        {"cpu": "1", "memory": "536870912"},
    )
    assert (sidecar.queue_bytes, sidecar.spool_bytes) == ("64Mi", "2147483648")
    assert custom.native_sidecar is False
    assert operator_settings(rendered.objects("default"), monkeypatch).native_sidecar is None
    assert sidecar.feedback_url == "http://feedback.example.internal:8080"
    assert sidecar.token_secret == "ml-platform-truthloop-token"


def test_namespaced_operator(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_settings(rendered.objects("namespaced"), monkeypatch)
    assert settings.namespaces == ("ml", "ml-staging")
    assert settings.restart_existing is False
    assert settings.webhook.cert_dir is not None
    container = _container(rendered.objects("namespaced"), "operator")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(rendered.objects("namespaced"), "operator")["volumes"]}
    assert (
        volumes[mounts[settings.webhook.cert_dir]]["secret"]["secretName"]
        == "truthloop-webhook-tls"
    )


# -- the feedback service's NetworkPolicy ----------------------------------------------------


def test_no_network_policy_by_default(rendered: Rendered) -> None:
    assert not [o for o in rendered.objects("default") if o["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("case", ["namespaced", "prometheus"])
def test_the_network_policy_admits_the_operator_the_served_namespaces_and_listed_peers(
    rendered: Rendered, case: str
) -> None:
    objects = rendered.objects(case)
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    labels = {
        c: _workload(objects, c)["spec"]["template"]["metadata"]["labels"]
        for c in ("feedback", "operator")
    }
    assert _selects(spec["podSelector"], labels["feedback"])
    assert not _selects(spec["podSelector"], labels["operator"])
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    ports = {p["name"] for p in _container(objects, "feedback")["ports"]}
    assert [p["port"] for p in rule["ports"]] == ["http"]
    assert rule["ports"][0]["port"] in ports
    operator, namespaces, *peers = rule["from"]
    assert _selects(operator["podSelector"], labels["operator"])
    assert not _selects(operator["podSelector"], labels["feedback"])
    assert "namespaceSelector" not in operator  # the release's own namespace
    if case == "namespaced":
        assert namespaces == {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["ml", "ml-staging"],
                    }
                ]
            }
        }
        assert peers == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
            }
        ]
    else:
        assert namespaces == {"namespaceSelector": {}}  # cluster-wide: every namespace
        assert peers == []


# -- webhooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_webhooks_never_block_pods_and_skip_system_namespaces(
    rendered: Rendered, case: str
) -> None:
    objects = rendered.objects(case)
    namespace = CASES[case].namespace
    service = _one(objects, "Service", component="operator")["metadata"]["name"]
    mutating = _one(objects, "MutatingWebhookConfiguration")["webhooks"]
    validating = _one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    for hook in mutating + validating:
        assert hook["timeoutSeconds"] <= 5
        assert hook["sideEffects"] == "None"
        assert hook["clientConfig"]["service"] | {"path": None} == {
            "name": service,
            "namespace": namespace,
            "port": 443,
            "path": None,
        }
        assert "caBundle" not in hook["clientConfig"], "the operator owns caBundle"
    [pods] = mutating
    assert pods["failurePolicy"] == "Ignore"
    assert pods["clientConfig"]["service"]["path"] == f"/{admission.INJECT}"
    assert [(r["resources"], r["operations"]) for r in pods["rules"]] == [(["pods"], ["CREATE"])]
    excluded = [
        e["values"]
        for e in pods["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"
    ]
    assert len(excluded) == 1
    assert {namespace, "kube-system"} <= set(excluded[0])
    assert pods["objectSelector"]["matchExpressions"] == [
        {"key": "truthloop.dev/inject", "operator": "NotIn", "values": ["false"]}
    ]
    [monitors] = validating
    assert monitors["clientConfig"]["service"]["path"] == f"/{admission.VALIDATE}"
    group, version, resource = admission.WEBHOOKS[admission.VALIDATE]
    assert monitors["rules"][0]["apiGroups"] == [group]
    assert monitors["rules"][0]["apiVersions"] == [version]
    assert monitors["rules"][0]["resources"] == [resource]


def test_a_namespaced_operator_reviews_only_its_namespaces(rendered: Rendered) -> None:
    objects = rendered.objects("namespaced")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        [hook] = _one(objects, kind)["webhooks"]
        served = [
            e["values"]
            for e in hook["namespaceSelector"]["matchExpressions"]
            if e["operator"] == "In"
        ]
        assert served == [["ml", "ml-staging"]]
    [pods] = _one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert "monitoring" in pods["namespaceSelector"]["matchExpressions"][0]["values"]


# -- the feedback service's store -------------------------------------------------------------


def feedback_store(objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> str:
    container = _container(objects, "feedback")
    _environment(container, monkeypatch)
    args = truthloop_cli.build_parser().parse_args(container["args"])
    assert args.command == "feedback"
    _, _, settings = feedback_cli.settings_from(args)
    assert settings.token == "from-a-secret"
    return settings.store


def test_sqlite_on_a_claim_by_default(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered.objects("default")
    deployment = _workload(objects, "feedback")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    store = feedback_store(objects, monkeypatch)
    assert store.startswith("sqlite:///")
    container = _container(objects, "feedback")
    mount = next(
        m
        for m in container["volumeMounts"]
        if store[len("sqlite://") :].startswith(m["mountPath"] + "/")
    )
    volumes = {v["name"]: v for v in _pod(objects, "feedback")["volumes"]}
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    [pvc] = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert not [
        o
        for o in objects
        if o["kind"] == "PodDisruptionBudget" and "feedback" in o["metadata"]["name"]
    ]


def test_postgres_allows_replicas(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered.objects("postgres-replicas")
    deployment = _workload(objects, "feedback")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert feedback_store(objects, monkeypatch).startswith("postgresql://")
    env = {v["name"]: v for v in _container(objects, "feedback")["env"]}
    assert env["TRUTHLOOP_STORE"]["valueFrom"]["secretKeyRef"] == {
        "name": "truthloop-postgres",
        "key": "dsn",
    }
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    budgets = {
        o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"
    }
    assert budgets["truthloop-feedback"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }


def test_two_operator_replicas_share_a_lease_by_default(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = rendered.objects("default")
    deployment = _workload(objects, "operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert operator_settings(objects, monkeypatch).lease.name == deployment["metadata"]["name"]
    probe = _container(objects, "operator")["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz", "a follower is ready too: it serves webhooks"
    [budget] = [
        o["spec"]
        for o in objects
        if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "truthloop-operator"
    ]
    assert budget == {
        "minAvailable": 1,
        "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }


def test_one_operator_replica_may_be_evicted(rendered: Rendered) -> None:
    objects = rendered.objects("namespaced")
    assert _workload(objects, "operator")["spec"]["replicas"] == 1
    [budget] = [
        o["spec"]
        for o in objects
        if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "tl-truthloop-operator"
    ]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget


def test_an_existing_claim_is_used(rendered: Rendered) -> None:
    objects = rendered.objects("sidecar-resources")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    volumes = _pod(objects, "feedback")["volumes"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]
    assert claims == ["truthloop-data"]


# -- pod security -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_every_pod_meets_the_restricted_profile(rendered: Rendered, case: str) -> None:
    workloads = [o for o in rendered.objects(case) if o["kind"] == "Deployment"]
    assert {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in workloads} == {
        "operator",
        "feedback",
    }
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
        assert all(set(v) & {"emptyDir", "secret", "persistentVolumeClaim"} for v in pod["volumes"])
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsNonRoot"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            assert {"livenessProbe", "readinessProbe"} <= set(container)
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]
        assert (
            workload["spec"]["template"]["metadata"]["annotations"]["truthloop.dev/inject"]
            == "false"
        )


# -- the Prometheus pieces --------------------------------------------------------------------


def test_prometheus_pieces_are_off_by_default(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects("default")}
    assert not kinds & (PROMETHEUS_KINDS | {"ConfigMap"})


def test_prometheus_pieces_have_the_operator_crd_shape(rendered: Rendered) -> None:
    objects = rendered.objects("prometheus")
    found = {o["kind"]: o for o in objects if o["kind"] in PROMETHEUS_KINDS}
    assert set(found) == PROMETHEUS_KINDS
    for kind, obj in found.items():
        jsonschema.validate(obj, PROMETHEUS_SCHEMAS[kind])
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitor = found["ServiceMonitor"]["spec"]
    services = [o for o in objects if o["kind"] == "Service"]
    selected = [s for s in services if _selects(monitor["selector"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == {"truthloop-feedback", "truthloop-operator"}
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= ports
    feedback = next(e for e in monitor["endpoints"] if e["port"] == "http")
    assert feedback["honorLabels"] is True, "the service's own `namespace` label must win"
    [sidecars] = found["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert sidecars["port"] == "tl-admin"
    assert sidecars["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_pod_annotation_truthloop_dev_injected"],
            "targetLabel": "monitor",
        }
    ]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    pairs = selector.get("matchLabels", {}).items()
    expressions = selector.get("matchExpressions", [])
    return all(labels.get(k) == v for k, v in pairs) and all(
        labels.get(e["key"]) in e["values"] for e in expressions if e["operator"] == "In"
    )


def test_the_chart_ships_the_dashboard_and_the_example_alerts(rendered: Rendered) -> None:
    objects = rendered.objects("prometheus")
    rule = _one(objects, "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    engaging = [r["alert"] for r in rules if "truthloop_monitor" in r.get("labels", {})]
    assert engaging == ["TruthloopModelMetricLow"]
    low = next(r for r in rules if r["alert"] == "TruthloopModelMetricLow")
    assert 'bound="upper"' in low["expr"]
    assert low["expr"].rstrip().endswith("< 0.85")
    assert low["labels"]["truthloop_monitor"] == "{{ $labels.namespace }}/{{ $labels.monitor }}"
    dashboard_map = _one(objects, "ConfigMap")
    assert dashboard_map["metadata"]["namespace"] == "monitoring"
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard_map["data"]["truthloop.json"]) == _dashboard()


# -- the queries against the series the components expose --------------------------------------

TARGET_LABELS = {
    "ServiceMonitor": frozenset({"job", "instance", "namespace", "service", "pod", "container",
                                 "endpoint"}),
    "PodMonitor": frozenset({"job", "instance", "namespace", "pod", "container", "endpoint"}),
}  # fmt: skip
"""The labels the Prometheus Operator's scrape configs give every series of a target."""
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
"""Grafana's built-in variables that stand where PromQL wants a duration, as Grafana fills them."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _dashboard() -> dict[str, Any]:
    return json.loads((CHART / "dashboards" / "truthloop.json").read_text())


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    result_labels: tuple[str, ...] = ()
    """Templates that name labels of the result (`{{label}}`, `$labels.label`)."""


def _dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every PromQL the dashboard runs: panel targets, annotations and the variables' queries."""
    found = [
        Query(f"panel {p['title']!r} {t['refId']}", t["expr"], (t.get("legendFormat", ""),))
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    found += [
        Query(
            f"annotation {a['name']!r}",
            a["expr"],
            (a["titleFormat"], a["textFormat"], *(f"{{{{{k}}}}}" for k in _tag_keys(a))),
        )
        for a in dashboard["annotations"]["list"]
    ]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            values = re.fullmatch(r"label_values\((.+), *(\w+)\)", v["query"]["query"])
            assert values, v["query"]
            found.append(Query(f"variable {v['name']!r}", values[1], (f"{{{{{values[2]}}}}}",)))
    return found


def _tag_keys(annotation: dict[str, Any]) -> list[str]:
    return [k.strip() for k in annotation.get("tagKeys", "").split(",") if k.strip()]


def _rule_queries(objects: list[dict[str, Any]]) -> list[Query]:
    rule = _one(objects, "PrometheusRule")
    return [
        Query(
            f"rule {r['alert']!r}",
            r["expr"],
            tuple(
                "{{" + name + "}}"
                for text in [*r.get("labels", {}).values(), *r.get("annotations", {}).values()]
                for name in re.findall(r"\$labels\.(\w+)", text)
            ),
        )
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    ]


def _grafana_filled(expr: str) -> str:
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    return expr


def test_every_query_names_series_and_labels_the_components_expose(
    rendered: Rendered, scraped: Catalog
) -> None:
    """Each selector's metric and label names (and literal label values), each by()/without()/
    on()/ignoring()/group_left() label and each legend's or rule template's label exist where
    the expression uses them: Prometheus answers a query naming a missing label with nothing."""
    objects = rendered.objects("prometheus")
    problems = []
    for query in _dashboard_queries(_dashboard()) + _rule_queries(objects):
        checked = promql.check(_grafana_filled(query.expr), scraped)
        for template in query.result_labels:
            checked.legend(template)
        problems += [f"{query.where}: {p}" for p in checked.problems]
    assert not problems, "\n".join(problems)


def test_the_label_check_catches_what_prometheus_would_answer_with_nothing(
    scraped: Catalog,
) -> None:
    """The check itself: queries that run but show nothing, each found."""
    wrong = {
        'max by (reason) (truthloop_fallback_active{monitor="x"})': "label 'reason'",
        'truthloop_model_metric{source="review"}': "source='review'",
        "sum by (phase) (truthloop_monitor_phase) / sum(truthloop_window_samples)": "never match",
        "histogram_quantile(0.5, sum by (pod) (truthloop_sidecar_model_seconds_bucket))": "'le'",
        "truthloop_no_such_metric": "no series",
        "sum by (]": "does not parse",
    }  # fmt: skip
    for expr, problem in wrong.items():
        found = promql.check(expr, scraped).problems
        assert any(problem in p for p in found), (expr, found)
    checked = promql.check("max by (alert) (truthloop_alert_firing)", scraped)
    checked.legend("{{monitor}}")
    assert checked.problems == ["legend '{{monitor}}' names 'monitor', not in the result"]


def test_every_panel_annotation_and_variable_reads_the_datasource_variable() -> None:
    dashboard = _dashboard()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            assert "targets" not in panel, panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE, annotation["name"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    texts = json.dumps(dashboard)
    used = set(re.findall(r"\$\{?(\w+)", texts))
    assert used - variables - {k.lstrip("$") for k in GRAFANA_INTERVALS} == set()


def test_the_dashboard_layout_is_one_grafana_can_load() -> None:
    """Unique panel ids, panels on the 24-column grid without overlaps, each row above its
    panels, and a schemaVersion Grafana migrates from."""
    dashboard = _dashboard()
    assert isinstance(dashboard["schemaVersion"], int)
    assert 36 <= dashboard["schemaVersion"] <= 41
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"], grid["x"], grid["y"]) >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[x, y]!r}"
                cells[x, y] = panel["title"]
    order = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert order[0]["type"] == "row"
    assert [p["id"] for p in order] == ids, "panels listed in reading order"


def test_the_dashboard_has_the_promised_panels() -> None:
    """What the built-in UI shows: each metric's realized, estimated and reviewed bands, labeled vs
    total, version marks, fallback periods and alerts, phase, segments worst first, drift, the
    review queue and the sidecars' latency, errors and capture health."""
    dashboard = _dashboard()
    panels = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    quality = next(p for p in panels.values() if p.get("repeat") == "metric")
    legends = {t["legendFormat"]: t["expr"] for t in quality["targets"]}
    bands = {o["matcher"]["options"]: o["properties"] for o in quality["fieldConfig"]["overrides"]}
    for source, matcher in [
        ("realized", 'source=""'), ("estimated", 'source="estimated"'),
        ("reviewed", 'source="reviewed"'),
    ]:  # fmt: skip
        for bound in ("value", "lower", "upper"):
            expr = legends[source if bound == "value" else f"{source} {bound}"]
            assert f'bound="{bound}"' in expr, expr
            assert matcher in expr, expr
        assert {"id": "custom.fillBelowTo", "value": f"{source} upper"} in bands[f"{source} lower"]
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}

    def shown(*names: str, kind: str | None = None) -> bool:
        return any(
            all(n in e for n in names) and kind in (None, panels[t]["type"])
            for t, e in exprs.items()
        )

    assert shown("window_labeled", "window_samples")
    assert shown("truthloop_fallback_active", kind="state-timeline")
    assert shown("truthloop_alert_firing", kind="state-timeline")
    assert shown("truthloop_monitor_phase", kind="state-timeline")
    assert shown("truthloop_feature_drift")
    assert shown("truthloop_drift_share", "missing_ratio", "outlier_ratio")
    assert shown("truthloop_segment_metric", "sort(", kind="table")
    assert shown("truthloop_segment_metric", "sort(", kind="bargauge")
    assert shown("truthloop_review_queue_depth")
    assert shown("truthloop_review_oldest_age_seconds")
    assert shown("truthloop_reviews_total", "outcome")
    assert shown("truthloop_sidecar_request_seconds_bucket", "truthloop_sidecar_model_seconds")
    assert shown("truthloop_sidecar_model_errors_total", "truthloop_sidecar_requests_total")
    assert shown("truthloop_sidecar_records_dropped_total", "capture_errors")
    phases = [
        {m["text"] for mapping in p["fieldConfig"]["defaults"]["mappings"]
         for m in mapping["options"].values()}
        for title, p in panels.items() if "truthloop_monitor_phase" in exprs[title]
    ]  # fmt: skip
    assert phases
    assert all(found == set(exporter.PHASES) for found in phases)
    marks = {a["name"]: a for a in dashboard["annotations"]["list"]}
    versions = marks["Model versions"]
    assert "truthloop_version_first_seen_timestamp_seconds" in versions["expr"]
    assert versions["useValueForTime"] is True
    assert versions["expr"].endswith("* 1000"), "Grafana reads the value as milliseconds"
    assert "truthloop_fallback_active" in marks["Fallback periods"]["expr"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "monitor", "metric"} <= variables


@pytest.fixture(scope="module")
def scraped(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Every series the feedback service and a sidecar expose, scraped from real servers after
    traffic that makes each kind exist (estimated, reviewed, version, segment, review, drift,
    fallback series; a sidecar's drops, capture errors, model errors and fallback answers), with
    the labels Prometheus adds as the chart's ServiceMonitor and PodMonitor scrape them."""
    pods = _one(rendered.objects("prometheus"), "PodMonitor")["spec"]["podMetricsEndpoints"]
    relabeled = {r["targetLabel"] for e in pods for r in e.get("relabelings", [])}
    service_labels = TARGET_LABELS["ServiceMonitor"]
    pod_labels = TARGET_LABELS["PodMonitor"] | relabeled
    feedback, sidecar = asyncio.run(_scrape(tmp_path_factory.mktemp("metrics")))
    return (
        Catalog.scraped(feedback, service_labels)
        | Catalog.scraped(sidecar, pod_labels)
        | Catalog({"up": service_labels | pod_labels})
    )


async def _scrape(tmp: Path) -> tuple[str, str]:
    """(the feedback service's exposition, the sidecar's)."""
    clock = FakeClock()
    async with contextlib.AsyncExitStack() as stack:
        service = Service(make_settings(f"sqlite://{tmp}/feedback.db", clock))
        await service.start()
        stack.push_async_callback(service.stop)
        await _fill(service, clock)
        model = Model()
        await model.start()
        stack.push_async_callback(model.stop)  # _exercise stops it first; again is a no-op
        config = sidecar_harness.settings(model, service.base, tmp / "spool", queue_bytes=16)
        sidecar = await stack.enter_async_context(sidecar_harness.running(config))
        await _exercise(service, sidecar, model)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{sidecar.admin_port}/metrics") as response,
        ):
            assert response.status == 200
            exposed = await response.text()
        return await service.scrape(), exposed


async def _fill(service: Service, clock: FakeClock) -> None:
    """A monitor with a calibrated reference (estimates, drift), review, an exported segment,
    two versions and fallback answers; labels from actuals and from a reviewer; one tick."""
    await service.put_monitor(
        monitor_body(
            review={"budget": 100000, "lease": "10m"},
            segments=[{"name": "device", "pointer": "/device", "export": True}],
            metrics={"window": "1h", "minSamples": 5},
            alerts=[{"name": "accuracy-low", "metric": "accuracy", "below": 0.01, "for": "1h"}],
        )
    )
    await service.ok("POST", drift_tests.REFERENCE, data=as_csv(labeled(1000, seed=5)),
                     headers=drift_tests.CSV)  # fmt: skip
    made = []
    for seed, version in enumerate(("v1", "v2")):
        made += drift_tests.captured(
            drift_tests.rows(100, seed=seed), clock.now - 60, version, version
        )
    for i, made_record in enumerate(made):
        made_record["segments"] = {"device": ("ios", "android")[i % 2]}
    for fallback_record in made[:20]:
        fallback_record["served_by"] = "fallback"
        del fallback_record["score"]
    await service.predictions(made)
    actuals = [
        {"monitor": "ml/churn", "prediction_id": r["prediction_id"], "actual": 1} for r in made[::3]
    ]
    await service.feedback(*actuals)
    leased = await service.ok("GET", "/v1/monitors/ml/churn/review?reviewer=ann&limit=40")
    await service.feedback(
        *({"monitor": "ml/churn", "prediction_id": item["prediction_id"], "actual": 0,
           "source": "review", "reviewer": "ann"} for item in leased["items"])
    )  # fmt: skip
    await service.tick()


async def _exercise(service: Service, sidecar: Sidecar, model: Model) -> None:
    """A captured answer its 16-byte queue drops, an answer it cannot extract, a model gone
    (502) and an answer of the fallback rules."""
    client = sidecar_harness.Client(f"http://127.0.0.1:{sidecar.port}")
    assert (await client.run_one(1)).status == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{client.url}/status/200") as response:
            assert response.status == 200
        await model.stop()
        assert (await client.run_one(3)).status == 502
        await service.ok("POST", "/v1/monitors/ml/churn/fallback", json={"mode": "engaged"})
        await eventually(lambda: sidecar.live.current.fallback_active, "the sidecar follows")
    assert (await client.run_one(4)).served_by == "fallback"


# -- NOTES.txt --------------------------------------------------------------------------------


def test_notes_give_the_next_three_commands_and_the_receiver(rendered: Rendered) -> None:
    run = rendered.notes["prometheus"]
    assert run.returncode == 0, run.stderr
    notes = run.stdout.split("NOTES:", 1)[1]
    steps = re.findall(r"^\s*(kubectl [^\n]+|curl [^\n]+)$", notes, re.M)
    assert steps[0].startswith("kubectl apply -n <model-namespace> -f examples/monitor-churn.yaml")
    assert steps[1] == "kubectl get mm -A"
    assert steps[2] == "kubectl -n truthloop port-forward svc/truthloop-feedback 8081:8081 &"
    assert "curl -s localhost:8081/metrics" in steps[3]
    assert (ROOT / "examples" / "monitor-churn.yaml").is_file()
    receiver = yaml.safe_load(notes[notes.index("  route:") :])
    [hook] = receiver["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://truthloop-feedback.truthloop.svc:8081/v1/alertmanager"
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert receiver["route"]["routes"][0]["matchers"] == ['truthloop_monitor=~".+"']


def test_notes_say_what_was_installed(rendered: Rendered) -> None:
    assert "PostgreSQL, 3 replica(s)" in rendered.notes["postgres-replicas"].stdout
    assert "serves the namespaces ml, ml-staging" in rendered.notes["namespaced"].stdout


# -- the token survives upgrades (lookup against an apiserver) --------------------------------


async def test_the_generated_token_is_kept_across_upgrades(helm: Path, tmp_path: Path) -> None:
    """`helm template --dry-run=server` renders what an upgrade would: the Secret's token kept."""
    async with HelmApiserver() as api, kmock.Server(api):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        first = await _rendered_token(helm, kubeconfig, tmp_path)
        assert first != await _rendered_token(helm, kubeconfig, tmp_path), "fresh installs differ"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "truthloop-token",
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": "truthloop",
                    "meta.helm.sh/release-namespace": "truthloop",
                },
            },
            "type": "Opaque",
            "data": {"token": base64.b64encode(first.encode()).decode()},
        }
        server = str(api.url).rstrip("/")
        async with aiohttp.ClientSession() as session:
            url = f"{server}/api/v1/namespaces/truthloop/secrets"
            async with session.post(url, json=secret) as response:
                assert response.status < 300
        assert await _rendered_token(helm, kubeconfig, tmp_path) == first
        assert ("GET", "/api/v1/namespaces/truthloop/secrets/truthloop-token") in {
            (m, p) for m, p, _ in api.log
        }


async def _rendered_token(helm: Path, kubeconfig: Path, home: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        str(helm),
        "template",
        "truthloop",
        str(CHART),
        "-n",
        "truthloop",
        "--dry-run=server",
        "--disable-openapi-validation",
        "--kubeconfig",
        str(kubeconfig),
        "--show-only",
        "templates/token-secret.yaml",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_helm_env(str(home)),
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    secret = yaml.safe_load(out)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48
    return token


# -- the image ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "feedback", "sidecar"])
def test_the_image_entrypoint_runs_each_role(
    rendered: Rendered, role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Dockerfile's ENTRYPOINT is the `truthloop` script; `truthloop ROLE --help` exits 0.

    In-process (`truthloop.cli.main`, which the script calls): the same parser, without paying
    the import of kopf and friends three more times.
    """
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    entrypoint = [
        json.loads(line.split(None, 1)[1]) for line in lines if line.startswith("ENTRYPOINT")
    ]
    assert entrypoint[-1] == ["truthloop"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["truthloop"] == "truthloop.cli:main"
    with pytest.raises(SystemExit) as exited:
        truthloop_cli.main([role, "--help"])
    assert exited.value.code == 0
    assert f"truthloop {role}" in capsys.readouterr().out
    started = {
        _container(rendered.objects("default"), c)["args"][0] for c in ("operator", "feedback")
    }
    assert started == {"operator", "feedback"}, "the chart starts these roles"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = [line.split()[1] for line in lines if line.startswith("USER")][-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric: runAsNonRoot can check it without /etc/passwd"
    assert uid != "0"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__, "the chart's default image is this version"


# -- helpers ----------------------------------------------------------------------------------


def _one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (
            component is None
            or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"{len(found)} {kind} {component or ''}"
    return found[0]


def _workload(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return _one(objects, "Deployment", component)


def _pod(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return _workload(objects, component)["spec"]["template"]["spec"]


def _container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [container] = _pod(objects, component)["containers"]
    return container
