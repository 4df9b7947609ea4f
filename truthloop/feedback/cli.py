"""`truthloop feedback`: run the feedback service.

Every flag also reads a `TRUTHLOOP_*` environment variable (the flag wins). Once serving, it prints
`listening on http://HOST:PORT` (with the real port when given port 0) and runs until SIGTERM or
SIGINT, then finishes in-flight requests and closes the store.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from truthloop import flags
from truthloop.core.spec import parse_duration
from truthloop.feedback import app as feedback_app
from truthloop.feedback import settings as feedback_settings
from truthloop.feedback.settings import CloudEventSettings, HttpSettings, Settings
from truthloop.feedback.store.interface import StoreError
from truthloop.flags import UsageError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    env = os.environ.get
    parser = flags.command(subparsers, "feedback", text, __doc__)
    parser.add_argument(
        "--listen",
        default=env("TRUTHLOOP_LISTEN", "127.0.0.1:8081"),
        help="HOST:PORT to serve on (env TRUTHLOOP_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--store",
        default=env("TRUTHLOOP_STORE", feedback_settings.DEFAULT_STORE),
        help="sqlite:///absolute/path.db, sqlite://relative/path.db, or"
        " postgresql://user@host:5432/db for several replicas"
        " (env TRUTHLOOP_STORE; default %(default)s, under the working directory)",
    )
    parser.add_argument(
        "--token-file",
        default=env("TRUTHLOOP_TOKEN_FILE"),
        help="file holding the bearer token writes must carry (env TRUTHLOOP_TOKEN_FILE;"
        " or give the token itself in TRUTHLOOP_TOKEN)",
    )
    parser.add_argument(
        "--retention",
        default=env("TRUTHLOOP_RETENTION", "30d"),
        help="keep raw predictions and sidecar minutes this long; aggregates are kept"
        " (env TRUTHLOOP_RETENTION; default %(default)s)",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=env("TRUTHLOOP_MAX_BODY", str(HttpSettings().max_body_bytes)),
        help="largest request body in bytes (env TRUTHLOOP_MAX_BODY; default %(default)s)",
    )
    parser.add_argument(
        "--max-reference",
        type=int,
        default=env("TRUTHLOOP_MAX_REFERENCE", str(HttpSettings().max_reference_bytes)),
        help="largest reference data set (POST .../reference) in bytes, parsed as it arrives"
        " (env TRUTHLOOP_MAX_REFERENCE; default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        default=env("TRUTHLOOP_IDLE_TIMEOUT", "75s"),
        help="close a connection idle this long, or that takes this long to send a request's"
        " headers (env TRUTHLOOP_IDLE_TIMEOUT; default %(default)s)",
    )
    events = CloudEventSettings()
    parser.add_argument(
        "--max-event",
        type=int,
        default=env("TRUTHLOOP_MAX_EVENT", str(events.max_event_bytes)),
        help="largest CloudEvent (POST /v1/cloudevents: KServe's payload logger) in bytes"
        " (env TRUTHLOOP_MAX_EVENT; default %(default)s)",
    )
    parser.add_argument(
        "--max-waiting-events",
        type=int,
        default=env("TRUTHLOOP_MAX_WAITING_EVENTS", str(events.max_waiting)),
        help="most CloudEvent halves of one monitor waiting for their other half"
        " (env TRUTHLOOP_MAX_WAITING_EVENTS; default %(default)s)",
    )
    parser.add_argument(
        "--event-window",
        default=env("TRUTHLOOP_EVENT_WINDOW", "10m"),
        help="how long a CloudEvent half waits for its other half"
        " (env TRUTHLOOP_EVENT_WINDOW; default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env("TRUTHLOOP_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(env TRUTHLOOP_LOG_LEVEL; default %(default)s)",
    )
    parser.set_defaults(run=run)


def settings_from(args: argparse.Namespace) -> tuple[str, int, Settings]:
    host, port = flags.get(args, "listen", flags.address)
    retention = _duration(args, "retention")
    idle_timeout = _duration(args, "idle_timeout")
    if not idle_timeout:
        raise UsageError("--idle-timeout: must be more than 0s")
    token = flags.write_token(args.token_file)
    if args.max_body < 1024:
        raise UsageError("--max-body: at least 1024 bytes")
    if args.max_reference < 1024:
        raise UsageError("--max-reference: at least 1024 bytes")
    window = _duration(args, "event_window")
    if not window:
        raise UsageError("--event-window: must be more than 0s")
    if args.max_event < 1024:
        raise UsageError("--max-event: at least 1024 bytes")
    if args.max_waiting_events < 1:
        raise UsageError("--max-waiting-events: at least 1")
    settings = feedback_settings.make(
        store=args.store,
        token=token,
        retention=retention,
        http=HttpSettings(
            max_body_bytes=args.max_body,
            max_reference_bytes=args.max_reference,
            idle_timeout=idle_timeout,
        ),
        cloudevents=CloudEventSettings(
            max_event_bytes=args.max_event,
            max_waiting=args.max_waiting_events,
            pair_window=window,
        ),
    )
    return host, port, settings


def _duration(args: argparse.Namespace, name: str) -> float:
    text = getattr(args, name)
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"--{name.replace('_', '-')} {text!r}: {e}") from None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        host, port, settings = settings_from(args)
        app = feedback_app.build(settings)
    except (UsageError, ValueError) as e:
        print(f"truthloop feedback: {e}", file=sys.stderr)
        return 2
    return flags.run_loop(_serve(app, host, port))


async def _serve(app: web.Application, host: str, port: int) -> int:
    with flags.stop_signals() as stop:
        runner = feedback_app.Runner(app, handle_signals=False, access_log=None)
        try:
            await runner.setup()
        except StoreError as e:
            print(f"truthloop feedback: cannot open the store: {e}", file=sys.stderr)
            return 2
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
            address = runner.addresses[0]
            print(f"listening on http://{address[0]}:{address[1]}", flush=True)
            flags.freeze_startup_heap()
            await stop.wait()
        finally:
            await runner.cleanup()
    return 0
