"""`truthloop run`: a sidecar and a feedback service in front of a model you already run.

For trying a ModelMonitor before there is a cluster: the monitor file is validated as
`truthloop validate` does, the feedback service starts (SQLite in a temporary directory unless
`--store` says where), the monitor is registered with it, and the sidecar proxies `--listen` to
`--model-url`. It prints where to send traffic and feedback, with curl lines to start from, then
a line for each event as it happens (the phase, the fallback engaged or released, the model not
accepting connections or back, model and capture errors by reason at most once a minute each),
and runs until Ctrl-C or SIGTERM; then the sidecar ships what it captured, everything closes,
and the temporary directory is removed. A store or port it cannot use is one line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from truthloop import flags
from truthloop import validate as validate_cmd
from truthloop.core import spec, yamlpos
from truthloop.flags import UsageError
from truthloop.local import observe
from truthloop.local import stack as local
from truthloop.sidecar.proxy import SettingsError, model_address

EXAMPLE_ENTITY = "customer-42"
EXAMPLE_ACTUAL: Mapping[str, Any] = {"binary": 1, "multiclass": "<true class>", "regression": 12.5}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "run", text, __doc__)
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="the ModelMonitor YAML (one)"
    )
    parser.add_argument(
        "--model-url", required=True, help="the model's base URL, e.g. http://127.0.0.1:9000"
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        help="HOST:PORT of the sidecar, where traffic goes (default %(default)s)",
    )
    parser.add_argument(
        "--feedback-listen",
        default="127.0.0.1:8081",
        help="HOST:PORT of the feedback service (default %(default)s)",
    )
    parser.add_argument(
        "--admin",
        default="127.0.0.1:9090",
        help="HOST:PORT of the sidecar's /metrics, /healthz, /readyz (default %(default)s)",
    )
    parser.add_argument(
        "--store",
        help="the feedback service's store, e.g. sqlite:///abs/path.db (default: SQLite in a"
        " temporary directory, removed at exit)",
    )
    parser.set_defaults(run=run)


def load_monitor(path: str) -> dict[str, Any]:
    """The one ModelMonitor in the file, checked as `truthloop validate` checks it.

    Raises UsageError with every problem, each as `FILE:LINE: spec.path: message`.
    """
    text = flags.text_file(path, f"-f {path}")
    report = validate_cmd.Report()
    validate_cmd.check_text(path, text, report)
    if report.status:
        raise UsageError("\n".join(report.err))
    monitors = [
        document.value
        for document in yamlpos.load_all(text)
        if isinstance(document.value, dict) and document.value.get("kind") == spec.KIND
    ]
    if len(monitors) != 1:
        raise UsageError(
            f"-f {path}: holds {len(monitors)} ModelMonitors; truthloop run fronts one model"
            " with one monitor"
        )
    return monitors[0]


def instructions(stack: local.Stack, monitor: spec.Monitor, temporary: bool) -> list[str]:
    """What to print once serving: the URLs, and curl lines shaped by the monitor's spec."""
    capture = monitor.spec.capture
    entity = capture.entity_id
    stored = f"{stack.store}, removed at exit" if temporary else stack.store
    lines = [
        f"truthloop run: ModelMonitor {stack.monitor} ({monitor.spec.task})",
        f"  traffic   {stack.proxy_url}  the sidecar: same paths and bodies as the model",
        f"  feedback  {stack.feedback_url}  actuals, metrics, datasets ({stored})",
        f"  ui        {stack.feedback_url}/ui/  the dashboard: metrics over time, drift, review",
        f"  admin     {stack.admin_url}  the sidecar's /metrics, /healthz, /readyz",
        "",
        "# a prediction through the sidecar: the answer carries X-Prediction-ID, and",
        "# X-Served-By: fallback while the monitor's fallback answers",
    ]
    request = ["curl", "-si", f"{stack.proxy_url}/<path>"]
    request += ["-H", "Content-Type: application/json"]
    if entity is not None and entity.header is not None:
        ids = f"{EXAMPLE_ENTITY},customer-43" if entity.per_row else EXAMPLE_ENTITY
        request += ["-H", f"{entity.header}: {ids}"]
    request += ["-d", "<your request body>"]
    lines.append(shlex.join(request))
    if entity is not None and entity.pointer is not None:
        where = "the request body" if entity.per_row or not capture.row_based else "each row"
        each = ", one per row," if entity.per_row else ""
        lines.append(f"# (the entity ID{each} is read from {where} at {entity.pointer})")
    actual = {"monitor": stack.monitor}
    if entity is not None:
        lines.append('# its actual, by entity ID (or by prediction ID: "prediction_id": "...")')
        actual["entity_id"] = EXAMPLE_ENTITY
    elif capture.row_based:
        lines.append("# a row's actual, by the X-Prediction-ID the answer carried and the row")
        lines.append("# (<X-Prediction-ID>.0 is the request's first row, .1 its second, ...)")
        actual["prediction_id"] = "<X-Prediction-ID>.0"
    else:
        lines.append("# its actual, by the X-Prediction-ID the answer carried")
        actual["prediction_id"] = "<X-Prediction-ID>"
    actual["actual"] = EXAMPLE_ACTUAL[monitor.spec.task]
    feedback = ["curl", "-s", f"{stack.feedback_url}/v1/feedback"]
    feedback += ["-H", "Content-Type: application/json", "-d", json.dumps(actual)]
    lines.append(shlex.join(feedback))
    base = f"{stack.feedback_url}/v1/monitors/{stack.monitor}"
    lines += [
        "# the window's metrics with confidence intervals, and the phase",
        f"curl -s {base}/metrics",
        f"curl -s {base}/state",
        "",
        "Ctrl-C stops.",
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        body = load_monitor(args.filename)
        monitor = spec.parse_monitor(body)
        model = flags.get(args, "model-url", model_address)
        addresses = {
            name: flags.get(args, name, flags.address)
            for name in ("listen", "feedback-listen", "admin")
        }
    except (UsageError, SettingsError) as e:
        print(f"truthloop run: {e}", file=sys.stderr)
        return 2
    return flags.run_loop(_serve(args.store, body, monitor, model, addresses))


async def _serve(
    store: str | None,
    body: dict[str, Any],
    monitor: spec.Monitor,
    model: local.Address,
    addresses: Mapping[str, local.Address],
) -> int:
    with tempfile.TemporaryDirectory(prefix="truthloop-run-") as workdir:
        settings = local.StackSettings(
            monitor=body,
            model=model,
            workdir=Path(workdir),
            store=store,
            listen=addresses["listen"],
            feedback=addresses["feedback-listen"],
            admin=addresses["admin"],
        )
        try:
            with flags.stop_signals() as stop:
                async with local.running(settings) as stack:
                    for line in instructions(stack, monitor, temporary=store is None):
                        print(line, flush=True)
                    following = asyncio.create_task(observe.follow(stack, _say))
                    try:
                        await stop.wait()
                    finally:
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await following
        except local.StartError as e:
            print(f"truthloop run: {e}", file=sys.stderr)
            return 2
    return 0


def _say(line: str) -> None:
    """An event line, stamped with the local time."""
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
