"""The kopf handlers: thin adapters from kopf's events and admission reviews to the runtime.

`build(runtime)` returns a registry of its own (no module-level state):
- login through the `kubernetes` client's configuration (in-cluster, else kubeconfig);
- startup/cleanup open and close the runtime;
- three indexes, by namespace: valid monitors as injection `Target`s (what the webhook looks
  up, with no API call per pod), pod facts and Service facts (what the census counts);
- events: every ModelMonitor event goes to the supervisor (its loop, or its deletion); pod and
  Service events poke the monitors of their namespace;
- the mutating webhook on pod CREATE calls `inject.inject`, counts the decision, logs it and
  applies its patch; the validating webhook refuses a ModelMonitor that `core.spec` refuses,
  naming every field path, and logs it as the user's mistake it is: a WARNING naming the object
  and the fields (kopf's own ERROR "failed permanently" for that refusal is filtered out while
  the operator runs).

Every handler is a coroutine: kopf would run plain functions in a thread pool, and none of these
block.
"""

from __future__ import annotations

import logging
from typing import Any

import jsonpatch
import kopf

from truthloop.core.spec import SpecError, parse_update
from truthloop.operator import admission, census, inject
from truthloop.operator.kube import GROUP, PLURAL, VERSION
from truthloop.operator.runtime import MONITORS, PODS, SERVICES, Runtime

log = logging.getLogger("truthloop.operator.handlers")
KOPF_OBJECTS = logging.getLogger("kopf.objects")


class Refusals(logging.Filter):
    """Drops kopf's ERROR for a refused ModelMonitor: kopf reports every `AdmissionError` (a
    `PermanentError`) as a handler that "failed permanently", but a refusal is the webhook doing
    its job on a user's mistake, which `validate_monitor` logs as a WARNING instead."""

    PREFIX = f"Webhook {admission.VALIDATE!r} failed permanently"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.PREFIX)


def build(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    supervisor = runtime.supervisor
    refusals = Refusals()

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(**_: Any) -> None:
        KOPF_OBJECTS.addFilter(refusals)
        await runtime.start()

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop()
        KOPF_OBJECTS.removeFilter(refusals)

    @kopf.index(GROUP, VERSION, PLURAL, id=MONITORS, registry=registry)
    async def tl_monitors(
        body: kopf.Body, namespace: str | None, **_: Any
    ) -> dict[str | None, inject.Target]:
        try:
            return {namespace: inject.target(dict(body))}
        except SpecError:
            return {}

    @kopf.index("", "v1", "pods", id=PODS, registry=registry)
    async def tl_pods(
        body: kopf.Body, namespace: str | None, **_: Any
    ) -> dict[str | None, dict[str, Any]]:
        return {namespace: census.pod_facts(body)}

    @kopf.index("", "v1", "services", id=SERVICES, registry=registry)
    async def tl_services(
        body: kopf.Body, namespace: str | None, **_: Any
    ) -> dict[str | None, dict[str, Any]]:
        return {namespace: census.service_facts(body)}

    # The indexes come as keywords named by their ids (runtime.Indices.capture reads them).
    @kopf.on.event(GROUP, VERSION, PLURAL, id="monitor_events", registry=registry)
    async def monitor_event(event: kopf.RawEvent, **kwargs: Any) -> None:
        runtime.indices.capture(kwargs)
        if event["type"] == "DELETED":
            await supervisor.deleted(event["object"])
        else:
            supervisor.changed(event["object"])

    @kopf.on.event("", "v1", "pods", id="pod_events", registry=registry)
    @kopf.on.event("", "v1", "services", id="service_events", registry=registry)
    async def neighbour_event(namespace: str | None, **kwargs: Any) -> None:
        runtime.indices.capture(kwargs)
        supervisor.poke(namespace)

    @kopf.on.mutate(
        "",
        "v1",
        "pods",
        id=admission.INJECT,
        operations=["CREATE"],
        ignore_failures=True,
        registry=registry,
    )
    async def inject_pod(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        runtime.indices.capture(kwargs)
        pod = dict(body)
        namespace = body.metadata.namespace
        targets = runtime.indices.targets(namespace)
        decision = inject.inject(pod, targets, runtime.sidecar, namespace)
        runtime.metrics.injections.labels(decision.reason).inc()
        name = body.metadata.name or f"{body.metadata.get('generateName', '')}*"
        log.info(
            "pod %s/%s: %s: %s",
            namespace,
            name,
            decision.reason,
            decision.message,
            extra={"reason": decision.reason, "monitor": decision.monitor},
        )
        if decision.injected:
            ops = [dict(op) for op in decision.patch]
            patch.fns.append(lambda raw: jsonpatch.apply_patch(raw, ops, in_place=True))

    @kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        id=admission.VALIDATE,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    async def validate_monitor(body: kopf.Body, **kwargs: Any) -> None:
        try:
            parse_update(dict(body), kwargs.get("old"))
        except SpecError as e:
            meta = body.metadata
            log.warning(
                "ModelMonitor %s/%s refused (%s, a user error): %s",
                meta.namespace,
                meta.name,
                kwargs.get("operation"),
                e,
                extra={"fields": [error.path for error in e.errors]},
            )
            raise kopf.AdmissionError(f"invalid ModelMonitor: {e}", code=422) from None

    return registry
