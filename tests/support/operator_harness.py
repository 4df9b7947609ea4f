"""The operator, running for real in a test: kopf in its own thread against `Apiserver` (KMock).

Importing this module points KUBECONFIG at a per-process file, both in the environment (for the
operator commands run as processes) and in `kubernetes`' config module, which copies the variable
once, at its import: another test module may have imported it first. `apiserver()` writes the
mock's URL into that file. `OperatorThread` runs `kopf.operator` in a thread with its own event loop
(never blocking the test's loop, where the mock and the feedback service run); `start` waits for
kopf's first WATCH of ModelMonitors (rather than a ready flag) and for the webhook port. Webhooks
are served over plain HTTP on a fixed 127.0.0.1 port. `World` bundles the three running parts for
a test (`operator_fixtures` starts them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

KUBECONFIG = Path(tempfile.gettempdir()) / f"truthloop-tests-kubeconfig-{os.getpid()}.yaml"
os.environ["KUBECONFIG"] = str(KUBECONFIG)

import aiohttp  # noqa: E402
import kmock  # noqa: E402
import kopf  # noqa: E402
import kubernetes.config.kube_config  # noqa: E402
import yarl  # noqa: E402

from tests.support.apiserver_mock import MONITORS, Apiserver  # noqa: E402
from tests.support.feedback import FakeClock, Service, make_settings  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402
from truthloop import cli as truthloop_cli  # noqa: E402
from truthloop.operator import cli as operator_cli  # noqa: E402
from truthloop.operator import handlers, kube  # noqa: E402
from truthloop.operator.runtime import Runtime  # noqa: E402
from truthloop.operator.settings import (  # noqa: E402
    FeedbackSettings,
    LeaseSettings,
    Settings,
    StatusSettings,
    WebhookSettings,
)

kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(KUBECONFIG)

MONITOR_PATH = "/apis/truthloop.dev/v1alpha1/namespaces/{namespace}/modelmonitors"


@contextlib.asynccontextmanager
async def apiserver(**options: Any) -> AsyncIterator[Apiserver]:
    """The mock apiserver on 127.0.0.1, with KUBECONFIG pointing at it."""
    async with Apiserver(**options) as api, kmock.Server(api):
        KUBECONFIG.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
            f"clusters: [{{name: test, cluster: {{server: '{str(api.url).rstrip('/')}'}}}}]\n"
            "users: [{name: test, user: {token: test}}]\n"
            "contexts: [{name: test, context: {cluster: test, user: test}}]\n"
        )
        yield api


def settings(feedback_url: str, token: str | None = None, **overrides: Any) -> Settings:
    """Settings for a test operator: insecure webhooks on a free port, quick loops."""
    values: dict[str, Any] = {
        "operator_namespace": "truthloop",
        "native_sidecar": True,
        "admin_host": "127.0.0.1",
        "admin_port": 0,
        "feedback": FeedbackSettings(url=feedback_url, token=token, timeout=2.0),
        "webhook": WebhookSettings(host="127.0.0.1", port=free_port(), insecure=True),
        "status": StatusSettings(interval=0.5, backoff=(0.05, 0.1, 0.2), sweep_interval=3600),
        "lease": LeaseSettings(duration=2, renew_deadline=1.4, retry_period=0.2),
    }
    values.update(overrides)
    return Settings(**values)


class OperatorThread:
    """`kopf.operator` in a thread; `stop()` sets its stop flag and joins it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(settings)
        self.registry = handlers.build(self.runtime)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    @property
    def leading(self) -> bool:
        """Whether this operator holds the Lease (its gauge, as /metrics shows it)."""
        return self.metric("truthloop_operator_leader") == 1

    def metric(self, name: str) -> float:
        return self.runtime.metrics.registry.get_sample_value(name) or 0.0

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.webhook.port}"

    def _main(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.runtime.kopf_settings(),
                    standalone=True,
                    clusterwide=not self.settings.namespaces,
                    namespaces=list(self.settings.namespaces),
                    stop_flag=self._stop,
                )
            )
        except BaseException as e:
            self.error = e

    async def start(self, api: Apiserver) -> None:
        self._thread.start()
        await eventually(
            lambda: any(
                m == "GET" and "/modelmonitors" in p and "watch=true" in p for m, p, _ in api.log
            ),
            what="kopf watching ModelMonitors",
        )
        await eventually(self._listening, what="the webhook server listening")

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.settings.webhook.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 15)
        assert not self._thread.is_alive(), "the operator did not stop within 15 s"
        assert self.error is None, f"the operator failed: {self.error!r}"


class Command:
    """A `truthloop operator` process (`World.start_command`); its stderr goes to `log`."""

    def __init__(
        self, process: asyncio.subprocess.Process, admin: int, webhook: int, log: Path
    ) -> None:
        self.process = process
        self.admin_url = f"http://127.0.0.1:{admin}"
        self.webhook_url = f"http://127.0.0.1:{webhook}"
        self.log = log

    async def admin(self, path: str) -> tuple[int, str]:
        """GET on the admin port: (status, body), or (0, "") while nothing listens."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(self.admin_url + path) as response,
            ):
                return response.status, await response.text()
        except aiohttp.ClientError:
            return 0, ""

    async def ready(self) -> bool:
        return (await self.admin("/readyz"))[0] == 200

    async def leads(self) -> bool:
        """Whether its /metrics says it holds the Lease."""
        _, text = await self.admin("/metrics")
        return "truthloop_operator_leader 1.0" in text.splitlines()

    async def stop(self) -> int:
        """SIGTERM (unless it has ended) and its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)


def monitor(api: Apiserver, namespace: str, name: str) -> dict[str, Any]:
    return api.object(MONITORS, namespace, name)


OPERATOR_AGENTS = ("kopf/", "truthloop-operator")
CLUSTER_SCOPED = {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}
VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def undeclared(api: Apiserver, settings: Settings, *others: Settings) -> list[str]:
    """The operators' requests (kopf's and their own, told by User-Agent) that `kube.api_calls`
    of none of their settings declares: every one of them would be refused by RBAC made from
    those lists. Discovery (/api, /apis, /version) needs no RBAC and is left out."""
    declared = [call for each in (settings, *others) for call in kube.api_calls(each)]
    missing = []
    for method, path_qs, agent in api.log:
        if not agent.startswith(OPERATOR_AGENTS):
            continue
        url = yarl.URL(path_qs)
        parts = url.path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, rest = "", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, rest = parts[1], parts[3:]
        else:
            continue
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], rest[1] if len(rest) > 1 else None
        resource = "/".join([plural, *rest[2:]])
        if method == "GET":
            verb = "watch" if url.query.get("watch") == "true" else "get" if name else "list"
        else:
            verb = VERBS[method]
        if namespace is None:
            scope = "cluster" if plural in CLUSTER_SCOPED else "served"
        else:
            scope = "own" if namespace == settings.operator_namespace else "served"
        if not any(
            call.verb == verb
            and call.group == group
            and call.resource == resource
            and call.scope == scope
            and (not call.names or name in call.names)
            for call in declared
        ):
            missing.append(f"{verb} {group or 'core'}/{resource} ({scope}, name {name}): {path_qs}")
    return sorted(set(missing))


TOKEN = "s3cret"


class World:
    """The running parts, and what tests do with them."""

    def __init__(self, api: Apiserver, store: str, clock: FakeClock, port: int) -> None:
        self.api = api
        self.store = store
        self.clock = clock
        self.port = port
        self.feedback: Service | None = None
        self.operator: OperatorThread | None = None
        self.replicas: list[OperatorThread] = []
        """Further operators against the same apiserver and service (`add_replica`)."""
        self.commands: list[Settings] = []
        """The settings of `truthloop operator` processes a test ran against this world, so
        their requests count as declared."""

    @property
    def service(self) -> Service:
        assert self.feedback is not None, "the feedback service is stopped"
        return self.feedback

    async def start_feedback(self) -> Service:
        """The feedback service on this world's port (again, after `stop_feedback`)."""
        service = Service(make_settings(self.store, self.clock, token=TOKEN))
        await service.start(self.port)
        self.feedback = service
        return service

    async def add_replica(self, **overrides: Any) -> OperatorThread:
        """Another operator like this world's, started (the fixture stops it)."""
        assert self.operator is not None
        values = {"feedback": self.operator.settings.feedback, **overrides}
        replica = OperatorThread(settings(self.service.base, **values))
        self.replicas.append(replica)
        await replica.start(self.api)
        return replica

    async def start_command(self, directory: Path, *flags: str) -> Command:
        """`truthloop operator` as a process against this world, with the test defaults of a
        command and `flags`; its settings join `commands`."""
        admin, webhook = free_port(), free_port()
        token, log = directory / "token", directory / f"operator-{admin}.log"
        token.write_text(TOKEN)
        args = [
            "operator",
            "--feedback-url", self.service.base,
            "--token-file", str(token),
            "--admin", f"127.0.0.1:{admin}",
            "--webhook-host", "127.0.0.1", "--webhook-port", str(webhook), "--webhook-insecure",
            "--status-interval", "0.5",
            *flags,
        ]  # fmt: skip
        parsed = truthloop_cli.build_parser().parse_args(args)
        self.commands.append(operator_cli.settings_from(parsed))
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "truthloop", *args,
                env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
                stdout=asyncio.subprocess.DEVNULL, stderr=output,
            )  # fmt: skip
        return Command(process, admin, webhook, log)

    async def stop_feedback(self) -> None:
        await self.service.stop()
        self.feedback = None

    async def create(self, body: dict[str, Any], plural_path: str | None = None) -> dict[str, Any]:
        meta = body["metadata"]
        path = plural_path or MONITOR_PATH.format(namespace=meta["namespace"])
        async with self.api.post(path, json=body) as response:
            assert response.status < 300, await response.text()
            return dict(await response.json())

    async def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.api.patch(path, json=patch, headers=headers) as response:
            assert response.status < 300, await response.text()
            return dict(await response.json())

    async def delete(self, namespace: str, name: str) -> None:
        path = MONITOR_PATH.format(namespace=namespace) + f"/{name}"
        async with self.api.delete(path) as response:
            assert response.status < 300, await response.text()

    def monitor(self, namespace: str, name: str) -> dict[str, Any]:
        return self.api.object(MONITORS, namespace, name)

    def status(self, namespace: str = "ml", name: str = "churn") -> dict[str, Any]:
        return dict(self.monitor(namespace, name).get("status") or {})

    def condition(self, kind: str, namespace: str = "ml", name: str = "churn") -> dict[str, Any]:
        found = [c for c in self.status(namespace, name).get("conditions", []) if c["type"] == kind]
        return found[0] if found else {}

    def events(self, reason: str | None = None, name: str = "churn") -> list[dict[str, Any]]:
        """Events posted about the monitor `name`, oldest first."""
        return [
            body
            for method, path, body in self.api.writes
            if method == "POST"
            and path.endswith("/events")
            and body["involvedObject"]["name"] == name
            and (reason is None or body["reason"] == reason)
        ]

    def status_patches(self, name: str = "churn") -> int:
        return self.api.count("PATCH", f"/modelmonitors/{name}/status")

    def passes(self) -> float:
        assert self.operator is not None
        return self.operator.metric("truthloop_operator_reconciles_total")


def secret_value(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


WorldFactory = Callable[..., Awaitable[World]]
