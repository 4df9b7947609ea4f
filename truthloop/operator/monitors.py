"""One loop per ModelMonitor, and what happens when monitors come and go.

kopf tells the `Supervisor` about every ModelMonitor event (`handlers.py`); it keeps one `Worker`
per monitor. A worker is level-triggered: each pass takes the latest object and

1. parses the spec (`core.spec`); an invalid one is reported (phase Invalid, SpecValid=False,
   a Warning Event) and nothing is registered;
2. registers a new generation with the feedback service (`PUT`); a service that does not answer
   is retried with backoff and shown as Registered=False, a refusal waits for a new spec (or
   five minutes);
3. puts the namespace's own token in place (a Secret there, registered with the service),
   counts the monitor's pods and Services from the indexes (`census`), and with
   `restartExisting` rolls the workloads whose pods predate it;
4. reads the service's view of the monitor and writes `.status` when — and only when — the
   composed status differs from the last one written (`status`, `core.mergepatch`), posting
   the Events the change deserves;
5. waits for the state's next version (the service's long-poll), a newer object, a change to the
   namespace's pods or Services, or the next interval — whichever comes first.

Only the replica that holds the Lease (`election.py`) runs loops: the supervisor keeps the newest
object of every monitor on every replica, `lead` starts a loop for each, `follow` cancels them all
at once (a status write in flight is cut), and while following nothing is registered, written,
posted, rolled or swept.

Deletion has no finalizer, so nothing the operator or the service does can hold it up: on the
DELETED event the worker stops and the service is told with a short timeout; if it does not
answer, the periodic `sweep` removes service-side monitors whose ModelMonitor is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol

from truthloop.core import mergepatch, scopes
from truthloop.core.spec import SpecError
from truthloop.operator import inject, status
from truthloop.operator.census import Census, Owner
from truthloop.operator.client import (
    FeedbackClient,
    FeedbackError,
    NotRegistered,
    Rejected,
    Unavailable,
)
from truthloop.operator.kube import GROUP, VERSION, Conflict, Kube, KubeError, NotFound
from truthloop.operator.metrics import Metrics
from truthloop.operator.settings import Settings, SidecarSettings
from truthloop.operator.status import Event, Observation

log = logging.getLogger("truthloop.operator.monitors")

RESTARTED_AT = "truthloop.dev/restartedAt"
"""Pod-template annotation whose change rolls a workload (as `kubectl rollout restart` does)."""
RESTARTED_FOR = "truthloop.dev/restarted-for"
"""Workload annotation `<monitor uid>/<generation>`: what it was last rolled for. On the workload's
own metadata, written in the same patch as `RESTARTED_AT`: one PATCH, one roll, and the record
outlives the operator (a record in the pod template would itself change the template)."""
ROTATE = "truthloop.dev/rotate"
"""An annotation on a namespace's token Secret that has the operator mint a new token."""
MIN_TOKEN_LENGTH = 32
"""Shortest token the operator keeps from a Secret (one it mints has 43 characters)."""
REJECTED_RETRY = 300.0
"""Seconds before a refused registration is tried again without a new spec (a token fixed...)."""

Poll = Callable[[], Awaitable[Any]]


class Host(Protocol):
    """What the loops use of the operator that runs them (`runtime.Runtime`, which builds the
    supervisor, is one): its clients, settings, metrics and clock, and a few of its reads."""

    settings: Settings
    sidecar: SidecarSettings
    """The sidecar to inject, native or not as the cluster decided at start."""
    metrics: Metrics
    kube: Kube
    feedback: FeedbackClient
    supervisor: Supervisor
    clock: Callable[[], float]

    def census(self, chosen: inject.Target, created: str | None) -> Census: ...

    async def post_event(self, body: Mapping[str, Any], event: Event) -> None: ...

    async def workload_of(self, namespace: str, owner: Owner) -> tuple[str, str] | None: ...


class Supervisor:
    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.leading = False
        self.bodies: dict[str, Mapping[str, Any]] = {}
        """The newest object of every monitor, kept while following too."""
        self.workers: dict[str, Worker] = {}
        self._tokens: dict[str, _Placed] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}

    def changed(self, body: Mapping[str, Any]) -> None:
        key = _key(body)
        self.bodies[key] = body
        if not self.leading:
            return
        worker = self.workers.get(key)
        if worker is None:
            self.workers[key] = Worker(self.runtime, body)
        else:
            worker.update(body)

    async def deleted(self, body: Mapping[str, Any]) -> None:
        """Stop the monitor's loop and tell the service, best effort and briefly."""
        key = _key(body)
        self.bodies.pop(key, None)
        worker = self.workers.pop(key, None)
        if worker is not None:
            await worker.stop()
        if not self.leading:
            return
        try:
            await self.runtime.feedback.delete(key)
        except FeedbackError as e:
            self.runtime.metrics.feedback_errors.labels(_kind(e)).inc()
            log.warning("%s: not deleted from the feedback service (%s); the sweep will", key, e)
        else:
            log.info("%s: deleted from the feedback service", key)

    def poke(self, namespace: str | None) -> None:
        """The namespace's pods or Services changed: its monitors recount."""
        for worker in self.workers.values():
            if worker.namespace == namespace:
                worker.poke()

    def lead(self) -> None:
        """This replica took the Lease: a loop for every monitor it knows."""
        self.leading = True
        for body in list(self.bodies.values()):
            self.changed(body)

    def follow(self) -> None:
        """This replica lost the Lease: every loop stops now (cancelled, finishing on its own)."""
        self.leading = False
        workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            worker.cancel()
        self._tokens.clear()

    async def stop(self) -> None:
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers))

    async def ensure_token(self, namespace: str) -> None:
        """The namespace's own token as Secret `token_secret` there, owned by its valid monitors
        (so Kubernetes' garbage collector removes it with the last of them), and registered
        with the feedback service by its SHA-256: a token that may capture and send feedback for
        this namespace's monitors only (`core.scopes`).

        The Secret is the truth: a token found there is registered as it is. One that is
        missing, unreadable, or annotated `truthloop.dev/rotate` is replaced by a newly minted
        one, registered before it is written, so a Secret never holds a token the service
        does not know. The Secret is looked at again every `StatusSettings.token_interval`."""
        runtime = self.runtime
        admin, name = runtime.settings.feedback.token, runtime.sidecar.token_secret
        if not admin or not name or namespace == runtime.settings.operator_namespace:
            # The operator's own namespace holds the admin token (the chart's); owning it by a
            # monitor would let the garbage collector delete it with that monitor.
            return
        owners = tuple(
            sorted(
                (w.name, w.uid)
                for w in self.workers.values()
                if w.namespace == namespace and w.valid and w.uid
            )
        )
        if not owners or self._fresh(namespace, owners):
            return
        lock = self._token_locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if self._fresh(namespace, owners):
                return
            try:
                sha256 = await self._place_token(namespace, name, owners)
            except (KubeError, FeedbackError) as e:
                log.warning("%s: the token Secret %s is not in place: %s", namespace, name, e)
                return
            self._tokens[namespace] = _Placed(owners, sha256, runtime.clock())

    def _fresh(self, namespace: str, owners: tuple[tuple[str, str], ...]) -> bool:
        placed = self._tokens.get(namespace)
        interval = self.runtime.settings.status.token_interval
        return (
            placed is not None
            and placed.owners == owners
            and self.runtime.clock() - placed.checked < interval
        )

    async def _place_token(
        self, namespace: str, name: str, owners: tuple[tuple[str, str], ...]
    ) -> str:
        """Read, mint if need be, register and write the namespace's token; its SHA-256."""
        runtime = self.runtime
        key = runtime.sidecar.token_key
        try:
            secret: dict[str, Any] | None = await runtime.kube.get_secret(namespace, name)
        except NotFound:
            secret = None
        token = kept_token(secret, key, runtime.settings.feedback.token)
        minted = token is None
        if token is None:
            token = secrets.token_urlsafe(32)
        sha256 = scopes.digest(token)
        placed = self._tokens.get(namespace)
        if placed is None or placed.sha256 != sha256:
            await runtime.feedback.register_token(namespace, sha256)
            log.info("%s: %s token registered", namespace, "a new" if minted else "its")
        metadata: dict[str, Any] = {
            "labels": {"app.kubernetes.io/managed-by": "truthloop-operator"},
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelMonitor", "name": n, "uid": u}
                for n, u in owners
            ],
        }
        if minted:
            data = {key: base64.b64encode(token.encode()).decode()}
            rotated = {**metadata, "annotations": {ROTATE: None}}
            if secret is None:
                try:
                    await runtime.kube.create_secret(
                        namespace,
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": name, "namespace": namespace, **metadata},
                            "type": "Opaque",
                            "data": data,
                        },
                    )
                    return sha256
                except Conflict:
                    pass
            await runtime.kube.patch_secret(namespace, name, {"metadata": rotated, "data": data})
        elif placed is None or placed.owners != owners:
            await runtime.kube.patch_secret(namespace, name, {"metadata": metadata})
        return sha256

    async def sweeper(self) -> None:
        """Every `sweep_interval`, remove what the service keeps of deleted ModelMonitors."""
        interval = self.runtime.settings.status.sweep_interval
        await asyncio.sleep(min(60.0, interval))
        while True:
            try:
                if self.leading:
                    await self.sweep()
            except (FeedbackError, KubeError) as e:
                log.warning("sweep skipped: %s", e)
            await asyncio.sleep(interval)

    async def sweep(self) -> list[str]:
        """Delete service-side monitors of the served namespaces that have no ModelMonitor."""
        runtime = self.runtime
        served = runtime.settings.namespaces
        registered = await runtime.feedback.keys()
        present: set[str] = set()
        for namespace in served or (None,):
            present |= {_key(b) for b in await runtime.kube.list_monitors(namespace)}
        gone = [
            key
            for key in registered
            if key not in present
            and key not in self.workers
            and (not served or key.split("/", 1)[0] in served)
        ]
        for key in gone:
            await runtime.feedback.delete(key)
            log.info("%s: swept from the feedback service (its ModelMonitor is gone)", key)
        return gone


class Worker:
    """The loop of one monitor; `update` hands it a newer object, `poke` a reason to look."""

    def __init__(self, runtime: Host, body: Mapping[str, Any]) -> None:
        self.runtime = runtime
        self.body = body
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.key = f"{self.namespace}/{self.name}"
        self.valid = False
        self._known: dict[str, Any] = dict(body.get("status") or {})
        self._registered: int | None = None
        self._failures = 0
        self._restarted: set[tuple[str, str, str]] = set()
        """(kind, name, record) known to be rolled: saves reading the workload's record again."""
        self._refused_restart: int | None = None
        self._refused: tuple[int, float, str] | None = None
        """A refused generation, when it may be registered again, and why it was refused: passes
        until then only renew the status (its lastSyncTime)."""
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"truthloop-monitor-{self.key}")

    @property
    def uid(self) -> str | None:
        return (self.body.get("metadata") or {}).get("uid")

    def update(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def cancel(self) -> None:
        self._task.cancel()

    async def stop(self) -> None:
        self.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self.runtime.metrics.reconciles.inc()
            try:
                poll, delay = await self._pass(self.body)
            except Exception:
                log.exception("%s: the pass failed", self.key)
                poll, delay = None, self._backoff(None)
            await self._wait(poll, delay)

    async def _pass(self, body: Mapping[str, Any]) -> tuple[Poll | None, float]:
        runtime = self.runtime
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        try:
            chosen = inject.target(body)
        except SpecError as e:
            self.valid = False
            errors = tuple(str(error) for error in e.errors)
            await self._publish(body, Observation(generation, errors, "invalid"))
            return None, runtime.settings.status.interval
        self.valid = True
        alerts = chosen.monitor.spec.alerts
        min_samples = chosen.monitor.spec.metrics.min_samples
        counted = runtime.census(chosen, meta.get("creationTimestamp"))
        if self._registered != generation:
            refused = self._refused
            if refused is not None and refused[0] == generation and runtime.clock() < refused[1]:
                why = refused[2]
                await self._publish(
                    body,
                    Observation(
                        generation, (), "rejected", why, None, alerts, counted, min_samples
                    ),
                )
                return None, runtime.settings.status.interval
            try:
                await runtime.feedback.register(body)
            except FeedbackError as e:
                return await self._trouble(body, generation, e, alerts, counted, min_samples)
            self._registered = generation
            log.info("%s: generation %d registered", self.key, generation)
        await runtime.supervisor.ensure_token(self.namespace)
        if chosen.monitor.spec.restart_existing and counted.stale:
            await self._restart(body, chosen, counted)
        try:
            view = await runtime.feedback.view(self.key)
        except NotRegistered:
            self._registered = None
            return None, 0.0
        except FeedbackError as e:
            return await self._trouble(body, generation, e, alerts, counted, min_samples)
        self._failures = 0
        observed = Observation(
            generation, (), "registered", "", view.status, alerts, counted, min_samples
        )
        await self._publish(body, observed)
        version = view.status.state_version
        wait = runtime.settings.status.interval

        def poll() -> Awaitable[Any]:
            return runtime.feedback.state(self.key, version, wait)

        return poll, wait + runtime.settings.feedback.timeout

    async def _trouble(
        self,
        body: Mapping[str, Any],
        generation: int,
        error: FeedbackError,
        alerts: tuple[Any, ...],
        counted: Census,
        min_samples: int,
    ) -> tuple[Poll | None, float]:
        self.runtime.metrics.feedback_errors.labels(_kind(error)).inc()
        registration: status.Registration = (
            "rejected" if isinstance(error, Rejected) else "unavailable"
        )
        log.warning("%s: feedback service: %s", self.key, error)
        observed = Observation(
            generation, (), registration, str(error), None, alerts, counted, min_samples
        )
        await self._publish(body, observed)
        if isinstance(error, Rejected):
            self._registered = None
            self._refused = (generation, self.runtime.clock() + REJECTED_RETRY, str(error))
            return None, self.runtime.settings.status.interval
        return None, self._backoff(error.delay if isinstance(error, Unavailable) else None)

    def _backoff(self, hint: float | None) -> float:
        steps = self.runtime.settings.status.backoff
        delay = steps[min(self._failures, len(steps) - 1)]
        self._failures += 1
        return max(delay, hint or 0.0)

    async def _publish(self, body: Mapping[str, Any], observed: Observation) -> None:
        """Write the composed status if it differs from the last one, then post its Events."""
        runtime = self.runtime
        desired = status.compose(
            self._known, observed, runtime.clock(), runtime.settings.status.interval
        )
        patch = mergepatch.diff(self._known, desired)
        if not patch:
            return
        try:
            answer = await runtime.kube.patch_monitor_status(self.namespace, self.name, patch)
        except NotFound:
            return
        except KubeError as e:
            log.warning("%s: status not written: %s", self.key, e)
            return
        runtime.metrics.status_patches.inc()
        previous = self._known
        self._known = dict(answer.get("status") or desired)
        for event in status.events(previous, desired):
            await runtime.post_event(body, event)

    async def _restart(
        self, body: Mapping[str, Any], chosen: inject.Target, counted: Census
    ) -> None:
        """Roll the workloads whose pods predate the monitor, once per workload and spec generation,
        as the record on the workload says (so an operator restart does not roll it again)."""
        runtime = self.runtime
        generation = chosen.monitor.generation
        record = f"{self.uid}/{generation}"
        if not runtime.settings.restart_existing:
            if self._refused_restart != generation:
                self._refused_restart = generation
                message = (
                    "spec.restartExisting is set, but this operator may not restart workloads "
                    "(the chart's operator.restartExisting is off): restart them yourself"
                )
                await runtime.post_event(body, Event("Warning", "RestartNotAllowed", message))
            return
        now = datetime.datetime.fromtimestamp(runtime.clock(), datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for owner in counted.stale:
            try:
                workload = await runtime.workload_of(self.namespace, owner)
                if workload is None or (*workload, record) in self._restarted:
                    continue
                kind, name = workload
                current = (await runtime.kube.get_workload(kind, self.namespace, name))["metadata"]
                if (current.get("annotations") or {}).get(RESTARTED_FOR) == record:
                    self._restarted.add((kind, name, record))
                    continue
                patch = {
                    # resourceVersion: a workload changed since the read is left to the next pass.
                    "metadata": {
                        "resourceVersion": current.get("resourceVersion"),
                        "annotations": {RESTARTED_FOR: record},
                    },
                    "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
                }
                await runtime.kube.patch_workload(kind, self.namespace, name, patch)
            except KubeError as e:
                log.warning("%s: cannot restart the owner of %s: %s", self.key, owner, e)
                continue
            self._restarted.add((kind, name, record))
            message = f"restarted {kind} {name}: its pods predate the monitor and lack the sidecar"
            await runtime.post_event(body, Event("Normal", "RestartedWorkload", message))

    async def _wait(self, poll: Poll | None, delay: float) -> None:
        """Until woken, the poll returns, or `delay` passes; a failed poll waits a backoff."""
        waker = asyncio.ensure_future(self._wake.wait())
        polling = asyncio.ensure_future(poll()) if poll is not None else None
        tasks = {waker} if polling is None else {waker, polling}
        try:
            done, _ = await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if polling is not None and polling in done and polling.exception() is not None:
            error = polling.exception()
            if isinstance(error, FeedbackError):
                self.runtime.metrics.feedback_errors.labels(_kind(error)).inc()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff(None)):
                    await self._wake.wait()


class _Placed(NamedTuple):
    """A namespace's token as last put in place: its Secret's owners, its SHA-256 (registered
    with the service), and when the Secret was last looked at."""

    owners: tuple[tuple[str, str], ...]
    sha256: str
    checked: float


def kept_token(secret: Mapping[str, Any] | None, key: str, admin: str | None) -> str | None:
    """The token a Secret holds, or None when it is to be minted anew: no Secret, no usable
    token in it (not base64, not text, too short), `truthloop.dev/rotate` set on it, or the
    `admin` token (the copy an earlier release put in every namespace)."""
    if secret is None or ROTATE in ((secret.get("metadata") or {}).get("annotations") or {}):
        return None
    try:
        token = base64.b64decode((secret.get("data") or {}).get(key) or "").decode().strip()
    except (ValueError, UnicodeDecodeError):
        return None
    usable = MIN_TOKEN_LENGTH <= len(token) <= scopes.MAX_TOKEN_LENGTH and token != admin
    return token if usable else None


def _key(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def _kind(error: FeedbackError) -> str:
    return "rejected" if isinstance(error, Rejected) else "unavailable"
