"""`truthloop backtest -f monitor.yaml (--feedback-url URL | --store URL)`: how a monitor's
alerts and fallback would have acted on its stored history, before they act on traffic.

The file's ModelMonitor (which may differ from the one the service runs: other thresholds, other
`for`, another `recoverAfter`) is replayed on the registered monitor of the same name's minute
counters over `--from` (a time, or a duration before `--to`; 30d by default) to `--to` (now):
when each alert would have fired, when the fallback would have engaged, for how long and for
how much of the traffic, and how good the model was around each episode. `--sweep` tries a grid
(`--sweep 'alerts[accuracy-low].below=0.70:0.90:0.01' --sweep 'alerts[accuracy-low].for=0s,5m'`)
and scores each candidate: false engagements, detection delay, time in fallback, the Pareto
front marked. `--suggest` proposes thresholds from the metric's historical spread.

With `--feedback-url` the service computes it (`POST .../backtest`, the token as for other
writes); with `--store` this process reads the store itself (the service's own store URL) and
computes the same. The answer is a table, or JSON with `--json`; `--html FILE` also writes a
self-contained page with a timeline.

Exit status: 0 done, 1 the service refused or could not be reached, 2 a bad flag or file (one
line naming the file and line of the field at fault).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from truthloop import flags, remote
from truthloop.core import backtestpage, spec, yamlpos
from truthloop.core.backtest import Around, Backtest, Episode, Figure
from truthloop.core.metrics import Estimate
from truthloop.core.rulehistory import RulesVsModel
from truthloop.core.spec import format_duration, format_time
from truthloop.flags import UsageError

TIMEOUT = 600.0
"""Seconds the service may take to answer a backtest (a 90-day sweep takes a while)."""
SHOWN_CANDIDATES = 30
"""A sweep with more candidates shows its Pareto front only."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "backtest", text, __doc__)
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="the ModelMonitor YAML to test"
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--feedback-url", metavar="URL", help="the feedback service computes it")
    where.add_argument("--store", metavar="URL", help="read the service's store directly")
    parser.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="with --feedback-url: a token of the monitor's namespace (or set TRUTHLOOP_TOKEN)",
    )
    parser.add_argument("--from", dest="start", default="30d", metavar="TIME", help="default 30d")
    parser.add_argument("--to", dest="end", default=None, metavar="TIME", help="default now")
    parser.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="FIELD=VALUES",
        help="alerts[NAME].below/above/for or fallback.recoverAfter = a,b,c or first:last:step",
    )
    parser.add_argument("--suggest", action="store_true", help="suggest thresholds")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--html", metavar="FILE", default=None, help="also write an HTML page")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Asked:
    """The file's monitor and the request body the flags make."""

    name: str
    document: yamlpos.Document
    key: str
    body: dict[str, Any]


def run(args: argparse.Namespace) -> int:
    try:
        asked = read(args)
        found = asyncio.run(_store(args, asked) if args.store else _service(args, asked))
    except UsageError as e:
        return remote.fail("backtest", str(e), 2)
    except remote.Unreachable as e:
        return remote.fail("backtest", e.said(), 1)
    except remote.Failed as e:
        return remote.fail("backtest", e.message, e.status)
    if args.html:
        try:
            Path(args.html).write_text(backtestpage.render(found), encoding="utf-8")
        except OSError as e:
            return remote.fail("backtest", f"{args.html}: {e.strerror or e}", 2)
    if args.json:
        sys.stdout.write(msgspec.json.encode(found).decode() + "\n")
    else:
        show(found, Console(), args.sweeps)
    return 0


def read(args: argparse.Namespace) -> Asked:
    """The file's one ModelMonitor and the body asking for its backtest; a UsageError names the
    file and line of what is wrong."""
    name = args.filename
    text = flags.text_file(name, name)
    try:
        documents = yamlpos.load_all(text)
    except yamlpos.YamlError as e:
        raise UsageError(f"{name}:{e.line or 1}: {e.message}") from None
    monitors = [
        d for d in documents if isinstance(d.value, dict) and d.value.get("kind") == spec.KIND
    ]
    if len(monitors) != 1:
        raise UsageError(f"{name}: expected one ModelMonitor, found {len(monitors)}")
    (document,) = monitors
    try:
        monitor = spec.parse_monitor(document.value)
    except spec.SpecError as e:
        raise UsageError(_where(name, document, e.errors)) from None
    body: dict[str, Any] = {
        "monitor": document.value,
        "from": args.start,
        "sweeps": list(args.sweeps),
        "suggest": bool(args.suggest),
    }
    if args.end is not None:
        body["to"] = args.end
    return Asked(name, document, monitor.key, body)


FLAGS = {"from": "--from", "to": "--to", "sweeps": "--sweep", "sweep": "--sweep"}
"""A refused request's field → the flag that set it."""


def _where(name: str, document: yamlpos.Document, errors: Sequence[spec.FieldError]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{name}:{document.line_of(first.path)}: {first}{more}"


def _problem(asked: Asked, errors: Sequence[spec.FieldError]) -> str:
    """A refused request's first problem said as a flag's or as the file's (at its line)."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first.path.startswith("monitor"):
        path = first.path.removeprefix("monitor").removeprefix(".")
        where = f"{asked.name}:{asked.document.line_of(path)}"
        return f"{where}: {path}: {first.message}{more}"
    field, _, index = first.path.partition("[")
    if field == "sweeps" and index:
        shown = asked.body["sweeps"][int(index.rstrip("]"))]
        return f"--sweep {shown!r}: {first.message}{more}"
    flag = FLAGS.get(field, field)
    return f"{flag}: {first.message}{more}"


async def _store(args: argparse.Namespace, asked: Asked) -> Backtest:
    """The backtest computed here on the store's history (`feedback.backtests`)."""
    from truthloop.feedback import backtests
    from truthloop.feedback.store import open_store

    try:
        store = open_store(args.store)
    except ValueError as e:
        raise UsageError(f"--store: {e}") from None
    await store.open()
    try:
        registered = {r.monitor.key: r for r in await store.load_monitors()}
        found = registered.get(asked.key)
        if found is None:
            held = ", ".join(sorted(registered)) or "none"
            raise UsageError(f"--store: no monitor {asked.key} in the store (it holds: {held})")
        try:
            request = backtests.request(asked.body, time.time(), asked.key, found.body)
            return await backtests.run(store, found, request)
        except spec.SpecError as e:
            raise UsageError(_problem(asked, e.errors)) from None
    finally:
        await store.close()


async def _service(args: argparse.Namespace, asked: Asked) -> Backtest:
    """The backtest the service computes (`POST .../backtest`)."""
    base = flags.get(args, "feedback-url", flags.base_url)
    token = flags.write_token(args.token_file)
    url = f"{base}/v1/monitors/{asked.key}/backtest"
    status, answer = await remote.call(
        "POST", url, token, TIMEOUT, body=msgspec.json.encode(asked.body)
    )
    if status == 200:
        return msgspec.convert(answer, Backtest)
    details = answer.get("details") if isinstance(answer, dict) else None
    if status == 400 and details:
        errors = [spec.FieldError(str(d.get("field")), str(d.get("message"))) for d in details]
        raise UsageError(_problem(asked, errors))
    raise remote.Failed(f"{asked.key}: {remote.refused(status, answer)}", 1)


def show(found: Backtest, console: Console, sweeps: Sequence[str] = ()) -> None:
    """The backtest as a terminal report: what happened, the episodes, the alerts, the sweep's
    candidates and the suggestions."""
    result = found.result
    p = result.period
    console.print(
        f"[bold]{escape(result.monitor)}[/bold]: {format_time(p.start)} to {format_time(p.end)}"
        f" ({format_duration(p.seconds)}, {result.minutes:,} minutes), window"
        f" {format_duration(result.window)}"
    )
    share = "no predictions" if result.fallback_share is None else f"{result.fallback_share:.1%}"
    console.print(
        f"fallback: {len(result.episodes)} episode{'s' if len(result.episodes) != 1 else ''}"
        f" ({result.engagements_per_day:.2f} a day), {format_duration(result.fallback_seconds)}"
        f" engaged, {share} of {result.predictions:,} predictions"
    )
    if result.episodes:
        console.print(_episodes(result.episodes))
    alerts = Table(title="Alerts", title_justify="left")
    for column in ("alert", "reads", "fired", "time firing", "pending (near misses)"):
        alerts.add_column(column)
    for alert in result.alerts:
        firing = sum(f.seconds for f in alert.firing)
        alerts.add_row(
            escape(alert.name),
            escape(alert.key),
            str(len(alert.firing)),
            format_duration(firing),
            str(alert.pendings),
        )
    console.print(alerts)
    if result.unread:
        unread = escape(", ".join(result.unread))
        console.print(f"not replayed (no input here: they never fire): {unread}")
    if found.rules is not None:
        _rules(found.rules, console)
    if found.sweep is not None:
        console.print(_sweep(found))
    for suggestion in found.suggestions:
        console.print(
            f"suggest [bold]{escape(suggestion.alert)}.{suggestion.field}:"
            f" {suggestion.value:g}[/bold] ({escape(suggestion.why)})"
        )


VERDICTS = {"better": "the rules did better", "worse": "the rules did worse"}


def _rules(rules: RulesVsModel, console: Console) -> None:
    """The rules against the model on the episodes' labeled records, and what was left out."""
    table = Table(
        title=f"Rules against the model in the episodes: {rules.compared:,} of {rules.records:,}"
        " labeled records judged on both sides"
        + (f" (a {rules.sample:.1%} sample by prediction ID)" if rules.sample < 1 else ""),
        title_justify="left",
    )
    for column in ("metric", "model", "rules", "rules − model", "verdict"):
        table.add_column(column)
    shown = [rules.metric, *(n for n in rules.differences if n in _SHOWN and n != rules.metric)]
    for name in shown:
        d = rules.differences.get(name)
        if d is None:
            continue
        bounds = "" if d.lower is None else f" [{d.lower:+.3f}, {d.upper:+.3f}]"
        table.add_row(
            f"[bold]{name}[/bold]" if name == rules.metric else name,
            _estimate(rules.model.get(name)),
            _estimate(rules.rules.get(name)),
            "-" if d.difference is None else f"{d.difference:+.3f}{bounds}",
            VERDICTS.get(d.verdict, "can't tell"),
        )
    console.print(table)
    answered = ", ".join(f"rules[{i}] {n:,}" for i, n in enumerate(rules.by_rule))
    console.print(
        f"answers by rule: {answered}; no rule answered (the model did): {rules.no_rule:,}"
    )
    for skipped in rules.skipped:
        said = escape(f"{skipped.reason} ({skipped.detail})")
        console.print(f"left out: {skipped.records:,} {said}")


_SHOWN = frozenset({"accuracy", "precision", "recall", "f1", "mae", "rmse"})
"""The metrics the rules' table shows besides the one it leads with."""


def _estimate(found: Estimate | None) -> str:
    if found is None or found.value is None:
        return "-"
    if found.lower is None or found.upper is None:
        return f"{found.value:.3g}"
    return f"{found.value:.3g} [{found.lower:.3g}, {found.upper:.3g}]"


def _episodes(episodes: Sequence[Episode]) -> Table:
    table = Table(title="Fallback episodes", title_justify="left")
    keys = sorted({k for e in episodes for k in e.metrics})
    for column in ("engaged", "released", "for", "predictions", *keys, "why"):
        table.add_column(column, overflow="fold")
    for episode in episodes:
        released = "(still on)" if episode.period.open else format_time(episode.period.end)
        around = [_around(episode.metrics.get(k)) for k in keys]
        table.add_row(
            format_time(episode.period.start),
            released,
            format_duration(episode.period.seconds),
            f"{episode.predictions:,}",
            *around,
            escape(episode.reason),
        )
    return table


def _around(found: Around | None) -> str:
    """`0.91 → 0.62 → 0.88`: before, during, after."""
    if found is None:
        return ""
    return " → ".join(_figure(f) for f in (found.before, found.during, found.after))


def _figure(found: Figure | None) -> str:
    return "-" if found is None or found.value is None else f"{found.value:.3g}"


def _sweep(found: Backtest) -> Table:
    swept = found.sweep
    assert swept is not None
    candidates = list(swept.candidates)
    if len(candidates) > SHOWN_CANDIDATES:
        candidates = [c for c in candidates if c.pareto]
    title = f"Sweep: {len(swept.candidates)} candidates against {swept.metric} {swept.target:g}" + (
        ", the Pareto front" if len(candidates) < len(swept.candidates) else ""
    )
    table = Table(title=title, title_justify="left")
    paths = list(swept.candidates[0].values) if swept.candidates else []
    for column in (*paths, "false eng.", "detected", "mean delay", "in fallback", "front"):
        table.add_column(escape(column))
    for c in candidates:
        values = [_value(path, c.values[path]) for path in paths]
        delay = c.score.mean_delay
        table.add_row(
            *values,
            str(c.score.false_engagements),
            f"{c.score.detected}/{c.score.degradations}",
            "-" if delay is None else format_duration(delay),
            format_duration(c.score.fallback_seconds),
            "*" if c.pareto else "",
        )
    return table


def _value(path: str, value: float) -> str:
    durations = path.endswith((".for", "recoverAfter"))
    return format_duration(value) if durations else f"{value:g}"
