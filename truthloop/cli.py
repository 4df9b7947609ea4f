"""The `truthloop` command: one entry point, a subcommand per role.

Each subcommand lives in the module of the part it runs and registers itself here through
`add_parser(subparsers)`; this module only dispatches. A module is imported only when its
subcommand runs (or for `truthloop --help`, which lists them all), so the sidecar in a model's pod
never loads the operator's or the demo's libraries. User errors print one clear message and exit
non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from truthloop import __version__

COMMANDS = {
    "demo": "truthloop.demo.cli",
    "run": "truthloop.local.run",
    "validate": "truthloop.validate",
    "feedback": "truthloop.feedback.cli",
    "sidecar": "truthloop.sidecar.cli",
    "operator": "truthloop.operator.cli",
}
"""Subcommand → the module whose `add_parser` registers it, in `--help` order."""


def build_parser(commands: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser with `commands` registered (each one's module imported), every one by default."""
    parser = argparse.ArgumentParser(
        prog="truthloop",
        description="Kubernetes-native feedback loop for ML models.",
    )
    parser.add_argument("--version", action="version", version=f"truthloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        importlib.import_module(COMMANDS[name]).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    named = argv[:1] if argv[:1] and argv[0] in COMMANDS else COMMANDS
    args = build_parser(named).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
