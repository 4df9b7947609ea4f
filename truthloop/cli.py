"""The `truthloop` command: one entry point, a subcommand per role.

Each subcommand lives in the module of the part it runs and registers itself here through
`add_parser(subparsers, text)`; this module only dispatches. A module is imported only when its
subcommand runs, so the sidecar in a model's pod never loads the operator's or the demo's
libraries, and `truthloop --help` (which lists every subcommand by its line here) loads none.
User errors print one clear message and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from truthloop import __version__

COMMANDS = {
    "demo": (
        "truthloop.demo.cli",
        "the whole loop locally in under a minute: drift, alert, fallback, recovery",
    ),
    "run": (
        "truthloop.local.run",
        "run a sidecar and a feedback service locally in front of a model you run",
    ),
    "validate": ("truthloop.validate", "check ModelMonitor YAML files"),
    "reference": (
        "truthloop.reference",
        "send a reference data set (CSV, NDJSON, Parquet) that drift is measured against",
    ),
    "export": (
        "truthloop.export",
        "write a monitor's labeled records (reviewed, wrong, abstained...) to CSV, JSON lines or"
        " Parquet",
    ),
    "review": (
        "truthloop.labeling",
        "lease review items to a Label Studio task file, or import its labels back",
    ),
    "backtest": (
        "truthloop.backtesting",
        "replay a monitor's alerts and fallback on its stored history; sweep their thresholds",
    ),
    "plan-review": (
        "truthloop.plan_review",
        "how many human reviews a day a monitor needs, or what a budget buys",
    ),
    "feedback": (
        "truthloop.feedback.cli",
        "run the feedback service (ingest, join, metrics, alerts, fallback state)",
    ),
    "sidecar": (
        "truthloop.sidecar.cli",
        "run the capture proxy in front of a model (capture, fallback, shipping)",
    ),
    "operator": (
        "truthloop.operator.cli",
        "run the Kubernetes operator (ModelMonitors, sidecar injection, status)",
    ),
}
"""Subcommand → (the module whose `add_parser` registers it, its line in `--help`), in order."""


def build_parser(commands: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with `commands` registered (each one's module imported), every one by default;
    the others are listed by name and line only, their modules not imported."""
    parser = argparse.ArgumentParser(
        prog="truthloop",
        description="Kubernetes-native feedback loop for ML models.",
    )
    parser.add_argument("--version", action="version", version=f"truthloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = set(commands)
    for name, (module, text) in COMMANDS.items():
        if name in chosen:
            importlib.import_module(module).add_parser(sub, text)
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    named = argv[:1] if argv[:1] and argv[0] in COMMANDS else ()
    args = build_parser(named).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
