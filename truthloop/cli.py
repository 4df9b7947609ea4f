"""The `truthloop` command: one entry point, a subcommand per role.

Each subcommand lives in the module of the part it runs and registers itself here through
`add_parser(subparsers)`; this module only dispatches. User errors print one clear message and exit
non-zero; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from truthloop import __version__
from truthloop import validate as validate_cmd
from truthloop.demo import cli as demo_cmd
from truthloop.feedback import cli as feedback_cmd
from truthloop.local import run as run_cmd
from truthloop.operator import cli as operator_cmd
from truthloop.sidecar import cli as sidecar_cmd

COMMANDS = (demo_cmd, run_cmd, validate_cmd, feedback_cmd, sidecar_cmd, operator_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truthloop",
        description="Kubernetes-native feedback loop for ML models.",
    )
    parser.add_argument("--version", action="version", version=f"truthloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
