"""`truthloop validate -f FILE...`: check ModelMonitor YAML before it reaches a cluster.

A file may hold several YAML documents. Each ModelMonitor gets `FILE: ok ModelMonitor ns/name` on
stdout, or every problem on stderr as `FILE:LINE: spec.path: message`, LINE being the line of the
offending field (of its nearest parent when the field is missing). Empty documents are passed
over; documents of other kinds (a Deployment next to its monitor) are skipped with a note, unless
their apiVersion is truthloop's. A file with no ModelMonitor in it, and the same monitor twice,
are errors.

Exit status: 0 when every monitor is valid, 1 when any is not, 2 when a file cannot be read.
`-f -` reads standard input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from truthloop import flags
from truthloop.core import spec, yamlpos

STDIN = "-"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "validate", text, __doc__)
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file with one or more ModelMonitors (repeat for more; - for stdin)",
    )
    parser.set_defaults(run=run)


@dataclass(slots=True)
class Report:
    """What validating some files found: lines for stdout and stderr, and the exit status."""

    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    status: int = 0
    seen: dict[str, str] = field(default_factory=dict)
    """Where each monitor (`ns/name`) was first defined, as `FILE:LINE`."""

    def error(self, where: str, message: str) -> None:
        self.err.append(f"{where}: {message}")
        self.status = max(self.status, 1)


def run(args: argparse.Namespace) -> int:
    report = Report()
    for name in args.files:
        try:
            text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
        except OSError as e:
            report.err.append(f"{name}: cannot read: {e.strerror or e}")
            report.status = 2
            continue
        except UnicodeDecodeError as e:
            report.error(name, f"not UTF-8 text (byte {e.start})")
            continue
        check_text("<stdin>" if name == STDIN else name, text, report)
    for line in report.out:
        print(line)
    for line in report.err:
        print(line, file=sys.stderr)
    return report.status


def check_text(name: str, text: str, report: Report) -> None:
    """Validate every document of one file's text into `report`."""
    try:
        documents = yamlpos.load_all(text)
    except yamlpos.YamlError as e:
        report.error(f"{name}:{e.line or 1}", e.message)
        return
    monitors = 0
    for document in documents:
        value = document.value
        if value is None:
            continue
        if isinstance(value, Mapping) and _foreign(value):
            title = f"{value['kind']} {(value.get('metadata') or {}).get('name', '')}".strip()
            report.out.append(f"{name}:{document.line}: skipped {title} (not a ModelMonitor)")
            continue
        monitors += 1
        try:
            monitor = spec.parse_monitor(value)
        except spec.SpecError as e:
            for problem in e.errors:
                report.error(f"{name}:{document.line_of(problem.path)}", str(problem))
            continue
        where = f"{name}:{document.line_of('metadata.name')}"
        first = report.seen.setdefault(monitor.key, where)
        if first != where:
            report.error(
                where, f"metadata.name: ModelMonitor {monitor.key} is also defined at {first}"
            )
        else:
            report.out.append(f"{name}: ok ModelMonitor {monitor.key}")
    if monitors == 0:
        report.error(name, "no ModelMonitor in this file")


def _foreign(value: Mapping[object, object]) -> bool:
    """True for a Kubernetes object of another kind and not of truthloop's API group."""
    kind, api_version = value.get("kind"), value.get("apiVersion")
    ours = isinstance(api_version, str) and api_version.startswith("truthloop.dev/")
    metadata = value.get("metadata")
    return (
        isinstance(kind, str)
        and kind != spec.KIND
        and not ours
        and (metadata is None or isinstance(metadata, Mapping))
    )
