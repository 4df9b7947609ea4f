"""`truthloop sidecar`: run the capture proxy in front of a model.

Every flag also reads a `TRUTHLOOP_*` environment variable (the flag wins); byte sizes take
`32Mi`, `1Gi`, `500k` or plain bytes. The monitor's spec comes from `--spec-file` or from the
JSON in `TRUTHLOOP_SPEC`; without one the sidecar passes requests through and fetches the spec from
the feedback service. The bearer token for writes comes from `--token-file` (reread whenever the
service refuses it, so a rotated Secret needs no restart) or `TRUTHLOOP_TOKEN`.

Once serving it prints `proxy listening on http://HOST:PORT` and `admin listening on ...` (real
ports when given port 0) and runs until SIGTERM or SIGINT; then it stops taking requests, and
ships or spools what is queued within `--drain-seconds`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from truthloop import flags
from truthloop.core.quantity import parse_bytes
from truthloop.flags import UsageError
from truthloop.sidecar import app as sidecar_app
from truthloop.sidecar.app import AdminSettings, SidecarSettings
from truthloop.sidecar.follower import FollowerSettings
from truthloop.sidecar.proxy import ProxySettings, model_address
from truthloop.sidecar.shipper import ShipperSettings
from truthloop.sidecar.spool import SpoolError

T = TypeVar("T")

_MONITOR = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    env = os.environ.get
    parser = flags.command(subparsers, "sidecar", text, __doc__)

    flag = flags.env_flags(parser)

    flag("--listen", "TRUTHLOOP_LISTEN", "0.0.0.0:8080", "HOST:PORT the proxy serves on")
    flag("--model", "TRUTHLOOP_MODEL_URL", "http://127.0.0.1:9000", "the model's URL")
    flag("--admin", "TRUTHLOOP_ADMIN", "0.0.0.0:9090", "HOST:PORT of /metrics, /healthz, /readyz")
    flag("--feedback-url", "TRUTHLOOP_FEEDBACK_URL", None, "the feedback service's URL (required)")
    flag("--monitor", "TRUTHLOOP_MONITOR", None, "the monitor, NAMESPACE/NAME (required)")
    flag(
        "--spool-dir",
        "TRUTHLOOP_SPOOL_DIR",
        None,
        "where records wait while the service is away (required)",
    )
    flag(
        "--spec-file", "TRUTHLOOP_SPEC_FILE", None, "the ModelMonitor (JSON or YAML) to start with"
    )
    flag("--model-version", "TRUTHLOOP_MODEL_VERSION", "", "the model version put in every record")
    flag("--queue-bytes", "TRUTHLOOP_QUEUE_BYTES", "32Mi", "bound on records held in memory")
    flag("--spool-bytes", "TRUTHLOOP_SPOOL_BYTES", "1Gi", "bound on records spooled on disk")
    flag(
        "--capture-max-bytes", "TRUTHLOOP_CAPTURE_MAX_BYTES", "1Mi", "larger bodies pass uncaptured"
    )
    flag("--drain-seconds", "TRUTHLOOP_DRAIN_SECONDS", "10", "shutdown budget to ship or spool")
    flag(
        "--linger",
        "TRUTHLOOP_LINGER",
        "0.2",
        "seconds a record may wait in memory for its batch to fill (what a SIGKILL can lose)",
    )
    flag("--token-file", "TRUTHLOOP_TOKEN_FILE", None, "the write token's file, reread if refused")
    flag("--model-timeout", "TRUTHLOOP_MODEL_TIMEOUT", None, "seconds before a model call is a 504")
    flag("--max-url-bytes", "TRUTHLOOP_MAX_URL_BYTES", "8Ki", "longer request URLs get 414")
    flag("--max-header-bytes", "TRUTHLOOP_MAX_HEADER_BYTES", "32Ki", "larger request headers: 431")
    flag("--max-header-fields", "TRUTHLOOP_MAX_HEADER_FIELDS", "100", "more header fields: 431")
    flag("--header-timeout", "TRUTHLOOP_HEADER_TIMEOUT", "60", "seconds to send a head, then 408")
    flag(
        "--keepalive-timeout", "TRUTHLOOP_KEEPALIVE_TIMEOUT", "75", "seconds an idle client is kept"
    )
    flag("--body-timeout", "TRUTHLOOP_BODY_TIMEOUT", "60", "seconds between body bytes, then 408")
    flag("--send-timeout", "TRUTHLOOP_SEND_TIMEOUT", "60", "seconds a client may read nothing")
    flag("--max-connections", "TRUTHLOOP_MAX_CONNECTIONS", "1024", "client connections at once")
    parser.add_argument(
        "--log-level",
        default=env("TRUTHLOOP_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(env TRUTHLOOP_LOG_LEVEL; default %(default)s)",
    )
    parser.set_defaults(run=run)


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return value


def _positive_bytes(text: str) -> int:
    value = parse_bytes(text)
    if value < 1024:
        raise ValueError("expected at least 1Ki")
    return value


def _monitor(text: str) -> str:
    if not _MONITOR.match(text):
        raise ValueError("expected NAMESPACE/NAME")
    return text


def _token(token_file: str | None) -> str | None:
    """The write token; a token file not there yet (an optional Secret not created yet) is no
    token for now: capture is refused, spooled and retried, and the file reread meanwhile."""
    if not token_file:
        return flags.write_token(None)
    try:
        return Path(token_file).read_text().strip() or None
    except OSError:
        return None


def _spec(args: argparse.Namespace) -> Any:
    if args.spec_file:
        try:
            text = Path(args.spec_file).read_text()
        except OSError as e:
            raise UsageError(f"--spec-file {args.spec_file}: {e.strerror}") from None
        source = f"--spec-file {args.spec_file}"
    elif os.environ.get("TRUTHLOOP_SPEC"):
        text, source = os.environ["TRUTHLOOP_SPEC"], "TRUTHLOOP_SPEC"
    else:
        return None
    try:
        spec = msgspec.json.decode(text)
    except msgspec.DecodeError:
        import yaml  # only for a YAML spec: the operator injects JSON, and the sidecar stays light

        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UsageError(f"{source}: not JSON or YAML: {e}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{source}: expected a ModelMonitor object")
    return spec


def settings_from(args: argparse.Namespace) -> SidecarSettings:
    """Every flag checked, each problem named by its flag; raises UsageError."""
    listen_host, listen_port = flags.get(args, "listen", flags.address)
    model_host, model_port = flags.get(args, "model", model_address)
    admin_host, admin_port = flags.get(args, "admin", flags.address)
    feedback_url = flags.get(args, "feedback-url", flags.base_url)
    monitor = flags.get(args, "monitor", _monitor)
    spool_dir = Path(flags.get(args, "spool-dir", str))
    timeout = None if args.model_timeout is None else flags.get(args, "model-timeout", _seconds)
    try:
        proxy = ProxySettings(
            listen_host=listen_host,
            listen_port=listen_port,
            model_host=model_host,
            model_port=model_port,
            capture_max_bytes=flags.get(args, "capture-max-bytes", parse_bytes),
            model_timeout=timeout or None,
            max_url_bytes=flags.get(args, "max-url-bytes", parse_bytes),
            max_header_bytes=flags.get(args, "max-header-bytes", parse_bytes),
            max_header_fields=flags.get(args, "max-header-fields", int),
            header_timeout=flags.get(args, "header-timeout", _seconds),
            keepalive_timeout=flags.get(args, "keepalive-timeout", _seconds),
            body_timeout=flags.get(args, "body-timeout", _seconds),
            send_timeout=flags.get(args, "send-timeout", _seconds),
            max_connections=flags.get(args, "max-connections", int),
        )
    except ValueError as e:  # proxy.SettingsError: a value out of its range
        raise UsageError(str(e)) from None
    shipper = ShipperSettings(
        feedback_url=feedback_url,
        spool_dir=spool_dir,
        token=_token(args.token_file),
        token_file=Path(args.token_file) if args.token_file else None,
        monitor=monitor,
        queue_bytes=flags.get(args, "queue-bytes", _positive_bytes),
        spool_bytes=flags.get(args, "spool-bytes", _positive_bytes),
        linger=flags.get(args, "linger", _seconds),
    )
    if shipper.post_bytes > shipper.spool_bytes:  # a batch is spooled whole
        most = shipper.spool_bytes
        shipper = replace(shipper, batch_bytes=min(shipper.batch_bytes, most), post_bytes=most)
    return SidecarSettings(
        proxy=proxy,
        shipper=shipper,
        follower=FollowerSettings(feedback_url=feedback_url, monitor=monitor),
        admin=AdminSettings(host=admin_host, port=admin_port),
        model_version=args.model_version,
        spec=_spec(args),
        drain_seconds=flags.get(args, "drain-seconds", _seconds),
        pod=socket.gethostname(),
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = settings_from(args)
    except UsageError as e:
        print(f"truthloop sidecar: {e}", file=sys.stderr)
        return 2
    return flags.run_loop(_serve(settings))


async def _serve(settings: SidecarSettings) -> int:
    with flags.stop_signals() as stop:
        try:
            sidecar = await sidecar_app.start(settings)
        except (SpoolError, OSError) as e:
            print(f"truthloop sidecar: cannot start: {e}", file=sys.stderr)
            return 2
        proxy, admin = settings.proxy, settings.admin
        print(f"proxy listening on http://{proxy.listen_host}:{sidecar.port}", flush=True)
        print(f"admin listening on http://{admin.host}:{sidecar.admin_port}", flush=True)
        flags.freeze_startup_heap()
        try:
            await stop.wait()
        finally:
            await sidecar.close()
            stats = sidecar.shipper.stats
            logging.getLogger("truthloop.sidecar").info(
                "stopped: %d records shipped, %d spooled, dropped %s",
                stats.shipped,
                sidecar.shipper.spool.records,
                msgspec.json.encode(dict(stats.dropped)).decode(),
            )
    return 0
