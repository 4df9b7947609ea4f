"""The operator as the chart deploys it, run against the envtest control plane.

`install_chart` renders the chart with a real `helm template` and applies what the operator's
identity and webhooks are made of: its ServiceAccount, (Cluster)Roles and bindings, and both webhook
configurations, each webhook's `clientConfig.service` replaced by a `url` on 127.0.0.1 (the
apiserver cannot reach a Service here: no kube-proxy, and Endpoints refuse loopback addresses).
`Operator` runs `truthloop operator` as a process with the chart's arguments (its own addresses
and feedback URL swapped in), authenticated by a token of the chart's ServiceAccount, so the
chart's RBAC is what the API enforces; it publishes the caBundle itself. `Service` runs the real
`truthloop feedback` on SQLite. Every call here is synchronous: use them from plain tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.envtest import ControlPlane
from tests.support.ports import free_port
from tests.support.waiting import eventually

T = TypeVar("T")

CHART = Path(__file__).resolve().parents[2] / "helm" / "truthloop"
RELEASE = NAMESPACE = "truthloop"
SERVICE_ACCOUNT = "truthloop-operator"
TOKEN = "envtest-write-token"
IDENTITY = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
WEBHOOKS = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
OWN_FLAGS = ("--webhook-host", "--webhook-port", "--admin", "--feedback-url")
"""The chart's operator flags replaced by addresses on this machine."""
FORBIDDEN = re.compile(r"forbidden", re.IGNORECASE)
"""A refused call as the operator logs it ("403 Forbidden: …") and kopf does; not the bare
number, which a log line's milliseconds may hold."""
TERMINATING = "because it is being terminated"
"""The other 403: a write into a namespace a test is deleting; not a matter of RBAC."""


def wait_until(probe: Callable[[], T], what: str, within: float = 10.0) -> T:
    """`eventually` for synchronous tests and fixtures."""
    return asyncio.run(eventually(probe, what, within=within))


def render_chart(plane: ControlPlane, *values: str) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them (`values`: --set KEY=VALUE)."""
    command = [str(plane.tool("helm")), "template", RELEASE, str(CHART), "-n", NAMESPACE]
    for value in values:
        command += ["--set", value]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def reached_at(configuration: dict[str, Any], port: int) -> dict[str, Any]:
    """A webhook configuration whose webhooks call https://127.0.0.1:`port` on their Service's
    path instead of the Service."""
    hooks = []
    for hook in configuration["webhooks"]:
        service = hook["clientConfig"]["service"]
        url = f"https://127.0.0.1:{port}{service.get('path', '/')}"
        hooks.append({**hook, "clientConfig": {"url": url}})
    return {**configuration, "webhooks": hooks}


@dataclass(frozen=True)
class Chart:
    """The chart as installed: what its operator Deployment runs, and where its webhooks call."""

    args: list[str]
    """The operator container's arguments."""
    webhook_port: int


def install_chart(plane: ControlPlane, webhook_port: int) -> Chart:
    """The operator's identity and webhooks applied from the chart, the webhooks calling
    https://127.0.0.1:`webhook_port`."""
    objects = render_chart(plane)
    plane.kubectl("create", "namespace", NAMESPACE)
    applied = [o for o in objects if o["kind"] in IDENTITY]
    applied += [reached_at(o, webhook_port) for o in objects if o["kind"] in WEBHOOKS]
    plane.apply(*applied)
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == SERVICE_ACCOUNT
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return Chart(list(container["args"]), webhook_port)


class Process:
    """`python -m truthloop ARGS` in its own process group, its output in a file (read at any
    time, also after it exited, so a failure can show it)."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truthloop", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def wait_ready(self, url: str, within: float = 30.0) -> None:
        """Until `url` answers 200; fails at once, with the output, if the process exits."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(ready, f"{url} answers 200", within)
        except AssertionError as e:
            output = "\n".join(self.lines()[-40:])
            raise AssertionError(f"{self.log.stem}: {e}; its output ends:\n{output}") from None

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL to the group if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


class Service:
    """The real feedback service on SQLite, writes guarded by TOKEN."""

    def __init__(self, folder: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        args = ["feedback", f"--listen={self.url.removeprefix('http://')}"]
        args.append(f"--store=sqlite:///{folder / 'feedback.db'}")
        self.process = Process(args, folder / "feedback.log", {"TRUTHLOOP_TOKEN": TOKEN})
        self.process.wait_ready(f"{self.url}/healthz")

    def stop(self) -> None:
        """Killed: nothing of it is looked at afterwards, and a graceful stop waits for the
        long-polls of clients already gone."""
        self.process.kill()


class Operator:
    """`truthloop operator` with the chart's arguments, as the chart's ServiceAccount; stopped
    and started again on the same ports (the webhook configurations name them)."""

    def __init__(
        self,
        plane: ControlPlane,
        chart: Chart,
        feedback: str,
        folder: Path,
        webhook_port: int | None = None,
    ) -> None:
        """`webhook_port`: the chart's (what the webhook configurations call), unless this is
        another replica."""
        self.folder = folder
        self.temp = folder / "tmp"
        """Its TMPDIR: what it leaves on disk shows here."""
        self.temp.mkdir(parents=True)
        self.webhook_port = webhook_port or chart.webhook_port
        self.admin_url = f"http://127.0.0.1:{free_port()}"
        kept = [a for a in chart.args if a.split("=", 1)[0] not in OWN_FLAGS]
        self.args = [
            *kept,
            "--webhook-host=127.0.0.1",
            f"--webhook-port={self.webhook_port}",
            f"--admin={self.admin_url.removeprefix('http://')}",
            f"--feedback-url={feedback}",
        ]
        self.kubeconfig = plane.kubeconfig_for(
            NAMESPACE, SERVICE_ACCOUNT, folder / "operator.kubeconfig"
        )
        self.process: Process | None = None

    def start(self) -> None:
        """Running and ready (/readyz: certificate loaded, caBundle published, webhooks up)."""
        env = {"KUBECONFIG": str(self.kubeconfig), "TMPDIR": str(self.temp)}
        env["TRUTHLOOP_TOKEN"] = TOKEN
        self.process = Process(self.args, self.folder / "operator.log", env)
        self.process.wait_ready(f"{self.admin_url}/readyz", within=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stopped for the block, running again after it (for the tests after this one)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def lines(self) -> list[str]:
        """Its log, every run of it."""
        return self.process.lines() if self.process is not None else []

    def forbidden(self) -> list[str]:
        """Log lines of refused API calls: the chart's RBAC lacks something."""
        return [line for line in self.lines() if FORBIDDEN.search(line) and TERMINATING not in line]
