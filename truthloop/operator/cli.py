"""`truthloop operator`: run the Kubernetes operator (kopf).

Every flag also reads a `TRUTHLOOP_*` environment variable (the flag wins). Without --namespace
it serves the whole cluster; with it (repeatable, or TRUTHLOOP_NAMESPACES=a,b) only those
namespaces. Replicas elect a leader with a Lease (--lease-name): its holder handles monitors,
every replica serves the webhooks. The write token for the feedback service comes from
--token-file or TRUTHLOOP_TOKEN; the operator uses it for its own writes and copies it into each
namespace that has a monitor, as the Secret the injected sidecars read (docs/operator.md). It runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import TypeVar

import kopf

from truthloop import flags
from truthloop.core.quantity import parse_bytes
from truthloop.flags import UsageError
from truthloop.operator import handlers
from truthloop.operator.runtime import Runtime
from truthloop.operator.settings import (
    DEFAULT_IMAGE,
    FeedbackSettings,
    LeaseSettings,
    Settings,
    SidecarSettings,
    StatusSettings,
    WebhookSettings,
)

T = TypeVar("T")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    env = os.environ.get
    parser = flags.command(subparsers, "operator", text, __doc__)

    flag = flags.env_flags(parser)

    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        metavar="NS",
        help="serve only this namespace; repeatable (env TRUTHLOOP_NAMESPACES=a,b; "
        "default: the whole cluster)",
    )
    flag("--feedback-url", "TRUTHLOOP_FEEDBACK_URL", None, "the feedback service (required)")
    flag("--token-file", "TRUTHLOOP_TOKEN_FILE", None, "file with the write token")
    flag(
        "--operator-namespace",
        "TRUTHLOOP_OPERATOR_NAMESPACE",
        env("POD_NAMESPACE", "truthloop"),
        "the operator's own namespace (its Secrets; never injected)",
    )
    flag("--admin", "TRUTHLOOP_ADMIN", "0.0.0.0:8090", "HOST:PORT of /healthz, /readyz, /metrics")
    flag("--status-interval", "TRUTHLOOP_STATUS_INTERVAL", "10", "seconds between state reads")
    flag(
        "--lease-name",
        "TRUTHLOOP_LEASE_NAME",
        "truthloop-operator",
        "the Lease in the operator's namespace whose holder handles monitors",
    )
    flag(
        "--lease-duration",
        "TRUTHLOOP_LEASE_DURATION",
        "15",
        "seconds after which an unrenewed Lease is taken over (renewed every 2/15 of it)",
    )
    flag("--webhook-host", "TRUTHLOOP_WEBHOOK_HOST", "0.0.0.0", "address of the webhook server")
    flag("--webhook-port", "TRUTHLOOP_WEBHOOK_PORT", "9443", "port of the webhook server")
    flag(
        "--webhook-service",
        "TRUTHLOOP_WEBHOOK_SERVICE",
        "truthloop-operator",
        "the Service in front of the webhook server (certificate names)",
    )
    flag(
        "--webhook-configuration",
        "TRUTHLOOP_WEBHOOK_CONFIGURATION",
        "truthloop",
        "name of the webhook configurations whose caBundle the operator sets",
    )
    flag(
        "--cert-dir",
        "TRUTHLOOP_CERT_DIR",
        None,
        "tls.crt, tls.key (and ca.crt) from e.g. cert-manager; default: self-managed",
    )
    flag(
        "--cert-secret",
        "TRUTHLOOP_CERT_SECRET",
        "truthloop-webhook-cert",
        "Secret for the self-managed certificate",
    )
    parser.add_argument(
        "--webhook-insecure",
        action="store_true",
        default=env("TRUTHLOOP_WEBHOOK_INSECURE", "") == "true",
        help="serve webhooks over plain HTTP (local runs only; env TRUTHLOOP_WEBHOOK_INSECURE)",
    )
    flag(
        "--restart-existing",
        "TRUTHLOOP_RESTART_EXISTING",
        "true",
        "true: spec.restartExisting may roll Deployments and StatefulSets",
    )
    flag("--sidecar-image", "TRUTHLOOP_SIDECAR_IMAGE", DEFAULT_IMAGE, "the sidecar's image")
    flag(
        "--sidecar-feedback-url",
        "TRUTHLOOP_SIDECAR_FEEDBACK_URL",
        None,
        "the feedback service as sidecars reach it (default: --feedback-url)",
    )
    flag(
        "--sidecar-native",
        "TRUTHLOOP_SIDECAR_NATIVE",
        "auto",
        "native sidecars: auto (Kubernetes >= 1.29), true or false",
    )
    flag(
        "--sidecar-token-secret",
        "TRUTHLOOP_SIDECAR_TOKEN_SECRET",
        "truthloop-token",
        "Secret name of the token copies ('' for none)",
    )
    flag("--sidecar-cpu-request", "TRUTHLOOP_SIDECAR_CPU_REQUEST", "50m", "sidecar CPU request")
    flag(
        "--sidecar-memory-request",
        "TRUTHLOOP_SIDECAR_MEMORY_REQUEST",
        "64Mi",
        "sidecar memory request",
    )
    flag("--sidecar-cpu-limit", "TRUTHLOOP_SIDECAR_CPU_LIMIT", "", "sidecar CPU limit")
    flag(
        "--sidecar-memory-limit", "TRUTHLOOP_SIDECAR_MEMORY_LIMIT", "256Mi", "sidecar memory limit"
    )
    flag(
        "--sidecar-queue-bytes",
        "TRUTHLOOP_SIDECAR_QUEUE_BYTES",
        "32Mi",
        "sidecar in-memory queue bound",
    )
    flag(
        "--sidecar-spool-bytes", "TRUTHLOOP_SIDECAR_SPOOL_BYTES", "1Gi", "sidecar disk spool bound"
    )
    parser.add_argument(
        "--log-level",
        default=env("TRUTHLOOP_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(env TRUTHLOOP_LOG_LEVEL; default %(default)s)",
    )
    parser.set_defaults(run=run)


def _quantity(text: str) -> str:
    """A byte size as given (the sidecar reads the same notation), once it parses."""
    parse_bytes(text)
    return text.strip()


def settings_from(args: argparse.Namespace) -> Settings:
    """Every flag checked, each problem named by its flag; raises UsageError."""
    namespaces = args.namespaces
    if namespaces is None:
        namespaces = [n for n in os.environ.get("TRUTHLOOP_NAMESPACES", "").split(",") if n]
    for namespace in namespaces:
        if not _DNS_LABEL.fullmatch(namespace):
            raise UsageError(f"--namespace {namespace!r}: expected a namespace name (no patterns)")
    feedback_url = flags.get(args, "feedback-url", flags.base_url)
    token = flags.write_token(args.token_file)
    admin_host, admin_port = flags.get(args, "admin", _address)
    native = flags.get(args, "sidecar-native", _native)
    requests = {"cpu": args.sidecar_cpu_request, "memory": args.sidecar_memory_request}
    limits = {"cpu": args.sidecar_cpu_limit, "memory": args.sidecar_memory_limit}
    return Settings(
        namespaces=tuple(namespaces),
        operator_namespace=args.operator_namespace,
        native_sidecar=native,
        restart_existing=flags.get(args, "restart-existing", _boolean),
        admin_host=admin_host,
        admin_port=admin_port,
        feedback=FeedbackSettings(url=feedback_url, token=token),
        sidecar=SidecarSettings(
            image=args.sidecar_image,
            feedback_url=flags.get(args, "sidecar-feedback-url", flags.base_url)
            if args.sidecar_feedback_url
            else feedback_url,
            requests={k: v for k, v in requests.items() if v},
            limits={k: v for k, v in limits.items() if v},
            queue_bytes=flags.get(args, "sidecar-queue-bytes", _quantity),
            spool_bytes=flags.get(args, "sidecar-spool-bytes", _quantity),
            token_secret=args.sidecar_token_secret or None,
        ),
        webhook=WebhookSettings(
            host=args.webhook_host,
            port=flags.get(args, "webhook-port", _port),
            insecure=args.webhook_insecure,
            cert_dir=args.cert_dir or None,
            cert_secret=args.cert_secret,
            service=args.webhook_service,
            configuration=args.webhook_configuration,
        ),
        status=StatusSettings(interval=flags.get(args, "status-interval", _seconds)),
        lease=LeaseSettings.lasting(
            flags.get(args, "lease-duration", _whole_seconds),
            name=flags.get(args, "lease-name", _dns_name),
        ),
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = settings_from(args)
    except UsageError as e:
        print(f"truthloop operator: {e}", file=sys.stderr)
        return 2
    runtime = Runtime(settings)
    registry = handlers.build(runtime)
    operator = kopf.operator(
        registry=registry,
        settings=runtime.kopf_settings(),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
    )
    flags.run_loop(operator)
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", _port(port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError("expected a port number 0-65535")
    return int(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < 3600:
        raise ValueError("expected seconds between 0 and 3600")
    return value


def _whole_seconds(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3600:
        raise ValueError("expected whole seconds between 1 and 3600")
    return int(text)


def _dns_name(text: str) -> str:
    if not _DNS_LABEL.fullmatch(text):
        raise ValueError("expected a DNS label (lowercase letters, digits, '-')")
    return text


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("expected true or false")
    return text == "true"


def _native(text: str) -> bool | None:
    choices = {"auto": None, "true": True, "false": False}
    if text not in choices:
        raise ValueError("expected auto, true or false")
    return choices[text]
